"""Issue 17's faults, each tried again: inputs beyond what the outputs can hold (times past
pcap's 32-bit seconds, sizes past memory) and inputs that used to escape as unexpected errors
are refused before any work with exit status 2 and one line naming the key and the limit."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .helpers import cli, write_pcapng


def refused(done: subprocess.CompletedProcess, *words: str) -> None:
    """Exit status 2 and exactly one line on stderr, starting 'error:', naming ``words``."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    for w in words:
        assert w in done.stderr, (w, done.stderr)


SITE = '[{name="a", clients="10.0.0.0/24", client_count=3, rtt="100000d"}]'


@pytest.mark.parametrize("scenario,override,words", [
    ("chat", "topology.rtt=100000d", ("topology.rtt", "1d", "pcap")),
    ("chat", f"topology.sites={SITE}", ("topology.sites", "1d", "pcap")),
    ("kv-transfer", "kv_transfer.prefill_rate=1e-9/s", ("kv_transfer.prefill_rate", "a day", "pcap")),
    ("chat", "scenario.start_time=2106-02-06T00:00:00Z", ("scenario.start_time", "2106-02-07")),
    ("chat", "chat.itl=1d", ("chat.itl", "chat.output_tokens", "a day")),
])
def test_times_past_what_pcap_holds_are_refused(tmp_path, scenario, override, words):
    """Each of these wrote a capture whose timestamps wrapped or went back (and negative ts_ns
    in the packet table), exit 0."""
    done = cli("generate", scenario, "--duration", "2s", "-t", override, "-o", "x.pcap", cwd=tmp_path)
    refused(done, *words)
    assert not (tmp_path / "x.pcap").exists()


@pytest.mark.parametrize("scenario,override,words", [
    ("chat", "chat.prompt_tokens=1e12", ("chat.prompt_tokens", "10000000", "memory")),
    ("rag", "rag.chunk_tokens=1e9", ("rag.chunk_tokens", "10000000", "memory")),
    ("rag", "rag.chunk_tokens=5e6", ("rag.chunk_tokens", "rag.top_k", "10000000")),
])
def test_sizes_past_memory_are_refused(tmp_path, scenario, override, words):
    """``chat.prompt_tokens=1e12`` asked for 6.7 TiB (an unexpected MemoryError, exit 1); large
    ``rag.chunk_tokens`` never finished."""
    done = cli("generate", scenario, "--duration", "2s", "-t", override, "-o", "x.pcap", cwd=tmp_path)
    refused(done, *words)


def test_a_server_prefix_is_sized_before_its_hosts_are_listed(tmp_path):
    """``0.0.0.0/0`` listed 2**32 addresses (minutes, gigabytes) before the 65536 limit."""
    done = cli("generate", "chat", "-t", "topology.servers=0.0.0.0/0", "-o", "x.pcap", cwd=tmp_path,
               timeout=30)
    refused(done, "topology.servers", "65536", "0.0.0.0/0")


def test_workers_are_capped_by_the_machine(tmp_path):
    """``--workers 100000`` forked thousands of processes (tens of GB)."""
    done = cli("generate", "chat", "--duration", "2s", "--workers", "100000", "-o", "x.pcap",
               cwd=tmp_path, timeout=60)
    refused(done, "--workers", "at most", "on this machine", "100000")


@pytest.mark.parametrize("args,words", [
    (["-t", "chat.rate=1e6/s"], ("chat.rate", "50000", "memory", "lower chat.rate")),
    (["-t", "chat.rate=1e4/s", "--duration", "10s"], ("chat.rate", "50000", "--window 5000ms")),
])
def test_rates_past_what_a_window_holds_are_refused(tmp_path, args, words):
    """``chat.rate=1e6/s`` at the default window grew 400 MB/s until the machine ran out."""
    done = cli("generate", "chat", "--duration", "2s", *args, "-o", "x.pcap", cwd=tmp_path, timeout=60)
    refused(done, *words)


def test_a_pcapng_of_any_timestamp_resolution_reads(tmp_path):
    """``if_tsresol`` >= 28 (10**19 and finer) was an unexpected OverflowError in inspect, plot
    and replay (an int64 divisor); such a resolution is read as a scale, as 2**-k is."""
    frame = bytes.fromhex("ffffffffffff0000000000010800") + bytes(50)
    write_pcapng(tmp_path / "r9.pcapng", [frame] * 3, [10**18, 10**18 + 1000, 10**18 + 2000])
    raw = (tmp_path / "r9.pcapng").read_bytes()
    at = raw.index(bytes.fromhex("0900010009")) + 4  # the if_tsresol option's value
    for res in (28, 30, 127):
        path = tmp_path / f"r{res}.pcapng"
        path.write_bytes(raw[:at] + bytes([res]) + raw[at + 1:])
        done = cli("inspect", path, cwd=tmp_path)
        assert done.returncode == 0 and done.stderr == "" and "packets" in done.stdout, done.stderr
    done = cli("plot", tmp_path / "r30.pcapng", "-o", tmp_path / "p.png", cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr


@pytest.mark.parametrize("seed", [b"abc", b"1e3", b"\xff\xfe", b"-1"])
def test_parquet_metadata_whose_seed_is_not_a_number(tmp_path, seed):
    """``inspect`` ended with an unexpected ValueError (int() of the seed's text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.table({"x": [1, 2]}).replace_schema_metadata({b"trafficgen.seed": seed,
                                                             b"trafficgen.table": b"\xff"})
    pq.write_table(table, tmp_path / "t.parquet")
    refused(cli("inspect", tmp_path / "t.parquet"), "t.parquet", "trafficgen.seed", "not a whole number")


def test_fit_on_a_trace_whose_rows_share_one_time(tmp_path):
    """A TypeError (the rate of a zero span is None) escaped as an unexpected error."""
    rows = "".join(f"2023-11-16 18:15:46.6805900,{100 + i},{20 + i}\n" for i in range(500))
    (tmp_path / "same.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + rows)
    done = cli("fit", tmp_path / "same.csv", "-o", tmp_path / "f.toml")
    refused(done, "same.csv", "500 requests", "too close together")
    assert not (tmp_path / "f.toml").exists()


# --- scenarios: bases, nesting, overrides ---------------------------------------------------

def _chain(folder, n: int, circular: bool) -> None:
    """s0.toml -> s1.toml -> ... -> s{n-1}.toml -> chat (or back to s0)."""
    folder.mkdir()
    for i in range(n):
        nxt = f"s{i + 1}.toml" if i < n - 1 else ("s0.toml" if circular else "chat")
        (folder / f"s{i}.toml").write_text(f'[scenario]\nbase = "{nxt}"\n')


@pytest.mark.parametrize("circular,words", [(False, "more than 32 bases"), (True, "more than 32 bases"),
                                            ("short", "circular base")])
def test_long_and_circular_base_chains(tmp_path, circular, words):
    """2,000-deep chains, circular or not, ended in a RecursionError."""
    n = 3 if circular == "short" else 2000
    _chain(tmp_path / "d", n, bool(circular))
    done = cli("generate", tmp_path / "d" / "s0.toml", "-o", "x.pcap", cwd=tmp_path)
    refused(done, "scenario.base", words)


@pytest.mark.parametrize("text", ["x = " + "[" * 2000 + "]" * 2000 + "\n",
                                  "x = " + "{a = " * 2000 + "1" + "}" * 2000 + "\n",
                                  "[" + ".".join(["a"] * 2000) + "]\n"])
def test_deeply_nested_toml(tmp_path, text):
    """tomllib (or a deep copy after it) ended in a RecursionError."""
    (tmp_path / "deep.toml").write_text(text)
    refused(cli("generate", tmp_path / "deep.toml", "-o", "x.pcap", cwd=tmp_path), "deep.toml", "32 deep")
    if text.startswith("x = "):  # the same value given with -t
        refused(cli("generate", "chat", "-t", "chat.x=" + text[4:].strip(), "-o", "x.pcap", cwd=tmp_path),
                "-t", "32 deep")


def test_relative_bases_are_read_from_the_including_file(tmp_path):
    """``base = "parent.toml"`` beside the file was looked up in the working directory."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "parent.toml").write_text('[scenario]\nbase = "chat"\nname = "parent"\n')
    (tmp_path / "d" / "child.toml").write_text('[scenario]\nbase = "parent.toml"\n')
    done = cli("generate", "d/child.toml", "--duration", "1s", "-o", "x.pcap", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert '"scenario": "parent"' in done.stdout


def test_a_base_given_with_t_is_used_and_its_errors_blamed_on_it(tmp_path):
    """``-t scenario.base=...`` was silently ignored."""
    (tmp_path / "mine.toml").write_text('[scenario]\nbase = "chat"\nname = "mine"\n')
    done = cli("generate", "kv-transfer", "-t", "scenario.base=mine.toml", "--duration", "1s",
               "-o", "x.pcap", "--json", cwd=tmp_path)
    assert done.returncode == 0 and '"scenario": "kv-transfer"' in done.stdout, done.stderr
    refused(cli("generate", "chat", "-t", "scenario.base=nope.toml", "-o", "x.pcap", cwd=tmp_path),
            "nope.toml", "no such scenario file")
    refused(cli("generate", "chat", "-t", "scenario.base=5", "-o", "x.pcap", cwd=tmp_path),
            "-t: scenario.base", "expected a scenario name or path")


def test_an_error_in_the_file_is_not_blamed_on_t(tmp_path):
    """The file's own bad ``topology.rtt`` was reported against ``-t topology.rtt.max``."""
    (tmp_path / "bad.toml").write_text('[scenario]\nbase = "chat"\n[topology]\n'
                                       'rtt = {median="50ms", p90="10ms"}\n')
    done = cli("generate", "bad.toml", "-t", "topology.rtt.max=1s", "-o", "x.pcap", cwd=tmp_path)
    refused(done, "bad.toml: topology.rtt: lognormal p90")
    done = cli("generate", "chat", "-t", "topology.rtt.p90=1ms", "-o", "x.pcap", cwd=tmp_path)
    refused(done, "-t: topology.rtt: lognormal p90")


@pytest.mark.parametrize("address,words", [("", ("--scheduler ''", "expected a Dask scheduler")),
                                           ("bogus://x", ("--scheduler bogus://x", "not a Dask scheduler"))])
def test_a_scheduler_that_is_no_address(tmp_path, address, words):
    """An unexpected ValueError from distributed's Client."""
    pytest.importorskip("distributed")
    done = cli("generate", "chat", "--duration", "2s", "--scheduler", address, "-o", "x.pcap", cwd=tmp_path)
    refused(done, *words)


# --- ^C during start-up -----------------------------------------------------------------------

INTERRUPT_IMPORT = """
import runpy, sys
MODULE = sys.argv[1]
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == MODULE:
            raise KeyboardInterrupt
sys.meta_path.insert(0, Interrupt())
sys.argv = ["trafficgen", "generate", "chat", "-o", "x.pcap"]
runpy.run_module("trafficgen", run_name="__main__")
"""


@pytest.mark.parametrize("module", ["trafficgen.cli.generate", "trafficgen.cli.compiling",
                                    "trafficgen.config.scenario"])
def test_an_interrupt_while_the_modules_load_is_one_line(tmp_path, module):
    """^C in the first second (the command line's modules loading) printed a 40-line
    traceback; now it is the one line and status 130 of an interrupted run."""
    done = subprocess.run([sys.executable, "-c", INTERRUPT_IMPORT, module], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert done.stderr == "error: interrupted; no output was written\n", done.stderr


def test_a_full_disk_names_the_file(tmp_path):
    """A full disk said "unexpected OSError: [Errno 28] ..." without naming the output
    (/dev/full: every write fails with ENOSPC, as on a full disk)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    for extra in ([], ["--flows", "f.parquet"]):
        done = cli("generate", "chat", "--duration", "2s", "-o", "/dev/full", *extra, cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        assert done.stderr == "error: /dev/full: No space left on device; the run stopped\n", done.stderr
        assert not (tmp_path / "f.parquet").exists()


@pytest.mark.parametrize("flag,value,words", [("--pps", "1e-300", "one packet a day"),
                                              ("--mbps", "1e-300", "10 bit/s"),
                                              ("--multiplier", "1e-300", "1e-06")])
def test_replay_rates_too_slow_for_the_deadlines(tmp_path, flag, value, words):
    """``--pps 1e-300`` wrapped the deadlines (int64 ns) and reported negative durations, exit 0."""
    frame = bytes.fromhex("ffffffffffff0000000000010800") + bytes(50)
    write_pcapng(tmp_path / "r.pcapng", [frame] * 3, [10**18, 10**18 + 1000, 10**18 + 2000])
    done = cli("replay", tmp_path / "r.pcapng", "--iface", "lo", flag, value)
    refused(done, flag, "slower than the slowest", words)


@pytest.mark.parametrize("argv", [["fit", "{f}", "-o", "x.toml"], ["compare", "{f}", "{f}"],
                                  ["generate", "chat", "--trace", "{f}", "-o", "x.pcap"]])
def test_special_files_are_not_traces(tmp_path, argv):
    """A FIFO (``<(yes ...)``, blocking at its open) or a device such as /dev/zero (endless) was
    read until memory ran out or forever; special files are refused before they are opened."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for f in (fifo, "/dev/zero"):
        done = cli(*[a.format(f=f) for a in argv], cwd=tmp_path, timeout=60)
        refused(done, str(f))
    done = cli(*[a.format(f=fifo) for a in argv], cwd=tmp_path, timeout=60)
    refused(done, "not a regular file")


def test_plot_of_a_capture_spanning_years(tmp_path):
    """Per-second bins over 126 years: an unexpected MemoryError (30 GiB asked)."""
    frame = bytes.fromhex("ffffffffffff0000000000010800") + bytes(50)
    write_pcapng(tmp_path / "years.pcapng", [frame] * 3, [10**9, 2 * 10**9, 4 * 10**18])
    done = cli("plot", tmp_path / "years.pcapng", "-o", tmp_path / "y.png")
    refused(done, "years.pcapng", "46,296 days", "at most 100 days")
    assert not (tmp_path / "y.png").exists()


def test_a_swallowed_interrupt_still_stops_the_run(tmp_path, capsys, monkeypatch):
    """A ^C landing in a callback from numba's LLVM was printed as "Exception ignored ..." and
    swallowed: the run went on and exited 0. The handler's flag stops it: no output, 130."""
    import importlib

    import trafficgen as tg
    from trafficgen.errors import INTERRUPTED
    main_module = importlib.import_module("trafficgen.cli.main")
    models = main_module.cmd_models

    def swallowed(args):  # as a callback that caught the KeyboardInterrupt
        INTERRUPTED.set()
        return models(args)
    monkeypatch.setattr(main_module, "cmd_models", swallowed)
    assert main_module.main(["models"]) == 130
    assert capsys.readouterr().err == "error: interrupted; no output was written\n"
    assert not INTERRUPTED.is_set()
    INTERRUPTED.set()  # the outputs are not renamed into place
    try:
        with pytest.raises(KeyboardInterrupt):
            tg.generate(tg.load_scenario("chat", duration="1s"), pcap=tmp_path / "x.pcap")
    finally:
        INTERRUPTED.clear()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, code", [
    (["generate", "chat", "--duration", "1s", "-t", "chat.rate=bogus", "-o", "x.pcap"], 2),
    (["inspect", "missing.pcap"], 2),
    (["generate", "chat", "--duration", "1s", "-o", "y.pcap", "-q"], 0)])
def test_a_closed_standard_error_changes_no_status(tmp_path, argv, code):
    """``2>&-``: the message has nowhere to go, but the status is the one the run earns (a
    failed write to the closed stream used to make it 1), and a good run writes its output."""
    done = subprocess.run([sys.executable, "-m", "trafficgen", *argv], cwd=tmp_path,
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          preexec_fn=lambda: os.close(2))
    assert done.returncode == code
    assert (tmp_path / "y.pcap").exists() == (code == 0)
