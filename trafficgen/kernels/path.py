"""The path between a connection's ends on an impaired path (``network.impair``) for the
transport kernel (``kernels.tcp``): loss (``truth``), delay jitter, reordering and duplication.

Jitter: every packet's one-way delay gains a draw from the class's jitter distribution (its
quantile table in ``S[S_JIT:]``). The path stays first-in first-out, as a queue does: a frame
never arrives before the one its direction sent before it (``S_FARFREE``), so jitter alone
reorders nothing.

Reordering: with probability ``Link.reorder`` a segment or ACK (never the handshake, a FIN or
the teardown; never a lost one) is held back by 1 to 3 of its own serialization times on the
receiver's link, so the 1 or 2 frames of its direction sent right behind it arrive first (RFC
4737's displacement 1-2, the common case); a frame with none close behind it is only late. A
held frame leaves the direction's first-in first-out order of arrivals and waits in a short
list (``HELD`` per direction; while it is full, no frame is held). A tap on the receiver's
link sees it late (tshark's "out-of-order"); one on the sender's link sees the order it was
sent in.

Duplication: with probability ``Link.duplicate`` the path delivers a second copy of such a
frame, right behind it on the receiver's link: a tap there captures both (the same bytes); a
tap on the sender's link captures one and the copy is ``T_UNSEEN``. The receiver answers a
duplicate segment with a D-SACK (``kernels.sack``).

Draws: the connection's path key ``cx[9]``, index 8n + d (jitter), 8n + 2 + d (held back),
8n + 4 + d (duplicated) and 8n + 6 + d (how long held), n the packet's count in direction ``d``.
"""
import numpy as np

from .codes import FIN, PH_TEARDOWN, RST, SYN
from .jit import helper, inline, ir_inline
from .rng import uniform
from .sampling import table_at
from .tcpstate import (
    HELD,
    INF,
    P_ARR,
    P_COLS,
    P_SEND,
    P_TRUTH,
    P_TS,
    S_CAPMAX,
    S_CNT,
    S_FARFREE,
    S_GAP,
    S_GE,
    S_HEAD,
    S_HELD,
    S_JIT,
    S_NH,
    S_SNDMAX,
    T_AFTER,
    T_BEFORE,
    T_DUP,
    T_GAP,
    T_LOST,
    T_REORD,
    T_RETX,
    T_UNSEEN,
    TURN_STEPS,
)


@ir_inline
def steady(flags, phase, n, d):
    """Whether the path may lose, hold back or copy a packet with these ``flags``, in this
    ``phase``, direction ``d``'s ``n`` th: never the handshake, a FIN or the teardown."""
    return not flags & (SYN | FIN) and phase != PH_TEARDOWN and n > 1 - d


@helper
def truth(out, i, S, cx, link, d, flags, seq_rel, plen, phase):
    """Packet ``i``, side ``d``'s ``S_CNT`` th, on an impaired path: whether it carries bytes
    sent before, and whether it is lost (after the tap, or before it: then, if it held bytes
    never captured, a gap waits for the direction's next captured packet). Draws: the
    connection's loss key ``cx[7]``, index 4n + d (lost) and 4n + 2 + d (before the tap).
    Handshake, FIN and teardown packets are never lost. A Gilbert-Elliott chain
    (``Link.burst`` > 1) loses every packet of its bad state, which lasts ``burst`` packets
    on average and is entered so that its share is ``Link.loss``; with ``burst`` 1 each
    packet is lost on its own draw (Bernoulli)."""
    t_ = np.int64(0)
    hi = S[S_SNDMAX + d]
    if plen > 0:
        if seq_rel < hi:
            t_ = np.int64(T_RETX)
        S[S_SNDMAX + d] = max(hi, seq_rel + plen)
    n = S[S_CNT + d]
    if link.loss > 0 and steady(flags, phase, n, d):
        u = uniform(cx[7], 4 * n + d)
        if link.burst <= 1.0:
            bad = u < link.loss
        elif S[S_GE + d]:
            bad = u < 1.0 - 1.0 / link.burst
        else:
            bad = u < link.loss / (link.burst * (1.0 - link.loss))
        S[S_GE + d] = 1 if bad else 0
        if bad:
            if uniform(cx[7], 4 * n + 2 + d) < link.before_tap:
                t_ |= T_BEFORE
                if plen > 0 and seq_rel + plen > S[S_CAPMAX + d]:
                    S[S_GAP + d] = 1
            else:
                t_ |= T_AFTER
    if not t_ & T_BEFORE:
        S[S_CAPMAX + d] = max(S[S_CAPMAX + d], seq_rel + plen)
        if S[S_GAP + d]:
            t_ |= T_GAP
            S[S_GAP + d] = 0
    out[i, P_TRUTH] = t_


@helper
def set_jitter(S, table):
    """The run's jitter quantile table (float64[TURN_STEPS + 1], ns) into ``S``."""
    for k in range(TURN_STEPS + 1):
        S[S_JIT + k] = np.int64(table[k])


@inline
def jitter_ns(S, cx, d):
    """The path's extra delay (ns) for direction ``d``'s next packet (its ``S_CNT`` th)."""
    return np.int64(table_at(S, S_JIT, uniform(cx[9], 8 * S[S_CNT + d] + d) * TURN_STEPS))


@helper
def through(out, i, S, cx, link, d, flags, phase, s_far):
    """Row ``i`` (direction ``d``'s ``S_CNT - 1`` th packet, ``s_far`` its serialization on
    the receiver's link) on the path: held back or not, and a copy of it or not (row ``i +
    1``). Keeps the direction's first-in first-out head. Returns the next free row."""
    n = S[S_CNT + d] - 1
    ok = steady(flags, phase, n, d) and not flags & RST and not out[i, P_TRUTH] & T_LOST
    mine = d == link.capture_side  # the tap is on the sender's link: before the path
    if (ok and link.reorder > 0 and S[S_NH + d] < HELD
            and uniform(cx[9], 8 * n + 2 + d) < link.reorder):
        extra = np.int64((1.0 + 2.0 * uniform(cx[9], 8 * n + 6 + d)) * s_far)
        out[i, P_ARR] += extra
        if not mine:
            out[i, P_TS] += extra
        out[i, P_TRUTH] |= T_REORD
        S[S_HELD + d * HELD + S[S_NH + d]] = i
        S[S_NH + d] += 1
    elif S[S_HEAD + d] < 0:
        S[S_HEAD + d] = i
    if not (ok and link.duplicate > 0 and uniform(cx[9], 8 * n + 4 + d) < link.duplicate):
        return i + 1
    j = i + 1
    for k in range(P_COLS):
        out[j, k] = out[i, k]
    t2 = S[S_FARFREE + d]  # right behind the original's slot on the receiver's link
    S[S_FARFREE + d] = t2 + s_far
    out[j, P_ARR] = t2 + s_far
    out[j, P_TS] = out[i, P_SEND] if mine else t2
    out[j, P_TRUTH] = T_DUP | (T_UNSEEN if mine else 0)
    if S[S_HEAD + d] < 0:
        S[S_HEAD + d] = j
    return i + 2


@inline
def held_next(out, S, d):
    """When direction ``d``'s first held-back frame arrives (INF if none)."""
    t = INF
    for k in range(S[S_NH + d]):
        t = min(t, out[S[S_HELD + d * HELD + k], P_ARR])
    return t


@helper
def take_held(out, S, d, t, head):
    """The held-back frame of direction ``d`` that arrives at ``t``, out of the list (-1 if
    none, or if the first-in first-out ``head`` arrives then too: it goes first)."""
    if head >= 0 and out[head, P_ARR] == t:
        return -1
    nh = S[S_NH + d]
    for k in range(nh):
        p = S[S_HELD + d * HELD + k]
        if out[p, P_ARR] == t:
            for m in range(k, nh - 1):
                S[S_HELD + d * HELD + m] = S[S_HELD + d * HELD + m + 1]
            S[S_NH + d] = nh - 1
            return p
    return -1
