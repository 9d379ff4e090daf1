"""Index the frames of a pcap or pcapng chunk for sending: where each frame's bytes start in
the buffer, how long it is, its timestamp. The walk (record and block layout, byte order,
status codes) is ``pcapscan``'s; these kernels record offsets instead of flow keys, which the
sender needs and ``inspect`` does not.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .pcapscan import BAD, FULL, NEED_MORE, OTHER_BLOCK, _u32

__all__ = ["index_pcap", "index_pcapng", "BAD", "FULL", "NEED_MORE", "OTHER_BLOCK"]
MAX_RECORD = 262144  # the largest frame a pcap record may hold (libpcap's MAXIMUM_SNAPLEN)


@njit(cache=True, nogil=True)
def index_pcap(b, pos, end, big, frac_ns, off, caplen, ts):
    """Records of a classic pcap in ``b[pos:end]``: frame offset in ``b``, captured length,
    timestamp (int64 ns; ``frac_ns`` ns per sub-second unit). Returns (records, pos, status)."""
    n = 0
    cap = off.shape[0]
    while True:
        if n == cap:
            return n, pos, FULL
        if pos + 16 > end:
            return n, pos, NEED_MORE
        cl = _u32(b, pos + 8, big)
        if cl > MAX_RECORD:
            return n, pos, BAD
        if pos + 16 + cl > end:
            return n, pos, NEED_MORE
        ts[n] = _u32(b, pos, big) * 1_000_000_000 + _u32(b, pos + 4, big) * frac_ns
        off[n] = pos + 16
        caplen[n] = cl
        n += 1
        pos += 16 + cl


@njit(cache=True, nogil=True)
def index_pcapng(b, pos, end, big, if_mult, if_div, if_scale, off, caplen, ts):
    """Enhanced and simple packet blocks of a pcapng section in ``b[pos:end]``, until another
    kind of block (status OTHER_BLOCK). Timestamps as in ``pcapscan.scan_pcapng``; a simple
    packet block has none (-1). Returns (packets, pos, status)."""
    n = 0
    cap = off.shape[0]
    n_if = if_mult.shape[0]
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
            iface = _u32(b, pos + 8, big)
            cl = _u32(b, pos + 20, big)
            if iface >= n_if or 28 + cl > blen - 4:
                return n, pos, BAD
            raw = (_u32(b, pos + 12, big) << 32) | _u32(b, pos + 16, big)
            if if_mult[iface] > 0:
                ts[n] = raw * if_mult[iface] // if_div[iface]
            else:
                ts[n] = np.int64(raw * if_scale[iface])
            off[n] = pos + 28
        else:
            if blen < 16 or n_if == 0:
                return n, pos, BAD
            cl = min(_u32(b, pos + 8, big), blen - 16)
            ts[n] = -1
            off[n] = pos + 12
        caplen[n] = cl
        n += 1
        pos += blen
