"""Connection pools that span arrival blocks: the east-west callers' pools (a RAG gateway's to
its backends, an agent's to its tool hosts) take the calls of every session, whichever block
of session starts it came from.

Sessions are drawn per arrival block (``SessionModel``), and a block's schedule must not
depend on the window or the worker that makes it. Pools therefore live in time slots of the
same grid: the pooled calls made in slot ``b`` (call time in [b, b + 1) blocks) go on the
pools of slot ``b``, and block ``b``'s schedule carries them, with its own sessions' other
calls. Those calls come from the sessions of blocks ``b - reach`` to ``b`` (``reach``: the
class's warm-up, in blocks), walked here (``ChainModel.walked``) and kept for the next slots;
a call later than ``reach`` blocks after its session's block goes on a connection of its own
(rare: the warm-up is as long as the longest sessions the model keeps). A slot's pools are
empty at its start and drain at its end: a connection takes no call after the slot, and one
idle then has closed by then (``kernels.pool.assign``), as a client pool that recycles its
connections on a timer (Envoy's ``max_connection_duration``) does, so no new connection ever
opens beside an idle one of its pool.

A pooled call keeps its own session, which may be one of an earlier block: the schedule lists
those sessions after its own (``EpochSchedule.foreign``), and the engine gives them the ids
their own block got. A pooled connection resumes TLS with its pool's ticket: a gateway talks
to its backends all day (``prior``: when it last held one).
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from trafficgen.config.arrivals import BLOCK_NS
from trafficgen.kernels import chain as kch
from trafficgen.kernels import pool as kpool
from trafficgen.kernels.tlsvar import NO_PRIOR

FAR_NS = 1 << 62  # a slot end no call reaches: the pools of given sessions (``fanout``)


def pool_calls(model, cm, cn, s_client, keep, pooled, slot_end, single=None):
    """The calls ``pooled`` (rows of ``cm``) on pooled connections, one pool per (caller,
    service, backend), and the calls ``single`` each on a connection of its own; connections
    of ``cn`` with ``keep`` 1 stay (``kernels.pool``); ``model``: the ``ChainModel``. Returns the new connection matrix;
    ``cm``'s connections are renumbered in place."""
    single = np.empty(0, np.int64) if single is None else single.astype(np.int64)
    key = np.stack([s_client[cm[pooled, kch.CM_SESSION]], cm[pooled, kch.CM_SERVICE],
                    cn[cm[pooled, kch.CM_CONN], kch.CN_SERVER]])
    # by pool (caller, service, backend), then time (then row: ties stay in call order)
    order = np.lexsort((pooled, cm[pooled, kch.CM_T], key[2], key[1], key[0]))
    calls, key = pooled[order].astype(np.int64), key[:, order]
    g0 = np.flatnonzero(np.concatenate([[calls.size > 0], np.any(key[:, 1:] != key[:, :-1], axis=0)]))
    gn = np.diff(np.append(g0, calls.size)).astype(np.int64)
    out = np.empty((int(keep.sum()) + calls.size + single.size, kch.CN_COLS), np.int64)
    params = model.params
    shape = np.array([1 if model.ticket_wire else 0, model.tokens_per_chunk], np.int64)
    n = kpool.assign(cm, cn, calls, g0.astype(np.int64), gn, keep, params.pool_size,
                     params.pool_idle_timeout, np.int64(slot_end), model.link, model.tls.hosts,
                     shape, out)
    kpool.single(cm, cn, single, n, out)
    return out[:n + single.size]


class SlotPools:
    """The pooled schedules of a chain model (``ChainModel``) block by block (see the module
    docstring). Walked blocks are kept for the next slots (``reach`` + 2 of them), shared by
    the threads that generate windows."""

    def __init__(self, model, reach: int):
        self.m, self.reach = model, max(int(reach), 0)
        self._walked: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def walked(self, b: int):
        """Block ``b``'s sessions walked: (clients, calls, connections, each call's slot)."""
        with self._lock:
            got = self._walked.get(b)
            if got is not None:
                self._walked.move_to_end(b)
                return got
        m = self.m
        t0, t1 = max(b * BLOCK_NS, -m.warmup_ns), (b + 1) * BLOCK_NS
        s_client, cm, cn = m.walked(*m.sessions(t0, t1)) if t0 < t1 else m.walked(
            np.empty(0, np.uint64), np.empty(0, np.int64))
        slot = np.where(m.pool[cm[:, kch.CM_SERVICE]] == 1, cm[:, kch.CM_T] // BLOCK_NS, -1 << 40)
        got = (s_client, cm, cn, slot)
        with self._lock:
            self._walked[b] = got
            while len(self._walked) > self.reach + 2:
                self._walked.popitem(last=False)
        return got

    def schedule(self, b: int):
        """Block ``b``'s schedule: its sessions' calls that are not pooled (and those beyond
        the reach, each on a connection of its own), and every pooled call of slot ``b``."""
        m = self.m
        s_client, cm, cn, slot = self.walked(b)
        n_own = s_client.shape[0]
        pooled_svc = m.pool[cm[:, kch.CM_SERVICE]] == 1
        far = pooled_svc & (slot > b + self.reach)
        mine = cm[~pooled_svc | far].copy()
        clients, calls, conns = [s_client], [mine], [cn]
        blocks, locals_ = [], []
        n_sess, n_conn = n_own, cn.shape[0]
        for q in range(b - self.reach, b + 1):
            qc, qm, qn, qslot = (s_client, cm, cn, slot) if q == b else self.walked(q)
            sel = np.flatnonzero(qslot == b)
            if sel.size == 0:
                continue
            x = qm[sel].copy()
            if q != b:  # sessions of an earlier block: listed after the block's own
                uniq, inv = np.unique(x[:, kch.CM_SESSION], return_inverse=True)
                x[:, kch.CM_SESSION] = n_sess + inv
                clients.append(qc[uniq])
                blocks.append(np.full(uniq.size, q, np.int64))
                locals_.append(uniq)
                n_sess += uniq.size
            src = qn[x[:, kch.CM_CONN]].copy()  # each call's own connection: its path
            src[:, kch.CN_SESSION] = x[:, kch.CM_SESSION]
            x[:, kch.CM_CONN] = n_conn + np.arange(sel.size)
            n_conn += sel.size
            calls.append(x)
            conns.append(src)
        s_all, cm_all, cn_all = (np.concatenate(v) for v in (clients, calls, conns))
        keep = np.zeros(cn_all.shape[0], np.int64)
        keep[:cn.shape[0]] = m.pool[cn[:, kch.CN_SERVICE]] == 0
        pooled = np.arange(mine.shape[0], cm_all.shape[0], dtype=np.int64)
        single = np.flatnonzero(far[~pooled_svc | far])
        out = pool_calls(m, cm_all, cn_all, s_all, keep, pooled, (b + 1) * BLOCK_NS, single)
        prior = np.full(out.shape[0], NO_PRIOR, np.int64)
        at = slice(int(keep.sum()), out.shape[0] - single.size)  # the pooled connections
        prior[at] = out[at, kch.CN_OPEN]
        ep = m.schedule(s_all, cm_all, out, prior)
        ep.n_sessions, ep.block = n_own, b
        if blocks:
            ep.foreign = (np.concatenate(blocks), np.concatenate(locals_))
        return ep
