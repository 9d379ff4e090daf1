"""The encoder's UDP path on its own: the CRC-32 kernel against zlib, any RoCEv2 rows
(hypothesis) checked by an ICRC built plainly over masked bytes and by RFC 1071 sums, and RTP
and opaque UDP rows through ``models.udp.schedule_from_packets``, decoded by dpkt and scapy.
"""
from __future__ import annotations

import struct
import zlib

import dpkt
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trafficgen.kernels import udp as ku
from trafficgen.schema import KIND_CODE, SCHED_DTYPE

from .helpers import ROCE_OPS, icrc_of, ones_complement_sum, packet_rows, put_row


def test_crc_kernel_matches_zlib():
    assert (~ku.crc32_update(np.int64(0xFFFFFFFF), np.frombuffer(b"123456789", np.uint8), 0, 9)
            & 0xFFFFFFFF) == 0xCBF43926  # the CRC-32 check value
    rng = np.random.default_rng(1)
    buf = rng.integers(0, 256, 5000, dtype=np.uint8)
    for n in [0, 1, 7, 8, 9, 63, 1024, 4999]:
        o = int(rng.integers(0, 5000 - n + 1))
        got = ~ku.crc32_update(np.int64(0xFFFFFFFF), buf, o, n) & 0xFFFFFFFF
        assert got == zlib.crc32(buf[o:o + n].tobytes()), n


@st.composite
def roce_rows(draw):
    n = draw(st.integers(1, 12))
    rows = np.zeros(n, SCHED_DTYPE)
    for i in range(n):
        op = draw(st.sampled_from(sorted(ROCE_OPS | {ku.OP_ACK, ku.OP_CNP})))
        answer = op in (ku.OP_ACK, ku.OP_CNP)
        plen = 0 if answer else draw(st.integers(0, 4096))
        # an Acknowledge's segoff is its syndrome (0: the ACK's), a row's win its TOS (0: the
        # class's), as kernels/roce.py writes them
        segoff = draw(st.sampled_from([0, ku.AETH_NAK_PSN])) if op == ku.OP_ACK else \
            0 if answer else draw(st.integers(0, 2**30))
        tos = draw(st.sampled_from([0, ku.ROCE_TOS | 3, ku.CNP_TOS]))
        put_row(rows, i, (i * 1000, draw(st.integers(0, 1)), 0, 1 if answer else 0,
                   42 + ku.roce_bth_len(op) + plen + (-plen % 4) + 4, 5, 6, op,
                   draw(st.integers(0, 2**24 - 1)), draw(st.integers(0, 2**32 - 1)), plen,
                   draw(st.integers(0, 65535)), ku.L_ROCE, segoff,
                   draw(st.integers(0, 2**32 - 1)), tos, 0, 0))
    return rows


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(roce_rows())
def test_encoder_roce_property(rows):
    """Any RoCE rows: lengths as the schedule says, ICRC and checksums right, header fields
    where the IBTA puts them."""
    flows = empty_flows(2)
    for rec, f in zip(rows, encode(rows, flows)):
        assert len(f) == rec["wire_len"] and struct.unpack("<I", f[-4:])[0] == icrc_of(f)
        assert ones_complement_sum(f[14:34]) == 0xFFFF
        assert ones_complement_sum(f[26:34] + struct.pack("!BBH", 0, 17, len(f) - 34) + f[34:]) == 0xFFFF
        assert struct.unpack("!HH", f[34:38]) == (flows["src_port"][rec["flow_id"]], ku.ROCE_PORT)
        assert f[42] == rec["tcp_flags"] and int.from_bytes(f[51:54], "big") == rec["seq"]
        assert (f[50] >> 7) == (rec["direction"] == 0 and rec["ack"] >> 31)
        if rec["tcp_flags"] in (ku.OP_WRITE_FIRST, ku.OP_WRITE_ONLY):
            assert int.from_bytes(f[66:70], "big") == rec["writelen"]
        assert f[15] == (rec["win"] or ku.ROCE_TOS)
        assert f[46] == (0x40 if rec["tcp_flags"] == ku.OP_CNP else 0)  # BECN
        if rec["tcp_flags"] == ku.OP_ACK:
            assert f[54] == (rec["segoff"] or ku.AETH_SYNDROME)
            assert int.from_bytes(f[55:58], "big") == rec["ack"] & 0xFFFFFF
        if rec["tcp_flags"] == ku.OP_CNP:
            assert f[54:70] == bytes(16) and len(f) == 42 + 12 + 16 + 4


def empty_flows(n):
    f = np.zeros(n, [("src_ip", "u4"), ("dst_ip", "u4"), ("src_port", "u2"), ("dst_port", "u2"),
                     ("protocol", "u1")])
    f["src_ip"], f["dst_ip"] = 0x0A3E0001 + np.arange(n), 0x0A3E0101 + np.arange(n)
    f["src_port"], f["dst_port"], f["protocol"] = 49152 + np.arange(n), ku.ROCE_PORT, 17
    return f


def test_rtp_and_opaque_udp_frames(tmp_path):
    from trafficgen.classes.udp import schedule_from_packets
    pk = np.zeros(6, SCHED_DTYPE)
    pk["ts_ns"] = np.arange(6) * 20_000_000 + [5, 5, 0, 0, 9, 9]
    pk["flow_id"] = [0, 0, 1, 1, 0, 1]
    pk["request_id"] = [0, 0, -1, -1, 0, -1]
    pk["direction"] = [0, 1, 0, 1, 0, 0]
    pk["layout"] = [ku.L_RTP, ku.L_RTP, ku.L_OPAQUE, ku.L_OPAQUE, ku.L_RTP, ku.L_OPAQUE]
    pk["payload_len"] = [80, 120, 33, 0, 81, 1]
    pk["tcp_flags"] = [0x80 | ku.RTP_PT_OPUS, ku.RTP_PT_OPUS, 0, 0, ku.RTP_PT_OPUS, 0]
    pk["seq"] = [7, 900, 0, 0, 8, 0]
    pk["ack"] = [960, 48000, 0, 0, 1920, 0]
    pk["wire_len"] = 42 + pk["payload_len"] + np.where(pk["layout"] == ku.L_RTP, 12, 0)
    want_up = int(pk["wire_len"][[0, 4]].sum())
    flows = {"session": np.array([0, 1]), "src_ip": np.array([0x0A000001, 0x0A000002]),
             "dst_ip": np.array([0xC6336401, 0xC6336402]), "dst_port": np.array([3478, 9999]),
             "client_id": np.array([0, 1])}
    requests = {"flow": np.array([0]), "session": np.array([0]), "kind": KIND_CODE["media"]}
    ep = schedule_from_packets(10**18, 0, pk, flows, requests, 2)
    assert np.array_equal(ep.flows["protocol"], [17, 17]) and ep.requests.shape[0] == 1
    assert np.array_equal(ep.flows["requests"], [1, 0])
    assert ep.requests["bytes_up"][0] == want_up
    assert (np.diff(ep.sched["ts_ns"]) >= 0).all()
    ep.flows["src_port"] = [50000, 50001]
    frames = encode(ep.sched, ep.flows)
    for rec, f in zip(ep.sched, frames):
        eth = dpkt.ethernet.Ethernet(f)
        ip, udp = eth.data, eth.data.data
        assert ip.p == 17 and len(f) == rec["wire_len"] and ip.len + 14 == len(f)
        assert ones_complement_sum(f[26:34] + struct.pack("!BBH", 0, 17, len(f) - 34) + f[34:]) == 0xFFFF
        fl = ep.flows[rec["flow_id"]]
        ports = (udp.sport, udp.dport) if rec["direction"] == 0 else (udp.dport, udp.sport)
        assert ports == (fl["src_port"], fl["dst_port"])
        if rec["layout"] == ku.L_RTP:
            rtp = dpkt.rtp.RTP(bytes(udp.data))
            assert (rtp.version, rtp.pt, rtp.seq, rtp.ts) == (2, 111, rec["seq"], rec["ack"])
            assert rtp.m == (rec["tcp_flags"] >> 7) and len(rtp.data) == rec["payload_len"]
        else:
            assert len(udp.data) == rec["payload_len"]
    from scapy.all import Ether  # the second decoder agrees on the UDP checksum
    for f in frames:
        s = Ether(f)
        want = s["UDP"].chksum
        del s["UDP"].chksum
        assert Ether(bytes(s))["UDP"].chksum == want


def encode(sched, flows) -> list[bytes]:
    from trafficgen.kernels import frames as kf
    pool = np.zeros(4 << 20 | 65536, np.uint8)
    pool[:] = np.arange(pool.shape[0]) * 7 % 251
    buf = np.empty(kf.frame_space(sched["wire_len"], False), np.uint8)
    off = np.empty(sched.shape[0], np.int64)
    z8, z64 = np.zeros(1, np.uint8), np.zeros(1, np.int64)
    flow_attrs = kf.FlowAttrs(
        cip=flows["src_ip"].astype(np.uint32), sip=flows["dst_ip"].astype(np.uint32),
        cport=flows["src_port"].astype(np.uint16), sport=flows["dst_port"].astype(np.uint16),
        key=np.array([11, 12], np.uint64), hops=np.array([3, 4], np.uint8),
        side=np.zeros(2, np.uint8), proto=flows["protocol"].astype(np.uint8),
        cos=np.zeros(2, np.uint8), sos=np.zeros(2, np.uint8), tsopt=np.zeros(2, np.uint8))
    payloads = kf.Payloads(pool=pool, tpl=z8, tpl_mask=z8, tpl_start=z64, tpl_len=z64)
    kf.encode(buf, False, 0, packet_rows(sched), flow_attrs, np.zeros(6, np.uint8), 1460,
              payloads, off)
    return [bytes(buf[o:o + w]) for o, w in zip(off, sched["wire_len"])]
