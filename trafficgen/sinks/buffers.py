"""Frame buffers used again: the engine allocates batches' frames from a pool and the sinks
hand them back once written (and keep their own, for the pcapng blocks)."""
from __future__ import annotations

import threading

import numpy as np


class BufferPool:
    """Frame buffers handed back once written (``release``) and handed out again (``get``):
    a run then touches the same few buffers instead of faulting in fresh pages for every batch
    (606 MB of them per 5 minutes of chat). Thread-safe; keeps at most ``keep`` spare."""

    def __init__(self, keep: int = 2):
        self.keep = keep
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def get(self, nbytes: int) -> np.ndarray:
        with self._lock:
            for i, base in enumerate(self._free):
                if base.shape[0] >= nbytes:
                    return self._free.pop(i)[:nbytes]
        return np.empty(nbytes + (nbytes >> 3), np.uint8)[:nbytes]  # room for the next

    def release(self, view: np.ndarray) -> None:
        base = view.base if isinstance(view.base, np.ndarray) else view
        if not base.flags.writeable:  # a view of a file (a merged partition's frames)
            return
        with self._lock:
            if len(self._free) < self.keep:
                self._free.append(base)
