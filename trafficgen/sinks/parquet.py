"""Parquet sinks for the flow, request and packet tables (schemas in ``trafficgen.schema``).

Each file's key-value metadata carries ``trafficgen.scenario`` (the scenario as JSON),
``trafficgen.seed`` and ``trafficgen.version``. Rows are written as they become final, in
row groups of exactly ``ROW_GROUP_ROWS`` (the last one shorter), so memory stays bounded and
the file's bytes do not depend on how the stream was batched."""
from __future__ import annotations

import datetime as _dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from trafficgen.schema import PACKET_COLUMNS, SCHEMAS, concat_rows, to_arrow

from . import Sink, open_output, removed_on_error

_PACKET_FIELDS = [c.name for c in PACKET_COLUMNS]
ROW_GROUP_ROWS = 1 << 17


def _json_default(value):
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def file_metadata(scenario) -> dict[bytes, bytes]:
    from trafficgen.config.network import redact
    from trafficgen.version import __version__
    return {b"trafficgen.scenario": json.dumps(redact(scenario.to_dict()), default=_json_default,
                                               sort_keys=True).encode(),
            b"trafficgen.scenario_name": scenario.name.encode(),
            b"trafficgen.seed": str(scenario.seed).encode(),
            b"trafficgen.version": __version__.encode()}


class ParquetSink(Sink):
    """Write one table (``"flows"``, ``"requests"`` or ``"packets"``) of the batches."""

    def __init__(self, dest, table: str, scenario):
        if table not in SCHEMAS:
            raise ValueError(f"table must be one of {', '.join(SCHEMAS)}")
        self.table = table
        net = scenario.network
        self.ipv6 = (net.ipv6_clients, net.ipv6_servers) if net.any_ipv6 else None
        self.stream, self._atomic = open_output(dest)
        with removed_on_error(self._atomic):
            schema = SCHEMAS[table].with_metadata({**SCHEMAS[table].metadata, **file_metadata(scenario)})
            self.writer = pq.ParquetWriter(self.stream, schema, compression="zstd")
        self.rows = 0
        self._held: list[np.ndarray] = []  # rows not yet written (fewer than a row group)
        self._held_rows = 0

    def write(self, batch) -> None:
        if self.table == "packets":
            rows = batch.packets[_PACKET_FIELDS]
        else:
            rows = getattr(batch, self.table)
        if rows.shape[0] == 0:
            return
        self._held.append(rows)
        self._held_rows += rows.shape[0]
        self.rows += rows.shape[0]
        if self._held_rows >= ROW_GROUP_ROWS:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._held_rows:
            return
        rows = concat_rows(self._held) if len(self._held) > 1 else self._held[0]
        n = rows.shape[0] if final else rows.shape[0] - rows.shape[0] % ROW_GROUP_ROWS
        for lo in range(0, n, ROW_GROUP_ROWS):
            self.writer.write_batch(to_arrow(rows[lo:min(lo + ROW_GROUP_ROWS, n)], self.table,
                                             self.ipv6))
        rest = rows[n:]
        self._held = [rest] if rest.shape[0] else []
        self._held_rows = rest.shape[0]

    def _finish(self) -> None:
        self._flush(final=True)
        self.writer.close()
        self.bytes = self.stream.tell() if hasattr(self.stream, "tell") else 0

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            if self._atomic:
                self._atomic.abort()


def write_table(path, rows, table: str, scenario) -> None:
    """Write a whole structured array as one table (small tables, tests)."""
    with ParquetSink(path, table, scenario) as sink:
        sink.writer.write_table(pa.Table.from_batches([to_arrow(rows, table, sink.ipv6)]))
        sink.rows = rows.shape[0]
