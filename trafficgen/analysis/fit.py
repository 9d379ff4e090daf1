"""Fit a scenario to a request trace: ``trafficgen fit FILE -o scenario.toml``.

Token lengths: 59-point quantile tables (every 2% and the tails, as ``models/chat.toml``),
sampled log-linearly between the points. Arrivals: the trace's rate, and a search over the
arrival process's parameters (Gamma cv, batches, lognormal burst levels at 1 s / 10 s / 60 s /
10 min, a heavy-tailed on/off gate) for the one whose request stream matches the trace's gap
cv, index of dispersion at 1/10/60 s and Hurst estimate. Each candidate is simulated with
``ArrivalSpec.times`` (no packets) over the trace's span for several seeds with common random
numbers, and scored by the median over seeds of each statistic (heavy-tailed processes vary
widely from one hour to the next). A trace of a day or more also gets a daily profile (its
hourly rates by hour of day); its burstiness is then matched hour by hour (the median over its
whole hours), the profile carrying the rest. The scenario is written with ``turns = 1`` so
the fitted session process is the request process.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trafficgen.config import arrivals as _arr
from trafficgen.config.arrivals import BLOCK_NS, parse_arrivals
from trafficgen.kernels.rng import derive, key_of

from .stats import arrival_stats

QUANTILE_PS = ([0.0, 0.002, 0.005, 0.01, 0.02, 0.03] + [round(0.02 * i, 2) for i in range(2, 49)]
               + [0.97, 0.98, 0.99, 0.995, 0.999, 1.0])
HOUR_NS = 3600 * 10**9
DAY_NS = 86_400 * 10**9
SEEDS = 6
MAX_RATE_PER_S = 1e6  # a class rate key's bound (config.sections)
MAX_SIMULATED = 2 * 10**5  # arrivals per seed of a candidate's simulation
STAT_NAMES = ("gap_cv", "idc_1s", "idc_10s", "idc_60s", "hurst")


def quantile_points(x: np.ndarray) -> list[list[float]]:
    """[[p, value], ...] at QUANTILE_PS (59 points; values at least 1, whole numbers)."""
    v = np.maximum(np.round(np.quantile(np.asarray(x, np.float64), QUANTILE_PS)), 1.0)
    v = np.maximum.accumulate(v)
    return [[p, int(q)] for p, q in zip(QUANTILE_PS, v)]


def flat_stats(times_ns: np.ndarray) -> dict:
    """Rate and the five burstiness statistics of sorted arrival times (None where too short)."""
    a = arrival_stats(times_ns)
    return {"rate_per_s": a["rate_per_s"], "gap_cv": a["gap_cv"], "idc_1s": a["idc"]["1s"],
            "idc_10s": a["idc"]["10s"], "idc_60s": a["idc"]["60s"], "hurst": a["hurst"]}


def target_stats(times_ns: np.ndarray) -> tuple[dict, int]:
    """The statistics to match and the span (ns) to simulate: the whole trace, or for a trace
    over 2 h the median over its whole hours (a daily profile carries the slow swings)."""
    span = int(times_ns[-1] - times_ns[0])
    if span <= 2 * HOUR_NS:
        return flat_stats(times_ns), max(span, BLOCK_NS)
    t0 = int(times_ns[0])
    hours = []
    hour_of = (times_ns - t0) // HOUR_NS
    full, n = np.unique(hour_of[hour_of < span // HOUR_NS], return_counts=True)
    for h in full[n >= 100].tolist():  # the whole hours with 100 requests or more (not every hour
        sel = times_ns[hour_of == h]  # of a span of years: a loop of a million)
        hours.append(flat_stats(sel))
    if not hours:
        return flat_stats(times_ns), HOUR_NS
    med = {k: _median([h[k] for h in hours]) for k in hours[0]}
    return med, HOUR_NS


def _median(xs):
    xs = [x for x in xs if x is not None]
    return float(np.median(xs)) if xs else None


def daily_profile(times_ns: np.ndarray, absolute: bool) -> list[float] | None:
    """24 relative hourly rates (hour of day, UTC for absolute times, else from the trace's
    origin), mean 1, for a trace of a day or more; else None."""
    if times_ns[-1] - times_ns[0] < DAY_NS:
        return None
    origin = 0 if absolute else int(times_ns[0])
    hour = ((times_ns - origin) % DAY_NS) // HOUR_NS
    seen = np.bincount(((np.arange(int(times_ns[0]), int(times_ns[-1]), HOUR_NS) - origin)
                        % DAY_NS) // HOUR_NS, minlength=24)  # how many of each hour it spans
    rate = np.bincount(hour, minlength=24) / np.maximum(seen, 1)
    if rate.sum() <= 0:
        return None
    return [round(float(r), 4) for r in rate / rate.mean()]


@dataclass
class Candidate:
    """Arrival-process parameters of the search (``onoff`` None: always on)."""

    cv: float
    batch: float
    s1: float
    s10: float
    s60: float
    s600: float
    onoff: tuple[float, float] | None  # mean on, off (s); tail 1.4

    def table(self) -> dict:
        out = {"process": "gamma", "cv": round(self.cv, 3)}
        if self.batch > 1.01:
            out["batch"], out["spread"] = round(self.batch, 2), "5ms"
        burst = [[s, round(v, 3)] for s, v in (("1s", self.s1), ("10s", self.s10),
                                              ("60s", self.s60), ("10m", self.s600)) if v >= 0.01]
        if burst:
            out["burst"] = burst
        if self.onoff:
            out["onoff"] = {"on": f"{self.onoff[0]:.3g}s", "off": f"{self.onoff[1]:.3g}s", "tail": 1.4}
        return out


def simulate(table: dict, rate_per_s: float, span_ns: int, seed: int) -> np.ndarray:
    """Arrival times (ns) of the process ``table`` over ``span_ns`` (seed-keyed)."""
    spec = parse_arrivals(table)
    level_key, block_key = key_of(seed, 0xF17), key_of(seed, 0xF18)
    parts = [spec.times(level_key, derive(block_key, b + (1 << 20)), b * BLOCK_NS,
                        min((b + 1) * BLOCK_NS, span_ns), rate_per_s / 1e9, BLOCK_NS)
             for b in range(-(-span_ns // BLOCK_NS))]
    with _arr.ONOFF_LOCK:  # the on/off walk's cache: one entry per key, of no use again
        _arr.ONOFF_MARKS.clear()
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def pooled_stats(table: dict, rate_per_s: float, span_ns: int, seeds=range(1, SEEDS + 1)) -> dict:
    """Median over seeds of each statistic of the simulated process."""
    runs = [flat_stats(simulate(table, rate_per_s, span_ns, s)) for s in seeds]
    return {k: _median([r[k] for r in runs]) for k in runs[0]}


def loss(got: dict, want: dict) -> float:
    total = 0.0
    for k in STAT_NAMES:
        if want.get(k) is None:
            continue
        g = got.get(k)
        if g is None:
            total += 25.0
        elif k == "hurst":
            total += (4 * (g - want[k])) ** 2
        else:
            total += math.log(max(g, 1e-3) / max(want[k], 1e-3)) ** 2
    return total


def search(want: dict, span_ns: int, budget: int = 80) -> tuple[Candidate, dict, float]:
    """Coordinate descent from a few starting points; the best candidate, its stats, loss."""
    rate = want["rate_per_s"]
    cv = want.get("gap_cv") or 1.0
    starts = [Candidate(min(max(cv, 0.5), 3.0), 1.0, 0.0, 0.0, 0.0, 0.0, None),
              Candidate(min(max(cv, 0.5), 3.0), 1.0, 0.0, 0.15, 0.15, 0.3, None)]
    if cv > 2.0 or (want.get("idc_1s") or 1) > 4:  # very bursty: an on/off source with batches
        starts.append(Candidate(1.5, 2.5, 0.4, 0.4, 0.0, 0.0, (15.0, 45.0)))
    cache: dict = {}

    def score(c: Candidate):
        key = repr(c)
        if key not in cache:
            st = pooled_stats(c.table(), rate, span_ns)
            cache[key] = (loss(st, want), st)
        return cache[key]

    best = min(starts, key=lambda c: score(c)[0])
    steps = {"cv": 1.4, "batch": 1.4, "s1": 0.15, "s10": 0.15, "s60": 0.15, "s600": 0.15,
             "on": 1.6, "off": 1.6}
    for _ in range(4):
        improved = False
        for name, step in list(steps.items()):
            if name in ("on", "off") and best.onoff is None:
                continue
            for sign in (1, -1):
                if len(cache) >= budget:
                    break
                c = _moved(best, name, step, sign)
                if c is not None and score(c)[0] < score(best)[0]:
                    best, improved = c, True
                    break
        if not improved:
            steps = {k: (1 + (v - 1) / 2) if v > 1 else v / 2 for k, v in steps.items()}
        if len(cache) >= budget:
            break
    return best, score(best)[1], score(best)[0]


def _moved(c: Candidate, name: str, step: float, sign: int) -> Candidate | None:
    d = dict(c.__dict__)
    if name in ("on", "off"):
        on, off = c.onoff
        i = 0 if name == "on" else 1
        v = [on, off]
        v[i] = v[i] * step ** sign
        if not 0.2 <= v[i] <= 3600:
            return None
        d["onoff"] = (round(v[0], 2), round(v[1], 2))
    elif name in ("cv", "batch"):
        v = c.__dict__[name] * step ** sign
        lo, hi = (0.3, 20.0) if name == "cv" else (1.0, 20.0)
        if name == "batch" and v < 1.05:
            v = 1.0
        if not lo <= v <= hi:
            return None
        d[name] = round(v, 3)
    else:
        v = round(c.__dict__[name] + sign * step, 3)
        if not 0.0 <= v <= 2.0:
            return None
        d[name] = v
    out = Candidate(**d)
    return None if out == c else out


def _fmt(v, f="{:.2f}"):
    return "-" if v is None else f.format(v)


def stats_line(st: dict) -> str:
    return (f"gap cv {_fmt(st['gap_cv'])}, IDC 1 s / 10 s / 60 s {_fmt(st['idc_1s'], '{:.1f}')} / "
            f"{_fmt(st['idc_10s'], '{:.1f}')} / {_fmt(st['idc_60s'], '{:.1f}')}, "
            f"Hurst {_fmt(st['hurst'])}")


def _toml(v) -> str:
    """A TOML inline value (numbers, strings, lists, tables)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"


def _points(points) -> str:
    rows, line = [], "    "
    for p, v in points:
        item = f"[{p:g}, {v}], "
        if len(line) + len(item) > 98:
            rows.append(line.rstrip())
            line = "    "
        line += item
    rows.append(line.rstrip())
    return "{ dist = \"quantiles\", points = [\n" + "\n".join(rows) + "\n] }"


def fit_trace(trace, base: str = "chat", cls: str | None = None, budget: int = 80) -> tuple[str, dict]:
    """Fit ``trace`` (a :class:`~trafficgen.traces.Trace`); returns (TOML text, report). ``base``:
    the built-in scenario the fitted one starts from; ``cls``: its class section to fit (the
    base's first chat-shaped class by default)."""
    from pathlib import Path

    from trafficgen.classes.chat import CLASSES as CHAT
    from trafficgen.config.scenario import load_scenario
    from trafficgen.errors import TrafficgenError
    sc = load_scenario(base)
    chat = [c for c in sc.classes if c in CHAT]
    cls = cls or (chat[0] if chat else None)
    if cls is None:  # "--class: ... no chat-shaped class None" blamed an option not given
        raise TrafficgenError(f"--base {base}: the scenario has no chat-shaped class to fit (it has: "
                              f"{', '.join(sc.classes)}); fit onto chat, coding or reasoning")
    if cls not in CHAT or cls not in sc.params:
        raise TrafficgenError(f"--class: the base scenario {base!r} has no chat-shaped class "
                              f"{cls!r} (it has: {', '.join(sc.classes)})")
    if len(trace) < 100:
        raise TrafficgenError(f"{trace.path}: {len(trace)} requests: too few to fit (100 or more)")
    t = trace.times_ns
    want, span = target_stats(t)
    rate = want["rate_per_s"]
    if rate is None or rate > MAX_RATE_PER_S:  # one time for all, or faster than a rate key holds
        raise TrafficgenError(f"{trace.path}: its {len(trace)} requests start within "
                              f"{(t[-1] - t[0]) / 1e9:.6g} s: too close together to fit an arrival "
                              f"process (at most {MAX_RATE_PER_S:g}/s)")
    # the simulation's span: at most MAX_SIMULATED arrivals per seed (149 requests within 15 ms
    # and one a century later simulated an hour at 10,000/s per seed and candidate: for ever)
    span = max(min(span, int(MAX_SIMULATED / rate * 1e9)), 10**8)
    best, got, score = search(want, span, budget)
    arrivals = best.table()
    daily = daily_profile(t, trace.absolute)
    if daily:
        arrivals["daily"] = daily
    rate = len(trace) / max((t[-1] - t[0]) / 1e9, 1e-9)
    name = "fitted-" + "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in Path(trace.path).stem)[:56]
    p50 = lambda x: float(np.median(x))  # noqa: E731
    p90 = lambda x: float(np.quantile(x, 0.9))  # noqa: E731
    report = {"trace": trace.path, "format": trace.format, "requests": len(trace),
              "span_s": (t[-1] - t[0]) / 1e9, "rate_per_s": rate, "base": base, "class": cls,
              "arrivals": arrivals, "trace_stats": want, "fitted_stats": got, "loss": score,
              "prompt_tokens": {"median": p50(trace.prompt), "p90": p90(trace.prompt)},
              "output_tokens": {"median": p50(trace.output), "p90": p90(trace.output)},
              "simulated": f"median of {SEEDS} seeds x {span / 1e9:.0f} s of the arrival process"}
    lines = [
        f"# Fitted by `trafficgen fit` from {Path(trace.path).name} ({trace.format}): "
        f"{len(trace):,} requests over {report['span_s']:,.0f} s ({rate:.3f}/s).",
        "# Generate: trafficgen generate THIS.toml --duration 1h --requests r.parquet; check:",
        f"# trafficgen compare {Path(trace.path).name} r.parquet",
        "#",
        "# Arrivals: searched over Gamma cv, batches, lognormal burst levels (1 s, 10 s, 60 s,",
        "# 10 min) and an on/off gate for the trace's burstiness; the fitted process alone",
        f"# ({report['simulated']}) against the trace"
        + (" (median over its whole hours)" if span == HOUR_NS and report["span_s"] > 7200 else "") + ":",
        f"#   fitted: {stats_line(got)}",
        f"#   trace:  {stats_line(want)}",
        "# Heavy-tailed processes vary from hour to hour: compare several seeds. Requests reach",
        "# the wire after their connection's handshakes, which blurs sub-RTT gaps (gap cv, IDC 1 s).",
    ]
    if daily:
        lines.append("# daily: the trace's hourly rates by hour of day "
                     + ("(UTC)" if trace.absolute else "(hours from the trace's origin)") + ", mean 1.")
    lines += [
        f"# Tokens: 59 quantiles of the trace; prompt median {report['prompt_tokens']['median']:,.0f}, "
        f"p90 {report['prompt_tokens']['p90']:,.0f}; output median "
        f"{report['output_tokens']['median']:,.0f}, p90 {report['output_tokens']['p90']:,.0f}.",
        f"# Everything else (wire shape, topology, timings) comes from the built-in {base!r}.",
        "",
        "[scenario]",
        f"base = {_toml(base)}",
        f"name = {_toml(name)}",
        f"description = {_toml(f'Fitted to {Path(trace.path).name}: {rate:.2f} requests/s')}",
        f"duration = \"{max(1, round(report['span_s']))}s\"",
    ]
    if trace.absolute:
        import datetime as _dt
        when = _dt.datetime.fromtimestamp(int(t[0]) // 10**9, _dt.timezone.utc)
        lines.append(f"start_time = \"{when.strftime('%Y-%m-%dT%H:%M:%SZ')}\"   # the trace's start")
    lines += [
        "",
        f"[{cls}]",
        f"rate = \"{rate:.4g}/s\"                 # the trace's mean rate (requests per second)",
        "turns = 1.0                       # one request per session: the arrivals are the requests'",
        f"arrivals = {_toml(arrivals)}",
        f"prompt_tokens = {_points(quantile_points(trace.prompt))}",
        f"output_tokens = {_points(quantile_points(trace.output))}",
        "",
    ]
    return "\n".join(lines), report
