"""The network post-pass on UDP frames (RoCEv2-shaped: UDP 4791, BTH, payload, ICRC), built by
hand, since the classes on this branch are all TCP: every stack wraps them with every length
and checksum right, the UDP payload (BTH to ICRC) passes through untouched, a UDP checksum of
0 stays 0 over IPv4 and is computed over IPv6 (RFC 8200). Over IPv4 the ICRC stays valid: it
masks the TOS, TTL and checksum fields the post-pass may change."""
from __future__ import annotations

import struct

import numpy as np
import pytest

import trafficgen as tg
from trafficgen.engine.netplan import NetPlan
from trafficgen.schema import CLASS_CODE, SCHED_DTYPE

from .netwalk import csum, l4_ok, walk

SRC, DST = bytes([10, 0, 0, 1]), bytes([10, 0, 1, 2])
UDP_PAYLOAD = bytes(range(12)) + bytes(range(64, 128)) + b"ICRC"  # BTH, data, ICRC


def plain_udp_frame(with_checksum: bool) -> bytes:
    udp = struct.pack("!HHHH", 49152, 4791, 8 + len(UDP_PAYLOAD), 0) + UDP_PAYLOAD
    if with_checksum:
        c = csum(SRC + DST + struct.pack("!BBH", 0, 17, len(udp)) + udp)
        udp = udp[:6] + struct.pack("!H", c or 0xFFFF) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 7, 0x4000, 64, 17, 0, SRC, DST)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return b"\x02\x00\x0a\x00\x00\x01" + b"\x00\x00\x5e\x00\x01\x01" + b"\x08\x00" + ip + udp


def rewrite(overrides, frame, v6):
    sc = tg.load_scenario("chat", overrides)
    plan = NetPlan(sc)
    part = np.zeros(1, SCHED_DTYPE)
    part["class"] = CLASS_CODE["kv_transfer"]
    ovh = int(plan.class_ovh[CLASS_CODE["kv_transfer"]]) + (20 if v6 else 0)
    part["wire_len"] = len(frame) + ovh
    buf = np.frombuffer(bytes(16) + frame, np.uint8).copy()
    cols = {"v6": np.array([v6], np.uint8), "quic": np.zeros(1, np.uint8),
            "key": np.array([12345], np.uint64), "ovh": np.array([ovh])}
    out, offs = plan.wire(buf, np.array([16]), part, cols, np.array([0]),
                          lambda n: np.empty(n, np.uint8), 0)
    return bytes(out[offs[0]:offs[0] + int(part["wire_len"][0])]), sc.network


@pytest.mark.parametrize("over,v6", [
    (["network.encap=vxlan", "network.vlan=[5, 6]", "network.macsec=true"], False),
    (["network.encap=srv6", "network.dscp={kv_transfer=26}", "network.ecn=ect0"], False),
    (["network.encap=gre", "network.ip=dual"], True),
    (["network.encap=mpls", "network.ip=dual"], True),
    (["network.encap=vxlan", "network.ip=dual", "network.dscp=26"], True),
])
@pytest.mark.parametrize("with_checksum", [False, True])
def test_udp_frames_take_every_stack(over, v6, with_checksum):
    frame = plain_udp_frame(with_checksum)
    out, net = rewrite(over, frame, v6)
    w = walk(out)  # lengths, next headers, checksums at every layer
    # the UDP payload passes through; over IPv6 the ICRC is made again (it covers the header)
    assert w.proto == 17 and w.l4[8:-4] == UDP_PAYLOAD[:-4]
    assert (w.l4[-4:] == UDP_PAYLOAD[-4:]) == (not v6)
    assert w.tos == (net.dscp[CLASS_CODE["kv_transfer"]] << 2 | net.ecn[CLASS_CODE["kv_transfer"]])
    if v6:
        assert w.l4[6:8] != b"\0\0" and l4_ok(w.src, w.dst, 17, w.l4)
    else:
        assert (w.l4[6:8] == b"\0\0") == (not with_checksum)
        assert w.ip_header[4:9] + w.ip_header[12:] == frame[18:23] + frame[26:34]


def test_a_corrupted_udp_payload_is_caught():
    out, _ = rewrite(["network.encap=vxlan"], plain_udp_frame(True), False)
    bad = bytearray(out)
    bad[-1] ^= 1
    with pytest.raises(AssertionError, match="checksum"):
        walk(bytes(bad))
