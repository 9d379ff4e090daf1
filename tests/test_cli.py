"""The command line and the output contract: help with examples that parse, models, --json
reports that match the files, quiet and non-terminal runs that print no progress, a progress bar
on a terminal, bad input as one line with exit status 2, and outputs that appear whole or not at
all (a failed or interrupted run leaves the user's files as they were and no temporary files).
"""
from __future__ import annotations

import fcntl
import json
import os
import shlex
import signal
import struct
import subprocess
import sys
import termios
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

import trafficgen as tg
from trafficgen.cli.main import EXAMPLES, build_parser
from trafficgen.config.scenario import Scenario
from trafficgen.errors import TrafficgenError
from trafficgen.schema import DTYPES, SCHEMAS, empty, to_arrow

SMALL = ["-t", "chat.rate=4/s", "--duration", "3s", "--seed", "3"]


def cli(*args, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trafficgen", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def refused(done: subprocess.CompletedProcess, *words: str) -> None:
    """Exit status 2 and exactly one line on stderr, starting 'error:', naming ``words``."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    for w in words:
        assert w in done.stderr, (w, done.stderr)


# --- help, models, reports ------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["generate", "inspect", "models"])
def test_help_has_examples_that_parse(command):
    done = cli(command, "--help")
    assert done.returncode == 0 and "examples:" in done.stdout
    lines = [ln.strip() for ln in EXAMPLES[command].replace("\\\n", " ").splitlines()[1:]]
    assert lines, "no examples"
    for line in lines:
        argv = shlex.split(line.split("|")[0].split("#")[0])
        assert argv[0] == "trafficgen" and argv[1] == command
        args = build_parser().parse_args(argv[1:])  # exits (status 2) if an example is stale
        assert args.command == command


def test_top_level_help_and_version():
    done = cli("--help")
    assert done.returncode == 0 and "generate" in done.stdout and "inspect" in done.stdout
    done = cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"trafficgen {tg.__version__}"
    refused(cli(), "COMMAND")


def test_models_lists_the_builtins():
    done = cli("models")
    assert done.returncode == 0
    rows = [ln for ln in done.stdout.splitlines() if ln.strip()]
    assert any(ln.split()[0] == "chat" for ln in rows)
    listed = json.loads(cli("models", "--json").stdout)
    chat = next(m for m in listed if m["name"] == "chat")
    assert chat["classes"] == ["chat"] and chat["description"]
    assert len(listed) == len(rows)


def test_json_report_matches_the_files(tmp_path, capinfos):
    out = {k: tmp_path / f"{k}.{ext}" for k, ext in
           [("pcap", "pcap"), ("flows", "parquet"), ("requests", "parquet"), ("packets", "parquet")]}
    done = cli("generate", "chat", *SMALL, "-o", out["pcap"], "--flows", out["flows"],
               "--requests", out["requests"], "--packets", out["packets"], "--json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # stderr is not a terminal: no progress bar
    report = json.loads(done.stdout)
    assert report["scenario"] == "chat" and report["seed"] == 3 and report["duration_s"] == 3
    assert report["packets"] == pq.read_metadata(out["packets"]).num_rows
    assert report["flows"] == pq.read_metadata(out["flows"]).num_rows
    assert report["requests"] == pq.read_metadata(out["requests"]).num_rows
    packets = pq.read_table(out["packets"], columns=["wire_len"])
    assert report["wire_bytes"] == sum(packets.column("wire_len").to_pylist())
    info = subprocess.run([capinfos, "-M", "-c", "-T", out["pcap"]], capture_output=True, text=True)
    assert info.stdout.split()[-1] == str(report["packets"])
    assert report["outputs"] == {"capture": str(out["pcap"]), "flows": str(out["flows"]),
                                 "requests": str(out["requests"]), "packets": str(out["packets"])}


def test_summary_line_and_quiet(tmp_path):
    done = cli("generate", "chat", *SMALL, "-o", tmp_path / "a.pcap")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.count("\n") == 1 and done.stdout.startswith(f"wrote {tmp_path / 'a.pcap'}: ")
    done = cli("generate", "chat", *SMALL, "-o", tmp_path / "b.pcap", "-q")
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()


def test_progress_bar_on_a_terminal(tmp_path):
    """With stderr on a terminal there is a progress bar; --quiet turns it off."""
    def run_on_pty(*extra):
        leader, follower = os.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        try:
            proc = subprocess.Popen([sys.executable, "-m", "trafficgen", "generate", "chat",
                                     "--duration", "20s", "--requests", tmp_path / "r.parquet",
                                     *extra], stderr=follower, stdout=subprocess.DEVNULL,
                                    stdin=subprocess.DEVNULL)
            os.close(follower)
            chunks = []
            while True:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            assert proc.wait(timeout=120) == 0
            return b"".join(chunks).decode(errors="replace")
        finally:
            os.close(leader)

    shown = run_on_pty()
    assert "%|" in shown and "20 s simulated" in shown
    assert run_on_pty("-q") == ""


# --- bad input --------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["generate", "no-such-scenario", "-o", "x.pcap"], ["no-such-scenario", "chat"]),
    (["generate", "chat", "--duration", "5 parsecs", "-o", "x.pcap"], ["--duration", "5 parsecs"]),
    (["generate", "chat", "--duration", "-5s", "-o", "x.pcap"], ["--duration"]),
    (["generate", "chat", "--seed", "-1", "-o", "x.pcap"], ["--seed", "-1"]),
    (["generate", "chat", "--seed", "seven", "-o", "x.pcap"], ["--seed", "seven"]),
    (["generate", "chat", "--window", "1ms", "-o", "x.pcap"], ["window", "1ms"]),
    (["generate", "chat"], ["nothing to write"]),
    (["generate", "chat", "-o", "x.txt"], ["x.txt", ".pcap"]),
    (["generate", "chat", "-o", "same.pcap", "--flows", "same.pcap"], ["same.pcap", "both"]),
    (["generate", "chat", "-o", "no/such/dir/x.pcap"], ["no/such/dir", "does not exist"]),
    (["generate", "chat", "-o", "."], ["is a directory"]),
    (["generate", "chat", "-t", "chat.rate", "-o", "x.pcap"], ["chat.rate"]),
    (["generate", "chat", "-t", "chat.nope=1", "-o", "x.pcap"], ["chat.nope"]),
    (["generate", "chat", "--frobnicate"], ["--frobnicate"]),
    (["inspect", "missing.pcap"], ["missing.pcap"]),
    (["launch"], ["launch"]),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, words):
    done = cli(*args, cwd=tmp_path)
    refused(done, *words)
    assert list(tmp_path.iterdir()) == [], "a refused run wrote something"


def test_bad_scenario_file_names_file_and_key(tmp_path):
    bad = tmp_path / "mine.toml"
    bad.write_text('[scenario]\nbase = "chat"\n[chat]\nrate = "fast"\n')
    refused(cli("generate", bad, "-o", tmp_path / "x.pcap"), "mine.toml", "chat.rate", "fast")
    bad.write_text("[chat\n")
    refused(cli("generate", bad, "-o", tmp_path / "x.pcap"), "mine.toml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.toml"]


# --- outputs appear whole or not at all ------------------------------------------------------------

def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


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
    assert _listing(tmp_path) == ["cap.pcap", "flows.parquet"]
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
    assert _listing(tmp_path) == ["cap.pcap", "r.parquet"]
    assert (tmp_path / "cap.pcap").read_bytes() == b"mine"
    assert (tmp_path / "r.parquet").read_bytes() == b"also mine"


def test_interrupt_leaves_nothing_behind(tmp_path):
    """Ctrl-C in the middle of a long run: exit 130, one line, the old file intact, no .part."""
    target = tmp_path / "long.pcap"
    target.write_bytes(b"precious")
    proc = subprocess.Popen([sys.executable, "-m", "trafficgen", "generate", "chat",
                             "--duration", "1h", "-o", str(target)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while not any(p.name.endswith(".part") and p.stat().st_size > 1 << 20
                  for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "never started writing"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.count("\n") == 1 and err.startswith("error: interrupted"), err
    assert _listing(tmp_path) == ["long.pcap"]
    assert target.read_bytes() == b"precious"


def test_success_replaces_an_existing_file_with_normal_permissions(tmp_path):
    target = tmp_path / "cap.pcap"
    target.write_bytes(b"old")
    tg.generate(tg.load_scenario("chat", ["chat.rate=2/s"], duration="2s"), pcap=target)
    assert target.read_bytes()[:4] == bytes.fromhex("4d3cb2a1")  # nanosecond pcap, little-endian
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert _listing(tmp_path) == ["cap.pcap"]


def test_file_objects_get_the_same_bytes(tmp_path):
    import io
    sc = tg.load_scenario("chat", ["chat.rate=4/s"], duration="3s", seed=3)
    buf = io.BytesIO()
    report = tg.generate(sc, pcap=buf)
    tg.generate(sc, pcap=tmp_path / "x.pcap")
    assert buf.getvalue() == (tmp_path / "x.pcap").read_bytes()
    assert report["outputs"] == {}


# --- the Parquet contract ---------------------------------------------------------------------------

def test_schema_dtypes_and_arrow_schemas_agree():
    for table, dtype in DTYPES.items():
        schema = SCHEMAS[table]
        assert list(dtype.names) == schema.names
        batch = to_arrow(empty(table, 3), table)
        assert batch.schema.equals(schema, check_metadata=False), table
        assert all(not f.nullable for f in schema)


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


def test_library_refuses_bad_arguments_with_trafficgen_errors(tmp_path):
    with pytest.raises(TrafficgenError, match="batch_packets"):
        list(tg.batches("chat", batch_packets=0))
    with pytest.raises(TrafficgenError, match="window"):
        tg.generate("chat", pcap=tmp_path / "x.pcap", window=5)
    assert _listing(tmp_path) == []


# --- special outputs ----------------------------------------------------------------------------

def test_capture_to_standard_output(tmp_path):
    """``-o -`` streams the pcap to stdout (for tcpdump -r -, tshark -r -); talk goes to stderr."""
    done = subprocess.run([sys.executable, "-m", "trafficgen", "generate", "chat", *SMALL,
                           "-o", "-", "--json"], capture_output=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stderr)
    assert report["outputs"] == {"capture": "-"}
    cli("generate", "chat", *SMALL, "-o", tmp_path / "f.pcap", "-q")
    assert done.stdout == (tmp_path / "f.pcap").read_bytes()


def test_devices_and_fifos_are_written_in_place(tmp_path):
    """/dev/null stays a device (as root, a rename would have replaced it); a FIFO is fed."""
    import stat
    import threading
    done = cli("generate", "chat", *SMALL, "-o", "/dev/null", "-q")
    assert done.returncode == 0, done.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    fifo = tmp_path / "feed.pcap"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    done = cli("generate", "chat", *SMALL, "-o", fifo, "-q")
    reader.join(60)
    assert done.returncode == 0, done.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    cli("generate", "chat", *SMALL, "-o", tmp_path / "f.pcap", "-q")
    assert got == [(tmp_path / "f.pcap").read_bytes()]
    assert _listing(tmp_path) == ["f.pcap", "feed.pcap"]


def test_tables_need_regular_files(tmp_path):
    refused(cli("generate", "chat", *SMALL, "--flows", "/dev/null"), "/dev/null", "regular file")


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


def test_buffer_pool_reuses_released_buffers():
    from trafficgen.engine.core import BufferPool
    pool = BufferPool(keep=2)
    a = pool.get(1000)
    assert a.shape == (1000,) and a.dtype == np.uint8
    pool.release(a)
    b = pool.get(900)  # fits in the released one: the same memory
    assert np.shares_memory(a, b) and b.shape == (900,)
    c = pool.get(900)  # none free: a new one
    assert not np.shares_memory(b, c)
    for buf in (b, c, pool.get(10)):
        pool.release(buf)
    assert len(pool._free) == 2  # keeps at most `keep` spares
