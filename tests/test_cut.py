"""The capture's cut (issue 16): ``generate(stop_at=...)`` / ``--stop-at`` writes what a tap that
stops recording would have: the uncut run's capture and packet table up to the cut, byte for
byte; the flows and requests that started before it, those going on past it marked
``truncated`` with their figures as simulated. The same bytes whatever the workers, window,
batch size; shards hold the same rows; tshark reads the cut capture without a complaint.

The run spans three partitions (a minute of session starts each) with sessions across their
boundaries, so the cut falls in the middle of the merge of several partitions."""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

import trafficgen as tg
from trafficgen.engine.core import Engine

from .helpers import TSHARK_CHECKSUMS, TSHARK_PROBLEMS, cli, digest, read_pcap, run_tshark, table_columns

SCENARIO = ("chat", ["chat.rate=3/s"], "150s")
OUTPUTS = {"pcap": "c.pcap", "flows": "flows.parquet", "requests": "requests.parquet",
           "packets": "packets.parquet"}


def _scenario():
    name, overrides, duration = SCENARIO
    return tg.load_scenario(name, overrides, duration=duration, seed=3)


def _run(folder, **kw):
    folder.mkdir()
    paths = {k: folder / v for k, v in OUTPUTS.items()}
    report = tg.generate(_scenario(), **paths, **kw)
    return paths, report


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The uncut run (one process): what every cut is compared against."""
    return _run(tmp_path_factory.mktemp("whole") / "run", workers=1)


def check_cut(paths, report, whole_paths, stop_s: float) -> None:
    """``paths`` hold the run of ``whole_paths`` cut at ``stop_s`` from the capture start."""
    sc = _scenario()
    at = sc.start_ns + round(stop_s * 1e9)
    # the capture: byte for byte the start of the uncut one, every packet before the cut
    cut, full = paths["pcap"].read_bytes(), whole_paths["pcap"].read_bytes()
    assert full.startswith(cut) and len(full) > len(cut) > 24
    ts, _ = read_pcap(paths["pcap"])
    full_ts, _ = read_pcap(whole_paths["pcap"])
    assert ts.shape[0] == np.count_nonzero(full_ts < at) == report["packets"]
    assert ts.max() < at <= full_ts[ts.shape[0]]
    # the packet table: the uncut table's rows before the cut
    got, want = pq.read_table(paths["packets"]), pq.read_table(whole_paths["packets"])
    assert got.equals(want.slice(0, ts.shape[0]))
    # flows and requests: those that start before the cut, marked where they go on past it
    for table in ("flows", "requests"):
        got, want = table_columns(paths[table]), table_columns(whole_paths[table])
        kept = want["start_ns"] < at
        assert got["truncated"].dtype == bool and not want["truncated"].any()
        assert np.array_equal(got["truncated"], want["end_ns"][kept] >= at)
        for name, values in want.items():
            if name != "truncated":
                assert np.array_equal(got[name], values[kept]), (table, name)
        assert report[table] == int(kept.sum()) and report["truncated"][table] == int(got["truncated"].sum())
    assert report["truncated"]["flows"] > 0 and report["stop_at_s"] == stop_s
    assert report["first_packet_s"] == round((ts[0] - sc.start_ns) / 1e9, 6)
    assert report["last_packet_s"] == round((ts[-1] - sc.start_ns) / 1e9, 6) < stop_s


@pytest.mark.parametrize("stop", ["100s", 155])  # within the run; in its tails (seconds)
def test_a_cut_is_the_uncut_run_up_to_it(tmp_path, whole, stop):
    paths, report = _run(tmp_path / "cut", workers=1, stop_at=stop)
    stop_s = 100.0 if stop == "100s" else 155.0
    check_cut(paths, report, whole[0], stop_s)
    assert whole[1]["last_packet_s"] > 155 > 150 == whole[1]["duration_s"]  # sessions run on


def test_a_cut_is_the_same_whatever_workers_window_and_batches(tmp_path, whole):
    paths, report = _run(tmp_path / "one", workers=1, stop_at="100s")
    want = {k: digest(p) for k, p in paths.items()}
    for name, kw in {"w2": dict(workers=2), "window": dict(workers=1, window="3s"),
                     "threads": dict(batch_packets=1000)}.items():
        got_paths, got_report = _run(tmp_path / name, stop_at="100s", **kw)
        assert {k: digest(p) for k, p in got_paths.items()} == want, name
        assert got_report["truncated"] == report["truncated"]
        assert got_report["last_packet_s"] == report["last_packet_s"]
    assert got_report["workers"] == 1 and report["packets"] > 10_000


def test_cut_shards_hold_the_cut_rows(tmp_path, whole):
    cut_paths, cut_report = _run(tmp_path / "cut", workers=1, stop_at="100s")
    (tmp_path / "s").mkdir()
    paths = {k: tmp_path / "s" / v for k, v in OUTPUTS.items()}
    report = tg.generate(_scenario(), **paths, shards=True, workers=2, stop_at="100s")
    # no shard for the sessions that start after the cut
    starts = [lo for lo, _ in Engine(_scenario(), frames=False).partitions()]
    # (and none for a partition without rows: at most one per partition before the cut)
    assert len(os.listdir(paths["flows"])) == report["shards"]["flows"] <= sum(lo < 100e9 for lo in starts)
    assert report["shards"]["flows"] < len(starts)
    for k in ("packets", "wire_bytes", "flows", "requests", "truncated", "first_packet_s",
              "last_packet_s"):
        assert report[k] == cut_report[k], k
    for table in ("flows", "requests"):
        assert pq.read_table(paths[table]).equals(pq.read_table(cut_paths[table])), table
    frames = [f for name in sorted(os.listdir(paths["pcap"])) for f in read_pcap(paths["pcap"] / name)[1]]
    assert sorted(frames) == sorted(read_pcap(cut_paths["pcap"])[1])  # the same frames, split


def test_tshark_reads_a_cut_capture(tmp_path, whole, tshark):
    paths, report = _run(tmp_path / "cut", workers=2, stop_at="100s")
    out = run_tshark(tshark, paths["pcap"], *TSHARK_CHECKSUMS, "-Y", TSHARK_PROBLEMS,
                     "-T", "fields", "-e", "frame.number")
    assert out.strip() == ""  # no malformed frame, no bad checksum, no odd TCP stream
    count = run_tshark(tshark, paths["pcap"], "-T", "fields", "-e", "frame.number")
    assert len(count.split()) == report["packets"]
    # the pcapng capture is cut the same way (its packets with their comments)
    pcapng = tmp_path / "cut.pcapng"
    tg.generate(_scenario(), pcap=pcapng, stop_at="100s")
    assert len(run_tshark(tshark, pcapng, "-T", "fields", "-e", "frame.number").split()) == report["packets"]


def test_a_cut_keeps_macsec_packet_numbers(tmp_path):
    """MACsec packet numbers count the whole capture's frames: a cut capture is still the
    start of the uncut one, byte for byte."""
    over = ["chat.rate=2/s", "network.encap=vxlan", "network.macsec=true",
            "network.macsec_key=00112233445566778899aabbccddeeff"]
    sc = tg.load_scenario("chat", over, duration="10s", seed=4)
    tg.generate(sc, pcap=tmp_path / "full.pcap")
    report = tg.generate(sc, pcap=tmp_path / "cut.pcap", stop_at=7)
    cut = (tmp_path / "cut.pcap").read_bytes()
    assert (tmp_path / "full.pcap").read_bytes().startswith(cut) and report["packets"] > 100


def test_tables_alone_are_cut_as_with_a_capture(tmp_path):
    """Without a capture or packet table the tables are the same rows, and the report counts
    the packets before the cut (a cut sorts the packets to find them)."""
    sc = tg.load_scenario("chat", ["chat.rate=4/s"], duration="20s", seed=2)
    a = tg.generate(sc, flows=tmp_path / "a.parquet", requests=tmp_path / "ar.parquet", stop_at="12s")
    b = tg.generate(sc, pcap=tmp_path / "b.pcap", flows=tmp_path / "b.parquet",
                    requests=tmp_path / "br.parquet", stop_at="12s")
    assert digest(tmp_path / "a.parquet") == digest(tmp_path / "b.parquet")
    assert digest(tmp_path / "ar.parquet") == digest(tmp_path / "br.parquet")
    for k in ("packets", "wire_bytes", "flows", "requests", "truncated", "last_packet_s"):
        assert a[k] == b[k], k


def test_the_engine_simulates_nothing_after_the_cut():
    sc = _scenario()
    cut = Engine(sc, frames=False, stop_at_ns=70 * 10**9)
    assert max(t0 for t0, _ in cut.windows()) < 70 * 10**9 < 150 * 10**9
    full = [lo for lo, _ in Engine(sc, frames=False).partitions()]
    assert [lo for lo, _ in cut.partitions()] == [lo for lo in full if lo < 70 * 10**9] != full
    with pytest.raises(ValueError):
        Engine(sc, stop_at_ns=0)


@pytest.mark.parametrize("bad", ["0s", -1, "soon", [1]])
def test_a_bad_stop_at_is_one_line(tmp_path, bad):
    with pytest.raises(tg.TrafficgenError, match=r"^stop_at: "):
        tg.generate(_scenario(), pcap=tmp_path / "x.pcap", stop_at=bad)
    assert os.listdir(tmp_path) == []


def test_cli_stop_at(tmp_path, whole):
    done = cli("generate", SCENARIO[0], "-t", SCENARIO[1][0], "--duration", "150", "--seed", "3",
               "--stop-at", "100", "-o", tmp_path / "c.pcap", "--flows", tmp_path / "f.parquet",
               timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    paths, _ = _run(tmp_path / "lib", workers=1, stop_at="100s")
    assert digest(tmp_path / "c.pcap") == digest(paths["pcap"])
    # the same rows (the metadata differ: the scenario's duration is written as given)
    assert pq.read_table(tmp_path / "f.parquet").equals(pq.read_table(paths["flows"]))
    line = done.stdout
    assert "150 s of 'chat', seed 3, cut at 100 s: packets from " in line
    assert " flows and " in line and " requests left open" in line
    done = cli("generate", "chat", "-t", "chat.rate=4/s", "--duration", "3", "--seed", "3",
               "--stop-at", "2.5", "--requests", tmp_path / "r.parquet", "--json")
    report = json.loads(done.stdout)
    assert report["stop_at_s"] == 2.5 and report["duration_s"] == 3 and report["last_packet_s"] < 2.5
    assert sum(report["truncated"].values()) > 0
    ended = pq.read_table(tmp_path / "r.parquet", columns=["end_ns", "truncated"]).to_pydict()
    assert any(ended["truncated"])
