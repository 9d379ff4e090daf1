"""The one decorator policy of the kernels.

``kernel``
    An entry point called from Python: compiled once per signature, cached on disk, and run
    without the GIL (the engine's worker threads run kernels side by side).
``helper``
    A function called only from other kernels, compiled as a function of its own (large bodies
    called from several places: inlining them would multiply compile time, not speed).
``inline``
    A small function inlined into its callers by numba itself (numba IR, before LLVM):
    byte stores, draws, the checksum loop; what the hot loops are made of.

Every jitted function of ``trafficgen.kernels`` uses one of these three.
"""
from numba import njit

kernel = njit(cache=True, nogil=True)
helper = njit(cache=True)
inline = njit(cache=True, inline="always")
