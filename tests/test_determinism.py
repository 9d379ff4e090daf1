"""Determinism: the seed alone fixes every byte. The window, the batch size, which outputs are
written and whether frames are built never change the result; another seed does."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

import trafficgen as tg

from .conftest import generate_run

SMALL = dict(overrides={"chat.rate": "6/s"}, duration="25s")


def small(seed: int = 5, **extra):
    over = {**SMALL["overrides"], **extra}
    return tg.load_scenario("chat", over, duration=SMALL["duration"], seed=seed)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digests(run) -> dict[str, str]:
    return {k: digest(getattr(run, k)) for k in ("pcap", "flows", "requests", "packets")
            if getattr(run, k) is not None}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return generate_run(tmp_path_factory.mktemp("ref"), small())


def test_same_seed_same_bytes(reference, tmp_path):
    again = generate_run(tmp_path, small())
    assert digests(again) == digests(reference)
    assert again.report["packets"] == reference.report["packets"] > 1000


def test_another_seed_differs(reference, tmp_path):
    other = generate_run(tmp_path, small(seed=6))
    for key, value in digests(other).items():
        assert value != digests(reference)[key], key
    a = pq.read_table(reference.requests).column("prompt_tokens").to_numpy()
    b = pq.read_table(other.requests).column("prompt_tokens").to_numpy()
    assert not np.array_equal(a[:50], b[:50])


@pytest.mark.parametrize("window,batch", [("2s", 997), ("7s", 4096), ("60s", 1 << 16),
                                          ("150s", 1 << 24), ("45s", 50_000)])
def test_window_and_batch_size_change_nothing(reference, tmp_path, window, batch):
    run = generate_run(tmp_path, small(), window=window, batch_packets=batch)
    assert digests(run) == digests(reference)


def test_tables_without_capture_are_the_same_tables(reference, tmp_path):
    run = generate_run(tmp_path, small(), pcap=False)
    assert run.pcap is None
    for table in ("flows", "requests", "packets"):
        assert digest(getattr(run, table)) == digest(getattr(reference, table)), table


def test_batches_are_the_pcap_records(reference):
    data = reference.pcap.read_bytes()[24:]  # after the global header
    o = 0
    n = 0
    for batch in tg.batches(small(), batch_packets=3001):
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
    assert n == reference.report["packets"]


def test_labels_only_batches_equal_the_framed_ones():
    framed = [b.packets for b in tg.batches(small(), frames=True)]
    bare = [b.packets for b in tg.batches(small(), frames=False)]
    assert all(b.frames is None for b in tg.batches(small(), frames=False))
    assert np.array_equal(np.concatenate(framed), np.concatenate(bare))


def test_cli_and_library_write_the_same_bytes(reference, tmp_path):
    cmd = [sys.executable, "-m", "trafficgen", "generate", "chat", "-t", "chat.rate=6/s",
           "--duration", SMALL["duration"], "--seed", "5", "-q", "-o", str(tmp_path / "c.pcap"),
           "--packets", str(tmp_path / "p.parquet")]
    subprocess.run(cmd, check=True, capture_output=True)
    assert digest(tmp_path / "c.pcap") == digest(reference.pcap)
    assert digest(tmp_path / "p.parquet") == digest(reference.packets)


def test_longer_run_shares_the_shorter_runs_sessions():
    """Sessions come from (seed, block, index) keys: a longer run starts the same sessions
    (its first requests' token counts and start times are the shorter run's)."""
    def first_requests(duration):
        sc = tg.load_scenario("chat", SMALL["overrides"], duration=duration, seed=5)
        reqs = np.concatenate([b.requests for b in tg.batches(sc, frames=False)])
        return reqs[np.argsort(reqs["start_ns"], kind="stable")][:40]
    a, b = first_requests("20s"), first_requests("40s")
    for col in ("start_ns", "prompt_tokens", "output_tokens", "client_id"):
        assert np.array_equal(a[col], b[col]), col


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
