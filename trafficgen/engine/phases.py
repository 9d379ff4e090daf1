"""The two phases of a partition, wherever they run (this process, a worker process, a Dask
worker), and the ids that tie the partitions together.

1. ``simulate``: the partition's sessions with local ids, and how many ids of each kind they
   take (``id_counts``);
2. once the partitions before it have reported, its first ids are the running sum of theirs
   (``Ids``), and its stream is built: as arrays (``stream_arrays``, for Dask), spooled to files
   (``spool.stream_files``, for local workers), or as its own shard files (``write_shard``).

Each process (and thread) keeps the engine of a run (``partition_engine``), so a worker builds
it once, not once per partition. Callers look the phase functions up on this module at call
time (``phases.write_shard``), so a test may replace them.
"""
from __future__ import annotations

import threading
import uuid
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from trafficgen.schema import FLOW_DTYPE, REQUEST_DTYPE, SCHED_DTYPE, concat_rows
from trafficgen.sinks.buffers import BufferPool
from trafficgen.sinks.outputs import SinkSet, open_sinks

from .core import Batch, Engine
from .ids import ID_KINDS, MARK_REACH, id_counts
from .report import Tally

PARTS = {"pkts": SCHED_DTYPE, "flows": FLOW_DTYPE, "reqs": REQUEST_DTYPE}  # a stream's arrays


@dataclass
class Options:
    """What every partition is built with (the same for every worker)."""

    frames: bool  # a capture: frames are built (by the merge, or by a shard's worker)
    packets: bool  # a capture or a packet table: packets are sorted and merged
    window_ns: int
    batch_packets: int
    stop_at_ns: int | None = None  # the capture's cut (``Engine``), from the capture start


_ENGINES: dict = {}  # per process (and thread, for Dask): (token, options) -> Engine
_ENGINES_LOCK = threading.Lock()


def partition_engine(token: str, scenario, opts: Options, frames: bool) -> Engine:
    """This process's (and thread's) engine for the run ``token``, built on first use; its
    frame buffers (``engine.buffers``) come back from the shard's writer and are used again."""
    key = (token, frames, opts.packets, opts.window_ns, opts.batch_packets, opts.stop_at_ns,
           threading.get_ident())
    with _ENGINES_LOCK:
        e = _ENGINES.get(key)
        if e is None:
            if len(_ENGINES) > 8:
                _ENGINES.clear()
            pool = BufferPool()  # frame buffers back from the shard's writer, used again
            e = _ENGINES[key] = Engine(scenario, frames=frames, packets=opts.packets,
                                       window_ns=opts.window_ns, batch_packets=opts.batch_packets,
                                       gen_threads=1, alloc=pool.get, stop_at_ns=opts.stop_at_ns)
            e.buffers = pool
    return e


def simulate(token: str, scenario, opts: Options, lo: int, hi: int):
    """Phase one: ``(simulated, counts)``."""
    sim = partition_engine(token, scenario, opts, False).simulate(lo, hi)
    return sim, id_counts(sim)


def stream_arrays(token: str, scenario, opts: Options, lo: int, hi: int, first_ids: dict,
                  sim) -> dict:
    """Phase two, into arrays: the partition's packet rows (in order), flows and requests."""
    parts: dict[str, list] = {k: [] for k in PARTS}
    # the rows as they reach the tap's link: the merge runs the tap's pass over them all
    for b in partition_engine(token, scenario, opts, False).run(lo, hi, first_ids, sim, tap=False):
        for k, rows in pieces(b):
            if rows.shape[0]:
                parts[k].append(rows)
    return {k: concat_rows(v) if v else np.empty(0, PARTS[k]) for k, v in parts.items()}


ROWS_OF = {"capture": "packets", "packets": "packets", "flows": "flows", "requests": "requests"}


def write_shard(token: str, scenario, opts: Options, lo: int, hi: int, first_ids: dict, sim,
                paths: dict) -> dict:
    """Phase two, into this partition's own capture and table files (``paths``: the
    ``generate`` outputs, as shard file paths). An output's file is opened at the first batch
    with rows for it (``ROWS_OF``), so a partition writes no empty file: its counts name the
    outputs it wrote (``"files"``)."""
    engine = partition_engine(token, scenario, opts, opts.frames)
    tally = Tally(opts.packets)
    waiting = {k: v for k, v in paths.items() if v is not None}
    sinks = SinkSet()
    with ExitStack() as stack:
        for b in engine.run(lo, hi, first_ids, sim):
            for k in [k for k in waiting if getattr(b, ROWS_OF[k]).shape[0]]:
                # every sink skips a batch without its rows, so one opened now writes what it
                # would have written had it been open from the start
                sinks += stack.enter_context(open_sinks(scenario, {k: waiting.pop(k)},
                                                        engine.buffers.release))
            sinks.write(b)
            tally.add(b)
        sinks.finish()
    return {**tally.as_dict(),
            "files": sorted(k for k in paths if paths[k] is not None and k not in waiting)}


def pieces(b: Batch):
    """A batch's rows as ``(part, rows)``, one per ``PARTS`` key."""
    yield "pkts", b.packets
    yield "flows", b.flows
    yield "reqs", b.requests


class Ids:
    """The running sum of the partitions' id counts: partition i's first ids, once known."""

    def __init__(self, n: int):
        self.counts: list[dict | None] = [None] * n
        self.first: list[dict] = [dict.fromkeys(ID_KINDS, 0)]
        self._lock = threading.Lock()

    def report(self, i: int, counts: dict | None) -> dict | None:
        """Record partition i's counts (if given); its first ids, or ``None`` if not known yet."""
        with self._lock:
            if counts is not None:
                self.counts[i] = counts
            while len(self.first) <= i and self.counts[len(self.first) - 1] is not None:
                j = len(self.first) - 1
                prev, c = self.first[j], self.counts[j]
                # the first session id of each block the partitions before it made (a block's
                # pooled calls name sessions of earlier blocks: ``EpochSchedule.foreign``)
                marks = {tag: self.first[x]["session"] + off
                         for x in range(max(0, j + 1 - MARK_REACH), j + 1)
                         for tag, off in self.counts[x].get("marks", ())}
                self.first.append({**{k: prev[k] + c[k] for k in ID_KINDS}, "marks": marks})
            return self.first[i] if i < len(self.first) else None


def token_of(scenario) -> str:
    """A name for this run's scenario, unique to the run: what the workers cache its engine by."""
    return uuid.uuid4().hex
