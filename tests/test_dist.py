"""Every sampler against its target: the counter-based RNG, the normal quantile, and each kind of
scenario distribution (constant, uniform, lognormal, truncated lognormal, quantile table) drawn
through the kernels and compared with scipy by Kolmogorov-Smirnov tests. Each KS test has a
negative control (a slightly wrong target must be rejected), so the tests are known to have the
power to fail.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from trafficgen.config.dist import parse_dist
from trafficgen.kernels.rng import bits, derive, fill_bytes, key_of, uniform
from trafficgen.kernels.sampling import ndtri, sample, sample_many

N = 40_000
ALPHA = 1e-3  # with fixed keys the outcome is deterministic; this only sets how strict


def draws(spec, n=N, key=12345, unit="count") -> np.ndarray:
    d = parse_dist(spec, unit)
    out = np.empty(n, np.float64)
    sample_many(d.params(), np.uint64(key), 0, out)
    return out


def uniforms(key, n=N, first=0) -> np.ndarray:
    return np.array([uniform(np.uint64(key), first + i) for i in range(n)])


def accepts(x, cdf) -> bool:
    return stats.kstest(x, cdf).pvalue > ALPHA


# --- the generator --------------------------------------------------------------------------------

def test_uniform_is_uniform_on_the_open_interval():
    u = uniforms(7)
    assert u.min() > 0.0 and u.max() < 1.0
    assert accepts(u, stats.uniform.cdf)
    assert not accepts(u ** 1.02, stats.uniform.cdf)  # negative control


def test_successive_draws_and_sibling_keys_are_uncorrelated():
    k = np.uint64(derive(np.uint64(99), 0))
    u = uniforms(k, 20_000)
    v = uniforms(np.uint64(derive(np.uint64(99), 1)), 20_000)
    lim = 4 / math.sqrt(20_000)
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < lim
    assert abs(np.corrcoef(u, v)[0, 1]) < lim
    # pairs fall evenly on a 10 x 10 grid (serial test)
    grid = np.histogram2d(u[:-1:2], u[1::2], bins=10, range=[[0, 1], [0, 1]])[0].ravel()
    assert stats.chisquare(grid).pvalue > ALPHA


def test_a_draw_is_a_pure_function_of_key_and_index():
    k = np.uint64(0xABCDEF)
    assert uniforms(k, 100, first=50)[0] == uniforms(k, 51)[50]
    assert bits(k, 3) == bits(k, 3) and bits(k, 3) != bits(k, 4)
    assert key_of(7, 1) == key_of(7, 1) != key_of(7, 2) != key_of(8, 1)


def test_fill_bytes_is_uniform_and_prefix_stable():
    a = np.empty(1 << 20, np.uint8)
    fill_bytes(np.uint64(5), a)
    counts = np.bincount(a, minlength=256)
    assert stats.chisquare(counts).pvalue > ALPHA
    for n in (0, 1, 7, 8, 13, 4096 + 3):
        b = np.empty(n, np.uint8)
        fill_bytes(np.uint64(5), b)
        assert np.array_equal(b, a[:n])
    skewed = np.minimum(a, 254)  # negative control: one value missing
    assert stats.chisquare(np.bincount(skewed, minlength=255)[:255]).pvalue < ALPHA


# --- the normal quantile --------------------------------------------------------------------------

def test_ndtri_matches_scipy_across_the_range():
    p = np.concatenate([np.logspace(-300, -1, 400), np.linspace(0.01, 0.99, 999),
                        1 - np.logspace(-16, -1, 200)])
    ours = np.array([ndtri(x) for x in p])
    ref = stats.norm.ppf(p)
    assert np.allclose(ours, ref, rtol=1e-12, atol=1e-12)
    assert ndtri(0.0) == -np.inf and ndtri(1.0) == np.inf and ndtri(0.5) == 0.0


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=1e-300, max_value=1 - 1e-16))
def test_ndtri_property(p):
    assert ndtri(p) == pytest.approx(stats.norm.ppf(p), rel=1e-11, abs=1e-11)


# --- scenario distributions -----------------------------------------------------------------------

def test_constant():
    assert set(draws(1020, 100)) == {1020.0}
    assert set(draws({"dist": "constant", "value": "250ms"}, 100, unit="duration")) == {250e6}


def test_uniform():
    x = draws({"dist": "uniform", "min": 10, "max": 20})
    assert x.min() >= 10 and x.max() <= 20
    assert accepts(x, stats.uniform(10, 10).cdf)
    assert not accepts(x, stats.uniform(10, 10.3).cdf)


def test_lognormal_from_median_and_p90():
    median, p90 = 1020.0, 2735.0
    x = draws({"median": median, "p90": p90})
    sigma = math.log(p90 / median) / stats.norm.ppf(0.9)
    target = stats.lognorm(s=sigma, scale=median)
    assert accepts(x, target.cdf)
    assert np.quantile(x, 0.5) == pytest.approx(median, rel=0.03)
    assert np.quantile(x, 0.9) == pytest.approx(p90, rel=0.03)
    assert not accepts(x, stats.lognorm(s=sigma, scale=median * 1.04).cdf)
    assert not accepts(x, stats.lognorm(s=sigma * 1.05, scale=median).cdf)


def test_truncated_lognormal_is_exact_not_clipped():
    spec = {"median": 1020, "p90": 2735, "min": 200, "max": 4000}
    x = draws(spec)
    assert x.min() >= 200 and x.max() <= 4000
    sigma = math.log(2735 / 1020) / stats.norm.ppf(0.9)
    base = stats.lognorm(s=sigma, scale=1020)
    lo, hi = base.cdf(200), base.cdf(4000)
    assert accepts(x, lambda v: (base.cdf(v) - lo) / (hi - lo))
    # clipping would pile mass on the bounds; exact truncation puts none there
    assert np.mean(x >= 3999) < 1e-3 and np.mean(x <= 200.5) < 1e-3
    assert not accepts(x, base.cdf)  # the untruncated target is rejected


def test_quantile_table_is_log_linear_between_knots():
    points = [[0.0, 29], [0.25, 400], [0.5, 1020], [0.9, 4000], [1.0, 14050]]
    x = draws({"dist": "quantiles", "points": points})
    ps, lv = np.array([p for p, _ in points]), np.log([v for _, v in points])

    def cdf(v):
        return np.interp(np.log(np.clip(v, 29, 14050)), lv, ps)

    assert x.min() >= 29 and x.max() <= 14050
    for p, v in points[1:-1]:
        assert np.mean(x <= v) == pytest.approx(p, abs=0.01)
    assert accepts(x, cdf)
    assert not accepts(x, lambda v: np.interp(np.log(np.clip(v, 29, 14050)), lv * 1.01, ps))


def test_durations_are_sampled_in_nanoseconds():
    x = draws({"median": "600ms", "p90": "1.5s"}, unit="duration")
    assert np.median(x) == pytest.approx(600e6, rel=0.03)


@settings(max_examples=60, deadline=None)
@given(median=st.floats(1, 1e6), ratio=st.floats(1.01, 20), lo_f=st.floats(0, 0.99),
       hi_f=st.floats(1.01, 100), q=st.floats(0.001, 0.999))
def test_kernel_and_python_quantiles_agree(median, ratio, lo_f, hi_f, q):
    """The kernel's draw for u equals Dist.quantile(u): inverse-CDF sampling, bounds respected."""
    d = parse_dist({"median": median, "p90": median * ratio, "min": median * lo_f,
                    "max": median * hi_f})
    v = sample(d.params(), q)
    assert v == pytest.approx(d.quantile(q), rel=1e-9)
    assert median * lo_f * (1 - 1e-12) <= v <= median * hi_f * (1 + 1e-12)


@pytest.mark.parametrize("spec", [
    1020, {"dist": "uniform", "min": 10, "max": 20}, {"median": 1020, "p90": 2735},
    {"median": 15, "p90": 30, "min": 2, "max": 100}, {"median": 5, "p90": 9, "min": 3},
    {"dist": "quantiles", "points": [[0.0, 29], [0.5, 1020], [0.9, 4000], [1.0, 14050]]},
    {"dist": "quantiles", "points": [[0.0, 7], [0.3, 7], [1.0, 70]]},
])
def test_mean_is_the_mean_of_the_draws(spec):
    d = parse_dist(spec)
    x = draws(spec, 400_000)
    se = x.std() / math.sqrt(x.shape[0])
    assert abs(d.mean() - x.mean()) <= 5 * se + 1e-9 * abs(x.mean())


def test_weights_are_a_discrete_distribution():
    spec = {"dist": "weights", "values": [1, 2, 3, 4, 5, 6], "weights": [80, 7, 8, 2, 2, 1]}
    x = draws(spec)
    values, counts = np.unique(x, return_counts=True)
    assert values.tolist() == [1, 2, 3, 4, 5, 6]
    p = np.array([80, 7, 8, 2, 2, 1]) / 100
    assert stats.chisquare(counts, p * N).pvalue > ALPHA
    # negative control: a slightly different table is rejected
    q = np.array([78, 9, 8, 2, 2, 1]) / 100
    assert stats.chisquare(counts, q * N).pvalue < ALPHA
    d = parse_dist(spec)
    assert d.mean() == pytest.approx((p * np.arange(1, 7)).sum())
    assert x.mean() == pytest.approx(d.mean(), rel=0.02)
    assert [d.quantile(q) for q in (0.5, 0.8, 0.81, 0.9, 1.0)] == [1, 1, 2, 3, 6]


@pytest.mark.parametrize("spec, words", [
    ({"dist": "weights", "values": [1, 2], "weights": [1]}, "same length"),
    ({"dist": "weights", "values": [2, 1], "weights": [1, 1]}, "strictly increasing"),
    ({"dist": "weights", "values": [1, 2], "weights": [0, 0]}, "not all zero"),
    ({"dist": "weights", "values": [1, 2], "weights": [-1, 2]}, "at least zero"),
    ({"dist": "weights", "values": [1]}, "needs values and weights"),
])
def test_bad_weights(spec, words):
    with pytest.raises(ValueError, match=words):
        parse_dist(spec)
