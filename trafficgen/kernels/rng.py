"""Counter-based randomness: every draw is a pure function of (key, index).

A key is a 64-bit value derived by mixing the scenario seed with stable ids (class, epoch,
session, ...). Draw ``i`` of a key is the SplitMix64 output for state ``key + (i+1) * GOLDEN``,
so any draw can be recomputed anywhere, in any order, in any process: this is what makes output
independent of chunking and parallelism. SplitMix64 (Steele, Lea, Flood 2014) passes BigCrush.
"""
import numpy as np

from .jit import inline, kernel

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@inline
def mix64(z):
    """SplitMix64 finaliser: uint64 -> uint64."""
    z = np.uint64(z)
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@kernel
def derive(key, ident):
    """Child key of ``key`` for the non-negative integer id ``ident``."""
    return mix64(np.uint64(key) ^ mix64(np.uint64(ident) + GOLDEN))


@kernel
def bits(key, i):
    """Draw ``i`` of ``key`` as uint64."""
    return mix64(np.uint64(key) + (np.uint64(i) + np.uint64(1)) * GOLDEN)


@kernel
def uniform(key, i):
    """Draw ``i`` of ``key`` as a float64 strictly inside (0, 1)."""
    return (float(bits(key, i) >> _S11) + 0.5) * _INV53


@kernel
def fill_bytes(key, out):
    """Fill a uint8 array with pseudo-random bytes from ``key`` (8 bytes per draw)."""
    n = out.shape[0]
    words = n // 8
    for w in range(words):
        x = bits(key, w)
        for b in range(8):
            out[w * 8 + b] = np.uint8((x >> np.uint64(8 * b)) & np.uint64(0xFF))
    if n % 8:
        x = bits(key, words)
        for b in range(n % 8):
            out[words * 8 + b] = np.uint8((x >> np.uint64(8 * b)) & np.uint64(0xFF))


def key_of(*ids: int) -> np.uint64:
    """Python-side key derivation from a seed and stable ids (same function as ``derive``)."""
    k = np.uint64(0x5EED5EED5EED5EED)
    for ident in ids:
        k = np.uint64(derive(k, np.uint64(ident)))
    return k


@kernel
def derive_range(key, first, out):
    """``out[i] = derive(key, first + i)``: child keys for a run of ids."""
    for i in range(out.shape[0]):
        out[i] = derive(key, first + i)
