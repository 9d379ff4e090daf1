"""The frame encoder (``kernels.frames.encode``) against an independent model of the frames.

hypothesis draws packet schedules (flows, directions, flags, sequence numbers, payload sizes,
payload placement inside TLS writes, capture side, timestamps); each frame is decoded by dpkt and
every field is checked against what the schedule says, with the IPv4 and TCP checksums recomputed
here by a plain RFC 1071 sum (not the encoder's vectorised one). A golden digest pins the bytes of
a tiny scenario end to end, so an unintended change to any layer shows up.
"""
from __future__ import annotations

import hashlib
import struct

import dpkt
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trafficgen as tg
from trafficgen.kernels import frames as kf
from trafficgen.kernels.rng import fill_bytes
from trafficgen.schema import ACK, FIN, PROTO_TCP, PSH, RST, SCHED_DTYPE, SYN
from trafficgen.wire.tls import Templates, Variant

from .helpers import packet_rows, splitmix64_finaliser
from .netwalk import csum as rfc1071  # the Internet checksum, the textbook way

POOL = np.empty((1 << 18) + 65536, np.uint8)
fill_bytes(0x5EED, POOL)
TEMPLATES = Templates([Variant("chrome", "chatgpt.com")], 4600)  # the chat scenario's Chrome
GW_MAC = np.frombuffer(bytes.fromhex("0a0000000001"), np.uint8).copy()
REC_SPAN = 16384 + 22
GOLDEN = "chat 4/s 3s seed 3 (see test_golden_bytes)"


flows_st = st.lists(
    st.fixed_dictionaries({
        "cip": st.integers(1, 2**32 - 1), "sip": st.integers(1, 2**32 - 1),
        "cport": st.integers(1, 65535), "sport": st.integers(1, 65535),
        "key": st.integers(0, 2**64 - 1), "hops": st.integers(0, 40),
        "cos": st.integers(0, 4)}),
    min_size=1, max_size=4)


@st.composite
def schedules(draw):
    flows = draw(flows_st)
    n = draw(st.integers(1, 24))
    mss = draw(st.sampled_from([536, 1220, 1448, 1460, 8948]))
    rows = np.zeros(n, SCHED_DTYPE)
    t = draw(st.integers(0, 2**40))
    for i in range(n):
        t += draw(st.integers(0, 5 * 10**9))
        flags = draw(st.sampled_from([SYN, SYN | ACK, ACK, ACK | PSH, ACK | FIN, ACK | FIN | PSH,
                                      RST, RST | ACK]))
        plen = 0 if flags & (SYN | RST) else draw(st.integers(0, mss))
        layout = draw(st.sampled_from([0, 0, 1, 2, 3])) if plen else 0
        # a write: the layout's template, then TLS records of at most 16,406 bytes on the wire
        # (each at least 22: header, one byte, content type, tag); the segment lies inside it
        tail = draw(st.sampled_from([0, 22, REC_SPAN - 1]) | st.integers(22, REC_SPAN - 1))
        app = draw(st.integers(0, 3)) * REC_SPAN + tail
        writelen = int(TEMPLATES.length[layout]) + app
        plen = min(plen, writelen)
        segoff = draw(st.integers(0, writelen - plen))
        if plen == 0 and not flags & SYN:  # a pure ACK: no SACK block (0 0) or one [segoff, writelen)
            segoff, writelen = draw(st.just((0, 0)) | st.tuples(st.integers(0, 2**32 - 1),
                                                                 st.integers(0, 2**32 - 1)))
        sack = segoff != writelen and plen == 0 and not flags & SYN
        f = draw(st.integers(0, len(flows) - 1))
        d = 0 if flags == SYN else 1 if flags == SYN | ACK else draw(st.integers(0, 1))
        rows[i] = (t, f, 0, d, 54 + tcp_options_len(flows[f]["cos"], flags, sack) + plen, 0, 0,
                   flags, draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)), plen,
                   False, 0, False, False, False, draw(st.integers(0, 65535)), layout, segoff, writelen,
                   draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)),
                   0 if flags == SYN else draw(st.integers(0, 2**32 - 1)))
    return flows, rows, mss, draw(st.integers(0, 1)), draw(st.integers(0, 2**62 - 2**41))


# The stacks, as the sources say (MODELS.md "Hosts, stacks and paths"; p0f.fp), by OS code:
# linux, android, windows, macos, ios: initial TTL, SYN option kinds in order, window scale,
# timestamps
TTL = (64, 64, 128, 64, 64)
SYN_KINDS = ((2, 4, 8, 1, 3), (2, 4, 8, 1, 3), (2, 1, 3, 1, 1, 4), (2, 1, 3, 1, 1, 8, 4, 0),
             (2, 1, 3, 1, 1, 8, 4, 0))
WSCALE = (7, 3, 8, 6, 6)
TS = (1, 1, 0, 1, 1)


def tcp_options_len(cos, flags, sack=False):
    """Option bytes of a segment of a client on stack ``cos`` and a Linux server (``sack``: a
    pure ACK with a SACK block)."""
    if flags & SYN and not flags & ACK:
        return (20, 20, 12, 24, 24)[cos]
    if flags & SYN:
        return 20 if TS[cos] else 12
    return (12 if TS[cos] else 0) + (12 if sack else 0)


def option_kinds(opts: bytes):
    kinds, k = [], 0
    while k < len(opts):
        kinds.append(opts[k])
        if opts[k] == 0:
            break
        k += 1 if opts[k] == 1 else opts[k + 1]
    return tuple(kinds)


def encode(flows, rows, mss, side, start_ns, pcap=True):
    f = {k: np.array([x.get(k, 0) for x in flows], dt) for k, dt in
         [("cip", np.uint32), ("sip", np.uint32), ("cport", np.uint16), ("sport", np.uint16),
          ("key", np.uint64), ("hops", np.uint8), ("cos", np.uint8)]}
    buf = np.empty(kf.frame_space(rows["wire_len"], pcap), np.uint8)
    offsets = np.empty(rows.shape[0], np.int64)
    flow_attrs = kf.FlowAttrs(cip=f["cip"], sip=f["sip"], cport=f["cport"], sport=f["sport"],
                              key=f["key"], hops=f["hops"], side=np.full(len(flows), side, np.uint8),
                              proto=np.full(len(flows), PROTO_TCP, np.uint8), cos=f["cos"],
                              sos=np.zeros(len(flows), np.uint8),
                              tsopt=np.array([TS[c] for c in f["cos"]], np.uint8))
    payloads = kf.Payloads(pool=POOL, tpl=TEMPLATES.data, tpl_mask=TEMPLATES.mask,
                           tpl_start=TEMPLATES.start, tpl_len=TEMPLATES.length)
    end = kf.encode(buf, pcap, start_ns, packet_rows(rows), flow_attrs, GW_MAC, mss, payloads,
                    offsets)
    assert end == buf.shape[0]
    return bytes(buf), offsets


def expected_payload(flow, row) -> bytes:
    """The payload, modelled independently: pool bytes at the (flow, direction, seq) offset,
    the template where its mask says so, and a TLS record header every 16,406 app-data bytes."""
    n, seg, wl, lay = int(row["payload_len"]), int(row["segoff"]), int(row["writelen"]), int(row["layout"])
    if n == 0:  # (a pure ACK's segoff and writelen are its SACK block)
        return b""
    off = (flow["key"] + int(row["direction"]) * 0x9E3779B97F4A7C15 + int(row["seq"])) % 2**64
    off %= POOL.shape[0] - 65536
    out = bytearray(POOL[off:off + n].tobytes())
    t0, tl = int(TEMPLATES.start[lay]), int(TEMPLATES.length[lay])
    echo = splitmix64_finaliser(int(flow["key"]) ^ 0x5E55101D) % (POOL.shape[0] - 65536)
    first = int(TEMPLATES.mask[t0]) if tl else 0
    if 0x40 <= first < 0x80:  # one of 2**j copies of the template (extension orders), per flow
        pick = int(POOL[echo + 48]) | int(POOL[echo + 49]) << 8
        t0 += tl * (pick % (1 << (first & 0xF)))
    for pos in range(seg, min(seg + n, tl)):
        mask, byte = int(TEMPLATES.mask[t0 + pos]), int(TEMPLATES.data[t0 + pos])
        if mask == 4:  # echo bytes: per flow, the same both ways
            out[pos - seg] = POOL[echo + byte]
        elif mask in (6, 7):  # a GREASE byte (RFC 8701: 0x?A), drawn per flow; 7 differs from the one before
            g = (int(POOL[echo + byte]) & 0xF0) | 0x0A
            if mask == 7 and g == (int(POOL[echo + byte - 1]) & 0xF0) | 0x0A:
                g ^= 0x10
            out[pos - seg] = g
        elif mask:
            out[pos - seg] = byte
    app = wl - tl
    for rs in range(0, max(app, 0), REC_SPAN):
        header = bytes([0x17, 3, 3]) + struct.pack("!H", min(REC_SPAN, app - rs) - 5)
        for k, b in enumerate(header):
            pos = tl + rs + k - seg
            if 0 <= pos < n:
                out[pos] = b
    return bytes(out)


def client_mac(ip):
    return b"\x02\x00" + struct.pack("!I", ip)


def server_mac(ip):
    return b"\x02\x01" + struct.pack("!I", ip)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
def test_frames_decode_to_the_schedule(case):
    flows, rows, mss, side, start_ns = case
    data, offsets = encode(flows, rows, mss, side, start_ns)
    o = 0
    for i, row in enumerate(rows):
        flow = flows[int(row["flow_id"])]
        up = int(row["direction"]) == 0
        wl = int(row["wire_len"])
        # pcap record header: int64 ns split exactly, both lengths the wire length
        sec, nsec, incl, orig = struct.unpack_from("<IIII", data, o)
        t = start_ns + int(row["ts_ns"])
        assert (sec, nsec) == (t // 10**9 % 2**32, t % 10**9)
        assert incl == orig == wl
        assert offsets[i] == o + 16
        frame = data[o + 16:o + 16 + wl]
        o += 16 + wl

        eth = dpkt.ethernet.Ethernet(frame)
        assert eth.type == dpkt.ethernet.ETH_TYPE_IP
        gw = GW_MAC.tobytes()
        if side == 0:
            want = (gw, client_mac(flow["cip"])) if up else (client_mac(flow["cip"]), gw)
        else:
            want = (server_mac(flow["sip"]), gw) if up else (gw, server_mac(flow["sip"]))
        assert (eth.dst, eth.src) == want
        ip = eth.data
        assert isinstance(ip, dpkt.ip.IP)
        hdr = frame[14:34]
        assert rfc1071(hdr) == 0, "IPv4 header checksum"
        assert ip.v == 4 and ip.hl == 5 and ip.tos == 0 and ip.p == 6
        cos = flow.get("cos", 0)
        sender = cos if up else 0  # servers run Linux
        synack = row["tcp_flags"] & SYN and row["tcp_flags"] & ACK
        want_id = int(row["ipid"])
        if sender in (3, 4):  # Apple: random per packet
            want_id = splitmix64_finaliser(int(flow["key"]) ^ ((int(row["direction"]) + 1) << 48)
                                           ^ want_id) & 0xFFFF
        elif synack:  # Linux zeroes a DF SYN/ACK's id
            want_id = 0
        assert ip.len == wl - 14 and ip.id == want_id
        assert (ip.df, ip.mf, ip.offset) == (1, 0, 0)
        assert ip.ttl == TTL[sender] - (0 if int(row["direction"]) == side else flow["hops"])
        src, dst = (flow["cip"], flow["sip"]) if up else (flow["sip"], flow["cip"])
        assert (ip.src, ip.dst) == (struct.pack("!I", src), struct.pack("!I", dst))

        tcp = ip.data
        assert isinstance(tcp, dpkt.tcp.TCP)
        seg = frame[34:]
        pseudo = hdr[12:20] + struct.pack("!BBH", 0, 6, len(seg))
        assert rfc1071(pseudo + seg) == 0, "TCP checksum"
        ports = (flow["cport"], flow["sport"]) if up else (flow["sport"], flow["cport"])
        assert (tcp.sport, tcp.dport) == ports
        assert (tcp.seq, tcp.ack, tcp.flags) == (row["seq"], row["ack"], row["tcp_flags"])
        assert tcp.urp == 0
        ts = TS[cos]
        sack = (row["payload_len"] == 0 and not row["tcp_flags"] & SYN
                and row["segoff"] != row["writelen"])
        assert tcp.off * 4 == 20 + tcp_options_len(cos, row["tcp_flags"], sack)
        kinds = option_kinds(tcp.opts)
        if row["tcp_flags"] & SYN:
            if synack:
                assert kinds == ((2, 4, 8, 1, 3) if ts else (2, 1, 1, 4, 1, 3))
                assert tcp.win == min(10 * mss, 65535)
            else:
                assert kinds == SYN_KINDS[cos]
                assert tcp.win == (65535 if cos >= 3 else 65535 // mss * mss)
            opts = dict(dpkt.tcp.parse_opts(tcp.opts))
            assert struct.unpack("!H", opts[dpkt.tcp.TCP_OPT_MSS]) == (mss,)
            assert opts[dpkt.tcp.TCP_OPT_WSCALE] == bytes([WSCALE[sender]])
            assert dpkt.tcp.TCP_OPT_SACKOK in opts
        else:
            assert kinds == ((1, 1, 8) if ts else ()) + ((1, 1, 5) if sack else ())
            assert tcp.win == min(int(row["win"]) >> WSCALE[sender], 65535)
            if sack:  # one block: the row's [segoff, writelen)
                opts = dict(dpkt.tcp.parse_opts(tcp.opts))
                assert opts[dpkt.tcp.TCP_OPT_SACK] == struct.pack("!II", row["segoff"], row["writelen"])
        if ts:
            opts = dict(dpkt.tcp.parse_opts(tcp.opts))
            assert opts[dpkt.tcp.TCP_OPT_TIMESTAMP] == struct.pack("!II", row["tsval"], row["tsecr"])
        assert bytes(tcp.data) == expected_payload(flow, row)
    assert o == len(data)


@settings(max_examples=40, deadline=None)
@given(schedules())
def test_without_pcap_headers_the_frames_are_the_same(case):
    flows, rows, mss, side, start_ns = case
    with_hdr, off_hdr = encode(flows, rows, mss, side, start_ns, pcap=True)
    bare, off_bare = encode(flows, rows, mss, side, start_ns, pcap=False)
    assert len(with_hdr) - len(bare) == 16 * rows.shape[0]
    for i in range(rows.shape[0]):
        wl = int(rows["wire_len"][i])
        assert with_hdr[off_hdr[i]:off_hdr[i] + wl] == bare[off_bare[i]:off_bare[i] + wl]


def test_checksum_of_an_odd_length_payload_with_carries():
    """A payload of 0xFF bytes, odd length: the sum carries many times and pads the last byte."""
    rows = np.zeros(1, SCHED_DTYPE)
    rows[0] = (0, 0, 0, 0, 54 + 12 + 1447, 0, 0, ACK | PSH, 2**32 - 1, 2**32 - 1, 1447, False, 0,
               False, False, False, 65535, 0, 0, 1447, 2**32 - 1, 2**32 - 1, 2**32 - 1)
    flows = [{"cip": 0xFFFFFFFF, "sip": 0xFFFFFFFE, "cport": 65535, "sport": 65535,
              "key": 0, "hops": 0}]
    saved = POOL[:1447].copy()
    try:
        POOL[:1447] = 0xFF
        data, _ = encode(flows, rows, 1460, 0, 0)
    finally:
        POOL[:1447] = saved
    frame = data[16:]
    seg = frame[34:]
    pseudo = frame[26:34] + struct.pack("!BBH", 0, 6, len(seg))
    assert rfc1071(frame[14:34]) == 0 and rfc1071(pseudo + seg) == 0
    assert seg[32:32 + 5] == bytes([0x17, 3, 3, 0x05, 0xA2])  # 1447 - 5 = 0x5A2


def test_golden_bytes(tmp_path):
    """The bytes of a tiny chat run, pinned. If this fails after an intended change to the wire
    format or the model, check the new output in tshark and update the digest in the same commit."""
    sc = tg.load_scenario("chat", ["chat.rate=4/s"], duration="3s", seed=3)
    tg.generate(sc, pcap=tmp_path / "g.pcap")
    digest = hashlib.sha256((tmp_path / "g.pcap").read_bytes()).hexdigest()
    assert digest == GOLDEN_SHA256, GOLDEN


GOLDEN_SHA256 = "a68dcb11b23ad0212c8a20c6f90d01528352fac32c54554baae3fc28d0b7beb7"
