"""RAG lookups that requests fan out to: a share of a class's requests (``retrieval_share``;
reasoning models that search while they think) start retrieval chains at the gateway, each a
``rag`` chain (embed -> search -> rerank) with the scenario's ``[rag]`` services (or the
built-in rag scenario's), ``retrieval_lookups`` of them on average, ``retrieval_gap`` apart.

The lookups start as the request reaches the gateway (its first byte on the wire plus 5 ms),
drawn from the request's session key, so the same requests fan out whatever the window. Their
flows and requests are the ``rag`` class's (kind embed, search, rerank), seen where retrievals
are (``topology.capture``: server, gateway, fabric).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from trafficgen.config.scenario import Scenario, class_defaults
from trafficgen.kernels.rng import derive, key_of, uniform
from trafficgen.schema import CLASS_CODE

from .chain import ChainModel

FANOUT_ID = 0xFA0  # the lookups' own keys: never the rag class's
TURN_DRAW = 6  # draw 16 + 8k + 6 of a session key: does turn k fan out
LOOKUP_DELAY_NS = 5_000_000


class Fanout:
    """The lookups of one class's requests (``lookups(s_key, ep)``)."""

    def __init__(self, scenario: Scenario, cls: str, layout_base: int):
        p = scenario.params[cls]
        self.share = p.retrieval_share
        data = scenario.to_dict()
        if "rag" not in data:
            data["rag"] = class_defaults("rag")
        sub = Scenario.from_dict(data)
        # the gateway's TLS to the backends: the rag class's client profiles and services; the
        # lookups' templates follow the class's own in the class model's slot of the engine's
        # table (``TlsPlan.extend``), so their server flights are the class's size
        rag = dataclasses.replace(sub.params["rag"], turns=p.retrieval_lookups,
                                  think_time=p.retrieval_gap, client_hello_bytes=p.client_hello_bytes,
                                  server_flight_bytes=p.server_flight_bytes,
                                  session_ticket_bytes=p.session_ticket_bytes)
        sub = dataclasses.replace(sub, params={**sub.params, "rag": rag})
        self.chain = ChainModel(sub, "rag", layout_base)
        self.chain.key = key_of(scenario.seed, CLASS_CODE[cls], FANOUT_ID)
        self.start_ns = scenario.start_ns

    def lookups(self, s_key: np.ndarray, ep):
        """The lookups of the requests of one window's schedule ``ep`` (local session ids index
        ``s_key``): an EpochSchedule of the rag class."""
        r = ep.requests
        keys, starts = [], []
        for sess, turn, t in zip(r["session_id"].tolist(), r["turn"].tolist(), r["start_ns"].tolist()):
            k_s = np.uint64(s_key[sess])
            if uniform(k_s, 16 + 8 * turn + TURN_DRAW) < self.share:
                keys.append(derive(k_s, 3_000_000 + turn))
                starts.append(t - self.start_ns + LOOKUP_DELAY_NS)
        order = np.argsort(np.array(starts, np.int64), kind="stable")
        s_key2 = np.array(keys, np.uint64)[order]
        return self.chain.window_for(s_key2, np.array(starts, np.int64)[order])
