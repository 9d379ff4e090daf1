"""Scale-out (issue 7): the same bytes from one process, N worker processes, a Dask cluster, and
as shards; a failed worker fails the run and leaves nothing behind.

Every comparison is against the one-process engine (``workers=1``), byte for byte. The runs
span several partitions (a minute of session starts each, warm-up included) with sessions that
run on across partition boundaries, so the merge interleaves partitions packet by packet."""
from __future__ import annotations

import hashlib
import os
import re
import signal
import tempfile

import dpkt
import numpy as np
import pyarrow.parquet as pq
import pytest

import trafficgen as tg
from trafficgen.cli.main import main
from trafficgen.engine import backend as par_backend
from trafficgen.engine import merge as par_merge
from trafficgen.engine import phases as par_phases
from trafficgen.engine import pool as par_pool
from trafficgen.engine import spool as par_spool
from trafficgen.engine.core import Engine
from trafficgen.errors import TrafficgenError

from .helpers import without_compiling

KEY_HEX = "00112233445566778899aabbccddeeff"

CASES = {
    # one model: windows of 10 s, partitions of 60 s, sessions that last minutes
    "chat": ("chat", ["chat.rate=3/s"], "150s"),
    # several models, blockwise ids; reasoning fan-out, media, chains
    "mix": ("enterprise-mix", [], "120s"),
    # the network pass: dual stack, VXLAN, QUIC Initials, and MACsec packet numbers, which
    # count the whole merged stream
    "network": ("chat", ["chat.rate=2/s", "network.ip=dual", "network.encap=vxlan",
                         "network.quic=0.3", "network.macsec=true", f"network.macsec_key={KEY_HEX}"],
                "130s"),
    # UDP: realtime voice as RTP, beside the images' uploads
    "rtp": ("multimodal", ["multimodal.rate=0.5/s", "multimodal.voice_rate=0.2/s",
                           "multimodal.voice.rtp_share=1"], "120s"),
}
OUTPUTS = {"pcap": "cap.pcapng", "flows": "flows.parquet", "requests": "requests.parquet",
           "packets": "packets.parquet"}


def _digests(folder) -> dict:
    return {k: hashlib.sha256((folder / v).read_bytes()).hexdigest() for k, v in OUTPUTS.items()}


def _scenario(case):
    name, overrides, duration = CASES[case]
    return tg.load_scenario(name, overrides, duration=duration, seed=3)


def _run(folder, case, **kw) -> tuple[dict, dict]:
    folder.mkdir()
    report = tg.generate(_scenario(case), **{k: folder / v for k, v in OUTPUTS.items()}, **kw)
    return _digests(folder), report


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Each case from one process on one generation thread: what every other way must match;
    (digests, report, folder) per case."""
    out = {}
    for case in CASES:
        folder = tmp_path_factory.mktemp("ref") / case
        out[case] = (*_run(folder, case, workers=1), folder)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_two_workers_give_the_same_bytes(tmp_path, reference, case):
    want, ref_report, _ = reference[case]
    got, report = _run(tmp_path / "w2", case, workers=2)
    assert report["workers"] == 2 and report["packets"] == ref_report["packets"] > 1000
    assert got == want
    if case == "chat":  # the library's default (this process, two generation threads) too
        assert _run(tmp_path / "threads", case)[0] == want
        assert report["merge_s"] >= 0


def test_more_workers_than_cores_few_partitions_ahead(tmp_path, reference, monkeypatch):
    monkeypatch.setattr(par_backend, "AHEAD", 1)  # the merge holds the workers back at once
    got, report = _run(tmp_path / "w3", "chat", workers=3)
    assert got == reference["chat"][0] and report["workers"] == 3


@pytest.mark.parametrize("case", ["chat", "network"])
def test_the_merge_in_small_pieces_gives_the_same_bytes(tmp_path, reference, monkeypatch, case):
    """The merge hands a partition on in pieces (``PIECE_ROWS``): cut into pieces of 997
    rows, each ending where the time changes, the tap's link, the MACsec packet numbers and
    every table come out the same."""
    monkeypatch.setattr(par_merge, "PIECE_ROWS", 997)
    got, report = _run(tmp_path / "pieces", case, workers=2)
    assert got == reference[case][0] and report["packets"] > 20 * 997


def test_piece_cuts_never_split_a_time():
    ts = np.array([1, 1, 2, 2, 2, 3, 4, 4, 4, 4, 5], np.int64)
    assert par_merge.piece_cuts(ts, 3) == [0, 5, 10, 11]
    assert par_merge.piece_cuts(ts, 100) == [0, 11]
    assert par_merge.piece_cuts(np.full(7, 9, np.int64), 2) == [0, 7]
    assert par_merge.piece_cuts(ts[:0], 3) == [0, 0]


def _shards(folder, case, **kw):
    folder.mkdir()
    paths = {k: folder / v for k, v in OUTPUTS.items()}
    report = tg.generate(_scenario(case), **paths, shards=True, **kw)
    return paths, report


def _pcapng_frames(path) -> list[tuple[int, bytes]]:
    """(ts ns, frame) per packet, read by dpkt (an independent pcapng reader)."""
    with open(path, "rb") as f:
        return [(int(round(ts * 1e9)), bytes(buf)) for ts, buf in dpkt.pcapng.Reader(f)]


def shard_listing(paths) -> dict[str, list[str]]:
    """Each output folder's file names, checked: ``part-NNNNN`` (the partition's number, with
    gaps where a partition had no rows for it), no file without rows, and the capture, packet
    and flow folders naming the same partitions (the request folder some of them)."""
    names = {k: sorted(os.listdir(p)) for k, p in paths.items()}
    for k, listing in names.items():
        ext = OUTPUTS[k].rsplit(".", 1)[1]
        assert listing and all(re.fullmatch(rf"part-\d{{5}}\.{ext}", n) for n in listing), listing
        for n in listing:
            rows = (len(_pcapng_frames(paths[k] / n)) if ext == "pcapng"
                    else pq.ParquetFile(paths[k] / n).metadata.num_rows)
            assert rows > 0, f"{k}/{n} is empty"
    stems = {k: [n.split(".")[0] for n in v] for k, v in names.items()}
    assert stems["pcap"] == stems["packets"] == stems["flows"]
    assert set(stems["requests"]) <= set(stems["flows"])
    return names


def check_shards(paths, report, reference):
    """The shards read back as the unsharded outputs: each Parquet folder as one dataset with
    pyarrow, pandas, polars and DuckDB; the capture shards hold the capture's frames. (Packet
    times: each shard's own, see below.)"""
    import duckdb
    import pandas as pd
    import polars as pl
    _, want_report, ref = reference
    for k in ("packets", "wire_bytes", "flows", "requests"):
        assert report[k] == want_report[k], k
    names = shard_listing(paths)
    assert report["shards"] == {("capture" if k == "pcap" else k): len(v) for k, v in names.items()}
    assert len(names["flows"]) > 3
    for table in ("flows", "requests", "packets"):
        whole = pq.read_table(ref / OUTPUTS[table])
        parts = pq.read_table(paths[table])  # the folder, as one dataset
        assert parts.schema.remove_metadata() == whole.schema.remove_metadata()
        frame = pd.read_parquet(paths[table])
        assert frame.shape == (whole.num_rows, whole.num_columns)
        assert frame.columns.tolist() == whole.column_names
        if table == "packets":
            # each shard is a capture of its own: its frames wait for the tap's link behind its
            # own frames alone (engine/tap.py), so a time may differ from the whole's, by a few
            # frames' time; each flow's packets are the same, in the same order
            parts, whole = (t.take(np.argsort(t["flow_id"].to_numpy(), kind="stable"))
                            for t in (parts.take(np.lexsort((parts["flow_id"].to_numpy(),
                                                             parts["ts_ns"].to_numpy()))), whole))
            dt = parts["ts_ns"].to_numpy() - whole["ts_ns"].to_numpy()
            assert np.abs(dt).max() <= 200_000 and np.mean(dt != 0) < 0.02
            parts, whole = parts.drop_columns(["ts_ns"]), whole.drop_columns(["ts_ns"])
        assert parts.equals(whole), table
        assert pl.read_parquet(paths[table] / "*.parquet").height == whole.num_rows
    query = ("select class, count(*), sum(wire_len) from read_parquet('{}') "
             "group by class order by class")
    assert (duckdb.sql(query.format(f"{paths['packets']}/*.parquet")).fetchall()
            == duckdb.sql(query.format(ref / OUTPUTS["packets"])).fetchall())
    # the capture shards hold the capture's frames, each flow's in its order (frames carry no
    # time: the bytes are the same); by flow from each shard's packet table
    def by_flow(frames, flow_ids):
        out = {}
        for fid, (_, buf) in zip(flow_ids, frames):
            out.setdefault(fid, []).append(buf)
        return out
    got = {}
    for k, name in enumerate(names["pcap"]):
        frames = _pcapng_frames(paths["pcap"] / name)
        fids = pq.read_table(paths["packets"] / names["packets"][k], columns=["flow_id"])["flow_id"]
        assert len(frames) == len(fids)
        got.update(by_flow(frames, fids.to_pylist()))
    want = by_flow(_pcapng_frames(ref / OUTPUTS["pcap"]),
                   pq.read_table(ref / OUTPUTS["packets"], columns=["flow_id"])["flow_id"].to_pylist())
    assert got == want


@pytest.mark.parametrize("workers", [1, 2])
def test_shards_read_back_as_the_whole(tmp_path, reference, workers):
    paths, report = _shards(tmp_path / "s", "chat", workers=workers)
    assert report["workers"] == workers
    check_shards(paths, report, reference["chat"])


def test_shards_skip_empty_partitions(tmp_path, reference):
    """The enterprise mix's warm-up partitions hold no session: they write no file, on one
    worker or two, and the names (the partitions' numbers) are the same either way."""
    n_parts = len(Engine(_scenario("mix"), frames=False, packets=False).partitions())
    listings = []
    for workers in (1, 2):
        paths, report = _shards(tmp_path / f"w{workers}", "mix", workers=workers)
        check_shards(paths, report, reference["mix"])
        listings.append(shard_listing(paths))
    assert listings[0] == listings[1]
    assert 3 < len(listings[0]["flows"]) < n_parts - 3  # several partitions wrote nothing


def test_shards_of_a_run_without_rows(tmp_path, reference):
    """Nothing at all to write: each folder gets one empty file, the first partition's, so it
    reads as an empty dataset with its columns (a capture: a valid empty one)."""
    sc = tg.load_scenario("kv-transfer", {"kv_transfer.rate": "1/h"}, duration="5s", seed=1)
    paths = {k: tmp_path / v for k, v in OUTPUTS.items()}
    report = tg.generate(sc, **paths, shards=True)
    assert report["packets"] == report["flows"] == report["requests"] == 0
    assert report["shards"] == {"capture": 1, "flows": 1, "requests": 1, "packets": 1}
    for k, v in OUTPUTS.items():
        assert os.listdir(paths[k]) == [f"part-00000.{v.rsplit('.', 1)[1]}"]
    assert _pcapng_frames(paths["pcap"] / "part-00000.pcapng") == []
    for table in ("flows", "requests", "packets"):
        t = pq.read_table(paths[table])  # the folder, as one dataset
        whole = pq.read_table(reference["chat"][2] / OUTPUTS[table])
        assert t.num_rows == 0 and t.schema.remove_metadata() == whole.schema.remove_metadata()


def test_dask_local_cluster(tmp_path, reference):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        got, report = _run(tmp_path / "dask", "mix", scheduler=client)
        assert got == reference["mix"][0] and report["workers"] == 2
        # by address, as the CLI gives it
        assert _run(tmp_path / "addr", "chat", scheduler=cluster.scheduler_address)[0] == reference["chat"][0]
        paths, report = _shards(tmp_path / "shards", "chat", scheduler=client)
    check_shards(paths, report, reference["chat"])


def _fail_in_worker(monkeypatch, how, partition=3):
    """Make partition ``partition``'s phase two fail in the worker (forked, so it has the patch)."""
    monkeypatch.setattr(par_pool, "_start_method", lambda: "fork")
    real_files, real_shard = par_spool.stream_files, par_phases.write_shard

    def fail(lo):
        if how == "raise":
            raise OSError(28, "No space left on device")
        if how == "usage":
            raise TrafficgenError("kv_transfer.rate: the worker found it wanting")
        os.kill(os.getpid(), signal.SIGKILL)

    parts = _scenario_partitions()

    def files(token, sc, opts, lo, hi, *rest):
        if "TMPDIR" in os.environ and not rest[-1].startswith(os.environ["TMPDIR"]):
            raise AssertionError(f"spooled outside TMPDIR: {rest[-1]}")
        if lo == parts[partition][0]:
            fail(lo)
        return real_files(token, sc, opts, lo, hi, *rest)

    def shard(token, sc, opts, lo, hi, *rest):
        if lo == parts[partition][0]:
            fail(lo)
        return real_shard(token, sc, opts, lo, hi, *rest)

    monkeypatch.setattr(par_spool, "stream_files", files)
    monkeypatch.setattr(par_phases, "write_shard", shard)


def _scenario_partitions():
    return Engine(_scenario("chat"), frames=False, packets=False).partitions()


def _leftovers(folder) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("how", ["raise", "usage", "kill"])
@pytest.mark.parametrize("shards", [False, True])
def test_a_failed_worker_fails_the_run_and_leaves_nothing(tmp_path, monkeypatch, how, shards):
    _fail_in_worker(monkeypatch, how)
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool))  # the spool goes there (not /dev/shm)
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    out = tmp_path / "out"
    out.mkdir()
    (out / "flows.parquet").write_bytes(b"the user's own file")  # must survive the failure
    paths = {k: out / v for k, v in OUTPUTS.items()}
    if shards:
        paths["flows"] = out / "flows-shards"
    want = {"raise": (OSError, "No space left"), "usage": (TrafficgenError, "found it wanting"),
            "kill": (TrafficgenError, "died (exit code -9) while generating partition 3")}[how]
    with pytest.raises(want[0], match=re.escape(want[1])):
        tg.generate(_scenario("chat"), **paths, workers=2, shards=shards)
    assert _leftovers(out) == ["flows.parquet"]
    assert (out / "flows.parquet").read_bytes() == b"the user's own file"
    assert _leftovers(spool) == []  # the spool is gone too


def test_cli_worker_failure_is_one_line(tmp_path, monkeypatch, capsys):
    _fail_in_worker(monkeypatch, "kill")
    out = tmp_path / "c.pcap"
    assert main(["generate", "chat", "-t", "chat.rate=3/s", "--duration", "150s", "--seed", "3",
                 "-o", str(out), "--workers", "2", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "worker process" in err and "died" in err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_progress_is_one_bar_across_workers(reference):
    seen = []
    tg.generate(_scenario("chat"), pcap=os.devnull, workers=2,
                progress=lambda done, total: seen.append((done, total)))
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == seen[-1][1] == _scenario("chat").duration_ns
    assert len(set(done)) >= 3  # it moves as partitions merge, not only at the end


def test_cli_options(tmp_path, capsys):
    def refused(args, *words):
        try:
            code = main(["generate", "chat", "--duration", "90s", "-q", *args])
        except SystemExit as e:  # argparse's own refusals
            code = e.code
        assert code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        for w in words:
            assert w in err, (w, err)

    refused(["--workers", "0", "-o", str(tmp_path / "a.pcap")], "--workers", ">= 1")
    refused(["--workers", "two", "-o", str(tmp_path / "a.pcap")], "--workers")
    refused(["--workers", "2", "--scheduler", "tcp://127.0.0.1:1", "-o", str(tmp_path / "a.pcap")],
            "--workers and --scheduler")
    (tmp_path / "taken").mkdir()
    refused(["--shards", "-o", str(tmp_path / "taken")], "already exists")
    refused(["--shards", "-o", "-"], "--shards", "standard output")
    refused(["--shards", "-t", "network.macsec=true", "-o", str(tmp_path / "m.pcap")],
            "MACsec", "--shards")
    refused(["--workers", "2", "--iface", "lo"], "--iface")
    assert sorted(os.listdir(tmp_path)) == ["taken"] and not os.listdir(tmp_path / "taken")
    # the report says how many workers ran and how many shards each output has
    assert main(["generate", "chat", "--duration", "90s", "--seed", "3", "--shards", "--workers", "2",
                 "--flows", str(tmp_path / "f"), "--json"]) == 0
    import json
    report = json.loads(capsys.readouterr().out)
    assert report["workers"] == 2 and report["shards"] == {"flows": len(os.listdir(tmp_path / "f"))}
    assert report["shards"]["flows"] > 1


def test_a_failed_dask_task_fails_the_run(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    parts = _scenario_partitions()
    real = par_phases.stream_arrays

    def stream(token, sc, opts, lo, hi, *rest):
        if lo == parts[4][0]:
            raise TrafficgenError("a worker's own one-line error")
        return real(token, sc, opts, lo, hi, *rest)

    monkeypatch.setattr(par_phases, "stream_arrays", stream)
    out = tmp_path / "out"
    out.mkdir()
    # threads in this process, so the patch is what the workers run
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        with pytest.raises(TrafficgenError, match="a worker's own one-line error"):
            tg.generate(_scenario("chat"), **{k: out / v for k, v in OUTPUTS.items()},
                        scheduler=client)
    assert _leftovers(out) == []


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_cli_run_leaves_nothing(tmp_path, sig, code):
    """kill (or ^C) mid-run: exit status 143 (130), no output, no spool, no worker left."""
    import subprocess
    import sys
    import time
    spool = tmp_path / "tmp"
    spool.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trafficgen", "generate", "chat", "--duration", "2h", "--seed", "3",
         "--workers", "2", "-o", str(out / "c.pcap"), "--flows", str(out / "f.parquet"), "-q"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(spool)})
    deadline = time.monotonic() + 60
    while not list(spool.iterdir()) and time.monotonic() < deadline:  # the spool is there
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(sig)  # to the coordinator alone: it must stop its workers itself
    err = without_compiling(proc.communicate(timeout=60)[1])
    assert proc.returncode == code, err
    assert err.strip().endswith("no output was written") and err.count("\n") == 1, err
    assert _leftovers(out) == [] and _leftovers(spool) == []
    time.sleep(0.5)
    assert not _processes_naming(str(out / "c.pcap")), "a worker outlived the run"


def _processes_naming(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found
