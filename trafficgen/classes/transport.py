"""The transport kernel as the TCP classes run it (``common.schedule_from_sim``): its path
and hosts per class (``host_link``), its thread's scratch rows (``simulate``), and sites' own
paths (``by_site``).

Where ``[[topology.sites]]`` give sites an ``impair`` table, the connections of each group of
sites with the same impairments run through the transport kernel on a path of their own
(``host_link`` with the site's values over the class's, ``config.impair.site_impair``), and
their rows are put back together with the epoch's connection and write indexes. A session's
connections share its client, so its site: a connection waits only on connections of its own
group."""
from __future__ import annotations

import functools
import threading

import numpy as np

from trafficgen.config.impair import site_impair
from trafficgen.config.scenario import Scenario
from trafficgen.kernels import tcp, tcpstate
from trafficgen.kernels.rng import key_of
from trafficgen.kernels.tcpstate import P_COLS, P_CONN, WO_DELIV
from trafficgen.schema import CLASSES

_SCRATCH = threading.local()


def _scratch_packets(rows: int, whole: bool = False) -> np.ndarray:
    """The transport kernel's output buffer: one per thread, grown as needed and reused by
    every window (a fresh one per window cost a page fault per 4 KiB, about 0.2 s of system
    time per 5 minutes of chat). Only ``schedule_from_sim`` uses it, and copies out of it.
    ``whole``: all of it, however large."""
    buf = getattr(_SCRATCH, "packets", None)
    if buf is None or buf.shape[0] < rows:
        buf = np.empty((max(rows, 1 << 16) * 5 // 4, P_COLS), np.int64)
        _SCRATCH.packets = buf
    return buf if whole else buf[:rows]


# Header lengths by stack (SYN options per OS, timestamps on every segment), as the frame
# encoder writes them (kernels/frames.py, kernels/stacks.py).
STACK_HEADERS = True


@functools.lru_cache(maxsize=16)
def turn_table(dist) -> np.ndarray:
    """A kernel turnaround distribution as the transport draws it: its quantiles at
    k / TURN_STEPS (the last at 1 - 1 / (4 TURN_STEPS): the tail stops near its p99.99)."""
    n = tcpstate.TURN_STEPS
    p = np.arange(n + 1) / n
    p[-1] = 1 - 1 / (4 * n)
    return np.array([dist.quantile(float(x)) for x in p], np.float64)


def host_link(sc: Scenario, topo, class_id: int, side: int, imp=None) -> tuple[tcp.Link, tcp.Hosts]:
    """The transport kernel's path for a class (the run's end, the MSS, the clients' access
    link and the servers' fabric link, the tap's side, its impairments: the class's, or
    ``imp``) and its hosts' delays (``[hosts]``)."""
    h = sc.hosts
    turn = np.stack([turn_table(h.client_turnaround), turn_table(h.server_turnaround)])
    if imp is None:
        imp = sc.network.impair.of(CLASSES[class_id])
    jitter = int(imp.jitter.top() > 0)
    impaired = int(imp.loss > 0 or imp.reorder > 0 or imp.duplicate > 0 or jitter)
    link = tcp.Link(dur_end=sc.duration_ns, mss=topo.mss, ns_byte_c=8e9 / topo.bandwidth_bps,
                    ns_byte_s=8e9 / h.fabric_bandwidth, capture_side=side,
                    key=key_of(sc.seed, class_id, 0x4057), stack_hdr=int(STACK_HEADERS),
                    loss=float(imp.loss), burst=float(imp.burst), before_tap=float(imp.before_tap),
                    reorder=float(imp.reorder), duplicate=float(imp.duplicate), jitter=jitter,
                    impaired=impaired)
    return link, tcp.Hosts(turn=turn, app_read=h.app_read.params(),
                           jitter=turn_table(imp.jitter) if jitter else np.zeros(2))


def simulate(conns: tcp.Conns, wd, link: tcp.Link, hosts: tcp.Hosts):
    """``tcp.simulate`` into the thread's scratch rows: the packet rows (a view of the
    scratch, valid until its next use) and (c_npk, c_resp_end, c_hsrtt, wo)."""
    n_conn = conns.session.shape[0]
    c_npk, c_resp_end = np.empty(n_conn, np.int64), np.empty(n_conn, np.int64)
    c_hsrtt = np.empty(n_conn, np.int64)
    wo = np.empty((wd.shape[0], 2), np.int64)
    # the thread's scratch as it is; simulate() checks each connection's bound before it
    # runs it and returns -1 if the buffer could overflow: then size it by the total bound
    out = _scratch_packets(0, whole=True)
    for _attempt in range(2):
        n = tcp.simulate(conns, wd, link, hosts, out, c_npk, c_resp_end, c_hsrtt, wo)
        if n >= 0:
            break
        out = _scratch_packets(int(tcp.total_bound(conns.w0, conns.wn, wd, link.mss,
                                                   tcp.LOSS_BOUND if link.impaired else 1)))
    else:
        raise RuntimeError("packet buffer too small: the transport kernel's bound is wrong")
    return out[:n], (c_npk, c_resp_end, c_hsrtt, wo)


def by_site(sc, topo, class_id: int, side: int, conns: tcp.Conns, wd: np.ndarray, s_client,
              site_imp: tuple):
    """:func:`simulate` per group of sites with the same ``impair`` values: the packet rows
    (their own array), (c_npk, c_resp_end, c_hsrtt, wo) of every connection and write, and
    whether any group's path is impaired."""
    n_conn, n_w = conns.session.shape[0], wd.shape[0]
    site = topo.site_of(s_client[conns.session])
    base = sc.network.impair.of(CLASSES[class_id])
    groups: dict = {}
    for k, values in enumerate(site_imp):
        groups.setdefault(values, []).append(k)
    c_npk, c_resp_end, c_hsrtt = (np.zeros(n_conn, np.int64) for _ in range(3))
    c_resp_end[:] = -1
    wo = np.zeros((n_w, 2), np.int64)
    wo[:, WO_DELIV] = -1
    outs, impaired = [], False
    for values, members in groups.items():
        sel = np.flatnonzero(np.isin(site, members))
        if sel.shape[0] == 0:
            continue
        link, hosts = host_link(sc, topo, class_id, side, site_impair(base, values))
        sub, rows = _subset(conns, sel)
        out, (npk, rend, hsrtt, wo_s) = simulate(sub, np.ascontiguousarray(wd[rows]), link, hosts)
        out = out.copy()  # (the scratch serves the next group)
        out[:, P_CONN] = sel[out[:, P_CONN]]
        c_npk[sel], c_resp_end[sel], c_hsrtt[sel] = npk, rend, hsrtt
        wo[rows] = wo_s
        outs.append(out)
        impaired |= bool(link.impaired)
    out = np.concatenate(outs) if outs else np.zeros((0, P_COLS), np.int64)
    return out, (c_npk, c_resp_end, c_hsrtt, wo), impaired


def _subset(conns: tcp.Conns, sel: np.ndarray) -> tuple[tcp.Conns, np.ndarray]:
    """Connections ``sel`` (ascending) as a ``Conns`` of their own (their waits and first
    writes renumbered) and the rows of ``wd`` their writes are, in order."""
    inv = np.full(conns.session.shape[0], -1, np.int64)
    inv[sel] = np.arange(sel.shape[0])
    dep = conns.open_dep[sel]
    wn = conns.wn[sel]
    w0 = np.zeros(sel.shape[0], np.int64)
    np.cumsum(wn[:-1], out=w0[1:])
    # the writes of each selected connection, in order: w0[c] .. w0[c] + wn[c]
    rows = np.repeat(conns.w0[sel] - w0, wn) + np.arange(int(wn.sum()))
    sub = tcp.Conns(session=conns.session[sel], open_dep=np.where(dep >= 0, inv[np.maximum(dep, 0)], -1),
                    open_at=conns.open_at[sel], rtt=conns.rtt[sel], isn=conns.isn[sel],
                    ipid=conns.ipid[sel], w0=w0, wn=wn, jitter=conns.jitter[sel], os=conns.os[sel])
    return sub, rows
