"""Failing calls (``kernels/failures.py``): cancelled and timed-out answers, 429 and 503 answers
and their retries, server resets. The shares the request table measures are the configured
ones; on the wire tshark reads the 429 (plaintext mode) and the TCP resets, nothing else is
flagged; an HTTP/2 cancel leaves the connection up for the next turn; and the bytes do not
depend on the window, the batch or the workers."""
from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow.parquet as pq
import pytest

import trafficgen as tg
from trafficgen.classes.chat import ChatModel

from .helpers import TSHARK_CHECKSUMS, TSHARK_PROBLEMS, run_tshark

FAILING = ["chat.cancel=0.3", "chat.rate_limited=0.15", "chat.server_reset=0.05"]


def _requests(path):
    return pq.read_table(path).to_pandas()


def test_measured_shares_are_the_configured_ones(tmp_path):
    """Over some 6,000 calls: 429s among all attempts, timeouts among the answers (the share
    of first bytes later than the timeout, by the ttft distribution and the median RTT), and
    cancels among the answers not timed out, each within 10% of its configured share."""
    timeout = 1.5
    sc = tg.load_scenario("chat", ["chat.rate=200/s", "chat.cancel=0.2", "chat.rate_limited=0.15",
                                   f"chat.timeout={timeout}s"], duration="30s", seed=3)
    tg.generate(sc, requests=tmp_path / "r.parquet")  # the tables alone: no frames
    r = _requests(tmp_path / "r.parquet")
    assert len(r) > 5000
    st = r["status"].astype(str)
    assert abs((st == "rate_limited").mean() / 0.15 - 1) < 0.1
    answered = st[~st.isin(["rate_limited", "error"])]
    m = ChatModel(sc, "chat")
    q = (np.arange(20000) + 0.5) / 20000
    expected = np.mean([sc.chat.ttft.quantile(x) + m.nominal_rtt > timeout * 1e9 for x in q])
    assert 0.05 < expected < 0.6
    assert abs((answered == "timeout").mean() / expected - 1) < 0.1
    rest = answered[answered != "timeout"]
    assert abs((rest == "cancelled").mean() / 0.2 - 1) < 0.1
    # retries: each row after a 429 is its call's next attempt, up to 2
    assert r["retries"].max() == 2 and (r["retries"] > 0).sum() > 0.1 * (st == "rate_limited").sum()
    # what was sent: a 429 carries no tokens, a cancelled answer fewer than a completed one
    assert (r.loc[st == "rate_limited", "output_tokens"] == 0).all()
    assert r.loc[st == "cancelled", "output_tokens"].mean() < 0.8 * r.loc[st == "completed", "output_tokens"].mean()


@pytest.fixture(scope="module")
def plain_failing(tmp_path_factory, make_run):
    sc = tg.load_scenario("chat", ["chat.rate=10/s", "chat.plaintext=http1", "chat.server_port=80",
                                   *FAILING], duration="10s", seed=4)
    return make_run(tmp_path_factory.mktemp("plain_failing"), sc)


def test_tshark_reads_the_429s_and_the_resets(tshark, plain_failing):
    """Plaintext: every 429 row is a response tshark decodes as 429 with its retry-after; every
    cancelled or reset answer a TCP RST (HTTP/1.1: the connection goes); nothing else is
    flagged (tshark calls each RST a warning, expected here) and every checksum is right."""
    run = plain_failing
    r = _requests(run.requests)
    st = r["status"].astype(str)
    out = run_tshark(tshark, run.pcap, "-Y", "http.response.code == 429", "-T", "fields",
                     "-e", "http.response.line")
    lines = out.splitlines()
    assert len(lines) == (st == "rate_limited").sum() > 0
    assert all("retry-after: 1" in ln for ln in lines)
    # (tshark shows a chunked answer once it is whole: not one cut by a reset)
    ok = run_tshark(tshark, run.pcap, "-Y", "http.response.code == 200", "-T", "fields", "-e", "frame.number")
    assert (st == "completed").sum() <= len(ok.split()) <= st.isin(["completed", "cancelled", "error"]).sum()
    rst = run_tshark(tshark, run.pcap, "-Y", "tcp.flags.reset == 1", "-T", "fields", "-e", "ip.src").split()
    assert len(rst) == st.isin(["cancelled", "timeout", "error"]).sum() > 0
    servers = {str(ipaddress.IPv4Address(a)) for a in run.scenario.topology_of("chat").servers}
    assert sum(ip in servers for ip in rst) == (st == "error").sum() > 0  # the server's resets
    bad = run_tshark(tshark, run.pcap, *TSHARK_CHECKSUMS, "-Y",
                     f"({TSHARK_PROBLEMS}) && !(tcp.flags.reset == 1)", "-T", "fields",
                     "-e", "frame.number", "-e", "_ws.expert.message")
    assert bad.strip() == ""


def test_an_h2_cancel_keeps_the_connection_for_the_next_turn(tshark, tmp_path, make_run):
    """TLS with ALPN h2: a cancelled answer's connection carries a later request of its
    session; tshark sees the client's RST_STREAM record (35 bytes: a 13-byte frame in TLS, its length field 30) on
    it, before that request, and no TCP reset."""
    sc = tg.load_scenario("chat", ["chat.rate=10/s", "chat.cancel=0.5", "chat.keepalive=10m",
                                   'chat.think_time={ dist = "uniform", min = "1s", max = "3s" }',
                                   'chat.client_profiles={ chrome = 1.0 }'], duration="10s", seed=6)
    run = make_run(tmp_path, sc)
    r, f = _requests(run.requests), pq.read_table(run.flows).to_pandas()
    assert run_tshark(tshark, run.pcap, "-Y", "tcp.flags.reset == 1", "-T", "fields",
                      "-e", "frame.number").strip() == ""
    cancelled = r[r["status"].astype(str) == "cancelled"]
    later = [(c, r[(r.flow_id == c.flow_id) & (r.start_ns > c.start_ns)]) for c in cancelled.itertuples()]
    later = [(c, nxt.start_ns.min()) for c, nxt in later if len(nxt)]
    assert later
    c, nxt_ns = later[0]
    port = int(f.loc[f.flow_id == c.flow_id, "src_port"].iloc[0])
    out = run_tshark(tshark, run.pcap, "-Y", f"tcp.srcport == {port} && tls.record.length == 30",
                     "-T", "fields", "-e", "frame.time_epoch")
    times = [float(x) * 1e9 for x in out.split()]
    assert any(c.start_ns < t < nxt_ns for t in times)


def test_failures_do_not_depend_on_windows_batches_or_workers(tmp_path):
    sc = tg.load_scenario("chat", ["chat.rate=20/s", "chat.timeout=2s", *FAILING, "chat.server_error=0.05"],
                          duration="20s", seed=2)
    ref, ref_r = tmp_path / "ref.pcap", tmp_path / "ref.parquet"
    tg.generate(sc, pcap=ref, requests=ref_r)
    st = _requests(ref_r)["status"].astype(str)
    assert set(st) == {"completed", "cancelled", "timeout", "rate_limited", "error"}
    for i, kw in enumerate(({"window": "7s", "batch_packets": 333}, {"workers": 2})):
        again, again_r = tmp_path / f"again{i}.pcap", tmp_path / f"again{i}.parquet"
        tg.generate(sc, pcap=again, requests=again_r, **kw)
        assert again.read_bytes() == ref.read_bytes(), kw
        assert pq.read_table(again_r).equals(pq.read_table(ref_r)), kw


def test_agents_retry_failed_tool_calls(tmp_path):
    """``agentic.tool_error``: that share of tool calls is answered with an error (a small
    answer) and retried, the same tool call of the same step, up to twice."""
    sc = tg.load_scenario("agentic", ["agentic.rate=60/s", "agentic.tool_error=0.25"], duration="30s", seed=5)
    tg.generate(sc, requests=tmp_path / "r.parquet")
    r = _requests(tmp_path / "r.parquet")
    t = r[r["kind"].astype(str) == "tool"]
    st = t["status"].astype(str)
    assert len(t) > 1000 and set(st) == {"completed", "error"}
    assert abs((st == "error").mean() / 0.25 - 1) < 0.1  # each attempt fails alike
    assert (r.loc[r["kind"].astype(str) == "llm", "status"].astype(str) == "completed").all()
    assert t["retries"].max() == 2
    key = ["session_id", "turn", "llm_call", "tool_call"]
    for _, g in t.sort_values("start_ns").groupby(key):
        assert list(g["retries"]) == list(range(len(g)))  # a retry follows each error but the last
        assert (g["status"].astype(str).iloc[:-1] == "error").all()
    assert t.loc[st == "error", "bytes_down"].median() < 0.5 * t.loc[st == "completed", "bytes_down"].median()
