"""The transport kernel's segments: one connection's state layout, how a segment is put on the
wire (link timing, header length by stack, TCP timestamps, the advertised window) and the
three-way handshake. ``kernels.tcp`` runs the connection's events over these.

Link timing (MODELS.md, serialization): a frame of L bytes occupies its sender's link for
(L + 24) x 8 / rate (FCS, preamble, SFD, inter-frame gap); after the one-way delay it is sent on
the receiver's link (store and forward: queued behind the direction's earlier frames there),
and the receiver has it when its last bit has arrived there. A tap on an end's link sees a
frame where it starts on that link. Each side's kernel reacts to an arrival after a
turnaround drawn per event (``Hosts.turn``); nothing a host sends shares a time with its cause.

Headers by stack (``kernels.stacks``): the SYN's options are its client OS's, the SYN/ACK's a
Linux server's answer; with timestamps on (both ends use them) every later segment carries 12
option bytes and at most MSS - 12 payload bytes.

Receive window: side ``s`` advertises room for the peer's bytes: its buffer limit grows from
its stack's SYN window by twice the bytes received (autotuning through slow start) up to its
maximum, less the bytes that arrived but wait for the application (read ``S_RDELAY`` after
they arrived); the right edge never moves left (RFC 9293), and a window is a whole multiple of
the side's scale. Draws: the connection's key ``ck`` (``derive(Link.key, ISNs)``): index
2n + s side s's n-th turnaround; 1_000_000 + s its read delay; 1_000_002 + s its TSval offset.
"""
import numpy as np

from . import path
from .codes import ACK, PH_HANDSHAKE, RST, SYN
from .jit import helper, inline
from .rng import bits, uniform
from .sampling import sample, table_at
from .stacks import (
    K_RCVBUF_MAX,
    K_SYN_OPT_BYTES,
    K_SYN_WIN,
    K_TS,
    K_TS_HZ,
    K_WSCALE,
    STACKS,
    SYNACK_OPT_BYTES_NOTS,
    SYNACK_OPT_BYTES_TS,
    TS_OPT_BYTES,
    syn_window,
)
from .tcpstate import (  # noqa: F401 (the layout, for tcp, recovery and sack)
    HDR,
    IFG_BYTES,
    INF,
    P_ACK,
    P_ARR,
    P_CONN,
    P_DIR,
    P_FLAGS,
    P_IPID,
    P_LAYOUT,
    P_PHASE,
    P_PLEN,
    P_REQ,
    P_SEGOFF,
    P_SEND,
    P_SEQ,
    P_TRUTH,
    P_TS,
    P_TSECR,
    P_TSVAL,
    P_WIN,
    P_WLEN,
    P_WRITELEN,
    S_CAPMAX,
    S_CNT,
    S_DONE,
    S_EMSS,
    S_FARFREE,
    S_FINPEND,
    S_GAP,
    S_GE,
    S_HDR,
    S_HEAD,
    S_HSRTT,
    S_IPID,
    S_ISN,
    S_LASTDOWN,
    S_LASTQ,
    S_LASTSEND,
    S_LINKFREE,
    S_NDRAW,
    S_NEXTW,
    S_NXT,
    S_OS,
    S_PEEREDGE,
    S_QUEUED,
    S_RCV,
    S_RDELAY,
    S_RDP,
    S_READ,
    S_REDGE,
    S_SNDMAX,
    S_STPHASE,
    S_STREQ,
    S_TRUNC,
    S_TSOFF,
    S_TSON,
    S_TSRECENT,
    SACK_OPT_BYTES,
    T_AFTER,
    T_BEFORE,
    T_GAP,
    T_LOST,
    T_RETX,
    TURN_STEPS,
    W_ABS,
    W_CLOSE,
    W_RST,
    W_TURN,
    WF_BYTES,
    WF_DELAY,
    WF_DEP,
    WF_DIR,
    WF_FLAGS,
    WF_PHASE,
    WF_REQ,
    WO_DELIV,
    WO_ISSUED,
    WS_END,
    WS_QTIME,
    WS_START,
)


@inline
def ser_ns(wlen, ns_per_byte):
    """Serialization time (ns, at least 1) of a frame of ``wlen`` bytes."""
    return max(np.int64(1), np.int64(np.ceil((wlen + IFG_BYTES) * ns_per_byte)))


@inline
def turnaround(S, ck, turn, s):
    """Side ``s``'s next kernel turnaround (ns, at least 1), drawn from its distribution
    (``turn[s]``: its quantiles at k / TURN_STEPS, interpolated: one draw costs no
    logarithm, a few every packet would)."""
    n = S[S_NDRAW + s]
    S[S_NDRAW + s] = n + 1
    return max(np.int64(1), np.int64(table_at(turn[s], 0, uniform(ck, 2 * n + s) * TURN_STEPS)))


@inline
def window(out, i, S, base, mss, s, t):
    """The window side ``s`` advertises at ``t`` (bytes, a multiple of its scale), and its new
    right edge."""
    d = 1 - s
    os_ = S[S_OS + s]
    rcv = S[S_RCV + d]
    q = S[S_RDP + s]  # the application has read the data that arrived S_RDELAY ago
    while q < i:
        if out[q, P_DIR] == d and out[q, P_PLEN] > 0 and not out[q, P_TRUTH] & T_LOST:
            end = ((out[q, P_SEQ] - S[S_ISN + d]) & 0xFFFFFFFF) + out[q, P_PLEN]
            if end > rcv or out[q, P_ARR] + S[S_RDELAY + s] > t:
                break
            S[S_READ + s] = max(S[S_READ + s], end)
        q += 1
    S[S_RDP + s] = max(q, base)
    ws = STACKS[os_, K_WSCALE]
    top = min(STACKS[os_, K_RCVBUF_MAX], np.int64(65535) << ws)
    cap = min(top, STACKS[os_, K_SYN_WIN] + 2 * rcv)
    w = max(cap - (rcv - S[S_READ + s]), min(cap, 4 * mss))
    w = max(w, S[S_REDGE + s] - rcv)  # never shrink
    unit = np.int64(1) << ws
    w = min((w + unit - 1) // unit * unit, np.int64(65535) << ws)
    S[S_REDGE + s] = rcv + w
    return w


@inline
def emit(out, i, S, cx, link, d, t, flags, seq_rel, plen, seg):
    """Record packet ``i`` sent by side ``d`` at ``t`` (later if its link is busy); it
    acknowledges what ``d`` has received. ``seg``: its labels (req, phase, layout, segoff,
    writelen). Returns ``i + 1``."""
    conn, owd, base = cx[0], cx[3], cx[6]
    req, phase, layout, segoff, writelen = seg
    if flags & SYN:
        opt = STACKS[S[S_OS], K_SYN_OPT_BYTES] if d == 0 else \
            (SYNACK_OPT_BYTES_TS if S[S_TSON] else SYNACK_OPT_BYTES_NOTS)
        wlen = HDR + (opt if link.stack_hdr else 12)
    else:
        wlen = S[S_HDR] + plen
        if segoff != writelen and plen == 0:  # a pure ACK with a SACK block
            wlen += SACK_OPT_BYTES
    near, far = (link.ns_byte_c, link.ns_byte_s) if d == 0 else (link.ns_byte_s, link.ns_byte_c)
    t_send = max(t, S[S_LINKFREE + d])
    S[S_LINKFREE + d] = t_send + ser_ns(wlen, near)
    jit = path.jitter_ns(S, cx, d) if link.jitter else 0
    t_far = max(S[S_LINKFREE + d] + owd + jit, S[S_FARFREE + d])
    s_far = ser_ns(wlen, far)
    S[S_FARFREE + d] = t_far + s_far
    out[i, P_TS] = t_send if d == link.capture_side else t_far
    out[i, P_SEND] = t_send
    out[i, P_ARR] = t_far + s_far
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
    if flags & SYN:  # unscaled in a SYN; the value the encoder writes (stacks.syn_window)
        out[i, P_WIN] = syn_window(S[S_OS + d], link.mss, S[S_TSON], d)
        S[S_REDGE + d] = 1 + out[i, P_WIN]
    else:
        out[i, P_WIN] = window(out, i, S, base, link.mss, d, t_send)
    if S[S_TSON]:
        hz = STACKS[S[S_OS + d], K_TS_HZ]
        out[i, P_TSVAL] = (S[S_TSOFF + d] + t_send * hz // 1_000_000_000) & 0xFFFFFFFF
        out[i, P_TSECR] = S[S_TSRECENT + d]
    else:
        out[i, P_TSVAL] = 0
        out[i, P_TSECR] = 0
    if plen > 0:
        S[S_LASTSEND + d] = t
    if link.impaired:
        path.truth(out, i, S, cx, link, d, flags, seq_rel, plen, phase)
        S[S_CNT + d] += 1
        return path.through(out, i, S, cx, link, d, flags, phase, s_far)
    out[i, P_TRUTH] = 0
    S[S_CNT + d] += 1
    if S[S_HEAD + d] < 0:
        S[S_HEAD + d] = i
    return i + 1


@helper
def setup(S, conns, conn, ck, link, app_read):
    """The per-connection constants of ``S``: stacks, header sizes, timestamp clocks and
    offsets, the application's read delays."""
    for s in range(2):
        S[S_OS + s] = conns.os[conn, s]
        S[S_ISN + s], S[S_IPID + s] = conns.isn[conn, s], conns.ipid[conn, s]
        S[S_FARFREE + s] = S[S_TSRECENT + s] = S[S_READ + s] = S[S_NDRAW + s] = 0
        S[S_TSOFF + s] = np.int64(bits(ck, 1_000_002 + s) & np.uint64(0xFFFFFFFF))
        S[S_RDELAY + s] = np.int64(sample(app_read, uniform(ck, 1_000_000 + s)))
        S[S_REDGE + s] = 1
    S[S_TSON] = STACKS[S[S_OS], K_TS] * STACKS[S[S_OS + 1], K_TS]
    opt = TS_OPT_BYTES if S[S_TSON] and link.stack_hdr else 0
    S[S_HDR] = HDR + opt
    S[S_EMSS] = link.mss - opt


@helper
def handshake(out, i, S, cx, link, turn, t_open):
    """SYN, SYN/ACK, ACK: each a turnaround after its cause arrived. Returns the next row and
    when the client's ACK left (the connection is established). ``S[S_HSRTT]``: the
    handshake's RTT as the client's side measures it (its SYN sent -> its ACK sent: what a
    tap beside it reads as the initial RTT)."""
    ck, base = cx[5], cx[6]
    hs = (-1, PH_HANDSHAKE, 0, 0, 0)
    for s in range(2):
        S[S_RDP + s] = base
    S[S_RCV], S[S_RCV + 1] = 0, 0
    i = emit(out, i, S, cx, link, 0, t_open, SYN, 0, 0, hs)
    S[S_RCV] = 1
    S[S_TSRECENT + 1] = out[i - 1, P_TSVAL]
    S[S_PEEREDGE + 1] = 1 + out[i - 1, P_WIN]
    i = emit(out, i, S, cx, link, 1, out[i - 1, P_ARR] + turnaround(S, ck, turn, 1), SYN | ACK, 0, 0, hs)
    S[S_RCV + 1] = 1
    S[S_TSRECENT] = out[i - 1, P_TSVAL]
    S[S_PEEREDGE] = 1 + out[i - 1, P_WIN]
    i = emit(out, i, S, cx, link, 0, out[i - 1, P_ARR] + turnaround(S, ck, turn, 0), ACK, 1, 0, hs)
    S[S_HSRTT] = out[i - 1, P_SEND] - out[i - 3, P_SEND]  # SYN -> ACK, as the client sent them
    S[S_TSRECENT + 1] = out[i - 1, P_TSVAL]  # the server has it before it sends again
    S[S_PEEREDGE + 1] = max(S[S_PEEREDGE + 1], 1 + out[i - 1, P_WIN])
    return i, out[i - 1, P_SEND]


@inline
def next_w(wd, w, end, d):
    """The first write of side ``d`` at or after ``w`` (``end`` if none)."""
    while w < end and wd[w, WF_DIR] != d:
        w += 1
    return w


@inline
def ready(S, wd, wo, ws, cx, link, d, t_est, jitter):
    """When side ``d``'s next write is ready (INF while it waits on something not yet done).

    A write waits for a write of its own side to be written, or for one of the other side's
    to be delivered; writes of one side stay in order. A close happens at the run's end at the
    latest (after the reply in flight, if any)."""
    w0, wend = cx[1], cx[2]
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


@inline
def queue_write(S, wd, wo, ws, cx, link, d, t, c_resp_end):
    """Side ``d``'s application writes its next write at ``t`` (returns 1: the side sends), or,
    for a later turn after the run's end, stops: the connection goes straight to its close
    (returns 0), or aborts (``W_RST``, returns 2: the caller sends the reset, ``abort``)."""
    conn, w0, wend = cx[0], cx[1], cx[2]
    w = S[S_NEXTW + d]
    if wd[w, WF_FLAGS] & W_TURN and t >= link.dur_end:
        S[S_TRUNC] = 1
        close = w
        while close < wend and not wd[close, WF_FLAGS] & W_CLOSE:
            close += 1
        S[S_NEXTW] = close
        S[S_NEXTW + 1] = wend
        return 0
    ws[w - w0, WS_START] = S[S_QUEUED + d]
    S[S_QUEUED + d] += wd[w, WF_BYTES]
    ws[w - w0, WS_END] = S[S_QUEUED + d]
    ws[w - w0, WS_QTIME] = t
    S[S_LASTQ + d] = t
    wo[w, WO_ISSUED] = 1
    if wd[w, WF_REQ] >= 0 or wd[w, WF_PHASE] != PH_HANDSHAKE or S[S_STREQ] < 0:
        # (a handshake write of one side, such as the server's session ticket, does not end
        # the other's request: the ACKs stay that request's)
        S[S_STREQ], S[S_STPHASE] = wd[w, WF_REQ], wd[w, WF_PHASE]
    if wd[w, WF_FLAGS] & W_RST:
        S[S_DONE], c_resp_end[conn] = 1, t
        return 2
    if wd[w, WF_FLAGS] & W_CLOSE:
        S[S_FINPEND + d] = 1
        if not S[S_TRUNC]:
            c_resp_end[conn] = wo[w0 + wd[w, WF_DEP], WO_DELIV]
    S[S_NEXTW + d] = next_w(wd, w + 1, wend, d)
    return 1


@helper
def abort(out, i, S, wd, cx, link, d, t):
    """Side ``d``'s application aborted at ``t`` (``W_RST``): RST|ACK at snd_nxt, as Linux
    sends on a close with data unread. Returns ``i + 1``."""
    w = S[S_NEXTW + d]
    return emit(out, i, S, cx, link, d, t, RST | ACK, S[S_NXT + d], 0, (wd[w, WF_REQ], wd[w, WF_PHASE], 0, 0, 0))
