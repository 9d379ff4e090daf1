"""Index the frames of a pcap or pcapng chunk for sending: where each frame's bytes start in
the buffer, how long it is, its timestamp. The walk (record and block layout, byte order,
status codes) is ``pcapscan``'s, the one ``inspect`` uses; the sender keeps the offsets, where
``inspect`` goes on to flow keys.
"""
from __future__ import annotations

import numpy as np

from .jit import kernel
from .pcapscan import BAD, FULL, NEED_MORE, OTHER_BLOCK, Blocks, Interfaces, walk_pcap, walk_pcapng

__all__ = ["index_pcap", "index_pcapng", "BAD", "FULL", "NEED_MORE", "OTHER_BLOCK", "Interfaces"]
MAX_RECORD = 262144  # the largest frame a pcap record may hold (libpcap's MAXIMUM_SNAPLEN)


@kernel
def index_pcap(b, pos, end, big, frac_ns, off, caplen, ts):
    """Records of a classic pcap in ``b[pos:end]``: frame offset in ``b``, captured length,
    timestamp (int64 ns; ``frac_ns`` ns per sub-second unit). Returns (records, pos, status)."""
    origlen = np.empty(off.shape[0], np.int64)
    return walk_pcap(b, pos, end, big, frac_ns, MAX_RECORD, off, caplen, origlen, ts)


@kernel
def index_pcapng(b, pos, end, big, ifs, off, caplen, ts):
    """Enhanced and simple packet blocks of a pcapng section in ``b[pos:end]``, until another
    kind of block (status OTHER_BLOCK). Timestamps as in ``pcapscan.walk_pcapng`` (``ifs``:
    the section's ``Interfaces``); a simple packet block has none (-1). Returns (packets, pos,
    status)."""
    origlen = np.empty(off.shape[0], np.int64)
    iface = np.empty(off.shape[0], np.int64)
    return walk_pcapng(b, pos, end, big, ifs, Blocks(off, caplen, origlen, ts, iface))
