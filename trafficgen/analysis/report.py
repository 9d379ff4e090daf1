"""What is in a capture (pcap, pcapng) or one of our Parquet tables: ``trafficgen inspect``.

Captures are read in fixed-size chunks and walked by numba kernels (``kernels.pcapscan``), so
memory stays bounded whatever the file's size; Parquet tables are read a few columns and a
record batch at a time.
"""
from __future__ import annotations

import datetime as _dt
import struct
from pathlib import Path

import numpy as np

from trafficgen.errors import TrafficgenError
from trafficgen.kernels import pcapscan as ks

CHUNK = 16 << 20  # bytes read at a time
MAX_PACKETS = 1 << 16  # per kernel call
PCAP_MAGICS = {  # magic as read little-endian -> (big-endian file, ns per sub-second unit)
    0xA1B2C3D4: (False, 1000), 0xA1B23C4D: (False, 1),
    0xD4C3B2A1: (True, 1000), 0x4D3CB2A1: (True, 1),
}
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
PARQUET_MAGIC = b"PAR1"
LINKTYPES = {1: "Ethernet", 101: "raw IP", 113: "Linux cooked", 276: "Linux cooked v2"}
KIND_NAMES = {1: "tcp", 2: "udp", 3: "other_ip", 0: "non_ip"}


STATS_COLUMNS = ("class", "kind", "start_ns", "prompt_tokens", "output_tokens", "bytes_up",
                 "bytes_down", "session_id", "turn", "reasoning_tokens", "images", "llm_call",
                 "tool_call")


def inspect_file(path, stats: bool = False) -> dict:
    """A JSON-ready summary of a pcap, pcapng or trafficgen Parquet file; with ``stats``, a
    request table's per-class model statistics too (see ``trafficgen.stats``)."""
    path = Path(path)
    info = inspect_capture(path)
    if stats:
        if info.get("table") != "requests":
            raise TrafficgenError(f"{path}: --stats reads a request table (generate one with "
                                  f"--requests R.parquet)")
        info["stats"] = _request_stats(path)
    return info


def _request_stats(path: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .stats import request_stats
    try:
        t = pq.read_table(path, columns=list(STATS_COLUMNS))
    except (pa.ArrowException, OSError, KeyError) as e:
        raise TrafficgenError(f"{path}: unreadable request table: {str(e).splitlines()[0]}") from None
    cols = {}
    for name in STATS_COLUMNS:
        col = t.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        cols[name] = np.asarray(col.to_numpy())
    return request_stats(cols)


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


# --- captures ------------------------------------------------------------------------------

class Capture:
    """Accumulates what the scan kernels report, chunk by chunk."""

    def __init__(self, path: Path):
        self.path = path
        self.size = path.stat().st_size
        self.packets = self.captured = self.wire = self.syn = 0
        self.first = self.last = None
        self.out_of_order = 0
        self.untimed = 0
        self.kinds = np.zeros(8, np.int64)
        self.keys = np.empty(0, np.uint64)
        self.pending_keys: list[np.ndarray] = []
        self.pending_n = 0
        self.links: set[int] = set()
        n = MAX_PACKETS
        self.ts, self.caplen, self.origlen = (np.empty(n, np.int64) for _ in range(3))
        self.fkey, self.kind = np.empty(n, np.uint64), np.empty(n, np.uint8)

    def _fail(self, what: str, offset: int):
        raise TrafficgenError(f"{self.path}: {what} at byte {offset} (packet {self.packets + 1})")

    def _take(self, n: int) -> None:
        if n == 0:
            return
        ts = self.ts[:n]
        timed = ts[ts >= 0]
        self.untimed += n - timed.shape[0]
        if timed.shape[0]:
            prev = self.last if self.last is not None else timed[0]
            self.out_of_order += int(np.count_nonzero(np.diff(timed, prepend=prev) < 0))
            lo, hi = int(timed.min()), int(timed.max())
            self.first = lo if self.first is None else min(self.first, lo)
            self.last = int(timed[-1]) if self.last is None else max(self.last, int(timed[-1]))
            self.last = max(self.last, hi)
        self.packets += n
        self.captured += int(self.caplen[:n].sum())
        self.wire += int(self.origlen[:n].sum())
        self.kinds += np.bincount(self.kind[:n], minlength=8)[:8]
        keys = self.fkey[:n]
        self.pending_keys.append(np.unique(keys[keys != 0]))
        self.pending_n += self.pending_keys[-1].shape[0]
        if self.pending_n > (1 << 20):
            self._merge_keys()

    def _merge_keys(self) -> None:
        if self.pending_keys:
            self.keys = np.unique(np.concatenate([self.keys, *self.pending_keys]))
            self.pending_keys, self.pending_n = [], 0

    def _chunks(self, start: int):
        """Yield (buffer, valid bytes, file offset of buffer[0]); the caller says how much it
        consumed through ``self.consumed``; what it left is carried into the next buffer."""
        buf = np.empty(CHUNK, np.uint8)
        with open(self.path, "rb") as fh:
            fh.seek(start)
            base, have = start, 0
            while True:
                if have == buf.shape[0]:  # one record bigger than the buffer
                    bigger = np.empty(buf.shape[0] * 2, np.uint8)
                    bigger[:have] = buf[:have]
                    buf = bigger
                got = fh.readinto(memoryview(buf)[have:])
                have += got
                self.consumed = 0
                yield buf, have, base, got == 0
                used = self.consumed
                buf[:have - used] = buf[used:have].copy()
                have -= used
                base += used
                if got == 0:
                    return

    def pcap(self, big: bool, frac_ns: int) -> dict:
        with open(self.path, "rb") as fh:
            hdr = fh.read(24)
        if len(hdr) < 24:
            raise TrafficgenError(f"{self.path}: truncated pcap header ({len(hdr)} of 24 bytes)")
        e = ">" if big else "<"
        vmaj, vmin, _tz, _sig, snaplen, link = struct.unpack(e + "HHiIII", hdr[4:24])
        link &= 0x0FFFFFFF
        self.links.add(link)
        for buf, have, base, eof in self._chunks(24):
            pos = 0
            while True:
                n, pos, status = ks.scan_pcap(buf, pos, have, big, frac_ns, link, snaplen,
                                              self.ts, self.caplen, self.origlen, self.fkey,
                                              self.kind)
                self._take(n)
                if status == ks.BAD:
                    self._fail("impossible record length", base + pos)
                if status != ks.FULL:
                    break
            self.consumed = pos
            if eof and pos < have:
                self._fail(f"truncated record ({have - pos} bytes left over)", base + pos)
        return self._report("pcap", f"{vmaj}.{vmin}", "ns" if frac_ns == 1 else "us")

    def pcapng(self) -> dict:
        big = False
        if_mult, if_div, if_scale, if_link = [], [], [], []
        resolutions = set()
        arrays = None
        for buf, have, base, eof in self._chunks(0):
            pos = 0
            while True:
                if arrays is None:
                    arrays = (np.array(if_mult, np.int64), np.array(if_div, np.int64),
                              np.array(if_scale, np.float64), np.array(if_link, np.int64))
                n, pos, status = ks.scan_pcapng(buf, pos, have, big, *arrays, self.ts,
                                                self.caplen, self.origlen, self.fkey, self.kind)
                self._take(n)
                if status == ks.FULL:
                    continue
                if status == ks.BAD:
                    self._fail("malformed pcapng block", base + pos)
                if status == ks.NEED_MORE or pos + 12 > have:
                    break
                # a block the kernel leaves to us: section header, interface description, ...
                btype = struct.unpack_from("<I", buf, pos)[0]
                if btype == PCAPNG_SHB:
                    bom = bytes(buf[pos + 8:pos + 12])
                    if bom == struct.pack("<I", PCAPNG_BOM):
                        big = False
                    elif bom == struct.pack(">I", PCAPNG_BOM):
                        big = True
                    else:
                        self._fail("bad pcapng byte-order magic", base + pos)
                    if_mult, if_div, if_scale, if_link = [], [], [], []
                e = ">" if big else "<"
                btype, blen = struct.unpack_from(e + "II", buf, pos)
                if blen < 12 or blen % 4:
                    self._fail("malformed pcapng block", base + pos)
                if pos + blen > have:
                    break
                if btype == 1:  # interface description
                    if blen < 20:
                        self._fail("short interface description block", base + pos)
                    link = struct.unpack_from(e + "H", buf, pos + 8)[0]
                    mult, div, scale, label = tsresol(bytes(buf[pos + 16:pos + blen - 4]), e)
                    if_mult.append(mult), if_div.append(div), if_scale.append(scale)
                    if_link.append(link)
                    self.links.add(link)
                    resolutions.add(label)
                arrays = None
                pos += blen
            self.consumed = pos
            if eof and pos < have:
                self._fail(f"truncated block ({have - pos} bytes left over)", base + pos)
        return self._report("pcapng", None, ", ".join(sorted(resolutions)) or None)

    def _report(self, fmt: str, version, resolution) -> dict:
        self._merge_keys()
        dur = (self.last - self.first) / 1e9 if self.first is not None else 0.0
        kinds = {KIND_NAMES[k]: int(self.kinds[k] + (self.kinds[k + 4] if k else 0))
                 for k in (1, 2, 3, 0)}
        info = {
            "file": str(self.path), "format": fmt, "file_bytes": self.size,
            "link_types": [LINKTYPES.get(x, str(x)) for x in sorted(self.links)],
            "packets": self.packets, "captured_bytes": self.captured, "wire_bytes": self.wire,
            "first_ns": self.first, "last_ns": self.last,
            "first": as_iso(self.first), "last": as_iso(self.last),
            "duration_s": dur,
            "packets_per_s": self.packets / dur if dur > 0 else None,
            "bits_per_s": self.wire * 8 / dur if dur > 0 else None,
            "mean_packet_bytes": self.wire / self.packets if self.packets else None,
            "protocols": kinds,
            "flows": int(self.keys.shape[0]),
            "tcp_connections_opened": int(self.kinds[5]),
            "out_of_order_timestamps": self.out_of_order,
        }
        if version:
            info["version"] = version
        if resolution:
            info["timestamp_resolution"] = resolution
        if self.untimed:
            info["packets_without_timestamp"] = self.untimed
        return info


def tsresol(options: bytes, e: str) -> tuple[int, int, float, str]:
    """(mult, div, scale, label) of an interface's if_tsresol option (default microseconds)."""
    o = 0
    value = 6
    while o + 4 <= len(options):
        code, length = struct.unpack_from(e + "HH", options, o)
        if code == 0:
            break
        if code == 9 and length >= 1:
            value = options[o + 4]
        o += 4 + ((length + 3) & ~3)
    if value & 0x80:
        k = value & 0x7F
        return 0, 1, 1e9 / 2**k, f"2^-{k} s"
    if value <= 9:
        return 10 ** (9 - value), 1, 0.0, {6: "us", 9: "ns", 3: "ms", 0: "s"}.get(value, f"1e-{value} s")
    return 1, 10 ** (value - 9), 0.0, f"1e-{value} s"


def as_iso(ns) -> str | None:
    if ns is None:
        return None
    sec, rest = divmod(int(ns), 10**9)
    t = _dt.datetime.fromtimestamp(sec, _dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{rest:09d}Z"


# --- Parquet -------------------------------------------------------------------------------

def _parquet(path: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise TrafficgenError(f"{path}: unreadable Parquet file: {str(e).splitlines()[0]}") from None
    meta = pf.schema_arrow.metadata or {}
    table = meta.get(b"trafficgen.table", b"").decode()
    info = {"file": str(path), "format": "parquet", "file_bytes": path.stat().st_size,
            "table": table or None, "rows": pf.metadata.num_rows,
            "scenario": meta.get(b"trafficgen.scenario_name", b"").decode() or None,
            "seed": int(meta[b"trafficgen.seed"]) if b"trafficgen.seed" in meta else None,
            "trafficgen_version": meta.get(b"trafficgen.version", b"").decode() or None}
    if table not in ("flows", "requests", "packets"):
        info["columns"] = pf.schema_arrow.names
        return info
    cols = {"flows": ["class", "start_ns", "end_ns", "bytes_up", "bytes_down", "packets_up",
                      "packets_down"],
            "requests": ["class", "kind", "start_ns", "end_ns", "bytes_up", "bytes_down",
                         "prompt_tokens", "output_tokens"],
            "packets": ["class", "ts_ns", "wire_len", "flow_id"]}[table]
    missing = [c for c in cols if c not in pf.schema_arrow.names]
    if missing:
        raise TrafficgenError(f"{path}: a trafficgen {table} table without column {missing[0]!r}")
    by_class: dict[str, dict[str, int]] = {}
    by_kind: dict[str, int] = {}
    first = last = None
    flow_ids = []
    try:
        batches = pf.iter_batches(columns=cols, batch_size=1 << 17)
        for rb in batches:
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
    except pa.ArrowException as e:
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
    if info.get("stats"):
        from .stats import format_request_stats
        rows += format_request_stats(info["stats"])
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in rows)


__all__ = ["inspect_file", "format_report"]
