"""The transport over sites' own paths: where ``[[topology.sites]]`` give sites an ``impair``
table, the connections of each group of sites with the same impairments run through the
transport kernel on a path of their own (``common.host_link`` with the site's values over the
class's, ``config.impair.site_impair``), and their rows are put back together with the epoch's
connection and write indexes. A session's connections share its client, so its site: a
connection waits only on connections of its own group."""
from __future__ import annotations

import numpy as np

from trafficgen.config.impair import site_impair
from trafficgen.kernels import tcp
from trafficgen.kernels.tcpstate import P_COLS, P_CONN, WO_DELIV
from trafficgen.schema import CLASSES

from .common import host_link, simulate


def transport(sc, topo, class_id: int, side: int, conns: tcp.Conns, wd: np.ndarray, s_client,
              site_imp: tuple):
    """``common.simulate`` per group of sites with the same ``impair`` values: the packet rows
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
