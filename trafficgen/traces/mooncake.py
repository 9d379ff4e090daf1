"""The Mooncake trace reader: JSON lines of ``timestamp`` (ms from the trace's start),
``input_length``, ``output_length`` and ``hash_ids`` (the prompt's 512-token prefix-cache blocks),
and the cached prefix tokens those blocks give each request."""
from __future__ import annotations

import json

import numpy as np

from .columns import MAX_TOKENS, BadValue, first_bad
from .compressed import Source
from .trace import Trace, ordered_trace, short_error

BLOCK_TOKENS = 512  # a Mooncake hash_ids block


def read_mooncake(src) -> Trace:
    """A Mooncake JSONL trace (``timestamp`` ms, ``input_length``, ``output_length``,
    ``hash_ids``) from ``src`` (a path, or a :class:`~.compressed.Source` for a compressed
    file); a bad row raises ``BadValue``."""
    if not isinstance(src, Source):
        src = Source(src)
    import pyarrow as pa
    import pyarrow.json as pjson
    schema = pa.schema([("timestamp", pa.float64()), ("input_length", pa.int64()),
                        ("output_length", pa.int64()), ("hash_ids", pa.list_(pa.int64()))])
    try:
        with src.arrow() as stream:
            table = pjson.read_json(stream, read_options=pjson.ReadOptions(use_threads=False),
                                    parse_options=pjson.ParseOptions(
                                        explicit_schema=schema, unexpected_field_behavior="ignore"))
    except (pa.ArrowException, ValueError) as e:
        row, what = _scan_jsonl(src)
        raise BadValue(row, what or short_error(e)) from None
    for name in ("timestamp", "input_length", "output_length"):
        c = table.column(name)
        if c.null_count:
            import pyarrow.compute as pc
            row = first_bad(pc.is_valid(c).to_numpy(zero_copy_only=False))
            raise BadValue(row, f"missing {name}")
    ms = table.column("timestamp").to_numpy()
    t = check_times(ms, 1e6, "timestamp")
    prompt = table.column("input_length").to_numpy().astype(np.int64)
    output = table.column("output_length").to_numpy().astype(np.int64)
    for name, v in (("input_length", prompt), ("output_length", output)):
        row = first_bad((v >= 0) & (v < MAX_TOKENS))
        if row is not None:
            raise BadValue(row, f"{name}: expected a token count from 0 to 2**31-1, got {v[row]}")
    cached = cached_tokens(table.column("hash_ids").combine_chunks(), prompt)
    return ordered_trace(src.path, "mooncake", t, prompt, output, False, cached=cached)


def check_times(v: np.ndarray, scale: float, name: str) -> np.ndarray:
    """Times ``v`` in units of ``scale`` ns as int64 ns, or ``BadValue`` at the first that is
    not finite or does not fit (``v`` named as the file gives it)."""
    with np.errstate(over="ignore", invalid="ignore"):  # 1e302 ms: inf, refused below
        ns = v * scale
    row = first_bad(np.isfinite(ns) & (np.abs(ns) < 4e18))
    if row is not None:
        raise BadValue(row, f"{name}: expected a finite time, got {float(v[row])!r}")
    return np.round(ns).astype(np.int64)


def _scan_jsonl(src: Source) -> tuple[int | None, str | None]:
    """The first bad line of a JSONL file (error path only): (data row, what is wrong)."""
    row = 0
    with src.binary() as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, UnicodeDecodeError) as e:
                return row, f"not valid JSON: {short_error(e)}"
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
