"""The engine: the window loop and its batches, ids, and determinism. The seed alone fixes
every byte: the window, the batch size, which outputs are written and whether frames are built
never change the result; another seed does. Batches are the pcap's records; sessions come from
(seed, block, index) keys, so a longer run starts the shorter one's sessions."""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow.parquet as pq
import pytest

import trafficgen as tg

from .helpers import FANOUT, REFERENCE, digest, digests, generate_run, reference_scenario

# --- the seed fixes every byte ---------------------------------------------------------------

def test_same_seed_same_bytes(reference_run, tmp_path):
    again = generate_run(tmp_path, reference_scenario())
    assert digests(again) == digests(reference_run)
    assert again.report["packets"] == reference_run.report["packets"] > 1000


def test_another_seed_differs(reference_run, tmp_path):
    other = generate_run(tmp_path, reference_scenario(seed=6))
    for key, value in digests(other).items():
        assert value != digests(reference_run)[key], key
    a = pq.read_table(reference_run.requests).column("prompt_tokens").to_numpy()
    b = pq.read_table(other.requests).column("prompt_tokens").to_numpy()
    assert not np.array_equal(a[:50], b[:50])


# --- windows and batch sizes change nothing --------------------------------------------------

@pytest.mark.parametrize("window,batch", [("2s", 997), ("7s", 4096), ("60s", 1 << 16),
                                          ("150s", 1 << 24), ("45s", 50_000)])
def test_window_and_batch_size_change_nothing(reference_run, tmp_path, window, batch):
    run = generate_run(tmp_path, reference_scenario(), window=window, batch_packets=batch)
    assert digests(run) == digests(reference_run)


def test_a_mix_of_classes_is_window_independent_too(tmp_path):
    """Several models: ids go block by block, model by model, so neither the window nor the
    batch size changes a byte of the capture or the tables (a window of 10 s, 45 s or 150 s
    gives the same order as whole 60 s blocks do)."""
    sc = tg.load_scenario("enterprise-mix", ["topology.capture=gateway", "rag.rate=3/s",
                                             "agentic.rate=2/s", "chat.rate=4/s"],
                          duration="130s", seed=2)
    ref = digests(generate_run(tmp_path / "ref", sc))
    for k, kw in enumerate([dict(window="45s"), dict(window="150s", batch_packets=777)]):
        assert digests(generate_run(tmp_path / f"w{k}", sc, **kw)) == ref, kw


def test_fan_out_is_window_independent(tmp_path):
    """Reasoning requests that start chains of rag lookups (another class): the capture is the
    same whatever the window."""
    sc = tg.load_scenario("reasoning", FANOUT + ["topology.capture=server"], duration="70s", seed=2)
    sums = []
    for k, w in enumerate(("10s", "45s")):
        path = tmp_path / f"{k}.pcap"
        tg.generate(sc, pcap=path, window=w)
        sums.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert sums[0] == sums[1]


# --- batches ---------------------------------------------------------------------------------

def test_batches_are_the_pcap_records(reference_run):
    data = reference_run.pcap.read_bytes()[24:]  # after the global header
    o = 0
    n = 0
    for batch in tg.batches(reference_scenario(), batch_packets=3001):
        if batch.packets.shape[0] == 0:
            continue
        chunk = batch.frames.tobytes()
        assert data[o:o + len(chunk)] == chunk
        o += len(chunk)
        for i in (0, batch.packets.shape[0] - 1):
            frame = bytes(batch.frame(i))
            assert len(frame) == batch.packets["wire_len"][i]
        n += batch.packets.shape[0]
    assert o == len(data)
    assert n == reference_run.report["packets"]


def test_labels_only_batches_equal_the_framed_ones():
    framed = [b.packets for b in tg.batches(reference_scenario(), frames=True)]
    bare = [b.packets for b in tg.batches(reference_scenario(), frames=False)]
    assert all(b.frames is None for b in tg.batches(reference_scenario(), frames=False))
    assert np.array_equal(np.concatenate(framed), np.concatenate(bare))


def test_tables_without_capture_are_the_same_tables(reference_run, tmp_path):
    run = generate_run(tmp_path, reference_scenario(), pcap=False)
    assert run.pcap is None
    for table in ("flows", "requests", "packets"):
        assert digest(getattr(run, table)) == digest(getattr(reference_run, table)), table


@pytest.mark.parametrize("scenario, over", [
    ("enterprise-mix", ["topology.capture=gateway"]),
    ("agentic", []),
    ("chat", ["network.encap=vxlan", "network.quic=0.3"]),  # the network counts the packets
    ("kv-transfer", ["kv_transfer.rate=0.5/s", 'kv_transfer.model="llama-3-8b"',
                     "kv_transfer.prompt_tokens={median=300, p90=900, min=10, max=4000}"]),
])
def test_request_tables_alone_are_the_same_tables(tmp_path, scenario, over):
    """Without a capture or a packet table the packets are never sorted or merged: the flow and
    request tables, and the report's counts, are those of a run that writes everything."""
    sc = tg.load_scenario(scenario, over, duration="40s", seed=4)
    full = generate_run(tmp_path / "full", sc)
    (tmp_path / "alone").mkdir()
    alone = tg.generate(sc, flows=tmp_path / "alone" / "f.parquet",
                        requests=tmp_path / "alone" / "r.parquet")
    assert digest(tmp_path / "alone" / "r.parquet") == digest(full.requests)
    assert digest(tmp_path / "alone" / "f.parquet") == digest(full.flows)
    for k in ("packets", "wire_bytes", "flows", "requests"):
        assert alone[k] == full.report[k], k
    assert full.report["requests"] > 10


# --- ids -------------------------------------------------------------------------------------

def test_longer_run_shares_the_shorter_runs_sessions():
    """Sessions come from (seed, block, index) keys: a longer run starts the same sessions
    (its first requests' token counts and start times are the shorter run's)."""
    def first_requests(duration):
        sc = tg.load_scenario("chat", REFERENCE["overrides"], duration=duration, seed=5)
        reqs = np.concatenate([b.requests for b in tg.batches(sc, frames=False)])
        return reqs[np.argsort(reqs["start_ns"], kind="stable")][:40]
    a, b = first_requests("20s"), first_requests("40s")
    for col in ("start_ns", "prompt_tokens", "output_tokens", "client_id"):
        assert np.array_equal(a[col], b[col]), col


# --- buffers ---------------------------------------------------------------------------------

def test_buffer_pool_reuses_released_buffers():
    from trafficgen.sinks.buffers import BufferPool
    pool = BufferPool(keep=2)
    a = pool.get(1000)
    assert a.shape == (1000,) and a.dtype == np.uint8
    pool.release(a)
    b = pool.get(900)  # fits in the released one: the same memory
    assert np.shares_memory(a, b) and b.shape == (900,)
    c = pool.get(900)  # none free: a new one
    assert not np.shares_memory(b, c)
    small = pool.get(10)
    for buf in (b, c, small):
        pool.release(buf)
    assert len(pool._free) == 2  # keeps at most `keep` spares: the larger ones
    assert not any(np.shares_memory(small, f) for f in pool._free)
    big = pool.get(2000)
    pool.release(big)  # full: the smallest spare goes, not the larger one handed back
    assert any(np.shares_memory(big, f) for f in pool._free) and len(pool._free) == 2
    d = pool.get(100)  # the smallest spare that fits, not the largest
    assert d.base.shape[0] < 2000


def test_buffer_pool_in_a_pipeline_stops_allocating():
    """A capture's pipeline (one batch encoded, two queued, one written) of batches whose sizes
    vary, the first one small (a run's first window): after the first few, every buffer is one
    handed back. The pool before (two spares, the first that fits, the buffer handed back
    dropped when full) kept the first, small buffer for good and made a new one for every batch
    larger than its other spare: a seventh of a chat run's batches (27 of 182)."""
    from collections import deque

    from trafficgen.sinks.buffers import PIPELINE_BUFFERS, BufferPool
    rng = np.random.default_rng(5)
    pool, flight = BufferPool(), deque()
    for size in [9_700, *rng.integers(13_800, 19_400, 400)]:
        flight.append(pool.get(int(size)))
        if len(flight) == PIPELINE_BUFFERS:
            pool.release(flight.popleft())
    assert pool.allocated <= 8, pool.allocated
