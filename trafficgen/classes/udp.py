"""What every UDP flow class shares: a model's filled schedule rows plus its per-flow and
per-request columns -> one sorted EpochSchedule (local ids).

A model's kernel fills SCHED_DTYPE rows in any order (``ts_ns`` in ns from the capture start,
``flow_id``/``request_id`` indexing the model's own flow and request arrays, request -1 for
none; the other columns as ``schema.py`` says for UDP rows) and calls
:func:`schedule_from_packets`. Packets before the capture start are dropped, and flows and
requests left without packets with them; ids are renumbered densely in the model's order.
"""
from __future__ import annotations

import numpy as np

from trafficgen.kernels import stats
from trafficgen.kernels import udp as ku
from trafficgen.schema import PROTO_UDP, empty

from .common import EpochSchedule

REQUEST_LABELS = ("prompt_tokens", "output_tokens", "reasoning_tokens", "images", "turn",
                  "llm_call", "tool_call", "client_id", "status")


class EmptyTemplates:
    """A UDP model's template table for the engine's ``CombinedTemplates``: three empty layout
    slots (the table pads every model's to ``PER_MODEL``; UDP rows use ``layout`` for their
    payload layout, not for templates)."""

    def __init__(self):
        self.data = np.zeros(0, np.uint8)
        self.mask = np.zeros(0, np.uint8)
        self.start = np.zeros(4, np.int64)
        self.length = np.zeros(4, np.int64)


def _renumber(keep: np.ndarray) -> np.ndarray:
    return np.where(keep, np.cumsum(keep) - 1, -1)


def schedule_from_packets(start_ns: int, class_id: int, rows: np.ndarray, flows: dict,
                          requests: dict, n_sessions: int) -> EpochSchedule:
    """The sorted schedule, flow rows and request rows of one window of a UDP class.

    Parameters
    ----------
    start_ns : the capture start (Unix ns); ``rows["ts_ns"]`` are relative to it.
    class_id : the class code of the flow and request rows (the kernel labels the packets).
    rows : SCHED_DTYPE packet rows, any order, local flow and request indexes (changed here).
    flows : per model flow: ``session``, ``src_ip``, ``dst_ip``, ``dst_port``, ``client_id``
        (arrays of one length). ``src_port`` is the engine's (from the global flow id).
    requests : per model request: ``flow``, ``session``, ``kind`` and any of REQUEST_LABELS
        (absent labels are 0, ``tool_call`` -1).
    n_sessions : sessions of the window (the engine's session ids advance by this).
    """
    from trafficgen.schema import take_rows
    if rows.shape[0] and rows["ts_ns"].min() < 0:
        rows = rows[rows["ts_ns"] >= 0]
    f_seen = np.zeros(flows["session"].shape[0], bool)
    f_seen[rows["flow_id"]] = True
    r_seen = np.zeros(requests["flow"].shape[0], bool)
    req = rows["request_id"]
    r_seen[req[req >= 0]] = True
    flow_map, req_map = _renumber(f_seen), _renumber(r_seen)
    rows["flow_id"] = flow_map[rows["flow_id"]]
    rows["request_id"] = np.where(req >= 0, req_map[req], -1)
    rows["ts_ns"] += start_ns
    sched = take_rows(rows, np.argsort(rows["ts_ns"], kind="stable"))
    reqs = _request_rows(sched, class_id, requests, r_seen, flow_map)
    frows = _flow_rows(sched, class_id, flows, f_seen)
    frows["requests"] = np.bincount(reqs["flow_id"], minlength=frows.shape[0])
    return EpochSchedule(sched, frows, reqs, n_sessions)


def _flow_rows(sched, class_id, flows, seen):
    keep = np.flatnonzero(seen)
    nf = keep.shape[0]
    rows = empty("flows", nf)
    start, end = np.empty(nf, np.int64), np.empty(nf, np.int64)
    fbytes, fpk = np.empty((nf, 2), np.int64), np.empty((nf, 2), np.int64)
    if sched.shape[0] or nf:  # (an empty column would type as another layout: a compile more)
        stats.flow_totals(sched["flow_id"], sched["direction"], sched["wire_len"], sched["ts_ns"],
                          nf, start, end, fbytes, fpk)
    rows["flow_id"] = np.arange(nf)
    rows["session_id"] = flows["session"][keep]
    rows["class"] = class_id
    rows["start_ns"], rows["end_ns"] = start, end
    for col in ("src_ip", "dst_ip", "dst_port", "client_id"):
        rows[col] = flows[col][keep]
    rows["protocol"] = PROTO_UDP
    if "rtt" in flows:  # the path's RTT (no handshake); RoCEv2 inside a fabric has none: 0
        rows["rtt_ns"] = flows["rtt"][keep]
    if "client_os" in flows:  # else Linux (kv transfers: GPU servers at both ends)
        rows["client_os"] = flows["client_os"][keep]
    rows["bytes_up"], rows["bytes_down"] = fbytes[:, 0], fbytes[:, 1]
    rows["packets_up"], rows["packets_down"] = fpk[:, 0], fpk[:, 1]
    return rows


def _request_rows(sched, class_id, requests, seen, flow_map):
    keep = np.flatnonzero(seen)
    nr = keep.shape[0]
    rows = empty("requests", nr)
    rs, rf, re_ = (np.empty(nr, np.int64) for _ in range(3))
    rbytes = np.empty((nr, 2), np.int64)
    if sched.shape[0] or nr:  # (an empty column would type as another layout: a compile more)
        ku.request_spans(sched["request_id"], sched["direction"], sched["wire_len"], sched["ts_ns"],
                         nr, rs, rf, re_, rbytes)
    rows["request_id"] = np.arange(nr)
    rows["flow_id"] = flow_map[requests["flow"][keep]]
    rows["session_id"] = requests["session"][keep]
    rows["class"] = class_id
    rows["kind"] = requests["kind"][keep] if np.ndim(requests["kind"]) else requests["kind"]
    rows["start_ns"], rows["first_byte_ns"], rows["end_ns"] = rs, rf, re_
    rows["bytes_up"], rows["bytes_down"] = rbytes[:, 0], rbytes[:, 1]
    rows["tool_call"] = -1
    for col in REQUEST_LABELS:
        if col in requests:
            rows[col] = requests[col][keep]
    return rows
