"""The [network] keys: hypothesis draws valid sections (they round-trip and mean what they say,
and a tiny run of each is correct on the wire by the independent walker) and junk (always a
one-line ConfigError naming the key); the section is optional and the MTU moved."""
from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trafficgen as tg
from trafficgen.config.network import ENCAPS
from trafficgen.config.scenario import Scenario, load_scenario
from trafficgen.errors import ConfigError
from trafficgen.schema import CLASS_CODE, CLASSES

from .netwalk import walk

classes = st.sampled_from(["default", *CLASSES])
v6addr = st.integers(1, 2**128 - 1).map(lambda x: str(ipaddress.IPv6Address(x)))


def per_class(values):
    return values | st.dictionaries(classes, values, min_size=1, max_size=3)


network = st.fixed_dictionaries({}, optional={
    "ip": st.sampled_from([4, 6, "4", "6", "dual"]),
    "ipv6_share": st.floats(0, 1),
    "vlan": st.sampled_from([[], "none"]) | st.integers(1, 4094)
    | st.lists(st.integers(1, 4094), min_size=1, max_size=2),
    "encap": st.sampled_from(ENCAPS),
    "mpls_labels": per_class(st.lists(st.integers(16, 2**20 - 1), min_size=1, max_size=4)),
    "vni": per_class(st.integers(1, 2**24 - 1)),
    "srv6_segments": per_class(st.lists(v6addr, max_size=4)),
    "macsec": st.booleans(),
    "mtu": st.integers(1280, 9216),
    "dscp": per_class(st.integers(0, 63)),
    "ecn": per_class(st.integers(0, 3) | st.sampled_from(["not-ect", "ect1", "ect0", "ce"])),
})


def _expect(table, cls, conv=lambda x: x):
    if not isinstance(table, dict):
        return conv(table)
    return conv(table.get(cls, table.get("default")))


@settings(max_examples=80, deadline=None)
@given(network)
def test_valid_sections_round_trip_and_mean_what_they_say(section):
    sc = load_scenario("chat", {f"network.{k}": v for k, v in section.items()})
    assert Scenario.from_dict(sc.to_dict()) == sc
    net = sc.network
    if "ip" in section:
        assert net.ip == str(section["ip"])
    assert sc.topology.mss == net.mtu - (40 if net.ip == "4" else 60)
    if "vlan" in section:
        v = section["vlan"]
        assert net.vlan == (tuple(v) if isinstance(v, list) else () if v == "none" else (v,))
    ecn = {"not-ect": 0, "ect1": 1, "ect0": 2, "ce": 3}
    for cls in CLASSES:
        c = CLASS_CODE[cls]
        for key, conv in (("dscp", int), ("vni", int), ("ecn", lambda x: ecn.get(x, x))):
            if key in section and _expect(section[key], cls) is not None:
                assert getattr(net, key)[c] == _expect(section[key], cls, conv), (key, cls)
        if "mpls_labels" in section and _expect(section["mpls_labels"], cls) is not None:
            assert list(net.mpls_labels[c]) == _expect(section["mpls_labels"], cls)


junk = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(),
                 st.text(max_size=12), st.lists(st.integers(-5, 70000), max_size=4),
                 st.dictionaries(st.text(max_size=6), st.integers(-5, 70000), max_size=3))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["ip", "ipv6_share", "ipv6_clients", "vlan", "encap", "mpls_labels", "vni",
                        "underlay", "underlay6", "srv6_segments", "macsec", "macsec_key",
                        "macsec_encrypt", "mtu", "dscp", "ecn"]), junk)
def test_junk_is_a_one_line_config_error_naming_the_key(key, value):
    try:
        load_scenario("chat", {f"network.{key}": value})
    except ConfigError as e:
        assert "\n" not in str(e)
        assert e.key.startswith("network.") or e.key == "topology.mtu", str(e)


@pytest.mark.parametrize("over,key,words", [
    (["network.ip=7"], "network.ip", "4, 6"),
    (["network.vlan=[1, 2, 3]"], "network.vlan", "[outer, inner]"),
    (["network.vlan=0"], "network.vlan", "1 to 4094"),
    (["network.encap=ipip"], "network.encap", "mpls"),
    (["network.dscp=64"], "network.dscp", "0 to 63"),
    (["network.dscp={bulk=8}"], "network.dscp", "unknown class 'bulk'"),
    (["network.ecn=maybe"], "network.ecn", "ect0"),
    (["network.ipv6_clients=\"2001:db8::/120\""], "network.ipv6_clients", "/96"),
    (["network.ip=6", "network.mtu=1000"], "network.mtu", "1280"),
    (["network.srv6_segments={chat=[\"10.0.0.1\"]}"], "network.srv6_segments", "IPv6"),
    (["network.mtu=9000", "topology.mtu=9000"], "topology.mtu", "network.mtu"),
    (["network.colour=1"], "network.colour", "unknown key"),
])
def test_refusals_name_the_key_and_what_is_allowed(over, key, words):
    with pytest.raises(ConfigError) as e:
        load_scenario("chat", over)
    assert e.value.key == key and words in e.value.problem and "\n" not in str(e.value)


def test_section_is_optional_and_topology_mtu_still_reads():
    data = load_scenario("chat").to_dict()
    del data["network"]
    sc = Scenario.from_dict(data)
    assert sc.network.plain and sc.topology.mtu == 1500 and sc.topology.mss == 1460
    data["topology"]["mtu"] = 9000  # a scenario written before the section existed
    sc = Scenario.from_dict(data)
    assert sc.network.mtu == 9000 and sc.topology.mss == 8960
    assert Scenario.from_dict(sc.to_dict()) == sc and "mtu" not in sc.to_dict()["topology"]


def test_quic_is_refused_for_rocev2():
    with pytest.raises(ConfigError) as e:
        tg.load_scenario("kv-transfer", ["network.quic={kv_transfer=0.5}"])
    assert e.value.key == "network.quic" and "kv_transfer" in e.value.problem


wire_sections = st.fixed_dictionaries({
    "ip": st.sampled_from([4, 6, "dual"]),
    "vlan": st.sampled_from([[], 7, [7, 8]]),
    "encap": st.sampled_from(ENCAPS),
    "macsec": st.booleans(),
    "dscp": st.integers(0, 63), "ecn": st.integers(0, 3),
    "mpls_labels": st.lists(st.integers(16, 2**20 - 1), min_size=1, max_size=3),
    "srv6_segments": st.lists(v6addr, max_size=3),
}, optional={"mtu": st.sampled_from([1280, 1500, 4000, 9000])})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wire_sections, st.sampled_from(["client", "server"]))
def test_any_section_is_right_on_the_wire(section, side):
    """A tiny run for a drawn section: every frame walks cleanly (lengths, next headers,
    checksums at every layer), fits the MTU, and the tables sum to the frames."""
    over = {f"network.{k}": v for k, v in section.items()}
    sc = load_scenario("chat", {**over, "chat.rate": "2/s", "topology.capture": side},
                       duration="1s", seed=2)
    n = total = 0
    per_flow = {}
    flows = {}
    for b in tg.batches(sc, batch_packets=500):
        for f in b.flows:
            flows[int(f["flow_id"])] = int(f["bytes_up"] + f["bytes_down"])
        for i in range(b.packets.shape[0]):
            frame = b.frame(i)
            w = walk(frame)
            assert len(w.ip_header) + len(w.l4) <= sc.network.mtu
            assert w.proto == 6 and (w.macsec is not None) == sc.network.macsec
            fid = int(b.packets["flow_id"][i])
            per_flow[fid] = per_flow.get(fid, 0) + len(frame)
            total += len(frame)
            n += 1
    assert n > 0 and per_flow == flows
    assert np.isfinite(total)
