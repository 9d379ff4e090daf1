"""The public library surface, as imported from ``trafficgen``: the names in ``__all__`` (and
only they, in ``dir``), imported on first use so that ``import trafficgen`` loads no numba,
LLVM or pyarrow; batches cut at an exact packet count and sliced with every table consistent;
a batch's tables as Arrow and pandas, as the Parquet files have them; the label codes; and
arguments refused with trafficgen's own errors, named as the call names them (the CLI names
its flags). (What the functions make: test_engine.py; the sinks: test_sinks.py; Replay:
test_replay.py; the README's examples: test_readme.py.)"""
from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import trafficgen as tg
from trafficgen import TrafficgenError

from .helpers import listing

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
CONSTANTS = {"__version__", "LABELS", "LABEL_CODES"}  # public names that are values, not objects

HEAVY = ("numba", "llvmlite", "pyarrow")


def test_import_loads_nothing_heavy_until_a_name_is_used():
    """Run in a fresh interpreter: after ``import trafficgen``, its version, ``__all__`` and
    ``dir`` no heavy module is loaded; the first use of a public function loads what it needs."""
    code = f"""
import sys
import trafficgen
loaded = lambda: sorted(m for m in {HEAVY!r} if m in sys.modules)
assert trafficgen.__version__ and trafficgen.__all__ and dir(trafficgen), "empty"
print(loaded())
assert trafficgen.LABELS["phase"][3] == "stream" and trafficgen.LABEL_CODES["class"]["chat"] == 0
print(loaded())
trafficgen.generate
print(loaded())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before, labels, after = done.stdout.splitlines()
    assert before == "[]", f"import trafficgen loaded {before}"
    assert labels == "[]", f"the label codes loaded {labels}"
    assert after != "[]", "generate was resolved without its engine: is the check still live?"


def test_every_public_name_resolves():
    """Each name is the object itself, whatever was used before it: a subpackage of the same
    name (``trafficgen.replay``) must not take the function's place once it is imported."""
    for name in tg.__all__:
        value = getattr(tg, name)
        assert value is not None, name
        if name not in CONSTANTS:
            assert getattr(value, "__name__", None) == name and not isinstance(value, type(tg)), \
                f"trafficgen.{name} is {value!r}"
            assert value.__module__.startswith("trafficgen."), name
    assert len(set(tg.__all__)) == len(tg.__all__)
    with pytest.raises(AttributeError, match="no_such_name"):
        tg.no_such_name  # noqa: B018


def test_dir_lists_the_public_names():
    assert dir(tg) == sorted(tg.__all__)
    assert {"generate", "batches", "load_scenario", "Replay", "PcapSink", "ConfigError"} <= set(dir(tg))


def test_library_refuses_bad_arguments_with_trafficgen_errors(tmp_path):
    with pytest.raises(TrafficgenError, match="batch_packets"):
        list(tg.batches("chat", batch_packets=0))
    with pytest.raises(TrafficgenError, match="window"):
        tg.generate("chat", pcap=tmp_path / "x.pcap", window=5)
    assert listing(tmp_path) == []


# --- batches: an exact number of packets, slices ------------------------------------------------

SMALL = {"chat.rate": "5/s"}


@pytest.fixture(scope="module")
def small():
    return tg.load_scenario("chat", SMALL, duration="10s", seed=7)


def cut_kwargs():
    """Small batches and windows: a window's rows ride on a batch well before the cut."""
    return {"batch_packets": 3000, "window": "2s"}


@pytest.fixture(scope="module")
def whole(small):
    """The whole stream, one table each: packets, flows, requests, frames (pcap records)."""
    return joined(list(tg.batches(small, **cut_kwargs())))


def joined(batches):
    cat = np.concatenate
    frames = b"".join(b.frames.tobytes() for b in batches if b.frames is not None)
    return (cat([b.packets for b in batches]), cat([b.flows for b in batches]),
            cat([b.requests for b in batches]), frames)


def records(frames: bytes, n: int) -> bytes:
    """The first ``n`` pcap records of a run of them."""
    o = 0
    for _ in range(n):
        o += 16 + int.from_bytes(frames[o + 8:o + 12], "little")
    return frames[:o]


@pytest.mark.parametrize("n", [0, 1, 2999, 3000, 3001, 10_000, "all", "more"])
def test_max_packets_gives_exactly_the_first_packets_and_the_rows_they_show(small, whole, n):
    packets, flows, requests, frames = whole
    total = packets.shape[0]
    assert total > 10_000
    n = {"all": total, "more": total + 5}.get(n, n)
    got = list(tg.batches(small, max_packets=n, **cut_kwargs()))
    assert all(len(b) <= 3000 for b in got)
    p, f, r, fr = joined(got) if got else (packets[:0], flows[:0], requests[:0], b"")
    k = min(n, total)
    assert sum(len(b) for b in got) == p.shape[0] == k
    assert np.array_equal(p, packets[:k]) and fr == records(frames, k)
    if n > total:  # nothing cut: every row of the run, in its order
        assert np.array_equal(f, flows) and np.array_equal(r, requests)
        return
    # exactly the flows and requests the kept packets show, in the run's order
    assert set(f["flow_id"]) == set(p["flow_id"])
    assert set(r["request_id"]) == set(p["request_id"]) - {-1}
    assert np.array_equal(f, flows[np.isin(flows["flow_id"], f["flow_id"])])
    assert np.array_equal(r, requests[np.isin(requests["request_id"], r["request_id"])])
    if k:  # and the rows that start before the last kept packet
        assert not np.any(flows["start_ns"][~np.isin(flows["flow_id"], f["flow_id"])] < p["ts_ns"][-1])


def test_a_row_waiting_behind_another_keeps_what_covered_it():
    """Flow 1 is shown by the first batch's packet but waits behind flow 0 (not yet shown,
    earlier in id order); the cut falls in the next batch at the same instant, which alone
    would not show flow 1: it is still kept, and flow 0 is not."""
    from trafficgen.engine.batch import Batch, first_packets
    from trafficgen.schema import SCHED_DTYPE, empty
    flows = empty("flows", 2)
    flows["flow_id"], flows["start_ns"] = [0, 1], [100, 50]

    def packets(*rows):
        p = np.zeros(len(rows), SCHED_DTYPE)
        p["ts_ns"], p["flow_id"] = zip(*rows)
        p["request_id"] = -1
        return p

    stream = [Batch(packets((50, 1)), None, None, flows, empty("requests"), 0),
              Batch(packets((50, 2), (100, 0)), None, None, flows[:0], empty("requests"), 0)]
    got = list(first_packets(iter(stream), 2))
    assert [len(b) for b in got] == [1, 1]
    assert got[0].flows.shape[0] == 0 and list(got[1].flows["flow_id"]) == [1]
    got = list(first_packets(iter(stream), 3))  # the whole stream: every row, in order
    assert [list(b.flows["flow_id"]) for b in got] == [[], [0, 1]]


def test_max_packets_writes_exactly_that_many_through_the_sinks(small, tmp_path):
    with tg.PcapSink(tmp_path / "a.pcap") as pcap, \
            tg.ParquetSink(tmp_path / "p.parquet", "packets", small) as packets, \
            tg.ParquetSink(tmp_path / "f.parquet", "flows", small) as flows:
        for batch in tg.batches(small, max_packets=10_000):
            for sink in (pcap, packets, flows):
                sink.write(batch)
    assert pcap.rows == pq.read_metadata(tmp_path / "p.parquet").num_rows == 10_000
    data = (tmp_path / "a.pcap").read_bytes()
    assert len(data) == 24 + len(records(data[24:], 10_000))
    kept = pq.read_table(tmp_path / "p.parquet")["flow_id"].unique().to_pylist()
    assert sorted(kept) == pq.read_table(tmp_path / "f.parquet")["flow_id"].to_pylist()


def test_max_packets_is_checked_when_called():
    for bad in (-1, 2.5, True, "10"):
        with pytest.raises(tg.ArgumentError, match=r"^max_packets: expected a whole number >= 0"):
            tg.batches("chat", max_packets=bad)


@pytest.fixture(scope="module")
def rich(small):
    """The batch with the most rows among those with packets (and its frames)."""
    got = list(tg.batches(small, **cut_kwargs()))
    return max((b for b in got if len(b)), key=lambda b: b.flows.shape[0])


@pytest.mark.parametrize("k", [0, 1, 7, "half", "len"])
def test_slices_split_every_table_in_two(rich, k):
    b = rich
    k = {"half": len(b) // 2, "len": len(b)}.get(k, k)
    head, tail = b[:k], b[k:]
    assert len(head) == k and len(tail) == len(b) - k
    assert np.array_equal(np.concatenate([head.packets, tail.packets]), b.packets)
    assert head.frames.tobytes() + tail.frames.tobytes() == b.frames.tobytes()
    for name, key in (("flows", "flow_id"), ("requests", "request_id")):
        rows, h, t = getattr(b, name), getattr(head, name), getattr(tail, name)
        ids = np.concatenate([h[key], t[key]])
        assert sorted(ids) == sorted(rows[key]), name  # each row once
        for part in (h, t):  # in the batch's order
            assert np.array_equal(part, rows[np.isin(rows[key], part[key])]), name
    # the head's rows: the batch's rows its packets show (others came with earlier batches)
    assert set(head.flows["flow_id"]) == set(head.packets["flow_id"]) & set(b.flows["flow_id"])
    assert set(head.requests["request_id"]) == set(head.packets["request_id"]) & set(
        b.requests["request_id"])
    assert head.progress_ns == tail.progress_ns == b.progress_ns


def test_a_slice_keeps_its_frames_and_refuses_what_is_not_a_range(rich):
    b = rich
    mid = b[5:50]
    assert len(mid) == 45 and np.array_equal(mid.packets, b.packets[5:50])
    assert [mid.frame(i) for i in range(45)] == [b.frame(5 + i) for i in range(45)]
    assert mid.offsets[0] == 16 and mid.frames.shape[0] == 45 * 16 + int(mid.packets["wire_len"].sum())
    assert b[-3:].frame(2) == b.frame(len(b) - 1)
    same = b[:]
    assert np.array_equal(same.flows, b.flows) and np.array_equal(same.requests, b.requests)
    assert len(b[10:5]) == 0
    with pytest.raises(TypeError, match="sliced"):
        b[3]
    with pytest.raises(ValueError, match="step"):
        b[::2]
    bare = next(x for x in tg.batches(tg.load_scenario("chat", SMALL, duration="3s", seed=1),
                                      frames=False) if len(x))
    assert bare[:4].frames is None and len(bare[:4]) == 4


# --- a batch's tables as Arrow and pandas -------------------------------------------------------

def test_batch_tables_are_the_parquet_tables(tmp_path):
    """Concatenated, a run's batches' Arrow tables are the Parquet files, column for column
    (dual stack: IPv6 addresses shown as the files show them)."""
    sc = tg.load_scenario("chat", {**SMALL, "network.ip": "dual"}, duration="5s", seed=3)
    paths = {t: tmp_path / f"{t}.parquet" for t in ("flows", "requests", "packets")}
    tg.generate(sc, **paths)
    got = list(tg.batches(sc, frames=False))
    for table, path in paths.items():
        arrow = pa.concat_tables(b.to_arrow(table) for b in got)
        want = pq.read_table(path)
        assert arrow.schema.remove_metadata() == want.schema.remove_metadata(), table
        assert arrow.combine_chunks().equals(want.combine_chunks().cast(arrow.schema)), table
    flows = pa.concat_tables(b.to_arrow("flows") for b in got)
    assert any(":" in a for a in flows["src_ip"].to_pylist())  # some on IPv6


def test_packets_table_has_decoded_labels_and_only_the_documented_columns(rich):
    t = rich.to_arrow()
    documented = re.search(r"\| `--packets` \| [^|]+\| `([^`]+)` \|", README).group(1).split()
    assert t.column_names == documented
    assert not {"ipid", "layout", "segoff", "writelen"} & set(t.column_names)
    assert {"ipid", "layout", "segoff", "writelen"} <= set(rich.packets.dtype.names)  # raw rows
    for col in ("direction", "phase", "class"):
        assert t.schema.field(col).type == pa.dictionary(pa.int8(), pa.string()), col
        names = np.asarray(tg.LABELS[col])[rich.packets[col]]
        assert t[col].to_pylist() == names.tolist(), col
    df = rich.to_pandas("packets")
    assert list(df.columns) == documented and len(df) == len(rich)
    assert str(df["phase"].dtype) == "category" and set(df["phase"]) <= set(tg.LABELS["phase"])
    reqs = rich.to_pandas("requests")
    assert set(reqs["kind"]) <= set(tg.LABELS["kind"]) and list(reqs["class"].unique()) == ["chat"]
    with pytest.raises(ValueError, match="flows, requests, packets"):
        rich.to_arrow("sessions")


# --- the label codes ----------------------------------------------------------------------------

def test_label_codes_are_public_and_what_the_tables_and_kernels_use():
    import trafficgen.kernels.codes as kc
    import trafficgen.kernels.stacks as kst
    import trafficgen.labels as tl
    import trafficgen.schema as ts
    assert tg.LABELS == {"class": tl.CLASSES, "kind": tl.KINDS, "direction": tl.DIRECTIONS,
                         "phase": tl.PHASES, "client_os": tl.OSES,
                         "server_os": tl.OSES, "status": tl.STATUSES} == ts.VOCABULARIES
    assert tl.OSES == kst.OS_NAMES  # the kernels' OS codes are the tables'
    for name, code in tl.OS_CODE.items():
        assert getattr(kst, f"OS_{name.upper()}") == code, name
    for col, names in tg.LABELS.items():
        assert tg.LABEL_CODES[col] == {n: i for i, n in enumerate(names)}, col
        assert len(set(names)) == len(names), col
    assert (ts.CLASS_CODE, ts.KIND_CODE, ts.PHASE_CODE) == (
        tg.LABEL_CODES["class"], tg.LABEL_CODES["kind"], tg.LABEL_CODES["phase"])
    assert tg.LABEL_CODES["direction"] == {"up": kc.DIR_UP, "down": kc.DIR_DOWN}
    for name, code in tg.LABEL_CODES["phase"].items():
        assert getattr(kc, f"PH_{name.upper()}") == code, name
    # the README lists each vocabulary in code order
    for col, names in tg.LABELS.items():
        row = re.search(rf"^\| `{col}` \| (.+) \|$", README, flags=re.M)
        assert row, col
        assert [n.strip(" `") for n in row.group(1).split(",")] == list(names), col


# --- errors speak of arguments; the CLI of its flags --------------------------------------------

def library_errors(tmp_path):
    """(call, the argument its error must name first) for each library entry point."""
    pcap = tmp_path / "x.pcap"
    return [
        (lambda: tg.Rate("pps"), "pps"),
        (lambda: tg.Rate("mbps", -1), "mbps"),
        (lambda: tg.Rate("warp", 9), "mode"),
        (lambda: tg.Rate.choose(pps=5, topspeed=True), "pps"),
        (lambda: tg.Replay(pcap, "lo", "fast"), "rate"),
        (lambda: tg.Replay(pcap, "lo", loop=-1), "loop"),
        (lambda: tg.Replay(pcap, "lo", limit=0), "limit"),
        (lambda: tg.Replay(pcap, "lo", duration=0), "duration"),
        (lambda: tg.Replay("chat", "lo", live=True, loop=2), "loop"),
        (lambda: tg.Replay(pcap, None).prepare(), "iface"),
        (lambda: tg.Replay(pcap, "tgr-nonesuch0").prepare(), "iface"),
        (lambda: tg.generate("chat", pcap=pcap, workers=0), "workers"),
        (lambda: tg.generate("chat", pcap=pcap, workers=2, scheduler="tcp://127.0.0.1:1"), "workers"),
        (lambda: tg.generate("chat", pcap=pcap, window="5ms"), "window"),
        (lambda: tg.generate("chat", pcap=sys.stdout.buffer, shards=True), "shards"),
        (lambda: tg.generate("chat", shards=True), "shards"),
        (lambda: tg.batches("chat", batch_packets=0), "batch_packets"),
        (lambda: tg.batches("chat", window="soon"), "window"),
    ]


def test_library_errors_name_arguments_not_flags(tmp_path):
    for call, argument in library_errors(tmp_path):
        with pytest.raises(tg.ArgumentError) as info:
            call()
        e = info.value
        assert e.argument == argument, (argument, str(e))
        assert "--" not in str(e) and str(e).startswith(argument), str(e)
        assert isinstance(e, TrafficgenError) and isinstance(e, ValueError)
        again = pickle.loads(pickle.dumps(e))  # as it comes back from a worker process
        assert str(again) == str(e) and again.argument == e.argument
    assert listing(tmp_path) == []


def test_the_cli_names_its_flags_for_the_same_errors(tmp_path, capsys):
    from trafficgen.cli.main import main
    from trafficgen.cli.replay import FLAGS, cli_message
    from trafficgen.errors import Arg
    e = tg.ArgumentError(Arg("iface", "eth9"), ": no such interface; give ", Arg("pps"), " or ",
                         Arg("pcap"))
    assert str(e) == "iface eth9: no such interface; give pps or pcap"
    assert cli_message(e) == "--iface eth9: no such interface; give --pps or -o"
    assert cli_message(TrafficgenError("plain")) == "plain"
    for argument in ("pps", "mbps", "multiplier", "topspeed", "loop", "limit", "duration", "iface",
                     "workers", "scheduler", "shards", "window"):
        assert FLAGS[argument] == "--" + argument
    assert main(["generate", "chat", "--window", "5ms", "-o", str(tmp_path / "x.pcap")]) == 2
    assert capsys.readouterr().err.startswith("error: --window: expected a duration")
    pcap = tmp_path / "a.pcap"
    pcap.write_bytes(b"")
    assert main(["replay", str(pcap), "--pps", "0"]) == 2  # argparse takes 0; Rate refuses it
    assert capsys.readouterr().err.startswith("error: --pps: expected a number above zero")


def test_generate_defaults_are_what_the_docstring_says(small, tmp_path):
    """``workers=None``: this process (the report says one worker), with shards too (it used to
    fail on ``max(1, None)``); the docstring and the README say the same."""
    from trafficgen.engine.core import GEN_WORKERS
    report = tg.generate(small, flows=tmp_path / "f.parquet")
    assert report["workers"] == 1
    sharded = tg.generate(small, flows=tmp_path / "f", shards=True)
    assert sharded["workers"] == 1 and sharded["flows"] == report["flows"]
    assert sharded["shards"]["flows"] >= 1
    assert GEN_WORKERS == min(2, max(1, os.cpu_count() or 1))  # two, one on a one-CPU machine
    doc = " ".join(tg.generate.__doc__.split())
    assert "``None`` (the default): this process, generating the next windows on two threads" in doc
    assert "generate(..., workers=None)`, the default, runs in this process with two" in " ".join(
        README.split())
