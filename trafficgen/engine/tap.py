"""The tap's link: frames of every flow the capture sees share it (``kernels.taplink``).

``TapLink`` runs the pass over the engine's time-ordered stream, piece by piece as the engine
emits it (alone or merged from partitions), carrying the packets it cannot settle yet; the
packets come out in (time, flow id, packet order), the same whatever the pieces, the window,
the batch size or the number of workers.

Its rate is the slowest link any class seen at the capture has at the tap's end (clients:
their topology's ``bandwidth``; servers: ``hosts.fabric_bandwidth``): the link every frame
there crosses. The flow and request tables keep the times the flows' transport gives (a
frame's time as it reaches the tap's link); a frame that waits for the link is seen that much
later in the capture and the packet table.
"""
from __future__ import annotations

import numpy as np

from trafficgen.kernels import taplink as kt
from trafficgen.schema import SCHED_DTYPE, concat_rows, take_rows

STATE_COLS = ("tq_new0", "tq_new1", "tq_orig0", "tq_orig1")  # per flow, in ``FlowAttrs``


def tap_ns_per_byte(scenario) -> float | None:
    """ns per byte of the tap's link (None: no class is seen at this capture point)."""
    rates = []
    for cls in scenario.params:
        side = scenario.topology.side(cls)
        if side is None:
            continue
        rates.append(scenario.topology_of(cls).bandwidth_bps if side == 0
                     else scenario.hosts.fabric_bandwidth)
    return 8e9 / min(rates) if rates else None


def state_columns(n: int) -> dict:
    """The pass's per-flow columns for ``n`` new flows (nothing queued yet)."""
    return {k: np.full(n, kt.NONE, np.int64) for k in STATE_COLS}


class TapLink:
    """The pass's state between pieces: the link's next free time per direction, the packets
    carried (their original times and where the pass left them)."""

    def __init__(self, ns_per_byte: float):
        self.ns_per_byte = ns_per_byte
        self.busy = np.full(2, kt.NONE, np.int64)
        self.frac = np.zeros(2, np.float64)
        self.counter = np.zeros(1, np.int64)
        self.carry = np.empty(0, SCHED_DTYPE)
        self.c_status = self.c_dep = self.c_seq = np.empty(0, np.int64)

    def min_flow(self) -> int | None:
        """The lowest flow id a carried packet has (its flow's attributes must stay)."""
        return int(self.carry["flow_id"].min()) if self.carry.shape[0] else None

    def queue(self, ready: np.ndarray, attrs, bound: int | None) -> np.ndarray:
        """The packets of ``ready`` (original times before ``bound``, ns since the epoch;
        None: the stream's last piece) and those carried, as the tap sees them: those that
        nothing still to come can precede, in order, their ``ts_ns`` the link's."""
        final = bound is None
        if ready.shape[0] == 0 and self.carry.shape[0] == 0:
            return ready
        n_c = self.carry.shape[0]
        # the pass writes the times the link gives into the rows: the caller's, which it reads
        # no more, unless they are read-only (a mapped spool)
        rows = concat_rows([self.carry, ready]) if n_c else \
            (ready if ready.flags.writeable else concat_rows([ready, ready[:0]]))
        n = rows.shape[0]
        status = np.zeros(n, np.int64)  # (a new row's dep and seq are set when it is queued)
        dep, seq = np.empty(n, np.int64), np.empty(n, np.int64)
        status[:n_c], dep[:n_c], seq[:n_c] = self.c_status, self.c_dep, self.c_seq
        a = attrs.cols
        last_new = np.stack((a["tq_new0"], a["tq_new1"]), axis=1)
        last_orig = np.stack((a["tq_orig0"], a["tq_orig1"]), axis=1)
        out = np.empty(n, np.int64)
        k, in_order = kt.tap_queue(
            rows, np.int64(attrs.base), np.ascontiguousarray(a["side"]), float(self.ns_per_byte),
            status, dep, seq, np.int64(0 if final else bound), final, last_new, last_orig,
            self.busy, self.frac, self.counter, out)
        for col, d in (("tq_new", last_new), ("tq_orig", last_orig)):
            a[f"{col}0"][:] = d[:, 0]
            a[f"{col}1"][:] = d[:, 1]
        order = out[:k]
        if k < n:
            left = np.flatnonzero(status != 2)  # in the stream's order: each flow's stays in order
            self.carry = take_rows(rows, left)  # (original times: the pass reads them again)
            self.c_status, self.c_dep, self.c_seq = status[left], dep[left], seq[left]
        else:
            self.carry = rows[:0].copy()
            self.c_status = self.c_dep = self.c_seq = np.empty(0, np.int64)
        # (the pass has set the times of the rows out to the link's)
        return rows[:k] if in_order else take_rows(rows, order)  # (in order: no wait reordered)
