"""Keep glibc's heap from growing with run length, without paying a page fault for every array.

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which
the engine's per-window arrays (megabytes each, freed every window) come from the heap, where
fragmentation keeps them resident: peak RSS then creeps up with the duration. A fixed threshold
stops that. At 1 MiB (until 2026-12) every array of a megabyte or more was a fresh mapping,
zeroed by the kernel on first touch and unmapped when freed: about a sixth of a run's time went
to those faults (20 minutes of chat to /dev/shm: 3.1 s of system time, one process). At 8 MiB
the per-window and per-batch arrays (a window's packet rows, a batch's columns) come back from
the heap; the largest (the frame buffers, the transport scratch) are mapped and reused
(``sinks.buffers.BufferPool``, ``classes/common.py``). Measured in bench/RESULTS.md: 11% less
time, 4% more peak memory after an hour. The CLI calls this; a library user may call it for
their own process. A local worker process sets its own (``worker=True``), always.

Both keep up to ``TRIM_THRESHOLD`` of free heap instead of glibc's 128 KiB (which fixing the
mmap threshold leaves in force): a window's or a partition's arrays are freed together, and
trimmed at 128 KiB the heap gave them back to the kernel only to fault them in, zeroed, for
the next. Peak RSS stays within 2% (the heap's high-water mark is what it was); page faults,
20 minutes of chat: one process 137k -> 78k, ``--workers 2`` 217k -> 107k (bench/RESULTS.md).
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
MMAP_THRESHOLD = 8 << 20
TRIM_THRESHOLD = 256 << 20  # free heap kept (more than a window's or a partition's arrays)
# a local worker process (engine.pool) builds one partition at a time, a minute of traffic:
# its arrays (tens of MiB, the same sizes partition after partition) come from its heap and
# stay there for the next, instead of being mapped, zeroed and unmapped for each partition
WORKER_MMAP_THRESHOLD = 32 << 20


def tune_malloc(worker: bool = False) -> bool:
    """Fix glibc's mmap threshold (``worker``: a local worker's) and the free heap it keeps;
    ``False`` (and nothing changed) on other C libraries."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    mmap_at = WORKER_MMAP_THRESHOLD if worker else MMAP_THRESHOLD
    return mallopt(M_MMAP_THRESHOLD, mmap_at) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
