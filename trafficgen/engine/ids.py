"""The ids that tie windows and partitions together: flow, session and request ids are running
sums of what each schedule takes up, and a schedule of pooled calls (``classes.pooled``) names
sessions of earlier blocks by the first session id those blocks got (``marks``)."""
from __future__ import annotations

import numpy as np

ID_KINDS = ("flow", "session", "request")


MARK_REACH = 64  # partitions (blocks) back whose first session ids a partition is given


def id_counts(simulated: list) -> dict:
    """How many ids of each kind a partition's schedules (``Engine.simulate``) take up, and
    ``marks``: per schedule of one arrival block, ((model, block), its first session id
    within the partition), so later partitions can name its sessions (``EpochSchedule.foreign``)."""
    n = dict.fromkeys(ID_KINDS, 0)
    marks = []
    for _t0, _t1, schedules in simulated:
        for ep in schedules:
            if ep.block is not None:
                marks.append(((ep.model, ep.block), n["session"]))
            n["flow"] += ep.flows.shape[0]
            n["session"] += ep.n_sessions
            n["request"] += ep.requests.shape[0]
    return {**n, "marks": marks}


def name_sessions(marks: dict, ep, s0: int) -> None:
    """Record ``ep``'s block's first session id ``s0`` in ``marks`` ((model, block) -> id,
    the last ``MARK_REACH`` blocks kept) and give the sessions it names of earlier blocks
    (``EpochSchedule.foreign``: local ids ``n_sessions``..., already shifted by ``s0``) the
    ids their own blocks got."""
    if ep.block is not None:
        marks[(ep.model, ep.block)] = s0
        for old in [k for k in marks if k[1] < ep.block - MARK_REACH]:
            del marks[old]
    if ep.foreign is not None:
        blocks, local = ep.foreign
        ids = np.array([marks[(ep.model, int(q))] for q in blocks], np.int64) + local
        for t in (ep.flows, ep.requests):
            s = t["session_id"] - s0 - ep.n_sessions
            t["session_id"] = np.where(s >= 0, ids[np.maximum(s, 0)], t["session_id"])
