"""TCP emulation: connections and their application writes in, captured packets out.

A flow model describes each connection as a list of *writes*: (direction, bytes, the write it
waits for, delay after that write is delivered, labels). This kernel runs a small event
simulation per connection -- three-way handshake, segmentation at the MSS without spanning
writes (TCP_NODELAY senders), slow start with ABC (RFC 3465, L=2) and restart after idle
(RFC 5681), a receive-window cap, delayed ACKs (every second segment or a 40 ms timer,
piggybacked on data), and a FIN exchange -- and records every packet at the capture point.
Sequence and acknowledgement numbers are those of the simulation, so they are consistent by
construction: a side acknowledges only bytes that have arrived at it.

Times are int64 ns on the model's clock (0 = capture start). Directions: 0 up (client to
server), 1 down. A packet's capture time is its send time on the capture side, its send time
plus the one-way delay on the far side.
"""
import numpy as np
from numba import njit

from ..schema import ACK, FIN, PH_HANDSHAKE, PH_PREFILL_WAIT, PH_REQUEST, PH_TEARDOWN, PSH, SYN

INF = np.int64(2**62)
ATO_NS = 40_000_000  # delayed-ACK timer
RTO_MIN_NS = 200_000_000
IW_SEGMENTS = 10  # initial window, RFC 6928
HDR_DATA = 54  # Ethernet 14 + IPv4 20 + TCP 20
HDR_SYN = 66  # + 12 bytes of options: MSS, NOP, WS, NOP, NOP, SACK_PERM
MAX_SEG_PER_WRITE = 1 << 30

# write flags
W_TURN = 1  # a later turn: skipped (and the connection closed) if ready at or after the end
W_CLOSE = 2  # close_notify then FIN; ready at min(dep + delay, the run's end)
W_REQ = 4  # a request upload: its delivery starts the prefill wait

# per-packet output columns, one int64 matrix row each (narrowed by the caller)
P_TS, P_CONN, P_DIR, P_SEQ, P_ACK, P_FLAGS, P_PLEN, P_REQ, P_PHASE, P_IPID, P_WLEN, \
    P_LAYOUT, P_SEGOFF, P_WRITELEN, P_SEND = range(15)
P_COLS = 15


@njit(cache=True)
def packet_bound(w_bytes, w0, wn, mss):
    """Upper bound on the packets a connection with writes ``w0:w0+wn`` can produce."""
    segs = 0
    for w in range(w0, w0 + wn):
        segs += (w_bytes[w] + mss - 1) // mss
    return 2 * segs + 16


@njit(cache=True)
def _next_w(w_dir, w, end, d):
    while w < end and w_dir[w] != d:
        w += 1
    return w


@njit(cache=True)
def simulate(c_open_dep, c_open_at, c_rtt, c_isn, c_ipid, c_w0, c_wn, c_jitter,
             w_dir, w_bytes, w_dep, w_delay, w_req, w_phase, w_flags, w_layout,
             dur_end, mss, ns_per_byte, capture_side, rwnd,
             out, c_npk, c_resp_end, w_deliv, w_issued):
    """Simulate every connection in order; fill ``out`` (int64[P_COLS, cap]).

    Connections: ``c_open_dep[c]`` is -1 for a session's first connection, opened at the
    absolute time ``c_open_at[c]``; otherwise the earlier connection whose last response it
    follows, opened ``c_open_at[c]`` ns after that response was delivered (skipped if that is
    at or after ``dur_end``). ``c_isn``/``c_ipid`` are [n, 2] (per direction). Returns the
    number of packets written, or -1 if ``out`` is too small. ``c_npk`` gets packets per
    connection (0 = skipped), ``c_resp_end`` the delivery time of its last response write,
    ``w_issued`` 1 for writes that were sent.
    """
    cap = out.shape[1]
    cur = 0
    w_deliv[:] = -1
    w_issued[:] = 0
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
        if t_open >= dur_end:
            continue
        w0, wn = c_w0[c], c_wn[c]
        if cur + packet_bound(w_bytes, w0, wn, mss) > cap:
            return -1
        n = _conn(c, t_open, c_rtt[c], c_isn[c], c_ipid[c], w0, wn, c_jitter[c],
                  w_dir, w_bytes, w_dep, w_delay, w_req, w_phase, w_flags, w_layout,
                  dur_end, mss, ns_per_byte, capture_side, rwnd, out, cur, w_deliv, w_issued,
                  c_resp_end)
        c_npk[c] = n
        cur += n
    return cur


@njit(cache=True)
def _emit(out, i, conn, d, t, flags, seq_rel, plen, isn, ack_rel, req, phase, ipid, layout,
          segoff, writelen, link_free, ns_per_byte, owd, capture_side):
    wlen = (HDR_SYN if flags & SYN else HDR_DATA) + plen
    t_send = max(t, link_free[d])
    link_free[d] = t_send + np.int64(wlen * ns_per_byte) + 1
    out[P_TS, i] = t_send + (owd if d != capture_side else 0)
    out[P_SEND, i] = t_send
    out[P_CONN, i] = conn
    out[P_DIR, i] = d
    out[P_SEQ, i] = (isn[d] + seq_rel) & 0xFFFFFFFF
    out[P_ACK, i] = (isn[1 - d] + ack_rel) & 0xFFFFFFFF if flags & ACK else 0
    out[P_FLAGS, i] = flags
    out[P_PLEN, i] = plen
    out[P_REQ, i] = req
    out[P_PHASE, i] = phase
    out[P_IPID, i] = ipid & 0xFFFF
    out[P_WLEN, i] = wlen
    out[P_LAYOUT, i] = layout
    out[P_SEGOFF, i] = segoff
    out[P_WRITELEN, i] = writelen


@njit(cache=True)
def _conn(conn, t_open, rtt, isn, ipid0, w0, wn, jitter,
          w_dir, w_bytes, w_dep, w_delay, w_req, w_phase, w_flags, w_layout,
          dur_end, mss, ns_per_byte, capture_side, rwnd, out, base, w_deliv, w_issued, c_resp_end):
    owd = rtt // 2
    rto = rtt + RTO_MIN_NS
    wend = w0 + wn
    nxt = np.ones(2, np.int64)  # next relative seq to send (SYN took 0)
    una = np.ones(2, np.int64)
    queued = np.ones(2, np.int64)
    cwnd = np.full(2, IW_SEGMENTS * mss, np.int64)
    link_free = np.zeros(2, np.int64)
    last_send = np.zeros(2, np.int64)
    cnt = np.zeros(2, np.int64)
    rcv = np.ones(2, np.int64)  # bytes of direction d received in order by its peer
    unacked = np.zeros(2, np.int64)
    timer = np.full(2, INF, np.int64)
    head = np.full(2, -1, np.int64)  # next in-flight packet of direction d (index in out)
    next_w = np.empty(2, np.int64)
    send_w = np.empty(2, np.int64)
    deliv_w = np.empty(2, np.int64)
    w_end = np.zeros(wn, np.int64)
    w_start = np.zeros(wn, np.int64)
    w_qtime = np.full(wn, -1, np.int64)
    fin_pending = np.zeros(2, np.bool_)
    fin_sent = np.zeros(2, np.bool_)
    last_q = np.zeros(2, np.int64)  # when each side last wrote: writes stay in order
    for d in range(2):
        next_w[d] = _next_w(w_dir, w0, wend, d)
        send_w[d] = next_w[d]
        deliv_w[d] = next_w[d]
    st_req, st_phase = -1, PH_HANDSHAKE
    truncated = False
    last_down_deliv = t_open
    i = base
    # three-way handshake (no data: its arrivals need no processing)
    _emit(out, i, conn, 0, t_open, SYN, 0, 0, isn, 0, -1, PH_HANDSHAKE, ipid0[0], 0, 0, 0,
          link_free, ns_per_byte, owd, capture_side)
    i += 1
    _emit(out, i, conn, 1, t_open + owd, SYN | ACK, 0, 0, isn, 1, -1, PH_HANDSHAKE, ipid0[1],
          0, 0, 0, link_free, ns_per_byte, owd, capture_side)
    i += 1
    _emit(out, i, conn, 0, t_open + rtt, ACK, 1, 0, isn, 1, -1, PH_HANDSHAKE, ipid0[0] + 1,
          0, 0, 0, link_free, ns_per_byte, owd, capture_side)
    i += 1
    cnt[0], cnt[1] = 2, 1
    t_est = t_open + rtt
    last_send[0], last_send[1] = t_est, t_open + owd
    done = False
    guard = 0
    while not done:
        guard += 1
        if guard > 64 * (wn + 64) + 8 * (i - base + 64):
            break
        # candidate events: arrivals (FIFO per direction), delayed-ACK timers, writes
        ta0 = out[P_SEND, head[0]] + owd if head[0] >= 0 else INF
        ta1 = out[P_SEND, head[1]] + owd if head[1] >= 0 else INF
        tw0 = _ready(0, next_w, wend, w0, w_dep, w_dir, w_delay, w_flags, w_qtime, w_deliv,
                     t_est, last_q, truncated, dur_end, jitter, last_down_deliv)
        tw1 = _ready(1, next_w, wend, w0, w_dep, w_dir, w_delay, w_flags, w_qtime, w_deliv,
                     t_est, last_q, truncated, dur_end, jitter, last_down_deliv)
        t = min(min(ta0, ta1), min(min(timer[0], timer[1]), min(tw0, tw1)))
        if t >= INF:
            break
        if ta0 == t or ta1 == t:
            d = 0 if ta0 == t else 1
            p = head[d]
            # advance the in-flight head to the next packet of the same direction
            q = p + 1
            while q < i and out[P_DIR, q] != d:
                q += 1
            head[d] = q if q < i else -1
            s = 1 - d  # the receiving side, which answers in direction s
            plen = out[P_PLEN, p]
            flags = out[P_FLAGS, p]
            if plen > 0:
                rcv[d] = ((out[P_SEQ, p] - isn[d]) & 0xFFFFFFFF) + plen
                unacked[d] += 1
                while deliv_w[d] < wend and w_end[deliv_w[d] - w0] > 0 and w_end[deliv_w[d] - w0] <= rcv[d]:
                    wd = deliv_w[d]
                    w_deliv[wd] = t
                    if d == 1:
                        last_down_deliv = t
                    if w_flags[wd] & W_REQ and st_req == w_req[wd] and st_phase == PH_REQUEST:
                        st_phase = PH_PREFILL_WAIT
                    deliv_w[d] = _next_w(w_dir, wd + 1, wend, d)
            if flags & ACK:
                a = (out[P_ACK, p] - isn[s]) & 0xFFFFFFFF
                if a > una[s]:
                    cwnd[s] += min(a - una[s], 2 * mss)
                    una[s] = a
            if flags & FIN:
                rcv[d] += 1
                unacked[d] = 0
                timer[d] = INF
                if s == 1:  # the server answers the client's FIN with its own
                    _emit(out, i, conn, 1, t, FIN | ACK, nxt[1], 0, isn, rcv[0], -1, PH_TEARDOWN,
                          ipid0[1] + cnt[1], 0, 0, 0, link_free, ns_per_byte, owd, capture_side)
                    if head[1] < 0:
                        head[1] = i
                    i += 1
                    cnt[1] += 1
                    nxt[1] += 1
                    fin_sent[1] = True
                else:  # the client acknowledges the server's FIN: done
                    _emit(out, i, conn, 0, t, ACK, nxt[0], 0, isn, rcv[1], -1, PH_TEARDOWN,
                          ipid0[0] + cnt[0], 0, 0, 0, link_free, ns_per_byte, owd, capture_side)
                    i += 1
                    done = True
                continue
            if plen > 0:
                if unacked[d] >= 2:
                    i = _pure_ack(out, i, conn, s, t, nxt, rcv, isn, st_req, st_phase, ipid0, cnt,
                                  unacked, timer, link_free, ns_per_byte, owd, capture_side, head)
                elif timer[d] >= INF:
                    timer[d] = t + ATO_NS
            i = _try_send(out, i, conn, s, t, nxt, una, queued, cwnd, rcv, isn, ipid0, cnt,
                          unacked, timer, link_free, last_send, ns_per_byte, owd, capture_side,
                          head, send_w, w_start, w_end, w0, wend, w_dir, w_req, w_phase, w_layout,
                          fin_pending, fin_sent, mss, rwnd, rto)
            continue
        if timer[0] == t or timer[1] == t:
            d = 0 if timer[0] == t else 1
            i = _pure_ack(out, i, conn, 1 - d, t, nxt, rcv, isn, st_req, st_phase, ipid0, cnt,
                          unacked, timer, link_free, ns_per_byte, owd, capture_side, head)
            continue
        d = 0 if tw0 == t else 1
        w = next_w[d]
        if w_flags[w] & W_TURN and t >= dur_end:
            # the run has ended: no more turns on this connection; go straight to the close
            truncated = True
            close = w
            while close < wend and not w_flags[close] & W_CLOSE:
                close += 1
            next_w[0] = close
            next_w[1] = wend
            continue
        w_start[w - w0] = queued[d]
        queued[d] += w_bytes[w]
        w_end[w - w0] = queued[d]
        w_qtime[w - w0] = t
        last_q[d] = t
        w_issued[w] = 1
        st_req, st_phase = w_req[w], w_phase[w]
        if w_flags[w] & W_CLOSE:
            fin_pending[d] = True
            if not truncated:
                c_resp_end[conn] = w_deliv[w0 + w_dep[w]]
        next_w[d] = _next_w(w_dir, w + 1, wend, d)
        i = _try_send(out, i, conn, d, t, nxt, una, queued, cwnd, rcv, isn, ipid0, cnt,
                      unacked, timer, link_free, last_send, ns_per_byte, owd, capture_side,
                      head, send_w, w_start, w_end, w0, wend, w_dir, w_req, w_phase, w_layout,
                      fin_pending, fin_sent, mss, rwnd, rto)
    return i - base


@njit(cache=True, inline="always")
def _ready(d, next_w, wend, w0, w_dep, w_dir, w_delay, w_flags, w_qtime, w_deliv, t_est, last_q,
           truncated, dur_end, jitter, last_down_deliv):
    """When side ``d``'s next write is ready (INF if it waits on something not yet done).

    A write waits for a write of its own side to be written, or for one of the other side's
    to be delivered; writes of one side stay in order. A close happens at the run's end at the
    latest (after the reply in flight, if any)."""
    w = next_w[d]
    if w >= wend:
        return INF
    dep = w_dep[w]
    base_t = t_est if dep < 0 else (w_qtime[dep] if w_dir[w0 + dep] == d else w_deliv[w0 + dep])
    t = INF
    if base_t >= 0:
        t = max(base_t + w_delay[w], last_q[d])
    if w_flags[w] & W_CLOSE:
        if truncated:
            t = max(max(dur_end + jitter, last_down_deliv), last_q[d])
        elif t < INF:
            t = min(t, max(max(dur_end + jitter, base_t), last_q[d]))
    return t


@njit(cache=True)
def _pure_ack(out, i, conn, s, t, nxt, rcv, isn, req, phase, ipid0, cnt, unacked, timer,
              link_free, ns_per_byte, owd, capture_side, head):
    _emit(out, i, conn, s, t, ACK, nxt[s], 0, isn, rcv[1 - s], req, phase, ipid0[s] + cnt[s],
          0, 0, 0, link_free, ns_per_byte, owd, capture_side)
    if head[s] < 0:
        head[s] = i
    cnt[s] += 1
    unacked[1 - s] = 0
    timer[1 - s] = INF
    return i + 1


@njit(cache=True)
def _try_send(out, i, conn, d, t, nxt, una, queued, cwnd, rcv, isn, ipid0, cnt, unacked, timer,
              link_free, last_send, ns_per_byte, owd, capture_side, head, send_w, w_start, w_end,
              w0, wend, w_dir, w_req, w_phase, w_layout, fin_pending, fin_sent, mss, rwnd, rto):
    if nxt[d] == una[d] and t - last_send[d] > rto:
        cwnd[d] = min(cwnd[d], IW_SEGMENTS * mss)  # restart after idle
    while nxt[d] < queued[d] and nxt[d] - una[d] < cwnd[d]:
        w = send_w[d]
        while w_end[w - w0] <= nxt[d]:
            w = _next_w(w_dir, w + 1, wend, d)
        send_w[d] = w
        seg_end = min(nxt[d] + mss, w_end[w - w0])
        if seg_end - una[d] > rwnd:
            break
        flags = ACK | PSH if seg_end == w_end[w - w0] else ACK
        wstart = w_start[w - w0]
        wlen_w = w_end[w - w0] - wstart
        _emit(out, i, conn, d, t, flags, nxt[d], seg_end - nxt[d], isn, rcv[1 - d], w_req[w],
              w_phase[w], ipid0[d] + cnt[d], w_layout[w], nxt[d] - wstart, wlen_w, link_free,
              ns_per_byte, owd, capture_side)
        if head[d] < 0:
            head[d] = i
        i += 1
        cnt[d] += 1
        nxt[d] = seg_end
        last_send[d] = t
        unacked[1 - d] = 0
        timer[1 - d] = INF
    if fin_pending[d] and not fin_sent[d] and nxt[d] == queued[d]:
        _emit(out, i, conn, d, t, FIN | ACK, nxt[d], 0, isn, rcv[1 - d], -1, PH_TEARDOWN,
              ipid0[d] + cnt[d], 0, 0, 0, link_free, ns_per_byte, owd, capture_side)
        if head[d] < 0:
            head[d] = i
        i += 1
        cnt[d] += 1
        nxt[d] += 1
        fin_sent[d] = True
        unacked[1 - d] = 0
        timer[1 - d] = INF
    return i


@njit(cache=True)
def total_bound(c_w0, c_wn, w_bytes, mss):
    """Packets buffer size that fits every connection."""
    total = 0
    for c in range(c_w0.shape[0]):
        total += packet_bound(w_bytes, c_w0[c], c_wn[c], mss)
    return total
