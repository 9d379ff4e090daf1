"""The fault suite of mutated inputs (issue 17, item 5): captures, traces, Parquet tables,
scenario files and ``-t`` overrides, mutated by ``fuzzing`` and run through every reader
(``fuzzcli``: inspect, plot, replay's reading, fit, compare, generate --trace, generate -t,
scenario loading) in this process. The promise: exit 0, or exit 2 with exactly one ``error:``
line; never a traceback, "unexpected", exit 1 or a hang. One case per reader also runs as a
command in a fresh process and must say the same as in this one.

About 800 cases here (derandomized: the same ones each run); ``TRAFFICGEN_FUZZ_EXAMPLES=N``
runs N per reader, randomly; ``bench/fault_campaign.py --cases 100000`` runs a campaign.
Below them, the regressions the campaign found, each with its own input.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trafficgen as tg

from . import fuzzcli as fc
from .fuzzing import HypothesisDraw, pcap_bytes
from .helpers import cli

EXAMPLES = {"inspect": 120, "replay": 120, "fit": 100, "compare": 100, "trace": 100, "override": 120,
            "scenario": 120, "plot": 15}  # plot draws a PNG per case: ten times slower
CHOSEN = int(os.environ.get("TRAFFICGEN_FUZZ_EXAMPLES", "0"))


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """A small real run's flow, request and packet tables: the Parquet seeds."""
    d = tmp_path_factory.mktemp("seeds")
    paths = {k: d / f"{k}.parquet" for k in ("flows", "requests", "packets")}
    tg.generate(tg.load_scenario("chat", {"chat.rate": "3/s"}, duration="1s", seed=2), **paths)
    return paths


@pytest.mark.parametrize("reader", sorted(EXAMPLES))
def test_mutated_inputs_keep_the_promise(reader, tables, tmp_path_factory):
    keys, outcomes = fc.section_keys(), {}

    @settings(max_examples=CHOSEN or EXAMPLES[reader], derandomize=not CHOSEN, deadline=None,
              database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def case(data):
        folder = tmp_path_factory.mktemp(reader)
        argv, o, bad = fc.run_case(reader, HypothesisDraw(data), folder, tables, keys)
        outcomes[o.status] = outcomes.get(o.status, 0) + 1
        assert bad is None, (bad, argv, o.err)
    case()
    assert sum(outcomes.values()) >= (CHOSEN or EXAMPLES[reader]), outcomes  # all of them ran
    assert set(outcomes) <= {0, 2} and outcomes.get(2), outcomes  # refusals, not only passes


def test_the_promise_check_can_fail():
    """``broken`` names each way of breaking the promise (and lets the kept ones pass)."""
    out = fc.Outcome
    assert fc.broken(out(0, "", "")) is None and fc.broken(out(2, "", "error: x.pcap: truncated\n")) is None
    assert fc.broken(out(0, "", "warning: slow\ncompiling kernels (first run only) ...\n")) is None
    for o in (out(1, "", "error: unexpected ValueError: x\n"), out(2, "", "error: a\nerror: b\n"),
              out(2, "", "Traceback (most recent call last):\n"), out(0, "", "x.py:3: RuntimeWarning: y\n"),
              out(2, "", ""), out("hang", "", ""), out(0, "", "Exception ignored in: <gen>\n")):
        assert fc.broken(o), o


# One case per reader in a fresh process: the command says what the in-process call said.
SUBPROCESS = {"inspect": 0, "replay": 1, "fit": 2, "compare": 3, "trace": 4, "override": 5,
              "scenario": 6, "plot": 14}


@pytest.mark.parametrize("reader", sorted(SUBPROCESS))
def test_a_command_says_what_the_call_says(reader, tables, tmp_path):
    case = SUBPROCESS[reader]
    for seed in range(1, 60):  # the first case of this reader that is refused
        folder = tmp_path / f"s{seed}"
        folder.mkdir()
        argv = fc.case_argv(reader, fc.seeded(seed, case), folder, tables, fc.section_keys())
        inproc = fc.run_cli(argv)
        if inproc.status == 2:
            break
    assert inproc.status == 2, inproc
    done = cli(*argv, timeout=120)
    assert fc.broken(fc.Outcome(done.returncode, done.stdout, done.stderr)) is None, done.stderr
    assert (done.returncode, done.stderr) == (2, inproc.err)


# --- what the campaign found ------------------------------------------------------------------

def refused(argv, *words):
    """``argv`` run in this process (as the command: see above) is refused in one line naming
    ``words``."""
    o = fc.run_cli([str(a) for a in argv])
    assert o.status == 2, (o.status, o.err)
    assert o.err.startswith("error: ") and o.err.count("\n") == 1, o.err
    for w in words:
        assert w in o.err, (w, o.err)


def _table(tables, tmp_path, name="t.parquet", table="requests", **columns):
    """The run's ``table`` with ``columns`` replaced (None: dropped)."""
    t = pq.read_table(tables[table])
    for k, v in columns.items():
        i = t.column_names.index(k)
        t = t.remove_column(i) if v is None else t.set_column(i, k, v)
    path = tmp_path / name
    pq.write_table(t, path)
    return path, t.num_rows


@pytest.mark.parametrize("argv", [["inspect", "{f}"], ["inspect", "{f}", "--stats"],
                                  ["plot", "{f}", "-o", "{d}/p.png"]])
@pytest.mark.parametrize("column,words", [
    ("kind-int", ("'kind'", "holds int64, not text labels")),  # np.unique over None: TypeError
    ("bytes_up-null", ("'bytes_up'", "empty (null) cells")),
    ("bytes_up-float", ("'bytes_up'", "holds double, not whole numbers")),  # OverflowError (inf)
    ("bytes_up-gone", ("without column 'bytes_up'",)),  # plot: a 30-line Arrow schema dump
    ("prompt_tokens-negative", ("'prompt_tokens'", "negative value (-5)"))])
def test_request_tables_with_broken_columns(tables, tmp_path, argv, column, words):
    name, how = column.split("-")
    n = pq.read_metadata(tables["requests"]).num_rows
    value = {"int": pa.array([None] * n, pa.int64()), "null": pa.array([None] * n, pa.int64()),
             "float": pa.array(np.full(n, np.inf)), "gone": None,
             "negative": pa.array(np.full(n, -5, np.int32))}[how]
    path, _ = _table(tables, tmp_path, **{name: value})
    refused([a.format(f=path, d=tmp_path) for a in argv], str(path), *words)
    assert not (tmp_path / "p.png").exists()


def test_parquet_files_damaged_inside(tables, tmp_path):
    """A column name that is not UTF-8 (UnicodeDecodeError) and a corrupt page header
    ("unexpected OSError: Couldn't deserialize thrift")."""
    raw = tables["requests"].read_bytes()
    named = raw.replace(b"bytes_up", b"bytes\xb0up")
    (tmp_path / "n.parquet").write_bytes(named)
    for argv in (["inspect"], ["plot", "-o", tmp_path / "p.png"], ["compare", tables["requests"]]):
        refused([argv[0], tmp_path / "n.parquet", *argv[1:]], "n.parquet", "unreadable Parquet file")
    bad = bytearray(raw)
    group = pq.ParquetFile(tables["requests"]).metadata.row_group(0)
    for i in range(group.num_columns):  # each column chunk's first page header: junk
        at = group.column(i).dictionary_page_offset or group.column(i).data_page_offset
        bad[at:at + 6] = b"\x1c\xff\xff\xff\xff\x0f"
    (tmp_path / "c.parquet").write_bytes(bytes(bad))
    for argv in (["inspect"], ["plot", "-o", tmp_path / "p.png"]):
        refused([argv[0], tmp_path / "c.parquet", *argv[1:]], "c.parquet", "unreadable Parquet")


@pytest.mark.parametrize("argv", [["compare", "{f}", "{f}"], ["fit", "{f}", "-o", "{d}/f.toml"],
                                  ["generate", "chat", "--trace", "{f}", "-o", "{d}/x.pcap"]])
def test_a_trace_column_of_lists(tables, tmp_path, argv):
    """ArrowNotImplementedError: Unsupported cast from list<element: int64> to utf8."""
    n = pq.read_metadata(tables["requests"]).num_rows
    path, _ = _table(tables, tmp_path, "r.parquet", output_tokens=pa.array([[1, 2]] * n))
    refused([a.format(f=path, d=tmp_path) for a in argv], "r.parquet",
            "output_tokens: expected numbers or text, got a column of list<")


def _limited(gib: int):
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (gib << 30, gib << 30))


def test_statistics_of_a_trace_spanning_centuries_stay_small(tmp_path):
    """``compare`` and ``inspect --stats`` counted 0.1 s bins over the whole span (13 GiB for
    years): now at most 2**24 windows. Run under a 3 GiB address-space limit."""
    times = [k * 0.3 for k in range(150)] + [3.9e9]
    (tmp_path / "t.csv").write_text("time_s,input_tokens,output_tokens\n"
                                    + "".join(f"{t},{100 + k},{10 + k}\n" for k, t in enumerate(times)))
    done = subprocess.run([sys.executable, "-m", "trafficgen", "compare", tmp_path / "t.csv", tmp_path / "t.csv",
                           "--json"], capture_output=True, text=True, timeout=120, preexec_fn=_limited(3))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert '"requests": 151' in done.stdout
    from trafficgen.analysis.stats import MAX_WINDOWS, arrival_stats, counts
    t = (np.array(times) * 1e9).astype(np.int64)
    assert counts(t, 0.1).shape[0] == 0 and counts(t[:150], 0.1).shape[0] == 447  # 44.7 s
    assert (t[-1] - t[0]) // 10**9 > MAX_WINDOWS and arrival_stats(t)["idc"]["1s"] is None


def test_fit_of_a_dense_trace_with_a_late_outlier_ends(tmp_path):
    """149 requests within 15 ms and one a century later: fit simulated an hour at 10,000/s for
    each seed and candidate (ran for hours); its simulation is now bounded."""
    times = [k * 1e-4 for k in range(149)] + [3.9e9]
    (tmp_path / "o.csv").write_text("time_s,input_tokens,output_tokens\n"
                                    + "".join(f"{t:.4f},{100 + k},{10 + k}\n" for k, t in enumerate(times)))
    done = cli("fit", tmp_path / "o.csv", "-o", tmp_path / "o.toml", timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "150 requests" in done.stdout and (tmp_path / "o.toml").exists()


def test_main_called_again_wraps_the_warnings_once(capsys):
    """Each ``main()`` wrapped ``warnings.showwarning`` again: a long-lived caller (the fault
    campaign runs ~50,000 in one process) would end in a RecursionError at a warning."""
    import warnings

    from trafficgen.cli.main import main
    with warnings.catch_warnings():
        for _ in range(3):
            assert main(["models"]) == 0
        first = warnings.showwarning
        assert main(["models"]) == 0
        assert warnings.showwarning is first
    capsys.readouterr()


def test_a_capture_is_read_through_by_replay_without_sending(tmp_path):
    """The replay reader of the suite reads the whole file in ``prepare()`` and sends nothing:
    a capture cut inside its last record is refused with the record's byte offset."""
    raw = pcap_bytes(3)
    (tmp_path / "cut.pcap").write_bytes(raw[:-5])
    o = fc.run_cli(["replay", str(tmp_path / "cut.pcap"), "--iface", "lo", "-q"])
    assert o.status == 2 and "cut.pcap: truncated record" in o.err and o.err.count("\n") == 1, o.err


def test_fit_onto_a_base_without_a_chat_class(tmp_path):
    """``fit --base rag`` blamed ``--class`` (not given) for "no chat-shaped class None"."""
    from .fuzzing import LONG
    (tmp_path / "t.csv").write_text(LONG)
    refused(["fit", tmp_path / "t.csv", "--base", "rag", "-o", tmp_path / "f.toml"],
            "--base rag: the scenario has no chat-shaped class to fit (it has: rag)")


@pytest.mark.parametrize("base", ['"\\u0000"', '"a\\u0000.toml"'])
def test_a_base_with_a_nul_byte(tmp_path, base):
    """``base = "\\u0000"`` ended in "unexpected ValueError: embedded null byte"."""
    (tmp_path / "s.toml").write_text(f"[scenario]\nbase = {base}\n")
    refused(["generate", tmp_path / "s.toml", "-o", tmp_path / "x.pcap"], "s.toml: scenario.base",
            "expected a scenario name or path")
    refused(["generate", "chat", "-t", f"scenario.base={base}", "-o", tmp_path / "x.pcap"], "scenario.base",
            "expected a scenario name or path")


@pytest.mark.parametrize("rows", [1, 2, 150])
def test_compare_plot_of_too_few_requests_for_burstiness(tmp_path, rows):
    """No index of dispersion on either side (or only zeros): the log axes of nothing were an
    "unexpected ValueError: Data cannot be log-scaled"."""
    gap = 1e-9 if rows == 150 else 1.0
    (tmp_path / "t.csv").write_text("time_s,input_tokens,output_tokens\n"
                                    + "".join(f"{k * gap},{5 + k},{5}\n" for k in range(rows)))
    o = fc.run_cli(["compare", str(tmp_path / "t.csv"), str(tmp_path / "t.csv"), "--plot", str(tmp_path / "p.png")])
    assert o.status == 0 and o.err == "", o.err
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_trace_request_of_more_tokens_than_a_scenario_allows(tmp_path):
    """A row of 2**31-1 prompt tokens asked for 2.75 TiB of packet rows (an unexpected
    MemoryError); a trace's tokens now have the token keys' limit."""
    (tmp_path / "t.csv").write_text("time_s,input_tokens,output_tokens\n0,100,10\n0.5,100,"
                                    f"{2**31 - 1}\n")
    refused(["generate", "chat", "--trace", tmp_path / "t.csv", "-o", tmp_path / "x.pcap"],
            "t.csv: the request at 0.5 s (row 2 in time order) has 2,147,483,647 output tokens",
            "over the limit of 10,000,000")
    assert not (tmp_path / "x.pcap").exists()
