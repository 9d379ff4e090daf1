"""More than one sending thread (``tx_threads``): each flow keeps to one lane, so its frames
leave in order, and every lane paces against the same absolute deadlines, so the schedule
holds across them.

Per chunk, a numba kernel gives each frame its lane (a symmetric hash of the flow: both
directions in one lane); lane 0 runs on the calling thread (with the progress, pace and
real-time checks of ``Transmitter.run_slices``), the others on threads of their own, each
with its own socket and counters, merged into the Transmitter's after every slice. Order
across flows is not kept (nor needed by a device under test: connections are independent).
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from trafficgen.kernels import dut as kd
from trafficgen.kernels import txsend as kt

MAXED = (kt.A_MAX_ERR, kt.A_LAST_NS, kt.A_LATE_NS, kt.A_WAKE, kt.A_ERRNO, kt.A_FAILS)


def _ordinary_policy() -> None:
    try:  # lanes rest at the ordinary policy: a busy real-time thread would be throttled
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (OSError, AttributeError):
        pass


class Budget:
    """A lane thread's real-time policy, as the calling thread's (``Transmitter``): SCHED_FIFO
    while the run is real-time, rested at the ordinary policy for RT_REST_NS once busy (not
    asleep) for RT_BUSY_NS of the last second, so the kernel never throttles it."""

    def __init__(self, limits: tuple[int, int, int, int]):
        self.on, self.rest_until, self.samples, self.t0 = False, 0, [], time.monotonic_ns()
        self.priority, self.busy_ns, self.rest_ns, self.window_ns = limits  # Transmitter.RT_LIMITS

    def tick(self, wanted: bool, slept_ns: int) -> None:
        now = time.monotonic_ns()
        if not wanted or not self.on:
            if wanted and now >= self.rest_until:
                try:
                    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.priority))
                    self.on, self.samples = True, []
                except OSError:
                    pass
            return
        busy = (now - self.t0) - slept_ns
        self.samples.append((now, busy))
        while len(self.samples) > 1 and self.samples[1][0] <= now - self.window_ns:
            self.samples.pop(0)
        if busy - self.samples[0][1] > self.busy_ns:
            _ordinary_policy()
            self.on, self.rest_until = False, now + self.rest_ns


class Lanes:
    """``count`` lanes over ``tx``'s interfaces; ``socks``: one open socket per extra lane."""

    def __init__(self, tx, count: int, socks: list):
        self.count, self.socks = count, socks
        ports = tx.pacc.shape[0]
        self.states = []
        for _ in range(count):
            msgs = np.zeros_like(tx.msgs)
            iovs = np.zeros_like(tx.iovs)
            kt.init_msgs(msgs, iovs)
            self.states.append(kt.TxState(msgs, iovs, np.zeros(2, np.int64),
                                          np.zeros((ports, kt.HIST_BINS), np.int64),
                                          np.zeros(kt.ACC_SIZE, np.int64),
                                          np.zeros((ports, kt.P_SIZE), np.int64), tx.addrs))
        self.pool = ThreadPoolExecutor(count - 1, thread_name_prefix="trafficgen-lane",
                                       initializer=_ordinary_policy)
        self.lane = np.zeros(0, np.int64)
        self.budgets = threading.local()

    def send(self, tx, buf, off, length, sched, port) -> bool:
        n = off.shape[0]
        if self.lane.shape[0] < n:
            self.lane = np.empty(n, np.int64)
        lane = self.lane[:n]
        kd.flow_lanes(buf, off, length, self.count, lane)
        frames = []
        for w in range(self.count):
            k = np.flatnonzero(lane == w)
            frames.append(kt.Frames(buf, off[k], length[k], sched[k], port[k]))
        jobs = [self.pool.submit(self._lane, tx, w, frames[w]) for w in range(1, self.count)]
        try:
            ok = tx.run_slices(tx.iface.sock.fileno(), frames[0], self.states[0],
                               after=lambda: self.merge(tx))
        except BaseException:
            tx.abort()
            raise
        finally:
            stops = [j.result() for j in jobs]
            self.merge(tx)
        for stop in stops:
            if stop == "failing":
                tx.check_failing()
            if stop and ok:
                tx.stopped_by, ok = tx.stopped_by or stop, False
        return ok

    def _lane(self, tx, w: int, frames: kt.Frames) -> str | None:
        i, n, fd = 0, frames.off.shape[0], self.socks[w - 1].fileno()
        budget = getattr(self.budgets, "b", None)
        if budget is None:
            budget = self.budgets.b = Budget(tx.RT_LIMITS)
        while i < n:
            budget.tick(tx.realtime_on(), int(self.states[w].acc[kt.A_SLEPT]))
            if tx.aborted():
                return "abort"
            i, status = kt.send_paced(fd, frames, i, n, tx.pacing(), self.states[w])
            if status == kt.ST_STOP:
                return "duration"
            if status == kt.ST_FAILING:
                return "failing"
        return None

    def merge(self, tx) -> None:
        """The lanes' counters into the Transmitter's (sums; maxima; the first send)."""
        accs = np.stack([s.acc for s in self.states])
        a = accs.sum(axis=0)
        for f in MAXED:
            a[f] = accs[:, f].max()
        first = accs[:, kt.A_FIRST_NS]
        a[kt.A_FIRST_NS] = first[first > 0].min() if (first > 0).any() else 0
        a[kt.A_SLEPT] = accs[0, kt.A_SLEPT]  # the calling thread's (its real-time budget)
        tx.acc[:] = a
        tx.hist[:] = sum(s.hist for s in self.states)
        paccs = np.stack([s.pacc for s in self.states])
        p = paccs.sum(axis=0)
        p[:, kt.P_MAX_ERR] = paccs[:, :, kt.P_MAX_ERR].max(axis=0)
        p[:, kt.P_LAST_NS] = paccs[:, :, kt.P_LAST_NS].max(axis=0)
        firsts = np.where(paccs[:, :, kt.P_FIRST_NS] > 0, paccs[:, :, kt.P_FIRST_NS], np.iinfo(np.int64).max)
        p[:, kt.P_FIRST_NS] = np.where(firsts.min(axis=0) == np.iinfo(np.int64).max, 0, firsts.min(axis=0))
        tx.pacc[:] = p

    def close(self) -> None:
        for _ in range(self.count - 1):  # each lane thread back at the ordinary policy
            self.pool.submit(_ordinary_policy)
        self.pool.shutdown(wait=True)
        for s in self.socks:
            s.close()
