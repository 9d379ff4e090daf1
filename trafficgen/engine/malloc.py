"""Keep glibc's heap from growing with run length, without paying a page fault for every array.

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which
the engine's per-window arrays (megabytes each, freed every window) come from the heap, where
fragmentation keeps them resident: peak RSS then creeps up with the duration. A fixed threshold
stops that. At 1 MiB (until 2026-12) every array of a megabyte or more was a fresh mapping,
zeroed by the kernel on first touch and unmapped when freed: about a sixth of a run's time went
to those faults (20 minutes of chat to /dev/shm: 3.1 s of system time, one process). At 8 MiB
the per-window and per-batch arrays (a window's packet rows, a batch's columns) come back from
the heap; the largest (the frame buffers, the transport scratch) are mapped and reused
(``sinks.buffers.BufferPool``, ``classes/common.py``), and a merged partition's rows (tens of
MiB, once a minute of traffic) are mapped afresh. Measured in bench/RESULTS.md: 11% less time,
4% more peak memory after an hour. The CLI calls this; a library user may call it for their own
process.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # <malloc.h>
MMAP_THRESHOLD = 8 << 20


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
