"""Byte helpers shared by the frame kernels: big-endian loads and stores and the Internet checksum
(RFC 1071) as a ones'-complement sum that LLVM vectorises."""
import numpy as np

from .headers import PCAP_INCL_LEN, PCAP_ORIG_LEN, PCAP_TS_FRAC, PCAP_TS_SEC
from .jit import inline


@inline
def get16(b, o):
    """The big-endian 16-bit value at ``o``."""
    return (np.int64(b[o]) << 8) | np.int64(b[o + 1])


@inline
def put16(buf, o, v):
    buf[o] = (v >> 8) & 0xFF
    buf[o + 1] = v & 0xFF


@inline
def put24(buf, o, v):
    buf[o] = (v >> 16) & 0xFF
    buf[o + 1] = (v >> 8) & 0xFF
    buf[o + 2] = v & 0xFF


@inline
def put32(buf, o, v):
    buf[o] = (v >> 24) & 0xFF
    buf[o + 1] = (v >> 16) & 0xFF
    buf[o + 2] = (v >> 8) & 0xFF
    buf[o + 3] = v & 0xFF


@inline
def sum16(buf, o, n):
    """Ones'-complement partial sum of ``n`` bytes at ``o`` as big-endian 16-bit words:
    even and odd bytes are summed apart (a loop LLVM vectorises), then combined."""
    v = buf[o:o + n]  # loops over a view vectorise; ``buf[o + k]`` (wraparound checks) does not
    hi = np.uint64(0)
    lo = np.uint64(0)
    for k in range(n >> 1):
        hi += np.uint64(v[2 * k])
        lo += np.uint64(v[2 * k + 1])
    if n & 1:
        hi += np.uint64(v[n - 1])
    return (hi << np.uint64(8)) + lo


@inline
def fold(s):
    while s >> np.uint64(16):
        s = (s & np.uint64(0xFFFF)) + (s >> np.uint64(16))
    return (~np.int64(s)) & 0xFFFF


@inline
def pcap_record(out, o, t, wl):
    """A pcap record header at ``o``: time ``t`` (ns since the epoch), ``wl`` bytes captured of
    ``wl``."""
    sec = t // 1_000_000_000
    nsec = t - sec * 1_000_000_000
    for k in range(4):
        out[o + PCAP_TS_SEC + k] = (sec >> (8 * k)) & 0xFF
        out[o + PCAP_TS_FRAC + k] = (nsec >> (8 * k)) & 0xFF
        out[o + PCAP_INCL_LEN + k] = (wl >> (8 * k)) & 0xFF
        out[o + PCAP_ORIG_LEN + k] = (wl >> (8 * k)) & 0xFF
