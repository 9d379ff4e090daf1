"""What every TCP flow class shares: run the transport kernel over an epoch's connections and
turn its output into a sorted packet schedule plus flow and request rows (local ids)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trafficgen.config.arrivals import BLOCK_NS, DAY_NS
from trafficgen.config.scenario import Scenario
from trafficgen.kernels import stacks, stats, tcp, tcpstate
from trafficgen.kernels.frames import WIN_SCALED, WSCALE
from trafficgen.kernels.rng import derive, derive_range, key_of
from trafficgen.kernels.tcp import W_REQ, WF_FLAGS, WF_REQ, WO_ISSUED
from trafficgen.kernels.tcpstate import P_CONN, P_DIR, P_PLEN, P_REQ, P_TS, P_WLEN
from trafficgen.schema import KIND_CODE, PROTO_TCP, SCHED_DTYPE, empty

from .tlsplan import PlainPlan, TlsPlan, host_delays, tls_conns  # noqa: F401 (the classes' import)
from .transport import STACK_HEADERS, by_site, host_link, simulate, turn_table  # noqa: F401 (tests read them here)


@dataclass
class EpochSchedule:
    """One epoch of one class. Ids (flow, session, request) are local, from 0."""

    sched: np.ndarray  # SCHED_DTYPE, sorted by (ts_ns, flow_id, packet order)
    flows: np.ndarray  # FLOW_DTYPE
    requests: np.ndarray  # REQUEST_DTYPE
    n_sessions: int
    # the arrival block whose sessions these are (None: not one block's; ``classes.pooled``),
    # and the engine's index of the model that made it (``Engine._generate`` sets it)
    block: int | None = None
    model: int = 0
    # session ids n_sessions.. are sessions of earlier blocks of the same model: (their
    # blocks, their local ids there); the engine gives them the ids their block got
    foreign: tuple | None = None


BLOCK_ID_OFFSET = 1 << 20  # blocks may be negative (warm-up); their key ids may not


class SessionModel:
    """Sessions of one class, drawn per fixed arrival block of the model's (``BLOCK_NS``):
    block ``b``'s key is derive(class key, b + BLOCK_ID_OFFSET), its session ``i``'s
    derive(block key, 1 + i). Needs ``scenario``, ``params`` (with ``arrivals``), ``key``,
    ``levels_key`` and ``session_rate_per_ns``. ``packets``: False when only the flow and
    request rows are wanted (the engine says so)."""

    packets = True

    def block_arrivals(self, b: int) -> tuple[np.uint64, np.ndarray]:
        """Block ``b``'s key and the start times of its sessions (ns from capture start),
        cut at the end of the run (a Poisson stream's prefix does not depend on where it
        stops)."""
        k_b = np.uint64(derive(self.key, b + BLOCK_ID_OFFSET))
        t0 = b * BLOCK_NS
        t1 = min(t0 + BLOCK_NS, self.scenario.duration_ns)
        starts = self.params.arrivals.times(self.levels_key, derive(k_b, 0), t0, t1,
                                                   self.session_rate_per_ns, BLOCK_NS,
                                                   self.scenario.start_ns % DAY_NS)
        return k_b, starts

    def sessions(self, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray]:
        """Keys and start times of the sessions that start in [t0, t1), in start order."""
        keys, starts = [], []
        for b in range(t0 // BLOCK_NS, -(-t1 // BLOCK_NS)):
            k_b, arr = self.block_arrivals(b)
            lo, hi = np.searchsorted(arr, [t0, t1], "left")
            k = np.empty(hi - lo, np.uint64)
            derive_range(k_b, 1 + int(lo), k)
            keys.append(k)
            starts.append(arr[lo:hi])
        if not keys:
            return np.empty(0, np.uint64), np.empty(0, np.int64)
        return np.concatenate(keys), np.concatenate(starts)


def offsets(counts: np.ndarray) -> np.ndarray:
    """Exclusive prefix sum: where each session's rows start."""
    out = np.zeros(counts.shape[0], np.int64)
    np.cumsum(counts[:-1], out=out[1:])
    return out


RWND_BYTES = WIN_SCALED << WSCALE  # the receive window both sides advertise


def _renumber(keep: np.ndarray) -> np.ndarray:
    """Map old index -> new dense index among kept ones (-1 where dropped)."""
    return np.where(keep, np.cumsum(keep) - 1, -1)


def schedule_from_sim(sc: Scenario, topo, class_id: int, side: int, s_client, s_server, r, c,
                      c_isn, c_ipid, wd, packets: bool = True, c_os=None) -> EpochSchedule:
    """Run the transport kernel over an epoch's connections (``c``) and writes (``wd``) and
    build the sorted schedule and the flow and request rows. ``topo``: the class's topology
    (``Scenario.topology_of``); ``side``: the end of the connections the capture is on.
    ``packets=False``: the flow and request rows only, counted straight from the kernel's
    rows (the same figures, without sorting them into a schedule). ``c_os``: each
    connection's stacks (int64[C, 2], ``kernels.stacks.OS_*`` of client and server; None:
    both Linux)."""
    n_conn = c["session"].shape[0]
    if c_os is None:
        c_os = np.zeros((n_conn, 2), np.int64)
    c_os = np.ascontiguousarray(c_os, np.int64)
    # contiguous columns, whatever the model built them as (columns of a matrix are strided):
    # one signature of the transport kernel for every class, compiled once
    col = {k: np.ascontiguousarray(c[k]) for k in ("session", "open_dep", "open_at", "rtt", "w0",
                                                     "wn", "jitter")}
    conns = tcp.Conns(**col, isn=c_isn, ipid=c_ipid, os=np.ascontiguousarray(c_os, np.int64))
    site_imp = topo.site_impairs()
    if any(site_imp):  # sites with paths of their own (their ``impair``)
        out, (c_npk, c_resp_end, c_hsrtt, wo), impaired = by_site(
            sc, topo, class_id, side, conns, wd, s_client, site_imp)
    else:
        link, hosts = host_link(sc, topo, class_id, side)
        out, (c_npk, c_resp_end, c_hsrtt, wo) = simulate(conns, wd, link, hosts)
        impaired = link.impaired
    n = out.shape[0]
    apart = stacks.host_ipids(
        out, np.array([P_TS, P_CONN, P_DIR, tcpstate.P_IPID], np.int64), c_os,
        np.ascontiguousarray(c_ipid, np.int64), key_of(sc.seed, stacks.HOST_SALT),
        np.ascontiguousarray(topo.client_addresses(s_client[c["session"]]), np.int64),
        np.empty(n_conn, np.int64))
    if apart:
        raise RuntimeError(f"{apart} connections' packet rows are not together (simulate)")
    if impaired:  # packets lost before the tap, and copies made past it, are not captured
        out = out[(out[:, tcpstate.P_TRUTH] & tcpstate.T_OFFTAP) == 0]
        n = out.shape[0]
    flow_of_conn = _renumber(c_npk > 0)
    is_req = (wd[:, WF_FLAGS] & W_REQ) != 0
    issued = np.zeros(r["session"].shape[0], bool)
    issued[wd[is_req, WF_REQ]] = wo[is_req, WO_ISSUED] > 0
    req_map = _renumber(issued)

    if packets:
        order = np.argsort(out[:, P_TS], kind="stable")
        sched = np.zeros(n, SCHED_DTYPE)  # the columns fill_schedule leaves: 0
        stats.fill_schedule(out, order, flow_of_conn, req_map, class_id, sc.start_ns, sched)
        cols = {k: sched[k] for k in ("flow_id", "direction", "wire_len", "payload_len",
                                      "request_id", "ts_ns")}
    else:
        sched = np.empty(0, SCHED_DTYPE)
        p_req = out[:, P_REQ]
        cols = {"flow_id": flow_of_conn[out[:, P_CONN]], "direction": out[:, P_DIR],
                "wire_len": out[:, P_WLEN], "payload_len": out[:, P_PLEN],
                "request_id": np.where(p_req >= 0, req_map[np.maximum(p_req, 0)], -1),
                "ts_ns": out[:, P_TS] + sc.start_ns}
    ts = cols["ts_ns"]

    # flows
    conns = np.flatnonzero(c_npk > 0)
    nf = conns.shape[0]
    flows = empty("flows", nf)
    start, end = np.empty(nf, np.int64), np.empty(nf, np.int64)
    fbytes, fpk = np.empty((nf, 2), np.int64), np.empty((nf, 2), np.int64)
    if n or nf:  # (no packets, no flows: and an empty column would type as another layout)
        stats.flow_totals(cols["flow_id"], cols["direction"], cols["wire_len"], ts, nf, start, end,
                          fbytes, fpk)
    sess = c["session"][conns]
    clients = s_client[sess]
    flows["flow_id"] = np.arange(nf)
    flows["session_id"] = sess
    flows["class"] = class_id
    flows["start_ns"], flows["end_ns"] = start, end
    flows["src_ip"] = topo.client_addresses(clients)
    if "dst_ip" in c:  # per connection (chains: services and tool servers)
        flows["dst_ip"], flows["dst_port"] = c["dst_ip"][conns], c["dst_port"][conns]
    else:
        flows["dst_ip"] = np.asarray(topo.servers, np.int64)[s_server[sess]]
        flows["dst_port"] = topo.server_port
    flows["protocol"] = PROTO_TCP
    flows["bytes_up"], flows["bytes_down"] = fbytes[:, 0], fbytes[:, 1]
    flows["packets_up"], flows["packets_down"] = fpk[:, 0], fpk[:, 1]
    flows["client_id"] = clients
    flows["client_os"], flows["server_os"] = c_os[conns, 0], c_os[conns, 1]
    conn_reqs = np.bincount(r["conn"][issued], minlength=n_conn)
    flows["requests"] = conn_reqs[conns]
    flows["rtt_ns"] = c_hsrtt[conns]

    # requests
    keep = np.flatnonzero(issued)
    nr = keep.shape[0]
    requests = empty("requests", nr)
    rs, rf, re_ = (np.empty(nr, np.int64) for _ in range(3))
    rbytes = np.empty((nr, 2), np.int64)
    if n or nr:
        stats.request_totals(cols["request_id"], cols["direction"], cols["payload_len"],
                             cols["wire_len"], ts, nr, rs, rf, re_, rbytes)
    requests["request_id"] = np.arange(nr)
    requests["flow_id"] = flow_of_conn[r["conn"][keep]]
    requests["session_id"] = r["session"][keep]
    requests["class"] = class_id
    requests["kind"] = r["kind"][keep] if "kind" in r else KIND_CODE["llm"]
    requests["start_ns"], requests["first_byte_ns"], requests["end_ns"] = rs, rf, re_
    requests["bytes_up"], requests["bytes_down"] = rbytes[:, 0], rbytes[:, 1]
    requests["prompt_tokens"] = r["prompt"][keep]
    requests["output_tokens"] = r["output"][keep]
    if "reasoning" in r:
        requests["reasoning_tokens"] = r["reasoning"][keep]
        requests["images"] = r["images"][keep]
    requests["turn"] = r["turn"][keep]
    requests["llm_call"] = r["llm_call"][keep] if "llm_call" in r else 0
    requests["tool_call"] = r["tool_call"][keep] if "tool_call" in r else -1
    requests["client_id"] = s_client[r["session"][keep]]
    if "status" in r:
        requests["status"], requests["retries"] = r["status"][keep], r["retries"][keep]
    return EpochSchedule(sched, flows, requests, int(s_client.shape[0]))
