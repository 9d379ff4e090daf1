"""TCP emulation: connections and their application writes in, captured packets out.

A flow model describes each connection as a list of *writes*: (direction, bytes, the write it
waits for, delay after that write is written or delivered, labels). This kernel runs a small
event simulation per connection -- three-way handshake, segmentation at the MSS without
spanning writes (TCP_NODELAY senders), slow start with ABC (RFC 3465, L=2) and restart after
idle (RFC 5681), a receive-window cap, delayed ACKs (every second segment or a 40 ms timer,
piggybacked on data), and a FIN exchange -- and records every packet at the capture point.
Sequence and acknowledgement numbers are those of the simulation, so they are consistent by
construction: a side acknowledges only bytes that have arrived at it.

Times are int64 ns on the model's clock (0 = capture start). Directions: 0 up (client to
server), 1 down. A packet's capture time is its send time on the capture side, its send time
plus the one-way delay on the far side.

Layout for speed: a connection's state is one small int64 array (``S_*`` offsets, two slots
per direction) and writes are rows of one int64 matrix (``WF_*`` columns), so the helpers
take a handful of arrays rather than dozens.
"""
from collections import namedtuple

import numpy as np

from .codes import ACK, FIN, PH_HANDSHAKE, PH_PREFILL_WAIT, PH_REQUEST, PH_TEARDOWN, PSH, SYN
from .jit import helper, kernel

INF = np.int64(2**62)
ATO_NS = 40_000_000  # delayed-ACK timer
RTO_MIN_NS = 200_000_000
IW_SEGMENTS = 10  # initial window, RFC 6928
HDR_DATA = 54  # Ethernet 14 + IPv4 20 + TCP 20
HDR_SYN = 66  # + 12 bytes of options: MSS, NOP, WS, NOP, NOP, SACK_PERM

# write flags
W_TURN = 1  # a later turn: skipped (and the connection closed) if ready at or after the end
W_CLOSE = 2  # close_notify then FIN; ready at min(dep + delay, the run's end)
W_REQ = 4  # a request upload: its delivery starts the prefill wait
W_ABS = 8  # ready at the absolute time in its delay (model clock), not relative to its dep

# write matrix columns (int64[W, WF_COLS]); dep is an index local to the connection
WF_DIR, WF_BYTES, WF_DEP, WF_DELAY, WF_REQ, WF_PHASE, WF_FLAGS, WF_LAYOUT = range(8)
WF_COLS = 8
# per-write results (int64[W, 2])
WO_DELIV, WO_ISSUED = 0, 1

# per-packet output columns (int64[cap, P_COLS], narrowed by the caller)
# P_WIN: the receive window the sender advertises (bytes, before its window scale); P_TSVAL,
# P_TSECR: its TCP timestamp option (0 where the connection has no timestamps)
P_TS, P_CONN, P_DIR, P_SEQ, P_ACK, P_FLAGS, P_PLEN, P_REQ, P_PHASE, P_IPID, P_WLEN, \
    P_LAYOUT, P_SEGOFF, P_WRITELEN, P_SEND, P_WIN, P_TSVAL, P_TSECR = range(18)
P_COLS = 18

# connection state: per-direction pairs, then scalars
S_NXT, S_UNA, S_QUEUED, S_CWND, S_LINKFREE, S_LASTSEND, S_CNT, S_RCV, S_UNACKED, S_TIMER, \
    S_HEAD, S_NEXTW, S_SENDW, S_DELIVW, S_FINPEND, S_FINSENT, S_LASTQ, S_ISN, S_IPID = \
    range(0, 38, 2)
S_STREQ, S_STPHASE, S_TRUNC, S_LASTDOWN, S_DONE = range(38, 43)
S_LEN = 43
# per-write state of the current connection (int64[wn, 3])
WS_START, WS_END, WS_QTIME = 0, 1, 2

Conns = namedtuple("Conns", "session open_dep open_at rtt isn ipid w0 wn jitter")
Conns.__doc__ = """Per connection, the transport's input: session, the connection it waits for
(-1 none), when it opens (absolute, or after that one's last response), RTT, ISNs and first IP
ids ([C, 2] by direction), its writes (first row of ``wd``, count) and clock jitter."""
Link = namedtuple("Link", "dur_end mss ns_per_byte capture_side rwnd")
Link.__doc__ = """The path, per class: the run's end (ns), MSS, ns per byte at the access link,
the end the capture is on (0 client, 1 server) and the receive window (bytes)."""
# Inside: a connection's constants travel as one tuple ``cx`` = (conn, w0, wend, owd, rto): its
# index, its writes' rows [w0, wend), the one-way delay and the retransmission timeout; a
# segment's labels as ``seg`` = (req, phase, layout, segoff, writelen).


@helper
def packet_bound(wd, w0, wn, mss):
    """Upper bound on the packets a connection with writes ``w0:w0+wn`` can produce."""
    segs = 0
    for w in range(w0, w0 + wn):
        segs += (wd[w, WF_BYTES] + mss - 1) // mss
    return 2 * segs + 16


@kernel
def total_bound(c_w0, c_wn, wd, mss):
    """Packets buffer size that fits every connection."""
    total = 0
    for c in range(c_w0.shape[0]):
        total += packet_bound(wd, c_w0[c], c_wn[c], mss)
    return total


@kernel
def simulate(conns, wd, link, out, c_npk, c_resp_end, wo):
    """Simulate every connection of ``conns`` (``Conns``; its writes rows of ``wd``) in order
    over ``link`` (``Link``); fill ``out`` (int64[cap, P_COLS]).

    Connections: ``open_dep[c]`` is -1 for a session's first connection, opened at the
    absolute time ``open_at[c]``; otherwise the earlier connection whose last response it
    follows, opened ``open_at[c]`` ns after that response was delivered. A connection that
    would open at or after ``link.dur_end`` is skipped. Returns the number of packets
    written, or -1 if ``out`` is too small. ``c_npk`` gets packets per connection (0 =
    skipped), ``c_resp_end`` the delivery time of its last response, ``wo`` each write's
    delivery time and whether it was sent.
    """
    cap = out.shape[0]
    cur = 0
    wo[:, WO_DELIV] = -1
    wo[:, WO_ISSUED] = 0
    S = np.empty(S_LEN, np.int64)
    c_open_dep, c_open_at = conns.open_dep, conns.open_at
    for c in range(c_open_dep.shape[0]):
        c_npk[c] = 0
        c_resp_end[c] = -1
        if c_open_dep[c] < 0:
            t_open = c_open_at[c]
        else:
            prev_end = c_resp_end[c_open_dep[c]]
            if prev_end < 0:
                continue
            t_open = prev_end + c_open_at[c]
        if t_open >= link.dur_end:
            continue
        if cur + packet_bound(wd, conns.w0[c], conns.wn[c], link.mss) > cap:
            return -1
        n = _conn(c, t_open, conns, wd, wo, S, link, out, cur, c_resp_end)
        c_npk[c] = n
        cur += n
    return cur


@helper
def _next_w(wd, w, end, d):
    while w < end and wd[w, WF_DIR] != d:
        w += 1
    return w


@helper
def _emit(out, i, S, cx, link, d, t, flags, seq_rel, plen, seg):
    """Record packet ``i`` sent by side ``d`` at ``t`` (later if its link is busy); it
    acknowledges what ``d`` has received. ``seg``: its labels (req, phase, layout, segoff,
    writelen). Returns ``i + 1``."""
    conn, _, _, owd, _ = cx
    req, phase, layout, segoff, writelen = seg
    wlen = (HDR_SYN if flags & SYN else HDR_DATA) + plen
    t_send = max(t, S[S_LINKFREE + d])
    S[S_LINKFREE + d] = t_send + np.int64(wlen * link.ns_per_byte) + 1
    out[i, P_TS] = t_send + (owd if d != link.capture_side else 0)
    out[i, P_SEND] = t_send
    out[i, P_CONN] = conn
    out[i, P_DIR] = d
    out[i, P_SEQ] = (S[S_ISN + d] + seq_rel) & 0xFFFFFFFF
    out[i, P_ACK] = (S[S_ISN + 1 - d] + S[S_RCV + 1 - d]) & 0xFFFFFFFF if flags & ACK else 0
    out[i, P_FLAGS] = flags
    out[i, P_PLEN] = plen
    out[i, P_REQ] = req
    out[i, P_PHASE] = phase
    out[i, P_IPID] = (S[S_IPID + d] + S[S_CNT + d]) & 0xFFFF
    out[i, P_WLEN] = wlen
    out[i, P_LAYOUT] = layout
    out[i, P_SEGOFF] = segoff
    out[i, P_WRITELEN] = writelen
    out[i, P_WIN] = 0
    out[i, P_TSVAL] = 0
    out[i, P_TSECR] = 0
    S[S_CNT + d] += 1
    if S[S_HEAD + d] < 0:
        S[S_HEAD + d] = i
    if plen > 0:
        S[S_LASTSEND + d] = t
    return i + 1


@helper
def _ack_now(out, i, S, cx, link, s, t):
    """Side ``s`` sends a pure ACK of everything it has received."""
    i = _emit(out, i, S, cx, link, s, t, ACK, S[S_NXT + s], 0, (S[S_STREQ], S[S_STPHASE], 0, 0, 0))
    S[S_UNACKED + 1 - s] = 0
    S[S_TIMER + 1 - s] = INF
    return i


@helper
def _ready(S, wd, wo, ws, cx, link, d, t_est, jitter):
    """When side ``d``'s next write is ready (INF while it waits on something not yet done).

    A write waits for a write of its own side to be written, or for one of the other side's
    to be delivered; writes of one side stay in order. A close happens at the run's end at the
    latest (after the reply in flight, if any)."""
    _, w0, wend, _, _ = cx
    dur_end = link.dur_end
    w = S[S_NEXTW + d]
    if w >= wend:
        return INF
    dep = wd[w, WF_DEP]
    if wd[w, WF_FLAGS] & W_ABS:
        base_t = 0
    elif dep < 0:
        base_t = t_est
    elif wd[w0 + dep, WF_DIR] == d:
        base_t = ws[dep, WS_QTIME]
    else:
        base_t = wo[w0 + dep, WO_DELIV]
    t = INF
    if base_t >= 0:
        t = max(base_t + wd[w, WF_DELAY], S[S_LASTQ + d])
    if wd[w, WF_FLAGS] & W_CLOSE:
        if S[S_TRUNC]:
            t = max(max(dur_end + jitter, S[S_LASTDOWN]), S[S_LASTQ + d])
        elif t < INF:
            t = min(t, max(max(dur_end + jitter, base_t), S[S_LASTQ + d]))
    return t


@helper
def _send(out, i, S, wd, ws, cx, link, d, t):
    """Side ``d`` sends what its congestion and receive windows allow, then a pending FIN."""
    _, w0, wend, _, rto = cx
    mss, rwnd = link.mss, link.rwnd
    if S[S_NXT + d] == S[S_UNA + d] and t - S[S_LASTSEND + d] > rto:
        S[S_CWND + d] = min(S[S_CWND + d], IW_SEGMENTS * mss)  # restart after idle
    while S[S_NXT + d] < S[S_QUEUED + d] and S[S_NXT + d] - S[S_UNA + d] < S[S_CWND + d]:
        nxt = S[S_NXT + d]
        w = S[S_SENDW + d]
        while ws[w - w0, WS_END] <= nxt:
            w = _next_w(wd, w + 1, wend, d)
        S[S_SENDW + d] = w
        w_start, w_end = ws[w - w0, WS_START], ws[w - w0, WS_END]
        seg_end = min(nxt + mss, w_end)
        if seg_end - S[S_UNA + d] > rwnd:
            break
        flags = ACK | PSH if seg_end == w_end else ACK
        i = _emit(out, i, S, cx, link, d, t, flags, nxt, seg_end - nxt,
                  (wd[w, WF_REQ], wd[w, WF_PHASE], wd[w, WF_LAYOUT], nxt - w_start, w_end - w_start))
        S[S_NXT + d] = seg_end
        S[S_UNACKED + 1 - d] = 0  # the data segment carries the ACK
        S[S_TIMER + 1 - d] = INF
    if S[S_FINPEND + d] and not S[S_FINSENT + d] and S[S_NXT + d] == S[S_QUEUED + d]:
        i = _emit(out, i, S, cx, link, d, t, FIN | ACK, S[S_NXT + d], 0, (-1, PH_TEARDOWN, 0, 0, 0))
        S[S_NXT + d] += 1
        S[S_FINSENT + d] = 1
        S[S_UNACKED + 1 - d] = 0
        S[S_TIMER + 1 - d] = INF
    return i


@helper
def _conn(conn, t_open, conns, wd, wo, S, link, out, base, c_resp_end):
    """Connection ``conn`` of ``conns``, opened at ``t_open``: its packets from ``out[base]``;
    returns how many."""
    rtt, w0, wn, jitter = conns.rtt[conn], conns.w0[conn], conns.wn[conn], conns.jitter[conn]
    mss = link.mss
    owd = rtt // 2
    rto = rtt + RTO_MIN_NS
    wend = w0 + wn
    cx = (conn, w0, wend, owd, rto)
    ws = np.zeros((wn, 3), np.int64)
    ws[:, WS_QTIME] = -1
    for d in range(2):
        S[S_NXT + d] = S[S_UNA + d] = S[S_QUEUED + d] = S[S_RCV + d] = 1  # the SYN took 0
        S[S_CWND + d] = IW_SEGMENTS * mss
        S[S_LINKFREE + d] = S[S_UNACKED + d] = S[S_CNT + d] = 0
        S[S_TIMER + d] = INF
        S[S_HEAD + d] = -1
        w = _next_w(wd, w0, wend, d)
        S[S_NEXTW + d] = S[S_SENDW + d] = S[S_DELIVW + d] = w
        S[S_FINPEND + d] = S[S_FINSENT + d] = S[S_LASTQ + d] = 0
    S[S_ISN], S[S_ISN + 1] = conns.isn[conn, 0], conns.isn[conn, 1]
    S[S_IPID], S[S_IPID + 1] = conns.ipid[conn, 0], conns.ipid[conn, 1]
    S[S_STREQ], S[S_STPHASE] = -1, PH_HANDSHAKE
    S[S_TRUNC] = S[S_DONE] = 0
    S[S_LASTDOWN] = t_open
    i = base
    # three-way handshake (no data: its arrivals need no processing)
    hs = (-1, PH_HANDSHAKE, 0, 0, 0)
    S[S_RCV], S[S_RCV + 1] = 0, 0
    i = _emit(out, i, S, cx, link, 0, t_open, SYN, 0, 0, hs)
    S[S_RCV] = 1
    i = _emit(out, i, S, cx, link, 1, t_open + owd, SYN | ACK, 0, 0, hs)
    S[S_RCV + 1] = 1
    t_est = t_open + rtt
    i = _emit(out, i, S, cx, link, 0, t_est, ACK, 1, 0, hs)
    S[S_HEAD], S[S_HEAD + 1] = -1, -1
    S[S_LASTSEND], S[S_LASTSEND + 1] = t_est, t_open + owd
    guard = 0
    while not S[S_DONE]:
        guard += 1
        if guard > 64 * (wn + 64) + 8 * (i - base + 64):
            break
        # candidate events: arrivals (FIFO per direction), delayed-ACK timers, writes
        ta0 = out[S[S_HEAD], P_SEND] + owd if S[S_HEAD] >= 0 else INF
        ta1 = out[S[S_HEAD + 1], P_SEND] + owd if S[S_HEAD + 1] >= 0 else INF
        tw0 = _ready(S, wd, wo, ws, cx, link, 0, t_est, jitter)
        tw1 = _ready(S, wd, wo, ws, cx, link, 1, t_est, jitter)
        t = min(min(ta0, ta1), min(min(S[S_TIMER], S[S_TIMER + 1]), min(tw0, tw1)))
        if t >= INF:
            break
        if ta0 == t or ta1 == t:
            d = 0 if ta0 == t else 1
            i = _arrive(out, i, S, wd, wo, ws, cx, link, d, t)
        elif S[S_TIMER] == t or S[S_TIMER + 1] == t:
            d = 0 if S[S_TIMER] == t else 1
            i = _ack_now(out, i, S, cx, link, 1 - d, t)
        else:
            d = 0 if tw0 == t else 1
            i = put_write(out, i, S, wd, wo, ws, cx, link, d, t, c_resp_end)
    return i - base


@helper
def _arrive(out, i, S, wd, wo, ws, cx, link, d, t):
    """The next in-flight packet of direction ``d`` reaches side ``s = 1 - d``."""
    _, w0, wend, _, _ = cx
    mss = link.mss
    p = S[S_HEAD + d]
    q = p + 1
    while q < i and out[q, P_DIR] != d:
        q += 1
    S[S_HEAD + d] = q if q < i else -1
    s = 1 - d
    plen = out[p, P_PLEN]
    flags = out[p, P_FLAGS]
    if plen > 0:
        S[S_RCV + d] = ((out[p, P_SEQ] - S[S_ISN + d]) & 0xFFFFFFFF) + plen
        S[S_UNACKED + d] += 1
        wd_ = S[S_DELIVW + d]
        while wd_ < wend and ws[wd_ - w0, WS_END] > 0 and ws[wd_ - w0, WS_END] <= S[S_RCV + d]:
            wo[wd_, WO_DELIV] = t
            if d == 1:
                S[S_LASTDOWN] = t
            if (wd[wd_, WF_FLAGS] & W_REQ and S[S_STREQ] == wd[wd_, WF_REQ]
                    and S[S_STPHASE] == PH_REQUEST):
                S[S_STPHASE] = PH_PREFILL_WAIT
            wd_ = _next_w(wd, wd_ + 1, wend, d)
        S[S_DELIVW + d] = wd_
    if flags & ACK:
        a = (out[p, P_ACK] - S[S_ISN + s]) & 0xFFFFFFFF
        if a > S[S_UNA + s]:
            S[S_CWND + s] += min(a - S[S_UNA + s], 2 * mss)
            S[S_UNA + s] = a
    if flags & FIN:
        S[S_RCV + d] += 1
        S[S_UNACKED + d] = 0
        S[S_TIMER + d] = INF
        if s == 1:  # the server answers the client's FIN with its own
            i = _emit(out, i, S, cx, link, 1, t, FIN | ACK, S[S_NXT + 1], 0, (-1, PH_TEARDOWN, 0, 0, 0))
            S[S_NXT + 1] += 1
            S[S_FINSENT + 1] = 1
        else:  # the client acknowledges the server's FIN: done
            i = _emit(out, i, S, cx, link, 0, t, ACK, S[S_NXT], 0, (-1, PH_TEARDOWN, 0, 0, 0))
            S[S_DONE] = 1
        return i
    if plen > 0:
        if S[S_UNACKED + d] >= 2:
            i = _ack_now(out, i, S, cx, link, s, t)
        elif S[S_TIMER + d] >= INF:
            S[S_TIMER + d] = t + ATO_NS
    return _send(out, i, S, wd, ws, cx, link, s, t)


@helper
def put_write(out, i, S, wd, wo, ws, cx, link, d, t, c_resp_end):
    """Side ``d``'s application writes its next write at ``t`` (or, for a later turn after
    the run's end, stops: the connection goes straight to its close)."""
    conn, w0, wend, _, _ = cx
    w = S[S_NEXTW + d]
    if wd[w, WF_FLAGS] & W_TURN and t >= link.dur_end:
        S[S_TRUNC] = 1
        close = w
        while close < wend and not wd[close, WF_FLAGS] & W_CLOSE:
            close += 1
        S[S_NEXTW] = close
        S[S_NEXTW + 1] = wend
        return i
    ws[w - w0, WS_START] = S[S_QUEUED + d]
    S[S_QUEUED + d] += wd[w, WF_BYTES]
    ws[w - w0, WS_END] = S[S_QUEUED + d]
    ws[w - w0, WS_QTIME] = t
    S[S_LASTQ + d] = t
    wo[w, WO_ISSUED] = 1
    S[S_STREQ], S[S_STPHASE] = wd[w, WF_REQ], wd[w, WF_PHASE]
    if wd[w, WF_FLAGS] & W_CLOSE:
        S[S_FINPEND + d] = 1
        if not S[S_TRUNC]:
            c_resp_end[conn] = wo[w0 + wd[w, WF_DEP], WO_DELIV]
    S[S_NEXTW + d] = _next_w(wd, w + 1, wend, d)
    return _send(out, i, S, wd, ws, cx, link, d, t)
