"""East-west connection pools (``kernels/pool.py``), read back from the flow and request
tables: the rag gateway takes an idle kept-alive connection to a backend before it opens a new
one. Measured on 30 s of the rag scenario (seed 1) against the same run without pools."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

import trafficgen as tg
from trafficgen.classes.chain import ChainModel
from trafficgen.config.arrivals import BLOCK_NS

from .helpers import TSHARK_CHECKSUMS, TSHARK_FRAME_PROBLEMS, run_tshark


def _block_of_session(sc):
    """Session id -> its arrival block (ids go in session-start order, block by block)."""
    m = ChainModel(sc, "rag")
    blocks = range(-m.warmup_ns // BLOCK_NS, -(-sc.duration_ns // BLOCK_NS))
    edges = np.cumsum([m.sessions(b * BLOCK_NS, (b + 1) * BLOCK_NS)[0].size for b in blocks])
    return lambda s: int(np.searchsorted(edges, s, "right"))


def measure(folder, sc) -> dict:
    """New connections opened while another of the same gateway to the same backend was open
    and idle (no request of it in flight), all and those of one pool (their sessions in one
    arrival block); requests per connection."""
    f = pq.read_table(folder / "flows.parquet").to_pandas()
    r = pq.read_table(folder / "requests.parquet").to_pandas()
    busy = {fid: g[["start_ns", "end_ns"]].to_numpy() for fid, g in r.groupby("flow_id")}
    block = _block_of_session(sc)
    idle = same_pool = 0
    for _, g in f.groupby(["src_ip", "dst_ip", "dst_port"]):
        rows = g.sort_values("start_ns")[["flow_id", "start_ns", "end_ns", "session_id"]].to_numpy()
        for k, (_fid, t, _end, s) in enumerate(rows):
            for fid2, t2, e2, s2 in rows[:k]:
                b = busy.get(fid2, np.empty((0, 2)))
                if t2 < t < e2 and not ((b[:, 0] <= t) & (t <= b[:, 1])).any():
                    idle += 1
                    same_pool += block(s) == block(s2)
                    break
    # a pooled connection carries one request at a time (HTTP/1.1 keep-alive): each starts
    # after the one before it on the connection has ended
    overlap = sum(int((b[1:, 0] <= np.sort(b[:, 1])[:-1]).sum())
                  for b in (x[np.argsort(x[:, 0])] for x in busy.values()))
    return {"flows": len(f), "idle": idle, "same_pool": same_pool, "overlap": overlap,
            "one_request": int((f["requests"] == 1).sum()), "requests": int(f["requests"].sum())}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for name, over in (("pooled", []), ("unpooled", ["rag.pool_size=0"])):
        folder = tmp_path_factory.mktemp(name)
        sc = tg.load_scenario("rag", over, duration="30s", seed=1)
        tg.generate(sc, pcap=folder / "cap.pcap", flows=folder / "flows.parquet",
                    requests=folder / "requests.parquet")
        out[name] = (folder, measure(folder, sc))
    return out


def test_the_gateway_takes_idle_pooled_connections(runs):
    pooled, unpooled = runs["pooled"][1], runs["unpooled"][1]
    print(pooled, unpooled)
    # without pools, most new connections open beside an idle one (the 661 of 944)
    assert unpooled["idle"] > 0.5 * unpooled["flows"]
    assert unpooled["same_pool"] > 0.15 * unpooled["flows"]  # 193 of 944
    # pooled: never beside an idle one of its pool (a few: a call's busy time is its planned
    # bound, a little past its last byte)
    assert pooled["same_pool"] <= 0.02 * pooled["flows"]
    assert pooled["overlap"] == 0 == unpooled["overlap"]
    assert pooled["flows"] < 0.8 * unpooled["flows"]
    assert abs(pooled["requests"] - unpooled["requests"]) < 0.02 * unpooled["requests"]
    assert pooled["requests"] / pooled["flows"] > 1.3 * unpooled["requests"] / unpooled["flows"]
    assert pooled["one_request"] < 0.6 * unpooled["one_request"]


def test_pooled_capture_is_clean(tshark, runs):
    bad = run_tshark(tshark, runs["pooled"][0] / "cap.pcap", *TSHARK_CHECKSUMS, "-Y",
                     TSHARK_FRAME_PROBLEMS, "-T", "fields", "-e", "frame.number").split()
    assert bad == []


def test_pools_do_not_depend_on_windows_or_workers(tmp_path):
    sc = tg.load_scenario("rag", ["rag.rate=40/s"], duration="70s", seed=2)
    ref = tmp_path / "ref.pcap"
    tg.generate(sc, pcap=ref)
    for i, kw in enumerate(({"window": "7s", "batch_packets": 333}, {"workers": 2})):
        again = tmp_path / f"again{i}.pcap"
        tg.generate(sc, pcap=again, **kw)
        assert again.read_bytes() == ref.read_bytes(), kw
