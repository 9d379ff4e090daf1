"""The [network] section on the wire: every option dissected by tshark (no malformed frame, no
bad checksum at any layer, down to the inner TCP), walked by an independent decoder
(``netwalk``) and by scapy, and compared field by field with a plain run of the same seed:
the inner TCP segments must be the plain ones, byte for byte (IPv6: all but the checksum).
The tables must still add up to the capture, and the bytes must not depend on batching."""
from __future__ import annotations

import ipaddress
import struct
from collections import defaultdict

import numpy as np
import pytest

import trafficgen as tg
from trafficgen.schema import CLASS_CODE

from .helpers import NETWORK_ARGS, NETWORK_BASE, TSHARK_CHECKSUMS, TSHARK_FRAME_PROBLEMS, NetworkRun, run_tshark
from .netwalk import csum, walk

U6 = ["2001:db8:ff::1", "2001:db8:ff::2"]

# option -> (overrides, the protocol chain tshark must show, ending at the inner TCP)
OPTIONS = {
    "ipv6": (["network.ip=6"], "eth:ethertype:ipv6:tcp"),
    "dual": (["network.ip=dual", "network.ipv6_share=0.5"], None),
    "vlan": (["network.vlan=100"], "eth:ethertype:vlan:ethertype:ip:tcp"),
    "qinq": (["network.vlan=[100, 200]"], "eth:ethertype:ieee8021ad:ethertype:vlan:ethertype:ip:tcp"),
    "mpls": (["network.encap=mpls", "network.mpls_labels={default=[16001, 24005], chat=[16002, 24006, 24106]}"],
             "eth:ethertype:mpls:ip:tcp"),
    "vxlan": (["network.encap=vxlan", "network.vni={chat=10042}"],
              "eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:tcp"),
    "gre": (["network.encap=gre"], "eth:ethertype:ip:gre:ip:tcp"),
    "srv6": (["network.encap=srv6", 'network.srv6_segments={chat=["fc00:0:2::", "fc00:0:7::"]}'],
             "eth:ethertype:ipv6:ipv6.routing:ip:tcp"),
    "srv6_v6_server": (["network.encap=srv6", "network.ip=6", "topology.capture=server"],
                       "eth:ethertype:ipv6:ipv6.routing:ipv6:tcp"),
    "macsec": (["network.macsec=true"], "eth:ethertype:macsec:ethertype:ip:tcp"),
    "dscp_ecn": (["network.dscp={chat=34, default=10}", "network.ecn=ect0"], "eth:ethertype:ip:tcp"),
    "jumbo": (["network.mtu=9000"], "eth:ethertype:ip:tcp"),
    "combo": (["network.ip=dual", "network.vlan=[10, 20]", "network.encap=vxlan", "network.macsec=true",
               "network.dscp={chat=46}", "network.ecn=1", "topology.capture=server"], None),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            over = {"plain": [], "plain1480": ["network.mtu=1480"],
                    "plain_server": ["topology.capture=server"],
                    "plain1480_server": ["network.mtu=1480", "topology.capture=server"]}.get(name)
            if over is None:
                over = OPTIONS[name][0]
            cache[name] = NetworkRun(tmp_path_factory.mktemp(name), over)
        return cache[name]
    return get


@pytest.mark.parametrize("name", list(OPTIONS))
def test_tshark_dissects_to_inner_tcp_without_problems(tshark, runs, name):
    run = runs(name)
    bad = run_tshark(tshark, run.pcap, *TSHARK_CHECKSUMS, "-Y", TSHARK_FRAME_PROBLEMS, "-T",
                     "fields", "-e", "frame.number").split()
    assert bad == [], f"{name}: tshark flags frames {bad[:10]}"
    chains = run_tshark(tshark, run.pcap, "-T", "fields", "-e", "frame.protocols").split()
    assert len(chains) == len(run.frames)
    want = OPTIONS[name][1]
    for i, chain in enumerate(chains):
        assert (chain.startswith(want + ":") or chain == want) if want else ":tcp" in chain, \
            f"{name} frame {i + 1}: {chain}"


def test_tshark_catches_a_corrupted_inner_byte(tshark, runs, tmp_path):
    """Negative control: flip a payload byte of a VXLAN frame: the inner TCP and the outer
    UDP checksums both go bad, and the same filter reports that frame."""
    run = runs("vxlan")
    data = bytearray(run.pcap.read_bytes())
    o, k = 24, 0
    while True:
        incl = struct.unpack_from("<I", data, o + 8)[0]
        if incl > 200:
            break
        o += 16 + incl
        k += 1
    data[o + 16 + incl - 1] ^= 0x01
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(bytes(data))
    flagged = run_tshark(tshark, bad, *TSHARK_CHECKSUMS, "-Y", TSHARK_FRAME_PROBLEMS, "-T",
                         "fields", "-e", "frame.number").split()
    assert flagged == [str(k + 1)]


def _reference(runs, name):
    """The plain run the option's inner segments must equal (the same MSS)."""
    sc = runs(name).sc
    return runs(("plain1480" if sc.network.ip != "4" else "plain")
                + ("_server" if sc.topology.capture == "server" else ""))


@pytest.mark.parametrize("name", [n for n in OPTIONS if n != "jumbo"])  # jumbo: another MSS
def test_inner_packets_are_the_plain_ones(runs, name):
    """Walk every frame independently; the inner IP packet is the plain run's, with the
    class's DSCP/ECN (and, for IPv6, the prefixes' addresses and a re-made checksum)."""
    run = runs(name)
    ref = _reference(runs, name)
    net = run.sc.network
    assert len(run.frames) == len(ref.frames)
    # each frame's plain twin: the same flow's same packet (their bigger frames may wait for
    # the tap's link where the plain ones did not: microseconds, engine/tap.py)
    pair = np.empty(len(run.frames), np.int64)
    pair[np.argsort(run.packets["flow_id"], kind="stable")] = np.argsort(ref.packets["flow_id"], kind="stable")
    dt = run.ts - ref.ts[pair]
    assert np.abs(dt).max() <= 200_000 and np.mean(dt == 0) > 0.9
    flows, row_of = run.flows, run.flow_row
    pk = run.packets
    tos = (net.dscp[CLASS_CODE["chat"]] << 2) | net.ecn[CLASS_CODE["chat"]]
    for i, f in enumerate(run.frames):
        r = ref.frames[pair[i]]
        w = walk(f)
        fid = int(pk["flow_id"][i])
        v6 = flows["ip_version"][row_of[fid]] == 6
        assert w.ip_version == (6 if v6 else 4), i
        assert w.tos == tos, i
        assert w.ttl == r[22], i
        if v6:
            assert w.src == ipaddress.IPv6Address(int.from_bytes(
                (net.ipv6_clients, net.ipv6_servers)[pk["direction"][i] == "down"], "big")
                | int.from_bytes(r[26:30], "big")).packed, i
            assert w.dst[12:] == r[30:34] and w.proto == r[23], i
            assert w.l4[:16] == r[34:50] and w.l4[18:] == r[52:], f"frame {i + 1}: TCP differs"
        else:
            assert w.ip_header[:1] + w.ip_header[2:10] + w.ip_header[12:] == r[14:15] + r[16:24] + r[26:34], i
            assert w.l4 == r[34:], f"frame {i + 1}: TCP segment differs"
        assert len(w.ip_header) + len(w.l4) <= net.mtu, i
        if w.outer is None or w.outer["kind"] != "vxlan":
            assert f[:12] == r[:12], f"frame {i + 1}: MAC addresses"
        else:
            assert w.inner_eth == r[:12], i


@pytest.mark.parametrize("name", ["vlan", "qinq", "mpls", "vxlan", "gre", "srv6", "srv6_v6_server",
                                  "macsec", "combo"])
def test_outer_headers_follow_the_configuration(runs, name):
    run = runs(name)
    net, side = run.sc.network, run.sc.topology.capture
    c = CLASS_CODE["chat"]
    pk = run.packets
    sport_of = defaultdict(set)
    last_pn = None
    ids = ([], [])  # per tunnel endpoint: (outer ID, inner ID) of its frames in capture order
    for i, f in enumerate(run.frames):
        w = walk(f)
        d = 1 if pk["direction"][i] == "down" else 0
        pcp = net.dscp[c] >> 3
        if net.vlan:
            tpids = [0x88A8, 0x8100] if len(net.vlan) == 2 else [0x8100]
            assert w.vlans == [(t, pcp, v) for t, v in zip(tpids, net.vlan)], i
        if net.encap == "mpls":
            labels = net.mpls_labels[c]
            assert [x[0] for x in w.labels] == list(labels), i
            assert [x[2] for x in w.labels] == [0] * (len(labels) - 1) + [1], i
            assert all(x[1] == pcp and x[3] == w.ttl for x in w.labels), i
        if net.encap in ("vxlan", "gre"):
            src, dst = (net.underlay[d], net.underlay[1 - d])
            assert (w.outer["src"], w.outer["dst"]) == (src.to_bytes(4, "big"), dst.to_bytes(4, "big")), i
            assert w.outer["tos"] == w.tos, i
            # the tunnel endpoint's own header: its TTL (one per endpoint: 64 sent here, 61 after
            # the far side's three underlay hops), DF (GRE pmtudisc; VXLAN's df unset) and its
            # ID counter, never the inner packet's
            sent_here = d == (0 if side == "client" else 1)
            assert w.outer["ttl"] == (64 if sent_here else 61), i
            assert w.outer["df"] == (net.encap == "gre"), i
            ids[d].append((w.outer["id"], int.from_bytes(w.ip_header[4:6], "big")))
        if net.encap == "gre":
            assert w.outer["ptype"] == (0x86DD if w.ip_version == 6 else 0x0800), i
        if net.encap == "vxlan":
            assert w.outer["vni"] == net.vni[c], i
            assert 49152 <= w.outer["sport"] <= 65535, i
            sport_of[(w.src, w.dst, w.l4[:4])].add(w.outer["sport"])
        if net.encap == "srv6":
            transit = list(net.srv6_segments[c])
            visit = (transit if d == 0 else transit[::-1]) + [ipaddress.IPv6Address(U6[1 - d]).packed]
            assert w.outer["segments"] == visit[::-1], i
            assert w.outer["src"] == ipaddress.IPv6Address(U6[d]).packed, i
            sent_here = d == (0 if side == "client" else 1)
            assert w.outer["segments_left"] == (len(visit) - 1 if sent_here else 0), i
        if net.macsec:
            tci, _sl, pn, sci, _n = w.macsec
            assert tci == 0x20 and sci == f[6:12] + b"\x00\x01", i
            assert last_pn is None or pn == last_pn + 1, i
            last_pn = pn
    for seq in ids if net.encap in ("vxlan", "gre") else ():
        outer, inner = np.array(seq).T
        assert len(outer) > 50 and np.mean(outer == inner) < 0.02, "outer IDs copy the inner ones"
        # one counter per endpoint: it only moves forward (mod 2**16), a step per frame at least
        steps = (np.diff(outer) % 65536)
        assert steps.min() >= 1 and np.median(steps) < 100, steps[:20]
    if sport_of:
        assert all(len(v) == 1 for v in sport_of.values()), "source port not a function of the 5-tuple"
        assert len({next(iter(v)) for v in sport_of.values()}) > len(sport_of) // 2


@pytest.mark.parametrize("name", ["dual", "combo", "srv6_v6_server", "mpls", "macsec"])
def test_tables_add_up_to_the_capture(runs, name):
    run = runs(name)
    pk, flows, reqs = run.packets, run.flows, run.requests
    lens = np.array([len(f) for f in run.frames], np.int64)
    assert np.array_equal(pk["wire_len"].astype(np.int64), lens)
    assert run.report["wire_bytes"] == lens.sum()
    down = pk["direction"] == "down"
    for ids, table, key in ((pk["flow_id"], flows, "flow_id"), (pk["request_id"], reqs, "request_id")):
        keep = ids >= 0
        n = int(table[key].max()) + 1
        up = np.bincount(ids[keep & ~down], lens[keep & ~down], minlength=n)
        dn = np.bincount(ids[keep & down], lens[keep & down], minlength=n)
        assert np.array_equal(up[table[key]], table["bytes_up"]), key
        assert np.array_equal(dn[table[key]], table["bytes_down"]), key
    # families: the flow table's addresses are the frames' (IPv6 ones in the v6 prefixes)
    if run.sc.network.ip != "4":
        assert set(flows["ip_version"]) == ({4, 6} if run.sc.network.ip == "dual" else {6})
        _, first = np.unique(pk["flow_id"], return_index=True)
        for i in first:
            w = walk(run.frames[i])
            k = run.flow_row[int(pk["flow_id"][i])]
            assert w.ip_version == flows["ip_version"][k]
            assert ipaddress.ip_address(w.src) == ipaddress.ip_address(flows["src_ip"][k])
            assert ipaddress.ip_address(w.dst) == ipaddress.ip_address(flows["dst_ip"][k])


def test_jumbo_segments_fill_the_mtu(runs):
    run = runs("jumbo")
    sizes = [len(walk(f).ip_header) + len(walk(f).l4) for f in run.frames]
    assert max(sizes) == 9000 and run.sc.topology.mss == 8960


def test_ipv6_segments_fit_the_mtu(runs):
    run = runs("ipv6")
    assert run.sc.topology.mss == 1440
    assert max(len(walk(f).ip_header) + len(walk(f).l4) for f in run.frames) == 1500


def test_same_seed_same_bytes_whatever_the_batching(runs, tmp_path):
    run = runs("combo")
    sc = run.sc
    again = tmp_path / "again.pcap"
    tg.generate(sc, pcap=again, batch_packets=333, window="1s")
    assert again.read_bytes() == run.pcap.read_bytes()
    other = tg.load_scenario(sc, seed=4)
    tg.generate(other, pcap=again)
    assert again.read_bytes() != run.pcap.read_bytes()


def test_scapy_agrees(runs):
    """scapy decodes the stacks to the inner TCP and recomputes the same checksums."""
    from scapy.contrib.macsec import MACsec
    from scapy.contrib.mpls import MPLS
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6ExtHdrSegmentRouting
    from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
    from scapy.layers.vxlan import VXLAN
    assert MACsec and MPLS and Dot1AD and Dot1Q and VXLAN and IPv6ExtHdrSegmentRouting
    for name in ("qinq", "mpls", "vxlan", "gre", "srv6_v6_server", "combo", "dual"):
        run = runs(name)
        for f in run.frames[:150]:
            p = Ether(f)
            assert bytes(p) == f
            if p.haslayer(MACsec):  # scapy needs an SA to go on: strip SecTAG and ICV
                assert p[MACsec].SC == 1 and p[MACsec].E == 0 and p[MACsec].PN >= 1
                p = Ether(f[:12] + f[28:-16])
            assert p.haslayer(TCP), f"{name}: scapy finds no TCP: {p.summary()}"
            tcp = p.getlayer(TCP, nb=1)
            under = tcp.underlayer
            rebuilt = under.__class__(bytes(under))
            del rebuilt[TCP].chksum
            assert under.__class__(bytes(rebuilt))[TCP].chksum == tcp.chksum, name
            assert bytes(tcp)[:20] == walk(f).l4[:20], name
            for layer in (IP, UDP):
                for k in range(1, 4):
                    x = p.getlayer(layer, nb=k)
                    if x is None:
                        break
                    c = x.chksum
                    if c:
                        y = x.copy()
                        del y.chksum
                        assert x.__class__(bytes(y)).chksum == c, f"{name}: {layer.__name__}"


def test_plain_network_section_changes_nothing(runs, tmp_path):
    """An explicit section with every default is the plain run, byte for byte."""
    ref = runs("plain")
    sc = tg.load_scenario("chat", NETWORK_BASE + ["network.ip=4", "network.vlan=[]",
                                                  "network.encap=none", "network.macsec=false",
                                                  "network.dscp=0"], **NETWORK_ARGS)
    out = tmp_path / "p.pcap"
    tg.generate(sc, pcap=out)
    assert out.read_bytes() == ref.pcap.read_bytes()
    assert csum(b"\x45\x00") == (~0x4500) & 0xFFFF
