"""The tap's link, shared by every flow the capture sees: a frame occupies it for its
serialization time, so a frame that finds the link busy (in its direction) with another
flow's frame waits behind it (first in, first out) and is seen when it starts on the link.

Each flow's transport already spaces its own frames on its links (``kernels.tcpseg``); the
tap's link is where the flows meet. A frame's wait moves what follows from it in its flow:
a packet of the flow keeps its original gap after the flow's latest packet in the other
direction when that gap is shorter than ``HORIZON`` (a kernel's turnaround, an ACK clock, a
fabric round trip: the reaction comes that much after its cause, however late the cause), and
at least ``HORIZON`` of it otherwise (a long delay, an application's or a WAN round trip,
absorbs the wait). So no effect precedes or meets its cause, and a wait does not push a
whole flow's later life. No two packets of a flow share a time: one that would meet the
flow's last packet the other way comes 1 ns after it.

The pass runs over the time-ordered stream in pieces (``bound``: every later packet's
original time is at least this), carrying what it cannot settle yet; packets come out in
(time, flow id, packet order), the same whatever the pieces.
"""
import numpy as np

from .jit import inline, kernel

NONE = np.int64(-(1 << 62))
HORIZON = np.int64(200_000)  # ns: reactions closer than this to their cause keep their gap
IFG_BYTES = 24  # beyond a frame's captured bytes: FCS 4, preamble and SFD 8, inter-frame gap 12


@inline
def _less(k1, f1, s1, k2, f2, s2):
    return k1 < k2 or (k1 == k2 and (f1 < f2 or (f1 == f2 and s1 < s2)))


@inline
def _push(heap, n, i, key, fid, tie):
    """Push index ``i`` on the min-heap ``heap[:n]`` ordered by (key, fid, tie) of its
    indices; returns the new size."""
    heap[n] = i
    c = n
    while c > 0:
        p = (c - 1) // 2
        a, b = heap[c], heap[p]
        if _less(key[a], fid[a], tie[a], key[b], fid[b], tie[b]):
            heap[c], heap[p] = b, a
            c = p
        else:
            break
    return n + 1


@inline
def _pop(heap, n, key, fid, tie):
    """Remove the top of ``heap[:n]``; returns the new size (the top was ``heap[0]``)."""
    n -= 1
    heap[0] = heap[n]
    c = 0
    while True:
        l_, r = 2 * c + 1, 2 * c + 2
        m = c
        if l_ < n and _less(key[heap[l_]], fid[heap[l_]], tie[heap[l_]],
                            key[heap[m]], fid[heap[m]], tie[heap[m]]):
            m = l_
        if r < n and _less(key[heap[r]], fid[heap[r]], tie[heap[r]],
                           key[heap[m]], fid[heap[m]], tie[heap[m]]):
            m = r
        if m == c:
            return n
        heap[c], heap[m] = heap[m], heap[c]
        c = m


@inline
def _earliest(i, orig, frow, tdir, last_new, last_orig):
    """When packet ``i`` may reach the tap at the earliest: its original time, or later by
    what its cause waited (the flow's latest packet in the other direction)."""
    f, o = frow[i], 1 - tdir[i]
    t = orig[i]
    if last_new[f, o] != NONE:  # (the flow's packets are queued in their order: gap >= 0)
        # never at the very time of the flow's last packet the other way (1 ns after it)
        t = max(t, last_new[f, o] + max(min(orig[i] - last_orig[f, o], HORIZON), 1))
    return t


@kernel
def tap_queue(rows, base, side, ns_per_byte, status, dep, seq, bound, final, last_new,
              last_orig, busy, frac, counter, out):
    """One piece of the pass. ``rows`` (schedule rows: the carried ones first, then the new,
    together in the stream's order; ``ts_ns`` their original times): flow ``flow_id`` (its row
    ``flow_id - base`` into ``side``, the end of the flow the capture is on, and
    ``last_new``/``last_orig``: int64[F, 2], the flow's latest packet per tap direction, its
    time at the tap and originally), ``direction`` (0 up), ``wire_len``. ``status``: 0 not
    yet queued, 1 queued (its time ``dep``, its place ``seq``), set to 2 when it comes out.
    ``busy`` + ``frac``: when the link is next free per tap direction (0: sent by the
    capture's host), whole ns and a fraction; ``counter``: the next ``seq``. Packets come out
    into ``out`` in order while nothing not yet queued can precede them (every row before
    ``bound`` is queued, or all when ``final``), their ``ts_ns`` set to their time at the tap
    (a carried row keeps its original time); returns how many, and whether they are the
    stream's first rows in its order.

    The stream's next packet is the next to queue unless its flow is held back (a packet of
    it came later than it was sent: the flow's packets then wait in the flow's own queue, its
    head in a heap by earliest time); a packet goes out at once unless one queued before it
    is still waiting to go out (then a heap by time). Without waits, no heap is touched."""
    n = rows.shape[0]
    n_flows = last_new.shape[0]
    orig = np.empty(n, np.int64)
    fid = np.empty(n, np.int64)
    frow = np.empty(n, np.int64)
    for i in range(n):
        orig[i] = rows[i]["ts_ns"]
        fid[i] = rows[i]["flow_id"]
        frow[i] = fid[i] - base
    nxt = np.full(n, -1, np.int64)
    q_tail = np.full(n_flows, -1, np.int64)  # a held flow's last queued packet (-1: not held)
    h1 = np.empty(n, np.int64)  # held flows' heads, by earliest time
    h2 = np.empty(n, np.int64)  # queued packets not yet out, by time at the tap
    ekey = np.empty(n, np.int64)
    tdir = np.empty(n, np.int64)
    for i in range(n):
        tdir[i] = 0 if rows[i]["direction"] == side[frow[i]] else 1
    n1 = n2 = k = 0
    for i in range(n):
        if status[i] == 1:
            n2 = _push(h2, n2, i, dep, fid, seq)
    s = 0  # the stream's next row
    while True:
        # the stream's next packet that is free to go: a held flow's joins its queue
        while s < n:
            if status[s] != 0:
                s += 1
                continue
            f = frow[s]
            if q_tail[f] >= 0:
                nxt[q_tail[f]] = s
                q_tail[f] = s
                s += 1
                continue
            e = _earliest(s, orig, frow, tdir, last_new, last_orig)
            if e > orig[s]:  # it came later than sent: its flow is held from here
                ekey[s] = e
                n1 = _push(h1, n1, s, ekey, fid, fid)
                q_tail[f] = s
                s += 1
                continue
            ekey[s] = e
            break
        use_stream = s < n
        if n1 > 0 and (not use_stream or _less(ekey[h1[0]], fid[h1[0]], 0, ekey[s], fid[s], 0)):
            use_stream = False
            i = h1[0]
        elif use_stream:
            i = s
        else:
            break
        e = ekey[i]
        if not final and e >= bound:
            break
        if use_stream:
            s += 1
        else:
            n1 = _pop(h1, n1, ekey, fid, fid)
            if nxt[i] < 0:  # the flow's last held packet: it is free again
                q_tail[frow[i]] = -1
        d = tdir[i]
        # the link's free time is busy[d] + frac[d] ns (a fraction kept: a train at line rate
        # keeps its exact pace; epoch nanoseconds do not fit a float)
        if e >= busy[d]:  # free (within the fraction of a ns that stamps round away)
            b_int, b_frac = e, 0.0
        else:
            b_int, b_frac = busy[d], frac[d]
        t = b_int + (1 if b_frac > 0.0 else 0)
        end = b_frac + (rows[i]["wire_len"] + IFG_BYTES) * ns_per_byte
        whole = np.int64(np.floor(end))
        busy[d] = b_int + whole
        frac[d] = end - whole
        dep[i] = t
        seq[i] = counter[0]
        counter[0] += 1
        status[i] = 1
        f = frow[i]
        last_new[f, d] = t
        last_orig[f, d] = orig[i]
        if not use_stream and nxt[i] >= 0:
            j = nxt[i]
            ekey[j] = _earliest(j, orig, frow, tdir, last_new, last_orig)
            n1 = _push(h1, n1, j, ekey, fid, fid)
        # out: what nothing still to queue can precede (each comes at or after its key, and
        # the stream's rows at or after their original time)
        horizon = bound if s >= n else orig[s]
        if n1 > 0:
            horizon = min(horizon, ekey[h1[0]])
        if final and s >= n and n1 == 0:
            horizon = np.int64(2**62)
        if n2 == 0 and t < horizon:
            k = _out(rows, i, dep, status, out, k)
            continue
        n2 = _push(h2, n2, i, dep, fid, seq)
        while n2 > 0 and dep[h2[0]] < horizon:
            k = _out(rows, h2[0], dep, status, out, k)
            n2 = _pop(h2, n2, dep, fid, seq)
    horizon = bound if s >= n else orig[s]
    if n1 > 0:
        horizon = min(horizon, ekey[h1[0]])
    while n2 > 0 and (final or dep[h2[0]] < horizon):
        k = _out(rows, h2[0], dep, status, out, k)
        n2 = _pop(h2, n2, dep, fid, seq)
    in_order = True  # out[:k] is rows 0 .. k - 1: the caller's rows[:k] are the answer
    for j in range(k):
        if out[j] != j:
            in_order = False
            break
    return k, in_order


@inline
def _out(rows, i, dep, status, out, k):
    """Row ``i`` comes out ``k``-th, at its time at the tap; returns k + 1."""
    out[k] = i
    status[i] = 2
    rows[i]["ts_ns"] = dep[i]
    return k + 1
