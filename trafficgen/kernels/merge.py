"""Copying rows into their merged places: the k-way merge of partition streams."""
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .jit import kernel


@intrinsic
def _copy(typingctx, dst, d, src, s, n):
    """``dst[d:d + n] = src[s:s + n]`` as one llvm.memcpy (uint8 arrays, int64 offsets): a
    slice assignment in numba copies byte by byte, several times slower for short rows."""
    sig = types.void(dst, d, src, s, n)

    def codegen(context, builder, signature, args):
        dst_a, d_v, src_a, s_v, n_v = args
        dptr = context.make_array(signature.args[0])(context, builder, dst_a).data
        sptr = context.make_array(signature.args[2])(context, builder, src_a).data
        cgutils.raw_memcpy(builder, builder.gep(dptr, [d_v]), builder.gep(sptr, [s_v]), n_v, 1)

    return sig, codegen


@kernel
def scatter_rows(src, width, where, dst):
    """Row i of ``src`` to row ``where[i]`` of ``dst``: flat uint8 views of structured arrays
    whose rows are ``width`` bytes (the k-way merge puts each stream's rows straight into their
    merged places)."""
    for i in range(where.shape[0]):
        _copy(dst, where[i] * width, src, i * width, width)
