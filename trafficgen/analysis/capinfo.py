"""A capture's summary, read in fixed-size chunks walked by numba kernels
(``kernels.pcapscan``), so memory stays bounded whatever the file's size: packets, bytes,
times, flows, protocols (``Capture``; ``trafficgen inspect`` and ``plot`` read captures with it).
"""
from __future__ import annotations

import datetime as _dt
import struct
from pathlib import Path

import numpy as np

from trafficgen.errors import TrafficgenError
from trafficgen.kernels import pcapscan as ks
from trafficgen.sinks.formats import LINKTYPES, PCAPNG_BOM, PCAPNG_SHB, tsresol

CHUNK = 16 << 20  # bytes read at a time
MAX_PACKETS = 1 << 16  # per kernel call
KIND_NAMES = {1: "tcp", 2: "udp", 3: "other_ip", 0: "non_ip"}


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
        self.rows = ks.ScanRows(self.ts, self.caplen, self.origlen, self.fkey, self.kind)

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
                                              self.rows)
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
        ifs = None
        for buf, have, base, eof in self._chunks(0):
            pos = 0
            while True:
                if ifs is None:
                    ifs = ks.Interfaces(np.array(if_mult, np.int64), np.array(if_div, np.int64),
                                        np.array(if_scale, np.float64), np.array(if_link, np.int64))
                n, pos, status = ks.scan_pcapng(buf, pos, have, big, ifs, self.rows)
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
                ifs = None
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


def as_iso(ns) -> str | None:
    """ns since the epoch as ISO 8601 UTC text to the nanosecond (``None`` stays ``None``)."""
    if ns is None:
        return None
    sec, rest = divmod(int(ns), 10**9)
    t = _dt.datetime.fromtimestamp(sec, _dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{rest:09d}Z"
