"""Arrival processes against their targets: Gamma variates and renewal gaps (KS against scipy),
the equilibrium start at block edges, batches, the multi-scale burst levels and the index of
dispersion they produce, block independence, and the scenario syntax."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import trafficgen as tg
from trafficgen.classes.chat import ChatModel
from trafficgen.config.arrivals import BLOCK_NS, parse_arrivals
from trafficgen.errors import ConfigError
from trafficgen.kernels import arrivals as ka
from trafficgen.kernels.rng import derive, key_of

ALPHA = 1e-3
S = 10**9


def stream(spec, rate_per_s, blocks, seed=1):
    """Arrival times (ns) over ``blocks`` consecutive blocks, drawn block by block."""
    sp = parse_arrivals(spec)
    lk = key_of(seed, 77)
    parts = [sp.times(lk, derive(key_of(seed, 78), b), b * BLOCK_NS, (b + 1) * BLOCK_NS,
                      rate_per_s / S, BLOCK_NS) for b in range(blocks)]
    return np.concatenate(parts), parts


def idc(t_ns, scale_s, span_s):
    counts = np.bincount((t_ns // (scale_s * S)).astype(np.int64), minlength=int(span_s // scale_s))
    counts = counts[: int(span_s // scale_s)]
    return counts.var() / counts.mean()


@pytest.mark.parametrize("shape", [0.05, 0.3, 1.0, 2.5, 20.0])
def test_gamma_variates(shape):
    k = key_of(5, 1)
    x = np.array([ka.gamma_variate(np.uint64(derive(k, i)), shape) for i in range(20_000)])
    assert stats.kstest(x, stats.gamma(shape).cdf).pvalue > ALPHA
    assert stats.kstest(x, stats.gamma(shape * 1.05).cdf).pvalue < ALPHA


@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0, 4.0])
def test_gamma_renewal_gaps(cv):
    t, parts = stream({"process": "gamma", "cv": cv}, 50, 40)
    gaps = np.concatenate([np.diff(p) for p in parts]) / S  # within blocks only
    k = 1 / cv**2
    target = stats.gamma(k, scale=1 / (k * 50))
    # times are whole nanoseconds: compare the mass below 1 us, and the shape above it
    lo = 1e-6
    below = np.mean(gaps < lo)
    assert below == pytest.approx(target.cdf(lo), abs=4 * math.sqrt(target.cdf(lo) / gaps.size) + 1e-3)
    rest = gaps[gaps >= lo]
    assert stats.kstest(rest, lambda x: (target.cdf(x) - target.cdf(lo)) / target.sf(lo)).pvalue > ALPHA
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.08)
    assert t.shape[0] == pytest.approx(50 * 40 * 60, rel=6 * cv / math.sqrt(50 * 40 * 60))


def test_poisson_is_the_default_and_matches_the_exponential():
    t, parts = stream({}, 30, 20)
    gaps = np.concatenate([np.diff(p) for p in parts]) / S
    assert stats.kstest(gaps, stats.expon(scale=1 / 30).cdf).pvalue > ALPHA
    assert parse_arrivals({}) == parse_arrivals({"process": "poisson"})


def test_blocks_start_in_equilibrium():
    """The first arrival after a block edge is a forward-recurrence time: mean (1 + cv**2) / 2
    gaps, not one gap (a renewal process restarted at each edge would show seams)."""
    cv, rate = 3.0, 2.0
    sp = parse_arrivals({"process": "gamma", "cv": cv})
    firsts = []
    for b in range(3000):
        t = sp.times(key_of(1, 77), derive(key_of(2, 78), b), 0, BLOCK_NS, rate / S, BLOCK_NS)
        if t.shape[0]:
            firsts.append(t[0] / S)
    # the residual of a gamma renewal process has mean E[X^2] / (2 E[X])
    assert np.mean(firsts) == pytest.approx((1 + cv**2) / (2 * rate), rel=0.1)


def test_batches_keep_the_mean_rate_and_stay_within_the_spread():
    t, parts = stream({"process": "poisson", "batch": 4.0, "spread": "200ms"}, 40, 20)
    assert t.shape[0] == pytest.approx(40 * 20 * 60, rel=0.06)
    for p in parts:
        assert np.all(np.diff(p) >= 0)
    # near-simultaneous groups: most gaps are inside a spread
    gaps = np.concatenate([np.diff(p) for p in parts])
    assert np.mean(gaps < 200 * 10**6) > 0.7
    single, _ = stream({"process": "poisson"}, 40, 20)
    assert idc(t, 1, 20 * 60) > 3 * idc(single, 1, 20 * 60)


def test_burst_levels_are_mean_one_lognormals_shared_across_blocks():
    k = key_of(9, 9)
    scales = np.array([60 * S], np.int64)
    out = np.empty(2000, np.float64)
    ka.levels(k, 1, scales, np.array([0.5]), 0, 60 * S, out)
    z = np.log(out)
    assert stats.kstest(z, stats.norm(-0.125, 0.5).cdf).pvalue > ALPHA
    assert out.mean() == pytest.approx(1.0, abs=0.05)
    # the level for a time does not depend on where the block starts
    a = np.empty(10, np.float64)
    ka.levels(k, 1, scales, np.array([0.5]), 5 * 60 * S, 60 * S, a)
    assert np.array_equal(a, out[5:15])


@pytest.mark.parametrize("sigma", [0.3, 0.6])
def test_burstiness_across_time_scales(sigma):
    """With a 60 s level of sigma s, counts per 60 s have index of dispersion
    1 + rate * 60 * (exp(s**2) - 1); a plain Poisson stream stays near 1 at every scale."""
    rate, blocks = 5.0, 400
    t, _ = stream({"process": "poisson", "burst": [["60s", sigma]]}, rate, blocks)
    expected = 1 + rate * 60 * (math.exp(sigma**2) - 1)
    assert idc(t, 60, blocks * 60) == pytest.approx(expected, rel=0.25)
    flat, _ = stream({"process": "poisson"}, rate, blocks)
    for scale in (1, 10, 60):
        assert idc(flat, scale, blocks * 60) == pytest.approx(1.0, abs=0.35)
    assert idc(t, 1, blocks * 60) < idc(t, 10, blocks * 60) < idc(t, 60, blocks * 60)


def test_multi_scale_levels_correlate_blocks():
    """A 10-minute level makes neighbouring minutes alike: counts per minute correlate."""
    t, _ = stream({"process": "poisson", "burst": [["10m", 0.6]]}, 5.0, 600)
    counts = np.bincount((t // (60 * S)).astype(np.int64))[:600]
    assert np.corrcoef(counts[:-1], counts[1:])[0, 1] > 0.3
    flat, _ = stream({"process": "poisson"}, 5.0, 600)
    c = np.bincount((flat // (60 * S)).astype(np.int64))[:600]
    assert abs(np.corrcoef(c[:-1], c[1:])[0, 1]) < 0.15


@pytest.mark.parametrize("spec, words", [
    ({"process": "weibull"}, "poisson or gamma"),
    ({"process": "gamma"}, "needs cv"),
    ({"process": "poisson", "cv": 2}, "cv is for"),
    ({"process": "gamma", "cv": 0}, "cv must be from"),
    ({"burst": [["7ms", 0.3]]}, "from 10ms"),
    ({"burst": [["1s", 0.3], ["1s", 0.2]]}, "twice"),
    ({"burst": [["1.003s", 0.3]]}, "share a step"),
    ({"burst": [["1s", 5]]}, "sigma"),
    ({"burst": "60s"}, "pairs"),
    ({"spread": "10ms"}, "set batch"),
    ({"batch": 0.5}, "batch"),
    ({"rate": 3}, "unknown key 'rate'"),
])
def test_bad_specs_say_what_is_allowed(spec, words):
    with pytest.raises(ValueError, match=words):
        parse_arrivals(spec)


def test_scenario_syntax_and_overrides():
    sc = tg.load_scenario("chat", ['chat.arrivals={process="gamma", cv=2, burst=[["60s", 0.4]]}'])
    a = sc.chat.arrivals
    assert a.shape == pytest.approx(0.25) and a.scales_ns == (60 * S,) and a.sigmas == (0.4,)
    assert tg.load_scenario("chat").chat.arrivals == parse_arrivals(
        {"process": "gamma", "cv": 1.2, "burst": [["10m", 0.24]]})  # models/chat.toml
    bare = tg.Scenario.from_dict({k: v for k, v in tg.load_scenario("chat").to_dict().items()})
    assert bare.chat.arrivals.shape == pytest.approx(1 / 1.2**2)
    no_key = tg.load_scenario("chat").to_dict()
    del no_key["chat"]["arrivals"]
    # a key the scenario leaves out comes from the class's built-in scenario (models/chat.toml)
    assert tg.Scenario.from_dict(no_key).chat.arrivals == tg.load_scenario("chat").chat.arrivals
    with pytest.raises(ConfigError) as e:
        tg.load_scenario("chat", ['chat.arrivals={process="gamma"}'])
    assert e.value.key == "chat.arrivals"


def test_chat_sessions_follow_the_configured_process():
    sc = tg.load_scenario("chat", ['chat.arrivals={process="gamma", cv=2.5}', "chat.rate=90/s"],
                          duration="30m", seed=4)
    model = ChatModel(sc)
    blocks = [model.block_arrivals(b)[1] for b in range(30)]
    gaps = np.concatenate([np.diff(a) for a in blocks]).astype(float)
    assert gaps.std() / gaps.mean() == pytest.approx(2.5, rel=0.1)
    # and a run with it is still window-independent (sessions cut any way agree)
    k_all, s_all = model.sessions(0, 5 * BLOCK_NS)
    parts = [model.sessions(a, b) for a, b in [(0, 7 * S), (7 * S, 3 * BLOCK_NS), (3 * BLOCK_NS, 5 * BLOCK_NS)]]
    assert np.array_equal(np.concatenate([p[1] for p in parts]), s_all)


def test_daily_profile_shapes_the_hours_and_keeps_the_mean():
    sp = parse_arrivals({"process": "poisson", "daily": "human"})
    rate = 5.0
    t = np.concatenate([sp.times(key_of(3, 1), derive(key_of(3, 2), b), b * BLOCK_NS,
                                 (b + 1) * BLOCK_NS, rate / S, BLOCK_NS) for b in range(1440)])
    per_hour = np.bincount((t // (3600 * S)).astype(np.int64), minlength=24)[:24]
    expect = np.array([rate * 3600 * sp.daily_factor((np.arange(3600) + 0.5 + 3600 * h) * S).mean()
                       for h in range(24)])
    assert np.all(np.abs(per_hour - expect) < 5 * np.sqrt(expect))
    assert per_hour.sum() == pytest.approx(rate * 86400, rel=0.01)
    assert per_hour[14] > 6 * per_hour[4]  # afternoon against the small hours
    flat = parse_arrivals({"daily": "flat"})
    assert flat == parse_arrivals({}) and flat.daily == ()


def test_daily_profile_follows_the_scenario_clock():
    """The same profile, a scenario that starts at noon: its first hour is the noon hour."""
    custom = [1.0] * 24
    custom[12] = 5.0
    sc = tg.load_scenario("chat", [f"chat.arrivals={{process=\"poisson\", daily={custom}}}",
                                   "scenario.start_time=2026-03-01T12:00:00Z", "chat.rate=60/s"],
                          duration="2h", seed=1)
    model = ChatModel(sc)
    first = sum(model.block_arrivals(b)[1].shape[0] for b in range(60))
    second = sum(model.block_arrivals(b)[1].shape[0] for b in range(60, 120))
    assert first > 2 * second


@pytest.mark.parametrize("daily", ["weekly", [1.0] * 23, [-1.0] + [1.0] * 23, [0] * 24, [True] * 24])
def test_bad_daily_profiles(daily):
    with pytest.raises(ValueError, match="daily must be"):
        parse_arrivals({"daily": daily})


@pytest.mark.parametrize("skew", [0.5, 1.0, 1.8])
def test_client_ranks_follow_the_power_law(skew):
    from trafficgen.kernels.chat import client_rank
    n = 1000
    k = key_of(4, 4)
    from trafficgen.kernels.rng import uniform
    ranks = np.array([client_rank(uniform(k, i), n, skew) for i in range(100_000)])
    assert ranks.min() >= 0 and ranks.max() < n
    # the continuous power law over [1, n + 1), binned at the integers
    e = 1 - skew
    edges = np.arange(1, n + 2, dtype=float)
    if e == 0:
        cdf = np.log(edges) / np.log(n + 1.0)
    else:
        cdf = (edges**e - 1) / ((n + 1.0) ** e - 1)
    p = np.diff(cdf)
    top = 20
    observed = np.append(np.bincount(ranks, minlength=n)[:top], (ranks >= top).sum())
    expected = np.append(p[:top], p[top:].sum()) * ranks.shape[0]
    assert stats.chisquare(observed, expected).pvalue > ALPHA
    assert client_rank(0.5, n, 0.0) == 500  # skew 0: uniform, as before


def test_skewed_clients_in_a_run():
    sc = tg.load_scenario("chat", ["topology.client_skew=1.2", "chat.rate=40/s"], duration="2m",
                          seed=3)
    flows = np.concatenate([b.flows for b in tg.batches(sc, frames=False)])
    per_client = np.sort(np.bincount(flows["client_id"]))[::-1]
    assert per_client[:20].sum() > 0.4 * per_client.sum()  # 1% of 2000 clients: > 40% of flows
    even = tg.load_scenario("chat", ["chat.rate=40/s"], duration="2m", seed=3)
    flows = np.concatenate([b.flows for b in tg.batches(even, frames=False)])
    per_client = np.sort(np.bincount(flows["client_id"]))[::-1]
    assert per_client[:20].sum() < 0.05 * per_client.sum()


@pytest.mark.parametrize("tail", [0.0, 1.4])
def test_onoff_period_lengths(tail):
    """Exponential periods (a Markov-modulated source) or Pareto ones of that shape, each with
    the configured mean (KS against scipy)."""
    key = key_of(3, 9)
    mean = 20 * S
    x = np.array([ka.onoff_length(key, i, mean, tail) for i in range(20_000)], np.float64)
    if tail == 0.0:
        target = stats.expon(scale=mean).cdf
    else:
        target = stats.pareto(b=tail, scale=mean * (tail - 1) / tail).cdf
    x = x[x < 1000 * mean * 0.999]  # the cap
    assert stats.kstest(x, target).pvalue > ALPHA
    assert stats.kstest(x, stats.expon(scale=mean).cdf if tail else
                        stats.pareto(b=1.4, scale=mean * 0.4 / 1.4).cdf).pvalue < ALPHA


def test_onoff_source_keeps_the_mean_and_goes_silent():
    spec = {"process": "poisson", "onoff": {"on": "5s", "off": "15s"}}
    t, _ = stream(spec, 200, 60)  # an hour at 200/s
    assert t.shape[0] / 3600 == pytest.approx(200, rel=0.15)
    per_100ms = np.bincount((t // (S // 10)).astype(np.int64), minlength=36_000)[:36_000]
    silent = np.mean(per_100ms == 0)
    assert silent == pytest.approx(0.75, abs=0.06)  # off 15 s of every 20 s
    busy = per_100ms[per_100ms > 0]
    assert busy.mean() == pytest.approx(200 / 10 / 0.25, rel=0.1)  # 4x the rate while on
    # negative control: no gate, no silence
    t2, _ = stream({"process": "poisson"}, 200, 10)
    assert np.mean(np.bincount((t2 // (S // 10)).astype(np.int64))[:6000] == 0) < 0.01


def test_onoff_blocks_are_found_alone():
    """Any block of an on/off source is drawn alone (as another process would) with the same
    result as walking the blocks in order."""
    from trafficgen.config import arrivals as arr
    spec = {"process": "gamma", "cv": 1.5, "onoff": {"on": "15s", "off": "45s", "tail": 1.4}}
    _, in_order = stream(spec, 20, 40)
    arr.ONOFF_MARKS.clear()
    alone = stream(spec, 20, 40)[1]
    for b in (37, 5, 22):
        arr.ONOFF_MARKS.clear()
        sp = parse_arrivals(spec)
        got = sp.times(key_of(1, 77), derive(key_of(1, 78), b), b * BLOCK_NS, (b + 1) * BLOCK_NS,
                       20 / S, BLOCK_NS)
        assert np.array_equal(got, in_order[b]) and np.array_equal(got, alone[b])
    assert sum(p.shape[0] == 0 for p in in_order) >= 3  # whole silent minutes happen


@pytest.mark.parametrize("onoff, words", [
    ({"on": "1s"}, "onoff must be a table"),
    ({"on": "1s", "off": "10ms"}, "onoff.off must be from 100ms"),
    ({"on": "1s", "off": "2s", "tail": 0.5}, "onoff.tail"),
    ("1s", "onoff must be a table"),
])
def test_bad_onoff(onoff, words):
    with pytest.raises(ValueError, match=words):
        parse_arrivals({"onoff": onoff})
