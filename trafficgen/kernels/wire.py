"""Byte helpers shared by the frame kernels: big-endian loads and stores and the Internet checksum
(RFC 1071) as a ones'-complement sum that LLVM vectorises."""
import sys

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .headers import PCAP_INCL_LEN, PCAP_ORIG_LEN, PCAP_TS_FRAC, PCAP_TS_SEC
from .jit import inline

LITTLE = sys.byteorder == "little"  # how ``load64`` reads a word's bytes


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


@intrinsic
def load64(typingctx, buf, o):
    """The 8 bytes at ``o`` of the uint8 array ``buf`` as one native-order uint64, whatever
    their alignment (one unaligned load; numba would read a ``view`` as aligned)."""
    sig = types.uint64(buf, o)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        word = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(64).as_pointer())
        return builder.load(word, align=1)

    return sig, codegen


@inline
def sum_words(buf, o, n):
    """What :func:`sum16` sums, 8 bytes a load: a partial sum of ``n`` bytes at ``o`` as
    big-endian 16-bit words, equal to ``sum16``'s modulo 0xFFFF (so :func:`fold` of any sum it
    is part of is the same, that sum being nonzero), not as an integer. Each 64-bit word adds
    its two 32-bit halves: since 2**16 = 1 modulo 0xFFFF, their sum is that of the word's
    16-bit words in the machine's order; folded, its bytes swapped are the big-endian sum
    (RFC 1071, 2(B)). The tail is summed as ``sum16`` does. Loads of a view would vectorise
    too, but on its even and odd bytes apart: twice the instructions, and a wide load of
    bytes just stored one by one stalls."""
    m = n >> 3
    acc = np.uint64(0)
    for k in range(m):
        w = load64(buf, o + 8 * k)
        acc += (w & np.uint64(0xFFFFFFFF)) + (w >> np.uint64(32))
    while acc >> np.uint64(16):
        acc = (acc & np.uint64(0xFFFF)) + (acc >> np.uint64(16))
    if LITTLE:
        acc = ((acc & np.uint64(0xFF)) << np.uint64(8)) | (acc >> np.uint64(8))
    for k in range(8 * m, n):
        b = np.uint64(buf[o + k])
        acc += b if k & 1 else b << np.uint64(8)
    return acc


@inline
def words32(v):
    """The sum of the two big-endian 16-bit words :func:`put32` stores for ``v``."""
    v = np.int64(v) & 0xFFFFFFFF
    return (v >> 16) + (v & 0xFFFF)


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
