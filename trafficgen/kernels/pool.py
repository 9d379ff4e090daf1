"""Connection pools of east-west callers (a RAG gateway's HTTP clients to its backends, an
agent's to its tool hosts): the calls of a chain class's sessions (``chain.walk``) taken off
their sessions' own connections and put on pooled ones, one pool per (caller, service,
backend), as HTTP client pools do (Go net/http's Transport, urllib3's HTTPConnectionPool):

- a call takes an idle kept-alive connection of its pool if there is one (the most recently
  used, as Go's idle list), and opens a new connection only when every pooled one is busy;
- a connection is busy from its call's time to the call's end, bounded from above: the
  handshake and the server's parse delay the connection will draw (``tlsvar``), the upload,
  the service's latency, the answer (``busy_bound``: slow-start rounds, a delayed ACK only
  between rounds);
- released, it goes back idle, unless ``pool_size`` connections of the pool are idle
  already: then it closes (Go's MaxIdleConnsPerHost, urllib3's maxsize);
- an idle connection closes ``pool_idle`` after its last call's answer (``chain.writes``
  closes it then: CN_PERCALL = POOLED, after CN_IDLE); it is taken only up to ``pool_idle``
  after that call's start (the answer's time on the wire is known only after the transport
  runs, so the pool never takes a connection that may have closed);
- a pool lives for one slot (``slots``: a block's length, at a phase of its own; the caller,
  ``classes.pooled``, gives each call's slot): it takes no call after the slot, and an idle
  connection closes by the slot's end.

A pooled connection belongs to the session of the call that opened it; every call keeps its
own session.
"""
import numpy as np

from .bounds import SLACK_NS, handshake_bound, slow_start_rounds
from .chain import (
    CM_CONN,
    CM_DOWN,
    CM_KEY,
    CM_LATENCY,
    CM_NEW,
    CM_SERVICE,
    CM_SESSION,
    CM_STREAM,
    CM_T,
    CM_UP,
    CN_IDLE,
    CN_IPID0,
    CN_IPID1,
    CN_ISN0,
    CN_ISN1,
    CN_JITTER,
    CN_OPEN,
    CN_PERCALL,
    CN_RTT,
    CN_SERVER,
)
from .jit import inline, kernel
from .rng import bits, derive, uniform
from .tcp import ATO_NS
from .tlsvar import D_PARSE, DL_PARSE, delay

POOLED = 2  # CN_PERCALL of a pooled connection: it closes pool_idle after its last call
ONE_SHOT = 1  # closes right after its last call (here: released into a full pool)
BUSY, IDLE, CLOSED = 0, 1, 2
POOL_KEY = 0x9001
SHORTEST = 1_000_000  # the shortest close after a connection's last answer (ns)


@kernel
def assign(cm, cn, calls, g0, gn, g_end, keep_conn, pool_size, pool_idle, link, hosts, shape,
           cn_out):
    """Pool the calls ``calls[g0[g]:g0[g] + gn[g]]`` of each group ``g`` (a pool: one caller,
    service and backend; rows of ``cm`` in time order): rewrite their ``CM_CONN``/``CM_NEW``
    and write the connections into ``cn_out``, after the ones of ``cn`` kept
    (``keep_conn``: 1 for a connection whose calls are not pooled; those calls are renumbered
    too). ``link``: ``chain.Link``; ``hosts``: the class's ``tlsvar.TlsHosts`` (a connection's
    handshake and parse delays are the ones ``tlsvar.assign`` will draw for it); ``shape``:
    (1 if the servers send a ticket, tokens per streamed chunk): where each call's request
    falls among its connection's writes (``chain.writes``). Returns the connections written.

    ``g_end[g]``: group ``g``'s pool takes no call at or after it (the end of its slot,
    ``classes.pooled``); a connection idle then has closed by then: its close after its last
    answer (``CN_IDLE``) is ``pool_idle``, cut to the time between its last call's end
    (bounded from above) and the slot's end, and 1 ms at least."""
    mss, ns_per_byte, rwnd = link
    remap = np.full(cn.shape[0], -1, np.int64)
    n = 0
    for c in range(cn.shape[0]):
        if keep_conn[c]:
            cn_out[n, :] = cn[c, :]
            remap[c] = n
            n += 1
    for i in range(cm.shape[0]):
        if keep_conn[cm[i, CM_CONN]]:
            cm[i, CM_CONN] = remap[cm[i, CM_CONN]]
    m = 0
    for g in range(g0.shape[0]):
        m = max(m, gn[g])
    conn, state = np.empty(m, np.int64), np.empty(m, np.int64)
    until = np.empty(m, np.int64)  # the end of its last call (bounded from above)
    nw = np.empty(m, np.int64)  # its writes so far (``chain.writes``: handshake, then per call)
    last = np.empty(m, np.int64)  # its last call's start: it closes no sooner than pool_idle after
    for g in range(g0.shape[0]):
        k = 0  # the pool's connections so far
        for j in range(gn[g]):
            i = calls[g0[g] + j]
            t = cm[i, CM_T]
            while True:  # release the busy ones whose call ended by t, in order
                b = -1
                for x in range(k):
                    if state[x] == BUSY and until[x] <= t and (b < 0 or until[x] < until[b]):
                        b = x
                if b < 0:
                    break
                idle = 0
                for x in range(k):
                    if state[x] == IDLE and until[b] - last[x] <= pool_idle:
                        idle += 1
                if idle >= pool_size:
                    state[b] = CLOSED
                    cn_out[conn[b], CN_PERCALL] = ONE_SHOT
                else:
                    state[b] = IDLE
            take = -1
            for x in range(k):
                if state[x] == IDLE:
                    if t - last[x] > pool_idle:
                        state[x] = CLOSED  # timed out: closed pool_idle after its last call
                    elif take < 0 or until[x] > until[take]:
                        take = x
            old = cm[i, CM_CONN]
            r = cn[old, CN_RTT]
            if take < 0:
                take = k
                k += 1
                cn_out[n, :] = cn[old, :]
                _fresh(cm, i, cn_out, n, POOLED)
                conn[take] = n
                n += 1
            else:
                cm[i, CM_NEW] = 0
            state[take], last[take] = BUSY, t
            kh = derive(hosts.key, cn_out[conn[take], CN_ISN0] | (cn_out[conn[take], CN_ISN1] << 32))
            hs = 0
            if cm[i, CM_NEW]:
                nw[take] = 3 + shape[0]  # ClientHello, the server's flight, Finished, a ticket
                hs = handshake_bound(r)
                for row in range(DL_PARSE):  # every handshake delay it may draw
                    hs += delay(hosts.delays, row, kh, row)
            until[take] = t + hs + busy_bound(cm[i, CM_UP], r, mss, ns_per_byte, rwnd) + r \
                + cm[i, CM_LATENCY] + delay(hosts.delays, DL_PARSE, kh, D_PARSE + nw[take]) \
                + busy_bound(cm[i, CM_DOWN], r, mss, ns_per_byte, rwnd)
            nw[take] += 2 if cm[i, CM_STREAM] == 0 else 2 + (cm[i, CM_DOWN] + shape[1] - 1) // shape[1]
            cm[i, CM_CONN] = conn[take]
        for x in range(k):
            cn_out[conn[x], CN_IDLE] = max(SHORTEST, min(pool_idle, g_end[g] - until[x]))
    return n


@kernel
def slots(cm, cn, s_client, pooled, key, slot_ns, out):
    """Each call's pool slot, for the calls with ``pooled[i]`` 1 (else -1): a pool (caller,
    service, backend) recycles its connections every ``slot_ns`` at a phase of its own (a
    uniform draw of ``key`` by pool), so pools do not all recycle at once. Slot ``s`` of a
    pool of phase p holds the calls made in [(s - 1) slot_ns + p, s slot_ns + p): ``out[i, 0]``
    the slot, ``out[i, 1]`` its end."""
    for i in range(cm.shape[0]):
        if pooled[i] == 0:
            out[i, 0], out[i, 1] = -1, -1
            continue
        ident = (s_client[cm[i, CM_SESSION]] << 40) ^ (cm[i, CM_SERVICE] << 32) \
            ^ cn[cm[i, CM_CONN], CN_SERVER]
        phase = np.int64(uniform(derive(key, ident), 0) * slot_ns)
        s = (cm[i, CM_T] - phase) // slot_ns + 1
        out[i, 0], out[i, 1] = s, s * slot_ns + phase


@inline
def busy_bound(nbytes, rtt, mss, ns_per_byte, rwnd):
    """Upper bound (ns) on sending ``nbytes`` on a connection (``chain.xfer_bound``, closer):
    slow-start rounds from the initial window (a connection reused after an idle spell starts
    there again), serialisation, and a delayed ACK's wait only between rounds (what fits the
    first window leaves at once)."""
    rounds = slow_start_rounds(nbytes, mss, rwnd)
    return rounds * rtt + np.int64(nbytes * ns_per_byte * 1.25) + max(rounds - 1, 0) * ATO_NS + SLACK_NS


@kernel
def single(cm, cn, calls, first, cn_out):
    """Each call ``calls[j]`` on a connection of its own (``ONE_SHOT``), ``cn_out[first + j]``:
    its connection's path, opened at the call's time, with draws of its own (as ``assign``)."""
    for j in range(calls.shape[0]):
        i = calls[j]
        n = first + j
        cn_out[n, :] = cn[cm[i, CM_CONN], :]
        _fresh(cm, i, cn_out, n, ONE_SHOT)
        cm[i, CM_CONN] = n


@inline
def _fresh(cm, i, cn_out, n, percall):
    """Connection row ``n`` opened for call ``i``: its time, kind, ISNs, IP ids and jitter."""
    kc = derive(np.uint64(cm[i, CM_KEY]), POOL_KEY)
    cn_out[n, CN_OPEN], cn_out[n, CN_PERCALL] = cm[i, CM_T], percall
    cn_out[n, CN_ISN0] = bits(kc, 0) & 0xFFFFFFFF
    cn_out[n, CN_ISN1] = bits(kc, 1) & 0xFFFFFFFF
    cn_out[n, CN_IPID0] = bits(kc, 2) & 0xFFFF
    cn_out[n, CN_IPID1] = bits(kc, 3) & 0xFFFF
    cn_out[n, CN_JITTER] = np.int64(uniform(kc, 4) * 100_000_000)
    cn_out[n, CN_IDLE] = SHORTEST
    cm[i, CM_NEW] = 1

