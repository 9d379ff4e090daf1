"""Arrival processes, one fixed block of model time at a time: renewal (Poisson or Gamma with a
target coefficient of variation) in operational time, under an intensity modulated across time
scales, with optional batches of near-simultaneous arrivals.

Why this shape. Real LLM request streams stay bursty when counted per 1 s, 10 s and 60 s
(the Azure 2023 traces: index of dispersion 1.4 / 3.9 / 16.4 for conversation, 13 / 72 / 167
for code, per ``trafficgen.stats``), which a renewal process cannot do: its counts smooth out as the window grows. A
doubly stochastic process can: the rate is ``rate * M(t)``, where ``M`` is a product of
independent mean-one lognormal levels, one per time scale, each held for one period of its scale
(a multiplicative cascade). Every level is a pure function of (key, scale, period index), so any
block of time is generated alone, in any order, with the same result, and the levels still
correlate blocks with each other at the long scales, as the traces do.

Within a block the intensity is piecewise constant over segments of the finest scale. Arrivals
are a unit-rate renewal process in operational time ``Lambda(t)`` mapped back to real time; each
block starts the renewal process in equilibrium (its first gap is a forward-recurrence time), so
the stream is stationary across block edges. An arrival may carry a batch: ``1 + Geometric``
requests spread uniformly over ``spread`` ns after it (code completion's near-simultaneous
requests).

Draw layout per block key: Poisson gaps are draws 0, 1, ... of the key itself; a Gamma gap
``e`` has its own child key derive(key, e) (a rejection sampler's extra draws never shift
another variate); batch sizes and spreads come from derive(key, BATCH_ID) and
derive(key, SPREAD_ID).
"""
import math

import numpy as np

from .jit import kernel
from .rng import derive, uniform
from .sampling import ndtri

BATCH_ID = 1 << 62
SPREAD_ID = (1 << 62) + 1


@kernel
def gamma_variate(key, a):
    """One Gamma(shape ``a``, scale 1) variate from the draws of ``key`` (Marsaglia and Tsang,
    2000; for a < 1 the boost G(a) = G(a + 1) U**(1/a))."""
    boost = 1.0
    i = 0
    if a < 1.0:
        boost = uniform(key, 0) ** (1.0 / a)
        a += 1.0
        i = 1
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = ndtri(uniform(key, i))
        u = uniform(key, i + 1)
        i += 2
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        if math.log(u) < 0.5 * x * x + d - d * v + d * math.log(v):
            return d * v * boost


@kernel
def levels(key, n_scales, scales_ns, sigmas, t0, seg_ns, out):
    """``out[j]``: the product over scales of the mean-one lognormal level holding at segment
    ``j`` (time ``t0 + j * seg_ns``); the level of scale ``s`` for period ``p`` is a pure
    function of (key, s, p)."""
    for j in range(out.shape[0]):
        t = t0 + j * seg_ns
        m = 1.0
        for s in range(n_scales):
            sg = sigmas[s]
            if sg <= 0.0:
                continue
            p = t // scales_ns[s]
            z = ndtri(uniform(derive(key, s), p + (1 << 40)))  # p may be negative (warm-up)
            m *= math.exp(sg * z - 0.5 * sg * sg)
        out[j] = m


@kernel
def block(key, t0, t1, seg_ns, rate_per_ns, level, shape, batch_mean, spread_ns, out):
    """Arrival times in [t0, t1) (ns) into ``out``, in order of their events (batches may
    interleave: sort after). ``level[j]`` multiplies the rate over segment j of ``seg_ns``
    from ``t0``; ``shape`` is the Gamma shape of the unit-rate gaps (1/cv**2; 1 = Poisson).
    Returns how many there are (more than ``out`` holds: call again with a larger one)."""
    if rate_per_ns <= 0.0:
        return 0
    k_gap = key
    k_batch = derive(key, BATCH_ID)
    k_spread = derive(key, SPREAD_ID)
    poisson = shape == 1.0
    # equilibrium start: a forward-recurrence time, U times a length-biased gap
    if poisson:
        need = -math.log(uniform(k_gap, 0))
    else:
        need = uniform(derive(k_gap, 0), 1_000_000) * gamma_variate(derive(k_gap, 0), shape + 1.0) / shape
    n = 0
    ev = 0
    seg = 0
    t = float(t0)
    p_batch = 1.0 / batch_mean if batch_mean > 1.0 else 1.0
    while seg < level.shape[0]:
        seg_end = min(float(t0 + (seg + 1) * seg_ns), float(t1))
        lam = rate_per_ns * level[seg]
        room = (seg_end - t) * lam  # operational time left in this segment
        if lam <= 0.0 or need > room:
            need -= room
            t = seg_end
            seg += 1
            continue
        t += need / lam
        if t >= t1:
            break
        # an arrival event: its batch
        b = 1
        if p_batch < 1.0:
            u = uniform(k_batch, ev)
            b = 1 + int(math.log(u) / math.log(1.0 - p_batch))
        for r in range(b):
            tr = t
            if r > 0 and spread_ns > 0:
                tr = t + uniform(derive(k_spread, ev), r) * spread_ns
                if tr >= t1:  # past the block: dropped (the next block is drawn on its own)
                    continue
            if n < out.shape[0]:
                out[n] = np.int64(tr)
            n += 1
        ev += 1
        if poisson:
            need = -math.log(uniform(k_gap, ev))
        else:
            need = gamma_variate(derive(k_gap, ev), shape) / shape
    return n


@kernel
def onoff_length(key, i, mean_ns, tail):
    """Length (ns) of on/off period ``i``: exponential with that mean (a Markov-modulated
    source), or Pareto of shape ``tail`` > 1 with that mean (heavy-tailed periods give
    long-range dependence, H = (3 - tail) / 2 for 1 < tail < 2), capped at 1000 means."""
    u = uniform(key, i)
    if tail <= 0.0:
        x = -math.log(u) * mean_ns
    else:
        x = mean_ns * (tail - 1.0) / tail * u ** (-1.0 / tail)
    return max(np.int64(1), np.int64(min(x, 1000.0 * mean_ns)))


@kernel
def onoff_walk(key, on_ns, off_ns, tail, first_on, i, t_i, t_end):
    """From period ``i`` starting at ``t_i``, the period that contains ``t_end``: (index, start).
    Even periods are on when ``first_on``, odd ones off (and the other way round)."""
    while True:
        on = (i % 2 == 0) == first_on
        n = onoff_length(key, i, on_ns if on else off_ns, tail)
        if t_i + n > t_end:
            return i, t_i
        t_i += n
        i += 1


@kernel
def onoff_gate(key, on_ns, off_ns, tail, first_on, i, t_i, t0, seg_ns, gain, level):
    """Multiply ``level[j]`` (segment j of ``seg_ns`` from ``t0``) by ``gain`` times the share of
    the segment the source is on; period ``i`` starts at ``t_i`` <= ``t0``."""
    t1 = t0 + seg_ns * level.shape[0]
    cover = np.zeros(level.shape[0], np.float64)
    while t_i < t1:
        on = (i % 2 == 0) == first_on
        n = onoff_length(key, i, on_ns if on else off_ns, tail)
        if on:
            a, b = max(t_i, t0), min(t_i + n, t1)
            while a < b:
                j = (a - t0) // seg_ns
                e = min(b, t0 + (j + 1) * seg_ns)
                cover[j] += e - a
                a = e
        t_i += n
        i += 1
    for j in range(level.shape[0]):
        level[j] *= gain * cover[j] / seg_ns
