"""Column converters of the trace readers (``trafficgen.traces``): pyarrow columns of text or
numbers to int64 arrays, vectorised (regular expressions over whole columns, then one cast); a
bad cell raises ``BadValue(row, message)``, which the reader turns into ``FILE: line N: ...``."""
from __future__ import annotations

import math

import numpy as np

MAX_TOKENS = 1 << 31
_INT = r"^\s*[0-9]{1,15}(\.0*)?\s*$"
_FLOAT = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?\s*$"
_ISO = r"^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z?\s*$"


class BadValue(Exception):
    """A bad row: (row index among the data rows, or None for the whole file, message)."""

    def __init__(self, row, message):
        super().__init__(message)
        self.row, self.message = row, message


# --- columns ------------------------------------------------------------------------------

def first_bad(ok) -> int | None:
    bad = np.flatnonzero(~np.asarray(ok, bool))
    return int(bad[0]) if bad.shape[0] else None


def as_strings(col, name: str | None = None):
    """A column as text; one of lists, tables or bytes that are no text is a ``BadValue``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
        try:
            col = pc.cast(col, pa.string())
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # list<...>, struct<...>, bytes not UTF-8
            raise BadValue(None, f"{name or 'a column'}: expected numbers or text, got a column of "
                                 f"{col.type}") from None
    return col


def _matches(col, pattern: str) -> np.ndarray:
    import pyarrow.compute as pc
    return pc.fill_null(pc.match_substring_regex(col, pattern), False).to_numpy(zero_copy_only=False)


def as_tokens(col, name: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc
    if pa.types.is_integer(col.type):
        v = col.fill_null(-1).to_numpy().astype(np.int64)
        row = first_bad((v >= 0) & (v < MAX_TOKENS))
        if row is not None:
            raise BadValue(row, f"{name}: expected a token count from 0 to 2**31-1, got {v[row]}")
        return v
    col = as_strings(col, name)
    ok = _matches(col, _INT)
    row = first_bad(ok)
    if row is not None:
        raise BadValue(row, f"{name}: expected a whole number of tokens, got {col[row].as_py()!r}")
    v = pc.cast(pc.utf8_trim_whitespace(col), pa.float64()).to_numpy(zero_copy_only=False)
    row = first_bad(v < MAX_TOKENS)
    if row is not None:
        raise BadValue(row, f"{name}: expected a token count below 2**31, got {col[row].as_py()!r}")
    return v.astype(np.int64)


def as_ids(col, name: str) -> np.ndarray:
    v = as_tokens(col, name)  # whole numbers >= 0, as tokens
    return v


def as_seconds(col, name: str, scale: float) -> np.ndarray:
    """A numeric time column in units of ``scale`` ns -> int64 ns."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if pa.types.is_integer(col.type):  # exact: int64 ns do not fit a float64
        v = col.cast(pa.int64()).fill_null(0).to_numpy()
        row = first_bad(np.asarray(pc.is_valid(col)) & (np.abs(v) < 4e18 / scale))
        if row is not None:
            raise BadValue(row, f"{name}: expected a time, got {col[row].as_py()!r}")
        return v * np.int64(scale)
    if pa.types.is_floating(col.type):
        v = col.cast(pa.float64()).fill_null(math.nan).to_numpy()
    else:
        texts = as_strings(col, name)
        row = first_bad(_matches(texts, _FLOAT))
        if row is not None:
            raise BadValue(row, f"{name}: expected a number, got {texts[row].as_py()!r}")
        v = pc.cast(pc.utf8_trim_whitespace(texts), pa.float64()).to_numpy(zero_copy_only=False)
    with np.errstate(over="ignore", invalid="ignore"):  # 1e300 s: inf, refused below
        ns = v * scale
    row = first_bad(np.isfinite(ns) & (np.abs(ns) < 4e18))
    if row is not None:
        raise BadValue(row, f"{name}: expected a finite time, got {float(v[row])!r}")
    return np.round(ns).astype(np.int64)


def as_iso(col, name: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc
    if pa.types.is_timestamp(col.type):
        return pc.cast(col, pa.timestamp("ns")).cast(pa.int64()).fill_null(0).to_numpy()
    texts = as_strings(col, name)
    row = first_bad(_matches(texts, _ISO))
    if row is not None:
        raise BadValue(row, f"{name}: expected a time like 2023-11-16 18:17:03.97996, got "
                        f"{texts[row].as_py()!r}")
    clean = pc.replace_substring_regex(pc.utf8_trim_whitespace(texts), r"Z$", "")
    try:
        t = pc.cast(clean, pa.timestamp("ns"))
    except pa.ArrowException:
        ok = pc.is_valid(pc.strptime(pc.utf8_slice_codeunits(clean, 0, 19), "%Y-%m-%d %H:%M:%S",
                                     "s", error_is_null=True)).to_numpy(zero_copy_only=False)
        row = first_bad(ok)
        raise BadValue(row, f"{name}: not a valid date and time: "
                        f"{texts[row or 0].as_py()!r}") from None
    return t.cast(pa.int64()).to_numpy(zero_copy_only=False)


