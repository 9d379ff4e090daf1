"""TCP emulation: connections and their application writes in, captured packets out.

A flow model describes each connection as a list of *writes*: (direction, bytes, the write it
waits for, delay after that write is written or delivered, labels). This kernel runs a small
event simulation per connection -- three-way handshake, segmentation at the MSS without
spanning writes (TCP_NODELAY senders), slow start with ABC (RFC 3465, L=2) and restart after
idle (RFC 5681), the peer's advertised receive window, delayed ACKs (every second segment or
a 40 ms timer, piggybacked on data), and a FIN exchange -- and records every packet at the
capture point. Segments, link timing, stacks, timestamps and windows: ``kernels.tcpseg``. On
an impaired path (``Link.impaired``) packets are lost before or after the tap, delayed, held
back or duplicated on the path (``kernels.path``), and both ends recover as Linux does:
``kernels.recovery`` and ``kernels.sack``. Sequence and acknowledgement
numbers are those of the simulation, so they are consistent by construction.

Times are int64 ns on the model's clock (0 = capture start). Directions: 0 up (client to
server), 1 down. A packet's capture time is when it starts on the capture side's link: its
send time there, or on the far side when it has crossed the path and waited for that link.
Each host reacts to an arrival (its last bit) a kernel turnaround later (``Link.turn``).

Layout for speed: a connection's state is one small int64 array (``S_*`` offsets, two slots
per direction) and writes are rows of one int64 matrix (``WF_*`` columns), so the helpers
take a handful of arrays rather than dozens.
"""
import numpy as np

from . import path
from . import recovery as rc
from .codes import ACK, FIN, PH_HANDSHAKE, PH_PREFILL_WAIT, PH_REQUEST, PH_TEARDOWN, PSH
from .jit import helper, inline, kernel
from .rng import derive
from .sack import first_block, rcv_data
from .stacks import TS_OPT_BYTES
from .tcpseg import abort, emit, handshake, next_w, queue_write, ready, setup, turnaround
from .tcpstate import (  # noqa: F401 (the inputs and write layout are tcp's to its callers)
    INF,
    P_ACK,
    P_ARR,
    P_DIR,
    P_FLAGS,
    P_PLEN,
    P_SEND,
    P_SEQ,
    P_TRUTH,
    P_TSVAL,
    P_WIN,
    S_CNT,
    S_CWND,
    S_DELIVW,
    S_DONE,
    S_EMSS,
    S_FINPEND,
    S_FINRCV,
    S_FINSENT,
    S_HEAD,
    S_HSRTT,
    S_ISN,
    S_LASTDOWN,
    S_LASTQ,
    S_LASTSEG,
    S_LASTSEND,
    S_LEN,
    S_LINKFREE,
    S_NEXTW,
    S_NH,
    S_NXT,
    S_PEEREDGE,
    S_QUEUED,
    S_RCV,
    S_RTOT,
    S_RTTSEQ,
    S_RTTTIME,
    S_SENDW,
    S_STPHASE,
    S_STREQ,
    S_TIMER,
    S_TLPT,
    S_TRUNC,
    S_TSRECENT,
    S_UNA,
    S_UNACKED,
    T_LOST,
    T_REORD,
    W_ABS,
    W_CLOSE,
    W_REQ,
    W_TURN,
    WF_BYTES,
    WF_COLS,
    WF_DELAY,
    WF_DEP,
    WF_DIR,
    WF_FLAGS,
    WF_LAYOUT,
    WF_PHASE,
    WF_REQ,
    WO_DELIV,
    WO_ISSUED,
    WS_END,
    WS_QTIME,
    WS_START,
    Conns,
    Hosts,
    Link,
)

ATO_NS = 40_000_000  # delayed-ACK timer
RTO_MIN_NS = 200_000_000
IW_SEGMENTS = 10  # initial window, RFC 6928
# write matrix columns (WF_*, int64[W, WF_COLS]) and per-write state (WS_*): kernels.tcpseg

# Inside: a connection's constants travel as one tuple ``cx`` = (conn, w0, wend, owd, rto, ck,
# base, lk, lim, pk): its index, its writes' rows [w0, wend), the one-way delay, the timeout of
# a restart after idle, its key, its first row of ``out``, its loss draws' key, the row it
# stops at (impaired paths) and its path draws' key (kernels.path); a segment's labels as
# ``seg`` = (req, phase, layout, segoff, writelen). The recovery's state, SACK blocks and
# held-back frames live in S too (kernels.recovery, sack, path).
LOSS_BOUND = 4  # an impaired path's connection: at most this many times a clean one's packets


@helper
def packet_bound(wd, w0, wn, mss, mult):
    """Upper bound on the packets a connection with writes ``w0:w0+wn`` can produce (``mult``
    times a clean path's: an impaired one stops its connection there)."""
    segs = 0
    m = mss - TS_OPT_BYTES  # the least a segment may carry
    for w in range(w0, w0 + wn):
        segs += (wd[w, WF_BYTES] + m - 1) // m
    return (2 * segs + 16) * mult


@kernel
def total_bound(c_w0, c_wn, wd, mss, mult):
    """Packets buffer size that fits every connection."""
    total = 0
    for c in range(c_w0.shape[0]):
        total += packet_bound(wd, c_w0[c], c_wn[c], mss, mult)
    return total


@kernel
def simulate(conns, wd, link, hosts, out, c_npk, c_resp_end, c_hsrtt, wo):
    """Simulate every connection of ``conns`` (``Conns``; its writes rows of ``wd``) in order
    over ``link`` (``Link``) between ``hosts`` (``Hosts``); fill ``out`` (int64[cap, P_COLS]).

    Connections: ``open_dep[c]`` is -1 for a session's first connection, opened at the
    absolute time ``open_at[c]``; otherwise the earlier connection whose last response it
    follows, opened ``open_at[c]`` ns after that response was delivered. A connection that
    would open at or after ``link.dur_end`` is skipped. Returns the number of packets
    written, or -1 if ``out`` is too small. ``c_npk`` gets packets per connection (0 =
    skipped), ``c_resp_end`` the delivery time of its last response, ``c_hsrtt`` the
    handshake's RTT at the client (its SYN sent -> its ACK of the SYN/ACK sent), ``wo`` each write's
    delivery time and whether it was sent.
    """
    cap = out.shape[0]
    cur = 0
    wo[:, WO_DELIV] = -1
    wo[:, WO_ISSUED] = 0
    S = np.empty(S_LEN, np.int64)
    if link.jitter:
        path.set_jitter(S, hosts.jitter)
    mult = LOSS_BOUND if link.impaired else 1
    c_open_dep, c_open_at = conns.open_dep, conns.open_at
    for c in range(c_open_dep.shape[0]):
        c_npk[c] = 0
        c_resp_end[c] = -1
        c_hsrtt[c] = 0
        if c_open_dep[c] < 0:
            t_open = c_open_at[c]
        else:
            prev_end = c_resp_end[c_open_dep[c]]
            if prev_end < 0:
                continue
            t_open = prev_end + c_open_at[c]
        if t_open >= link.dur_end:
            continue
        bound = packet_bound(wd, conns.w0[c], conns.wn[c], link.mss, mult)
        if cur + bound > cap:
            return -1
        n = _conn(c, t_open, conns, wd, wo, S, link, hosts, out, cur, cur + bound - 24,
                  c_resp_end)
        c_npk[c] = n
        c_hsrtt[c] = S[S_HSRTT]
        cur += n
    return cur


@inline
def _ack_now(out, i, S, cx, link, s, t):
    """Side ``s`` sends a pure ACK of everything it has received (with SACK blocks, on an
    impaired path)."""
    lo = hi = np.int64(0)
    if link.impaired:  # its SACK block, as sequence numbers (none: 0 0)
        lo, hi = first_block(S, 1 - s)
        if hi > lo:
            lo, hi = (S[S_ISN + 1 - s] + lo) & 0xFFFFFFFF, (S[S_ISN + 1 - s] + hi) & 0xFFFFFFFF
    i = emit(out, i, S, cx, link, s, t, ACK, S[S_NXT + s], 0, (S[S_STREQ], S[S_STPHASE], 0, lo, hi))
    S[S_UNACKED + 1 - s] = 0
    S[S_TIMER + 1 - s] = INF
    return i


@inline
def _send(out, i, S, wd, ws, cx, link, d, t):
    """Side ``d`` sends what its congestion and receive windows allow (on an impaired path
    its lost bytes first), then a pending FIN."""
    w0, wend, rto = cx[1], cx[2], cx[4]
    mss = S[S_EMSS]
    if S[S_NXT + d] == S[S_UNA + d] and t - S[S_LASTSEND + d] > rto:
        S[S_CWND + d] = min(S[S_CWND + d], IW_SEGMENTS * mss)  # restart after idle
    flight = S[S_NXT + d] - S[S_UNA + d]
    new = False
    if link.impaired:
        i = rc.resend(out, i, S, wd, ws, cx, link, d, t)
        flight = rc.pipe(S, d)
    while S[S_NXT + d] < S[S_QUEUED + d] and flight < S[S_CWND + d] and i < cx[8]:
        nxt = S[S_NXT + d]
        w = S[S_SENDW + d]
        while ws[w - w0, WS_END] <= nxt:
            w = next_w(wd, w + 1, wend, d)
        S[S_SENDW + d] = w
        w_start, w_end = ws[w - w0, WS_START], ws[w - w0, WS_END]
        seg_end = min(nxt + mss, w_end)
        if seg_end > S[S_PEEREDGE + d]:  # the peer's advertised window
            break
        flags = ACK | PSH if seg_end == w_end else ACK
        i = emit(out, i, S, cx, link, d, t, flags, nxt, seg_end - nxt,
                  (wd[w, WF_REQ], wd[w, WF_PHASE], wd[w, WF_LAYOUT], nxt - w_start, w_end - w_start))
        if link.impaired:
            new = True
            S[S_LASTSEG + d] = nxt
            if S[S_RTTSEQ + d] == 0:  # time one segment at a time (Karn: never a resend)
                S[S_RTTSEQ + d], S[S_RTTTIME + d] = seg_end, t
        flight += seg_end - nxt
        S[S_NXT + d] = seg_end
        S[S_UNACKED + 1 - d] = 0  # the data segment carries the ACK
        S[S_TIMER + 1 - d] = INF
    if S[S_FINPEND + d] and not S[S_FINSENT + d] and S[S_NXT + d] == S[S_QUEUED + d]:
        i = emit(out, i, S, cx, link, d, t, FIN | ACK, S[S_NXT + d], 0, (-1, PH_TEARDOWN, 0, 0, 0))
        S[S_NXT + d] += 1
        S[S_FINSENT + d] = 1
        S[S_UNACKED + 1 - d] = 0
        S[S_TIMER + 1 - d] = INF
    if link.impaired:
        rc.after_send(S, d, t, new)
    return i


@helper
def _conn(conn, t_open, conns, wd, wo, S, link, hosts, out, base, lim, c_resp_end):
    """Connection ``conn`` of ``conns``, opened at ``t_open``: its packets from ``out[base]``
    (an impaired path's stops before ``lim``); returns how many."""
    rtt, w0, wn, jitter = conns.rtt[conn], conns.w0[conn], conns.wn[conn], conns.jitter[conn]
    owd = rtt // 2
    rto = rtt + RTO_MIN_NS
    wend = w0 + wn
    ck = derive(derive(link.key, conns.isn[conn, 0]), conns.isn[conn, 1])
    impaired = link.impaired
    cx = (conn, w0, wend, owd, rto, ck, base, derive(ck, 0x1055), lim if impaired else INF,
          derive(ck, 0x9A7))
    ws = np.zeros((wn, 3), np.int64)
    ws[:, WS_QTIME] = -1
    setup(S, conns, conn, ck, link, hosts.app_read)
    for d in range(2):
        S[S_NXT + d] = S[S_UNA + d] = S[S_QUEUED + d] = S[S_RCV + d] = 1  # the SYN took 0
        S[S_CWND + d] = IW_SEGMENTS * S[S_EMSS]
        S[S_LINKFREE + d] = S[S_UNACKED + d] = S[S_CNT + d] = 0
        S[S_TIMER + d] = INF
        S[S_HEAD + d] = -1
        w = next_w(wd, w0, wend, d)
        S[S_NEXTW + d] = S[S_SENDW + d] = S[S_DELIVW + d] = w
        S[S_FINPEND + d] = S[S_FINSENT + d] = S[S_LASTQ + d] = 0
        if impaired:
            rc.init(S, d, rtt)
    S[S_STREQ], S[S_STPHASE] = -1, PH_HANDSHAKE
    S[S_TRUNC] = S[S_DONE] = 0
    S[S_LASTDOWN] = t_open
    # three-way handshake (no data: its arrivals need no processing)
    turn = hosts.turn
    i, t_est = handshake(out, base, S, cx, link, turn, t_open)
    S[S_HEAD], S[S_HEAD + 1] = -1, -1
    S[S_LASTSEND], S[S_LASTSEND + 1] = t_est, out[base + 1, P_SEND]
    guard = 0
    while not S[S_DONE]:
        guard += 1
        if guard > 64 * (wn + 64) + 8 * (i - base + 64) or i >= cx[8]:
            break
        # candidate events: arrivals (FIFO per direction), delayed-ACK timers, writes
        ta0 = out[S[S_HEAD], P_ARR] if S[S_HEAD] >= 0 else INF
        ta1 = out[S[S_HEAD + 1], P_ARR] if S[S_HEAD + 1] >= 0 else INF
        if impaired:  # frames held back on the path (reordered)
            ta0, ta1 = min(ta0, path.held_next(out, S, 0)), min(ta1, path.held_next(out, S, 1))
        tw0 = ready(S, wd, wo, ws, cx, link, 0, t_est, jitter)
        tw1 = ready(S, wd, wo, ws, cx, link, 1, t_est, jitter)
        tr0 = tr1 = INF
        if impaired:  # retransmission and tail-loss-probe timers
            tr0, tr1 = min(S[S_RTOT], S[S_TLPT]), min(S[S_RTOT + 1], S[S_TLPT + 1])
        t = min(min(min(ta0, ta1), min(min(S[S_TIMER], S[S_TIMER + 1]), min(tw0, tw1))),
                min(tr0, tr1))
        if t >= INF:
            break
        if ta0 == t or ta1 == t:
            d = 0 if ta0 == t else 1
            i = _arrive(out, i, S, wd, wo, ws, cx, link, turn, d, t)
        elif S[S_TIMER] == t or S[S_TIMER + 1] == t:
            d = 0 if S[S_TIMER] == t else 1
            i = _ack_now(out, i, S, cx, link, 1 - d, t)
        elif tr0 == t or tr1 == t:
            d = 0 if tr0 == t else 1
            i = rc.timer(out, i, S, wd, ws, cx, link, d, t)
            i = _send(out, i, S, wd, ws, cx, link, d, t)
        else:
            d = 0 if tw0 == t else 1
            q = queue_write(S, wd, wo, ws, cx, link, d, t, c_resp_end)
            i = abort(out, i, S, wd, cx, link, d, t) if q == 2 else (
                _send(out, i, S, wd, ws, cx, link, d, t) if q else i)
    return i - base


@inline
def _arrive(out, i, S, wd, wo, ws, cx, link, turn, d, t):
    """The next in-flight packet of direction ``d`` reaches side ``s = 1 - d``, whose kernel
    reacts a turnaround later (a lost packet never does)."""
    w0, wend = cx[1], cx[2]
    mss = S[S_EMSS]
    impaired = link.impaired
    p = S[S_HEAD + d]
    h = path.take_held(out, S, d, t, p) if impaired and S[S_NH + d] else -1
    if h >= 0:
        p = h
    else:  # the next in first-in first-out order (a held-back frame is not)
        q = p + 1
        while q < i and (out[q, P_DIR] != d or out[q, P_TRUTH] & T_REORD):
            q += 1
        S[S_HEAD + d] = q if q < i else -1
    if out[p, P_TRUTH] & T_LOST:
        return i
    s = 1 - d
    plen = out[p, P_PLEN]
    flags = out[p, P_FLAGS]
    t_r = t + turnaround(S, cx[5], turn, s)  # when s's kernel has processed it
    quick = 0
    if plen > 0:
        sr = (out[p, P_SEQ] - S[S_ISN + d]) & 0xFFFFFFFF
        if impaired:
            quick = rcv_data(S, d, sr, sr + plen)
        else:
            S[S_RCV + d] = sr + plen
        S[S_UNACKED + d] += 1
        wd_ = S[S_DELIVW + d]
        while wd_ < wend and ws[wd_ - w0, WS_END] > 0 and ws[wd_ - w0, WS_END] <= S[S_RCV + d]:
            wo[wd_, WO_DELIV] = t_r  # the application has it once the kernel has
            if d == 1:
                S[S_LASTDOWN] = t_r
            if (wd[wd_, WF_FLAGS] & W_REQ and S[S_STREQ] == wd[wd_, WF_REQ]
                    and S[S_STPHASE] == PH_REQUEST):
                S[S_STPHASE] = PH_PREFILL_WAIT
            wd_ = next_w(wd, wd_ + 1, wend, d)
        S[S_DELIVW + d] = wd_
    S[S_TSRECENT + s] = out[p, P_TSVAL]
    if flags & ACK:
        a = (out[p, P_ACK] - S[S_ISN + s]) & 0xFFFFFFFF
        if impaired:
            rc.on_ack(out, p, S, s, a, t_r)
        elif a > S[S_UNA + s]:
            S[S_CWND + s] += min(a - S[S_UNA + s], 2 * mss)
            S[S_UNA + s] = a
        S[S_PEEREDGE + s] = max(S[S_PEEREDGE + s], a + out[p, P_WIN])
    if impaired:  # a FIN after a hole waits for it
        if flags & FIN and ((out[p, P_SEQ] - S[S_ISN + d]) & 0xFFFFFFFF) != S[S_RCV + d]:
            S[S_FINRCV + d] = ((out[p, P_SEQ] - S[S_ISN + d]) & 0xFFFFFFFF) + 1
            flags = 0
            quick = 1
        elif S[S_FINRCV + d] and S[S_RCV + d] == S[S_FINRCV + d] - 1:
            S[S_FINRCV + d] = 0
            flags = FIN
    if flags & FIN:
        S[S_RCV + d] += 1
        S[S_UNACKED + d] = 0
        S[S_TIMER + d] = INF
        if s == 1:  # the server answers the client's FIN with its own
            i = emit(out, i, S, cx, link, 1, t_r, FIN | ACK, S[S_NXT + 1], 0, (-1, PH_TEARDOWN, 0, 0, 0))
            S[S_NXT + 1] += 1
            S[S_FINSENT + 1] = 1
        else:  # the client acknowledges the server's FIN: done
            i = emit(out, i, S, cx, link, 0, t_r, ACK, S[S_NXT], 0, (-1, PH_TEARDOWN, 0, 0, 0))
            S[S_DONE] = 1
        return i
    if plen > 0 or quick:
        if S[S_UNACKED + d] >= 2 or quick:
            i = _ack_now(out, i, S, cx, link, s, t_r)
        elif S[S_TIMER + d] >= INF:
            S[S_TIMER + d] = t + ATO_NS
    return _send(out, i, S, wd, ws, cx, link, s, t_r)
