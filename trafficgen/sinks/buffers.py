"""Frame buffers used again: the engine allocates batches' frames from a pool and the sinks
hand them back once written (and keep their own, for the pcapng blocks)."""
from __future__ import annotations

import bisect
import threading

import numpy as np

# buffers in flight in a capture's pipeline: one being encoded, the writer's queue (two), one
# being written; the pool keeps that many spare, so a run in its steady state allocates none
PIPELINE_BUFFERS = 4
HEADROOM = 4  # a new buffer is 1/HEADROOM larger than asked: batches' sizes vary around a mean


class BufferPool:
    """Frame buffers handed back once written (``release``) and handed out again (``get``):
    a run then touches the same few buffers instead of faulting in fresh pages for every batch
    (606 MB of them per 5 minutes of chat; a batch's buffer is above glibc's mmap threshold,
    so a new one is a fresh mapping, zeroed page by page on first touch). Thread-safe.

    ``get`` hands out the smallest spare that fits; ``release`` keeps at most ``keep`` spares,
    and when full lets the smallest go, not the one handed back: a pool that kept its first,
    smallest buffers would allocate anew for every larger batch (a seventh of a chat run's)."""

    def __init__(self, keep: int = PIPELINE_BUFFERS):
        self.keep = keep
        self._free: list[np.ndarray] = []  # spares, smallest first
        self._lock = threading.Lock()
        self.allocated = 0  # buffers made (not handed out again): what the tests count

    def get(self, nbytes: int) -> np.ndarray:
        with self._lock:
            for i, base in enumerate(self._free):
                if base.shape[0] >= nbytes:
                    return self._free.pop(i)[:nbytes]
            self.allocated += 1
        return np.empty(nbytes + nbytes // HEADROOM, np.uint8)[:nbytes]

    def release(self, view: np.ndarray) -> None:
        base = view.base if isinstance(view.base, np.ndarray) else view
        if not base.flags.writeable:  # a view of a file (a merged partition's frames)
            return
        with self._lock:
            if len(self._free) >= self.keep:
                if self.keep == 0 or self._free[0].shape[0] >= base.shape[0]:
                    return
                self._free.pop(0)
            bisect.insort(self._free, base, key=len)
