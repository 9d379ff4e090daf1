"""Per-flow and per-request totals from a packet schedule (one pass each, no Python loops)."""
import numpy as np

from .jit import kernel
from .tcpstate import (
    P_ACK,
    P_CONN,
    P_DIR,
    P_FLAGS,
    P_IPID,
    P_LAYOUT,
    P_PHASE,
    P_PLEN,
    P_REQ,
    P_SEGOFF,
    P_SEQ,
    P_TRUTH,
    P_TS,
    P_TSECR,
    P_TSVAL,
    P_WIN,
    P_WLEN,
    P_WRITELEN,
    T_AFTER,
    T_DUP,
    T_GAP,
    T_REORD,
    T_RETX,
)


@kernel
def flow_totals(flow, dirs, wire_len, ts, n_flows, start, end, bytes_, packets):
    """start/end: int64[n]; bytes_/packets: int64[n, 2] by direction (packets in any order)."""
    for f in range(n_flows):
        start[f] = np.iinfo(np.int64).max
        end[f] = np.iinfo(np.int64).min
        bytes_[f, 0] = bytes_[f, 1] = packets[f, 0] = packets[f, 1] = 0
    for i in range(flow.shape[0]):
        f = flow[i]
        d = dirs[i]
        bytes_[f, d] += wire_len[i]
        packets[f, d] += 1
        start[f] = min(start[f], ts[i])
        end[f] = max(end[f], ts[i])


@kernel
def request_totals(req, dirs, plen, wire_len, ts, n_req, start, first_byte, end, bytes_):
    """start: first request byte seen; first_byte/end: first/last response byte seen (any
    payload of the request's: a reasoning reply's keep-alives and a tool's answer count).
    Packets in any order (the earliest and latest times are taken)."""
    for r in range(n_req):
        start[r] = first_byte[r] = end[r] = -1
        bytes_[r, 0] = bytes_[r, 1] = 0
    for i in range(req.shape[0]):
        r = req[i]
        if r < 0:
            continue
        d = dirs[i]
        bytes_[r, d] += wire_len[i]
        if plen[i] == 0:
            continue
        t = ts[i]
        if d == 0:
            if start[r] < 0 or t < start[r]:
                start[r] = t
        else:
            if first_byte[r] < 0 or t < first_byte[r]:
                first_byte[r] = t
            end[r] = max(end[r], t)


@kernel
def gather_rows(src, order, dst):
    """``dst[i] = src[order[i]]`` for rows of bytes (uint8[n, itemsize] views of structured
    arrays): one contiguous copy per row, vectorised."""
    width = src.shape[1]
    for i in range(order.shape[0]):
        s = src[order[i]]
        d = dst[i]
        for k in range(width):
            d[k] = s[k]


@kernel
def shift_ids(sched, f0, r0):
    """A window's local ids made global, in place: ``flow_id + f0``, and ``request_id + r0``
    where there is one (-1: none). One pass over the rows (numpy's field arithmetic makes a
    strided pass and a temporary per operation)."""
    for i in range(sched.shape[0]):
        rec = sched[i]
        rec["flow_id"] += f0
        if rec["request_id"] >= 0:
            rec["request_id"] += r0


@kernel
def fill_schedule(out, order, flow_of_conn, req_map, class_id, start_ns, sched):
    """Sorted schedule rows from the transport kernel's int64[n, P_COLS] output.

    Row i of ``sched`` is row ``order[i]`` of ``out``, with connection and request indexes
    mapped to the epoch's dense flow and request ids and the time made absolute."""
    for i in range(order.shape[0]):
        r = out[order[i]]
        rec = sched[i]
        rec["ts_ns"] = r[P_TS] + start_ns
        rec["flow_id"] = flow_of_conn[r[P_CONN]]
        rec["request_id"] = req_map[r[P_REQ]] if r[P_REQ] >= 0 else -1
        rec["direction"] = r[P_DIR]
        rec["wire_len"] = r[P_WLEN]
        rec["phase"] = r[P_PHASE]
        rec["class"] = class_id
        rec["tcp_flags"] = r[P_FLAGS]
        rec["seq"] = r[P_SEQ]
        rec["ack"] = r[P_ACK]
        rec["payload_len"] = r[P_PLEN]
        rec["ipid"] = r[P_IPID]
        rec["layout"] = r[P_LAYOUT]
        rec["segoff"] = r[P_SEGOFF]
        rec["writelen"] = r[P_WRITELEN]
        rec["win"] = r[P_WIN]
        rec["tsval"] = r[P_TSVAL]
        rec["tsecr"] = r[P_TSECR]
        tr = r[P_TRUTH]
        rec["retransmit"] = (tr & T_RETX) != 0
        rec["lost"] = 1 if tr & T_AFTER else 0
        rec["gap"] = (tr & T_GAP) != 0
        rec["reordered"] = (tr & T_REORD) != 0
        rec["duplicate"] = (tr & T_DUP) != 0
