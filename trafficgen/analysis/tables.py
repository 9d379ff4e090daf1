"""The columns ``inspect`` and ``plot`` read from one of our Parquet tables, checked before they
are used: present, of a type they can be (whole numbers; labels as text, or class codes), and
without empty (null) cells. A table that fails says so in one line naming the column, instead of
a numpy or Arrow error deep in the arithmetic."""
from __future__ import annotations

from pathlib import Path

from trafficgen.errors import TrafficgenError

LABELS = ("class", "kind")  # text (or dictionary of text); ``class`` may also be a code
FLAGS = ("retransmit", "gap", "reordered", "duplicate")  # booleans
COUNTS = ("bytes_up", "bytes_down", "packets_up", "packets_down", "prompt_tokens", "output_tokens",
          "wire_len", "reasoning_tokens", "images")  # never negative


def check_columns(path: Path, schema, cols, table: str) -> None:
    """``cols`` of a ``table`` ("flows", ...) with Arrow ``schema``: present, of usable types."""
    import pyarrow as pa
    for name in cols:
        if name not in schema.names:
            raise TrafficgenError(f"{path}: a trafficgen {table} table without column {name!r}")
        if schema.get_all_field_indices(name) != [schema.get_field_index(name)]:
            raise TrafficgenError(f"{path}: a trafficgen {table} table with two columns named {name!r}")
        t = schema.field(name).type
        if name in LABELS:
            value = t.value_type if pa.types.is_dictionary(t) else t
            ok = (pa.types.is_string(value) or pa.types.is_large_string(value)
                  or (name == "class" and pa.types.is_integer(t)))
            want = "text labels"
        elif name in FLAGS:
            ok, want = pa.types.is_boolean(t), "true or false"
        else:
            ok, want = pa.types.is_integer(t), "whole numbers"
        if not ok:
            raise TrafficgenError(f"{path}: column {name!r} of the {table} table holds {t}, not {want}")


def check_cells(path: Path, batch, cols, table: str) -> None:
    """No empty (null) cell and no negative count in ``cols`` of a record batch or table."""
    import pyarrow.compute as pc
    for name in cols:
        col = batch.column(name)
        if col.null_count:
            raise TrafficgenError(f"{path}: column {name!r} of the {table} table has empty (null) cells")
        if name in COUNTS and len(col) and pc.min(col).as_py() < 0:
            raise TrafficgenError(f"{path}: column {name!r} of the {table} table has a negative "
                                  f"value ({pc.min(col).as_py()})")
