"""The local pool: one process per worker, each keeping its partition between the two phases.

A coordinator thread of this process hands out the partitions in order (below ``limit``,
which the merge moves on) and their first ids once known, while the caller merges; it sleeps
in one blocking wait on the workers' pipes and a wake-up pipe of its own, written when the
limit moves or the run stops. A worker's error is raised in the caller's thread; a worker
that dies fails the run.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import threading
import traceback
import warnings
from multiprocessing.connection import wait as mp_wait
from typing import Iterator

from trafficgen.errors import TrafficgenError

from . import phases, spool
from .lifeline import close_fds, die_with_parent
from .malloc import tune_malloc


def default_workers() -> int:
    """The CPUs this process may run on (its affinity), or the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


WORKERS_PER_CPU = 4  # local workers a run may start per CPU it may run on
WORKER_BYTES = 256 << 20  # what a worker takes at least (numba, numpy, a partition's rows)


def max_workers() -> tuple[int, str]:
    """The most local workers a run may start, and why: 4 per CPU, and no more than the
    available memory holds at 256 MiB each (never fewer than 2)."""
    cpus = default_workers()
    n, why = WORKERS_PER_CPU * cpus, f"{WORKERS_PER_CPU} per CPU, {cpus} CPUs"
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return n, why
    if avail // WORKER_BYTES < n:
        n, why = avail // WORKER_BYTES, f"{WORKER_BYTES >> 20} MiB each, {avail >> 20} MiB available"
    return max(n, 2), why


def _child(conn, token: str, scenario, opts: phases.Options, coordinator: int = 0,
           inherited: tuple = ()) -> None:
    """A worker process: partitions in, ``("counts", ...)``, ids in, ``("done", ...)``. It dies
    with the ``coordinator`` (a parent-death signal), and first closes the ``inherited``
    descriptors of a fork it must not hold (so its pipe ends when the coordinator's end does)."""
    close_fds(inherited)
    if coordinator:
        die_with_parent(coordinator)
    tune_malloc(worker=True)
    try:
        while True:
            job = conn.recv()
            if job is None:
                return
            lo, hi, target = job
            sim, counts = phases.simulate(token, scenario, opts, lo, hi)
            conn.send(("counts", counts))
            first_ids = conn.recv()
            if isinstance(target, dict):
                conn.send(("done", phases.write_shard(token, scenario, opts, lo, hi, first_ids,
                                                      sim, target)))
            else:
                conn.send(("done", spool.stream_files(token, scenario, opts, lo, hi, first_ids,
                                                      sim, target)))
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

    def __init__(self, workers: int, token: str, scenario, opts: phases.Options):
        method = _start_method()
        ctx = mp.get_context(method)
        self.procs, self.conns = [], []
        for _ in range(workers):
            parent, child = ctx.Pipe()
            # a forked worker holds copies of every descriptor open here: the coordinator's ends
            # of the pipes (its own and the earlier workers') are closed in it at once; a
            # spawned one holds only the end passed to it
            inherited = tuple(c.fileno() for c in [*self.conns, parent]) if method == "fork" else ()
            p = ctx.Process(target=_child, args=(child, token, scenario, opts, os.getpid(), inherited),
                            daemon=True, name="trafficgen-worker")
            with warnings.catch_warnings():  # Python 3.12+ counts the native threads too
                warnings.simplefilter("ignore", DeprecationWarning)
                p.start()
            child.close()
            self.procs.append(p)
            self.conns.append(parent)
        # made after the workers start, so no forked worker holds it
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._limit = 1 << 62
        self._stop = False
        self._thread: threading.Thread | None = None

    @property
    def limit(self) -> int:
        """Jobs with an index below it may be handed out (moved on by the merge)."""
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._limit = value
        self._wake()

    def _wake(self) -> None:
        """Wake the coordinator thread from its wait (a byte down the wake-up pipe)."""
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):  # full: a wake-up is pending anyway; closed: gone
            pass

    def _drain(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def events(self, jobs: list, ids: phases.Ids) -> Iterator[tuple[int, dict]]:
        """Run ``jobs`` (lo, hi, target), handed out in order below ``self.limit``: yields
        ``(job, result)`` as each ends. A thread of this process hands out the jobs and the ids
        while the caller merges, so the workers never wait for the merge."""
        out: queue.Queue = queue.Queue()
        self._stop = False
        thread = self._thread = threading.Thread(target=self._coordinate, args=(jobs, ids, out),
                                                 daemon=True, name="trafficgen-coordinator")
        thread.start()
        try:
            for _ in range(len(jobs)):
                kind, i, value = out.get()
                if kind == "error":
                    raise value
                yield i, value
        finally:
            self._halt()

    def _halt(self) -> None:
        """Stop the coordinator thread and wait for it."""
        self._stop = True
        self._wake()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _coordinate(self, jobs: list, ids: phases.Ids, out: queue.Queue) -> None:
        try:
            self._hand_out(jobs, ids, out)
        except BaseException as e:  # noqa: BLE001 - raised in the caller's thread
            if not self._stop:
                out.put(("error", -1, e))

    def _hand_out(self, jobs: list, ids: phases.Ids, out: queue.Queue) -> None:
        free = list(range(len(self.conns)))
        job_of: dict[int, int] = {}
        waiting: dict[int, int] = {}  # worker -> its job, waiting for the jobs before it
        nxt = 0
        while (nxt < len(jobs) or job_of) and not self._stop:
            while free and nxt < min(len(jobs), self._limit):
                w = free.pop(0)
                self.conns[w].send(jobs[nxt])
                job_of[w] = nxt
                nxt += 1
            for w, i in list(waiting.items()):
                first = ids.report(i, None)
                if first is not None:
                    self.conns[w].send(first)
                    del waiting[w]
            # sleep until a worker reports (or dies), the limit moves or the run stops
            ready = mp_wait([self.conns[w] for w in job_of] + [self._wake_r])
            if self._wake_r in ready:
                self._drain()
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
        self._stop = True
        self._wake()
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
        if self._thread is not None:  # a run left mid-way: its thread sees the workers gone
            self._thread.join(2)
        for conn in self.conns:
            conn.close()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
