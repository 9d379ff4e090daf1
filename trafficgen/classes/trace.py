"""Trace-driven models: one request per trace row, at its time, with its token counts.

``scenario.trace`` (set by ``trafficgen.tracegen``) maps each class the trace drives to its
rows: ``t`` (int64 ns from the capture start, sorted), ``prompt``, ``output`` and optionally
``session``, ``client`` and ``cached``. Everything else comes from the scenario's model, drawn
from keys of (seed, class, session index) of their own, so a run is deterministic and a
normal run is untouched.

Chat-shaped classes: rows sharing a ``session`` are the turns of one session (in time order),
else each row is a session of one turn. A turn within ``keepalive`` of the one before reuses
its connection, else it opens a new one. Every request is sent at its row's time exactly:
its connection opens early enough that the TCP and TLS handshakes are done by then (twice the
path's RTT plus the handshake's bytes, the hosts' handshake delays at their longest and a 2 ms
margin), and the upload is ready at the row's
time (``W_ABS``); at a server-side tap the upload leaves half an RTT early so it is *seen* at
the row's time. A request table's ``start_ns`` is then the row's time at every tap.
A turn due while the previous reply still streams is sent at its time (the replies queue, as
streams on one HTTP/2 connection do). The trace's ``client`` (mod the class's client count)
replaces the drawn client address; path RTTs stay the drawn ones. Images are not added.

``kv_transfer``: one transfer per row starting at the row's time, of the prompt's uncached
tokens: the prompt minus the row's cached prefix (Mooncake hash_ids), or as the scenario's
prefix-cache model draws it where the trace has none.
"""
from __future__ import annotations

import math

import numpy as np

from trafficgen.kernels import chat as kc
from trafficgen.kernels import trace as kt
from trafficgen.kernels.rng import derive_range, key_of
from trafficgen.kernels.tcp import W_ABS, W_REQ, WF_DELAY, WF_FLAGS, WF_REQ

from .chat import CLASSES as CHAT_CLASSES
from .chat import ChatModel
from .common import EpochSchedule, offsets
from .kv_transfer import KVTransferModel

TRACE_ID = 0x7ACE  # the trace sessions' keys: key_of(seed, class, TRACE_ID), then the index
HANDSHAKE_MARGIN_NS = 2_000_000
HANDSHAKE_BYTES = 8_000  # ClientHello, the server's flight and tickets, Finished (upper bound)


def trace_models(scenario, layouts_per_model: int) -> list:
    """The models of a trace-driven scenario, in generation order (``make_models``)."""
    out = []
    for cls in scenario.classes:
        if cls not in scenario.trace:
            continue
        if cls in CHAT_CLASSES:
            out.append(TraceChatModel(scenario, cls, layouts_per_model * len(out)))
        elif cls == "kv_transfer":
            out.append(TraceKVModel(scenario, cls, layouts_per_model * len(out)))
    return out


class TraceChatModel(ChatModel):
    """A chat-shaped class whose sessions, turn times and tokens are the trace's rows."""

    def __init__(self, scenario, cls: str = "chat", layout_base: int = 0):
        super().__init__(scenario, cls, layout_base)
        rows = scenario.trace[cls]
        t = rows["t"]
        if rows.get("session") is not None:  # group by session, sessions by first row, turns by time
            sid = rows["session"]
            order = np.lexsort((t, sid))
            first = np.ones(order.shape[0], bool)
            first[1:] = sid[order][1:] != sid[order][:-1]
            starts = np.flatnonzero(first)
            lens = np.diff(np.append(starts, order.shape[0]))
            by_time = np.argsort(t[order][starts], kind="stable")
            blocks = [order[starts[i]:starts[i] + lens[i]] for i in by_time]
            self.turn_rows = np.concatenate(blocks) if blocks else np.empty(0, np.int64)
            s_turns = lens[by_time]
        else:
            self.turn_rows = np.arange(t.shape[0])
            s_turns = np.ones(t.shape[0], np.int64)
        self.s_turn0 = offsets(s_turns)
        self.s_turns = s_turns
        self.t_at = t[self.turn_rows]
        self.t_prompt = rows["prompt"][self.turn_rows]
        self.t_out = rows["output"][self.turn_rows]
        client = rows.get("client")
        self.s_trace_client = None if client is None else client[self.turn_rows][self.s_turn0]
        n = s_turns.shape[0]
        self.s_key = np.empty(n, np.uint64)
        derive_range(key_of(scenario.seed, self.class_id, TRACE_ID), 0, self.s_key)
        s_rtt = np.empty(n, np.int64)
        kt.paths(self.s_key, self.paths, s_rtt)
        self.s_rtt = s_rtt
        first_t = self.t_at[self.s_turn0] if n else np.empty(0, np.int64)
        s_open = first_t - self.lead(s_rtt)
        self.by_open = np.argsort(s_open, kind="stable")
        self.s_open = s_open[self.by_open]
        self.warmup_ns = int(max(0, -int(self.s_open[0]))) if n else 0
        # the trace gives no image counts: its turns draw none
        self.trace_tables = self.tables._replace(images=np.zeros_like(self.dists["images"]))

    def lead(self, rtt: np.ndarray) -> np.ndarray:
        """How long before its first request a connection opens (ns): the handshakes' two RTTs,
        their bytes at the access link, a margin; at a server-side tap also the upload's
        one-way delay (it leaves that much before it is seen)."""
        ns_per_byte = 8e9 / self.topo.bandwidth_bps
        lead = 2 * rtt + HANDSHAKE_MARGIN_NS + int(HANDSHAKE_BYTES * ns_per_byte) + self.hosts_lead()
        return lead + (rtt // 2 if self.side == 1 else 0)

    def hosts_lead(self) -> int:
        """The hosts' handshake delays at their longest (each distribution's max, or its
        1 - 1e-6 quantile if it has none): the client's TLS setup and Finished, the server's
        key exchange, ML-KEM and signature (kernels/tlsvar.py), so no request waits on them."""
        p = self.params
        names = ("client_hello_delay", "client_finished_delay", "server_kex_delay",
                 "server_mlkem_delay", "server_sign_delay")
        return int(sum(d.hi if math.isfinite(d.hi) else d.quantile(1 - 1e-6)
                       for d in (getattr(p, n) for n in names)))

    def window(self, t0: int, t1: int) -> EpochSchedule:
        """Every flow, request and packet of the trace's sessions whose first connection
        opens in [t0, t1)."""
        lo, hi = np.searchsorted(self.s_open, [t0, t1], "left")
        sess = self.by_open[lo:hi]
        n = sess.shape[0]
        s_key = self.s_key[sess]
        s_turns = self.s_turns[sess]
        turn0 = offsets(s_turns)
        T = int(s_turns.sum())  # the sessions' turns, in order: each one's run from its turn0
        rows = np.repeat(self.s_turn0[sess] - turn0, s_turns) + np.arange(T)
        t = {"at": self.t_at[rows], "prompt": self.t_prompt[rows], "out": self.t_out[rows]}
        for k in ("think", "ttft", "reason", "images"):
            t[k] = np.empty(T, np.int64)
        t_keep, t_new = np.empty(T, np.bool_), np.empty(T, np.bool_)
        s_kept, s_conns, s_writes = (np.empty(n, np.int64) for _ in range(3))
        kt.plan(s_key, turn0, self.trace_tables, kc.Turns(**t, keep=t_keep, new=t_new),
                s_kept, s_conns, s_writes)
        trace_client = None if self.s_trace_client is None else self.s_trace_client[sess]

        def adjust(s_client, r, c, wd):
            # requests at their rows' times; every connection opens on the clock, early enough
            when = t["at"][turn0[r["session"]] + r["turn"]]
            if self.side == 1:
                when = when - c["rtt"][r["conn"]] // 2
            conn_first = np.full(c["session"].shape[0], -1, np.int64)
            conn_first[r["conn"][::-1]] = np.arange(r["conn"].shape[0])[::-1]
            c["open_dep"][:] = -1
            c["open_at"][:] = when[conn_first] - (self.lead(c["rtt"]) - (c["rtt"] // 2 if self.side == 1 else 0))
            req = np.flatnonzero(wd[:, WF_FLAGS] & W_REQ)
            wd[req, WF_FLAGS] |= W_ABS
            wd[req, WF_DELAY] = when[wd[req, WF_REQ]]
            if trace_client is not None:
                s_client[:] = trace_client % self.topo.client_count

        return self.build(s_key, turn0, t, t_keep, t_new, s_kept, s_conns, s_writes, adjust)


class TraceKVModel(KVTransferModel):
    """KV-cache transfers, one per trace row at its time."""

    def __init__(self, scenario, cls: str = "kv_transfer", layout_base: int = 0):
        super().__init__(scenario, cls, layout_base)
        rows = scenario.trace[cls]
        self.t, self.prompt = rows["t"], rows["prompt"]
        cached = rows.get("cached")
        self.cached = np.full(self.t.shape[0], -1, np.int64) if cached is None else cached
        self.trace_key = key_of(scenario.seed, self.class_id, TRACE_ID)

    def window(self, t0: int, t1: int) -> EpochSchedule:
        lo, hi = (int(x) for x in np.searchsorted(self.t, [t0, t1], "left"))
        keys = np.empty(hi - lo, np.uint64)
        derive_range(self.trace_key, lo, keys)
        d = self.draws(keys)  # the servers (its prompt and uncached draws are replaced)
        p = self.params
        d["prompt"] = self.prompt[lo:hi].copy()
        kt.kv_uncached(keys, d["prompt"], self.cached[lo:hi], p.shared_prefix_tokens,
                       p.cache_hit_prob, self.dists["hit_uncached_tokens"], d["uncached"])
        return self.build(keys, self.t[lo:hi], d)

