"""Copying pcap records between frame buffers: the k-way merge of partition streams."""
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

PCAP_REC = 16


@intrinsic
def _copy(typingctx, dst, d, src, s, n):
    """``dst[d:d + n] = src[s:s + n]`` as one llvm.memcpy (uint8 arrays, int64 offsets): a
    slice assignment in numba copies byte by byte, about 2.5x slower."""
    sig = types.void(dst, d, src, s, n)

    def codegen(context, builder, signature, args):
        dst_a, d_v, src_a, s_v, n_v = args
        dptr = context.make_array(signature.args[0])(context, builder, dst_a).data
        sptr = context.make_array(signature.args[2])(context, builder, src_a).data
        cgutils.raw_memcpy(builder, builder.gep(dptr, [d_v]), builder.gep(sptr, [s_v]), n_v, 1)

    return sig, codegen


@njit(cache=True, nogil=True)
def record_starts(wire_len, out):
    """``out[i]``: where record i (a 16-byte pcap header, then ``wire_len[i]`` bytes) starts in
    a buffer of these records back to back; ``out[n]`` the buffer's length. int64[n + 1]."""
    o = 0
    for i in range(wire_len.shape[0]):
        out[i] = o
        o += PCAP_REC + wire_len[i]
    out[wire_len.shape[0]] = o


@njit(cache=True, nogil=True)
def scatter_records(src, src_start, dst, dst_start):
    """Copy record i of ``src`` (``src_start[i]`` to ``src_start[i + 1]``) to ``dst`` at
    ``dst_start[i]``; uint8 buffers, int64 starts (``src_start`` has n + 1 entries)."""
    for i in range(dst_start.shape[0]):
        a, b = src_start[i], src_start[i + 1]
        if b > a:
            _copy(dst, dst_start[i], src, a, b - a)


def starts_of(wire_len: np.ndarray) -> np.ndarray:
    out = np.empty(wire_len.shape[0] + 1, np.int64)
    record_starts(wire_len, out)
    return out


@njit(cache=True, nogil=True)
def scatter_rows(src, width, where, dst):
    """Row i of ``src`` to row ``where[i]`` of ``dst``: flat uint8 views of structured arrays
    whose rows are ``width`` bytes (the k-way merge puts each stream's rows straight into their
    merged places)."""
    for i in range(where.shape[0]):
        _copy(dst, where[i] * width, src, i * width, width)
