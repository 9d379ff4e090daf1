"""SACK block lists for the transport's loss recovery (``kernels.recovery``): a receiver's
out-of-order queue and a sender's scoreboard, each up to ``MAXB`` [start, end) blocks of
relative sequence numbers, most recent first (RFC 2018), in the connection's state ``S`` from
``S_SB``: list ``d`` the queue of direction ``d``'s data at its receiver (count
``S[S_NR + d]``), list ``2 + d`` direction ``d``'s sender's scoreboard (count
``S[S_NB + d]``); block j of list k at ``S[S_SB + (k * MAXB + j) * 2]`` (start, end).

An ACK carries one block (``first_block``): a pending D-SACK (RFC 2883: a duplicate segment's
bytes, below the ACK), else the receiver's latest block. Linux adds up to two older blocks
after it; the frame's layout has room for one (``tcpstate.SACK_OPT_BYTES``), and the sender's
scoreboard, built from every ACK's block, is what the wire shows."""
import numpy as np

from .jit import helper, inline
from .tcpstate import INF, MAXB, S_DSH, S_DSL, S_NR, S_RCV, S_SB


@inline
def bx(k, j):
    """Where block ``j`` of list ``k`` starts in ``S`` (its end is the next slot)."""
    return S_SB + (k * MAXB + j) * 2


@helper
def add_block(S, k, slot, a, b, keep_old):
    """Add [a, b) to list ``k`` (count ``S[slot]``), merged with the blocks it touches, first.
    A full list drops the new block (``keep_old``: a receiver keeps what it holds) or its
    oldest (a sender forgets the oldest SACK: at worst a spurious resend)."""
    n = S[slot]
    lo, hi = a, b
    m = 0
    for j in range(n):
        x, y = S[bx(k, j)], S[bx(k, j) + 1]
        if y < lo or x > hi:
            S[bx(k, m)] = x
            S[bx(k, m) + 1] = y
            m += 1
        else:
            lo = min(lo, x)
            hi = max(hi, y)
    if m == MAXB:
        if keep_old:
            return
        m -= 1
    for j in range(m, 0, -1):
        S[bx(k, j)] = S[bx(k, j - 1)]
        S[bx(k, j) + 1] = S[bx(k, j - 1) + 1]
    S[bx(k, 0)] = lo
    S[bx(k, 0) + 1] = hi
    S[slot] = m + 1


@inline
def sacked_in(S, k, n, a, b):
    """Bytes of [a, b) inside list ``k``'s ``n`` blocks (they do not overlap)."""
    tot = np.int64(0)
    for j in range(n):
        lo, hi = max(S[bx(k, j)], a), min(S[bx(k, j) + 1], b)
        if hi > lo:
            tot += hi - lo
    return tot


@inline
def past_blocks(S, k, n, r):
    """The first byte at or after ``r`` outside every block, and the start of the next block
    above it (INF if none)."""
    moved = True
    while moved:
        moved = False
        for j in range(n):
            if S[bx(k, j)] <= r < S[bx(k, j) + 1]:
                r = S[bx(k, j) + 1]
                moved = True
    nxt = INF
    for j in range(n):
        if S[bx(k, j)] > r:
            nxt = min(nxt, S[bx(k, j)])
    return r, nxt


@helper
def rcv_data(S, d, a, b):
    """Direction ``d``'s bytes [a, b) reach its receiver. Returns 0 when they come in order
    onto an empty queue (the usual delayed ACK), else 1 (ACK at once: out of order, a
    duplicate, a hole filled or a queue still waiting)."""
    rcv = S[S_RCV + d]
    if a > rcv:
        add_block(S, d, S_NR + d, a, b, True)
        return 1
    if b <= rcv:  # a duplicate: reported by a D-SACK
        S[S_DSL + d], S[S_DSH + d] = a, b
        return 1
    rcv = b
    n = S[S_NR + d]
    if n == 0:
        S[S_RCV + d] = rcv
        return 0
    moved = True
    while moved:
        moved = False
        m = 0
        for j in range(n):
            if S[bx(d, j)] <= rcv:
                rcv = max(rcv, S[bx(d, j) + 1])
                moved = True
            else:
                S[bx(d, m)] = S[bx(d, j)]
                S[bx(d, m) + 1] = S[bx(d, j) + 1]
                m += 1
        n = m
    S[S_NR + d] = n
    S[S_RCV + d] = rcv
    return 1


@inline
def first_block(S, d):
    """The block an ACK of direction ``d``'s data carries now ([start, end), relative; 0 0:
    none): a pending D-SACK (then cleared), else the latest block of the receiver's queue."""
    lo, hi = S[S_DSL + d], S[S_DSH + d]
    if hi > lo:
        S[S_DSL + d] = S[S_DSH + d] = 0
        return lo, hi
    if S[S_NR + d] > 0:
        return S[bx(d, 0)], S[bx(d, 0) + 1]
    return np.int64(0), np.int64(0)
