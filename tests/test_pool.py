"""East-west connection pools (``kernels/pool.py``, ``classes/pooled.py``), read back from the
flow and request tables: the rag gateway takes an idle kept-alive connection to a backend
before it opens a new one, whichever arrival block the calls' sessions started in. Measured
on 30 s of the rag scenario (seed 1) against the same run without pools."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

import trafficgen as tg

from .helpers import TSHARK_CHECKSUMS, TSHARK_FRAME_PROBLEMS, read_pcap, run_tshark

CALL = ["session_id", "turn", "kind", "prompt_tokens", "output_tokens", "client_id"]


def measure(folder) -> dict:
    """New connections opened while another of the same gateway to the same backend was open
    and idle (no request of it in flight); requests per connection."""
    f = pq.read_table(folder / "flows.parquet").to_pandas()
    r = pq.read_table(folder / "requests.parquet").to_pandas()
    busy = {fid: g[["start_ns", "end_ns"]].to_numpy() for fid, g in r.groupby("flow_id")}
    idle = 0
    for _, g in f.groupby(["src_ip", "dst_ip", "dst_port"]):
        rows = g.sort_values("start_ns")[["flow_id", "start_ns", "end_ns"]].to_numpy()
        for k, (_fid, t, _end) in enumerate(rows):
            for fid2, t2, e2 in rows[:k]:
                b = busy.get(fid2, np.empty((0, 2)))
                if t2 < t < e2 and not ((b[:, 0] <= t) & (t <= b[:, 1])).any():
                    idle += 1
                    break
    # a pooled connection carries one request at a time (HTTP/1.1 keep-alive): each starts
    # after the one before it on the connection has ended
    overlap = sum(int((b[1:, 0] <= np.sort(b[:, 1])[:-1]).sum())
                  for b in (x[np.argsort(x[:, 0])] for x in busy.values()))
    return {"flows": len(f), "idle": idle, "overlap": overlap,
            "one_request": int((f["requests"] == 1).sum()), "requests": int(f["requests"].sum()),
            "calls": set(map(tuple, r[CALL].to_numpy()))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for name, over in (("pooled", []), ("unpooled", ["rag.pool_size=0"])):
        folder = tmp_path_factory.mktemp(name)
        sc = tg.load_scenario("rag", over, duration="30s", seed=1)
        tg.generate(sc, pcap=folder / "cap.pcap", flows=folder / "flows.parquet",
                    requests=folder / "requests.parquet")
        out[name] = (folder, measure(folder))
    return out


def test_the_gateway_takes_idle_pooled_connections(runs):
    pooled, unpooled = runs["pooled"][1], runs["unpooled"][1]
    print({k: v for k, v in pooled.items() if k != "calls"}, {k: v for k, v in unpooled.items() if k != "calls"})
    # without pools, most new connections open beside an idle one (the 661 of 944)
    assert unpooled["idle"] > 0.5 * unpooled["flows"]
    # pooled: hardly ever (a call's busy time is its planned bound, a little past its last
    # byte: 5 of 362), whichever block its session started in. Each pool recycles once a
    # minute at a time of its own, so 30 s see about one and a half connections per pool.
    assert pooled["idle"] <= 0.04 * pooled["flows"]
    assert pooled["overlap"] == 0 == unpooled["overlap"]
    assert pooled["flows"] < 0.5 * unpooled["flows"]
    assert pooled["requests"] / pooled["flows"] > 2 * unpooled["requests"] / unpooled["flows"]
    assert pooled["one_request"] < 0.2 * unpooled["one_request"]


def test_pooled_calls_keep_their_sessions(runs):
    """The same calls with the same session ids, pooled or not: a call of an earlier block's
    session, pooled in a later block, names its own session (``EpochSchedule.foreign``). Pooled runs
    issue a few more before the end (no handshake to wait for)."""
    pooled, unpooled = runs["pooled"][1]["calls"], runs["unpooled"][1]["calls"]
    assert unpooled <= pooled
    assert len(pooled - unpooled) < 0.01 * len(unpooled)


def test_pooled_capture_is_clean(tshark, runs):
    bad = run_tshark(tshark, runs["pooled"][0] / "cap.pcap", *TSHARK_CHECKSUMS, "-Y",
                     TSHARK_FRAME_PROBLEMS, "-T", "fields", "-e", "frame.number").split()
    assert bad == []


def test_pools_do_not_depend_on_windows_or_workers(tmp_path):
    sc = tg.load_scenario("rag", ["rag.rate=40/s"], duration="70s", seed=2)
    ref, ref_r = tmp_path / "ref.pcap", tmp_path / "ref.parquet"
    tg.generate(sc, pcap=ref, requests=ref_r)
    for i, kw in enumerate(({"window": "7s", "batch_packets": 333}, {"workers": 2})):
        again, again_r = tmp_path / f"again{i}.pcap", tmp_path / f"again{i}.parquet"
        tg.generate(sc, pcap=again, requests=again_r, **kw)
        assert again.read_bytes() == ref.read_bytes(), kw
        # the session ids of calls pooled across blocks too (a worker's partition names the
        # sessions of blocks other workers made)
        assert pq.read_table(again_r).equals(pq.read_table(ref_r)), kw


def test_pools_recycle_each_at_its_own_time(tmp_path):
    """Each pool recycles its connections once a minute (a block) at a phase of its own: new
    connections open all through the minute, not at its start, and none lives much longer
    than the slot (a call's answer after it)."""
    sc = tg.load_scenario("rag", [], duration="150s", seed=4)
    tg.generate(sc, flows=tmp_path / "flows.parquet")
    f = pq.read_table(tmp_path / "flows.parquet").to_pandas()
    t = (f["start_ns"] - sc.start_ns) / 1e9
    later = t[t > 10]  # (at the capture's start every pool opens its first connection)
    per_bin = np.histogram(later % 60, bins=6, range=(0, 60))[0]
    assert per_bin.min() > 0.5 * per_bin.mean() and per_bin.max() < 1.5 * per_bin.mean(), per_bin
    life = (f["end_ns"] - f["start_ns"]) / 1e9
    assert life.max() < 63 and np.median(life) > 20


def test_a_cut_pooled_run_is_the_start_of_the_whole(tmp_path):
    """A block's pooled slots start up to a block before it (``Engine.early_ns``): the cut and
    the merge of partitions hold their boundary back by that much, so a cut run is still the
    uncut one's start, byte for byte, with workers too."""
    sc = tg.load_scenario("rag", ["rag.rate=20/s"], duration="130s", seed=5)
    whole, cut = tmp_path / "whole.pcap", tmp_path / "cut.pcap"
    tg.generate(sc, pcap=whole, window="7s")
    tg.generate(sc, pcap=cut, stop_at="75s", workers=2)
    a, b = whole.read_bytes(), cut.read_bytes()
    for f in (whole, cut):  # (a boundary not held back: packets out of order)
        assert (np.diff(read_pcap(f)[0]) >= 0).all(), f.name
    assert a.startswith(b) and len(a) > len(b) > 0.5 * len(a)
