"""Sinks, where batches go (pcap, pcapng, Parquet): each works as a context manager and
reports the rows it took and the bytes it wrote; a path appears only when whole (a failed run,
early or late, leaves the user's files as they were and no temporary file), with the file mode
open() would give; open file objects, short writes, devices and FIFOs get the same bytes; a
Parquet file's metadata carries the scenario. (The pcapng format itself: test_pcapng.py; the
command line's interrupted run: test_cli.py.)"""
from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

import trafficgen as tg
from trafficgen.config.scenario import Scenario
from trafficgen.schema import SCHEMAS

from .helpers import SMALL_ARGS, cli, listing

OVER = ["chat.rate=4/s", "network.vlan=42", "network.dscp=18"]  # test_pcapng's run


# --- context managers, rows and bytes ------------------------------------------------------------

def test_sinks_driven_by_hand_report_rows_and_bytes(tmp_path):
    """The README's way to write part of a stream: each sink, as a context manager, appears when
    its block ends, with as many rows and bytes as it reports, and the bytes ``generate`` writes."""
    sc = tg.load_scenario("chat", ["chat.rate=4/s"], duration="3s", seed=3)
    ref = {"pcap": tmp_path / "ref.pcap", "pcapng": tmp_path / "ref.pcapng",
           "packets": tmp_path / "ref.parquet"}
    report = tg.generate(sc, pcap=ref["pcap"], packets=ref["packets"])
    tg.generate(sc, pcap=ref["pcapng"])
    out = tmp_path / "mine"
    out.mkdir()
    with tg.PcapSink(out / "c.pcap") as pcap, tg.PcapngSink(out / "c.pcapng", sc) as ng, \
            tg.ParquetSink(out / "p.parquet", "packets", sc) as table:
        for batch in tg.batches(sc):
            for sink in (pcap, ng, table):
                sink.write(batch)
        assert not any(p.name in ("c.pcap", "c.pcapng", "p.parquet") for p in out.iterdir())
    assert listing(out) == ["c.pcap", "c.pcapng", "p.parquet"]  # and no temporary file
    for sink, name in ((pcap, "c.pcap"), (ng, "c.pcapng"), (table, "p.parquet")):
        assert sink.rows == report["packets"], name
        assert sink.bytes == (out / name).stat().st_size, name
    assert (out / "c.pcap").read_bytes() == ref["pcap"].read_bytes()
    assert (out / "c.pcapng").read_bytes() == ref["pcapng"].read_bytes()
    assert pq.read_table(out / "p.parquet").equals(pq.read_table(ref["packets"]))


@pytest.mark.parametrize("kind", ["pcap", "pcapng", "parquet"])
def test_an_error_inside_the_block_leaves_no_file(tmp_path, kind):
    sc = tg.load_scenario("chat", ["chat.rate=4/s"], duration="3s", seed=3)
    make = {"pcap": lambda: tg.PcapSink(tmp_path / "x.pcap"),
            "pcapng": lambda: tg.PcapngSink(tmp_path / "x.pcapng", sc),
            "parquet": lambda: tg.ParquetSink(tmp_path / "x.parquet", "packets", sc)}[kind]
    with pytest.raises(RuntimeError, match="stop"), make() as sink:
        for batch in tg.batches(sc):
            sink.write(batch)
            if sink.rows:
                raise RuntimeError("stop")
    assert listing(tmp_path) == []


# --- outputs appear whole or not at all ------------------------------------------------------------

def test_failure_midway_keeps_the_users_files(tmp_path):
    """A run that fails after writing has begun leaves every existing output byte for byte as it
    was, creates none of the new ones and leaves no temporary file."""
    old = {name: os.urandom(1000) for name in ("cap.pcap", "flows.parquet")}
    for name, data in old.items():
        (tmp_path / name).write_bytes(data)
    calls = []

    def boom(done_ns, total_ns):
        calls.append(done_ns)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        tg.generate(tg.load_scenario("chat", duration="30s", seed=1), pcap=tmp_path / "cap.pcap",
                    flows=tmp_path / "flows.parquet", packets=tmp_path / "packets.parquet",
                    window="2s", batch_packets=2000, progress=boom)
    assert len(calls) == 2
    assert listing(tmp_path) == ["cap.pcap", "flows.parquet"]
    for name, data in old.items():
        assert (tmp_path / name).read_bytes() == data


@pytest.mark.parametrize("failing", ["pcap", "parquet"])
def test_a_late_failure_commits_nothing(tmp_path, monkeypatch, failing):
    """If any output fails while being finished, none of the outputs is renamed into place."""
    from trafficgen.sinks.parquet import ParquetSink
    from trafficgen.sinks.pcap import PcapSink

    def broken(self):
        raise OSError("no space left on device")

    monkeypatch.setattr({"pcap": PcapSink, "parquet": ParquetSink}[failing], "_finish", broken)
    (tmp_path / "cap.pcap").write_bytes(b"mine")
    (tmp_path / "r.parquet").write_bytes(b"also mine")
    with pytest.raises(OSError):
        tg.generate(tg.load_scenario("chat", ["chat.rate=2/s"], duration="2s"),
                    pcap=tmp_path / "cap.pcap", requests=tmp_path / "r.parquet")
    assert listing(tmp_path) == ["cap.pcap", "r.parquet"]
    assert (tmp_path / "cap.pcap").read_bytes() == b"mine"
    assert (tmp_path / "r.parquet").read_bytes() == b"also mine"


def test_a_failed_run_leaves_no_pcapng(tmp_path, monkeypatch):
    from trafficgen.sinks.pcapng import PcapngSink

    def broken(self):
        raise OSError("disk full")
    monkeypatch.setattr(PcapngSink, "_finish", broken)
    with pytest.raises(OSError):
        tg.generate(tg.load_scenario("chat", OVER, duration="2s"), pcap=tmp_path / "x.pcapng")
    assert list(tmp_path.iterdir()) == []


def test_success_replaces_an_existing_file_with_normal_permissions(tmp_path):
    target = tmp_path / "cap.pcap"
    target.write_bytes(b"old")
    tg.generate(tg.load_scenario("chat", ["chat.rate=2/s"], duration="2s"), pcap=target)
    assert target.read_bytes()[:4] == bytes.fromhex("4d3cb2a1")  # nanosecond pcap, little-endian
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert listing(tmp_path) == ["cap.pcap"]


# --- file objects, devices and FIFOs --------------------------------------------------------------

def test_file_objects_get_the_same_bytes(tmp_path):
    import io
    sc = tg.load_scenario("chat", ["chat.rate=4/s"], duration="3s", seed=3)
    buf = io.BytesIO()
    report = tg.generate(sc, pcap=buf)
    tg.generate(sc, pcap=tmp_path / "x.pcap")
    assert buf.getvalue() == (tmp_path / "x.pcap").read_bytes()
    assert report["outputs"] == {}


def test_short_writes_are_completed(tmp_path):
    """An unbuffered stream (a FIFO, a device) may take fewer bytes than offered: all get written."""
    import io

    class Dribble(io.RawIOBase):
        def __init__(self):
            self.data = bytearray()

        def writable(self):
            return True

        def write(self, b):
            n = min(len(b), 4093)
            self.data += bytes(memoryview(b)[:n])
            return n

    sc = tg.load_scenario("chat", ["chat.rate=4/s"], duration="3s", seed=3)
    sink = Dribble()
    tg.generate(sc, pcap=sink)
    tg.generate(sc, pcap=tmp_path / "x.pcap")
    assert bytes(sink.data) == (tmp_path / "x.pcap").read_bytes()


def test_devices_and_fifos_are_written_in_place(tmp_path):
    """/dev/null stays a device (as root, a rename would have replaced it); a FIFO is fed."""
    import stat
    import threading
    done = cli("generate", "chat", *SMALL_ARGS, "-o", "/dev/null", "-q")
    assert done.returncode == 0, done.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    fifo = tmp_path / "feed.pcap"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    done = cli("generate", "chat", *SMALL_ARGS, "-o", fifo, "-q")
    reader.join(60)
    assert done.returncode == 0, done.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    cli("generate", "chat", *SMALL_ARGS, "-o", tmp_path / "f.pcap", "-q")
    assert got == [(tmp_path / "f.pcap").read_bytes()]
    assert listing(tmp_path) == ["f.pcap", "feed.pcap"]


# --- Parquet metadata -------------------------------------------------------------------------------

def test_parquet_metadata_round_trips_the_scenario(tmp_path):
    sc = tg.load_scenario("chat", ["chat.rate=3/s", "topology.capture=server"], duration="2s",
                          seed=42)
    tg.generate(sc, flows=tmp_path / "f.parquet", requests=tmp_path / "r.parquet",
                packets=tmp_path / "p.parquet")
    for name, table in [("f", "flows"), ("r", "requests"), ("p", "packets")]:
        schema = pq.read_schema(tmp_path / f"{name}.parquet")
        meta = {k.decode(): v.decode() for k, v in schema.metadata.items()}
        assert meta["trafficgen.table"] == table
        assert meta["trafficgen.seed"] == "42" and meta["trafficgen.scenario_name"] == "chat"
        assert meta["trafficgen.version"] == tg.__version__
        again = Scenario.from_dict(json.loads(meta["trafficgen.scenario"]))
        assert again == sc
        assert schema.remove_metadata().equals(SCHEMAS[table].remove_metadata())
