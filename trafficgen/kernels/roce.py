"""RoCEv2 under congestion and loss: a KV transfer's packets (``kernels.kv``) with ECN CE marks,
the responder's CNPs and the requester's DCQCN rate control, and go-back-N recovery of lost
WRITEs. Used only when ``[network.impair]`` gives the class an ``ecn`` share or a ``loss``;
without them ``kv.count``/``kv.fill`` make the transfers as before, byte for byte.

The requester sends the transfer's WRITE packets in PSN order, each once its message's layers
are computed and the link is free, paced at its current rate (DCQCN's Rc; the link rate while
no CNP has come). Per transmission (draws ``3 x tx + 0, 1, 2`` of ``derive(key, SALT)``, tx
counting the transfer's transmissions): lost (a Gilbert chain: ``Impair.p_first`` after a
delivered packet, ``p_next`` after a lost one; equal: Bernoulli), the loss upstream of the tap
(``before_tap``: no row) or downstream (a row flagged ``lost``), and marked CE
(``ecn``: the frame's IP ECN bits 11, as seen at the tap).

Responder (the decode NIC): a packet with the expected PSN is accepted and ACKed as without
impairments (every ``ack_every``-th of a message and its last); a later PSN is dropped, and the
first such drop after an accepted packet is answered by a NAK (Acknowledge, opcode 0x11, AETH
syndrome 0x60: PSN sequence error, BTH PSN = the expected PSN, MSN the messages completed);
later drops get none until the expected PSN comes (the IBTA spec's RC responder). The
requester, when the NAK reaches it a round trip after the dropped packet, resends from that PSN
(go-back-N; Mittal et al., SIGCOMM 2018, measure what it costs on lossy fabrics). A loss
that no NAK reveals (nothing after it, or a resend lost while the responder waits) is resent
after the QP's local ACK timeout (4.096 us x 2**14), the requester sending on meanwhile; after
``RETRY_CNT`` timeouts in a row at one PSN the QP goes to the error state and the transfer ends
there, unfinished. A CE-marked packet that arrives is answered by a CNP (opcode 0x81 to the
requester's QP, BECN set, 16 reserved bytes; IP DSCP 48 as ConnectX sends them), at most one
per QP per ``CNP_GAP_NS``.

Requester (DCQCN, Zhu et al., SIGCOMM 2015, section 3 and its parameters): on a CNP (a round
trip after the marked packet) the target rate takes the current one and the current rate is cut
by ``alpha / 2``; ``alpha = (1 - g) alpha + g``, and ``alpha`` decays by ``(1 - g)`` every
``ALPHA_NS`` without a CNP (``alpha`` starts at 1). Rate increase events come from a timer
(every ``TIMER_NS``) and a byte counter (every ``BYTES_B`` sent), both reset by a cut: while
both counts are under ``F`` fast recovery (Rc = (Rt + Rc) / 2), once one reaches it additive
increase (Rt += ``ai``), both hyper increase (Rt += i x ``hai``); the rate is back at the link
rate when within 1e-6 of it, never under ``min_frac``.

Schedule rows as ``kv.fill`` writes them, plus: ``retransmit`` (a PSN sent again), ``lost``
(1: lost after the tap), ``gap`` (a WRITE past a PSN hole at the tap: PSNs before it lost
before the tap, never captured), ``win`` = the IPv4 TOS byte where it is not the class's default
(CE-marked data: ``ROCE_TOS | 3``; CNPs: ``CNP_TOS``), ``segoff`` of an Acknowledge = its AETH
syndrome (0: the ACK's default).
"""
from collections import namedtuple

import numpy as np

from .codes import PH_TRANSFER
from .jit import helper, inline, kernel
from .kv import D_IPID, D_PSN, MAX_MESSAGE_BYTES
from .rng import bits, derive, uniform
from .udp import (
    ACK_REQ,
    AETH_NAK_PSN,
    CNP_TOS,
    ETH_IP_UDP,
    ETH_OVERHEAD,
    L_ROCE,
    OP_ACK,
    OP_CNP,
    OP_WRITE_FIRST,
    OP_WRITE_LAST,
    OP_WRITE_MIDDLE,
    OP_WRITE_ONLY,
    ROCE_TOS,
    roce_bth_len,
)

SALT = 0x1A7E  # the impairment draws' child key of a transfer's key
G = 1.0 / 256  # DCQCN's alpha gain
ALPHA_NS = 55_000.0  # K: alpha decays once per 55 us without a CNP
TIMER_NS = 55_000.0  # T: the rate increase timer
BYTES_B = 10_000_000.0  # B: the byte counter (10 MB)
F = 5  # increase events before additive, then hyper, increase
CNP_GAP_NS = 50_000.0  # N: the responder's least time between CNPs of a QP
ACK_TIMEOUT_NS = 4_096.0 * 2.0 ** 14  # the QP's local ACK timeout (timeout = 14: 67.1 ms)
RETRY_CNT = 7  # timeouts in a row at one PSN before the QP goes to the error state (the most)
INF = 1e300
# DCQCN state (a float64[8] per transfer)
C_FRAC, C_TARGET, C_ALPHA, C_T_ALPHA, C_NEXT_INC, C_TCOUNT, C_BCOUNT, C_BYTES = range(8)

Impair = namedtuple("Impair", "p_first p_next before_tap ecn rtt_ns ai hai min_frac")
Impair.__doc__ = """A kv_transfer class's impairments: loss probability after a delivered and
after a lost packet, share of losses before the tap, share of data marked CE, the fabric's
round trip (ns), DCQCN's additive and hyper increase steps and least rate (shares of the link
rate)."""


@inline
def _increase(cc, im):
    """One DCQCN rate increase event (the counts already advanced)."""
    t, b = cc[C_TCOUNT], cc[C_BCOUNT]
    if max(t, b) >= F:
        if min(t, b) >= F:
            cc[C_TARGET] += (min(t, b) - F + 1) * im.hai
        else:
            cc[C_TARGET] += im.ai
        cc[C_TARGET] = min(cc[C_TARGET], 1.0)
    cc[C_FRAC] = (cc[C_TARGET] + cc[C_FRAC]) / 2
    if cc[C_TARGET] >= 1.0 and 1.0 - cc[C_FRAC] < 1e-6:  # recovered: the link rate again
        cc[C_FRAC] = 1.0
        cc[C_NEXT_INC] = INF


@helper
def _react(cc, q, qi, until, im):
    """The requester's DCQCN events up to ``until`` (ns): CNP arrivals queued in ``q`` (a ring,
    ``qi`` = [head, tail]) and increase timers."""
    cap = q.shape[0]
    while True:
        tc = q[qi[0] % cap] if qi[0] < qi[1] else INF
        tt = cc[C_NEXT_INC]
        if min(tc, tt) > until:
            return
        if tc <= tt:
            qi[0] += 1
            cc[C_ALPHA] *= (1.0 - G) ** np.floor((tc - cc[C_T_ALPHA]) / ALPHA_NS)
            cc[C_TARGET] = cc[C_FRAC]
            cc[C_FRAC] = max(im.min_frac, cc[C_FRAC] * (1.0 - cc[C_ALPHA] / 2))
            cc[C_ALPHA] = (1.0 - G) * cc[C_ALPHA] + G
            cc[C_T_ALPHA] = tc
            cc[C_NEXT_INC] = tc + TIMER_NS
            cc[C_TCOUNT] = cc[C_BCOUNT] = cc[C_BYTES] = 0.0
        else:
            cc[C_TCOUNT] += 1
            cc[C_NEXT_INC] = tt + TIMER_NS
            _increase(cc, im)


@inline
def _row(out, write, r, ts, t, d, class_id, pkt, marks):
    """Row ``r`` (if ``write``) of transfer ``t``: ``pkt`` as ``kv._row``'s; ``marks`` =
    (retransmit, lost, TOS or 0, gap)."""
    if write:
        wl, op, psn, ack, plen, ipid, segoff, writelen = pkt
        rec = out[r]
        rec["ts_ns"] = ts
        rec["flow_id"] = t
        rec["request_id"] = t
        rec["direction"] = d
        rec["wire_len"] = wl
        rec["phase"] = PH_TRANSFER
        rec["class"] = class_id
        rec["tcp_flags"] = op
        rec["seq"] = psn
        rec["ack"] = ack
        rec["payload_len"] = plen
        rec["ipid"] = ipid
        rec["layout"] = L_ROCE
        rec["segoff"] = segoff
        rec["writelen"] = writelen
        rec["retransmit"] = marks[0]
        rec["lost"] = marks[1]
        rec["win"] = marks[2]
        rec["gap"] = marks[3]
    return r + 1


@helper
def _messages(uncached, xf, m_first, m_len, m_ready):
    """The transfer's WRITE messages (first packet index, bytes, ready time in ns), as
    ``kv.fill`` cuts them; with an empty ``m_first`` only counts them. Returns the count."""
    n = 0
    pk = 0
    for g in range(0, xf.layers, xf.per_msg):
        nl = min(xf.per_msg, xf.layers - g)
        gb = uncached * xf.layer_bytes * nl
        off = 0
        while off < gb:
            m = min(gb - off, MAX_MESSAGE_BYTES)
            if m_first.shape[0]:
                m_first[n] = pk
                m_len[n] = m
                m_ready[n] = (g + nl) * uncached * xf.layer_ns_per_token
            pk += (m + xf.pmtu - 1) // xf.pmtu
            n += 1
            off += m
    if m_first.shape[0]:
        m_first[n] = pk
    return n


@helper
def _transfer(out, write, r, t, key, start, uncached, xf, im):
    """Transfer ``t``'s rows from row ``r`` (written if ``write``); returns the next row and
    whether the QP ended in error (retries exhausted)."""
    e = np.empty(0, np.int64)
    nm = _messages(uncached, xf, e, e, np.empty(0, np.float64))
    m_first, m_len = np.empty(nm + 1, np.int64), np.empty(nm, np.int64)
    m_ready = np.empty(nm, np.float64)
    _messages(uncached, xf, m_first, m_len, m_ready)
    n_tot = m_first[nm]
    pmtu, ack_every, cls = xf.pmtu, xf.ack_every, xf.class_id
    psn0 = np.int64(bits(key, D_PSN) & np.uint64(0xFFFFFF))
    ipid = np.int64(bits(key, D_IPID) & np.uint64(0xFFFF))
    ipid_ack = (ipid * 7 + 12345) & 0xFFFF
    ik = derive(key, SALT)
    cc = np.zeros(8, np.float64)
    cc[C_FRAC] = cc[C_TARGET] = cc[C_ALPHA] = 1.0
    cc[C_NEXT_INC] = INF
    q = np.empty(int(im.rtt_ns // CNP_GAP_NS) + 2, np.float64)  # CNPs on their way back
    qi = np.zeros(2, np.int64)
    clock = 0.0
    nxt, msg = 0, 0  # the next packet to send and its message
    expected, emsg = 0, 0  # the responder's next PSN (index) and its message
    max_sent = max_cap = -1  # the highest PSN index sent, and captured
    nak_state = False
    gbn_at, gbn_to, to_at = INF, 0, INF
    last_cnp = -INF
    prev_lost = False
    tx = 0
    retries, retry_psn = 0, -1
    while expected < n_tot:
        t_send = max(clock, m_ready[msg]) if nxt < n_tot else INF
        when = min(gbn_at, to_at)
        if when <= t_send:  # go back to a PSN: a NAK has come, or the ACK timeout
            if gbn_at <= to_at:
                nxt = gbn_to
            else:
                retries = retries + 1 if expected == retry_psn else 1
                retry_psn = nxt = expected
                if retries > RETRY_CNT:  # retries exhausted: the QP is in error, sends no more
                    return r, True
            gbn_at = to_at = INF
            _react(cc, q, qi, when, im)
            clock = max(clock, when)
            while m_first[msg] > nxt:
                msg -= 1
            continue
        _react(cc, q, qi, t_send, im)
        j = nxt - m_first[msg]
        m = m_len[msg]
        npk = (m + pmtu - 1) // pmtu
        plen = min(pmtu, m - j * pmtu)
        if npk == 1:
            op = OP_WRITE_ONLY
        elif j == 0:
            op = OP_WRITE_FIRST
        elif j == npk - 1:
            op = OP_WRITE_LAST
        else:
            op = OP_WRITE_MIDDLE
        wl = ETH_IP_UDP + roce_bth_len(op) + plen + ((-plen) & 3) + 4
        ts = start + np.int64(t_send)
        frac = cc[C_FRAC]
        if frac >= 1.0:
            clock = t_send + (wl + ETH_OVERHEAD) * xf.ns_per_byte
        else:
            clock = t_send + (wl + ETH_OVERHEAD) * xf.ns_per_byte / frac
            cc[C_BYTES] += wl
            if cc[C_BYTES] >= BYTES_B:
                cc[C_BYTES] -= BYTES_B
                cc[C_BCOUNT] += 1
                _increase(cc, im)
        areq = (j + 1) % ack_every == 0 or j == npk - 1
        psn = (psn0 + nxt) & 0xFFFFFF
        lost = uniform(ik, 3 * tx) < (im.p_next if prev_lost else im.p_first)
        before = lost and uniform(ik, 3 * tx + 1) < im.before_tap
        ce = uniform(ik, 3 * tx + 2) < im.ecn
        tx += 1
        prev_lost = lost
        if not before:  # captured; past a PSN hole at the tap: a gap
            r = _row(out, write, r, ts, t, 0, cls,
                     (wl, op, psn, msg | (ACK_REQ if areq else 0), plen, ipid, j * pmtu, m),
                     (nxt <= max_sent, 1 if lost else 0, (ROCE_TOS | 3) if ce else 0,
                      nxt > max_cap + 1))
            max_cap = max(max_cap, nxt)
        ipid = (ipid + 1) & 0xFFFF
        max_sent = max(max_sent, nxt)
        back = start + np.int64(clock) + xf.ack_lag_ns  # the responder's answer at the tap
        if lost:
            if nxt == expected and to_at == INF:
                to_at = t_send + ACK_TIMEOUT_NS
        else:
            if ce and clock - last_cnp >= CNP_GAP_NS:  # (clock: when it is in)
                last_cnp = clock
                q[qi[1] % q.shape[0]] = clock + im.rtt_ns
                qi[1] += 1
                r = _row(out, write, r, back, t, 1, cls,
                         (ETH_IP_UDP + roce_bth_len(OP_CNP) + 4, OP_CNP, 0, 0, 0, ipid_ack, 0, 0),
                         (False, 0, CNP_TOS, False))
                ipid_ack = (ipid_ack + 1) & 0xFFFF
            if nxt == expected:
                expected += 1
                nak_state = False
                to_at = INF
                if j == npk - 1:
                    emsg += 1
                if areq:
                    r = _row(out, write, r, back, t, 1, cls,
                             (ETH_IP_UDP + 20, OP_ACK, psn, emsg & 0xFFFFFF, 0, ipid_ack, 0, 0),
                             (False, 0, 0, False))
                    ipid_ack = (ipid_ack + 1) & 0xFFFF
            elif not nak_state:  # a PSN sequence error: one NAK until the expected PSN comes
                nak_state = True
                gbn_at, gbn_to, to_at = clock + im.rtt_ns, expected, INF
                r = _row(out, write, r, back, t, 1, cls,
                         (ETH_IP_UDP + 20, OP_ACK, (psn0 + expected) & 0xFFFFFF, emsg & 0xFFFFFF,
                          0, ipid_ack, AETH_NAK_PSN, 0), (False, 0, 0, False))
                ipid_ack = (ipid_ack + 1) & 0xFFFF
        nxt += 1
        if nxt < n_tot and nxt >= m_first[msg + 1]:
            msg += 1
    return r, False


@kernel
def simulate(keys, starts, uncached, xf, im, row0, out, write, failed):
    """Rows of each transfer t under impairments (``xf``: ``kv.Transfers``, ``im``:
    :data:`Impair`): with ``write`` 0 their counts into ``row0`` (int64[n]); with 1 the rows
    into ``out`` (SCHED_DTYPE) from ``row0[t]``. ``failed[t]``: 1 if its QP ended in error
    (retries exhausted), else 0. Returns the total."""
    total = 0
    for t in range(keys.shape[0]):
        r0 = row0[t] if write else 0
        end, err = _transfer(out, write, r0, t, keys[t], starts[t], uncached[t], xf, im)
        failed[t] = 1 if err else 0
        n = end - r0
        if not write:
            row0[t] = n
        total += n
    return total
