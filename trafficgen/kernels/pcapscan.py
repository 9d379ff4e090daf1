"""Walk pcap records and pcapng blocks in a byte buffer, filling per-packet arrays.

Both scanners stop when the next record does not fit in the buffer (the caller refills it,
keeping the partial record) or when the output arrays are full, and return how far they got.
Per packet they fill: ``ts`` (int64 ns), ``caplen``, ``origlen`` (int64), ``fkey`` (uint64: a
direction-insensitive hash of the IP 5-tuple, 0 when the frame is not IP), ``kind`` (uint8:
0 other, 1 TCP, 2 UDP, 3 other IP; +4 for a TCP SYN without ACK).
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from .jit import helper, inline, kernel
from .rng import mix64

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = (0x8100, 0x88A8, 0x9100)
# scan status
NEED_MORE = 0  # the next record/block is not wholly in the buffer
FULL = 1  # the output arrays are full
OTHER_BLOCK = 2  # pcapng: a block the caller must read itself (SHB, IDB, ...)
BAD = 3  # a record/block that cannot be valid (its length field is impossible)

Interfaces = namedtuple("Interfaces", "mult div scale link")
Interfaces.__doc__ = """A pcapng section's interfaces, by interface id: timestamp units become
ns as ``raw * mult[i] // div[i]`` (decimal resolutions, exact) or, where ``mult[i]`` is 0,
``raw * scale[i]`` (binary ones); ``link[i]`` the link type (int64 but ``scale``: float64)."""
Blocks = namedtuple("Blocks", "off caplen origlen ts iface")
Blocks.__doc__ = """Per packet block walked (int64 each): the frame's offset in the buffer, its
captured and original length, timestamp (ns; -1: none) and interface id."""
ScanRows = namedtuple("ScanRows", "ts caplen origlen fkey kind")
ScanRows.__doc__ = """Per packet scanned: timestamp (int64 ns), captured and original length
(int64), flow key (uint64) and kind (uint8), as the module's docstring says."""


@inline
def _u16be(b, o):
    return (np.int64(b[o]) << 8) | np.int64(b[o + 1])


@inline
def _u32(b, o, big):
    if big:
        return ((np.int64(b[o]) << 24) | (np.int64(b[o + 1]) << 16) | (np.int64(b[o + 2]) << 8)
                | np.int64(b[o + 3]))
    return ((np.int64(b[o + 3]) << 24) | (np.int64(b[o + 2]) << 16) | (np.int64(b[o + 1]) << 8)
            | np.int64(b[o]))


@inline
def _addr(b, o, n):
    """A 64-bit digest of an n-byte address."""
    h = np.uint64(0x9E3779B97F4A7C15)
    for k in range(0, n, 4):
        h = mix64(h ^ np.uint64(_u32(b, o + k, True)))
    return h


@helper
def classify(b, o, n, linktype):
    """(flow key, kind) of the frame of ``n`` captured bytes at ``o`` (Ethernet link type 1)."""
    if linktype != 1 or n < 14:
        return np.uint64(0), 0
    et = _u16be(b, o + 12)
    p = o + 14
    end = o + n
    while (et == 0x8100 or et == 0x88A8 or et == 0x9100) and p + 4 <= end:
        et = _u16be(b, p + 2)
        p += 4
    if et == ETH_IPV4:
        if p + 20 > end or (b[p] >> 4) != 4:
            return np.uint64(0), 0
        ihl = (b[p] & 0x0F) * 4
        proto = b[p + 9]
        a1 = _addr(b, p + 12, 4)
        a2 = _addr(b, p + 16, 4)
        frag = (_u16be(b, p + 6) & 0x1FFF) != 0
        l4 = p + ihl
    elif et == ETH_IPV6:
        if p + 40 > end:
            return np.uint64(0), 0
        proto = b[p + 6]
        a1 = _addr(b, p + 8, 16)
        a2 = _addr(b, p + 24, 16)
        frag = False
        l4 = p + 40
    else:
        return np.uint64(0), 0
    sp = np.int64(0)
    dp = np.int64(0)
    kind = 3
    if (proto == 6 or proto == 17) and not frag and l4 + 4 <= end:
        sp = _u16be(b, l4)
        dp = _u16be(b, l4 + 2)
        kind = 1 if proto == 6 else 2
        if proto == 6 and l4 + 14 <= end and (b[l4 + 13] & 0x12) == 0x02:
            kind += 4
    e1 = mix64(a1 ^ np.uint64(sp))
    e2 = mix64(a2 ^ np.uint64(dp))
    lo, hi = (e1, e2) if e1 < e2 else (e2, e1)
    key = mix64(lo * np.uint64(3) + hi + np.uint64(proto))
    if key == 0:
        key = np.uint64(1)
    return key, kind


@kernel
def walk_pcap(b, pos, end, big, frac_ns, limit, off, caplen, origlen, ts):
    """Records of a classic pcap in ``b[pos:end]``: each frame's offset in ``b``, captured and
    original length, timestamp (int64 ns; ``frac_ns`` ns per sub-second unit: 1000 for
    microsecond files, 1 for nanosecond ones). A captured length over ``limit`` is BAD.
    Returns (records, new pos, status). The one walk that inspect and replay share."""
    n = 0
    cap = off.shape[0]
    while True:
        if n == cap:
            return n, pos, FULL
        if pos + 16 > end:
            return n, pos, NEED_MORE
        cl = _u32(b, pos + 8, big)
        if cl > limit:
            return n, pos, BAD
        if pos + 16 + cl > end:
            return n, pos, NEED_MORE
        ts[n] = _u32(b, pos, big) * 1_000_000_000 + _u32(b, pos + 4, big) * frac_ns
        off[n] = pos + 16
        caplen[n] = cl
        origlen[n] = _u32(b, pos + 12, big)
        n += 1
        pos += 16 + cl


@kernel
def walk_pcapng(b, pos, end, big, ifs, out):
    """Enhanced and simple packet blocks of a pcapng section in ``b[pos:end]``, until another
    kind of block (OTHER_BLOCK): as ``walk_pcap``, into ``out`` (``Blocks``), plus each
    packet's interface (a simple packet block's is 0, and it has no timestamp: -1); ``ifs``:
    the section's ``Interfaces`` (their timestamp units). Returns (packets, new pos, status)."""
    if_mult, if_div, if_scale = ifs.mult, ifs.div, ifs.scale
    n_if = if_mult.shape[0]
    off, caplen, origlen, ts, iface = out
    n = 0
    cap = off.shape[0]
    while True:
        if n == cap:
            return n, pos, FULL
        if pos + 12 > end:
            return n, pos, NEED_MORE
        btype = _u32(b, pos, big)
        blen = _u32(b, pos + 4, big)
        if blen < 12 or blen % 4:
            return n, pos, BAD
        if btype != 6 and btype != 3:
            return n, pos, OTHER_BLOCK
        if pos + blen > end:
            return n, pos, NEED_MORE
        if btype == 6:
            if blen < 32:
                return n, pos, BAD
            i = _u32(b, pos + 8, big)
            cl = _u32(b, pos + 20, big)
            if i >= n_if or 28 + cl > blen - 4:
                return n, pos, BAD
            raw = (_u32(b, pos + 12, big) << 32) | _u32(b, pos + 16, big)
            if if_mult[i] > 0:
                ts[n] = raw * if_mult[i] // if_div[i]
            else:
                ts[n] = np.int64(raw * if_scale[i])
            off[n] = pos + 28
            origlen[n] = _u32(b, pos + 24, big)
            iface[n] = i
        else:  # simple packet block
            if blen < 16 or n_if == 0:
                return n, pos, BAD
            ol = _u32(b, pos + 8, big)
            cl = min(ol, blen - 16)
            ts[n] = -1
            off[n] = pos + 12
            origlen[n] = ol
            iface[n] = 0
        caplen[n] = cl
        n += 1
        pos += blen


@kernel
def scan_pcap(b, pos, end, big, frac_ns, linktype, snaplen, rows):
    """Records of a classic pcap in ``b[pos:end]`` (``walk_pcap``), each one's flow key and
    kind (``classify``) into ``rows`` (``ScanRows``). Returns (records, new pos, status)."""
    ts, caplen, origlen, fkey, kind = rows
    off = np.empty(ts.shape[0], np.int64)
    n, pos, status = walk_pcap(b, pos, end, big, frac_ns, min(max(snaplen, 262144), 0x7FFFFFFF),
                               off, caplen, origlen, ts)
    for k in range(n):
        fkey[k], kind[k] = classify(b, off[k], caplen[k], linktype)
    return n, pos, status


@kernel
def scan_pcapng(b, pos, end, big, ifs, rows):
    """Packet blocks of a pcapng section (``walk_pcapng``; ``ifs``: its ``Interfaces``), each
    one's flow key and kind into ``rows`` (``ScanRows``). Returns (packets, new pos, status)."""
    ts, caplen, origlen, fkey, kind = rows
    off = np.empty(ts.shape[0], np.int64)
    iface = np.empty(ts.shape[0], np.int64)
    n, pos, status = walk_pcapng(b, pos, end, big, ifs, Blocks(off, caplen, origlen, ts, iface))
    for k in range(n):
        fkey[k], kind[k] = classify(b, off[k], caplen[k], ifs.link[iface[k]])
    return n, pos, status
