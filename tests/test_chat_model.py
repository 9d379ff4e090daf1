"""The chat model against its targets: Poisson session arrivals, geometric turns, token counts
against the scenario's quantile tables and the Azure conversation trace they were fitted to, time
to first token and inter-token gaps as seen on the wire (server-side capture), rate scaling.
Each statistical test has a negative control where a near miss could slip through.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import trafficgen as tg
from trafficgen.api import batches
from trafficgen.classes.chat import BLOCK_NS, ChatModel
from trafficgen.kernels import chat as kc
from trafficgen.kernels.rng import derive_range, key_of
from trafficgen.schema import DIR_DOWN, DIR_UP, PHASE_CODE

from .helpers import lognormal_cdf, trace_tokens

ALPHA = 1e-3
RATE, DURATION_S = 40, 120
AZURE_CONV = "azure-llm-2023-conv.csv"
POISSON = 'chat.arrivals={process="poisson"}'  # for tests of rates, where bursts are noise


def table_cdf(d):
    """CDF of a quantile-table Dist (log-linear between knots)."""
    ps = np.array([p for p, _ in d.knots])
    lv = np.log([v for _, v in d.knots])
    return lambda x: np.interp(np.log(np.clip(x, d.lo, d.hi)), lv, ps)


@pytest.fixture(scope="module")
def run():
    """40 calls/s for 2 minutes, captured at the server: tables only (no frames are built)."""
    sc = tg.load_scenario("chat", [f"chat.rate={RATE}/s", "topology.capture=server", POISSON],
                          duration=f"{DURATION_S}s", seed=5)
    packets, requests, flows = [], [], []
    for b in batches(sc, frames=False):
        assert b.frames is None
        packets.append(b.packets)
        requests.append(b.requests)
        flows.append(b.flows)
    return sc, np.concatenate(packets), np.concatenate(requests), np.concatenate(flows)


# --- arrivals and sessions ------------------------------------------------------------------------

def test_session_arrivals_are_poisson():
    sc = tg.load_scenario("chat", ["chat.rate=30/s", POISSON], duration="3h", seed=2)
    model = ChatModel(sc)
    rate = model.session_rate_per_ns * 1e9
    blocks = [model.block_arrivals(b)[1] for b in range(120)]
    gaps = np.concatenate([np.diff(a) for a in blocks]) / 1e9
    assert stats.kstest(gaps, stats.expon(scale=1 / rate).cdf).pvalue > ALPHA
    assert stats.kstest(gaps, stats.expon(scale=1 / (rate * 1.03)).cdf).pvalue < ALPHA
    counts = np.array([a.shape[0] for a in blocks])
    expected = rate * BLOCK_NS / 1e9
    assert counts.mean() == pytest.approx(expected, rel=4 / math.sqrt(expected * 120))
    # index of dispersion of a Poisson count is 1; chi-square with 119 degrees of freedom
    dispersion = counts.var(ddof=1) * 119 / counts.mean()
    assert stats.chi2(119).ppf(ALPHA / 2) < dispersion < stats.chi2(119).ppf(1 - ALPHA / 2)
    for a in blocks[:3]:
        assert np.all(np.diff(a) >= 0)


def test_session_arrivals_do_not_depend_on_the_window():
    """The sessions of [t0, t1) are the same however the span is cut."""
    model = ChatModel(tg.load_scenario("chat", ["chat.rate=25/s"], duration="10m", seed=9))
    k_all, s_all = model.sessions(-BLOCK_NS // 2, 5 * BLOCK_NS + 7)
    cuts = [-BLOCK_NS // 2, 1, 10**9 + 3, 2 * BLOCK_NS, 2 * BLOCK_NS + 1, 5 * BLOCK_NS + 7]
    parts = [model.sessions(a, b) for a, b in zip(cuts, cuts[1:])]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), k_all)
    assert np.array_equal(np.concatenate([p[1] for p in parts]), s_all)


def test_turns_per_session_are_geometric_with_the_configured_mean():
    keys = np.empty(60_000, np.uint64)
    derive_range(key_of(3, 1), 0, keys)
    turns = np.empty(keys.shape[0], np.int64)
    kc.turn_counts(keys, 3.0, turns)
    assert turns.min() == 1
    assert turns.mean() == pytest.approx(3.0, rel=0.02)
    k = np.arange(1, 15)
    observed = np.array([(turns == i).sum() for i in k] + [(turns >= 15).sum()])
    p = 1 / 3
    expected = np.append(p * (1 - p) ** (k - 1), (1 - p) ** 14) * keys.shape[0]
    assert stats.chisquare(observed, expected).pvalue > ALPHA


def test_request_rate_matches_and_scales(run):
    sc, _, requests, _ = run
    n = requests.shape[0]
    assert n == pytest.approx(RATE * DURATION_S, rel=0.1)
    start = requests["start_ns"] - sc.start_ns
    # calls begin inside the run; their first byte reaches the (server-side) capture point
    # after any handshake and the path delay
    assert start.min() >= 0 and start.max() < sc.duration_ns + 5 * 10**9
    assert np.mean(start < sc.duration_ns) > 0.99
    slow = tg.load_scenario("chat", [f"chat.rate={RATE // 4}/s", POISSON], duration=f"{DURATION_S}s",
                            seed=5)
    n_slow = sum(b.requests.shape[0] for b in batches(slow, frames=False))
    assert n / n_slow == pytest.approx(4, rel=0.2)


# --- token counts ---------------------------------------------------------------------------------

@pytest.mark.parametrize("column, key", [("prompt_tokens", "prompt_tokens"),
                                         ("output_tokens", "output_tokens")])
def test_token_counts_follow_the_scenario_tables(run, column, key):
    sc, _, requests, _ = run
    d = getattr(sc.chat, key)
    x = requests[column].astype(np.float64)
    assert x.min() >= d.lo and x.max() <= d.hi
    # counts are rounded draws: compare at the knots, within sampling error and the rounding
    n = x.shape[0]
    for p, v in d.knots[1:-1]:
        lo, hi = np.mean(x < v - 0.5), np.mean(x <= v + 0.5)
        tol = 4 * math.sqrt(p * (1 - p) / n) + 1e-9
        assert lo - tol <= p <= hi + tol, f"{column}: P(x <= {v}) should be {p}, got {lo}..{hi}"
    # and as a whole (the rounding moves the CDF by well under the KS bound here)
    assert stats.kstest(x + np.random.default_rng(0).uniform(-0.5, 0.5, n),
                        table_cdf(d)).statistic < 1.6 / math.sqrt(n)


def test_token_counts_match_the_azure_conversation_trace(run):
    trace = trace_tokens(AZURE_CONV)
    _, _, requests, _ = run
    for i, column in enumerate(("prompt_tokens", "output_tokens")):
        ks = stats.ks_2samp(requests[column], trace[:, i]).statistic
        assert ks < 0.04, f"{column}: KS distance {ks:.3f} from the Azure trace"
        n = requests.shape[0]
        for q in (0.5, 0.9, 0.99):  # the trace's quantiles are ours, within sampling error
            v = np.quantile(trace[:, i], q)
            lo, hi = np.mean(requests[column] < v), np.mean(requests[column] <= v)
            tol = 4 * math.sqrt(q * (1 - q) / n) + 0.005
            assert lo - tol <= q <= hi + tol, (column, q, v, lo, hi)
    # negative control: the trace's code service is a different population
    other = trace_tokens("azure-llm-2023-code.csv")[:, 0]
    assert stats.ks_2samp(requests["prompt_tokens"], other).statistic > 0.1


def test_stream_carries_one_record_per_token(run):
    _, packets, requests, _ = run
    stream = packets[(packets["phase"] == PHASE_CODE["stream"]) & (packets["direction"] == DIR_DOWN)
                     & (packets["payload_len"] > 0)]
    ids, counts = np.unique(stream["request_id"], return_counts=True)
    by_id = dict(zip(requests["request_id"], requests["output_tokens"]))
    # one segment per token chunk, plus the end-of-stream write
    assert all(c == by_id[i] + 1 for i, c in zip(ids, counts))
    assert len(ids) == requests.shape[0]


# --- timing on the wire ---------------------------------------------------------------------------

def _stream_packets(packets):
    p = packets[(packets["payload_len"] > 0) & (packets["direction"] == DIR_DOWN)
                & (packets["phase"] == PHASE_CODE["stream"])]
    return p[np.lexsort((p["ts_ns"], p["request_id"]))]


def test_time_to_first_token_at_the_server(run):
    """At the server, the first token leaves ``ttft`` after the request's last byte arrives."""
    sc, packets, requests, _ = run
    up = packets[(packets["payload_len"] > 0) & (packets["direction"] == DIR_UP)
                 & (packets["phase"] == PHASE_CODE["request"])]
    order = np.lexsort((up["ts_ns"], up["request_id"]))
    up = up[order]
    last = np.r_[up["request_id"][1:] != up["request_id"][:-1], True]
    req_end = dict(zip(up["request_id"][last], up["ts_ns"][last]))
    stream = _stream_packets(packets)
    first = np.r_[True, stream["request_id"][1:] != stream["request_id"][:-1]]
    ttft = np.array([t - req_end[r] for r, t in zip(stream["request_id"][first],
                                                      stream["ts_ns"][first])]) / 1.0
    assert ttft.shape[0] == requests.shape[0]
    target = sc.chat.ttft
    assert stats.kstest(ttft, lognormal_cdf(target)).pvalue > ALPHA
    wrong = tg.load_scenario("chat", ["chat.ttft={median='660ms', p90='2s', max='30s'}"]).chat.ttft
    assert stats.kstest(ttft, lognormal_cdf(wrong)).pvalue < ALPHA
    # the first byte the table reports is the first response byte seen at the capture point
    # (when it reached the tap's link: one that waited there behind another flow's frame is
    # in the capture a few microseconds later, engine/tap.py)
    fb = dict(zip(requests["request_id"], requests["first_byte_ns"]))
    late = np.array([t - fb[r] for r, t in zip(stream["request_id"][first], stream["ts_ns"][first])])
    assert (late >= 0).all() and (late <= 200_000).all() and np.mean(late == 0) > 0.9


def test_inter_token_gaps_on_the_wire(run):
    """Gaps between token records: the itl distribution, with stalls mixed in at stall_prob."""
    sc, packets, _, _ = run
    stream = _stream_packets(packets)
    same = stream["request_id"][1:] == stream["request_id"][:-1]
    # the last gap of each request is the end-of-stream write, not a token gap
    not_last = np.r_[same[1:], False]
    gaps = np.diff(stream["ts_ns"])[same & not_last].astype(np.float64)
    c = sc.chat
    itl = lognormal_cdf(c.itl)
    lo, hi = c.stall.a, c.stall.b

    def mix(x, p=c.stall_prob):
        return (1 - p) * itl(x) + p * np.clip((x - lo) / (hi - lo), 0, 1)

    sample = gaps[:: max(1, gaps.shape[0] // 150_000)]
    assert stats.kstest(sample, mix).pvalue > ALPHA
    assert stats.kstest(sample, lambda x: mix(x, 0.0)).pvalue < ALPHA  # stalls are there
    assert np.mean((gaps >= lo) & (gaps <= hi)) == pytest.approx(c.stall_prob, rel=0.15)
