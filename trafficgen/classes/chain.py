"""Python side of the chain classes, ``agentic`` and ``rag``: sessions whose turns call several
services in a chain (see ``kernels.chain``), to a schedule."""
from __future__ import annotations

import numpy as np

from trafficgen.config.arrivals import BLOCK_NS
from trafficgen.config.dist import parse_dist
from trafficgen.config.scenario import Scenario
from trafficgen.config.sections import Service
from trafficgen.kernels import chain as kch
from trafficgen.kernels.rng import key_of
from trafficgen.kernels.tcp import WF_COLS
from trafficgen.schema import CLASS_CODE, STATUS_CODE

from .common import RWND_BYTES, EpochSchedule, SessionModel, TlsPlan, offsets, schedule_from_sim
from .pooled import SlotPools, pool_calls

_ZERO = parse_dist(0, "count", positive=False)


class ChainModel(SessionModel):
    """A chain class for one scenario: ``agentic`` (service 0 the LLM API of ``topology``,
    service 1 the tool servers) or ``rag`` (services 1-3: embed, search, rerank)."""

    def __init__(self, scenario: Scenario, cls: str, layout_base: int = 0):
        p = scenario.params[cls]
        topo = self.topo = scenario.topology_of(cls)
        self.scenario, self.cls, self.params, self.layout_base = scenario, cls, p, layout_base
        self.class_id = CLASS_CODE[cls]
        self.side = topo.side(cls) or 0  # the end of its connections seen
        self.key = key_of(scenario.seed, self.class_id)
        self.paths_key = key_of(scenario.seed, 0xFFFF)
        self.levels_key = key_of(scenario.seed, self.class_id, 0xB0257)
        main = Service(topo.servers, topo.server_port, topo.rtt, _ZERO, _ZERO, _ZERO)
        if cls == "agentic":
            self.mode = kch.MODE_AGENTIC
            services = [main, p.tools]
            endpoints = [(p.sni, p.alpn), (p.tools.sni, p.tools.alpn)]
            self.endpoint0 = 0  # a connection's endpoint: its service
            self.session_rate_per_ns = p.rate / (p.turns * p.llm_calls) / 1e9
            self.ip = np.array([round(p.turns * 1000), round(p.llm_calls * 1000), p.keepalive,
                                p.max_context_tokens, p.request_overhead_bytes,
                                p.chunk_overhead_bytes, p.tokens_per_chunk,
                                # the tools' connections bypass the inference gateway
                                0 if topo.capture == "gateway" else 1], np.int64)
            self.dp = np.stack([d.params() for d in (
                p.think_time, p.turn_tokens, p.context_tokens, p.output_tokens, p.ttft, p.itl,
                p.stall, p.tools_per_step, p.agent_delay)])
            self.fp = np.array([p.bytes_per_token, p.stall_prob, p.tool_error])
            self.warmup_ns = 30 * BLOCK_NS  # agents run for tens of minutes
        else:
            self.mode = kch.MODE_RAG
            services = [main, p.embed, p.search, p.rerank]
            endpoints = [(v.sni, v.alpn) for v in services[1:]]
            self.endpoint0 = 1  # service 0 (the class's own servers) is not called
            self.session_rate_per_ns = p.rate / p.turns / 1e9
            self.ip = np.array([round(p.turns * 1000), p.keepalive, round(p.rerank_share * 1000)],
                               np.int64)
            self.dp = np.stack([d.params() for d in (p.think_time, p.query_tokens, p.top_k,
                                                     p.chunk_tokens)])
            self.fp = np.array([p.bytes_per_token])
            self.warmup_ns = 10 * BLOCK_NS
        self.tls = TlsPlan(scenario, cls, p, endpoints)
        self.variant_first = 0  # where its variants start in the table (fanout: after the class's)
        self.templates, self.ticket_wire = self.tls.templates, self.tls.ticket
        self.flight_wire = int(self.tls.flight[0])  # per connection: kernels.tlsvar
        self.svc_port = np.array([v.port for v in services], np.int64)
        self.svc_addr = np.concatenate([np.asarray(v.servers, np.int64) for v in services])
        self.svc_naddr = np.array([len(v.servers) for v in services], np.int64)
        self.svc_addr0 = offsets(self.svc_naddr)
        self.svc = [np.stack([getattr(v, f).params() for v in services])
                    for f in ("rtt", "latency", "request_bytes", "response_bytes")]
        self.itl = (p.itl.params(), p.stall_prob, p.stall.params()) if cls == "agentic" else \
            (_ZERO.params(), 0.0, _ZERO.params())
        # the calls pooled per (caller, service, backend): the rag backends, the agents' tools
        self.pool = np.array([0] + [1 if p.pool_size > 0 else 0] * (len(services) - 1), np.int64)
        self.chain = kch.Chain(mode=self.mode, n_clients=topo.client_count,
                               client_skew=topo.client_skew, paths_key=self.paths_key,
                               ip=self.ip, dp=self.dp, fp=self.fp, pool=self.pool)
        rtt, lat, req, resp = self.svc
        self.services = kch.Services(addr=self.svc_addr, addr0=self.svc_addr0,
                                     naddr=self.svc_naddr, rtt=rtt, lat=lat, req=req, resp=resp)
        self.link = kch.Link(mss=topo.mss, ns_per_byte=8e9 / topo.bandwidth_bps, rwnd=RWND_BYTES)
        itl, stall_prob, stall = self.itl
        self.tokens_per_chunk = getattr(p, "tokens_per_chunk", 1)
        self.replies = kch.Replies(
            hello_wire=int(self.tls.hello[0]), flight_wire=self.flight_wire,
            ticket_wire=self.ticket_wire, keepalive=p.keepalive,
            chunk_overhead=getattr(p, "chunk_overhead_bytes", 0), bpt=p.bytes_per_token,
            tokens_per_chunk=self.tokens_per_chunk, itl=itl, stall_prob=stall_prob, stall=stall)
        self.slots = SlotPools(self, 2 * self.warmup_ns // BLOCK_NS)  # (the longest sessions)
        # a block's pooled slots start up to a block before it (``classes.pooled``)
        self.early_ns = BLOCK_NS if self.pool.any() else 0

    def _walk(self, fill, s_key, starts, s_client, s_calls, s_conns, cm, cn):
        kch.walk(fill, s_key, starts, 0, self.scenario.duration_ns, self.chain, self.services,
                 self.link, kch.Plan(s_client, s_calls, s_conns, cm, cn))

    def window(self, t0: int, t1: int):
        """Every flow, request and packet of the sessions that start in [t0, t1). Pooled: one
        schedule per arrival block that starts in [t0, t1) (``classes.pooled``: its sessions'
        own connections, and its time slot's pooled ones, whatever the window; windows start
        on a block or inside one already given: the warm-up, partitions and blockwise windows
        are whole blocks)."""
        if not self.pool.any():
            return self.window_for(*self.sessions(t0, t1))
        first = -(-t0 // BLOCK_NS)
        return [self.slots.schedule(b) for b in range(first, -(-t1 // BLOCK_NS)) if b * BLOCK_NS < t1]

    def walked(self, s_key: np.ndarray, starts: np.ndarray):
        """The chains of given sessions (``kernels.chain.walk``): per session its client, and
        the call and connection matrices, each call on its session's own connection."""
        n = s_key.shape[0]
        s_client, s_calls, s_conns = (np.zeros(n, np.int64) for _ in range(3))
        self._walk(False, s_key, starts, s_client, s_calls, s_conns,
                   np.empty((0, kch.CM_COLS), np.int64), np.empty((0, kch.CN_COLS), np.int64))
        cm = np.empty((int(s_calls.sum()), kch.CM_COLS), np.int64)
        cn = np.empty((int(s_conns.sum()), kch.CN_COLS), np.int64)
        self._walk(True, s_key, starts, s_client, offsets(s_calls), offsets(s_conns), cm, cn)
        return s_client, cm, cn

    def window_for(self, s_key: np.ndarray, starts: np.ndarray) -> EpochSchedule:
        """The same for given sessions: their keys and start times (model clock, in order),
        their pooled calls pooled among themselves (``fanout``'s lookups)."""
        s_client, cm, cn = self.walked(s_key, starts)
        if self.pool.any():
            keep = (self.pool[cn[:, kch.CN_SERVICE]] == 0).astype(np.int64)
            cn = pool_calls(self, cm, cn, s_client, keep,
                            np.flatnonzero(self.pool[cm[:, kch.CM_SERVICE]] == 1))
        return self.schedule(s_client, cm, cn)

    def schedule(self, s_client, cm, cn, prior=None) -> EpochSchedule:
        """The schedule of calls ``cm`` on connections ``cn`` (``kernels.chain`` columns) of
        the sessions whose clients ``s_client`` holds; ``prior``: per connection, when its
        client last held a ticket of its service (``TlsPlan.apply``; None: unknown)."""
        n = s_client.shape[0]
        # each connection's calls, in time order, then its writes
        order = np.lexsort((cm[:, kch.CM_T], cm[:, kch.CM_CONN]))  # pooled: calls of several sessions
        c_ncalls = np.bincount(cm[:, kch.CM_CONN], minlength=cn.shape[0]).astype(np.int64)
        c_call0 = offsets(c_ncalls)
        c_nw = np.empty(cn.shape[0], np.int64)
        kch.write_counts(cm, order, c_call0, c_ncalls, 1 if self.ticket_wire else 0,
                         self.tokens_per_chunk, c_nw)
        c_w0, c_wn = offsets(c_nw), np.empty(cn.shape[0], np.int64)
        wd = np.empty((int(c_nw.sum()), WF_COLS), np.int64)
        kch.writes(cm, order, cn, c_call0, c_ncalls, self.replies, c_w0, c_wn, wd)
        self.tls.apply(wd, c_w0, c_wn, s_client[cn[:, kch.CN_SESSION]],
                       cn[:, kch.CN_SERVICE] - self.endpoint0, self.layout_base, self.variant_first,
                       seed=cn[:, kch.CN_ISN0] | (cn[:, kch.CN_ISN1] << 32),
                       session=cn[:, kch.CN_SESSION], open_at=cn[:, kch.CN_OPEN], prior=prior)
        C = cn.shape[0]
        c = {"session": cn[:, kch.CN_SESSION], "open_dep": np.full(C, -1, np.int64),
             "open_at": cn[:, kch.CN_OPEN], "rtt": cn[:, kch.CN_RTT], "w0": c_w0, "wn": c_wn,
             "jitter": cn[:, kch.CN_JITTER], "dst_ip": cn[:, kch.CN_SERVER],
             "dst_port": self.svc_port[cn[:, kch.CN_SERVICE]]}
        c_isn = np.ascontiguousarray(cn[:, [kch.CN_ISN0, kch.CN_ISN1]])
        c_ipid = np.ascontiguousarray(cn[:, [kch.CN_IPID0, kch.CN_IPID1]])
        R = cm.shape[0]
        r = {"session": cm[:, kch.CM_SESSION], "turn": cm[:, kch.CM_TURN],
             "conn": cm[:, kch.CM_CONN], "prompt": cm[:, kch.CM_PROMPT],
             "output": cm[:, kch.CM_OUTPUT], "reasoning": np.zeros(R, np.int64),
             "images": np.zeros(R, np.int64), "kind": cm[:, kch.CM_KIND],
             "llm_call": cm[:, kch.CM_LLM], "tool_call": cm[:, kch.CM_TOOL]}
        tool_status(cm, r)
        return schedule_from_sim(self.scenario, self.topo, self.class_id, self.side, s_client, np.zeros(n, np.int64),
                                 r, c, c_isn, c_ipid, wd, packets=self.packets,
                                 c_os=np.stack([self.tls.client_os(s_client[c["session"]]),
                                                np.zeros(C, np.int64)], 1))


def tool_status(cm: np.ndarray, r: dict) -> None:
    """Each call's ``status`` and ``retries``: an agent's tool call answered with an error
    (``kernels.chain``: its output column 1) has status error, and its retries (the same tool
    call of the same step, later) count the attempts before them."""
    tool = cm[:, kch.CM_KIND] == kch.K_TOOL
    failed = tool & (cm[:, kch.CM_OUTPUT] == 1)
    r["output"] = np.where(tool, 0, cm[:, kch.CM_OUTPUT])
    r["status"] = np.where(failed, STATUS_CODE["error"], STATUS_CODE["completed"]).astype(np.int64)
    r["retries"] = np.zeros(cm.shape[0], np.int64)
    if failed.any():
        cols = [kch.CM_SESSION, kch.CM_TURN, kch.CM_LLM, kch.CM_TOOL]
        sel = np.flatnonzero(tool)
        order = sel[np.lexsort((cm[sel, kch.CM_T], *(cm[sel, c] for c in reversed(cols))))]
        key = cm[order][:, cols]
        first = np.ones(order.shape[0], bool)
        first[1:] = (key[1:] != key[:-1]).any(axis=1)
        start = np.maximum.accumulate(np.where(first, np.arange(order.shape[0]), 0))
        r["retries"][order] = np.arange(order.shape[0]) - start
