"""SACK block lists for the transport's loss recovery (``kernels.recovery``): a receiver's
out-of-order queue and a sender's scoreboard, each up to ``MAXB`` [start, end) blocks of
relative sequence numbers, most recent first (RFC 2018), in ``SB`` (int64[4, MAXB, 2]):
``SB[d]`` the queue of direction ``d``'s data at its receiver (count ``S[S_NR + d]``),
``SB[2 + d]`` direction ``d``'s sender's scoreboard (count ``S[S_NB + d]``)."""
import numpy as np

from .jit import helper, inline
from .tcpseg import INF, P_TRUTH, S_NR, S_RCV, T_SACK

MAXB = 8  # blocks in a scoreboard or an out-of-order queue


@helper
def add_block(SB, k, S, slot, a, b, keep_old):
    """Add [a, b) to list ``k`` (count ``S[slot]``), merged with the blocks it touches, first.
    A full list drops the new block (``keep_old``: a receiver keeps what it holds) or its
    oldest (a sender forgets the oldest SACK: at worst a spurious resend)."""
    n = S[slot]
    lo, hi = a, b
    m = 0
    for j in range(n):
        x, y = SB[k, j, 0], SB[k, j, 1]
        if y < lo or x > hi:
            SB[k, m, 0] = x
            SB[k, m, 1] = y
            m += 1
        else:
            lo = min(lo, x)
            hi = max(hi, y)
    if m == MAXB:
        if keep_old:
            return
        m -= 1
    for j in range(m, 0, -1):
        SB[k, j, 0] = SB[k, j - 1, 0]
        SB[k, j, 1] = SB[k, j - 1, 1]
    SB[k, 0, 0] = lo
    SB[k, 0, 1] = hi
    S[slot] = m + 1


@inline
def sacked_in(SB, k, n, a, b):
    """Bytes of [a, b) inside list ``k``'s ``n`` blocks (they do not overlap)."""
    tot = np.int64(0)
    for j in range(n):
        lo, hi = max(SB[k, j, 0], a), min(SB[k, j, 1], b)
        if hi > lo:
            tot += hi - lo
    return tot


@inline
def past_blocks(SB, k, n, r):
    """The first byte at or after ``r`` outside every block, and the start of the next block
    above it (INF if none)."""
    moved = True
    while moved:
        moved = False
        for j in range(n):
            if SB[k, j, 0] <= r < SB[k, j, 1]:
                r = SB[k, j, 1]
                moved = True
    nxt = INF
    for j in range(n):
        if SB[k, j, 0] > r:
            nxt = min(nxt, SB[k, j, 0])
    return r, nxt


@helper
def rcv_data(S, SB, d, a, b):
    """Direction ``d``'s bytes [a, b) reach its receiver. Returns 0 when they come in order
    onto an empty queue (the usual delayed ACK), else 1 (ACK at once: out of order, a
    duplicate, a hole filled or a queue still waiting)."""
    rcv = S[S_RCV + d]
    if a > rcv:
        add_block(SB, d, S, S_NR + d, a, b, True)
        return 1
    if b <= rcv:
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
            if SB[d, j, 0] <= rcv:
                rcv = max(rcv, SB[d, j, 1])
                moved = True
            else:
                SB[d, m, 0] = SB[d, j, 0]
                SB[d, m, 1] = SB[d, j, 1]
                m += 1
        n = m
    S[S_NR + d] = n
    S[S_RCV + d] = rcv
    return 1


@helper
def put_sack(out, SK, i, S, SB, d):
    """Row ``i``, an ACK of direction ``d``'s data, carries the receiver's first 3 blocks."""
    rcv = S[S_RCV + d]
    n = min(S[S_NR + d], 3)
    if n == 0:
        return
    out[i, P_TRUTH] |= T_SACK
    for j in range(3):
        SK[i, j] = ((SB[d, j, 0] - rcv) << 32) | (SB[d, j, 1] - rcv) if j < n else 0
