"""One batch of the packet stream (:class:`Batch`), its slices, and the stream's first N packets
(:func:`first_packets`, behind ``trafficgen.batches(..., max_packets=N)``)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

from trafficgen.errors import Arg, ArgumentError
from trafficgen.kernels.headers import PCAP_REC
from trafficgen.schema import TABLES, concat_rows, to_arrow


@dataclass
class Batch:
    """A slice of the packet stream, in timestamp order, with the table rows that go with it.

    Attributes
    ----------
    packets : numpy.ndarray
        Raw packet rows, a numpy structured array (the fast path): the packet table's columns
        with the labels as ``uint8`` codes (``trafficgen.LABELS`` names them), then the frame
        encoder's own fields (``ipid``, ``layout``, ``segoff``, ``writelen``), which are not
        part of the documented table. ``to_arrow()`` / ``to_pandas()`` give the documented
        table, labels decoded.
    frames, offsets : numpy.ndarray or None
        The frames as pcap records in one ``uint8`` buffer (each frame after its 16-byte record
        header): frame ``i`` is ``frames[offsets[i]:offsets[i] + packets['wire_len'][i]]``
        (``frame(i)``). None when frames are not built (``frames=False``).
    flows, requests : numpy.ndarray
        Raw flow and request rows that come with this batch (often none): each row once in the
        stream, in id order. A row is the model's whole flow or request (its totals count every
        packet it has, in this batch or later ones).
    progress_ns : int
        How far into the scenario the stream is complete.

    Notes
    -----
    ``len(batch)`` is its number of packets. ``batch[i:j]`` is a batch of packets ``i`` to
    ``j - 1`` with their frames and the rows that belong to that part of it: a row belongs to
    the first part whose packets reference it (``flow_id``, ``request_id``) or pass its
    ``start_ns``, and rows no packet of the batch covers belong to its end. So ``batch[:k]``
    holds the rows the first ``k`` packets show, and ``batch[:k]`` and ``batch[k:]`` split
    every table of ``batch`` in two.
    """

    packets: np.ndarray
    frames: np.ndarray | None
    offsets: np.ndarray | None
    flows: np.ndarray
    requests: np.ndarray
    progress_ns: int
    # (client, server) IPv6 prefixes: how to_arrow shows the addresses of IPv6 flows
    ipv6_prefixes: tuple[bytes, bytes] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.packets.shape[0]

    def frame(self, i: int) -> bytes:
        """The bytes of packet ``i``'s Ethernet frame."""
        if self.frames is None:
            raise ValueError("this batch has no frames: make the batches with frames=True")
        o = int(self.offsets[i])
        return self.frames[o:o + int(self.packets["wire_len"][i])].tobytes()

    def __getitem__(self, key: slice) -> "Batch":
        if not isinstance(key, slice):
            raise TypeError("a Batch is sliced by packets (batch[:k], batch[i:j]); one packet is "
                            "batch.packets[i], its frame batch.frame(i)")
        n = len(self)
        start, stop, step = key.indices(n)
        if step != 1:
            raise ValueError("a Batch slice keeps every packet of its range: no step")
        stop = max(start, stop)
        none_f, none_r = np.zeros(self.flows.shape[0], bool), np.zeros(self.requests.shape[0], bool)
        f_lo, r_lo = self.covered(start) if start > 0 else (none_f, none_r)
        f_hi, r_hi = self.covered(stop) if stop < n else (~none_f, ~none_r)  # the rest: at the end
        return replace(self, **self.packet_range(start, stop), flows=self.flows[f_hi & ~f_lo],
                       requests=self.requests[r_hi & ~r_lo])

    def packet_range(self, start: int, stop: int) -> dict:
        """Packets ``start`` to ``stop - 1`` (``0 <= start <= stop <= len``) and their frames,
        as ``packets``, ``frames`` and ``offsets`` (views; offsets from the slice's own start)."""
        frames = offsets = None
        if self.frames is not None:
            lo = int(self.offsets[start]) - PCAP_REC if start < stop else 0
            hi = (int(self.offsets[stop - 1]) + int(self.packets["wire_len"][stop - 1])
                  if start < stop else 0)
            frames, offsets = self.frames[lo:hi], self.offsets[start:stop] - lo
        return {"packets": self.packets[start:stop], "frames": frames, "offsets": offsets}

    def covered(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Which flow and request rows the first ``k`` packets cover (two boolean masks,
        :func:`covers`)."""
        p = self.packets[:max(k, 0)]
        return covers(p, self.flows, "flow_id"), covers(p, self.requests, "request_id")

    def to_arrow(self, table: str = "packets"):
        """One of the batch's tables as a ``pyarrow.Table``, as the Parquet files have it.

        Parameters
        ----------
        table : str
            ``"packets"`` (default), ``"flows"`` or ``"requests"``.

        Returns
        -------
        pyarrow.Table
            The documented columns only (README, "What it makes"); labels (``class``,
            ``kind``, ``direction``, ``phase``) as dictionary-encoded strings, addresses as
            text. Batches' tables concatenate with ``pyarrow.concat_tables``.
        """
        import pyarrow as pa
        if table not in TABLES:
            raise ArgumentError(Arg("table"), f": expected one of {', '.join(TABLES)}, got {table!r}")
        rows = getattr(self, table)
        return pa.Table.from_batches([to_arrow(rows, table, self.ipv6_prefixes)])

    def to_pandas(self, table: str = "packets"):
        """One of the batch's tables as a ``pandas.DataFrame`` (``to_arrow(table).to_pandas()``):
        labels as categoricals, addresses as strings. Needs pandas."""
        arrow = self.to_arrow(table)
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise ImportError("Batch.to_pandas needs pandas (pip install pandas); "
                              "to_arrow() needs nothing more") from None
        return arrow.to_pandas()


def covers(packets: np.ndarray, rows: np.ndarray, key: str) -> np.ndarray:
    """Which of ``rows`` (flow rows, ``key`` ``"flow_id"``; request rows, ``"request_id"``)
    the time-ordered ``packets`` cover: those they reference, and any that start before the last
    of them (a row's ``start_ns`` is its first packet's time, so these are the rows whose first
    packet is among ``packets``, however ties in time fall)."""
    if not packets.shape[0]:
        return np.zeros(rows.shape[0], bool)
    return (rows["start_ns"] < packets["ts_ns"][-1]) | np.isin(rows[key], packets[key])


class _Waiting:
    """One table's rows not yet given out, in stream order, each with whether the packets so
    far cover it. Rows are copied once, when they go."""

    def __init__(self, key: str):
        self.key, self.parts = key, []  # [rows, covered mask] in order
        self.empty = None  # no rows, of the table's dtype

    def add(self, rows: np.ndarray, packets: np.ndarray) -> None:
        """New rows in; then the packets just kept mark what they cover."""
        self.empty = rows[:0]
        if rows.shape[0]:
            self.parts.append([rows, np.zeros(rows.shape[0], bool)])
        for part in self.parts:
            part[1] |= covers(packets, part[0], self.key)

    def lead(self) -> np.ndarray:
        """The covered rows up to the first one that is not: they go now."""
        out = []
        while self.parts:
            rows, mask = self.parts[0]
            i = _run(mask)
            out.append(rows[:i])
            if i < rows.shape[0]:
                self.parts[0] = [rows[i:], mask[i:]]
                break
            self.parts.pop(0)
        return self._cat(out)

    def covered(self) -> np.ndarray:
        """Every covered row (the stream was cut: the rest never go)."""
        return self._cat([rows[mask] for rows, mask in self.parts])

    def rest(self) -> np.ndarray:
        """Every row (the stream ended uncut)."""
        return self._cat([rows for rows, _ in self.parts])

    def _cat(self, parts: list) -> np.ndarray:
        parts = [p for p in parts if p.shape[0]]
        if not parts:
            return self.empty
        return parts[0] if len(parts) == 1 else concat_rows(parts)


def first_packets(source: Iterator[Batch], limit: int) -> Iterator[Batch]:
    """The first ``limit`` packets of a stream of batches, the last batch cut to fit, with the
    rows those packets cover (:func:`covers`).

    A row comes with the first batch whose packets cover it, in the stream's row order (a row
    waits while an earlier one is not yet covered), so the rows of the batches are exactly those
    the kept packets show, in the order of an uncut stream. If the stream ends before
    ``limit``, nothing is cut and every row comes (the last ones in a batch of no packets).
    ``source`` is closed when done.
    """
    waiting = {"flows": _Waiting("flow_id"), "requests": _Waiting("request_id")}
    left, last = limit, None
    try:
        for batch in source if left > 0 else ():
            last = batch
            n = len(batch)
            kept = batch if n <= left else replace(batch, **batch.packet_range(0, left))
            for name, w in waiting.items():
                w.add(getattr(batch, name), kept.packets)
            left -= len(kept)
            if left == 0:  # the cut: the rows the kept packets cover, no other
                yield replace(kept, **{name: w.covered() for name, w in waiting.items()})
                return
            rows = {name: w.lead() for name, w in waiting.items()}
            if n or rows["flows"].shape[0] or rows["requests"].shape[0]:
                yield replace(batch, **rows)
        rest = {name: w.rest() for name, w in waiting.items()}
        if last is not None and (rest["flows"].shape[0] or rest["requests"].shape[0]):
            yield replace(last, packets=last.packets[:0], frames=None, offsets=None, **rest)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def _run(mask: np.ndarray) -> int:
    """The length of the leading run of True in ``mask``."""
    off = np.flatnonzero(~mask)
    return int(off[0]) if off.shape[0] else mask.shape[0]
