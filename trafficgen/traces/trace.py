"""A request trace as arrays (``Trace``), whatever file it was read from, and what the readers
share to build one (``ordered_trace``, ``short_error``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Trace:
    """A request trace as arrays, one row per request, in time order (ties keep file order).

    ``times_ns``: int64, Unix epoch ns where the file says when (``absolute``), else ns from the
    trace's own origin; ``prompt``/``output``: int64 tokens; ``cls`` (str objects), ``session``
    and ``client`` (int64): None where the file has no such column; ``cached``: int64 cached
    prefix tokens (Mooncake hash_ids), else None."""

    path: str
    format: str
    times_ns: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    absolute: bool = False
    cls: np.ndarray | None = None
    session: np.ndarray | None = None
    client: np.ndarray | None = None
    cached: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.times_ns.shape[0])

    @property
    def span_ns(self) -> int:
        return int(self.times_ns[-1] - self.times_ns[0]) if len(self) else 0

    def select(self, keep: np.ndarray) -> "Trace":
        """The rows where ``keep`` (a boolean mask or indexes)."""
        cut = lambda a: None if a is None else a[keep]  # noqa: E731
        return Trace(self.path, self.format, self.times_ns[keep], self.prompt[keep],
                     self.output[keep], self.absolute, cut(self.cls), cut(self.session),
                     cut(self.client), cut(self.cached))


def ordered_trace(path, fmt, t, prompt, output, absolute, cls=None, session=None, client=None,
                  cached=None) -> Trace:
    """A ``Trace`` of these arrays, its rows sorted by time (ties keep file order)."""
    order = np.argsort(t, kind="stable")
    tr = Trace(str(path), fmt, t, prompt, output, absolute, cls, session, client, cached)
    if order.shape[0] and np.any(order != np.arange(order.shape[0])):
        tr = tr.select(order)
    return tr


def short_error(e: Exception) -> str:
    """An exception's first line, at most 160 characters (for one-line errors)."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:160]
