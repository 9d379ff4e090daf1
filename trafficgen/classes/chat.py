"""Python side of the chat flow class: the sessions that start in a time window, to a schedule.

Session arrivals are drawn per fixed block of the model's (``BLOCK_NS``); everything else
random comes from keys derived from (seed, class, block, session index), so any window of
sessions can be generated alone, in any order, in any process, with the same result. The heavy
lifting is in ``kernels.chat`` (sessions -> writes) and ``kernels.tcp`` (writes -> packets).
"""
from __future__ import annotations

import threading

import numpy as np

from trafficgen.config.arrivals import BLOCK_NS as ARRIVAL_BLOCK_NS
from trafficgen.config.scenario import Scenario
from trafficgen.kernels import chat as kc
from trafficgen.kernels import failures as kf
from trafficgen.kernels import tlsvar
from trafficgen.kernels.rng import derive_range, key_of
from trafficgen.kernels.tcp import WF_COLS, Conns
from trafficgen.kernels.writes import latest_in_blocks
from trafficgen.schema import CLASS_CODE

from .common import EpochSchedule, PlainPlan, SessionModel, TlsPlan, schedule_from_sim
from .common import offsets as _offsets

# flow classes with this shape (each has its own scenario section)
CLASSES = ("chat", "coding", "reasoning", "multimodal")
BLOCK_NS = ARRIVAL_BLOCK_NS  # arrivals are drawn per block: part of the model, not of the run


class ChatModel(SessionModel):
    """Prepared parameters of the chat class for one scenario."""

    def __init__(self, scenario: Scenario, cls: str = "chat", layout_base: int = 0):
        """``cls``: the flow class (its section of the scenario); ``layout_base``: where this
        model's TLS templates start in the engine's combined table (see ``Templates``)."""
        if cls not in CLASSES:
            raise ValueError(f"ChatModel serves {CLASSES}, not {cls!r}")
        p = getattr(scenario, cls)
        self.cls, self.class_id, self.params = cls, CLASS_CODE[cls], p
        self.layout_base = layout_base
        self.side = scenario.topology.side(cls) or 0  # the end of its connections seen
        topo = self.topo = scenario.topology_of(cls)
        self.scenario = scenario
        self.key = key_of(scenario.seed, self.class_id)
        self.paths_key = key_of(scenario.seed, 0xFFFF)  # path RTTs are shared by all classes
        self.levels_key = key_of(scenario.seed, self.class_id, 0xB0257)  # burst levels, all blocks
        self.session_rate_per_ns = p.rate / p.turns / 1e9
        self.dists = {name: getattr(p, name).params() for name in
                      ("think_time", "prompt_tokens", "output_tokens", "ttft", "itl", "stall",
                       "reasoning", "images", "image_bytes", "image_tokens")}
        self.rtt_params = topo.rtt_table()  # (first client of each site, its RTT distribution)
        self.tls = PlainPlan(scenario, cls, p) if p.plaintext else \
            TlsPlan(scenario, cls, p, [(p.sni, p.alpn)])
        self.templates, self.ticket_wire = self.tls.templates, self.tls.ticket
        self.flight_wire = int(self.tls.flight[0])  # per connection: kernels.tlsvar
        self.setup_writes = kc.setup_count(self.ticket_wire > 0, not p.plaintext)
        self.nominal_rtt = int(topo.rtt.quantile(0.5))
        self.mean_gap = int(round((1 - p.stall_prob) * p.itl.mean() + p.stall_prob * p.stall.mean()))
        # Conversations last minutes: start this early so the capture opens in steady state
        # (sessions in progress at t=0 open their connection at their next turn).
        self.warmup_ns = 10 * BLOCK_NS
        hosts = self.tls.hosts  # (plaintext: no TLS, nothing to resume)
        self.history = ClientHistory(self, int(hosts.lifetime)) \
            if not p.plaintext and hosts.resumption > 0 else None
        d = self.dists
        self.tables = kc.ChatParams(
            think=d["think_time"], prompt=d["prompt_tokens"], output=d["output_tokens"],
            ttft=d["ttft"], reason=d["reasoning"], images=d["images"], itl=d["itl"],
            stall=d["stall"], image_bytes=d["image_bytes"], image_tokens=d["image_tokens"],
            stall_prob=p.stall_prob, mean_gap=self.mean_gap, keepalive_every=p.keepalive_every,
            keepalive=p.keepalive, tokens_per_chunk=p.tokens_per_chunk,
            setup_writes=self.setup_writes, nominal_rtt=self.nominal_rtt,
            bytes_per_token=p.bytes_per_token, req_overhead=p.request_overhead_bytes,
            chunk_overhead=p.chunk_overhead_bytes, hello_wire=int(self.tls.hello[0]),
            flight_wire=self.flight_wire, ticket_wire=self.ticket_wire)
        self.failures = kf.Failures(
            cancel=float(p.cancel), timeout=np.int64(p.timeout), rate_limited=float(p.rate_limited),
            server_error=float(p.server_error), server_reset=float(p.server_reset),
            retry_after=np.int64(p.retry_after), max_retries=np.int64(p.max_retries))
        self.failing = any((p.cancel, p.timeout, p.rate_limited, p.server_error, p.server_reset))
        self.paths = kc.Paths(topo.client_count, topo.client_skew, len(topo.servers),
                              self.paths_key, *self.rtt_params)
        # a share of the requests fan out to RAG lookups, where retrievals are seen
        self.fanout = None
        if p.retrieval_share > 0 and scenario.topology.side("rag") is not None:
            from .fanout import Fanout
            self.fanout = Fanout(scenario, cls, layout_base)
            # its connections' variants follow the class's own in the class's table slot
            self.fanout.chain.variant_first = self.tls.extend(self.fanout.chain.tls)
            self.templates = self.tls.templates
        self.several = self.fanout is not None  # the engine then goes block by block

    def window(self, t0: int, t1: int) -> EpochSchedule:
        """Every flow, request and packet of the sessions that start in [t0, t1) (ns from the
        capture start; negative: warm-up before it)."""
        p = self.params
        s_key, starts = self.sessions(t0, t1)
        n = s_key.shape[0]
        s_turns = np.empty(n, np.int64)
        kc.turn_counts(s_key, p.turns, s_turns)
        turn0 = _offsets(s_turns)
        T = int(s_turns.sum())
        t = {k: np.empty(T, np.int64) for k in ("think", "prompt", "out", "ttft", "reason", "images", "at")}
        t_keep, t_new = np.empty(T, np.bool_), np.empty(T, np.bool_)
        s_kept, s_conns, s_writes = (np.empty(n, np.int64) for _ in range(3))
        s_h1, o = self.h1_sessions(s_key), outcomes(T)
        kc.plan(s_key, starts, turn0, 0, self.tables, kc.Turns(**t, keep=t_keep, new=t_new),
                s_kept, s_conns, s_writes, self.failures, s_h1, o)
        prior = self.history.prior(s_key, starts) if self.history is not None else None
        ep = self.build(s_key, turn0, t, t_keep, t_new, s_kept, s_conns, s_writes, prior=prior,
                        s_h1=s_h1, o=o)
        return [ep, self.fanout.lookups(s_key, ep)] if self.fanout is not None else ep

    def h1_sessions(self, s_key) -> np.ndarray:
        """Per session, 1 if its connections speak HTTP/1.1 (a cancel resets them): plaintext,
        or a TLS profile without h2 (``tlsvar.assign``'s draw); zeros when nothing fails."""
        n = s_key.shape[0]
        if not self.failing or self.params.plaintext:
            return np.full(n, int(bool(self.params.plaintext)), np.int64)
        clients, out = np.empty(n, np.int64), np.empty(n, np.int64)
        kc.session_clients(np.ascontiguousarray(s_key, np.uint64), self.paths, clients)
        tls = self.tls
        h2 = np.ascontiguousarray(tls.var[:tls.cum_w.shape[0], tlsvar.VA_H2], np.int64)
        kf.h1_clients(clients, tls.key, tls.cum_w, h2, out)
        return out

    def build(self, s_key, turn0, t, t_keep, t_new, s_kept, s_conns, s_writes,
              adjust=None, prior=None, s_h1=None, o=None) -> EpochSchedule:
        """Requests, connections and writes of planned sessions (``kc.plan``'s output), through
        the transport kernel to a schedule. ``adjust(s_client, r, c, wd)``, if given, may change
        the connections and writes before they are simulated (trace-driven runs). ``prior``:
        when each session's client last started one before (``ClientHistory.prior``);
        ``s_h1``, ``o``: ``kc.plan``'s (None: every call completes)."""
        sc = self.scenario
        n = s_key.shape[0]
        R, C, W = int(s_kept.sum()), int(s_conns.sum()), int(s_writes.sum())
        s_client, s_server = np.empty(n, np.int64), np.empty(n, np.int64)
        r = {k: np.empty(R, np.int64) for k in
             ("session", "turn", "conn", "prompt", "output", "ttft", "reasoning", "images",
              "status", "retries")}
        c = {k: np.empty(C, np.int64) for k in ("session", "open_dep", "open_at", "rtt", "w0", "wn", "jitter")}
        c_isn, c_ipid = np.empty((C, 2), np.int64), np.empty((C, 2), np.int64)
        wd = np.empty((W, WF_COLS), np.int64)
        sessions = kc.Sessions(key=s_key, turn0=turn0, req0=_offsets(s_kept),
                               conn0=_offsets(s_conns), write0=_offsets(s_writes),
                               client=s_client, server=s_server)
        kc.fill(sessions, self.paths, self.tables, kc.Turns(**t, keep=t_keep, new=t_new),
                kc.Requests(**r), Conns(**c, isn=c_isn, ipid=c_ipid, os=np.zeros((C, 2), np.int64)), wd,
                self.failures, np.zeros(n, np.int64) if s_h1 is None else s_h1,
                outcomes(t_keep.shape[0]) if o is None else o)
        if adjust is not None:
            adjust(s_client, r, c, wd)
        self.tls.apply(wd, c["w0"], c["wn"], s_client[c["session"]],
                       np.zeros(c["w0"].shape[0], np.int64), self.layout_base,
                       seed=c_isn[:, 0] | (c_isn[:, 1] << 32), session=c["session"],
                       open_dep=c["open_dep"], open_at=c["open_at"],
                       prior=None if prior is None else prior[c["session"]])
        c_os = np.stack([self.tls.client_os(s_client[c["session"]]), np.zeros(C, np.int64)], 1)
        return schedule_from_sim(sc, self.topo, self.class_id, self.side, s_client, s_server, r, c, c_isn, c_ipid, wd,
                                 packets=self.packets, c_os=c_os)


def outcomes(n_turns: int) -> kf.Outcomes:
    """Each turn's fate, as ``kc.plan`` fills it: all completed until then."""
    z = {k: np.zeros(n_turns, np.int64) for k in kf.Outcomes._fields}
    z["cut"][:] = -1
    return kf.Outcomes(**z)


class ClientHistory:
    """When each session's client last started a session of the class before it, within a
    ticket's lifetime: that session's connection left the client a ticket, so the new
    session's first connection resumes (TLS resumption across sessions, as a browser's or an
    app's session cache does). A session's client is drawn from its key alone
    (``kc.session_path``), so the history is recomputed from the arrival blocks before the
    window (cached per block): the same in any window, process or worker.

    Exact over the last ``EXACT_BLOCKS`` blocks (an hour: what a capture shows of a client's
    comings and goings); a lifetime longer than that (chat's tickets live 18 h) adds, for a
    client not seen in that hour, the chance that it came in the hours before: 1 - exp(-rate
    x span), its own rate the class's session rate times its share of the sessions
    (``client_skew``), drawn per session."""

    EXACT_BLOCKS = 60
    SALT = 0x7E5  # the session key's child for that draw

    def __init__(self, model: ChatModel, lifetime_ns: int):
        self.model, self.lifetime = model, lifetime_ns
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.lock = threading.Lock()
        self.share = None  # each client's share of the sessions, when first needed
        self.merged: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # blocks, sorted

    def block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Block ``b``'s session start times and clients, sorted by client, then time."""
        hit = self.cache.get(b)
        if hit is None:
            k_b, starts = self.model.block_arrivals(b)
            keys = np.empty(starts.shape[0], np.uint64)
            derive_range(k_b, 1, keys)
            clients = np.empty(starts.shape[0], np.int64)
            kc.session_clients(keys, self.model.paths, clients)
            order = np.lexsort((starts, clients))
            hit = (np.ascontiguousarray(starts[order], np.int64), clients[order])
            with self.lock:  # (windows are generated on two threads)
                if len(self.cache) >= self.EXACT_BLOCKS + 16:
                    self.cache.pop(min(self.cache), None)
                self.cache[b] = hit
        return hit

    def prior(self, keys: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Per session (``keys``, ``starts``: ns from the capture start): when its client's
        latest earlier session started, within the lifetime (``tlsvar.NO_PRIOR``: none).
        Each session's latest is in the newest block, looking back, that has its client."""
        out = np.full(keys.shape[0], tlsvar.NO_PRIOR, np.int64)
        if keys.shape[0] == 0:
            return out
        keys = np.ascontiguousarray(keys, np.uint64)
        qc = np.empty(keys.shape[0], np.int64)
        kc.session_clients(keys, self.model.paths, qc)
        qt = np.ascontiguousarray(starts, np.int64)
        b_hi = int(qt.max()) // BLOCK_NS
        b_lo = (int(qt.min()) - self.lifetime) // BLOCK_NS  # the oldest block any query needs
        b_lo = max(b_lo, int(qt.min()) // BLOCK_NS - self.EXACT_BLOCKS)
        exact = min(self.lifetime, (self.EXACT_BLOCKS - 1) * BLOCK_NS)  # seen by every query
        cs, ts, offs = self.sorted_blocks(b_lo, b_hi)
        latest_in_blocks(cs, ts, offs, qc, qt, np.int64(exact), np.int64(tlsvar.NO_PRIOR), out)
        if self.lifetime > exact:  # the hours before those: by the client's rate
            none = np.flatnonzero(out == tlsvar.NO_PRIOR)
            u = np.empty(none.shape[0], np.float64)
            kc.session_uniforms(keys[none], np.uint64(self.SALT), u)
            rate = self.model.session_rate_per_ns * self.client_share()[qc[none]]
            came = u < -np.expm1(-rate * (self.lifetime - exact))
            out[none[came]] = qt[none[came]] - exact  # (some time then: within the lifetime)
        return out

    def sorted_blocks(self, first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Blocks ``first`` to ``last`` one after another (clients, start times, and where each
        block starts: ``kernels.writes.latest_in_blocks``); the windows of one block look up the same range:
        kept for the next."""
        hit = self.merged.get((first, last))
        if hit is None:
            parts = [self.block(b) for b in range(first, last + 1)]
            offs = np.zeros(len(parts) + 1, np.int64)
            offs[1:] = np.cumsum([p[0].shape[0] for p in parts])
            hit = (np.concatenate([p[1] for p in parts]), np.concatenate([p[0] for p in parts]), offs)
            with self.lock:
                if len(self.merged) >= 8:
                    self.merged.pop(next(iter(self.merged)), None)
                self.merged[(first, last)] = hit
        return hit

    def client_share(self) -> np.ndarray:
        """Each client's share of the sessions, as ``kc.client_rank`` draws them."""
        if self.share is None:
            p = self.model.paths
            n, skew = p.n_clients, p.client_skew
            edges = np.arange(n + 1, dtype=np.float64) + 1.0  # client c: x in [c + 1, c + 2)
            if skew == 0.0:
                cdf = np.arange(n + 1) / n
            elif skew == 1.0:
                cdf = np.log(edges) / np.log(n + 1.0)
            else:
                e = 1.0 - skew
                cdf = (edges ** e - 1.0) / ((n + 1.0) ** e - 1.0)
            cdf = np.clip(cdf, 0.0, 1.0)
            cdf[-1] = 1.0  # the last client takes the rest (client_rank clamps)
            self.share = np.diff(cdf)
        return self.share
