"""Sampling kernels: a uniform draw in (0, 1) through the inverse CDF of a packed distribution.

The packed layout is ``trafficgen.dist.Dist.params()``: [kind, a, b, lo, hi, nknots, p..., v...].
Inverse-CDF sampling keeps every draw a function of one uniform, so truncation is exact and a
draw's position in its stream never depends on the values of other draws.
"""
import math

import numpy as np

from .jit import ir_inline, kernel
from .rng import uniform

# distribution kinds (the packed vector's first value; ``config.dist`` builds them)
CONSTANT, UNIFORM, LOGNORMAL, QUANTILES, WEIGHTS = 0, 1, 2, 3, 4
MAX_KNOTS = 64  # knots of a quantile or weights table
DIST_LEN = 6 + 2 * MAX_KNOTS  # [kind, a, b, lo, hi, nknots, p[MAX_KNOTS]..., v[MAX_KNOTS]...]

# Acklam's rational approximation to the normal quantile, refined by one Halley step.
_A = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
      1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00)
_B = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
      6.680131188771972e+01, -1.328068155288572e+01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
      -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00)


@ir_inline
def table_at(q, o, x):
    """The value at fractional index ``x`` of the table ``q[o:]``, linear between entries: a
    draw from a quantile table of n + 1 values is ``table_at(q, o, u * n)`` (no logarithm)."""
    k = int(x)
    return q[o + k] + (x - k) * (q[o + k + 1] - q[o + k])


@kernel
def ndtri(p):
    """Standard normal quantile for p in (0, 1), accurate to ~1e-15."""
    if p <= 0.0:
        return -np.inf
    if p >= 1.0:
        return np.inf
    if p > 0.5:  # by symmetry: 1 - p is exact here (Sterbenz), p's own tail would lose digits
        return -ndtri(1.0 - p)
    if p < 0.02425:
        q = math.sqrt(-2.0 * math.log(p))
        x = (((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / \
            ((((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0)
    else:
        q = p - 0.5
        r = q * q
        x = (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * q / \
            (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0)
    e = 0.5 * math.erfc(-x / math.sqrt(2.0)) - p
    u = e * math.sqrt(2.0 * math.pi) * math.exp(x * x / 2.0)
    return x - u / (1.0 + x * u / 2.0)


@kernel
def sample(params, u):
    """One draw from the packed distribution ``params`` (float64[DIST_LEN]) for u in (0, 1)."""
    kind = int(params[0])
    if kind == CONSTANT:
        return params[1]
    if kind == UNIFORM:
        return params[1] + u * (params[2] - params[1])
    if kind == LOGNORMAL:
        uu = params[3] + u * (params[4] - params[3])
        return math.exp(params[1] + params[2] * ndtri(uu))
    n = int(params[5])
    if kind == WEIGHTS:  # the first value whose cumulative probability reaches u
        for i in range(n - 1):
            if u <= params[6 + i]:
                return params[6 + MAX_KNOTS + i]
        return params[6 + MAX_KNOTS + n - 1]
    # QUANTILES: log-linear interpolation between knots (p_i, v_i)
    lo, hi = 0, n - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if params[6 + mid] <= u:
            lo = mid
        else:
            hi = mid
    p0, p1 = params[6 + lo], params[6 + hi]
    v0, v1 = params[6 + MAX_KNOTS + lo], params[6 + MAX_KNOTS + hi]
    f = (u - p0) / (p1 - p0)
    return math.exp(math.log(v0) + f * (math.log(v1) - math.log(v0)))


@kernel
def sample_many(params, key, first, out):
    """Fill ``out`` with draws ``first, first+1, ...`` of ``key`` through ``params``."""
    for i in range(out.shape[0]):
        out[i] = sample(params, uniform(key, first + i))
