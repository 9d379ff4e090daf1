"""Request traces in: one reader per format, all returning the same arrays (:class:`Trace`).

Formats (picked from the file's suffix and header, see :func:`read_trace`):

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

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trafficgen.errors import TrafficgenError

from .columns import MAX_TOKENS, BadValue, as_ids, as_iso, as_seconds, as_strings, as_tokens, first_bad

BLOCK_TOKENS = 512  # a Mooncake hash_ids block
CHUNK_BYTES = 4 << 20  # CSV text read at a time
FORMATS = ("azure", "mooncake", "burstgpt", "generic")
_TIME_UNITS = {"time_s": 1e9, "time_ms": 1e6, "time_ns": 1.0}


@dataclass
class Trace:
    """A request trace as arrays, one row per request, in time order (ties keep file order).

    ``times_ns``: int64, Unix epoch ns where the file says when (``absolute``), else ns from the
    trace's own origin; ``prompt``/``output``: int64 tokens; ``cls`` (str objects), ``session``
    and ``client`` (int64): None where the file has no such column; ``cached``: int64 cached
    prefix tokens (Mooncake hash_ids), else None."""

    path: str
    format: str
    times_ns: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    absolute: bool = False
    cls: np.ndarray | None = None
    session: np.ndarray | None = None
    client: np.ndarray | None = None
    cached: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.times_ns.shape[0])

    @property
    def span_ns(self) -> int:
        return int(self.times_ns[-1] - self.times_ns[0]) if len(self) else 0

    def select(self, keep: np.ndarray) -> "Trace":
        """The rows where ``keep`` (a boolean mask or indexes)."""
        cut = lambda a: None if a is None else a[keep]  # noqa: E731
        return Trace(self.path, self.format, self.times_ns[keep], self.prompt[keep],
                     self.output[keep], self.absolute, cut(self.cls), cut(self.session),
                     cut(self.client), cut(self.cached))


def read_trace(path, fmt: str | None = None) -> Trace:
    """Read a request trace; ``fmt`` one of FORMATS or None to tell from the file."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except IsADirectoryError:
        raise TrafficgenError(f"{path}: is a directory, not a trace file") from None
    except OSError as e:
        raise TrafficgenError(f"{path}: cannot read: {e.strerror or e}") from None
    if not head.strip():
        raise TrafficgenError(f"{path}: empty: no requests in it")
    if fmt is not None and fmt not in FORMATS:
        raise TrafficgenError(f"trace format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    kind = fmt or _sniff(path, head)
    try:
        if head[:4] == b"PAR1":
            trace = _parquet(path)
        elif kind == "mooncake":
            trace = _mooncake(path)
        else:
            trace = _csv(path, kind)
    except BadValue as e:
        if e.row is None:
            raise TrafficgenError(f"{path}: {e.message}") from None
        line = _line_of(path, e.row, header=kind != "mooncake")
        raise TrafficgenError(f"{path}: line {line}: {e.message}") from None
    if len(trace) == 0:
        raise TrafficgenError(f"{path}: no requests in it")
    return trace


def _sniff(path: Path, head: bytes) -> str:
    if head[:4] == b"PAR1":
        return "generic"
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson") or head.lstrip()[:1] == b"{":
        return "mooncake"
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").lower()
    if "contexttokens" in first and "generatedtokens" in first:
        return "azure"
    if "request tokens" in first and "response tokens" in first:
        return "burstgpt"
    return "generic"


def _line_of(path: Path, row: int, header: bool) -> int:
    """The 1-based line of data row ``row`` (empty lines are skipped by the readers)."""
    seen = -1 if header else 0
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if seen == row:
                return n
            seen += 1
    return n if "n" in locals() else 1


def _finish(path, fmt, t, prompt, output, absolute, cls=None, session=None, client=None,
            cached=None) -> Trace:
    order = np.argsort(t, kind="stable")
    tr = Trace(str(path), fmt, t, prompt, output, absolute, cls, session, client, cached)
    if order.shape[0] and np.any(order != np.arange(order.shape[0])):
        tr = tr.select(order)
    return tr


def _pick(names: dict, *choices: str) -> str | None:
    for c in choices:
        if c in names:
            return names[c]
    return None


# --- readers -------------------------------------------------------------------------------

def _csv_chunks(path: Path):
    """Yield (table of string columns, index of its first data row), a few MB at a time: memory
    holds the trace's arrays and one chunk, never the file's text."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    with open(path, "rb") as fh:
        header = fh.readline().decode("utf-8", "replace").strip().lstrip("\ufeff")
    names = [h.strip().strip('"') for h in header.split(",")]
    if len(names) < 2 or len(set(names)) != len(names) or not all(names):
        raise BadValue(None, f"line 1: expected a header of distinct column names, got {header[:80]!r}")
    bad: list = []

    def invalid(row):
        bad.append(row)
        return "error"

    def fail(e):
        if bad and bad[0].number is not None:
            return BadValue(bad[0].number - 2, f"expected {bad[0].expected_columns} fields, got "
                                           f"{bad[0].actual_columns}")
        return BadValue(_scan_csv(path, len(names)), _short(e))
    errors = (pa.ArrowException, UnicodeDecodeError, ValueError)
    try:
        reader = pcsv.open_csv(path, read_options=pcsv.ReadOptions(use_threads=False, block_size=CHUNK_BYTES),
                               parse_options=pcsv.ParseOptions(invalid_row_handler=invalid),
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
    return _finish(path, parts[0].format, cat("times_ns"), cat("prompt"), cat("output"),
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


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:160]


def _scan_csv(path: Path, ncols: int) -> int | None:
    """The first data row that is not valid UTF-8 or has the wrong number of fields."""
    row = 0
    with open(path, "rb") as fh:
        fh.readline()
        for line in fh:
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                return row
            if text.count(",") + 1 != ncols or '"' in text:
                return row
            row += 1
    return None


def _csv(path: Path, kind: str) -> Trace:
    return _chunked(path, kind, _csv_chunks(path), lambda table: _csv_table(path, kind, table))


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
        return _finish(path, "azure", t, as_tokens(col(names["contexttokens"]), "ContextTokens"),
                       as_tokens(col(names["generatedtokens"]), "GeneratedTokens"), True)
    if kind == "burstgpt":
        need = ("timestamp", "request tokens", "response tokens")
        missing = [n for n in need if n not in names]
        if missing:
            raise BadValue(None, f"a BurstGPT trace needs columns Timestamp, Request tokens, "
                             f"Response tokens (missing {missing[0]})")
        t = as_seconds(col(names["timestamp"]), "Timestamp", 1e9)
        return _finish(path, "burstgpt", t, as_tokens(col(names["request tokens"]), "Request tokens"),
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
        extra["cls"] = np.asarray(as_strings(col(c)).fill_null("").to_numpy(zero_copy_only=False), object)
        row = first_bad(extra["cls"] != "")
        if row is not None:
            raise BadValue(row, f"{c}: empty class name")
    for key, choices in (("session", ("session", "session_id")), ("client", ("client", "client_id"))):
        k = _pick(names, *choices)
        if k is not None:
            extra[key] = as_ids(col(k), k)
    return _finish(path, "generic", t, as_tokens(col(pkey), pkey), as_tokens(col(okey), okey),
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
    except (pa.ArrowException, OSError) as e:
        raise BadValue(None, f"unreadable Parquet file: {_short(e)}") from None
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
            raise BadValue(None, f"unreadable Parquet file: {_short(e)}") from None

    tr = _chunked(path, "generic", chunks(),
                  lambda table: _generic(path, names, lambda key: table.column(key).combine_chunks()))
    tr.format = "requests" if "kind" in cols else "generic"
    return tr


def _mooncake(path: Path) -> Trace:
    import pyarrow as pa
    import pyarrow.json as pjson
    schema = pa.schema([("timestamp", pa.float64()), ("input_length", pa.int64()),
                        ("output_length", pa.int64()), ("hash_ids", pa.list_(pa.int64()))])
    try:
        table = pjson.read_json(path, read_options=pjson.ReadOptions(use_threads=False),
                                parse_options=pjson.ParseOptions(
                                    explicit_schema=schema, unexpected_field_behavior="ignore"))
    except (pa.ArrowException, ValueError) as e:
        row, what = _scan_jsonl(path)
        raise BadValue(row, what or _short(e)) from None
    for name in ("timestamp", "input_length", "output_length"):
        c = table.column(name)
        if c.null_count:
            import pyarrow.compute as pc
            row = first_bad(pc.is_valid(c).to_numpy(zero_copy_only=False))
            raise BadValue(row, f"missing {name}")
    ms = table.column("timestamp").to_numpy()
    t = _check_times(ms * 1e6, "timestamp")
    prompt = table.column("input_length").to_numpy().astype(np.int64)
    output = table.column("output_length").to_numpy().astype(np.int64)
    for name, v in (("input_length", prompt), ("output_length", output)):
        row = first_bad((v >= 0) & (v < MAX_TOKENS))
        if row is not None:
            raise BadValue(row, f"{name}: expected a token count from 0 to 2**31-1, got {v[row]}")
    cached = cached_tokens(table.column("hash_ids").combine_chunks(), prompt)
    return _finish(path, "mooncake", t, prompt, output, False, cached=cached)


def _check_times(ns: np.ndarray, name: str) -> np.ndarray:
    row = first_bad(np.isfinite(ns) & (np.abs(ns) < 4e18))
    if row is not None:
        raise BadValue(row, f"{name}: expected a finite time, got {ns[row] / 1e6!r}")
    return np.round(ns).astype(np.int64)


def _scan_jsonl(path: Path) -> tuple[int | None, str | None]:
    """The first bad line of a JSONL file (error path only): (data row, what is wrong)."""
    row = 0
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, UnicodeDecodeError) as e:
                return row, f"not valid JSON: {_short(e)}"
            if not isinstance(obj, dict):
                return row, "expected a JSON object per line"
            for k in ("timestamp", "input_length", "output_length"):
                if k not in obj:
                    return row, f"missing {k}"
                v = obj[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    return row, f"{k}: expected a number, got {v!r}"[:160]
            h = obj.get("hash_ids", [])
            if h is not None and (not isinstance(h, list) or not all(
                    isinstance(x, int) and not isinstance(x, bool) for x in h)):
                return row, "hash_ids: expected a list of whole numbers"
            row += 1
    return None, None


def cached_tokens(hash_ids, prompt: np.ndarray) -> np.ndarray:
    """Cached prefix tokens per request: its leading ``hash_ids`` blocks that an earlier request
    (in file order) already had, x ``BLOCK_TOKENS``, at most the prompt. ``hash_ids``: a pyarrow
    list array; vectorised over the flattened blocks."""
    n = prompt.shape[0]
    offs = np.asarray(hash_ids.offsets, np.int64)
    flat = np.asarray(hash_ids.flatten().fill_null(-1).to_numpy(zero_copy_only=False), np.int64)
    lens = np.diff(offs) if n else np.zeros(0, np.int64)
    if hash_ids.null_count:
        lens = np.where(np.asarray(hash_ids.is_valid()), lens, 0)
    if flat.shape[0] == 0:
        return np.zeros(n, np.int64)
    row = np.repeat(np.arange(n), np.diff(offs))
    _, first, inv = np.unique(flat, return_index=True, return_inverse=True)
    seen = row[first][inv] < row  # the block's first request came before this one
    pos = np.arange(flat.shape[0]) - offs[:-1][row]
    key = np.where(seen, np.int64(1 << 40), pos)
    lead = np.full(n, 1 << 40, np.int64)
    np.minimum.at(lead, row, key)
    blocks = np.minimum(lead, lens)
    return np.minimum(blocks * BLOCK_TOKENS, prompt)
