"""Connection pools that span arrival blocks: the east-west callers' pools (a RAG gateway's to
its backends, an agent's to its tool hosts) take the calls of every session, whichever block
of session starts it came from.

Sessions are drawn per arrival block (``SessionModel``), and a block's schedule must not
depend on the window or the worker that makes it. Each pool (caller, service, backend)
therefore recycles its connections on a timer, every block's length at a phase of its own
(``kernels.pool.slots``), as a client pool with a maximum connection age does (Envoy's
``max_connection_duration``): its slot ``s`` holds the pooled calls made in
[(s - 1) B + p, s B + p) (B the block, p its phase). A slot's pool starts empty and drains
at its end: a connection takes no call after the slot, and one idle then has closed by then
(``kernels.pool.assign``), so no connection opens beside an idle one of its pool, and the
pools do not all recycle at once.

Block ``b``'s schedule carries its sessions' calls that are not pooled and every pool's slot
``b`` (which ends in block ``b``; the run's last block also carries the slots that end after
it), so its packets may start up to a block before the block (``early_ns``: the engine holds
its cut back by that much). A slot's calls come from the sessions of blocks ``b - reach`` to
``b``, walked here (``ChainModel.walked``) and kept for the next slots; a call later than
``reach`` blocks after its session's block goes on a connection of its own (none in the
built-in scenarios: ``reach`` is twice the warm-up, which is as long as the longest sessions).

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
from trafficgen.kernels.rng import derive
from trafficgen.kernels.tlsvar import NO_PRIOR

FAR_NS = 1 << 62  # a slot end no call reaches: the pools of given sessions (``fanout``)


POOL_PHASE = 0x9002  # the draw of each pool's phase


def pool_calls(model, cm, cn, s_client, keep, pooled, single=None, slot=None):
    """The calls ``pooled`` (rows of ``cm``) on pooled connections, one pool per (caller,
    service, backend) and slot, and the calls ``single`` each on a connection of its own;
    connections of ``cn`` with ``keep`` 1 stay (``kernels.pool``); ``model``: the
    ``ChainModel``; ``slot``: per call its slot and the slot's end ([n, 2]; None: one slot
    that never ends, the pools of given sessions: ``fanout``). Returns the new connection
    matrix; ``cm``'s connections are renumbered in place."""
    single = np.empty(0, np.int64) if single is None else single.astype(np.int64)
    if slot is None:
        slot = np.zeros((cm.shape[0], 2), np.int64)
        slot[:, 1] = FAR_NS
    key = np.stack([s_client[cm[pooled, kch.CM_SESSION]], cm[pooled, kch.CM_SERVICE],
                    cn[cm[pooled, kch.CM_CONN], kch.CN_SERVER], slot[pooled, 0]])
    # by pool (caller, service, backend, slot), then time (then row: ties stay in call order)
    order = np.lexsort((pooled, cm[pooled, kch.CM_T], key[3], key[2], key[1], key[0]))
    calls, key = pooled[order].astype(np.int64), key[:, order]
    g0 = np.flatnonzero(np.concatenate([[calls.size > 0], np.any(key[:, 1:] != key[:, :-1], axis=0)]))
    gn = np.diff(np.append(g0, calls.size)).astype(np.int64)
    out = np.empty((int(keep.sum()) + calls.size + single.size, kch.CN_COLS), np.int64)
    params = model.params
    shape = np.array([1 if model.ticket_wire else 0, model.tokens_per_chunk], np.int64)
    n = kpool.assign(cm, cn, calls, g0.astype(np.int64), gn, slot[calls[g0], 1].astype(np.int64),
                     keep, params.pool_size, params.pool_idle_timeout, model.link,
                     model.tls.hosts, shape, out)
    kpool.single(cm, cn, single, n, out)
    return out[:n + single.size]


class SlotPools:
    """The pooled schedules of a chain model (``ChainModel``) block by block (see the module
    docstring). Walked blocks are kept for the next slots (``reach`` + 2 of them), shared by
    the threads that generate windows."""

    def __init__(self, model, reach: int):
        self.m, self.reach = model, max(int(reach), 0)
        self.key = np.uint64(derive(model.key, POOL_PHASE))
        self.last = -(-model.scenario.duration_ns // BLOCK_NS) - 1  # the run's last block
        self._walked: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def walked(self, b: int):
        """Block ``b``'s sessions walked: (clients, calls, connections, each call's slot and
        the slot's end: ``kernels.pool.slots``; -1 for a call that is not pooled)."""
        with self._lock:
            got = self._walked.get(b)
            if got is not None:
                self._walked.move_to_end(b)
                return got
        m = self.m
        t0, t1 = max(b * BLOCK_NS, -m.warmup_ns), (b + 1) * BLOCK_NS
        s_key, starts = m.sessions(t0, t1) if t0 < t1 else (np.empty(0, np.uint64), np.empty(0, np.int64))
        s_client, cm, cn = m.walked(s_key, starts)
        slot = np.empty((cm.shape[0], 2), np.int64)
        kpool.slots(cm, cn, s_client, m.pool[cm[:, kch.CM_SERVICE]], self.key, BLOCK_NS, slot)
        got = (s_client, cm, cn, slot)
        with self._lock:
            self._walked[b] = got
            while len(self._walked) > self.reach + 2:
                self._walked.popitem(last=False)
        return got

    def schedule(self, b: int):
        """Block ``b``'s schedule: its sessions' calls that are not pooled (and those beyond
        the reach, each on a connection of its own), and every pooled call of slot ``b`` (and
        of the slot after it, for the run's last block)."""
        m = self.m
        s_client, cm, cn, slot = self.walked(b)
        n_own = s_client.shape[0]
        pooled_svc = slot[:, 0] >= 0
        far = pooled_svc & (slot[:, 0] > b + self.reach)
        mine = ~pooled_svc | far
        clients, calls, conns, slots = [s_client], [cm[mine]], [cn], [slot[mine]]
        blocks, locals_ = [], []
        n_sess, n_conn = n_own, cn.shape[0]
        emit = (b, b + 1) if b >= self.last else (b,)
        for q in range(b - self.reach, b + 1):
            qc, qm, qn, qslot = (s_client, cm, cn, slot) if q == b else self.walked(q)
            sel = np.flatnonzero(np.isin(qslot[:, 0], emit) & (qslot[:, 0] <= q + self.reach))
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
            slots.append(qslot[sel])
        s_all, cm_all, cn_all, slot_all = (np.concatenate(v) for v in (clients, calls, conns, slots))
        keep = np.zeros(cn_all.shape[0], np.int64)
        keep[:cn.shape[0]] = m.pool[cn[:, kch.CN_SERVICE]] == 0
        n_mine = int(mine.sum())
        pooled = np.arange(n_mine, cm_all.shape[0], dtype=np.int64)
        single = np.flatnonzero(far[mine])
        out = pool_calls(m, cm_all, cn_all, s_all, keep, pooled, single, slot_all)
        prior = np.full(out.shape[0], NO_PRIOR, np.int64)
        at = slice(int(keep.sum()), out.shape[0] - single.size)  # the pooled connections
        prior[at] = out[at, kch.CN_OPEN]
        ep = m.schedule(s_all, cm_all, out, prior)
        ep.n_sessions, ep.block = n_own, b
        if blocks:
            ep.foreign = (np.concatenate(blocks), np.concatenate(locals_))
        return ep
