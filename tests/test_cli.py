"""The command line: help with examples that parse, models, --json reports that match the
files, quiet and non-terminal runs that print no progress, a progress bar on a terminal, bad
input as one line with exit status 2, an interrupted run that leaves the user's files as they
were, the library's bytes, and the capture on standard output. (Outputs that appear whole or
not at all, file objects, devices and FIFOs: test_sinks.py.)
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

import pyarrow.parquet as pq
import pytest

import trafficgen as tg
from trafficgen.cli.main import EXAMPLES, build_parser

from .helpers import REFERENCE, SMALL_ARGS, cli, digest, listing, without_compiling


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
    done = cli("generate", "chat", *SMALL_ARGS, "-o", out["pcap"], "--flows", out["flows"],
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
    # the capture's real span, beside the duration asked; no cut, nothing left open, no warning
    ts = pq.read_table(out["packets"], columns=["ts_ns"]).column("ts_ns").to_numpy()
    start = tg.load_scenario("chat").start_ns
    assert report["first_packet_s"] == round((ts[0] - start) / 1e9, 6)
    assert report["last_packet_s"] == round((ts[-1] - start) / 1e9, 6) > report["duration_s"]
    assert report["stop_at_s"] is None and report["truncated"] == {"flows": 0, "requests": 0}
    assert report["warnings"] == []
    assert not any(pq.read_table(out["flows"], columns=["truncated"]).column("truncated").to_pylist())


def test_summary_line_and_quiet(tmp_path):
    done = cli("generate", "chat", *SMALL_ARGS, "-o", tmp_path / "a.pcap")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.count("\n") == 1 and done.stdout.startswith(f"wrote {tmp_path / 'a.pcap'}: ")
    done = cli("generate", "chat", *SMALL_ARGS, "-o", tmp_path / "b.pcap", "-q")
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
    (["generate", "no-such-scenario"], ["no-such-scenario", "no such scenario", "chat"]),
    (["generate", "chat", "--duration", "0s", "-o", "x.pcap"], ["--duration", "1ms to 30d"]),
    (["generate", "chat", "--stop-at", "later", "-o", "x.pcap"], ["--stop-at", "later"]),
    (["generate", "chat", "--stop-at", "10s", "--iface", "lo"], ["--stop-at", "--limit"]),
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


# --- an interrupted run ------------------------------------------------------------------------------

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
    err = without_compiling(proc.communicate(timeout=60)[1])
    assert proc.returncode == 130
    assert err.count("\n") == 1 and err.startswith("error: interrupted"), err
    assert listing(tmp_path) == ["long.pcap"]
    assert target.read_bytes() == b"precious"


# --- the same bytes as the library --------------------------------------------------------------

def test_cli_and_library_write_the_same_bytes(reference_run, tmp_path):
    cmd = [sys.executable, "-m", "trafficgen", "generate", "chat", "-t", "chat.rate=6/s",
           "--duration", REFERENCE["duration"], "--seed", "5", "-q", "-o", str(tmp_path / "c.pcap"),
           "--packets", str(tmp_path / "p.parquet")]
    subprocess.run(cmd, check=True, capture_output=True)
    assert digest(tmp_path / "c.pcap") == digest(reference_run.pcap)
    assert digest(tmp_path / "p.parquet") == digest(reference_run.packets)


# --- special outputs ----------------------------------------------------------------------------

def test_capture_to_standard_output(tmp_path):
    """``-o -`` streams the pcap to stdout (for tcpdump -r -, tshark -r -); talk goes to stderr."""
    done = subprocess.run([sys.executable, "-m", "trafficgen", "generate", "chat", *SMALL_ARGS,
                           "-o", "-", "--json"], capture_output=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    report = json.loads(without_compiling(done.stderr.decode()))
    assert report["outputs"] == {"capture": "-"}
    cli("generate", "chat", *SMALL_ARGS, "-o", tmp_path / "f.pcap", "-q")
    assert done.stdout == (tmp_path / "f.pcap").read_bytes()


def test_tables_need_regular_files(tmp_path):
    refused(cli("generate", "chat", *SMALL_ARGS, "--flows", "/dev/null"), "/dev/null", "regular file")


