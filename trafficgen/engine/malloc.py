"""Keep glibc's heap from growing with run length.

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which
the engine's per-window arrays (megabytes each, freed every window) come from the heap, where
fragmentation keeps them resident: peak RSS then creeps up with the duration. A fixed 1 MiB
threshold serves such arrays from mmap, returned to the system when freed. Fresh mmapped
pages cost a fault each, so the largest per-window and per-batch buffers are reused instead
(``sinks.buffers.BufferPool``, the transport scratch in ``classes/common.py``); see bench/RESULTS.md.
The CLI calls this; a library user may call it for their own process.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # <malloc.h>
MMAP_THRESHOLD = 1 << 20


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold; ``False`` (and nothing changed) on other C libraries."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
