"""Generation spread over local processes (``workers``) or a Dask cluster (``scheduler``), with
the bytes of one process.

The unit of work is a *partition*: the sessions that start in one ``PARTITION_NS`` span of the
run (``Engine.partitions``), with all their flows and packets, even those that run on past the
span's end, so no session is ever cut. A partition is generated in two phases:

1. simulate it with local ids (``Engine.simulate``), and report how many ids it takes;
2. once the partitions before it have reported, take the ids after theirs (a running sum, the
   only thing partitions wait on each other for) and build its stream: the packet rows in
   (ts, flow id, packet) order, and its flow and request rows (``Engine.run``).

The coordinator (this process) merges the partition streams into one: every packet before the
start of the first partition not yet built is final, and ties in time go to the earlier
partition, whose flow ids are the lower, so the order is the one ``Engine`` gives alone. It then
builds the frames with its own engine, as ``Engine`` does alone: the same bytes, MACsec packet
numbers (which count the whole stream) included. The workers do the simulation, most of the
work; what they hand over is 55 bytes a packet, a tenth of the frames. With ``shards``, each
worker builds and writes its partitions' own files, and nothing is merged.

Local workers spool their streams to files in a temporary folder; a Dask worker hands its
stream back as arrays (it may be on another machine). Either way a stream is let go as soon as
the merge has passed it, and at most a few partitions run ahead of the merge.
"""
from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import queue
import shutil
import tempfile
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from multiprocessing.connection import wait as mp_wait
from typing import Callable, Iterator

import numpy as np

from trafficgen.errors import TrafficgenError
from trafficgen.kernels.merge import scatter_rows
from trafficgen.schema import FLOW_DTYPE, REQUEST_DTYPE, SCHED_DTYPE, concat_rows
from trafficgen.sinks.buffers import BufferPool
from trafficgen.sinks.outputs import open_sinks

from .core import ID_KINDS, Batch, Engine, FlowAttrs, id_counts

AHEAD = 2  # partitions built ahead of the merge, per worker
PARTS = {"pkts": SCHED_DTYPE, "flows": FLOW_DTYPE, "reqs": REQUEST_DTYPE}  # a stream's arrays


@dataclass
class Options:
    """What every partition is built with (the same for every worker)."""

    frames: bool  # a capture: frames are built (by the merge, or by a shard's worker)
    packets: bool  # a capture or a packet table: packets are sorted and merged
    window_ns: int
    batch_packets: int


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_shards(scenario) -> None:
    """Refuse what cannot be cut into captures: MACsec packet numbers count one capture's frames."""
    if scenario.network.macsec:
        raise TrafficgenError("network.macsec: MACsec packet numbers count the frames of one whole "
                              "capture, so a MACsec run cannot be sharded (drop --shards)")


# --- the two phases, wherever they run ---------------------------------------------------------

_ENGINES: dict = {}  # per process (and thread, for Dask): (token, options) -> Engine
_ENGINES_LOCK = threading.Lock()


def make_engine(token: str, scenario, opts: Options, frames: bool) -> Engine:
    key = (token, frames, opts.packets, opts.window_ns, opts.batch_packets, threading.get_ident())
    with _ENGINES_LOCK:
        e = _ENGINES.get(key)
        if e is None:
            if len(_ENGINES) > 8:
                _ENGINES.clear()
            pool = BufferPool()  # frame buffers back from the shard's writer, used again
            e = _ENGINES[key] = Engine(scenario, frames=frames, packets=opts.packets,
                                       window_ns=opts.window_ns, batch_packets=opts.batch_packets,
                                       gen_threads=1, alloc=pool.get)
            e.buffers = pool
    return e


def simulate(token: str, scenario, opts: Options, lo: int, hi: int):
    """Phase one: ``(simulated, counts)``."""
    sim = make_engine(token, scenario, opts, False).simulate(lo, hi)
    return sim, id_counts(sim)


def stream_arrays(token: str, scenario, opts: Options, lo: int, hi: int, first_ids: dict,
                  sim) -> dict:
    """Phase two, into arrays: the partition's packet rows (in order), flows and requests."""
    parts: dict[str, list] = {k: [] for k in PARTS}
    for b in make_engine(token, scenario, opts, False).run(lo, hi, first_ids, sim):
        _collect(parts, b)
    return {k: _join(v, PARTS[k]) for k, v in parts.items()}


def stream_files(token: str, scenario, opts: Options, lo: int, hi: int, first_ids: dict,
                 sim, folder: str) -> dict:
    """Phase two, spooled to ``folder/{pkts,flows,reqs}``: returns the row counts."""
    os.makedirs(folder, exist_ok=True)
    files = {k: open(os.path.join(folder, k), "wb") for k in PARTS}  # noqa: SIM115
    n = dict.fromkeys(PARTS, 0)
    try:
        for b in make_engine(token, scenario, opts, False).run(lo, hi, first_ids, sim):
            for k, rows in _pieces(b):
                files[k].write(memoryview(np.ascontiguousarray(rows)).cast("B"))
                n[k] += rows.shape[0]
    finally:
        for f in files.values():
            f.close()
    return n


def write_shard(token: str, scenario, opts: Options, lo: int, hi: int, first_ids: dict, sim,
                paths: dict) -> dict:
    """Phase two, into this partition's own capture and table files (``paths``: the
    ``generate`` outputs, as shard file paths)."""
    engine = make_engine(token, scenario, opts, opts.frames)
    n = {"packets": 0, "wire_bytes": 0, "flows": 0, "requests": 0}
    with open_sinks(scenario, paths, engine.buffers.release) as sinks:
        for b in engine.run(lo, hi, first_ids, sim):
            sinks.write(b)
            n["packets"] += b.packets.shape[0]
            n["wire_bytes"] += int(b.packets["wire_len"].sum())
            n["flows"] += b.flows.shape[0]
            n["requests"] += b.requests.shape[0]
        sinks.finish()
    return n


def _pieces(b: Batch):
    yield "pkts", b.packets
    yield "flows", b.flows
    yield "reqs", b.requests


def _collect(parts: dict, b: Batch) -> None:
    for k, rows in _pieces(b):
        if rows.shape[0]:
            parts[k].append(rows)


def _join(rows: list, dtype) -> np.ndarray:
    return concat_rows(rows) if rows else np.empty(0, dtype)


# --- the local pool: one process per worker, each keeping its partition between phases -------

def _child(conn, token: str, scenario, opts: Options) -> None:
    """A worker process: partitions in, ``("counts", ...)``, ids in, ``("done", ...)``."""
    try:
        while True:
            job = conn.recv()
            if job is None:
                return
            lo, hi, target = job
            sim, counts = simulate(token, scenario, opts, lo, hi)
            conn.send(("counts", counts))
            first_ids = conn.recv()
            if isinstance(target, dict):
                conn.send(("done", write_shard(token, scenario, opts, lo, hi, first_ids, sim, target)))
            else:
                conn.send(("done", stream_files(token, scenario, opts, lo, hi, first_ids, sim, target)))
            del sim
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        return
    except BaseException as e:  # noqa: BLE001 - handed to the coordinator, which fails the run
        try:
            conn.send(("error", _portable(e)))
        except Exception:  # noqa: BLE001 - the coordinator is gone
            pass


def _portable(e: BaseException) -> BaseException:
    """The worker's exception for the coordinator to raise: the same type where it pickles,
    with the worker's traceback as a note (a TrafficgenError stays one line)."""
    import pickle
    if isinstance(e, TrafficgenError):
        return TrafficgenError(str(e))
    tb = "".join(traceback.format_exception(e)).rstrip()
    try:
        e.add_note(f"--- in worker process {os.getpid()}:\n{tb}")
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - not picklable: its text
        return RuntimeError(f"a worker failed: {type(e).__name__}: {e}\n--- in the worker:\n{tb}")


def _start_method() -> str:
    """fork where it is safe, a process with no other Python thread (no lock another thread
    may hold: the pool starts before the sinks' writer threads): the children start at once,
    with every kernel this process has loaded. Else spawn, a fresh interpreter each (seconds).
    Native threads (OpenBLAS, Arrow) re-create their pools after a fork."""
    if "fork" in mp.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "spawn"


class LocalPool:
    """``workers`` processes; partitions handed out in order, each worker taking the next as it
    finishes one. The ids a partition waits for come from partitions handed out before it."""

    def __init__(self, workers: int, token: str, scenario, opts: Options):
        ctx = mp.get_context(_start_method())
        self.procs, self.conns = [], []
        for _ in range(workers):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_child, args=(child, token, scenario, opts), daemon=True,
                            name="trafficgen-worker")
            with warnings.catch_warnings():  # Python 3.12+ counts the native threads too
                warnings.simplefilter("ignore", DeprecationWarning)
                p.start()
            child.close()
            self.procs.append(p)
            self.conns.append(parent)

    limit = 1 << 62  # jobs with an index below it may be handed out (moved on by the merge)

    def events(self, jobs: list, ids: "Ids") -> Iterator[tuple[int, dict]]:
        """Run ``jobs`` (lo, hi, target), handed out in order below ``self.limit``: yields
        ``(job, result)`` as each ends. A thread of this process hands out the jobs and the ids
        while the caller merges, so the workers never wait for the merge."""
        out: queue.Queue = queue.Queue()
        self._stop = False
        thread = threading.Thread(target=self._coordinate, args=(jobs, ids, out), daemon=True,
                                  name="trafficgen-coordinator")
        thread.start()
        try:
            for _ in range(len(jobs)):
                kind, i, value = out.get()
                if kind == "error":
                    raise value
                yield i, value
        finally:
            self._stop = True
            thread.join()

    def _coordinate(self, jobs: list, ids: "Ids", out: queue.Queue) -> None:
        try:
            self._hand_out(jobs, ids, out)
        except BaseException as e:  # noqa: BLE001 - raised in the caller's thread
            if not self._stop:
                out.put(("error", -1, e))

    def _hand_out(self, jobs: list, ids: "Ids", out: queue.Queue) -> None:
        free = list(range(len(self.conns)))
        job_of: dict[int, int] = {}
        waiting: dict[int, int] = {}  # worker -> its job, waiting for the jobs before it
        nxt = 0
        while (nxt < len(jobs) or job_of) and not self._stop:
            while free and nxt < min(len(jobs), self.limit):
                w = free.pop(0)
                self.conns[w].send(jobs[nxt])
                job_of[w] = nxt
                nxt += 1
            for w, i in list(waiting.items()):
                first = ids.report(i, None)
                if first is not None:
                    self.conns[w].send(first)
                    del waiting[w]
            ready = mp_wait([self.conns[w] for w in job_of], timeout=0.05) if job_of else \
                time.sleep(0.01) or []
            for w in list(job_of):
                conn = self.conns[w]
                if conn not in ready:
                    continue
                try:
                    kind, value = conn.recv()
                except (EOFError, OSError):
                    self._died(w, job_of[w])
                if kind == "error":
                    raise value
                i = job_of[w]
                if kind == "counts":
                    ids.report(i, value)
                    waiting[w] = i
                else:
                    del job_of[w]
                    free.append(w)
                    out.put(("done", i, value))

    def _died(self, w: int, i: int):
        self.procs[w].join(1)
        code = self.procs[w].exitcode
        raise TrafficgenError(f"worker process {w} died (exit code {code}) while generating "
                              f"partition {i}")

    def close(self, abort: bool = False) -> None:
        """Stop the workers: when they are done (``abort``: now, mid-partition)."""
        for conn in self.conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for p in self.procs:
            if abort:
                p.kill()
            p.join(2)
            if p.is_alive():
                p.kill()
                p.join(2)
        for conn in self.conns:
            conn.close()


# --- the merge ----------------------------------------------------------------------------------

def _mapped(path: str, dtype) -> np.ndarray:
    """A spool file as a read-only array, its pages mapped in one go (MAP_POPULATE: one fault
    per file, not one per page, for a file read once from start to end)."""
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                       prot=mmap.PROT_READ)
    return np.frombuffer(mm, dtype)


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
        arrays = {k: (_mapped(os.path.join(folder, k), PARTS[k]) if counts[k]
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
            self.rows = np.ascontiguousarray(self.rows[self.pos:]).copy()
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
        self.attrs.add(self.engine._flow_attrs(np.ascontiguousarray(s.flows)),
                       min(x.first_flow for x in self.open))
        s.flows = s.reqs = None  # the merge has them now

    def emit(self, bound: int | None) -> Iterator[Batch]:
        """Every batch of packets before ``bound`` (ns since the epoch; ``None``: all)."""
        t = time.perf_counter()
        limit = np.iinfo(np.int64).max if bound is None else bound
        parts = []
        for s in self.open:
            hi = s.n if bound is None else s.pos + int(np.searchsorted(s.ts[s.pos:], limit, "left"))
            if hi > s.pos:
                parts.append((s, s.pos, hi))
                s.pos = hi
        if len(parts) == 1:
            s, lo, hi = parts[0]
            ready = np.ascontiguousarray(s.rows[lo:hi])
        elif parts:
            ts = np.concatenate([s.ts[lo:hi] for s, lo, hi in parts])
            order = np.argsort(ts, kind="stable")  # ties: the earlier partition, lower flow ids
            where = np.empty(order.shape[0], np.int64)
            where[order] = np.arange(order.shape[0])  # each part's rows: their merged places
            ready = np.empty(order.shape[0], SCHED_DTYPE)
            a = 0
            for s, lo, hi in parts:  # one copy of each row, straight from its stream
                scatter_rows(s.rows[lo:hi].view(np.uint8), SCHED_DTYPE.itemsize,
                             where[a:a + hi - lo], ready.view(np.uint8))
                a += hi - lo
        else:
            ready = np.empty(0, SCHED_DTYPE)
        for s in self.open:
            if s.pos >= s.n:
                s.release()
            else:
                s.compact()
        self.open = [s for s in self.open if s.pos < s.n]
        flows = concat_rows(self.flows) if self.flows else np.empty(0, FLOW_DTYPE)
        reqs = concat_rows(self.reqs) if self.reqs else np.empty(0, REQUEST_DTYPE)
        self.flows, self.reqs = [], []
        self.merge_s += time.perf_counter() - t
        progress = self.duration_ns if bound is None else max(0, min(bound - self.start_ns,
                                                                     self.duration_ns))
        yield from self.engine._batches(ready, self.attrs, flows, reqs, progress)

    def close(self) -> None:
        for s in self.open:
            s.release()
        self.open = []


# --- the run ------------------------------------------------------------------------------------

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
                prev, c = self.first[-1], self.counts[len(self.first) - 1]
                self.first.append({k: prev[k] + c[k] for k in ID_KINDS})
            return self.first[i] if i < len(self.first) else None


def token_of(scenario) -> str:
    """A name for this run's scenario, unique to the run: what the workers cache its engine by."""
    import uuid
    return uuid.uuid4().hex


def _partitions(scenario, opts: Options) -> list[tuple[int, int]]:
    return Engine(scenario, frames=False, packets=False, window_ns=opts.window_ns).partitions()


def merged_batches(scenario, opts: Options, *, workers: int = 1, scheduler=None,
                   stats: dict | None = None, alloc=None) -> Iterator[Batch]:
    """The run's batches, as ``Engine`` gives them, simulated by ``workers`` local processes
    or on the Dask cluster at ``scheduler`` (an address or a ``distributed.Client``), framed
    here (``alloc(nbytes)``: the frame buffers). The workers start before this returns, so
    before the caller opens its sinks (and their threads)."""
    engine = Engine(scenario, frames=opts.frames, packets=opts.packets, window_ns=opts.window_ns,
                    batch_packets=opts.batch_packets, alloc=alloc)
    parts = engine.partitions()
    backend = _Backend(scenario, opts, workers, scheduler)
    return _merged(scenario, parts, backend, Merger(engine, scenario.start_ns,
                                                    scenario.duration_ns), stats)


SHM_SPOOL_MIN_FREE = 2 << 30


def spool_dir() -> str | None:
    """Where local workers spool their rows: ``TMPDIR`` if set, else /dev/shm when it has room
    (memory, no disk writes; about 55 bytes a packet of the partitions in flight), else the
    system's temporary folder."""
    if "TMPDIR" in os.environ:
        return None
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None
    return "/dev/shm" if st.f_bavail * st.f_frsize >= SHM_SPOOL_MIN_FREE else None


def _merged(scenario, parts, backend, merger: Merger, stats) -> Iterator[Batch]:
    spool = None if backend.remote else tempfile.mkdtemp(prefix="trafficgen-spool-",
                                                         dir=spool_dir())
    try:
        with backend:  # the workers are stopped before their spool goes
            ahead = AHEAD * backend.workers
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
                bound = scenario.start_ns + parts[nxt][0] if nxt < len(parts) else None
                yield from merger.emit(bound)
            yield from merger.emit(None)
    finally:
        merger.close()
        if spool is not None:
            shutil.rmtree(spool, ignore_errors=True)
        if stats is not None:
            stats.update(partitions=len(parts), workers=backend.workers,
                         merge_s=round(merger.merge_s, 3))


def write_shards(scenario, opts: Options, paths_of: Callable[[int], dict], *, workers: int = 1,
                 scheduler=None, progress: Callable | None = None) -> tuple[list[dict], int]:
    """Each partition into its own files (``paths_of(i)``): returns each one's counts and the
    number of workers that ran."""
    check_shards(scenario)
    parts = _partitions(scenario, opts)
    out: list[dict | None] = [None] * len(parts)
    with _Backend(scenario, opts, workers, scheduler) as backend:
        jobs = [(lo, hi, paths_of(i)) for i, (lo, hi) in enumerate(parts)]
        ahead = AHEAD * backend.workers
        backend.limit = ahead
        done = 0
        for i, result in backend.events(jobs, Ids(len(jobs))):
            out[i] = result
            while done < len(out) and out[done] is not None:
                done += 1
            backend.limit = done + ahead
            if progress is not None:
                hi = parts[done][0] if done < len(parts) else scenario.duration_ns
                progress(max(0, min(hi, scenario.duration_ns)), scenario.duration_ns)
        return out, backend.workers


class _Backend:
    """Local processes, or a Dask cluster: ``events(jobs, kind)`` yields ``(job, result)``."""

    def __init__(self, scenario, opts: Options, workers: int, scheduler):
        self.scenario, self.opts = scenario, opts
        self.token = token_of(scenario)
        self.remote = scheduler is not None
        self.pool = self.client = None
        self._limit = 1 << 62
        self.own_client = False
        if self.remote:
            self.client, self.own_client = _dask_client(scheduler)
            self.workers = max(1, sum(w.get("nthreads", 1) for w in
                                      self.client.scheduler_info()["workers"].values()))
        else:
            self.workers = workers
            if workers > 1:
                self.pool = LocalPool(workers, self.token, scenario, opts)

    @property
    def limit(self) -> int:
        """Jobs below this index may run (the merge moves it on; the pool sees it at once)."""
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._limit = value
        if self.pool is not None:
            self.pool.limit = value

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.pool is not None:
            self.pool.close(abort=exc_type is not None)
        if self.own_client:
            self.client.close()
        return False

    def events(self, jobs: list, ids: "Ids") -> Iterator[tuple[int, dict]]:
        if self.pool is not None:
            yield from self.pool.events(jobs, ids)
            return
        if self.client is not None:
            yield from self._dask_events(jobs, ids)
            return
        for i, (lo, hi, target) in enumerate(jobs):  # one worker: this process
            sim, counts = simulate(self.token, self.scenario, self.opts, lo, hi)
            first = ids.report(i, None)
            ids.report(i, counts)
            if isinstance(target, dict):
                yield i, write_shard(self.token, self.scenario, self.opts, lo, hi, first, sim, target)
            else:
                yield i, stream_files(self.token, self.scenario, self.opts, lo, hi, first, sim, target)

    def _dask_events(self, jobs: list, ids: Ids):
        import operator
        client = self.client
        sc = client.scatter(self.scenario, broadcast=True)
        sims, counts, builds = {}, {}, {}
        sub = built = 0
        try:
            for i in range(len(jobs)):
                while sub < min(len(jobs), max(self.limit, i + 1)):
                    lo, hi, _ = jobs[sub]
                    both = client.submit(simulate, self.token, sc, self.opts, lo, hi, pure=False)
                    sims[sub] = client.submit(operator.getitem, both, 0, pure=False)
                    counts[sub] = client.submit(operator.getitem, both, 1, pure=False)
                    del both
                    sub += 1
                while built < sub:
                    first = ids.report(built, None)
                    if first is None:
                        ids.report(built - 1, counts.pop(built - 1).result())
                        continue
                    lo, hi, target = jobs[built]
                    if isinstance(target, dict):
                        builds[built] = client.submit(write_shard, self.token, sc, self.opts, lo,
                                                      hi, first, sims.pop(built), target, pure=False)
                    else:
                        builds[built] = client.submit(stream_arrays, self.token, sc, self.opts,
                                                      lo, hi, first, sims.pop(built), pure=False)
                    built += 1
                result = builds.pop(i).result()
                yield i, result
        finally:
            for f in (*sims.values(), *counts.values(), *builds.values()):
                f.cancel()


def _dask_client(scheduler):
    try:
        from distributed import Client
    except ImportError:
        raise TrafficgenError("--scheduler needs Dask: pip install 'trafficgen[dask]'") from None
    if isinstance(scheduler, Client):
        return scheduler, False
    try:
        return Client(scheduler, timeout="10s"), True
    except (OSError, TimeoutError) as e:
        raise TrafficgenError(f"--scheduler {scheduler}: no Dask scheduler answers there ({e})") from None
