"""Trace-driven generation: one request per trace row at its time with its tokens (the Azure
code trace at client and server taps, Mooncake into kv_transfer), sessions, time scale."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

import trafficgen as tg
from trafficgen.errors import TrafficgenError
from trafficgen.traces.read import read_trace
from trafficgen.traces.scenario import trace_scenario

from .helpers import batch_tables, real_trace

MS = 10**6


def requests_of(sc):
    r = batch_tables(sc, "requests")[0]
    return r[np.lexsort((r["output_tokens"], r["prompt_tokens"], r["start_ns"]))]


def rows_of(tr, keep):
    o = np.lexsort((tr.output[keep], tr.prompt[keep], tr.times_ns[keep]))
    return tr.times_ns[keep][o], tr.prompt[keep][o], tr.output[keep][o]


@pytest.mark.parametrize("capture", ["client", "server"])
def test_azure_code_trace_reproduced(capture):
    tr = read_trace(real_trace("azure-llm-2023-code.csv"))
    sc = trace_scenario("coding", tr, [f"topology.capture={capture}"], duration="10m", seed=3)
    r = requests_of(sc)
    keep = tr.times_ns - tr.times_ns[0] < 600 * 10**9
    t, prompt, output = rows_of(tr, keep)
    assert r.shape[0] == keep.sum() > 1400  # one model call per row
    assert np.array_equal(r["prompt_tokens"], prompt) and np.array_equal(r["output_tokens"], output)
    err = np.abs(r["start_ns"] - t)  # absolute trace: the capture clock is the trace's
    assert err.max() < MS, err.max()
    # the first connections open before the capture's first request, never before its start
    assert sc.start_ns < r["start_ns"][0] <= sc.start_ns + 2000 * MS
    # negative control: a normal run of the scenario shares nothing of this
    normal = requests_of(tg.load_scenario("coding", ["coding.rate=2.45/s"], duration="60s", seed=3))
    assert not np.array_equal(normal["prompt_tokens"][:50], prompt[:50])


def test_time_scale_and_determinism(tmp_path):
    tr = read_trace(real_trace("azure-llm-2023-conv.csv"))
    a = trace_scenario("chat", tr, duration="60s", time_scale=0.5)
    r = requests_of(a)
    keep = (tr.times_ns - tr.times_ns[0]) * 0.5 < 60 * 10**9
    t, prompt, _ = rows_of(tr, keep)
    assert r.shape[0] == keep.sum() and np.array_equal(r["prompt_tokens"], prompt)
    rel = r["start_ns"] - r["start_ns"][0]
    assert np.abs(rel - (t - t[0]) * 0.5).max() < MS
    for k, window in ((1, "10s"), (2, "10s"), (3, "1s")):
        tg.generate(a, pcap=tmp_path / f"{k}.pcap", requests=tmp_path / f"{k}.parquet", window=window)
    assert (tmp_path / "1.pcap").read_bytes() == (tmp_path / "2.pcap").read_bytes() \
        == (tmp_path / "3.pcap").read_bytes()  # the window never changes a byte


def test_sessions_turns_and_keepalive(tmp_path):
    f = tmp_path / "s.csv"
    f.write_text("time_s,input_tokens,output_tokens,session,client\n"
                 "0,100,5,7,3\n2,200,6,7,3\n300,300,7,7,3\n1,50,4,9,11\n")
    sc = trace_scenario("chat", f)  # chat keepalive 60 s
    r = requests_of(sc)
    assert r["prompt_tokens"].tolist() == [100, 50, 200, 300]
    assert np.array_equal(r["start_ns"] - r["start_ns"][0], np.array([0, 1, 2, 300]) * 10**9)
    by_p = {int(p): row for p, row in zip(r["prompt_tokens"], r)}
    assert by_p[100]["session_id"] == by_p[200]["session_id"] == by_p[300]["session_id"]
    assert by_p[100]["flow_id"] == by_p[200]["flow_id"] != by_p[300]["flow_id"]  # idle > keepalive
    assert by_p[200]["turn"] == 1 and by_p[300]["turn"] == 2
    assert by_p[100]["client_id"] == 3 and by_p[50]["client_id"] == 11


def test_mooncake_cached_prefix_shrinks_kv_transfers():
    tr = read_trace(real_trace("mooncake-conversation.jsonl"))
    small = ["kv_transfer.model={layers=4, kv_heads=1, head_dim=16}", "kv_transfer.prefill_rate=0"]
    sc = trace_scenario("kv-transfer", tr, small, duration="30s")
    r = requests_of(sc)
    keep = tr.times_ns - tr.times_ns[0] < 30 * 10**9
    uncached = np.maximum(1, tr.prompt[keep] - tr.cached[keep])
    assert sorted(zip(r["prompt_tokens"].tolist(), r["output_tokens"].tolist())) == \
        sorted(zip(tr.prompt[keep].tolist(), uncached.tolist()))
    t = np.sort(tr.times_ns[keep] - tr.times_ns[0])
    assert np.abs(np.sort(r["start_ns"] - sc.start_ns) - t).max() < MS
    # bytes written are the uncached tokens' KV (4 layers x 2 x 16 values x 2 B per token)
    wire = np.concatenate([b.packets for b in tg.batches(sc, frames=False)])
    assert wire["payload_len"][wire["direction"] == 0].sum() == uncached.sum() * 4 * 64
    # negative control: the same trace without hash_ids falls back to the scenario's model
    tr.cached = None
    r2 = requests_of(trace_scenario("kv-transfer", tr, small, duration="30s"))
    assert r2["output_tokens"].sum() != r["output_tokens"].sum()


def test_class_column_and_errors(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("time_s,input_tokens,output_tokens,class\n0,10,2,chat\n0.5,20,3,coding\n")
    sc = trace_scenario("enterprise-mix", f)
    r = requests_of(sc)
    assert r.shape[0] == 2 and set(sc.trace) == {"chat", "coding"}
    f.write_text("time_s,input_tokens,output_tokens,class\n0,10,2,video\n")
    with pytest.raises(TrafficgenError, match="class 'video'"):
        trace_scenario("chat", f)
    with pytest.raises(TrafficgenError, match="time-scale"):
        trace_scenario("chat", f, time_scale=-1.0)


def test_cli_trace(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("time_s,input_tokens,output_tokens\n0,10,2\n1.5,20,3\n")
    out = tmp_path / "r.parquet"
    done = subprocess.run([sys.executable, "-m", "trafficgen", "generate", "chat", "--trace", str(f),
                           "--requests", str(out), "-q"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(pq.read_table(out).column("prompt_tokens").to_pylist()) == [10, 20]
    f.write_text("time_s,input_tokens,output_tokens\n0,10,2\n1.5,2x0,3\n")
    bad = subprocess.run([sys.executable, "-m", "trafficgen", "generate", "chat", "--trace", str(f),
                          "--requests", str(tmp_path / "x.parquet")], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr == f"error: {f}: line 3: input_tokens: expected a whole number of tokens, got '2x0'\n"
    assert not (tmp_path / "x.parquet").exists()
