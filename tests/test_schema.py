"""The one schema (trafficgen/schema.py): the numpy dtypes inside and the Arrow schemas outside
agree column by column (names, order, types), the label codes are one table per label (codes
unique, names and codes round-trip, through Arrow too), and the README's table list promises
exactly the columns there are."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import trafficgen.schema as ts
from trafficgen.schema import DTYPES, SCHEMAS, empty, to_arrow

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
TABLES = ("flows", "requests", "packets")
LABELS = {"class": ts.CLASSES, "kind": ts.KINDS, "direction": ts.DIRECTIONS,
          "phase": ts.PHASES, "client_os": ts.OSES, "server_os": ts.OSES, "status": ts.STATUSES}


def test_schema_dtypes_and_arrow_schemas_agree():
    for table, dtype in DTYPES.items():
        schema = SCHEMAS[table]
        assert list(dtype.names) == schema.names
        batch = to_arrow(empty(table, 3), table)
        assert batch.schema.equals(schema, check_metadata=False), table
        assert all(not f.nullable for f in schema)


def test_the_three_tables_and_their_metadata():
    assert tuple(DTYPES) == tuple(SCHEMAS) == tuple(ts.TABLES) == TABLES
    for table in TABLES:
        assert SCHEMAS[table].metadata == {b"trafficgen.table": table.encode()}, table


@pytest.mark.parametrize("table", TABLES)
def test_each_column_has_one_type_inside_and_its_match_outside(table):
    """Label columns are uint8 codes inside and int8-dictionary strings outside, addresses
    uint32 inside and strings outside, every other column the same number type on both sides."""
    dtype, arrow = DTYPES[table], SCHEMAS[table]
    for name in dtype.names:
        inside, outside = dtype[name], arrow.field(name).type
        if name in LABELS:
            assert inside == np.uint8 and outside == pa.dictionary(pa.int8(), pa.string()), name
        elif name in ("src_ip", "dst_ip"):
            assert inside == np.uint32 and outside == pa.string(), name
        else:
            assert outside == pa.from_numpy_dtype(inside), (name, inside, outside)


def test_the_schedule_starts_with_the_packet_table():
    """The engine's packet schedule is the packet table's columns, then the encoder's own."""
    names = ts.SCHED_DTYPE.names
    assert names[:len(ts.PACKET_DTYPE.names)] == ts.PACKET_DTYPE.names
    for name in ts.PACKET_DTYPE.names:
        assert ts.SCHED_DTYPE[name] == ts.PACKET_DTYPE[name], name


@pytest.mark.parametrize("label", list(LABELS))
def test_label_codes_are_unique_and_round_trip(label):
    names = LABELS[label]
    assert len(set(names)) == len(names), f"a {label} name appears twice"
    assert len(names) <= 256, "codes are uint8"
    assert ts.VOCABULARIES[label] == names
    code = {"class": ts.CLASS_CODE, "kind": ts.KIND_CODE, "phase": ts.PHASE_CODE,
            "direction": {"up": ts.DIR_UP, "down": ts.DIR_DOWN}, "client_os": ts.OS_CODE,
            "server_os": ts.OS_CODE, "status": ts.STATUS_CODE}[label]
    assert sorted(code.values()) == list(range(len(names))), "codes are 0..n-1, each once"
    assert all(names[c] == name for name, c in code.items())


def test_status_constants_are_the_status_codes():
    from trafficgen.kernels import failures
    for name, c in ts.STATUS_CODE.items():
        assert getattr(failures, f"ST_{name.upper()}") == c, name


def test_phase_constants_are_the_phase_codes():
    for name, c in ts.PHASE_CODE.items():
        assert getattr(ts, f"PH_{name.upper()}") == c, name
    assert sum(1 for k in vars(ts) if k.startswith("PH_")) == len(ts.PHASES)


@pytest.mark.parametrize("table", TABLES)
def test_every_code_comes_out_as_its_name(table):
    """Through ``to_arrow``: each label code of each table reads back as its name, and the
    addresses as dotted quads."""
    labels = [c for c in DTYPES[table].names if c in LABELS]
    n = max(len(LABELS[c]) for c in labels)
    rows = empty(table, n)
    for c in labels:
        rows[c] = np.arange(n) % len(LABELS[c])
    if table == "flows":
        rows["src_ip"] = 0x0A000001 + np.arange(n)
    batch = to_arrow(rows, table)
    for c in labels:
        want = [LABELS[c][k % len(LABELS[c])] for k in range(n)]
        assert batch.column(c).to_pylist() == want, c
    if table == "flows":
        assert batch.column("src_ip").to_pylist()[:2] == ["10.0.0.1", "10.0.0.2"]


def readme_columns() -> dict[str, list[str]]:
    """The README's table list: ``| `--flows` | one row per ... | `col col ...` |``."""
    rows = re.findall(r"^\| `--(\w+)` \| [^|]+ \| `([^`]+)` \|$", README, flags=re.M)
    return {table: cols.split() for table, cols in rows}


def test_readme_lists_every_table_with_its_columns():
    promised = readme_columns()
    assert sorted(promised) == sorted(TABLES), "the README's table list lost a table"
    for table, cols in promised.items():
        missing = [c for c in cols if c not in SCHEMAS[table].names]
        assert not missing, f"README promises {table} columns that do not exist: {missing}"
        assert cols == SCHEMAS[table].names, f"README's {table} columns are not the table's, in order"
