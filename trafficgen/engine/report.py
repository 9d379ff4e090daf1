"""What a run's report says of its batches: the counts, the capture's real span (first to last
packet), the rows a cut left open, and a warning when the output holds no request.

``Tally`` adds up batches as they are written (by ``api.generate``, and by each shard's worker),
``Tally.merged`` adds up the tallies of shards, and ``no_request_warning`` says why a run came out
empty and what to change, in the options and keys the user gives.
"""
from __future__ import annotations

import math

from trafficgen.config.sections import MAX_DURATION_NS
from trafficgen.config.units import format_duration

COUNTS = ("packets", "wire_bytes", "flows", "requests")


class Tally:
    """The running counts of a run's batches.

    Parameters
    ----------
    with_packets : bool
        The batches carry their packets (a capture or a packet table): packets and bytes are
        theirs. Otherwise the flows' own totals are counted (every packet of a flow is in the
        run) and the span is the flows' first to last packet.
    """

    def __init__(self, with_packets: bool):
        self.with_packets = with_packets
        self.n = dict.fromkeys(COUNTS, 0)
        self.first_ns: int | None = None  # the first and last packet, ns since the epoch
        self.last_ns: int | None = None
        self.truncated = {"flows": 0, "requests": 0}

    def add(self, batch) -> None:
        """Count one batch (``engine.core.Batch``)."""
        f, p = batch.flows, batch.packets
        if self.with_packets:
            self.n["packets"] += p.shape[0]
            self.n["wire_bytes"] += int(p["wire_len"].sum())
            if p.shape[0]:
                self._span(int(p["ts_ns"][0]), int(p["ts_ns"][-1]))
        else:
            self.n["packets"] += int(f["packets_up"].sum() + f["packets_down"].sum())
            self.n["wire_bytes"] += int(f["bytes_up"].sum() + f["bytes_down"].sum())
            if f.shape[0]:
                self._span(int(f["start_ns"].min()), int(f["end_ns"].max()))
        self.n["flows"] += f.shape[0]
        self.n["requests"] += batch.requests.shape[0]
        self.truncated["flows"] += int(f["truncated"].sum())
        self.truncated["requests"] += int(batch.requests["truncated"].sum())

    def _span(self, first: int, last: int) -> None:
        self.first_ns = first if self.first_ns is None else min(self.first_ns, first)
        self.last_ns = last if self.last_ns is None else max(self.last_ns, last)

    def as_dict(self) -> dict:
        """The counts, span and truncated rows as plain values (what a shard's worker returns)."""
        return {**self.n, "first_ns": self.first_ns, "last_ns": self.last_ns,
                "truncated": dict(self.truncated)}

    @classmethod
    def merged(cls, parts: list[dict], with_packets: bool) -> "Tally":
        """One tally of several (``as_dict`` of each shard)."""
        t = cls(with_packets)
        for p in parts:
            for k in COUNTS:
                t.n[k] += p[k]
            for k in t.truncated:
                t.truncated[k] += p["truncated"][k]
            if p["first_ns"] is not None:
                t._span(p["first_ns"], p["last_ns"])
        return t

    def report(self, start_ns: int) -> dict:
        """The report's fields: counts, ``first_packet_s``/``last_packet_s`` (seconds from the
        capture start; ``None`` without packets) and ``truncated`` (rows left open by a cut)."""
        def at(t):
            return None if t is None else round((t - start_ns) / 1e9, 6)
        return {**self.n, "first_packet_s": at(self.first_ns), "last_packet_s": at(self.last_ns),
                "truncated": dict(self.truncated)}


def rates_of(scenario) -> list[tuple[str, float, str]]:
    """(key, per second, as written) of what starts requests: each class's rate, and the media
    sessions' rates."""
    out = []
    for cls in scenario.classes:
        p = scenario.params[cls]
        written = scenario.source.get(cls, {}) if isinstance(scenario.source, dict) else {}
        for key in ("rate", "voice_rate", "video_rate"):
            value = getattr(p, key, None)
            if value is not None:
                shown = written.get(key)
                shown = shown if isinstance(shown, str) else f"{float(value):g}/s"
                out.append((f"{cls}.{key}", float(value), shown))
    return out


def _round_up_rate(per_s: float) -> str:
    """A rate at least ``per_s``, in whole numbers of its unit (``2/min``)."""
    for unit, scale in (("s", 1), ("min", 60), ("h", 3600)):
        if per_s * scale >= 1 or unit == "h":
            return f"{math.ceil(per_s * scale - 1e-9)}/{unit}"
    raise AssertionError("unreachable")


def _round_up_duration(seconds: float) -> str:
    """A duration at least ``seconds``, in whole milliseconds, seconds, minutes or hours
    (``50ms``, ``100s``, ``50m``)."""
    step_ns = 10**6 if seconds < 1 else 10**9 if seconds < 1000 else 60 * 10**9 if seconds < 36_000 \
        else 3600 * 10**9
    return format_duration(math.ceil(seconds * 1e9 / step_ns - 1e-9) * step_ns)


def _secs(seconds: float) -> str:
    return f"{seconds:,.0f} s" if seconds >= 100 else f"{seconds:.3g} s"


def no_request_warning(scenario, stop_at_ns: int | None) -> str:
    """Why a run holds no request, and what to change: the rate keys and their values, and the
    ``--duration`` (or ``--stop-at``) that holds a request on average, or a rate that fills the
    time asked."""
    cut = stop_at_ns is not None and stop_at_ns < scenario.duration_ns
    window_ns = stop_at_ns if cut else scenario.duration_ns
    window_s = window_ns / 1e9
    option = "--stop-at" if cut else "--duration"
    head = "the output holds no request"
    if scenario.trace is not None:
        return (f"{head}: no request of the trace starts before the cut at {_secs(window_s)} "
                f"(--stop-at)" if cut else head)
    rates = rates_of(scenario)
    if not rates:
        return head
    live = [(k, r, shown) for k, r, shown in rates if r > 0]
    if not live:
        keys = " and ".join(k for k, _, _ in rates[:3])
        return f"{head}: {keys} {'is' if len(rates) == 1 else 'are'} 0; give -t {rates[0][0]}=1/min or more"
    total = sum(r for _, r, _ in live)
    named = " and ".join(f"{k} is {shown}" for k, _, shown in live[:3])
    expected = total * window_s
    if expected >= 3:  # the rates say there should be some: the arrival process or the seed
        return (f"{head}, though {named}: {expected:.3g} expected on average in {_secs(window_s)} "
                f"({option}); the arrival process or the seed left it empty")
    every = ("" if len(live) == 1 else "together ") + f"one every {_secs(1 / total)} on average"
    # the key to raise: the busiest request rate (a class's ``rate``), else a media rate
    key, rate, _ = max(live, key=lambda kr: (kr[0].endswith(".rate"), kr[1]))
    more = f"-t {key}={_round_up_rate(1 / window_s - (total - rate))}"
    if 1 / total > MAX_DURATION_NS / 1e9:  # no run is that long: only the rate can change it
        return f"{head}: {named} ({every}) and {option} is {_secs(window_s)}; give {more} or more"
    need = _round_up_duration(1 / total)
    fix = f"{option} {need}" + (f" and --duration {need}" if cut and 1 / total > scenario.duration_ns / 1e9 else "")
    return (f"{head}: {named} ({every}) and {option} is {_secs(window_s)}; give {fix} or more "
            f"(one on average), or {more}")
