"""What ``generate`` says (issue 16): an output with no request warns with the reason and the fix;
the summary gives the capture's real span beside the duration asked; durations take plain
seconds and their errors name the option, limits shown as durations; an unknown scenario names
the built-ins; a capture given where a request trace is expected says so; a reader that closes
the capture's pipe ends the run quietly with exit status 0."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pyarrow.parquet as pq
import pytest

import trafficgen as tg
from trafficgen.engine.report import no_request_warning
from trafficgen.traces.read import read_trace

from .helpers import SMALL_ARGS, cli, digest, listing, without_compiling, write_pcap, write_pcapng


def refused(done: subprocess.CompletedProcess, *words: str) -> None:
    """Exit status 2 and exactly one line on stderr, starting 'error:', naming ``words``."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    for w in words:
        assert w in done.stderr, (w, done.stderr)


# --- an output with no request --------------------------------------------------------------

KV_WARNING = ("warning: the output holds no request: kv_transfer.rate is 0.01/s (one every 100 s "
              "on average) and --duration is 30 s; give --duration 100s or more (one on average), "
              "or -t kv_transfer.rate=2/min\n")


def test_an_empty_output_warns_with_the_rate_key_and_the_fix(tmp_path):
    """The README's case: one KV transfer per 100 s, 30 s asked: a 24-byte pcap, exit 0, and
    one line saying why and what to change; also with -q, and in --json."""
    out = tmp_path / "kv.pcap"
    done = cli("generate", "kv-transfer", "--duration", "30s", "-o", out)
    assert done.returncode == 0 and out.stat().st_size == 24
    assert done.stderr == KV_WARNING
    assert done.stdout.startswith(f"wrote {out}: 0 packets") and "no packets" in done.stdout
    done = cli("generate", "kv-transfer", "--duration", "30s", "-o", out, "-q")
    assert done.returncode == 0 and done.stdout == "" and done.stderr == KV_WARNING
    done = cli("generate", "kv-transfer", "--duration", "30s", "-o", out, "--json")
    report = json.loads(done.stdout)
    assert report["warnings"] == [KV_WARNING[len("warning: "):-1]] and report["requests"] == 0
    assert report["first_packet_s"] is None and done.stderr == KV_WARNING
    # the fix it gives works: 100 s holds a transfer (with this seed)
    done = cli("generate", "kv-transfer", "--duration", "100s", "--requests", tmp_path / "r.parquet",
               "--json", timeout=300)
    assert done.returncode == 0 and done.stderr == "" and json.loads(done.stdout)["warnings"] == []
    assert json.loads(done.stdout)["requests"] >= 1


def test_a_run_with_requests_has_no_warning(tmp_path):
    done = cli("generate", "chat", *SMALL_ARGS, "--requests", tmp_path / "r.parquet", "--json")
    assert done.returncode == 0 and done.stderr == ""
    assert json.loads(done.stdout)["warnings"] == []


@pytest.mark.parametrize("overrides, kw, words", [
    (["chat.rate=0"], {}, ["chat.rate is 0", "-t chat.rate=1/min"]),
    ([], {"stop_at_ns": 10**7}, ["chat.rate is 20/s", "--stop-at is 0.01 s", "give --stop-at 50ms or more",
                                 "-t chat.rate=100/s"]),
    (["chat.rate=1/h", "scenario.duration=30s"], {"stop_at_ns": 10 * 10**9},
     ["chat.rate is 1/h", "--stop-at is 10 s", "give --stop-at 1h and --duration 1h or more"]),
    (["chat.rate=100/s"], {}, ["though chat.rate is 100/s", "1e+03 expected on average", "arrival process"]),
    (["chat.rate=1e-9/s"], {}, ["chat.rate is 1e-9/s", "give -t chat.rate=6/min or more"]),
])
def test_the_warning_names_what_to_change(overrides, kw, words):
    sc = tg.load_scenario("chat", ["scenario.duration=10s", *overrides])
    text = no_request_warning(sc, kw.get("stop_at_ns"))
    assert text.startswith("the output holds no request") and "\n" not in text
    for w in words:
        assert w in text, (w, text)


def test_the_warning_adds_up_the_classes_of_a_mix():
    sc = tg.load_scenario("enterprise-mix", ["chat.rate=0.001/s", "coding.rate=0.002/s", "multimodal.rate=0",
                                             "reasoning.rate=0", "agentic.rate=0", "rag.rate=0",
                                             "multimodal.voice_rate=0", "multimodal.video_rate=0"],
                          duration="1s")
    text = no_request_warning(sc, None)
    assert "chat.rate is 0.001/s and coding.rate is 0.002/s (together one every 333 s on average)" in text
    assert "give --duration 334s or more" in text and "-t coding.rate=" in text


# --- the capture's span ----------------------------------------------------------------------

def test_the_summary_gives_the_captures_span_beside_the_duration(tmp_path):
    """Sessions that start within --duration run to their end: reasoning answers last minutes,
    and the summary says where the capture really ends."""
    args = ["generate", "reasoning", "-t", "reasoning.rate=1/s", "--duration", "10", "--seed", "2",
            "--packets", tmp_path / "p.parquet"]
    report = json.loads(cli(*args, "--json").stdout)
    ts = pq.read_table(tmp_path / "p.parquet", columns=["ts_ns"])["ts_ns"].to_numpy()
    start = tg.load_scenario("reasoning").start_ns
    assert report["duration_s"] == 10 and report["stop_at_s"] is None
    assert report["first_packet_s"] == round((ts.min() - start) / 1e9, 6)
    assert report["last_packet_s"] == round((ts.max() - start) / 1e9, 6) > 60
    line = cli(*args).stdout
    first = report["first_packet_s"]
    first = f"{first:.1f}" if first >= 1 else f"{first:.3f}"
    assert f"(10 s of 'reasoning', seed 2; packets from {first} to {report['last_packet_s']:,.1f} s)" in line
    # without packets the span is the flows' (their first to last packet): the same figures
    tables = json.loads(cli(*args[:-2], "--flows", tmp_path / "f.parquet", "--json").stdout)
    assert (tables["first_packet_s"], tables["last_packet_s"]) == (report["first_packet_s"],
                                                                  report["last_packet_s"])


# --- durations ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["--duration", "0s"], ["--duration: must be from 1ms to 30d, got '0s'"]),
    (["--duration", "60d"], ["--duration: must be from 1ms to 30d, got '60d'"]),
    (["--duration", "soon"], ["--duration: expected a duration", "or a number of seconds, got 'soon'"]),
    (["--stop-at", "0"], ["--stop-at: must be from 1ms to 30d, got '0'"]),
    (["--stop-at=-5s"], ["--stop-at", "'-5s'"]),
])
def test_a_bad_duration_blames_the_option(tmp_path, args, words):
    done = cli("generate", "chat", *args, "-o", "x.pcap", cwd=tmp_path)
    refused(done, *words)
    assert "<overrides>" not in done.stderr and "e+" not in done.stderr
    assert listing(tmp_path) == []


def test_limits_print_as_durations():
    with pytest.raises(tg.ConfigError, match=r"must be from 1ms to 1d, got '2d'"):
        tg.load_scenario("chat", ["chat.keepalive=2d"])
    with pytest.raises(tg.ConfigError, match=r"must be from 0s to 1s, got '2s'"):
        tg.load_scenario("kv-transfer", ["kv_transfer.rtt=2s"])


def test_durations_take_plain_seconds(tmp_path):
    done = cli("generate", "chat", "-t", "chat.rate=4/s", "--duration", "3", "--seed", "3",
               "--stop-at", "2.5", "--requests", tmp_path / "r.parquet", "--json")
    report = json.loads(done.stdout)
    assert report["duration_s"] == 3 and report["stop_at_s"] == 2.5
    # a scenario key that takes a duration, given as a string of seconds
    sc = tg.load_scenario("chat", {"chat.keepalive": "30", "scenario.duration": "90"})
    assert sc.chat.keepalive == 30 * 10**9 and sc.duration_ns == 90 * 10**9
    assert tg.load_scenario("chat", duration="60").duration_ns == 60 * 10**9


# --- names and files ----------------------------------------------------------------------------

def test_an_unknown_scenario_names_the_builtins(tmp_path):
    """Before 'nothing to write': the name is what is wrong."""
    for args in (["generate", "nope"], ["generate", "nope", "--duration", "30s"],
                 ["generate", "nope", "--trace", "t.csv"]):
        refused(cli(*args, cwd=tmp_path), "nope", "no such scenario", "built-ins: agentic, chat",
                "kv-transfer", "reasoning")
    refused(cli("generate", "chat", cwd=tmp_path), "nothing to write")


@pytest.fixture
def captures(tmp_path):
    frame = bytes(range(60))
    write_pcap(tmp_path / "cap.pcap", [frame], [10**9])
    write_pcap(tmp_path / "old.csv", [frame], [10**9], nanos=False, big=True)  # whatever its name
    write_pcapng(tmp_path / "cap.pcapng", [frame], [10**9])
    (tmp_path / "blob.csv").write_bytes(bytes(range(256)) * 8)
    return tmp_path


@pytest.mark.parametrize("argv", [
    ["fit", "{f}", "-o", "out.toml"],
    ["compare", "{f}", "{f}"],
    ["generate", "chat", "--trace", "{f}", "-o", "out.pcap"],
])
@pytest.mark.parametrize("name, kind", [("cap.pcap", "pcap capture"), ("old.csv", "pcap capture"),
                                        ("cap.pcapng", "pcapng capture"), ("blob.csv", "binary file")])
def test_a_capture_is_not_a_request_trace(captures, argv, name, kind):
    done = cli(*[a.format(f=name) for a in argv], cwd=captures)
    refused(done, f"{name}: a {kind}, not a request trace")
    assert "expected a header" not in done.stderr
    if kind.endswith("capture"):
        assert f"trafficgen inspect {name}" in done.stderr
    assert not (captures / "out.toml").exists() and not (captures / "out.pcap").exists()


def test_parquet_and_text_traces_still_read(tmp_path):
    (tmp_path / "t.csv").write_text("time_s,input_tokens,output_tokens\n0,100,20\n1.5,200,30\n")
    assert len(read_trace(tmp_path / "t.csv")) == 2


# --- a reader that closes the capture's pipe ------------------------------------------------------

LONG = ["generate", "chat", "--duration", "10m", "--seed", "3"]


def _reader_closes_early(argv, take: int) -> subprocess.CompletedProcess:
    """Run trafficgen with stdout on a pipe; read ``take`` bytes, then close it (as head -c)."""
    with subprocess.Popen([sys.executable, "-m", "trafficgen", *map(str, argv)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL) as proc:
        got = proc.stdout.read(take)
        proc.stdout.close()
        err = without_compiling(proc.stderr.read().decode())
        proc.wait(timeout=300)
    assert len(got) == take
    return subprocess.CompletedProcess(argv, proc.returncode, got, err)


def test_head_on_the_capture_ends_the_run_quietly():
    """``generate ... -o - | head -c 100``: exit 0, nothing on stderr (no 'Exception ignored'),
    and the run stops there (10 minutes of chat would take far longer)."""
    done = _reader_closes_early([*LONG, "-o", "-"], 100)
    assert done.returncode == 0 and done.stderr == ""
    done = _reader_closes_early([*LONG, "-o", "-", "--workers", "2"], 100_000)
    assert done.returncode == 0 and done.stderr == ""


def test_other_outputs_are_written_whole_when_the_capture_reader_goes(tmp_path):
    """As ``tee -p``: the run goes on without the capture; the tables are those of a run
    without it, byte for byte; the report says where the capture ended."""
    args = ["generate", "chat", "-t", "chat.rate=6/s", "--duration", "20s", "--seed", "3"]
    done = _reader_closes_early([*args, "-o", "-", "--flows", tmp_path / "a.parquet", "--json"], 100)
    assert done.returncode == 0
    report = json.loads(done.stderr)
    assert report["capture_reader_left"] is True and 100 <= report["capture_bytes_written"] < 1 << 20
    assert report["outputs"] == {"capture": "-", "flows": str(tmp_path / "a.parquet")}
    cli(*args, "--flows", tmp_path / "b.parquet")
    assert digest(tmp_path / "a.parquet") == digest(tmp_path / "b.parquet")
    assert listing(tmp_path) == ["a.parquet", "b.parquet"]


def test_a_fifo_reader_that_goes_away(tmp_path):
    """A FIFO capture is a pipe too: its reader closing it ends the capture, exit 0, and the
    table beside it is written."""
    fifo = tmp_path / "cap.pcap"
    os.mkfifo(fifo)
    got = []

    def reader():
        with open(fifo, "rb") as f:
            got.append(f.read(100))

    t = threading.Thread(target=reader)
    t.start()
    done = cli(*LONG[:3], "1m", *LONG[4:], "-o", fifo, "--flows", tmp_path / "f.parquet", timeout=300)
    t.join()
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert len(got[0]) == 100 and got[0][:4] == bytes.fromhex("4d3cb2a1")
    assert f"wrote {fifo}, {tmp_path / 'f.parquet'}: " in done.stdout
    assert "the capture's reader closed it after" in done.stdout
    assert pq.read_metadata(tmp_path / "f.parquet").num_rows > 0



def test_a_pcapng_fifo_reader_that_goes_away_is_an_error_with_tables(tmp_path):
    """A FIFO named .pcapng is written by its sink, not taken as a pipe: when its reader goes
    away the run stops; with a table beside it, one line says the table was not written."""
    fifo = tmp_path / "cap.pcapng"
    os.mkfifo(fifo)
    for extra, code in ((["--flows", tmp_path / "f.parquet"], 1), ([], 0)):
        t = threading.Thread(target=lambda: open(fifo, "rb").close())
        t.start()
        done = cli(*LONG[:3], "1m", *LONG[4:], "-o", fifo, *extra, timeout=300)
        t.join()
        assert done.returncode == code, done.stderr
        if code:
            assert done.stderr == (f"error: {fifo}: its reader closed it before the end; the run "
                                   f"stopped, so {tmp_path / 'f.parquet'} were not written\n")
        else:
            assert done.stderr == "" and done.stdout == ""
    assert listing(tmp_path) == ["cap.pcapng"]


def test_a_short_cut_of_a_long_run_stays_in_this_process(tmp_path):
    """Workers start by themselves for runs of 5 minutes or more: what counts is the time up to
    the cut, so a minute cut from an hour is one process (and simulates only that minute)."""
    done = cli("generate", "chat", "-t", "chat.rate=4/s", "--duration", "1h", "--stop-at", "3",
               "--requests", tmp_path / "r.parquet", "--json")
    report = json.loads(done.stdout)
    assert report["workers"] == 1 and report["stop_at_s"] == 3 and report["elapsed_s"] < 30
