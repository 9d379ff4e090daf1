"""Trace-driven generation: ``trafficgen generate SCENARIO --trace FILE``.

The trace's rows become the scenario's requests (``models.trace``): row ``i`` at
``(t_i - t_0) x time_scale`` after the capture start, with its prompt and output tokens; the
scenario supplies the rest (wire shape, topology, timings). Rows go to the class their
``class`` column names, else to the scenario's first chat-shaped class; a ``kv_transfer``
section takes the rows of class ``kv_transfer``, or every row where none is named. Classes the
trace does not drive are not generated. ``duration`` keeps the rows before it; without one the
run lasts until the last row (plus 1 ms). Where the trace's times are absolute (Azure, an ISO
``timestamp`` column), the capture starts at the trace's first time.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import math

import numpy as np

from trafficgen.classes.chat import CLASSES as CHAT_CLASSES
from trafficgen.config.keys import DIST_MAX
from trafficgen.config.scenario import MAX_DURATION_NS, Scenario, load_scenario
from trafficgen.config.units import parse_duration
from trafficgen.errors import TrafficgenError

from .read import read_trace
from .trace import Trace


def _rows(tr: Trace, keep, t_rel) -> dict:
    out = {"t": t_rel[keep], "prompt": tr.prompt[keep], "output": tr.output[keep]}
    for name in ("session", "client", "cached"):
        v = getattr(tr, name)
        if v is not None:
            out[name] = v[keep]
    return out


def trace_scenario(src, trace, overrides=None, *, time_scale: float = 1.0, duration=None,
                   seed=None, fmt: str | None = None) -> Scenario:
    """A scenario (name, path, dict or Scenario) driven by ``trace`` (a path or a
    :class:`Trace`); ``time_scale`` stretches (> 1) or compresses (< 1) the trace's time,
    ``duration`` (a duration string or ns) cuts it."""
    tr = trace if isinstance(trace, Trace) else read_trace(trace, fmt)
    if isinstance(time_scale, bool) or not isinstance(time_scale, (int, float)) \
            or not math.isfinite(time_scale) or not 1e-6 <= time_scale <= 1e6:
        raise TrafficgenError(f"--time-scale: expected a number from 1e-6 to 1e6, got {time_scale!r}")
    t_rel = np.round((tr.times_ns - tr.times_ns[0]) * float(time_scale)).astype(np.int64)
    if duration is not None:
        try:
            cut = parse_duration(duration) if not isinstance(duration, int) else duration
        except ValueError as e:
            raise TrafficgenError(f"--duration: {e}") from None
        keep_t = t_rel < cut
        if not keep_t.any():
            raise TrafficgenError(f"{tr.path}: no request in the first {duration} of the trace")
        tr, t_rel = tr.select(keep_t), t_rel[keep_t]
    else:
        cut = int(t_rel[-1]) + 1_000_000
    if cut > MAX_DURATION_NS:
        raise TrafficgenError(f"{tr.path}: the trace spans {t_rel[-1] / 86_400e9:.1f} days "
                              f"(x time scale); at most 30 days run at once: compress it "
                              f"(--time-scale) or cut it (--duration)")
    check_tokens(tr)
    sc = load_scenario(src, overrides, seed=seed)
    sc = load_scenario(sc, {"scenario.duration": f"{cut}ns"})
    rows = assign(sc, tr, t_rel)
    # the first connections open before their requests: the capture opens that much (whole
    # ms) before the first request, so no packet comes before it
    from trafficgen.classes.trace import trace_models
    lead = max((m.warmup_ns for m in trace_models(dataclasses.replace(sc, trace=rows), 0)),
               default=0)
    offset = -(-lead // 1_000_000) * 1_000_000
    for r in rows.values():
        r["t"] = r["t"] + offset
    t0 = int(tr.times_ns[0]) if tr.absolute else sc.start_ns + offset
    when = _dt.datetime.fromtimestamp((t0 - offset) // 10**9, _dt.timezone.utc).replace(
        microsecond=((t0 - offset) % 10**9) // 1000)
    extra = {"scenario.duration": f"{cut + offset}ns",
             "scenario.start_time": when.isoformat().replace("+00:00", "Z")}
    if cut + offset > MAX_DURATION_NS:
        raise TrafficgenError(f"{tr.path}: the trace is too long: at most 30 days run at once")
    sc = load_scenario(sc, extra)
    return dataclasses.replace(sc, trace=rows)


def check_tokens(tr: Trace) -> None:
    """A request's tokens within what a scenario's token keys allow (``DIST_MAX["count"]``): a
    row of 2**31-1 tokens asked for 2.75 TiB of packet rows."""
    limit = DIST_MAX["count"]
    for what, v in (("prompt", tr.prompt), ("output", tr.output)):
        big = np.flatnonzero(v > limit)
        if big.shape[0]:
            row = int(big[0])
            raise TrafficgenError(f"{tr.path}: the request at {(tr.times_ns[row] - tr.times_ns[0]) / 1e9:g} s "
                                  f"(row {row + 1} in time order) has {int(v[row]):,} {what} tokens, "
                                  f"over the limit of {limit:,} a request may have (its packets "
                                  f"must fit in memory)")


def assign(sc: Scenario, tr: Trace, t_rel: np.ndarray) -> dict:
    """Class -> its rows (see ``models.trace``)."""
    chat = [c for c in sc.classes if c in CHAT_CLASSES]
    out = {}
    if tr.cls is None:
        if chat:
            out[chat[0]] = _rows(tr, slice(None), t_rel)
        if "kv_transfer" in sc.classes:
            out["kv_transfer"] = _rows(tr, slice(None), t_rel)
    else:
        names = set(tr.cls.tolist())
        unknown = sorted(names - set(chat) - {"kv_transfer"})
        if unknown:
            row = int(np.flatnonzero(tr.cls == unknown[0])[0])
            raise TrafficgenError(f"{tr.path}: class {unknown[0]!r} (row {row + 1} in time order) "
                                  f"is not a chat-shaped class or kv_transfer of the scenario "
                                  f"(it has: {', '.join(sc.classes)})")
        for c in chat:
            if c in names:
                out[c] = _rows(tr, tr.cls == c, t_rel)
        if "kv_transfer" in sc.classes:
            keep = tr.cls == "kv_transfer" if "kv_transfer" in names else slice(None)
            out["kv_transfer"] = _rows(tr, keep, t_rel)
    if not out:
        raise TrafficgenError(f"the scenario has no class a trace can drive (a chat-shaped class: "
                              f"{', '.join(CHAT_CLASSES)}, or kv_transfer); it has "
                              f"{', '.join(sc.classes)}")
    return out
