"""Distributions as scenario values, and their packing into float64 vectors for the kernels.

A distribution in a scenario is one of::

    1020                                        a constant
    { median = 1020, p90 = 2735, max = 32000 }  lognormal fitted to a median and p90
    { dist = "uniform", min = 10, max = 20 }
    { dist = "quantiles", points = [[0.0, 29], [0.5, 1020], [1.0, 14050]] }
    { dist = "weights", values = [1, 2, 3], weights = [80, 7, 8] }   discrete

``min``/``max`` truncate a lognormal (exactly, by inverse-CDF sampling, not by clipping).
Values may carry units (``"600ms"``) where the field is a duration. The kernels see a
distribution as a ``float64[DIST_LEN]`` vector (see :func:`Dist.params`), sampled by
``kernels.sampling.sample``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# the kinds and the packed layout belong to the sampling kernel; re-exported here
from trafficgen.kernels.sampling import (  # noqa: F401
    CONSTANT,
    DIST_LEN,
    LOGNORMAL,
    MAX_KNOTS,
    QUANTILES,
    UNIFORM,
    WEIGHTS,
)

from .units import parse_duration, parse_size

_Z90 = 1.2815515655446004  # standard normal 90th percentile

_UNIT_PARSERS = {
    "count": lambda v: _plain_number(v),
    "duration": lambda v: float(parse_duration(v)),
    "bytes": lambda v: float(parse_size(v)),
}
_UNIT_HELP = {"count": "a number", "duration": "a duration like '600ms'", "bytes": "a size"}


def _plain_number(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"expected a number, got {v!r}")
    return float(v)


def _norm_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


@dataclass(frozen=True)
class Dist:
    """A validated distribution. ``kind`` is one of CONSTANT, UNIFORM, LOGNORMAL, QUANTILES."""

    kind: int
    a: float = 0.0  # constant value | uniform min | lognormal mu
    b: float = 0.0  # uniform max | lognormal sigma
    lo: float = 0.0  # truncation bounds (lognormal), support (others)
    hi: float = math.inf
    knots: tuple[tuple[float, float], ...] = ()

    def params(self) -> np.ndarray:
        """Pack into the kernel layout: [kind, a, b, lo_cdf|lo, hi_cdf|hi, nknots, p..., v...]."""
        out = np.zeros(DIST_LEN, dtype=np.float64)
        out[0], out[1], out[2] = self.kind, self.a, self.b
        if self.kind == LOGNORMAL:
            out[3] = _norm_cdf((math.log(self.lo) - self.a) / self.b) if self.lo > 0 else 0.0
            out[4] = _norm_cdf((math.log(self.hi) - self.a) / self.b) if math.isfinite(self.hi) else 1.0
        else:
            out[3], out[4] = self.lo, self.hi
        out[5] = len(self.knots)
        for i, (p, v) in enumerate(self.knots):
            out[6 + i], out[6 + MAX_KNOTS + i] = p, v
        return out

    def mean(self) -> float:
        """The exact mean (truncated lognormal in closed form; quantile tables segment by
        segment, each log-linear)."""
        if self.kind == CONSTANT:
            return self.a
        if self.kind == UNIFORM:
            return (self.a + self.b) / 2
        if self.kind == LOGNORMAL:
            mu, sg = self.a, self.b
            lo = (math.log(self.lo) - mu) / sg if self.lo > 0 else -math.inf
            hi = (math.log(self.hi) - mu) / sg if math.isfinite(self.hi) else math.inf
            mass = _norm_cdf(hi) - _norm_cdf(lo)
            return math.exp(mu + sg * sg / 2) * (_norm_cdf(hi - sg) - _norm_cdf(lo - sg)) / mass
        if self.kind == WEIGHTS:
            return sum((p1 - p0) * v for (p0, _), (p1, v) in zip(((0.0, 0.0),) + self.knots, self.knots))
        total = 0.0
        for (p0, v0), (p1, v1) in zip(self.knots, self.knots[1:]):
            total += (p1 - p0) * (v0 if v1 == v0 else (v1 - v0) / math.log(v1 / v0))
        return total

    def top(self) -> float:
        """The largest value it gives (a lognormal without a max: its p90), for bounds."""
        return self.hi if math.isfinite(self.hi) else self.quantile(0.9)

    def quantile(self, q: float) -> float:
        """The q-quantile (for documentation and tests; the kernels have their own)."""
        if self.kind == CONSTANT:
            return self.a
        if self.kind == UNIFORM:
            return self.a + q * (self.b - self.a)
        if self.kind == LOGNORMAL:
            from statistics import NormalDist
            p = self.params()
            u = p[3] + q * (p[4] - p[3])
            return math.exp(self.a + self.b * NormalDist().inv_cdf(min(max(u, 1e-300), 1 - 1e-16)))
        if self.kind == WEIGHTS:
            return next(v for p, v in self.knots if p >= q)
        ps = [k[0] for k in self.knots]
        lv = [math.log(k[1]) for k in self.knots]
        return math.exp(float(np.interp(q, ps, lv)))


def parse_dist(value, unit: str = "count", positive: bool = True) -> Dist:
    """Validate a scenario distribution value; raise ValueError saying what is allowed."""
    conv = _UNIT_PARSERS[unit]
    if not isinstance(value, dict):
        try:
            v = conv(value)
        except ValueError as e:
            raise ValueError(f"expected {_UNIT_HELP[unit]} or a distribution table "
                             f"({{ median = ..., p90 = ... }}), got {value!r}") from e
        _check_positive(v, positive, "value")
        return Dist(CONSTANT, a=v, lo=v, hi=v)
    kind = value.get("dist", "lognormal")
    allowed = {"lognormal": {"dist", "median", "p90", "min", "max"},
               "uniform": {"dist", "min", "max"}, "constant": {"dist", "value"},
               "quantiles": {"dist", "points"}, "weights": {"dist", "values", "weights"}}
    if kind not in allowed:
        raise ValueError(f"dist must be one of {', '.join(allowed)}, got {kind!r}")
    extra = set(value) - allowed[kind]
    if extra:
        raise ValueError(f"unknown key {sorted(extra)[0]!r} for a {kind} distribution "
                         f"(allowed: {', '.join(sorted(allowed[kind] - {'dist'}))})")
    missing = {"lognormal": ("median", "p90"), "uniform": ("min", "max"),
               "constant": ("value",), "quantiles": ("points",),
               "weights": ("values", "weights")}[kind]
    for key in missing:
        if key not in value:
            raise ValueError(f"a {kind} distribution needs {' and '.join(missing)}")
    if kind == "constant":
        v = conv(value["value"])
        _check_positive(v, positive, "value")
        return Dist(CONSTANT, a=v, lo=v, hi=v)
    if kind == "uniform":
        lo, hi = conv(value["min"]), conv(value["max"])
        _check_positive(lo, positive, "min")
        if hi < lo:
            raise ValueError(f"uniform max must be >= min, got min={value['min']!r} max={value['max']!r}")
        return Dist(UNIFORM, a=lo, b=hi, lo=lo, hi=hi)
    if kind == "lognormal":
        median, p90 = conv(value["median"]), conv(value["p90"])
        if not median > 0:
            raise ValueError(f"lognormal median must be above zero, got {value['median']!r}")
        if not p90 > median:
            raise ValueError(f"lognormal p90 must be above the median, got median={value['median']!r} "
                             f"p90={value['p90']!r}")
        lo = conv(value["min"]) if "min" in value else 0.0
        hi = conv(value["max"]) if "max" in value else math.inf
        if lo < 0 or hi <= lo or (math.isfinite(hi) and not (lo < median < hi)):
            raise ValueError("lognormal min and max must satisfy 0 <= min < median < max")
        return Dist(LOGNORMAL, a=math.log(median), b=math.log(p90 / median) / _Z90, lo=lo, hi=hi)
    if kind == "weights":
        return _parse_weights(value["values"], value["weights"], conv, positive)
    return _parse_quantiles(value["points"], conv)


def _parse_weights(values, weights, conv, positive) -> Dist:
    """A discrete distribution: ``values`` (increasing) with relative ``weights``; packed as
    knots (cumulative probability, value)."""
    help_ = "values and weights must be lists of the same length (1 to 64)"
    if (not isinstance(values, list) or not isinstance(weights, list)
            or not 1 <= len(values) == len(weights) <= MAX_KNOTS):
        raise ValueError(help_)
    vs = [conv(v) for v in values]
    ws = [_plain_number(w) for w in weights]
    if any(w < 0 for w in ws) or sum(ws) <= 0:
        raise ValueError("weights must be at least zero and not all zero")
    if any(b <= a for a, b in zip(vs, vs[1:])):
        raise ValueError("values must be strictly increasing")
    _check_positive(vs[0], positive, "values")
    total, cum, knots = sum(ws), 0.0, []
    for v, w in zip(vs, ws):
        cum += w
        knots.append((min(cum / total, 1.0), v))
    knots[-1] = (1.0, knots[-1][1])
    return Dist(WEIGHTS, lo=vs[0], hi=vs[-1], knots=tuple(knots))


def _parse_quantiles(points, conv) -> Dist:
    help_ = "points must be a list of [probability, value] pairs from probability 0 to 1"
    if not isinstance(points, list) or not 2 <= len(points) <= MAX_KNOTS:
        raise ValueError(f"{help_}, with 2 to {MAX_KNOTS} pairs")
    knots = []
    for pair in points:
        if not isinstance(pair, list) or len(pair) != 2:
            raise ValueError(f"{help_}, got {pair!r}")
        knots.append((_plain_number(pair[0]), conv(pair[1])))
    ps = [k[0] for k in knots]
    vs = [k[1] for k in knots]
    if ps[0] != 0.0 or ps[-1] != 1.0 or any(b <= a for a, b in zip(ps, ps[1:])):
        raise ValueError(f"{help_}, probabilities strictly increasing")
    if vs[0] <= 0 or any(b < a for a, b in zip(vs, vs[1:])):
        raise ValueError("quantile values must be above zero and non-decreasing")
    return Dist(QUANTILES, lo=vs[0], hi=vs[-1], knots=tuple(knots))


def _check_positive(v: float, positive: bool, key: str) -> None:
    if v < 0 or (positive and v == 0):
        raise ValueError(f"{key} must be {'above' if positive else 'at least'} zero, got {v!r}")
