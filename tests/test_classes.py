"""The flow classes beyond chat, each against its targets: token tables and arrivals against the
real traces where there are some, the published figures where there are not, and the wire shape
each class puts on the wire."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import trafficgen as tg
from trafficgen.analysis.stats import arrival_stats
from trafficgen.schema import CLASS_CODE as CLASS_CODE_

from .helpers import FANOUT, batch_tables, lognormal_cdf, trace_times, trace_tokens

S = 10**9


@pytest.fixture(scope="module")
def coding_hour():
    """An hour of the built-in coding scenario at the code trace's rate, seeds 1-4."""
    return [batch_tables(tg.load_scenario("coding", ["coding.rate=2.45/s"], duration="1h", seed=s),
                         "requests")[0]
            for s in (1, 2, 3, 4)]


def test_coding_tokens_match_the_azure_code_trace(coding_hour):
    trace = trace_tokens("azure-llm-2023-code.csv")
    req = np.concatenate(coding_hour)
    for i, column in enumerate(("prompt_tokens", "output_tokens")):
        ks = stats.ks_2samp(req[column], trace[:, i]).statistic
        assert ks < 0.04, f"{column}: KS distance {ks:.3f} from the Azure code trace"
    assert np.median(req["output_tokens"]) == pytest.approx(13, abs=1)  # MODELS.md: 13 / 55
    assert np.quantile(req["output_tokens"], 0.9) == pytest.approx(55, rel=0.1)
    # negative control: the conversation trace's prompts are another population
    conv = trace_tokens("azure-llm-2023-conv.csv")
    assert stats.ks_2samp(req["prompt_tokens"], conv[:, 0]).statistic > 0.1


def test_coding_arrivals_are_as_bursty_as_the_code_trace(coding_hour):
    """models/coding.toml's fit: the median over four seeds of gap cv, IDC at 1/10/60 s and
    Hurst, against the trace (an on/off source: one hour of it varies a lot by seed)."""
    trace = arrival_stats(trace_times("azure-llm-2023-code.csv"))
    ours = [arrival_stats(np.sort(r["start_ns"])) for r in coding_hour]
    med = lambda f: float(np.median([f(a) for a in ours]))  # noqa: E731
    assert med(lambda a: a["rate_per_s"]) == pytest.approx(trace["rate_per_s"], rel=0.3)
    assert med(lambda a: a["gap_cv"]) == pytest.approx(trace["gap_cv"], rel=0.3)
    for scale in ("1s", "10s", "60s"):
        assert med(lambda a, scale=scale: a["idc"][scale]) == pytest.approx(trace["idc"][scale], rel=0.4), scale
    assert med(lambda a: a["hurst"]) == pytest.approx(trace["hurst"], abs=0.08)
    # negative control: the same sessions without the on/off gate are nowhere near as bursty
    flat = batch_tables(tg.load_scenario(
        "coding", ["coding.rate=2.45/s", 'coding.arrivals={process="gamma", cv=1.5}'],
        duration="1h", seed=1), "requests")[0]
    assert arrival_stats(np.sort(flat["start_ns"]))["gap_cv"] < trace["gap_cv"] / 3


def per_request(packets, mask, values, n):
    """Sum of ``values`` over the packets in ``mask``, per request id (0..n-1)."""
    sel = mask & (packets["request_id"] >= 0)
    return np.bincount(packets["request_id"][sel], weights=values[sel].astype(np.float64),
                       minlength=n)


@pytest.fixture(scope="module")
def reasoning_run():
    sc = tg.load_scenario("reasoning", ["reasoning.rate=20/s", "topology.capture=server",
                                        "reasoning.retrieval_share=0"],  # its own rows only
                          duration="3m", seed=3)
    return (sc, *batch_tables(sc, "packets", "requests"))


def test_reasoning_output_lengths_have_the_second_mode(reasoning_run):
    """Output tokens (reasoning included) against ServeGen's DeepSeek-R1 figures."""
    _, _, req = reasoning_run
    out = req["output_tokens"].astype(np.float64)
    assert np.median(out) == pytest.approx(792, rel=0.08)
    assert out.mean() == pytest.approx(1527, rel=0.12)
    assert np.quantile(out, 0.99) == pytest.approx(12607, rel=0.2)
    assert np.mean(out >= 8000) == pytest.approx(0.04, abs=0.012)  # the long second mode
    prompt = req["prompt_tokens"].astype(np.float64)
    assert np.median(prompt) == pytest.approx(208, rel=0.12)
    assert np.quantile(prompt, 0.9) == pytest.approx(2092, rel=0.2)


def test_reasoning_share_follows_its_distribution(reasoning_run):
    sc, _, req = reasoning_run
    share = req["reasoning_tokens"] / req["output_tokens"]
    big = req["output_tokens"] >= 200  # rounding to whole tokens blurs short answers
    d = sc.reasoning.reasoning
    assert stats.kstest(share[big], stats.uniform(d.a, d.b - d.a).cdf).pvalue > 1e-3
    assert share.mean() == pytest.approx(0.70, abs=0.02)  # ServeGen: mean ~0.70
    assert (req["reasoning_tokens"] < req["output_tokens"]).all()


def test_reasoning_is_silent_then_streams(reasoning_run):
    """Between the request and the first visible token: the first-token wait plus the hidden
    tokens at the mean gap, broken only by keep-alive comments every ``keepalive_every``."""
    sc, packets, req = reasoning_run
    from trafficgen.classes.chat import ChatModel
    mean_gap = ChatModel(sc, "reasoning").mean_gap
    p = sc.reasoning
    n = int(req["request_id"].max()) + 1
    data_down = (packets["direction"] == 1) & (packets["payload_len"] > 0)
    phase = packets["phase"]
    from trafficgen.schema import PHASE_CODE
    thinking = per_request(packets, data_down & (phase == PHASE_CODE["thinking"]),
                           np.ones(packets.shape[0]), n)
    rid = req["request_id"]
    silence = req["reasoning_tokens"].astype(np.int64) * mean_gap
    want = np.maximum(0, (silence - 1) // p.keepalive_every)
    assert np.array_equal(thinking[rid].astype(np.int64), want)
    assert want.max() >= 2  # long silences are in the run
    # the first visible token: at least the silence after the upload was seen (server side)
    vis = data_down & (phase == PHASE_CODE["stream"]) & (packets["request_id"] >= 0)
    first_vis = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first_vis, packets["request_id"][vis], packets["ts_ns"][vis])
    up_end = np.zeros(n, np.int64)
    up = (packets["direction"] == 0) & (phase == PHASE_CODE["request"]) & (packets["request_id"] >= 0)
    np.maximum.at(up_end, packets["request_id"][up], packets["ts_ns"][up])
    wait = first_vis[rid] - up_end[rid]
    assert (wait >= silence + p.ttft.lo).all()
    assert np.median(wait - silence) == pytest.approx(p.ttft.quantile(0.5), rel=0.15)
    # negative control: chat has no thinking phase
    chat_packets, _ = batch_tables(tg.load_scenario("chat", ["chat.rate=10/s"], duration="20s", seed=3),
                                   "packets", "requests")
    assert not (chat_packets["phase"] == PHASE_CODE["thinking"]).any()


@pytest.fixture(scope="module")
def multimodal_run():
    """Text and image tokens fixed, so each upload gives back its images' bytes."""
    sc = tg.load_scenario("multimodal", ["multimodal.rate=6/s", "multimodal.prompt_tokens=100",
                                         "multimodal.image_tokens=500", "multimodal.voice_rate=0",
                                         "multimodal.video_rate=0"], duration="3m", seed=4)
    return (sc, *batch_tables(sc, "packets", "requests"))


def test_images_per_request_follow_the_weights(multimodal_run):
    sc, _, req = multimodal_run
    counts = np.bincount(req["images"], minlength=7)[1:7]
    weights = np.array([80, 7, 8, 2, 2, 1], np.float64)
    expected = weights / weights.sum() * counts.sum()
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    assert (req["images"] >= 1).all()
    assert np.array_equal(req["prompt_tokens"], 100 + 500 * req["images"])


def test_image_bytes_ride_upstream_base64(multimodal_run):
    """Each one-image upload, less its text and envelope and TLS records, is 4/3 of one image
    drawn from ``image_bytes`` (KS against the truncated lognormal)."""
    sc, packets, req = multimodal_run
    p = sc.multimodal
    n = int(req["request_id"].max()) + 1
    up = (packets["direction"] == 0) & (packets["phase"] == 1)  # request phase
    wire = per_request(packets, up, packets["payload_len"], n)[req["request_id"]]
    plain = wire - 22 * np.ceil(wire / (16384 + 22))  # TLS 1.3 records of up to 16 KiB
    text = round(100 * p.bytes_per_token) + p.request_overhead_bytes
    one = req["images"] == 1
    image = (plain[one] - text) * 3 / 4
    assert stats.kstest(image, lognormal_cdf(p.image_bytes)).pvalue > 1e-3
    assert stats.kstest(image * 3 / 4, lognormal_cdf(p.image_bytes)).pvalue < 1e-3  # not raw
    assert np.median(req["bytes_up"] / req["bytes_down"]) > 3  # upstream dominates


@pytest.fixture(scope="module")
def agentic_run():
    """Agents at 12 LLM calls/s for 20 minutes, captured at the agent runtime."""
    sc = tg.load_scenario("agentic", ["agentic.rate=12/s"], duration="20m", seed=6)
    return (sc, *batch_tables(sc, "packets", "requests"))


def test_agentic_calls_per_turn_and_context(agentic_run):
    """Copilot coding-agent figures: 7.83 LLM calls and 7.3 tool calls per turn, ~68K prompt
    tokens and ~527 output tokens per LLM call."""
    _, _, req = agentic_run
    llm = req["kind"] == 0
    tool = req["kind"] == 1
    # whole turns only: those whose session started inside the run and that ended before it
    turn = req["session_id"] * 4096 + req["turn"]
    _, idx, inv = np.unique(turn, return_index=True, return_inverse=True)
    first_t = np.full(idx.shape[0], np.iinfo(np.int64).max)
    np.minimum.at(first_t, inv, req["start_ns"])
    whole = (first_t > req["start_ns"].min() + 40 * 60 * S // 20) & \
            (first_t < req["start_ns"].min() + 10 * 60 * S)
    keep = whole[inv]
    n_turns = int(whole.sum())
    assert n_turns > 200
    assert (llm & keep).sum() / n_turns == pytest.approx(7.83, rel=0.15)
    assert (tool & keep).sum() / n_turns == pytest.approx(7.3, rel=0.15)
    assert req["prompt_tokens"][llm].mean() == pytest.approx(68_000, rel=0.2)
    assert req["output_tokens"][llm].mean() == pytest.approx(527, rel=0.1)
    assert (req["bytes_up"][llm].sum() > req["bytes_down"][llm].sum())  # upstream dominates
    assert (req["tool_call"][llm] == -1).all() and (req["tool_call"][tool] >= 0).all()


def test_agentic_context_grows_along_the_chain(agentic_run):
    sc, _, req = agentic_run
    llm = req[req["kind"] == 0]
    order = np.lexsort((llm["llm_call"], llm["turn"], llm["session_id"]))
    a = llm[order]
    same = (a["session_id"][1:] == a["session_id"][:-1]) & (a["turn"][1:] == a["turn"][:-1]) \
        & (a["llm_call"][1:] == a["llm_call"][:-1] + 1)
    grew = a["prompt_tokens"][1:] >= a["prompt_tokens"][:-1] + a["output_tokens"][:-1]
    capped = a["prompt_tokens"][1:] == sc.agentic.max_context_tokens
    assert same.sum() > 1000 and (grew | capped)[same].all()


def test_agentic_chain_is_causal_on_the_wire(agentic_run):
    """At the agent: each tool call starts after the reply that asked for it has ended, and the
    next LLM call after every tool answer of the step has arrived (planned on the clock)."""
    sc, _, req = agentic_run
    llm, tool = req[req["kind"] == 0], req[req["kind"] == 1]
    end_of = {(int(r["session_id"]), int(r["turn"]), int(r["llm_call"])): int(r["end_ns"]) for r in llm}
    start_of = {k: None for k in end_of}
    for r in llm:
        start_of[(int(r["session_id"]), int(r["turn"]), int(r["llm_call"]))] = int(r["start_ns"])
    checked = 0
    tools_done = {}
    for r in tool:
        k = (int(r["session_id"]), int(r["turn"]), int(r["llm_call"]))
        if k in end_of:
            assert r["start_ns"] > end_of[k], k
            checked += 1
        tools_done[k] = max(tools_done.get(k, 0), int(r["end_ns"]))
    for (s, t, j), done in tools_done.items():
        nxt = start_of.get((s, t, j + 1))
        if nxt is not None:
            assert nxt > done, (s, t, j)
    assert checked > 1000
    assert tool["flow_id"].shape[0] == np.unique(tool["flow_id"]).shape[0]  # a connection each


def test_agentic_parallel_tools_follow_their_weights(agentic_run):
    sc, _, req = agentic_run
    llm, tool = req[req["kind"] == 0], req[req["kind"] == 1]
    step = lambda a: a["session_id"] * 2**24 + a["turn"] * 4096 + a["llm_call"]  # noqa: E731
    last = {}
    for r in llm:
        key = (int(r["session_id"]), int(r["turn"]))
        last[key] = max(last.get(key, -1), int(r["llm_call"]))
    # steps followed by another call in the same turn: their tools are complete in the run
    ks = step(llm)
    nxt = set(ks.tolist())
    followed = np.array([k + 1 in nxt for k in ks.tolist()])
    counts = np.bincount(np.searchsorted(np.sort(ks[followed]), step(tool))
                         [np.isin(step(tool), ks[followed])], minlength=int(followed.sum()))
    hist = np.bincount(counts, minlength=4)[:4]
    w = np.array([15, 65, 17, 3], np.float64)
    assert stats.chisquare(hist, w / w.sum() * hist.sum()).pvalue > 1e-3


@pytest.fixture(scope="module")
def rag_run():
    sc = tg.load_scenario("rag", ["rag.rate=40/s", "topology.capture=server"], duration="3m", seed=8)
    return (sc, *batch_tables(sc, "packets", "requests"))


def test_rag_chains_embed_search_rerank(rag_run):
    sc, packets, req = rag_run
    p = sc.rag
    kinds = {k: req[req["kind"] == code] for k, code in (("embed", 2), ("search", 3), ("rerank", 4))}
    assert kinds["rerank"].shape[0] / kinds["search"].shape[0] == pytest.approx(p.rerank_share, abs=0.03)
    by = {k: {(int(r["session_id"]), int(r["turn"])): r for r in v} for k, v in kinds.items()}
    n = 0
    for key, e in by["embed"].items():
        s = by["search"].get(key)
        if s is None:
            continue
        assert s["start_ns"] > e["end_ns"]
        r = by["rerank"].get(key)
        if r is not None:
            assert r["start_ns"] > s["end_ns"]
            assert r["prompt_tokens"] == e["prompt_tokens"] + s["output_tokens"]
        n += 1
    assert n > 3000
    # a search returns top-k chunks of 512..1024 tokens
    chunks = kinds["search"]["output_tokens"]
    assert chunks.min() >= 2 * 512 and chunks.max() <= 10 * 1024
    # the gateway keeps a conversation's connection to each backend alive (a connection per
    # call would make this 1)
    flows_per_request = np.unique(req["flow_id"]).shape[0] / req.shape[0]
    assert flows_per_request < 0.7


def test_rag_service_latency_at_the_server(rag_run):
    """Captured at the backends: from a request's last byte to its answer's first byte is the
    server's parsing of the request (``parse_delay``) and then the service's latency (KS
    against the sum of the two configured lognormals, drawn)."""
    sc, packets, req = rag_run
    n = int(req["request_id"].max()) + 1
    up = (packets["direction"] == 0) & (packets["payload_len"] > 0) & (packets["request_id"] >= 0)
    last_up = np.zeros(n, np.int64)
    np.maximum.at(last_up, packets["request_id"][up], packets["ts_ns"][up])
    rng = np.random.default_rng(1)
    for code, svc in ((2, sc.rag.embed), (4, sc.rag.rerank)):
        r = req[req["kind"] == code]
        lat = (r["first_byte_ns"] - last_up[r["request_id"]]).astype(np.float64)
        want = _lognormal_draws(svc.latency, rng) + _lognormal_draws(sc.rag.parse_delay, rng)
        assert stats.ks_2samp(lat, want).pvalue > 1e-3, code
        if code == 2:  # next to the embedder's ~18 ms, the parsing shows
            assert stats.kstest(lat, lognormal_cdf(svc.latency)).pvalue < 1e-3
    wrong = (req[req["kind"] == 2]["first_byte_ns"] - last_up[req[req["kind"] == 2]["request_id"]]) * 1.3
    assert stats.ks_2samp(wrong, want).pvalue < 1e-3


def _lognormal_draws(d, rng, n=200_000):
    """Draws of a (possibly truncated) lognormal Dist, by scipy's inverse CDF."""
    base = stats.lognorm(s=d.b, scale=math.exp(d.a))
    lo = base.cdf(d.lo) if d.lo > 0 else 0.0
    hi = base.cdf(d.hi) if math.isfinite(d.hi) else 1.0
    return base.ppf(lo + (hi - lo) * rng.random(n))


def test_reasoning_requests_fan_out_to_rag_lookups():
    """A share of reasoning requests start retrieval chains at the gateway (rag class): as many
    chains as the share says, ``retrieval_lookups`` lookups each on average, each chain's first
    lookup right after a reasoning request's first byte."""
    sc = tg.load_scenario("reasoning", FANOUT + ["topology.capture=gateway"], duration="3m", seed=7)
    _, req = batch_tables(sc, "packets", "requests")
    reasoning = req[req["class"] == CLASS_CODE_["reasoning"]]
    rag = req[req["class"] == CLASS_CODE_["rag"]]
    embeds = rag[rag["kind"] == 2]
    chains = np.unique(embeds["session_id"])
    n = reasoning.shape[0]
    assert chains.shape[0] == pytest.approx(0.4 * n, abs=4 * math.sqrt(0.24 * n))
    assert embeds.shape[0] / chains.shape[0] == pytest.approx(2.0, rel=0.15)
    first = np.array([embeds["start_ns"][embeds["session_id"] == c].min() for c in chains])
    starts = np.sort(reasoning["start_ns"])
    before = starts[np.searchsorted(starts, first, "right") - 1]
    # (the nearest request before a chain is its own but where another started in between)
    assert np.mean(first - before >= 5_000_000) > 0.9 and np.median(first - before) < 50_000_000
    # none at the client edge (east-west), and none without a share
    client = batch_tables(tg.load_scenario("reasoning", FANOUT, duration="30s", seed=7),
                          "packets", "requests")[1]
    assert not (client["class"] == CLASS_CODE_["rag"]).any()
    plain = batch_tables(tg.load_scenario("reasoning", ["topology.capture=gateway", "reasoning.retrieval_share=0"],
                                          duration="30s", seed=7), "packets", "requests")[1]
    assert not (plain["class"] == CLASS_CODE_["rag"]).any()

