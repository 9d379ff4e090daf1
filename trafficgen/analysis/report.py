"""What is in a capture (pcap, pcapng) or one of our Parquet tables: ``trafficgen inspect``.

Captures are read in fixed-size chunks and walked by numba kernels (``capinfo.Capture``), so
memory stays bounded whatever the file's size; Parquet tables are read a few columns and a
record batch at a time.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from trafficgen.errors import TrafficgenError
from trafficgen.sinks.formats import PCAP_MAGICS, PCAPNG_SHB

from .capinfo import Capture, as_iso
from .tables import check_cells, check_columns

PARQUET_MAGIC = b"PAR1"


STATS_COLUMNS = ("class", "kind", "start_ns", "prompt_tokens", "output_tokens", "bytes_up",
                 "bytes_down", "session_id", "turn", "reasoning_tokens", "images", "llm_call",
                 "tool_call")
FAILURE_COLUMNS = ("status", "retries")  # read where the table has them (older ones do not)


def inspect_file(path, stats: bool = False) -> dict:
    """A JSON-ready summary of a pcap, pcapng or trafficgen Parquet file; with ``stats``, a
    request table's per-class model statistics too (see ``trafficgen.stats``), or a packet
    table's retransmission and loss rates per class."""
    path = Path(path)
    info = inspect_capture(path)
    if stats and info.get("table") == "packets":
        info["stats"] = _packet_stats(path)
    elif stats:
        if info.get("table") != "requests":
            raise TrafficgenError(f"{path}: --stats reads a request table (generate one with "
                                  f"--requests R.parquet)")
        info["stats"] = _request_stats(path)
    return info


def _request_stats(path: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .stats import request_stats
    schema = pq.read_schema(path)
    check_columns(path, schema, STATS_COLUMNS, "requests")
    names = STATS_COLUMNS + tuple(c for c in FAILURE_COLUMNS if c in schema.names)
    try:
        t = pq.read_table(path, columns=list(names))
    except (pa.ArrowException, OSError, KeyError) as e:
        raise TrafficgenError(f"{path}: unreadable request table: {str(e).splitlines()[0]}") from None
    check_cells(path, t, names, "requests")
    cols = {}
    for name in names:
        col = t.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        cols[name] = np.asarray(col.to_numpy())
    return request_stats(cols)


def _packet_stats(path: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .stats import PACKET_STATS_COLUMNS, PATH_COLUMNS, packet_stats
    schema = pq.read_schema(path)
    names = PACKET_STATS_COLUMNS + tuple(k for k in PATH_COLUMNS if k in schema.names)
    check_columns(path, schema, names, "packets")
    try:
        t = pq.read_table(path, columns=list(names))
    except (pa.ArrowException, OSError, KeyError) as e:
        raise TrafficgenError(f"{path}: unreadable packet table: {str(e).splitlines()[0]}") from None
    cols = {}
    for name in names:
        col = t.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        cols[name] = np.asarray(col.to_numpy(zero_copy_only=False))
    return packet_stats(cols)


def inspect_capture(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except IsADirectoryError:
        raise TrafficgenError(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise TrafficgenError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(head) < 4:
        raise TrafficgenError(f"{path}: empty or too short to be a pcap, pcapng or Parquet file")
    magic = struct.unpack("<I", head)[0]
    if magic in PCAP_MAGICS:
        return Capture(path).pcap(*PCAP_MAGICS[magic])
    if magic == PCAPNG_SHB:
        return Capture(path).pcapng()
    if head == PARQUET_MAGIC:
        return _parquet(path)
    raise TrafficgenError(f"{path}: not a pcap, pcapng or Parquet file (starts with 0x{head.hex()})")


# --- Parquet -------------------------------------------------------------------------------

def _parquet(path: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as e:  # a column name not UTF-8
        raise TrafficgenError(f"{path}: unreadable Parquet file: {str(e).splitlines()[0]}") from None
    meta = {k: v.decode("utf-8", "replace") for k, v in (pf.schema_arrow.metadata or {}).items()}
    table = meta.get(b"trafficgen.table", "")
    seed = meta.get(b"trafficgen.seed")
    if seed is not None and not (seed.isascii() and seed.isdigit()):
        raise TrafficgenError(f"{path}: its trafficgen.seed metadata is not a whole number: {seed[:40]!r}")
    info = {"file": str(path), "format": "parquet", "file_bytes": path.stat().st_size,
            "table": table or None, "rows": pf.metadata.num_rows,
            "scenario": meta.get(b"trafficgen.scenario_name") or None,
            "seed": None if seed is None else int(seed),
            "trafficgen_version": meta.get(b"trafficgen.version") or None}
    if table not in ("flows", "requests", "packets"):
        info["columns"] = pf.schema_arrow.names
        return info
    cols = {"flows": ["class", "start_ns", "end_ns", "bytes_up", "bytes_down", "packets_up",
                      "packets_down"],
            "requests": ["class", "kind", "start_ns", "end_ns", "bytes_up", "bytes_down",
                         "prompt_tokens", "output_tokens"],
            "packets": ["class", "ts_ns", "wire_len", "flow_id"]}[table]
    check_columns(path, pf.schema_arrow, cols, table)
    by_class: dict[str, dict[str, int]] = {}
    by_kind: dict[str, int] = {}
    first = last = None
    flow_ids = []
    try:
        batches = pf.iter_batches(columns=cols, batch_size=1 << 17)
        for rb in batches:
            check_cells(path, rb, cols, table)
            d = {c: rb.column(c) for c in cols}
            classes = np.asarray(d["class"].cast(pa.string()).to_numpy(zero_copy_only=False))
            t_lo, t_hi = ("ts_ns", "ts_ns") if table == "packets" else ("start_ns", "end_ns")
            lo, hi = d[t_lo].to_numpy(), d[t_hi].to_numpy()
            if lo.shape[0]:
                first = int(lo.min()) if first is None else min(first, int(lo.min()))
                last = int(hi.max()) if last is None else max(last, int(hi.max()))
            if table == "packets":
                flow_ids.append(np.unique(d["flow_id"].to_numpy()))
                wire = d["wire_len"].to_numpy().astype(np.int64)
            else:
                wire = d["bytes_up"].to_numpy() + d["bytes_down"].to_numpy()
            for name in np.unique(classes):
                sel = classes == name
                row = by_class.setdefault(str(name), {"rows": 0, "wire_bytes": 0})
                row["rows"] += int(sel.sum())
                row["wire_bytes"] += int(wire[sel].sum())
                if table == "flows":
                    pk = d["packets_up"].to_numpy()[sel] + d["packets_down"].to_numpy()[sel]
                    row["packets"] = row.get("packets", 0) + int(pk.sum())
                if table == "requests":
                    for tok in ("prompt_tokens", "output_tokens"):
                        row[tok] = row.get(tok, 0) + int(d[tok].to_numpy()[sel].sum())
            if table == "requests":
                kinds = np.asarray(d["kind"].cast(pa.string()).to_numpy(zero_copy_only=False))
                for name, count in zip(*np.unique(kinds, return_counts=True)):
                    by_kind[str(name)] = by_kind.get(str(name), 0) + int(count)
    except (pa.ArrowException, OSError) as e:  # OSError: a corrupt page ("Couldn't deserialize thrift")
        raise TrafficgenError(f"{path}: unreadable Parquet data: {str(e).splitlines()[0]}") from None
    dur = (last - first) / 1e9 if first is not None else 0.0
    total_wire = sum(r["wire_bytes"] for r in by_class.values())
    info.update({"first_ns": first, "last_ns": last, "first": as_iso(first), "last": as_iso(last),
                 "duration_s": dur, "wire_bytes": total_wire, "classes": by_class})
    if table == "packets":
        info["packets"] = info["rows"]
        info["flows"] = int(np.unique(np.concatenate(flow_ids)).shape[0]) if flow_ids else 0
        info["packets_per_s"] = info["rows"] / dur if dur > 0 else None
        info["bits_per_s"] = total_wire * 8 / dur if dur > 0 else None
    if table == "requests":
        info["kinds"] = by_kind
    return info


# --- text ----------------------------------------------------------------------------------

def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:,.2f} {prefix}{unit}"
    return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.2f} {unit}"


def format_report(info: dict) -> str:
    """The report as aligned ``name: value`` lines (like capinfos)."""
    rows: list[tuple[str, str]] = [("file", info["file"]), ("format", info["format"] + (
        f" {info['version']}" if info.get("version") else "") + (
        f" ({info['table']} table)" if info.get("table") else ""))]
    if info["format"] != "parquet":
        rows += [("link type", ", ".join(info["link_types"]) or "-"),
                 ("timestamps", info.get("timestamp_resolution") or "-"),
                 ("packets", f"{info['packets']:,}"),
                 ("bytes on the wire", f"{_si(info['wire_bytes'], 'B')} ({info['wire_bytes']:,})"),
                 ("bytes captured", f"{info['captured_bytes']:,}")]
    else:
        rows += [("rows", f"{info['rows']:,}")]
        for key in ("scenario", "seed", "trafficgen_version"):
            if info.get(key) is not None:
                rows.append((key.replace("_", " "), str(info[key])))
        if "wire_bytes" in info:
            rows.append(("bytes on the wire", f"{_si(info['wire_bytes'], 'B')} ({info['wire_bytes']:,})"))
    if info.get("first"):
        rows += [("first", info["first"]), ("last", info["last"]),
                 ("duration", f"{info['duration_s']:,.3f} s")]
    if info.get("packets_per_s"):
        rows += [("packet rate", f"{info['packets_per_s']:,.0f} packets/s"),
                 ("bit rate", _si(info["bits_per_s"], "bit/s"))]
    if info.get("mean_packet_bytes"):
        rows.append(("mean packet", f"{info['mean_packet_bytes']:,.1f} B"))
    if "flows" in info:
        rows.append(("flows (5-tuples)" if info["format"] != "parquet" else "flows",
                     f"{info['flows']:,}"))
    if "tcp_connections_opened" in info:
        rows.append(("TCP connections opened", f"{info['tcp_connections_opened']:,}"))
        rows.append(("protocols", ", ".join(f"{k} {v:,}" for k, v in info["protocols"].items() if v)
                     or "-"))
        if info["out_of_order_timestamps"]:
            rows.append(("out-of-order timestamps", f"{info['out_of_order_timestamps']:,}"))
    for name, row in (info.get("classes") or {}).items():
        extra = "".join(f", {k.replace('_', ' ')} {v:,}" for k, v in row.items()
                        if k not in ("rows", "wire_bytes"))
        rows.append((f"class {name}", f"{row['rows']:,} rows, {_si(row['wire_bytes'], 'B')}{extra}"))
    for name, count in (info.get("kinds") or {}).items():
        rows.append((f"kind {name}", f"{count:,} requests"))
    if info.get("stats") and info.get("table") == "packets":
        from .stats import format_packet_stats
        rows += format_packet_stats(info["stats"])
    elif info.get("stats"):
        from .stats import format_request_stats
        rows += format_request_stats(info["stats"])
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in rows)


__all__ = ["inspect_file", "format_report"]
