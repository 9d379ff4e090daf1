"""Request traces in: one reader per format, all returning the same arrays (:class:`Trace`).

Formats (picked from the file's suffix and header, see :func:`read_trace`); any of them may be
compressed with gzip, xz or bzip2 (told from the first bytes) and is read as a stream
(``compressed``), except Parquet, which compresses its own columns:

- ``azure``: the Azure LLM inference trace CSV, ``TIMESTAMP,ContextTokens,GeneratedTokens``
  (``2023-11-16 18:17:03.9799600``, UTC).
- ``mooncake``: the Mooncake JSONL, one object per line: ``timestamp`` (ms from the trace's
  start), ``input_length``, ``output_length``, ``hash_ids`` (the prompt's 512-token prefix-cache
  blocks). A request's cached tokens are its leading blocks already seen in an earlier request
  (from the first block until the first unseen one), x 512, at most its prompt.
- ``burstgpt``: the BurstGPT CSV, ``Timestamp`` (seconds from the start), ``Request tokens``,
  ``Response tokens`` (other columns ignored).
- ``generic``: CSV or Parquet with a time column (``time_s``, ``time_ms`` or ``time_ns`` from any
  origin, or ``timestamp`` in ISO 8601, UTC), ``input_tokens`` (or ``prompt_tokens``) and
  ``output_tokens``, and optional ``class``, ``session`` and ``client`` (whole numbers); a
  trafficgen request table (``--requests``) reads as one too (its LLM calls, or all rows where
  it has none).

Reading is vectorised (pyarrow's CSV and JSON readers, numpy); a bad file raises
:class:`TrafficgenError` as ``FILE: line N: what``, where the line is found again only on that
error path.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from trafficgen.errors import TrafficgenError

from .columns import BadValue, as_ids, as_iso, as_seconds, as_strings, as_tokens, first_bad
from .compressed import DecompressError, Source, codec_of, codec_of_head, open_binary, plain_name
from .mooncake import read_mooncake
from .trace import Trace, ordered_trace, short_error

# CSV text parsed at a time; Arrow's streaming reader reads up to 32 blocks ahead, so memory
# holds at most 32 MB of the text (decompressed), whatever the file's size
CHUNK_BYTES = 1 << 20
FORMATS = ("azure", "mooncake", "burstgpt", "generic")
_TIME_UNITS = {"time_s": 1e9, "time_ms": 1e6, "time_ns": 1.0}


def read_trace(path, fmt: str | None = None) -> Trace:
    """Read a request trace; ``fmt`` one of FORMATS or None to tell from the file."""
    path = Path(path)
    codec = None
    refuse_special(path)
    try:
        codec = codec_of(path)
        with open_binary(path, codec) as fh:
            head = fh.read(4096)
    except IsADirectoryError:
        raise TrafficgenError(f"{path}: is a directory, not a trace file") from None
    except DecompressError as e:
        if codec is None:  # the file itself cannot be read
            raise TrafficgenError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
        raise _corrupt(path, codec, e) from None
    if not head.strip():
        raise TrafficgenError(f"{path}: empty: no requests in it")
    refuse_binary(path, head)
    if fmt is not None and fmt not in FORMATS:
        raise TrafficgenError(f"trace format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if codec is not None and head[:4] == b"PAR1":
        raise TrafficgenError(f"{path}: a {codec}-compressed Parquet file: Parquet compresses its own "
                              f"columns; decompress it first")
    if codec is not None and codec_of_head(head) is not None:
        raise TrafficgenError(f"{path}: compressed twice ({codec_of_head(head)} inside {codec}): "
                              f"decompress it once")
    kind = fmt or _sniff(path, head)
    src = Source(path, codec)
    try:
        if head[:4] == b"PAR1":
            trace = _parquet(path)
        elif kind == "mooncake":
            trace = read_mooncake(src)
        else:
            trace = _csv(src, kind)
    except BadValue as e:
        if e.row is None:
            raise TrafficgenError(f"{path}: {e.message}") from None
        line = _line_of(src, e.row, header=kind != "mooncake")
        raise TrafficgenError(f"{path}: line {line}: {e.message}") from None
    except DecompressError as e:
        if codec is None:
            raise
        raise _corrupt(path, codec, e) from None
    if len(trace) == 0:
        raise TrafficgenError(f"{path}: no requests in it")
    return trace


_COMPRESSED = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"BZh", b"\xfd7zXZ\x00")  # gzip, zstd, bzip2, xz
_TRACE_KINDS = "a request trace (CSV or JSON lines text, or a Parquet table; see 'generate --trace')"


def refuse_special(path: Path) -> None:
    """A FIFO, a device or a socket (``/dev/zero``, ``<(...)``) is refused before it is opened:
    a trace is read more than once, and such a file may never end (or block the open)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # the reader's own message (no such file, no permission)
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise TrafficgenError(f"{path}: not a regular file (a FIFO, device or socket); "
                              f"a trace must be a file, read more than once")


def refuse_binary(path: Path, head: bytes) -> None:
    """A capture or other binary file given where a request trace is expected says so in one
    line, instead of a CSV reader's complaint about its first line. Parquet and compressed
    files (``head``: the file's first bytes) pass: their readers know them."""
    from trafficgen.sinks.formats import PCAP_MAGICS, PCAPNG_SHB
    if head[:4] == b"PAR1" or head.startswith(_COMPRESSED):
        return
    magic = int.from_bytes(head[:4], "little") if len(head) >= 4 else None
    if magic in PCAP_MAGICS or magic == PCAPNG_SHB:
        kind = "pcapng" if magic == PCAPNG_SHB else "pcap"
        raise TrafficgenError(f"{path}: a {kind} capture, not {_TRACE_KINDS}; to look into a "
                              f"capture: trafficgen inspect {path}")
    control = sum(b < 32 and b not in b"\t\n\r\f" for b in head)
    if b"\0" in head or control > len(head) // 10:
        raise TrafficgenError(f"{path}: a binary file, not {_TRACE_KINDS}")


def _corrupt(path: Path, codec: str, e: BaseException) -> TrafficgenError:
    return TrafficgenError(f"{path}: corrupt or truncated {codec} data: {short_error(e)}")


def _sniff(path: Path, head: bytes) -> str:
    if head[:4] == b"PAR1":
        return "generic"
    if Path(plain_name(path)).suffix.lower() in (".jsonl", ".json", ".ndjson") or head.lstrip()[:1] == b"{":
        return "mooncake"
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").lower()
    if "contexttokens" in first and "generatedtokens" in first:
        return "azure"
    if "request tokens" in first and "response tokens" in first:
        return "burstgpt"
    return "generic"


def _line_of(src: Source, row: int, header: bool) -> int:
    """The 1-based line of data row ``row`` (empty lines are skipped by the readers)."""
    seen = -1 if header else 0
    with src.binary() as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if seen == row:
                return n
            seen += 1
    return n if "n" in locals() else 1


def _pick(names: dict, *choices: str) -> str | None:
    for c in choices:
        if c in names:
            return names[c]
    return None


# --- readers -------------------------------------------------------------------------------

def _csv_chunks(src: Source):
    """Yield (table of string columns, index of its first data row), a block at a time: memory
    holds the trace's arrays and the blocks Arrow reads ahead (``CHUNK_BYTES``), never the
    whole text of a large file, plain or compressed."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    with src.binary() as fh:
        header = fh.readline().decode("utf-8", "replace").strip().lstrip("\ufeff")
    names = [h.strip().strip('"') for h in header.split(",")]
    if len(names) < 2 or len(set(names)) != len(names) or not all(names):
        raise BadValue(None, f"line 1: expected a header of distinct column names, got {header[:80]!r}")

    def fail(e):
        # the bad line found by reading again (error path only); no invalid_row_handler, which
        # pyarrow cannot call on a row that is not UTF-8 (an unraisable error, then this one)
        row, what = _scan_csv(src, len(names))
        return BadValue(row, what or short_error(e))
    errors = (pa.ArrowException, UnicodeDecodeError, ValueError)
    with src.arrow() as stream:
        try:
            reader = pcsv.open_csv(stream, read_options=pcsv.ReadOptions(use_threads=False,
                                                                          block_size=CHUNK_BYTES),
                                   convert_options=pcsv.ConvertOptions(
                                       column_types={n: pa.string() for n in names}))
        except errors as e:
            raise fail(e) from None
        base = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except errors as e:
                raise fail(e) from None
            yield pa.Table.from_batches([batch]), base
            base += batch.num_rows


def _merge(path, fmt, parts: list) -> Trace:
    """One trace from the pieces read chunk by chunk (each in file order)."""
    if not parts:
        empty = np.empty(0, np.int64)
        return Trace(str(path), fmt, empty, empty, empty)
    if len(parts) == 1:
        return parts[0]
    cat = lambda name: (None if getattr(parts[0], name) is None  # noqa: E731
                        else np.concatenate([getattr(p, name) for p in parts]))
    return ordered_trace(path, parts[0].format, cat("times_ns"), cat("prompt"), cat("output"),
                   parts[0].absolute, cat("cls"), cat("session"), cat("client"), cat("cached"))


def _chunked(path, fmt, chunks, convert) -> Trace:
    """``convert(table)`` per chunk, its bad rows offset to the file's."""
    parts = []
    for table, base in chunks:
        try:
            parts.append(convert(table))
        except BadValue as e:
            if e.row is not None:
                e.row += base
            raise
    return _merge(path, fmt, parts)


def _scan_csv(src: Source, ncols: int) -> tuple[int | None, str | None]:
    """The first data row that is not valid UTF-8, is quoted (Arrow's error then says what is
    wrong) or has the wrong number of fields: (row, what is wrong, or None), or (None, None)."""
    row = 0
    with src.binary() as fh:
        fh.readline()
        for line in fh:
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                return row, f"not UTF-8 text (byte {e.start + 1} of the line)"
            if '"' in text:
                return row, None
            if text.count(",") + 1 != ncols:
                return row, f"expected {ncols} fields, got {text.count(',') + 1}"
            row += 1
    return None, None


def _csv(src: Source, kind: str) -> Trace:
    path = src.path
    return _chunked(path, kind, _csv_chunks(src), lambda table: _csv_table(path, kind, table))


def _csv_table(path: Path, kind: str, table) -> Trace:
    names = {n.lower().strip(): n for n in table.column_names}
    col = lambda key: table.column(key).combine_chunks()  # noqa: E731
    if kind == "azure":
        need = ("timestamp", "contexttokens", "generatedtokens")
        missing = [n for n in need if n not in names]
        if missing:
            raise BadValue(None, f"an Azure trace needs columns TIMESTAMP, ContextTokens, "
                             f"GeneratedTokens (missing {missing[0]})")
        t = as_iso(col(names["timestamp"]), "TIMESTAMP")
        return ordered_trace(path, "azure", t, as_tokens(col(names["contexttokens"]), "ContextTokens"),
                       as_tokens(col(names["generatedtokens"]), "GeneratedTokens"), True)
    if kind == "burstgpt":
        need = ("timestamp", "request tokens", "response tokens")
        missing = [n for n in need if n not in names]
        if missing:
            raise BadValue(None, f"a BurstGPT trace needs columns Timestamp, Request tokens, "
                             f"Response tokens (missing {missing[0]})")
        t = as_seconds(col(names["timestamp"]), "Timestamp", 1e9)
        return ordered_trace(path, "burstgpt", t, as_tokens(col(names["request tokens"]), "Request tokens"),
                       as_tokens(col(names["response tokens"]), "Response tokens"), False)
    return _generic(path, names, col)


def _generic(path: Path, names: dict, col) -> Trace:
    tkey = _pick(names, "time_s", "time_ms", "time_ns", "timestamp", "start_ns")
    pkey = _pick(names, "input_tokens", "prompt_tokens")
    okey = _pick(names, "output_tokens")
    if tkey is None or pkey is None or okey is None:
        raise BadValue(None, "expected columns time_s (or time_ms, time_ns, timestamp), input_tokens "
                         "(or prompt_tokens) and output_tokens [class, session, client] "
                         f"(has: {', '.join(names.values())})")
    low = tkey.lower()
    if low == "timestamp":
        t, absolute = as_iso(col(tkey), tkey), True
    else:
        t = as_seconds(col(tkey), tkey, _TIME_UNITS.get(low, 1.0))
        absolute = low == "start_ns"
    extra = {}
    c = _pick(names, "class")
    if c is not None:
        extra["cls"] = np.asarray(as_strings(col(c), c).fill_null("").to_numpy(zero_copy_only=False), object)
        row = first_bad(extra["cls"] != "")
        if row is not None:
            raise BadValue(row, f"{c}: empty class name")
    for key, choices in (("session", ("session", "session_id")), ("client", ("client", "client_id"))):
        k = _pick(names, *choices)
        if k is not None:
            extra[key] = as_ids(col(k), k)
    return ordered_trace(path, "generic", t, as_tokens(col(pkey), pkey), as_tokens(col(okey), okey),
                   absolute, **extra)


def _parquet(path: Path) -> Trace:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    try:
        pf = pq.ParquetFile(path)
        cols = pf.schema_arrow.names
        llm_only = "kind" in cols and pc.any(pc.equal(  # a request table: its LLM calls (or
            pc.cast(pf.read(columns=["kind"]).column("kind"), pa.string()), "llm")).as_py()  # all)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as e:  # a column name not UTF-8
        raise BadValue(None, f"unreadable Parquet file: {short_error(e)}") from None
    names = {n.lower(): n for n in cols}

    def chunks():
        base = 0
        try:
            for batch in pf.iter_batches(batch_size=1 << 20):
                table = pa.Table.from_batches([batch])
                if llm_only:
                    table = table.filter(pc.equal(pc.cast(table.column("kind"), pa.string()), "llm"))
                yield table, base
                base += table.num_rows
        except (pa.ArrowException, OSError) as e:
            raise BadValue(None, f"unreadable Parquet file: {short_error(e)}") from None

    tr = _chunked(path, "generic", chunks(),
                  lambda table: _generic(path, names, lambda key: table.column(key).combine_chunks()))
    tr.format = "requests" if "kind" in cols else "generic"
    return tr
