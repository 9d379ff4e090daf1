"""The merge: partition streams in, the run's batches out, as ``Engine`` gives them alone.

Every packet before the start of the first partition not yet taken up (less the engine's
``early_ns``) is final, and ties in
time go to the earlier partition, whose flow ids are the lower, so the order is the one
``Engine`` gives alone. The frames are then built by this process's engine, as ``Engine``
builds them: the same bytes, MACsec packet numbers (which count the whole stream) included.
A stream is let go as soon as the merge has passed it (a spool's folder removed, its pages
given back).
"""
from __future__ import annotations

import dataclasses
import mmap
import os
import shutil
import time
from typing import Iterator

import numpy as np

from trafficgen.kernels.merge import scatter_rows
from trafficgen.schema import FLOW_DTYPE, REQUEST_DTYPE, SCHED_DTYPE, concat_rows

from .backend import Backend
from .core import Batch, Engine, FlowAttrs
from .phases import PARTS, Ids, Options
from .spool import mapped, new_spool


class _Stream:
    """One partition's packet rows as read by the merge (arrays, or a spool's mapped files)."""

    def __init__(self, arrays: dict, first_flow: int, folder: str | None = None):
        self.rows, self.flows, self.reqs = arrays["pkts"], arrays["flows"], arrays["reqs"]
        self.ts = np.ascontiguousarray(self.rows["ts_ns"])
        self.n = self.rows.shape[0]
        self.pos = 0
        self.first_flow = first_flow
        self.folder = folder
        self.trimmed = 0  # bytes of a mapped spool given back (compact)

    @classmethod
    def from_folder(cls, folder: str, counts: dict, first_flow: int) -> "_Stream":
        arrays = {k: (mapped(os.path.join(folder, k), PARTS[k]) if counts[k]
                      else np.empty(0, PARTS[k])) for k in PARTS}
        return cls(arrays, first_flow, folder)

    def release(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)  # mapped pages live until unmapped
            self.folder = None

    def compact(self) -> None:
        """Let go of what is merged: a session that runs on for an hour must not pin its
        partition's whole stream. A spool's merged pages are dropped from the mapping (they
        stay in the file until the stream ends); rows in memory are copied to the rest once
        more than half is merged (each row is copied O(1) times)."""
        base = self.rows.base
        mm = base.obj if isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap) else None
        if mm is not None:
            done = self.pos * SCHED_DTYPE.itemsize // mmap.PAGESIZE * mmap.PAGESIZE
            if done > self.trimmed:
                mm.madvise(mmap.MADV_DONTNEED, self.trimmed, done - self.trimmed)
                self.trimmed = done
            return
        if self.pos and 2 * (self.n - self.pos) < self.n:
            self.rows = concat_rows([self.rows[self.pos:]])  # as bytes: numpy copies rows one by one
            self.ts = self.ts[self.pos:].copy()
            self.n -= self.pos
            self.pos = 0
            self.release()


class Merger:
    """Partition streams in (added in partition order), the engine's batches out: the rows
    merged by (ts, flow id, packet order), then framed by this process's engine (its frame
    buffers, its MACsec packet numbers: the whole stream's), as ``Engine.run`` frames them."""

    def __init__(self, engine: Engine, start_ns: int, duration_ns: int):
        self.engine = engine
        self.start_ns, self.duration_ns = start_ns, duration_ns
        self.open: list[_Stream] = []
        self.flows: list[np.ndarray] = []
        self.reqs: list[np.ndarray] = []
        self.attrs = FlowAttrs()
        self.merge_s = 0.0

    def add(self, s: _Stream) -> None:
        self.open.append(s)
        if s.flows.shape[0]:
            self.flows.append(s.flows)
        if s.reqs.shape[0]:
            self.reqs.append(s.reqs)
        self.attrs.add(self.engine.flow_attrs(np.ascontiguousarray(s.flows)),
                       self.engine.keep_flows_from(min(x.first_flow for x in self.open)))
        s.flows = s.reqs = None  # the merge has them now

    def emit(self, bound: int | None) -> Iterator[Batch]:
        """Every batch of packets before ``bound`` (ns since the epoch; ``None``: all), merged
        and handed on in pieces of about ``PIECE_ROWS`` rows (a partition's minute would be one
        array of tens of MiB, mapped and zeroed afresh by the kernel each time: a second of
        system time per 20 minutes of chat). A piece ends where the time changes, and its
        bound is the next piece's first time: the batches are those of one array."""
        t = time.perf_counter()
        limit = np.iinfo(np.int64).max if bound is None else bound
        parts = []
        for s in self.open:
            hi = s.n if bound is None else s.pos + int(np.searchsorted(s.ts[s.pos:], limit, "left"))
            if hi > s.pos:
                parts.append((s, s.pos, hi))
                s.pos = hi
        if len(parts) > 1:
            ts = np.concatenate([s.ts[lo:hi] for s, lo, hi in parts])
            order = np.argsort(ts, kind="stable")  # ties: the earlier partition, lower flow ids
            where = np.empty(order.shape[0], np.int64)
            where[order] = np.arange(order.shape[0])  # each part's rows: their merged places
            ts = ts[order]
        else:
            ts = parts[0][0].ts[parts[0][1]:parts[0][2]] if parts else np.empty(0, np.int64)
            where = None
        cuts = piece_cuts(ts, PIECE_ROWS)
        flows = concat_rows(self.flows) if self.flows else np.empty(0, FLOW_DTYPE)
        reqs = concat_rows(self.reqs) if self.reqs else np.empty(0, REQUEST_DTYPE)
        self.flows, self.reqs = [], []
        self.merge_s += time.perf_counter() - t
        for a, b in zip(cuts[:-1], cuts[1:]):
            t = time.perf_counter()
            ready = _piece(parts, where, a, b)
            last = b == ts.shape[0]
            upto = bound if last else int(ts[b])
            self.merge_s += time.perf_counter() - t
            progress = self.duration_ns if upto is None else max(0, min(upto - self.start_ns,
                                                                        self.duration_ns))
            yield from self.engine.batches_of(ready, self.attrs, flows, reqs, progress, upto)
            flows, reqs = flows[:0], reqs[:0]
        for s in self.open:
            if s.pos >= s.n:
                s.release()
            else:
                s.compact()
        self.open = [s for s in self.open if s.pos < s.n]

    def close(self) -> None:
        for s in self.open:
            s.release()
        self.open = []


def merged_batches(scenario, opts: Options, *, workers: int = 1, scheduler=None,
                   stats: dict | None = None, alloc=None) -> Iterator[Batch]:
    """The run's batches, as ``Engine`` gives them, simulated by ``workers`` local processes
    or on the Dask cluster at ``scheduler`` (an address or a ``distributed.Client``), framed
    here (``alloc(nbytes)``: the frame buffers). The workers start before this returns, so
    before the caller opens its sinks (and their threads)."""
    engine = Engine(scenario, frames=opts.frames, packets=opts.packets, window_ns=opts.window_ns,
                    batch_packets=opts.batch_packets, alloc=alloc, stop_at_ns=opts.stop_at_ns)
    parts = engine.partitions()  # none after a cut
    # the workers stream whole partitions, uncut: the merge looks each packet's flow up by flow
    # id among the flows streamed, so the rows are cut once, by this engine, as they are framed
    backend = Backend(scenario, dataclasses.replace(opts, stop_at_ns=None), workers, scheduler)
    return _merged(scenario, parts, backend, Merger(engine, scenario.start_ns,
                                                    scenario.duration_ns), stats)


def _merged(scenario, parts, backend, merger: Merger, stats) -> Iterator[Batch]:
    spool = None if backend.remote else new_spool()  # named with this pid
    try:
        with backend:  # the workers are stopped before their spool goes
            ahead = backend.ahead
            jobs = [(lo, hi, None if spool is None else os.path.join(spool, str(i)))
                    for i, (lo, hi) in enumerate(parts)]
            ids = Ids(len(jobs))
            backend.limit = ahead
            pending, nxt = {}, 0
            for i, result in backend.events(jobs, ids):
                pending[i] = result
                while nxt in pending:
                    res, first = pending.pop(nxt), ids.report(nxt, None)["flow"]
                    merger.add(_Stream(res, first) if spool is None else
                               _Stream.from_folder(jobs[nxt][2], res, first))
                    nxt += 1
                    backend.limit = nxt + ahead
                # (a partition's packets start up to ``early_ns`` before it: Engine.early_ns)
                bound = (scenario.start_ns + parts[nxt][0] - merger.engine.early_ns
                         if nxt < len(parts) else None)
                yield from merger.emit(bound)
            yield from merger.emit(None)
    finally:
        merger.close()
        if spool is not None:
            shutil.rmtree(spool, ignore_errors=True)
        if stats is not None:
            stats.update(partitions=len(parts), workers=backend.workers,
                         merge_s=round(merger.merge_s, 3))


PIECE_ROWS = 1 << 16  # rows a piece of the merge holds (4.5 MiB: below the mmap threshold)


def piece_cuts(ts: np.ndarray, rows: int) -> list[int]:
    """Where pieces of about ``rows`` rows of the time-sorted ``ts`` end: each cut moved on to
    where the time changes, so no time is split between pieces (``[0, ..., len]``; ``[0, 0]``
    for nothing, which still hands on the flows and requests)."""
    n = ts.shape[0]
    cuts = [0]
    while n - cuts[-1] > rows:
        c = cuts[-1] + rows
        c = int(np.searchsorted(ts, ts[c - 1], "right"))  # past every row at that time
        if c >= n:
            break
        cuts.append(c)
    cuts.append(n)
    return cuts


def _piece(parts: list, where: np.ndarray | None, a: int, b: int) -> np.ndarray:
    """Rows ``a`` to ``b`` of the merge of ``parts`` ((stream, lo, hi) each; ``where``: each
    part's rows' merged places, in part order; None: one part)."""
    if not parts:
        return np.empty(0, SCHED_DTYPE)
    if where is None:
        s, lo, _ = parts[0]
        return np.ascontiguousarray(s.rows[lo + a:lo + b])
    ready = np.empty(b - a, SCHED_DTYPE)
    o = 0
    for s, lo, hi in parts:
        w = where[o:o + hi - lo]  # increasing: a part's rows keep their order in the merge
        o += hi - lo
        i, j = int(np.searchsorted(w, a)), int(np.searchsorted(w, b))
        if j > i:  # one copy of each row, straight from its stream
            scatter_rows(s.rows[lo + i:lo + j].view(np.uint8), SCHED_DTYPE.itemsize, w[i:j] - a,
                         ready.view(np.uint8))
    return ready
