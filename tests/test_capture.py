"""Capture points: each class appears only where it would be seen, with that place's timing
(the end of its connections the tap is on), down to the frames' TTLs and MACs."""
from __future__ import annotations

import numpy as np
import pytest

import trafficgen as tg
from trafficgen.errors import ConfigError
from trafficgen.schema import CLASS_CODE, OS_CODE

from .helpers import batch_tables, read_capture

MIX = ["chat.rate=4/s", "rag.rate=4/s", "agentic.rate=1/s"]


def run(tmp_path, capture, extra=()):
    sc = tg.load_scenario("chat", MIX + [f"topology.capture={capture}", *extra], duration="15s",
                          seed=3)
    pcap = tmp_path / f"{capture}.pcap"
    flows, requests = batch_tables(sc, "flows", "requests")
    tg.generate(sc, pcap=pcap)
    return sc, read_capture(pcap), {"flows": flows, "requests": requests}


def classes_of(flows):
    return {c for c, code in CLASS_CODE.items() if (flows["class"] == code).any()}


def test_each_class_is_seen_only_where_it_passes(tmp_path):
    _, _, client = run(tmp_path, "client")
    assert classes_of(client["flows"]) == {"chat", "agentic"}  # no east-west at the client edge
    _, _, gw = run(tmp_path, "gateway")
    assert classes_of(gw["flows"]) == {"chat", "agentic", "rag"}
    # at the gateway, the agents' tool calls (agent -> tool servers) are not seen
    req = gw["requests"]
    assert not (req["kind"][req["class"] == CLASS_CODE["agentic"]] == 1).any()
    assert (client["requests"]["kind"] == 1).any()
    _, _, fabric = run(tmp_path, "fabric")
    assert classes_of(fabric["flows"]) == {"rag"}
    # the same seed gives the same chat sessions wherever the tap is
    a = client["requests"][client["requests"]["class"] == CLASS_CODE["chat"]]
    b = gw["requests"][gw["requests"]["class"] == CLASS_CODE["chat"]]
    assert np.array_equal(a["prompt_tokens"], b["prompt_tokens"])


def test_the_gateway_sees_users_at_its_server_end_and_backends_at_its_client_end(tmp_path):
    """Chat clients' packets reach the gateway from afar (their initial TTL less the path's
    hops); the gateway's own packets to the retrieval backends leave it at 64 (Linux)."""
    _, cap, t = run(tmp_path, "gateway")
    flows = t["flows"]
    src_of = {c: set(flows["src_ip"][flows["class"] == CLASS_CODE[c]].tolist()) for c in ("chat", "rag")}
    ttl = np.array([f[14 + 8] for f in cap.frames])
    for cls, want_local in (("chat", False), ("rag", True)):
        up = np.isin(cap.src, list(src_of[cls]))
        assert up.any(), cls
        assert ((ttl[up] == 64) == want_local).all(), cls
    # and the other way round at the client edge: chat's own packets leave at their stack's
    # initial TTL (Windows 128, the others 64)
    _, cap2, t2 = run(tmp_path, "client")
    f2 = t2["flows"][t2["flows"]["class"] == CLASS_CODE["chat"]]
    initial = dict(zip(f2["src_ip"].tolist(), np.where(f2["client_os"] == OS_CODE["windows"], 128, 64).tolist()))
    ttl2 = np.array([f[22] for f in cap2.frames])
    up = np.isin(cap2.src, list(initial))
    assert len(set(initial.values())) == 2  # chrome on Windows and on the others
    assert (ttl2[up] == np.array([initial[s] for s in cap2.src[up].tolist()])).all()


def test_a_capture_point_that_sees_nothing_is_refused():
    with pytest.raises(ConfigError) as e:
        tg.load_scenario("chat", ["topology.capture=fabric"])
    assert e.value.key == "topology.capture" and "seen there: rag" in e.value.problem
    with pytest.raises(ConfigError) as e:
        tg.load_scenario("chat", ["topology.capture=tap"])
    assert "must be one of client, server, gateway, fabric, dci" in e.value.problem
