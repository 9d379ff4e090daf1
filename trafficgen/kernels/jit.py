"""The one decorator policy of the kernels.

``kernel``
    An entry point called from Python: compiled once per signature, cached on disk, and run
    without the GIL (the engine's worker threads run kernels side by side).
``helper``
    A function called only from other kernels, compiled as a function of its own once per
    signature; no Python entry point (calling one from Python raises).
``inline``
    A small function (byte stores, draws, the checksum loop: what the hot loops are made of),
    compiled once per signature like a helper and marked for LLVM to inline into its callers;
    callable from Python too. Not numba's ``inline="always"``, which copies the body into
    every call site before typing and multiplies compile time, not speed.

Every jitted function of ``trafficgen.kernels`` uses one of these three. Calls between them
are typed with plain types (:func:`plain_calls`), so each compiles once per signature.
Compiled code is cached where ``trafficgen.kernels.cache_dir`` decided, or not at all.
"""
from . import cache_dir

_CACHE = cache_dir() is not None  # decided before numba is imported (its cache folder)

from numba import njit  # noqa: E402
from numba.core import types  # noqa: E402


def plain_calls(dispatcher):
    """``dispatcher``, typed with plain types when another kernel calls it.

    numba types a constant argument as its literal (``Literal[int](0)``), and a variable whose
    type is inferred in steps (``cur = 0`` then ``cur += n``) first as the literal of its first
    value: each is a signature of its own, so a helper (and every helper it calls) would
    compile once per literal. Called from a kernel, it is compiled for the plain types
    (``int64``, ``UniTuple(int64 x 5)``) and the call site converts.
    """
    typed = dispatcher.get_call_template

    def get_call_template(args, kws):
        return typed(tuple(types.unliteral(a) for a in args),
                     {k: types.unliteral(v) for k, v in kws.items()})

    dispatcher.get_call_template = get_call_template
    return dispatcher


def kernel(fn):
    return plain_calls(njit(cache=_CACHE, nogil=True)(fn))


def helper(fn):
    return plain_calls(njit(cache=_CACHE, no_cpython_wrapper=True, no_cfunc_wrapper=True)(fn))


def inline(fn):
    return plain_calls(njit(cache=_CACHE, forceinline=True)(fn))
