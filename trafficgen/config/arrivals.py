"""Arrival processes as scenario values (see ``kernels/arrivals.py`` for the model)::

    arrivals = { process = "poisson" }
    arrivals = { process = "gamma", cv = 1.1 }
    arrivals = { process = "gamma", cv = 3, burst = [["10s", 0.3], ["60s", 0.4], ["10m", 0.5]],
                 batch = 2.5, spread = "200ms" }

``process``: ``poisson`` or ``gamma`` (a renewal process whose gaps have coefficient of
variation ``cv``). ``daily``: a 24-hour profile of the rate, ``"human"`` (people: a trough
around 04:00 and a peak in the afternoon, about 9:1), ``"flat"`` (the default: machines and
agents), or 24 relative rates for the hours 00-23 of the scenario clock (UTC from
``start_time``);
it is interpolated between hour centres and scaled to a mean of 1, so ``rate`` stays the daily
mean. ``burst``: [time scale, sigma] pairs; the rate is multiplied, per period of
each scale, by an independent mean-one lognormal level of that sigma (0 = off). ``batch``: mean
requests per arrival event (1 + geometric; 1 = single arrivals), spread uniformly over
``spread`` after the event. The configured rate is the mean rate of arrivals, batches included.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from math import gcd

import numpy as np

from trafficgen.kernels import arrivals as ka

from .units import parse_duration

MIN_SEGMENT_NS = 10**7  # 10 ms: the intensity's finest step
MAX_SCALES = 8
BLOCK_NS = 60 * 10**9  # arrivals are drawn per block of model time: part of the model, not the run
ONOFF_STEP_NS = 10**8  # an on/off source's gate is resolved per 100 ms
ONOFF_ORIGIN_NS = -86_400 * 10**9  # where each class's chain of on/off periods starts (model time)
ONOFF_ID = 0x0F0F
ONOFF_MARKS: dict = {}  # (key, on, off, tail) -> {block: (period index, period start)}
ONOFF_LOCK = threading.Lock()


@dataclass(frozen=True)
class ArrivalSpec:
    """A validated arrival process."""

    shape: float = 1.0  # Gamma shape of the gaps: 1 / cv**2 (1: Poisson)
    scales_ns: tuple[int, ...] = ()
    sigmas: tuple[float, ...] = ()
    batch_mean: float = 1.0
    spread_ns: int = 0
    daily: tuple[float, ...] = ()  # 24 hourly factors with mean 1, or () for flat
    on_ns: int = 0  # on/off source: mean on and off period lengths (0: always on)
    off_ns: int = 0
    tail: float = 0.0  # Pareto shape of the periods (0: exponential, a Markov-modulated source)

    def segment_ns(self, block_ns: int) -> int:
        """The intensity's step inside a block: every level is constant over it."""
        g = block_ns
        for s in self.scales_ns:
            g = gcd(g, s)
        if self.on_ns:
            g = gcd(g, ONOFF_STEP_NS)
        return g

    def times(self, level_key, block_key, t0: int, t1: int, rate_per_ns: float,
              block_ns: int, day0_ns: int = 0) -> np.ndarray:
        """Sorted arrival times (int64 ns) in [t0, t1), a block that starts at a multiple of
        ``block_ns``. ``level_key`` is the class's (shared by all blocks: the slow levels
        correlate them); ``block_key`` is this block's; ``day0_ns`` is the time of day (ns
        after midnight) at time 0, for the daily profile."""
        if t1 <= t0 or rate_per_ns <= 0:
            return np.empty(0, np.int64)
        modulated = self.scales_ns or self.daily or self.on_ns
        seg = self.segment_ns(block_ns) if modulated else max(t1 - t0, 1)
        level = np.ones(-(-(t1 - t0) // seg), np.float64)
        if self.scales_ns:
            ka.levels(np.uint64(level_key), len(self.scales_ns),
                      np.array(self.scales_ns, np.int64), np.array(self.sigmas, np.float64),
                      t0, seg, level)
        if self.daily:
            mid = day0_ns + t0 + (np.arange(level.shape[0]) + 0.5) * seg
            level *= self.daily_factor(mid)
        if self.on_ns:
            self._gate(level_key, t0, seg, block_ns, level)
        rate_ns = rate_per_ns / self.batch_mean  # events; batches restore the mean
        expect = rate_per_ns * float(level.sum()) * seg
        out = np.empty(int(expect + 10 * math.sqrt(expect) * max(1.0, self.batch_mean) + 64),
                       np.int64)
        args = (np.uint64(block_key), t0, t1, seg, rate_ns, level, self.shape, self.batch_mean,
                self.spread_ns)
        n = ka.block(*args, out)
        if n > out.shape[0]:
            out = np.empty(n, np.int64)
            ka.block(*args, out)
        out = out[:n]
        if self.batch_mean > 1.0 and self.spread_ns > 0:
            out.sort(kind="stable")
        return out


    def _gate(self, level_key, t0: int, seg: int, block_ns: int, level: np.ndarray) -> None:
        """Switch ``level`` off where the on/off source is off (and up by (on + off) / on where it
        is on, keeping the mean rate). The periods are one chain per class from ``ONOFF_ORIGIN_NS``;
        where it stands at each block start is cached, so any block is found without walking
        the chain from its origin each time."""
        key = np.uint64(ka.derive(np.uint64(level_key), ONOFF_ID))
        first_on = bool(ka.uniform(key, ONOFF_ID) < self.on_ns / (self.on_ns + self.off_ns))
        b = t0 // block_ns
        with ONOFF_LOCK:
            marks = ONOFF_MARKS.setdefault((int(key), self.on_ns, self.off_ns, self.tail), {})
            known = [k for k in marks if k <= b]
            if known:
                i, t_i = marks[max(known)]
            else:
                i, t_i = 0, ONOFF_ORIGIN_NS
            for k in range(max(known) + 1 if known else ONOFF_ORIGIN_NS // block_ns, b + 1):
                i, t_i = ka.onoff_walk(key, self.on_ns, self.off_ns, self.tail, first_on, i, t_i,
                                       k * block_ns)
                marks[k] = (int(i), int(t_i))
            i, t_i = marks[b]
        ka.onoff_gate(key, self.on_ns, self.off_ns, self.tail, first_on, i, t_i, t0, seg,
                      (self.on_ns + self.off_ns) / self.on_ns, level)

    def daily_factor(self, ns_after_midnight) -> np.ndarray:
        """The daily profile at these times of day (ns; any multiple of days is ignored)."""
        if not self.daily:
            return np.ones(np.shape(ns_after_midnight))
        hours = (np.asarray(ns_after_midnight, np.float64) % DAY_NS) / 3.6e12
        return np.interp(hours, np.arange(24) + 0.5, self.daily, period=24)


# People: low at night (trough 04:00), rising through the morning, peak mid-afternoon, an
# evening shoulder; hourly peak:trough about 9:1 (MODELS.md: ~2:1 to ~30:1 by service).
HUMAN_DAY = (0.35, 0.25, 0.2, 0.18, 0.18, 0.25, 0.45, 0.75, 1.1, 1.35, 1.5, 1.55,
             1.5, 1.55, 1.6, 1.55, 1.45, 1.3, 1.2, 1.15, 1.05, 0.9, 0.7, 0.5)
DAY_NS = 86_400 * 10**9


def _daily(value) -> tuple[float, ...]:
    if value == "flat":
        return ()
    if value == "human":
        factors = HUMAN_DAY
    elif (isinstance(value, list) and len(value) == 24
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  and v >= 0 for v in value) and sum(value) > 0):
        factors = tuple(float(v) for v in value)
    else:
        raise ValueError(f"daily must be \"human\", \"flat\" or 24 rates (>= 0, not all 0) for the "
                         f"hours 00-23, got {value!r}")
    # scale so the day's mean of the interpolated curve is exactly 1
    mean = float(np.mean(np.interp(np.arange(0, 24, 1 / 360) + 1 / 720, np.arange(24) + 0.5,
                                   factors, period=24)))
    return tuple(f / mean for f in factors)


def _onoff(value) -> tuple[int, int, float]:
    """``{ on = "20s", off = "60s" [, tail = 1.5] }``: mean on and off period lengths."""
    if value is None:
        return 0, 0, 0.0
    if not isinstance(value, dict) or not {"on", "off"} <= set(value) <= {"on", "off", "tail"}:
        raise ValueError(f"onoff must be a table like {{ on = \"20s\", off = \"60s\", tail = 1.5 }} "
                         f"(tail optional), got {value!r}")
    out = []
    for k in ("on", "off"):
        ns = parse_duration(value[k])
        if not ONOFF_STEP_NS <= ns <= 86_400 * 10**9:
            raise ValueError(f"onoff.{k} must be from 100ms to 1 day, got {value[k]!r}")
        out.append(ns)
    tail = _number(value["tail"], "onoff.tail", 1.05, 3.0) if "tail" in value else 0.0
    return out[0], out[1], tail


def _number(v, what: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{what} must be a number from {lo:g} to {hi:g}, got {v!r}")
    if not lo <= v <= hi:
        raise ValueError(f"{what} must be from {lo:g} to {hi:g}, got {v!r}")
    return float(v)


def parse_arrivals(value) -> ArrivalSpec:
    """Validate an ``arrivals`` table; raise ValueError saying what is allowed."""
    if not isinstance(value, dict):
        raise ValueError(f"expected a table like {{ process = \"poisson\" }}, got {value!r}")
    allowed = {"process", "cv", "burst", "batch", "spread", "daily", "onoff"}
    extra = sorted(set(value) - allowed)
    if extra:
        raise ValueError(f"unknown key {extra[0]!r} (allowed: {', '.join(sorted(allowed))})")
    process = value.get("process", "poisson")
    if process not in ("poisson", "gamma"):
        raise ValueError(f"process must be poisson or gamma, got {process!r}")
    if process == "poisson":
        if "cv" in value:
            raise ValueError("cv is for process = \"gamma\" (a Poisson process has cv 1)")
        shape = 1.0
    else:
        if "cv" not in value:
            raise ValueError("a gamma process needs cv (the gaps' coefficient of variation)")
        shape = 1.0 / _number(value["cv"], "cv", 0.05, 100.0) ** 2
    scales, sigmas = [], []
    burst = value.get("burst", [])
    if not isinstance(burst, list) or len(burst) > MAX_SCALES:
        raise ValueError(f"burst must be a list of up to {MAX_SCALES} [time scale, sigma] pairs")
    for pair in burst:
        if not isinstance(pair, list) or len(pair) != 2:
            raise ValueError(f"burst must be a list of [time scale, sigma] pairs, got {pair!r}")
        scale = parse_duration(pair[0])
        if not MIN_SEGMENT_NS <= scale <= 86_400 * 10**9 * 366:
            raise ValueError(f"burst time scales must be from 10ms to a year, got {pair[0]!r}")
        if scale in scales:
            raise ValueError(f"burst time scale {pair[0]!r} is given twice")
        scales.append(scale)
        sigmas.append(_number(pair[1], "burst sigma", 0.0, 3.0))
    batch = _number(value.get("batch", 1.0), "batch", 1.0, 1000.0)
    spread = parse_duration(value.get("spread", 0)) if value.get("spread", 0) != 0 else 0
    if spread > 60 * 10**9:
        raise ValueError(f"spread must be at most 60s, got {value['spread']!r}")
    if spread and batch == 1.0:
        raise ValueError("spread is for batches: set batch above 1")
    on_ns, off_ns, tail = _onoff(value.get("onoff"))
    spec = ArrivalSpec(shape, tuple(scales), tuple(sigmas), batch, spread,
                       _daily(value.get("daily", "flat")), on_ns, off_ns, tail)
    if spec.scales_ns and spec.segment_ns(BLOCK_NS) < MIN_SEGMENT_NS:
        raise ValueError("burst time scales must share a step of at least 10ms with each other "
                         "and with the model's 60s blocks (e.g. 1s, 10s, 60s, 10m)")
    return spec
