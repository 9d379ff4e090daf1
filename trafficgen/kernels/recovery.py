"""TCP loss recovery as Linux does it, for the transport kernel (``kernels.tcp``) on an impaired
path (``Link.loss`` > 0; a clean path never calls it).

Receiver: every out-of-order segment is queued (up to ``MAXB`` blocks) and answered at once by
a duplicate ACK carrying SACK blocks (RFC 2018: the block of the latest segment first); a
segment that fills a hole, or a duplicate, is acknowledged at once too.

Sender: a SACK scoreboard (``MAXB`` blocks); fast retransmit after 3 duplicate ACKs or 3 MSS
SACKed above the cumulative ACK, then SACK recovery (RFC 6675, simplified: every hole below
the highest SACKed byte is lost, ``pipe`` counts the rest; the window set to ssthresh at the
start, as PRR ends); RTO (RFC 6298: srtt/rttvar, at least 200 ms above srtt as Linux, doubled
on each expiry, Karn's rule) after which every unSACKed byte sent is lost and the window
restarts at one segment; a tail loss probe (PTO = 2 srtt, or 1.5 srtt + 200 ms with one
segment in flight, Linux) resends the last segment. CUBIC (RFC 8312, C = 0.4, beta = 0.7,
fast convergence, the Reno-friendly region) cuts the window on loss and regrows it.

Block lists (in ``S``): ``kernels.sack``. Sequence numbers here are relative (bytes since the
ISN).
"""
import numpy as np

from .codes import ACK, FIN, PSH, SYN
from .jit import helper, inline
from .sack import add_block, bx, past_blocks, sacked_in
from .tcpseg import emit
from .tcpstate import (
    INF,
    P_FLAGS,
    P_PLEN,
    P_SEGOFF,
    P_WRITELEN,
    S_BACKOFF,
    S_CAPMAX,
    S_CWND,
    S_DSH,
    S_DSL,
    S_DUP,
    S_EMSS,
    S_EPOCH,
    S_FINRCV,
    S_GAP,
    S_GE,
    S_ISN,
    S_LASTSEG,
    S_LOSSST,
    S_LOSTEND,
    S_NB,
    S_NH,
    S_NR,
    S_NXT,
    S_QUEUED,
    S_RECOVER,
    S_RTO,
    S_RTOT,
    S_RTTSEQ,
    S_RTTTIME,
    S_RTTVAR,
    S_RTXNXT,
    S_SNDMAX,
    S_SRTT,
    S_SSTH,
    S_TLPOUT,
    S_TLPT,
    S_UNA,
    S_WMAX,
    WF_DIR,
    WF_LAYOUT,
    WF_PHASE,
    WF_REQ,
    WS_END,
    WS_START,
)

RTO_MIN_NS = 200_000_000
RTO_MAX_NS = 120_000_000_000
DELACK_MAX_NS = 200_000_000
PTO_MIN_NS = 10_000_000
BETA = 0.7  # CUBIC's multiplicative decrease
CUBIC_C = 0.4
DUPTHRESH = 3


@helper
def init(S, d, rtt):
    """Direction ``d``'s recovery state at the connection's start (srtt from the path's RTT)."""
    S[S_SSTH + d] = INF
    S[S_SRTT + d] = rtt
    S[S_RTTVAR + d] = rtt // 2
    S[S_RTO + d] = min(rtt + max(2 * rtt, RTO_MIN_NS), RTO_MAX_NS)
    S[S_RTOT + d] = INF
    S[S_TLPT + d] = INF
    for k in (S_DUP, S_RECOVER, S_RTXNXT, S_LOSTEND, S_BACKOFF, S_RTTSEQ, S_RTTTIME, S_WMAX,
              S_EPOCH, S_LOSSST, S_TLPOUT, S_LASTSEG, S_NB, S_NR, S_SNDMAX, S_GE, S_GAP, S_FINRCV, S_CAPMAX,
              S_NH, S_DSL, S_DSH):
        S[k + d] = 0


@helper
def rtt_sample(S, d, r):
    """RFC 6298: a new RTT measurement ``r`` (ns) of direction ``d``'s data."""
    if r <= 0:
        return
    srtt = S[S_SRTT + d]
    S[S_RTTVAR + d] = (3 * S[S_RTTVAR + d] + abs(srtt - r)) // 4
    S[S_SRTT + d] = (7 * srtt + r) // 8


@inline
def base_rto(S, d):
    return min(S[S_SRTT + d] + max(4 * S[S_RTTVAR + d], RTO_MIN_NS), RTO_MAX_NS)


@helper
def cut(S, d, rto):
    """A loss: CUBIC's W_max (fast convergence) and ssthresh, and recovery of every byte sent
    so far; after an RTO the window restarts at one segment."""
    mss = S[S_EMSS]
    cw = S[S_CWND + d]
    if not rto or S[S_BACKOFF + d] == 0:
        wmax = cw
        if cw < S[S_WMAX + d]:
            wmax = np.int64(cw * (1.0 + BETA) / 2.0)
        S[S_WMAX + d] = wmax
        S[S_SSTH + d] = max(np.int64(cw * BETA), 2 * mss)
        S[S_EPOCH + d] = 0
    S[S_RECOVER + d] = S[S_NXT + d]
    S[S_RTXNXT + d] = S[S_UNA + d]
    S[S_RTTSEQ + d] = 0
    S[S_TLPT + d] = INF
    if rto:
        S[S_CWND + d] = mss
        S[S_LOSSST + d] = 1
        S[S_LOSTEND + d] = S[S_NXT + d]
    else:
        S[S_CWND + d] = S[S_SSTH + d]
        S[S_LOSSST + d] = 0


@helper
def grow(S, d, acked, t):
    """The window after ``acked`` new bytes at ``t``: slow start (ABC, L = 2) below
    ssthresh, else CUBIC, no faster than the Reno-friendly estimate allows it to lag."""
    mss = S[S_EMSS]
    cw = S[S_CWND + d]
    if cw < S[S_SSTH + d]:
        S[S_CWND + d] = cw + min(acked, 2 * mss)
        return
    if S[S_EPOCH + d] == 0:
        S[S_EPOCH + d] = t
        S[S_WMAX + d] = max(S[S_WMAX + d], cw)
    srtt = max(S[S_SRTT + d], 1)
    el = (t - S[S_EPOCH + d] + srtt) / 1e9
    wmax = S[S_WMAX + d] / mss
    k = (wmax * (1.0 - BETA) / CUBIC_C) ** (1.0 / 3.0)
    target = CUBIC_C * (el - k) ** 3 + wmax
    west = wmax * BETA + 3.0 * (1.0 - BETA) / (1.0 + BETA) * (t - S[S_EPOCH + d]) / srtt
    seg = cw / mss
    target = min(max(target, west), 1.5 * seg)
    if target > seg:
        S[S_CWND + d] = cw + max(np.int64(1), np.int64((target - seg) * acked / seg))


@helper
def on_ack(out, p, S, s, a, t):
    """Packet ``p`` acknowledges side ``s``'s bytes below ``a`` (relative) and SACKs its
    blocks; side ``s``'s kernel has it at ``t``."""
    k = 2 + s
    mss = S[S_EMSS]
    una = S[S_UNA + s]
    if out[p, P_PLEN] == 0 and out[p, P_SEGOFF] != out[p, P_WRITELEN]:  # its SACK block
        lo = (out[p, P_SEGOFF] - S[S_ISN + s]) & 0xFFFFFFFF
        hi = (out[p, P_WRITELEN] - S[S_ISN + s]) & 0xFFFFFFFF
        if hi > lo and hi > a:  # (a D-SACK, below the ACK, reports a duplicate: no news)
            add_block(S, k, S_NB + s, lo, hi, False)
            if S[S_RECOVER + s] > 0 and not S[S_LOSSST + s]:
                S[S_LOSTEND + s] = max(S[S_LOSTEND + s], hi)
    if a > una:
        acked = a - una
        if S[S_RTTSEQ + s] > 0 and a >= S[S_RTTSEQ + s]:
            rtt_sample(S, s, t - S[S_RTTTIME + s])
            S[S_RTTSEQ + s] = 0
        S[S_BACKOFF + s] = 0
        S[S_RTO + s] = base_rto(S, s)
        S[S_UNA + s] = a
        S[S_DUP + s] = 0
        S[S_TLPOUT + s] = 0
        n, m = S[S_NB + s], 0
        for j in range(n):
            if S[bx(k, j) + 1] > a:
                S[bx(k, m)] = max(S[bx(k, j)], a)
                S[bx(k, m) + 1] = S[bx(k, j) + 1]
                m += 1
        S[S_NB + s] = m
        if S[S_RECOVER + s] > 0:
            if a >= S[S_RECOVER + s]:
                S[S_RECOVER + s] = 0
                if S[S_LOSSST + s]:
                    grow(S, s, acked, t)
                S[S_LOSSST + s] = 0
            elif S[S_LOSSST + s]:
                grow(S, s, acked, t)
        else:
            grow(S, s, acked, t)
        if a < S[S_NXT + s]:
            S[S_RTOT + s] = t + S[S_RTO + s]
            arm_probe(S, s, t)
        else:
            S[S_RTOT + s] = INF
            S[S_TLPT + s] = INF
    elif a == una and out[p, P_PLEN] == 0 and not out[p, P_FLAGS] & (SYN | FIN) \
            and una < S[S_NXT + s]:
        S[S_DUP + s] += 1
    if S[S_RECOVER + s] == 0 and S[S_UNA + s] < S[S_NXT + s] and (
            S[S_DUP + s] >= DUPTHRESH
            or sacked_in(S, k, S[S_NB + s], S[S_UNA + s], INF) >= DUPTHRESH * mss):
        cut(S, s, False)
        hi = S[S_UNA + s] + mss  # at least the first segment
        for j in range(S[S_NB + s]):
            hi = max(hi, S[bx(k, j) + 1])
        S[S_LOSTEND + s] = hi


@inline
def pipe(S, d):
    """RFC 6675's estimate of direction ``d``'s bytes in flight: sent, not SACKed, not deemed
    lost unless resent."""
    k, n = 2 + d, S[S_NB + d]
    una, nxt = S[S_UNA + d], S[S_NXT + d]
    p = nxt - una - sacked_in(S, k, n, una, nxt)
    if S[S_RECOVER + d] > 0:
        lo, hi = max(S[S_RTXNXT + d], una), min(S[S_LOSTEND + d], nxt)
        if hi > lo:
            p -= (hi - lo) - sacked_in(S, k, n, lo, hi)
    return max(p, np.int64(0))


@helper
def resend_one(out, i, S, wd, ws, cx, link, d, t, r, end):
    """Resend direction ``d``'s bytes from ``r``: up to an MSS, within their write and below
    ``end``. Returns the next row and the end of the bytes sent."""
    w0, wend = cx[1], cx[2]
    w = w0
    while w < wend - 1 and (wd[w, WF_DIR] != d or ws[w - w0, WS_END] <= r):
        w += 1
    w_start, w_end = ws[w - w0, WS_START], ws[w - w0, WS_END]
    seg_end = min(min(r + S[S_EMSS], w_end), end)
    flags = ACK | PSH if seg_end == w_end else ACK
    i = emit(out, i, S, cx, link, d, t, flags, r, seg_end - r,
             (wd[w, WF_REQ], wd[w, WF_PHASE], wd[w, WF_LAYOUT], r - w_start, w_end - w_start))
    return i, seg_end


@helper
def resend(out, i, S, wd, ws, cx, link, d, t):
    """In recovery, resend the lost holes of direction ``d`` while ``pipe`` is under the
    window."""
    if S[S_RECOVER + d] == 0:
        return i
    k = 2 + d
    sent = min(S[S_QUEUED + d], S[S_NXT + d])  # (not the FIN)
    while i < cx[8]:
        r, nb = past_blocks(S, k, S[S_NB + d], max(S[S_RTXNXT + d], S[S_UNA + d]))
        if r >= min(S[S_LOSTEND + d], sent) or pipe(S, d) >= S[S_CWND + d]:
            break
        # a whole segment as first sent (they start at the bytes resent before or a block)
        i, e = resend_one(out, i, S, wd, ws, cx, link, d, t, r, min(sent, nb))
        S[S_RTXNXT + d] = e
        S[S_RTTSEQ + d] = 0
    return i


@helper
def arm_probe(S, d, t):
    """A tail loss probe due a PTO from ``t`` (not in recovery, one per flight, before the
    RTO): 2 srtt, or 1.5 srtt + the delayed-ACK maximum with one segment out (Linux)."""
    if S[S_RECOVER + d] > 0 or S[S_TLPOUT + d]:
        S[S_TLPT + d] = INF
        return
    srtt = S[S_SRTT + d]
    pto = 2 * srtt
    if S[S_NXT + d] - S[S_UNA + d] <= S[S_EMSS]:
        pto = max(pto, srtt + srtt // 2 + DELACK_MAX_NS)
    pto = max(pto, PTO_MIN_NS)
    S[S_TLPT + d] = t + pto if t + pto < S[S_RTOT + d] else INF


@helper
def after_send(S, d, t, new):
    """Timers after side ``d`` sent (``new``: new data among it): the RTO runs while bytes
    are out; a tail loss probe is due a PTO after the last new segment."""
    if S[S_UNA + d] >= S[S_NXT + d]:
        return
    if S[S_RTOT + d] >= INF:
        S[S_RTOT + d] = t + S[S_RTO + d]
    if new:
        arm_probe(S, d, t)


@helper
def timer(out, i, S, wd, ws, cx, link, d, t):
    """Side ``d``'s recovery timer fires at ``t``: a tail loss probe (the last segment again)
    or an RTO (backoff, the window cut to one segment, every unSACKed byte lost)."""
    if S[S_TLPT + d] == t and S[S_TLPT + d] < S[S_RTOT + d]:
        S[S_TLPT + d] = INF
        S[S_TLPOUT + d] = 1
        r = max(S[S_LASTSEG + d], S[S_UNA + d])
        end = min(S[S_NXT + d], S[S_QUEUED + d])
        if r < end:
            i, _ = resend_one(out, i, S, wd, ws, cx, link, d, t, r, end)
            S[S_RTTSEQ + d] = 0
            S[S_RTOT + d] = t + S[S_RTO + d]
        return i
    S[S_TLPT + d] = INF
    if S[S_UNA + d] >= S[S_NXT + d]:
        S[S_RTOT + d] = INF
        return i
    cut(S, d, True)
    S[S_BACKOFF + d] += 1
    S[S_RTO + d] = min(2 * S[S_RTO + d], RTO_MAX_NS)
    S[S_RTOT + d] = t + S[S_RTO + d]
    S[S_DUP + d] = 0
    return resend(out, i, S, wd, ws, cx, link, d, t)

