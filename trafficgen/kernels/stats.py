"""Per-flow and per-request totals from a packet schedule (one pass each, no Python loops)."""
import numpy as np
from numba import njit

from ..schema import PH_REQUEST, PH_STREAM


@njit(cache=True)
def flow_totals(flow, dirs, wire_len, ts, n_flows, start, end, bytes_, packets):
    """start/end: int64[n]; bytes_/packets: int64[n, 2] by direction."""
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


@njit(cache=True)
def request_totals(req, dirs, plen, phase, wire_len, ts, n_req, start, first_byte, end, bytes_):
    """start: first request byte seen; first_byte/end: first/last response byte seen."""
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
        if d == 0 and phase[i] == PH_REQUEST and start[r] < 0:
            start[r] = ts[i]
        elif d == 1 and phase[i] == PH_STREAM:
            if first_byte[r] < 0:
                first_byte[r] = ts[i]
            end[r] = ts[i]
