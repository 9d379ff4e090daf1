"""Stream the frames of a pcap or pcapng file in bounded memory, for sending.

The file is read into a few fixed buffers (``SLOTS`` of ``CHUNK`` bytes) and indexed by
numba kernels (``kernels.capread``): a chunk is the buffer plus, per frame, its offset in the
buffer, its length and its timestamp (int64 ns). Frames are sent straight from the buffer,
never copied out one by one. A background thread reads the next chunk while the current one
is sent (``Prefetch``). Formats: pcap (micro- or nanosecond, either byte order) and pcapng
(SHB, IDB with ``if_tsresol``, EPB, SPB; either byte order; other blocks skipped).
"""
from __future__ import annotations

import os
import queue
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from trafficgen.errors import TrafficgenError
from trafficgen.kernels import capread as kc
from trafficgen.sinks.formats import LINKTYPES, PCAP_MAGICS, PCAPNG_BOM, PCAPNG_SHB, tsresol

CHUNK = 4 << 20  # bytes per buffer
SLOTS = 3  # buffers in flight: one being sent, one read ahead, one being filled
LINKTYPE_ETHERNET = 1


class Slot:
    """One reusable buffer and its per-frame arrays (never full: a record is >= 12 bytes)."""

    def __init__(self, nbytes: int | None = None):
        nbytes = nbytes or CHUNK
        self.buf = np.empty(nbytes, np.uint8)
        cap = nbytes // 12 + 1
        self.off, self.length, self.ts = (np.empty(cap, np.int64) for _ in range(3))


@dataclass
class Chunk:
    """Frames ``k`` are ``buf[off[k]:off[k] + length[k]]``, stamped ``ts[k]`` (ns, -1 when
    the file has none); ``index``: the file's packet number of frame 0; ``release()`` hands
    the buffer back."""

    buf: np.ndarray
    off: np.ndarray
    length: np.ndarray
    ts: np.ndarray
    index: int
    release: object = None
    big: bool = False  # pcapng: the section's byte order (its options are read in it)

    def __len__(self) -> int:
        return self.off.shape[0]

    def compact(self) -> "Chunk":
        """A compact copy (its frames only, offsets from 0)."""
        lo, hi = int(self.off[0]), int(self.off[-1] + self.length[-1])
        return Chunk(self.buf[lo:hi].copy(), self.off - lo, self.length.copy(), self.ts.copy(), self.index)


class Ready:
    """A chunk ready to send: the buffer it goes from (rewritten or not) and the port of each
    frame (None: all out of the first). Without a chunk: the end of a pass."""

    __slots__ = ("chunk", "buf", "port")

    def __init__(self, chunk, buf, port):
        self.chunk, self.buf, self.port = chunk, buf, port

    def release(self) -> None:
        if self.chunk is not None and self.chunk.release is not None:
            self.chunk.release()


class CaptureFile:
    """A pcap or pcapng file of Ethernet frames; ``chunks()`` walks it (it may be walked again).

    Raises ``TrafficgenError`` (one line, with the byte offset) for anything unreadable:
    unknown format, non-Ethernet link type, a corrupt or truncated record."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(24)
            self.size = self.path.stat().st_size
        except IsADirectoryError:
            raise TrafficgenError(f"{path}: is a directory, not a capture file") from None
        except OSError as e:
            raise TrafficgenError(f"{path}: cannot read: {e.strerror or e}") from None
        if len(head) < 4:
            raise TrafficgenError(f"{path}: empty or too short to be a pcap or pcapng file")
        magic = struct.unpack("<I", head[:4])[0]
        if magic in PCAP_MAGICS:
            self.format = "pcap"
            self.big, self.frac_ns = PCAP_MAGICS[magic]
            if len(head) < 24:
                raise TrafficgenError(f"{path}: truncated pcap header ({len(head)} of 24 bytes)")
            link = struct.unpack((">" if self.big else "<") + "I", head[20:24])[0] & 0x0FFFFFFF
            self._check_link(link, 20)
            self.start = 24
        elif magic == PCAPNG_SHB:
            self.format, self.start = "pcapng", 0
        else:
            raise TrafficgenError(f"{path}: not a pcap or pcapng file (starts with 0x{head[:4].hex()})")

    def _check_link(self, link: int, offset: int) -> None:
        if link != LINKTYPE_ETHERNET:
            name = LINKTYPES.get(link, f"link type {link}")
            raise TrafficgenError(f"{self.path}: {name} frames (at byte {offset}): only Ethernet "
                                  f"captures can be replayed onto an interface")

    def chunks(self, get_slot=None) -> Iterator[Chunk]:
        """Yield the file's frames chunk by chunk. ``get_slot()`` supplies each chunk's buffer
        (default: one buffer, reused, so a chunk is valid until the next is asked for)."""
        if get_slot is None:
            one = Slot()
            get_slot = lambda: one  # noqa: E731
        walker = _PcapWalk(self) if self.format == "pcap" else _PcapngWalk(self)
        with open(self.path, "rb") as fh:
            fh.seek(self.start)
            base, carry, index, eof = self.start, np.empty(0, np.uint8), 0, False
            while not (eof and carry.shape[0] == 0):
                slot = get_slot()
                buf, have = slot.buf, carry.shape[0]
                if have == buf.shape[0]:
                    walker.fail(f"a block of more than {buf.shape[0]} bytes", base)
                buf[:have] = carry
                while have < buf.shape[0] and not eof:
                    got = fh.readinto(memoryview(buf)[have:])
                    eof = got == 0
                    have += got
                n, pos = walker.index(slot, have, base, index)
                if eof and pos < have:
                    walker.fail(f"truncated {walker.unit} ({have - pos} bytes left at the end of "
                                f"the file)", base + pos, index + n)
                carry = buf[pos:have].copy()
                base += pos
                if n:
                    yield Chunk(buf, slot.off[:n], slot.length[:n], slot.ts[:n], index,
                                getattr(slot, "release", None), bool(getattr(walker, "big", False))
                                if self.format == "pcapng" else False)
                    index += n
                elif hasattr(slot, "release"):
                    slot.release()


class _PcapWalk:
    unit = "record"

    def __init__(self, cap: CaptureFile):
        self.cap = cap

    def fail(self, what: str, offset: int, index: int | None = None):
        at = f" (packet {index + 1})" if index is not None else ""
        raise TrafficgenError(f"{self.cap.path}: {what} at byte {offset}{at}")

    def index(self, slot: Slot, have: int, base: int, index: int) -> tuple[int, int]:
        n, pos, status = kc.index_pcap(slot.buf, 0, have, self.cap.big, self.cap.frac_ns,
                                       slot.off, slot.length, slot.ts)
        if status == kc.BAD:
            length = struct.unpack_from((">" if self.cap.big else "<") + "I", slot.buf, pos + 8)[0]
            self.fail(f"corrupt record header (captured length {length})", base + pos, index + n)
        return n, pos


class _PcapngWalk(_PcapWalk):
    unit = "block"

    def __init__(self, cap: CaptureFile):
        super().__init__(cap)
        self.big = False
        self.ifaces: list[tuple[int, int, float, int]] = []
        self.ifs = None

    def index(self, slot: Slot, have: int, base: int, index: int) -> tuple[int, int]:
        buf, pos, n = slot.buf, 0, 0
        while True:
            if self.ifs is None:
                cols = list(zip(*self.ifaces)) or [(), (), (), ()]
                self.ifs = kc.Interfaces(np.array(cols[0], np.int64), np.array(cols[1], np.int64),
                                         np.array(cols[2], np.float64), np.array(cols[3], np.int64))
            k, pos, status = kc.index_pcapng(buf, pos, have, self.big, self.ifs,
                                             slot.off[n:], slot.length[n:], slot.ts[n:])
            n += k
            if status == kc.BAD:
                self.fail("corrupt packet block", base + pos, index + n)
            if status == kc.NEED_MORE or pos + 12 > have:
                return n, pos
            blen = self._other_block(buf, pos, have, base, index + n)
            if blen == 0:
                return n, pos
            pos += blen

    def _other_block(self, buf, pos: int, have: int, base: int, index: int) -> int:
        """Read a section header or interface description at ``pos``; skip anything else.
        Returns its length, or 0 when it is not wholly in the buffer."""
        if struct.unpack_from("<I", buf, pos)[0] == PCAPNG_SHB:
            bom = bytes(buf[pos + 8:pos + 12])
            if bom not in (struct.pack("<I", PCAPNG_BOM), struct.pack(">I", PCAPNG_BOM)):
                self.fail("bad pcapng byte-order magic", base + pos, index)
            self.big = bom == struct.pack(">I", PCAPNG_BOM)
            self.ifaces, self.ifs = [], None
        e = ">" if self.big else "<"
        btype, blen = struct.unpack_from(e + "II", buf, pos)
        if blen < 12 or blen % 4:
            self.fail(f"corrupt block header (length {blen})", base + pos, index)
        if pos + blen > have:
            return 0
        if btype == 1:  # interface description
            if blen < 20:
                self.fail("short interface description block", base + pos, index)
            link = struct.unpack_from(e + "H", buf, pos + 8)[0]
            self.cap._check_link(link, base + pos)
            mult, div, scale, _ = tsresol(bytes(buf[pos + 16:pos + blen - 4]), e)
            self.ifaces.append((mult, div, scale, link))
            self.ifs = None
        return blen


class Prefetch:
    """Run an iterator on a background thread, ``depth`` items ahead; its errors are raised
    in the consumer. ``close()`` stops it early."""

    _END = object()

    def __init__(self, items: Iterator, depth: int = 1, name: str = "trafficgen-prefetch"):
        self._items = items
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self):
        try:  # not the real-time policy of a sending thread that started this one
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except (OSError, AttributeError):
            pass
        try:
            for item in self._items:
                if not self._put(item):
                    release = getattr(item, "release", None)
                    if callable(release):
                        release()
                    return
            self._put(self._END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self._put(e)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        while True:
            item = self._q.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self):
        """Stop the thread; items it made but nobody took are released (``item.release()``)."""
        self._stop.set()
        while self._thread.is_alive() or not self._q.empty():
            try:
                item = self._q.get(timeout=0.05)
            except queue.Empty:
                continue
            release = getattr(item, "release", None)
            if callable(release):
                release()
        self._thread.join()


class SlotPool:
    """``SLOTS`` buffers handed out in turn; a slot comes back through ``slot.release()``."""

    def __init__(self, count: int = SLOTS, nbytes: int | None = None):
        self._free: queue.Queue = queue.Queue()
        for _ in range(count):
            slot = Slot(nbytes)
            slot.release = (lambda s=slot: self._free.put(s))
            self._free.put(slot)

    def get(self) -> Slot:
        return self._free.get()
