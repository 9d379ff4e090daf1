"""Python side of the chat flow class: one generation epoch to a schedule.

Everything random comes from keys derived from (seed, class, epoch, session), so an epoch can
be generated alone, in any order, in any process. The heavy lifting is in ``kernels.chat``
(sessions -> writes) and ``kernels.tcp`` (writes -> packets).
"""
from __future__ import annotations

import numpy as np

from ..config import Scenario
from ..kernels import chat as kc
from ..kernels.tcp import WF_COLS
from ..kernels.rng import derive, derive_range, key_of
from ..schema import CLASS_CODE
from ..tls import Templates, client_hello, is_hybrid, server_hello_prefix
from .common import EpochSchedule, schedule_from_sim

CLASS = "chat"
CLASS_ID = CLASS_CODE[CLASS]
EPOCH_ID_OFFSET = 1 << 20  # epochs may be negative (warm-up); their key ids may not


class ChatModel:
    """Prepared parameters of the chat class for one scenario."""

    def __init__(self, scenario: Scenario):
        p = scenario.chat
        topo = scenario.topology
        self.scenario = scenario
        self.key = key_of(scenario.seed, CLASS_ID)
        self.paths_key = key_of(scenario.seed, 0xFFFF)  # path RTTs are shared by all classes
        self.session_rate_per_ns = p.rate / p.turns / 1e9
        self.dists = {name: getattr(p, name).params() for name in
                      ("think_time", "prompt_tokens", "output_tokens", "ttft", "itl", "stall")}
        self.rtt_params = topo.rtt.params()
        self.templates = Templates(p.client_hello_bytes, p.server_flight_bytes)
        sh_len = len(server_hello_prefix(is_hybrid(client_hello(p.client_hello_bytes)[0]))[0])
        self.flight_wire = sh_len + int(kc.tls_wire(max(1, p.server_flight_bytes - sh_len - 22)))
        self.nominal_rtt = int(topo.rtt.quantile(0.5))
        # Conversations last minutes: start this many epochs early so the capture opens in
        # steady state (sessions in progress at t=0 open their connection at their next turn).
        self.warmup_epochs = 10
        self.ticket_wire = int(kc.tls_wire(p.session_ticket_bytes - 22)) if p.session_ticket_bytes >= 23 else 0

    def epoch(self, e: int, epoch_ns: int) -> EpochSchedule:
        """Sessions that start in epoch ``e`` (negative: warm-up before the capture starts)."""
        sc, p, topo = self.scenario, self.scenario.chat, self.scenario.topology
        t0 = e * epoch_ns
        t1 = min((e + 1) * epoch_ns, sc.duration_ns)
        k_e = np.uint64(derive(self.key, e + EPOCH_ID_OFFSET))
        expect = self.session_rate_per_ns * max(t1 - t0, 0)
        starts = np.empty(int(expect + 10 * np.sqrt(expect) + 64), np.int64)
        n = kc.arrivals(np.uint64(derive(k_e, 0)), t0, t1, self.session_rate_per_ns, starts)
        if n > starts.shape[0]:
            starts = np.empty(n, np.int64)
            kc.arrivals(np.uint64(derive(k_e, 0)), t0, t1, self.session_rate_per_ns, starts)
        starts = starts[:n]
        s_key = np.empty(n, np.uint64)
        derive_range(k_e, 1, s_key)
        s_turns = np.empty(n, np.int64)
        kc.turn_counts(s_key, p.turns, s_turns)
        turn0 = _offsets(s_turns)
        T = int(s_turns.sum())
        t = {k: np.empty(T, np.int64) for k in ("think", "prompt", "out", "ttft", "at")}
        t_keep, t_new = np.empty(T, np.bool_), np.empty(T, np.bool_)
        s_kept, s_conns, s_writes = (np.empty(n, np.int64) for _ in range(3))
        d = self.dists
        kc.plan(s_key, starts, turn0, 0, d["think_time"], d["prompt_tokens"], d["output_tokens"],
                d["ttft"], d["itl"], p.stall_prob, d["stall"], p.keepalive, p.tokens_per_chunk,
                1 if self.ticket_wire else 0, self.nominal_rtt,
                t["think"], t["prompt"], t["out"], t["ttft"], t["at"], t_keep, t_new,
                s_kept, s_conns, s_writes)
        R, C, W = int(s_kept.sum()), int(s_conns.sum()), int(s_writes.sum())
        s_client, s_server = np.empty(n, np.int64), np.empty(n, np.int64)
        r = {k: np.empty(R, np.int64) for k in ("session", "turn", "conn", "prompt", "output", "ttft")}
        c = {k: np.empty(C, np.int64) for k in ("session", "open_dep", "open_at", "rtt", "w0", "wn", "jitter")}
        c_isn, c_ipid = np.empty((C, 2), np.int64), np.empty((C, 2), np.int64)
        wd = np.empty((W, WF_COLS), np.int64)
        kc.fill(s_key, turn0, _offsets(s_kept), _offsets(s_conns), _offsets(s_writes),
                topo.client_count, len(topo.servers), self.paths_key, d["itl"], p.stall_prob,
                d["stall"], self.rtt_params, p.keepalive, p.tokens_per_chunk, p.bytes_per_token,
                p.request_overhead_bytes, p.chunk_overhead_bytes, p.client_hello_bytes,
                self.flight_wire, self.ticket_wire,
                t["think"], t["prompt"], t["out"], t["ttft"], t["at"], t_keep, t_new,
                s_client, s_server,
                r["session"], r["turn"], r["conn"], r["prompt"], r["output"], r["ttft"],
                c["session"], c["open_dep"], c["open_at"], c["rtt"], c_isn, c_ipid, c["w0"], c["wn"],
                c["jitter"], wd)
        return schedule_from_sim(sc, CLASS_ID, s_client, s_server, r, c, c_isn, c_ipid, wd)


def _offsets(counts: np.ndarray) -> np.ndarray:
    """Exclusive prefix sum: where each session's rows start."""
    out = np.zeros(counts.shape[0], np.int64)
    np.cumsum(counts[:-1], out=out[1:])
    return out
