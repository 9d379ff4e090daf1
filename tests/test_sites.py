"""Edge sites: clients at several sites, each with its own address pool and the RTT of its
paths; sessions spread over the sites by their clients, every path's RTT drawn from its site's."""
from __future__ import annotations

import ipaddress

import numpy as np
import pytest

import trafficgen as tg
from trafficgen.errors import ConfigError
from trafficgen.schema import ACK, CLASS_CODE, SYN

from .helpers import batch_tables

SITES = ('topology.sites=[{name="hq", clients="10.20.0.0/17", client_count=1500, '
         'rtt={median="20ms", p90="40ms", min="1ms", max="500ms"}}, '
         '{name="apac", clients="10.21.0.0/20", client_count=500, '
         'rtt={median="180ms", p90="250ms", min="100ms", max="1s"}}]')


def test_sites_parse_and_sum_their_clients():
    sc = tg.load_scenario("chat", [SITES])
    t = sc.topology
    assert [s.name for s in t.sites] == ["hq", "apac"] and t.client_count == 2000
    first, rtts = t.rtt_table()
    assert first.tolist() == [0, 1500] and rtts.shape[0] == 2
    addr = t.client_addresses(np.array([0, 1499, 1500, 1999]))
    assert [str(ipaddress.IPv4Address(int(a))) for a in addr] == [
        "10.20.0.1", "10.20.5.220", "10.21.0.1", "10.21.1.244"]
    assert tg.Scenario.from_dict(sc.to_dict()) == sc


@pytest.mark.parametrize("value, words", [
    ('[{name="a", clients="10.0.0.0/30", client_count=9, rtt="10ms"}]', "do not fit"),
    ('[{name="a", clients="10.0.0.0/24", client_count=9, rtt="10ms"}, '
     '{name="a", clients="10.1.0.0/24", client_count=9, rtt="10ms"}]', "twice"),
    ('[{name="a", clients="10.0.0.0/24", client_count=9}]', "expected the keys"),
    ('"hq"', "expected a list"),
    ('[{name="a", clients="nope", client_count=9, rtt="10ms"}]', "site 1"),
])
def test_bad_sites_are_one_line_errors(value, words):
    with pytest.raises(ConfigError) as e:
        tg.load_scenario("chat", [f"topology.sites={value}"])
    assert e.value.key == "topology.sites" and words in e.value.problem
    assert "\n" not in str(e.value)


def test_each_site_has_its_clients_and_its_rtt():
    """Captured at the clients: a SYN-ACK comes back one path RTT after its SYN; per site the
    median is that site's (its lognormal's median), and sessions split 3:1 as the clients do."""
    sc = tg.load_scenario("chat", [SITES, "chat.rate=30/s"], duration="3m", seed=4)
    flows, p = batch_tables(sc, "flows", "packets")
    hq = ipaddress.IPv4Network("10.20.0.0/17")
    apac = ipaddress.IPv4Network("10.21.0.0/20")
    src = [ipaddress.IPv4Address(int(a)) for a in flows["src_ip"]]
    at_hq = np.array([a in hq for a in src])
    at_apac = np.array([a in apac for a in src])
    assert (at_hq | at_apac).all()
    assert at_hq.mean() == pytest.approx(0.75, abs=0.05)
    syn = p[(p["tcp_flags"] & (SYN | ACK)) == SYN]
    synack = p[(p["tcp_flags"] & (SYN | ACK)) == (SYN | ACK)]
    t_syn = dict(zip(syn["flow_id"].tolist(), syn["ts_ns"].tolist()))
    rtt = {int(f): t - t_syn[int(f)] for f, t in zip(synack["flow_id"], synack["ts_ns"])}
    row = {int(f): k for k, f in enumerate(flows["flow_id"])}
    for mask, median in ((at_hq, 20e6), (at_apac, 180e6)):
        got = np.median([rtt[f] for f in rtt if mask[row[f]]])
        assert got == pytest.approx(median, rel=0.12)
    # the sites change nothing for a class with clients of its own (the gateways' retrievals)
    mix = tg.load_scenario("chat", [SITES, "rag.rate=5/s", "topology.capture=server"],
                           duration="20s", seed=4)
    f2, _ = batch_tables(mix, "flows", "packets")
    rag_src = f2["src_ip"][f2["class"] == CLASS_CODE["rag"]]
    assert all(ipaddress.IPv4Address(int(a)) in ipaddress.IPv4Network("10.80.0.0/24") for a in rag_src)
