"""Trace readers: the real Azure and Mooncake traces, small files of every format, the Mooncake
prefix-cache accounting, bad files (one ``FILE: line N: ...`` error, property-tested), compressed
files (gzip, xz, bzip2: streamed) and the traces the project ships (traces/)."""
from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trafficgen.errors import TrafficgenError
from trafficgen.traces.mooncake import cached_tokens
from trafficgen.traces.read import read_trace

from .helpers import PROJECT_TRACES, open_trace, peak_rss_of, real_trace

AZURE_HEAD = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


@pytest.mark.parametrize("name, fmt, rows, p50, o50", [
    ("azure-llm-2023-code.csv", "azure", 8819, 1469, 13),
    ("azure-llm-2023-conv.csv", "azure", 19366, 1020, 129),
    ("mooncake-conversation.jsonl", "mooncake", 12031, 6909, 350),
])
def test_real_traces(name, fmt, rows, p50, o50):
    tr = read_trace(real_trace(name))
    assert (tr.format, len(tr)) == (fmt, rows)
    assert np.all(np.diff(tr.times_ns) >= 0)
    assert (np.median(tr.prompt), np.median(tr.output)) == (p50, o50)
    assert tr.absolute == (fmt == "azure")


def test_azure_timestamps_exact():
    tr = read_trace(real_trace("azure-llm-2023-code.csv"))
    # 2023-11-16 18:17:03.9799600 UTC
    assert tr.times_ns[0] == 1700158623_979960000
    assert (tr.prompt[0], tr.output[0]) == (4808, 10)


def test_mooncake_cached_prefix_matches_the_kv_model_figures():
    """models/kv-transfer.toml was fitted to these: cached share 0.41 per request, 0.37 of all
    prompt tokens, mean uncached 7,538 tokens."""
    tr = read_trace(real_trace("mooncake-conversation.jsonl"))
    assert (tr.cached / tr.prompt).mean() == pytest.approx(0.409, abs=0.002)
    assert tr.cached.sum() / tr.prompt.sum() == pytest.approx(0.374, abs=0.002)
    assert (tr.prompt - tr.cached).mean() == pytest.approx(7538, abs=1)


def test_cached_tokens_by_hand():
    ids = pa.array([[0, 1, 2], [0, 1, 5], [0, 7, 1], [9], [], [0, 1, 2, 5]])
    prompt = np.array([1500, 1200, 1300, 100, 10, 1600])
    got = cached_tokens(ids, prompt)
    # row 1: 0, 1 seen, 5 new -> 2 blocks; row 2: 0 seen, 7 new -> 1 (1 later does not count);
    # row 5: every block seen -> the whole prompt
    assert got.tolist() == [0, 1024, 512, 0, 0, 1600]
    assert cached_tokens(pa.array([[0, 1], [0, 1]]), np.array([700, 700])).tolist() == [0, 700]


def test_burstgpt_and_generic_formats(tmp_path):
    b = tmp_path / "burst.csv"
    b.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                 "5,ChatGPT,472,18,490,Conversation log\n0.5,GPT-4,1087,0,1087,API log\n")
    tr = read_trace(b)
    assert tr.format == "burstgpt" and tr.times_ns.tolist() == [500_000_000, 5 * 10**9]
    assert tr.prompt.tolist() == [1087, 472] and tr.output.tolist() == [0, 18]
    g = tmp_path / "g.csv"
    g.write_text("time_ms,input_tokens,output_tokens,class,session,client\n"
                 "20,5,6,chat,1,3\n10,7,8,coding,2,4\n")
    tr = read_trace(g)
    assert tr.times_ns.tolist() == [10**7, 2 * 10**7] and tr.cls.tolist() == ["coding", "chat"]
    assert tr.session.tolist() == [2, 1] and tr.client.tolist() == [4, 3]
    iso = tmp_path / "iso.csv"
    iso.write_text("timestamp,prompt_tokens,output_tokens\n2026-01-01T00:00:01.5Z,1,2\n")
    assert read_trace(iso).times_ns[0] == 1767225601_500000000
    p = tmp_path / "g.parquet"
    pq.write_table(pa.table({"time_s": [1.0, 0.25], "input_tokens": [3, 4], "output_tokens": [5, 6]}), p)
    tr = read_trace(p)
    assert tr.times_ns.tolist() == [250_000_000, 10**9] and tr.prompt.tolist() == [4, 3]


def _refused_at_line(f, line: int, what: str) -> None:
    """Reading trace ``f`` fails in one line that names the file, the line and ``what``."""
    with pytest.raises(TrafficgenError) as e:
        read_trace(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}: line {line}: ") and what in msg and "\n" not in msg, msg


@pytest.mark.parametrize("text, line, what", [
    (AZURE_HEAD + "2023-11-16 18:17:03.97,12,3\n2023-11-16 18:17:04.0,x,3\n", 3, "ContextTokens"),
    (AZURE_HEAD + "2023-11-16 18:17:03.97,12,3\n\n2023-13-16 18:17:04.0,1,3\n", 4, "TIMESTAMP"),
    (AZURE_HEAD + "2023-11-16 18:17:03.97,12,3\n2023-11-16 18:17:04.0,1\n", 3, "fields"),
    (AZURE_HEAD + "2023-11-16 18:17:03.97,-12,3\n", 2, "ContextTokens"),
    ("time_s,input_tokens,output_tokens\n1,2,3\nnan,2,3\n", 3, "time_s"),
    ("time_s,input_tokens,output_tokens\n1,2,3\n1e300,2,3\n", 3, "finite time, got 1e+300"),  # no overflow warning
])
def test_bad_csv_names_the_line(tmp_path, text, line, what):
    f = tmp_path / "t.csv"
    f.write_text(text)
    _refused_at_line(f, line, what)


@pytest.mark.parametrize("text, line, what", [
    ('{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [0]}\n{"timestamp": 1,', 2, "JSON"),
    ('{"timestamp": 0, "input_length": 5, "output_length": 1}\n{"timestamp": 1, "output_length": 1}\n', 2,
     "input_length"),
    ('{"timestamp": 0, "input_length": "5", "output_length": 1}\n', 1, "input_length"),
    ('{"timestamp": 0, "input_length": 5, "output_length": 1}\n{"timestamp": 1.8e302, "input_length": 5, '
     '"output_length": 1}\n', 2, "finite time, got 1.8e+302"),  # hypothesis found the overflow warning
])
def test_bad_jsonl_names_the_line(tmp_path, text, line, what):
    f = tmp_path / "t.jsonl"
    f.write_text(text)
    _refused_at_line(f, line, what)


@pytest.mark.parametrize("data, line, what", [
    # not UTF-8, in a row of the wrong length: pyarrow cannot hand such a row to a Python
    # handler (an unraisable error, which fails the test); the scan names it
    (b"time_s,input_tokens,output_tokens\n1,2,3\n\xe4\xff,1,2,3\n", 3, "not UTF-8 text (byte 1"),
    (b"time_s,input_tokens,output_tokens\n1,2,3\n\n2,\xe4,3\n", 4, "not UTF-8 text (byte 3"),
    (b"time_s,input_tokens,output_tokens\n1,2,3\n2,3\n", 3, "expected 3 fields, got 2"),
])
def test_bad_bytes_name_the_line(tmp_path, data, line, what):
    f = tmp_path / "t.csv"
    f.write_bytes(data)
    _refused_at_line(f, line, what)


def test_wrong_columns_and_empty(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("a,b\n1,2\n")
    with pytest.raises(TrafficgenError, match="expected columns time_s"):
        read_trace(f)
    f.write_text("")
    with pytest.raises(TrafficgenError, match="empty"):
        read_trace(f)


_SETTINGS = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


def _only_our_error(path):
    try:
        tr = read_trace(path)
    except TrafficgenError as e:
        msg = str(e)
        assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
        return
    assert len(tr) > 0 and np.all(np.diff(tr.times_ns) >= 0)
    assert tr.prompt.dtype == np.int64 and (tr.prompt >= 0).all() and (tr.output >= 0).all()


_CELL = st.one_of(st.integers(-5, 10**6).map(str), st.floats(allow_nan=True).map(str),
                  st.text(alphabet=',."\n \t-:0123456789xZT', max_size=12),
                  st.just("2023-11-16 18:17:03.9799600"))


@_SETTINGS
@given(rows=st.lists(st.lists(_CELL, min_size=1, max_size=4), max_size=6),
       head=st.sampled_from([AZURE_HEAD, "time_s,input_tokens,output_tokens,session\n",
                             "Timestamp,Request tokens,Response tokens\n", ""]))
def test_csv_junk_is_one_error_line(tmp_path, rows, head):
    f = tmp_path / "junk.csv"
    f.write_text(head + "".join(",".join(r) + "\n" for r in rows))
    _only_our_error(f)


@_SETTINGS
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".jsonl", ".parquet"]))
def test_binary_junk_is_one_error_line(tmp_path, data, suffix):
    f = tmp_path / f"junk{suffix}"
    f.write_bytes(data)
    _only_our_error(f)


@_SETTINGS
@given(lines=st.lists(st.one_of(
    st.fixed_dictionaries({"timestamp": st.one_of(st.integers(-10, 10**7), st.floats(), st.text(max_size=3)),
                           "input_length": st.integers(-3, 10**6), "output_length": st.integers(0, 10**4),
                           "hash_ids": st.lists(st.integers(0, 20), max_size=5)}),
    st.text(max_size=20)), min_size=1, max_size=6))
def test_jsonl_junk_is_one_error_line(tmp_path, lines):
    import json
    f = tmp_path / "junk.jsonl"
    f.write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n")
    _only_our_error(f)


def test_chunked_reading_is_the_same_and_finds_late_lines(tmp_path, monkeypatch):
    import trafficgen.traces.read as traces
    whole = read_trace(real_trace("azure-llm-2023-code.csv"))
    monkeypatch.setattr(traces, "CHUNK_BYTES", 8192)  # ~200 rows a chunk: 40-odd chunks
    small = read_trace(real_trace("azure-llm-2023-code.csv"))
    for name in ("times_ns", "prompt", "output"):
        assert np.array_equal(getattr(whole, name), getattr(small, name))
    with open_trace("azure-llm-2023-code.csv") as fh:
        lines = fh.read().splitlines()
    lines[5000] = lines[5000].rsplit(",", 1)[0] + ",7q"
    f = tmp_path / "late.csv"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(TrafficgenError, match=r"line 5001: GeneratedTokens: .*'7q'"):
        read_trace(f)
    lines[5000] = lines[5000].rsplit(",", 1)[0]  # a row one field short
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(TrafficgenError, match=r"line 5001: expected 3 fields, got 2"):
        read_trace(f)


# --- compressed traces and the shipped ones -----------------------------------------------------

SHIPPED = {  # traces/README.md: the sha256 of each shipped trace's uncompressed bytes
    "azure-llm-2023-conv.csv.gz": "2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8",
    "azure-llm-2023-code.csv.gz": "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6",
    "mooncake-conversation.jsonl.xz": "b8cbb061a85206d729d91cdc2981f43c9e0d99209dce588d3af5f7934408b9df",
}
_COMPRESS = {"gz": gzip.compress, "xz": lzma.compress, "bz2": bz2.compress}


def _same_trace(a, b):
    for f in ("times_ns", "prompt", "output", "absolute", "cls", "session", "client", "cached", "format"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None and y is None) or np.array_equal(x, y), f


def test_the_shipped_traces_are_the_published_ones():
    """The project's traces/ holds each trace compressed, its bytes those of the README's sha256,
    with the licence texts its README points to; the tests read them from there."""
    folder = PROJECT_TRACES
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == sorted([*SHIPPED, "README.md"])
    readme = (folder / "README.md").read_text()
    for name, sha in SHIPPED.items():
        opener = gzip.open if name.endswith(".gz") else lzma.open
        with opener(folder / name, "rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == sha, name
        assert name in readme and sha in readme
    for lic in ("CC-BY-4.0.txt", "Apache-2.0.txt"):
        assert f"licenses/{lic}" in readme and (folder / "licenses" / lic).stat().st_size > 10_000
    if not os.environ.get("TRAFFICGEN_TRACES"):
        assert real_trace("azure-llm-2023-code.csv") == folder / "azure-llm-2023-code.csv.gz"


@pytest.mark.parametrize("codec", sorted(_COMPRESS))
@pytest.mark.parametrize("name", ["azure-llm-2023-code.csv", "mooncake-conversation.jsonl"])
def test_compressed_reads_as_the_plain_file(tmp_path, monkeypatch, name, codec):
    """gzip, xz and bzip2, told by the first bytes whatever the name; read chunk by chunk."""
    import trafficgen.traces.read as traces
    with open_trace(name) as fh:
        text = fh.read()
    plain = tmp_path / name
    plain.write_text(text)
    want = read_trace(plain)
    packed = _COMPRESS[codec](text.encode())
    for f in (tmp_path / f"{name}.{codec}", tmp_path / f"misnamed-{name}"):  # the name does not matter
        f.write_bytes(packed)
        _same_trace(read_trace(f), want)
    monkeypatch.setattr(traces, "CHUNK_BYTES", 8192)
    _same_trace(read_trace(tmp_path / f"{name}.{codec}"), want)
    fake = tmp_path / f"plain-{name}.{codec}"  # a plain file with a compression suffix stays plain
    fake.write_text(text)
    _same_trace(read_trace(fake), want)


def test_compressed_bad_line_and_bad_data(tmp_path):
    rows = AZURE_HEAD + "2023-11-16 18:17:03.97,12,3\n2023-11-16 18:17:04.0,x,3\n"
    f = tmp_path / "t.csv.gz"
    f.write_bytes(gzip.compress(rows.encode()))
    with pytest.raises(TrafficgenError, match=rf"^{re.escape(str(f))}: line 3: ContextTokens"):
        read_trace(f)
    f = tmp_path / "t.jsonl.xz"
    f.write_bytes(lzma.compress(b'{"timestamp": 0, "input_length": 5, "output_length": 1}\n{"timestamp": 1,'))
    with pytest.raises(TrafficgenError, match=rf"^{re.escape(str(f))}: line 2: not valid JSON"):
        read_trace(f)
    data = gzip.compress((AZURE_HEAD + "2023-11-16 18:17:03.97,12,3\n" * 20_000).encode())
    cases = {"truncated.csv.gz": (data[:len(data) // 2], "corrupt or truncated gzip data"),
             "corrupt.csv.gz": (data[:-8] + bytes(8), "corrupt or truncated gzip data"),
             "short.jsonl.xz": (lzma.compress(b'{"timestamp": 0}\n' * 1000)[:60], "corrupt or truncated xz data"),
             "empty.csv.gz": (gzip.compress(b""), "empty: no requests"),
             "twice.csv.gz": (gzip.compress(data), "compressed twice (gzip inside gzip)"),
             "t.parquet.bz2": (bz2.compress(b"PAR1" + bytes(100)), "bz2-compressed Parquet file")}
    for name, (raw, what) in cases.items():
        f = tmp_path / name
        f.write_bytes(raw)
        with pytest.raises(TrafficgenError) as e:
            read_trace(f)
        msg = str(e.value)
        assert msg.startswith(f"{f}: ") and what in msg and "\n" not in msg, msg


@_SETTINGS
@given(data=st.binary(max_size=300), codec=st.sampled_from(sorted(_COMPRESS)),
       cut=st.booleans())
def test_compressed_junk_is_one_error_line(tmp_path, data, codec, cut):
    packed = _COMPRESS[codec](data)
    f = tmp_path / "junk.csv"
    f.write_bytes(packed[:len(packed) // 2] if cut else packed)
    _only_our_error(f)


def test_compressed_reading_streams(tmp_path):
    """A gzip trace is decompressed a block at a time: 10x the text (110 MB more) takes not
    much more memory."""
    row = "12.5,4808,10," + "x" * 600 + "\n"  # an ignored column: text, but no rows to keep
    rss = {}
    for n in (20_000, 200_000):
        packed = tmp_path / f"big{n}.csv.gz"
        with gzip.open(packed, "wt", compresslevel=1) as fh:
            fh.write("time_s,input_tokens,output_tokens,note\n")
            for _ in range(n // 10_000):
                fh.write(row * 10_000)
        code = "import sys; from trafficgen.traces.read import read_trace; read_trace(sys.argv[1])"
        rss[n] = peak_rss_of([sys.executable, "-c", code, str(packed)])
    # measured: +40 MB (32 MB read ahead, 5 MB of arrays); held whole: +155 MB
    assert rss[200_000] < rss[20_000] + 70, rss


@pytest.mark.parametrize("readme", ["README.md", "traces/README.md"])
def test_readme_trace_commands_run(tmp_path, readme):
    """The commands the READMEs give for the shipped traces run as written, from a checkout."""
    text = (PROJECT_TRACES.parent / readme).read_text()
    block = re.search(r"```sh\n((?:trafficgen [^\n]*traces/[^\n]*\n)+)```", text)
    assert block, readme
    (tmp_path / "traces").symlink_to(PROJECT_TRACES)
    for line in block.group(1).splitlines():
        argv = shlex.split(line, comments=True)
        assert argv[0] == "trafficgen"
        done = subprocess.run([sys.executable, "-m", "trafficgen", *argv[1:]], cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (line, done.stderr)
