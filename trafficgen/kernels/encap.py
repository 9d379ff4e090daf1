"""Frame post-pass: plain Ethernet/IPv4/{TCP,UDP} frames in, the configured wire stack out.

Inside out, per frame: the inner IP header (IPv4 with the class's DSCP/ECN and its checksum
recomputed, or IPv6 with the L4 checksum fixed incrementally from the pseudo-header
difference, RFC 1624), an encapsulation (MPLS label stack; GRE or VXLAN over an IPv4
underlay, the outer IPv4 header the tunnel endpoint's own (``underlay``: its ID counter, TTL
and DF), the VXLAN UDP source port from the inner flow hash and its checksum over the whole
inner frame; SRv6: an outer IPv6 header and a Segment Routing Header with the class's segment
list, RFC 8754), 802.1Q or QinQ tags, and an 802.1AE SecTAG with a 16-byte ICV (opaque here;
``netplan.seal_macsec`` replaces it, and encrypts, when a key is configured).

The models never see any of this: they schedule plain IPv4 frames, ``netplan`` adds each flow's
constant overhead to ``wire_len``, and this kernel must land exactly on those lengths.
"""
from collections import namedtuple

import numpy as np

from . import quic as kq
from .codes import PROTO_TCP, PROTO_UDP
from .headers import (
    ETH_HLEN,
    ETH_SRC,
    ETH_TYPE,
    ETHERTYPE_IP4,
    ETHERTYPE_IP6,
    ETHERTYPE_MACSEC,
    ETHERTYPE_MPLS,
    ETHERTYPE_QINQ,
    ETHERTYPE_VLAN,
    IP4_ADDRS,
    IP4_CSUM,
    IP4_DST,
    IP4_HLEN,
    IP4_LEN,
    IP4_PROTO,
    IP4_SRC,
    IP4_TOS,
    IP4_TTL,
    IP6_ADDRS,
    IP6_DST,
    IP6_FLOW,
    IP6_HLEN,
    IP6_HOPS,
    IP6_NEXT,
    IP6_PLEN,
    IP6_SRC,
    IP6_TC_FLOW,
    IP6_VTC,
    PCAP_INCL_LEN,
    PCAP_ORIG_LEN,
    PCAP_REC,
    TCP_CSUM,
    UDP_CSUM,
    UDP_DPORT,
    UDP_HLEN,
    UDP_LEN,
    UDP_SPORT,
    VLAN_TAG,
    VLAN_TCI,
)
from .jit import helper, inline, kernel
from .rng import GOLDEN, mix64
from .udp import ROCE_PORT, icrc_v6
from .underlay import outer4, outer_ident, outer_ttl, vxlan_checksum
from .wire import fold, get16, put16, put32, sum16

ENCAP_NONE, ENCAP_MPLS, ENCAP_VXLAN, ENCAP_GRE, ENCAP_SRV6 = range(5)
MACSEC_OFF, MACSEC_OPAQUE, MACSEC_ENCRYPT, MACSEC_INTEGRITY = range(4)
# scalar configuration vector (int64)
C_ENCAP, C_NVLAN, C_VLAN0, C_VLAN1, C_MACSEC, C_SIDE, C_UNDER0, C_UNDER1 = range(8)
C_LEN = 8
VXLAN_PORT = 4789
SECTAG = 16  # EtherType 88E5, TCI/AN, SL, PN, SCI
ICV = 16
# per-layer bytes (the same figures ``netplan.overheads`` adds to wire_len)
GRE_BYTES = 20 + 4
VXLAN_BYTES = 14 + 20 + 8 + 8
SRV6_BYTES = 40 + 8  # + 16 per segment
IPPROTO_GRE, IPPROTO_ROUTING, IPPROTO_IPV4, IPPROTO_IPV6 = 47, 43, 4, 41

FrameRows = namedtuple("FrameRows", "wire_len dirs flow_row cls qkind qpn")
FrameRows.__doc__ = """Per plain frame: its length on the wire (``wire_len``), direction (0 up,
1 down), flow row (into ``FlowCols``), class code (into ``NetTables``' per-class rows) and,
on QUIC flows, the packet's kind (``kernels.quic`` Q_*) and packet number."""
FlowCols = namedtuple("FlowCols", "v6 key quic")  # per flow row: IPv6 (0/1), key, QUIC (0/1)
NetTables = namedtuple("NetTables", "cfg dscp ecn labels nlabels vni segs nsegs under6 pre6")
NetTables.__doc__ = """The network section, per run: ``cfg`` int64[C_LEN] (C_*), per class
``dscp``/``ecn`` (uint8[C]), MPLS ``labels`` int64[C, L] and ``nlabels``, ``vni`` int64[C],
SRv6 ``segs`` uint8[C, S, 16] and ``nsegs``; ``under6``/``pre6`` uint8[2, 16] (client side,
server side): the SRv6 underlay's addresses and the IPv6 prefixes of the inner addresses."""


@inline
def _copy(dst, o, src, s, n):
    d = dst[o:o + n]
    v = src[s:s + n]
    for k in range(n):  # over views: vectorised
        d[k] = v[k]


@inline
def _mac_of(buf, o, tag, ip):
    buf[o] = 0x02
    buf[o + 1] = tag
    put32(buf, o + 2, ip)


@helper
def _v6_header(out, o, tos, label, plen, nh, hop):
    out[o + IP6_VTC] = 0x60 | (tos >> 4)
    out[o + IP6_TC_FLOW] = ((tos & 0x0F) << 4) | ((label >> 16) & 0x0F)
    put16(out, o + IP6_FLOW, label & 0xFFFF)
    put16(out, o + IP6_PLEN, plen)
    out[o + IP6_NEXT] = nh
    out[o + IP6_HOPS] = hop


@helper
def _inner_ip(out, q, src, ip4, v6, tos, label, pre6, d, quic):
    """The inner IP packet at ``q`` from the plain IPv4 one at ``src[ip4:]``; returns its
    length. IPv6: addresses are the side's /96 prefix + the IPv4 address. ``quic``: the
    protocol becomes UDP (the caller writes the QUIC packet and the UDP checksum)."""
    tot4 = get16(src, ip4 + IP4_LEN)
    proto = PROTO_UDP if quic else src[ip4 + IP4_PROTO]
    l4 = tot4 - IP4_HLEN
    if not v6:
        _copy(out, q, src, ip4, tot4)
        out[q + IP4_TOS] = tos
        out[q + IP4_PROTO] = proto
        out[q + IP4_CSUM] = 0
        out[q + IP4_CSUM + 1] = 0
        put16(out, q + IP4_CSUM, fold(sum16(out, q, IP4_HLEN)))
        return tot4
    _v6_header(out, q, tos, label, l4, proto, src[ip4 + IP4_TTL])
    for k in range(16):
        out[q + IP6_SRC + k] = pre6[d, k]
        out[q + IP6_DST + k] = pre6[1 - d, k]
    for k in range(4):  # the IPv4 addresses in the addresses' last 32 bits
        out[q + IP6_SRC + 12 + k] = src[ip4 + IP4_SRC + k]
        out[q + IP6_DST + 12 + k] = src[ip4 + IP4_DST + k]
    seg = q + IP6_HLEN
    _copy(out, seg, src, ip4 + IP4_HLEN, l4)
    if proto == PROTO_UDP and not quic and (get16(out, seg + UDP_DPORT) == ROCE_PORT
                                            or get16(out, seg + UDP_SPORT) == ROCE_PORT):
        # RoCEv2: its ICRC covers the IP header, so it is made again over IPv6 (and the UDP
        # checksum, which covers the ICRC, in full)
        crc = icrc_v6(out, q, seg + l4 - 4)
        for k in range(4):
            out[seg + l4 - 4 + k] = (crc >> (8 * k)) & 0xFF
        out[seg + UDP_CSUM] = 0
        out[seg + UDP_CSUM + 1] = 0
        s = sum16(out, q + IP6_ADDRS, 32) + np.uint64(PROTO_UDP) + np.uint64(l4) + sum16(out, seg, l4)
        c = fold(s)
        put16(out, seg + UDP_CSUM, 0xFFFF if c == 0 else c)
        return IP6_HLEN + l4
    if not quic and (proto == PROTO_TCP or proto == PROTO_UDP):
        cs = seg + (TCP_CSUM if proto == PROTO_TCP else UDP_CSUM)
        old = get16(out, cs)
        new = sum16(out, q + IP6_ADDRS, 32)
        if proto == PROTO_UDP and old == 0:  # no checksum over IPv4: IPv6 needs one (RFC 8200)
            s = new + np.uint64(PROTO_UDP) + np.uint64(l4) + sum16(out, seg, l4)
        else:  # RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), m the old addresses, m' the new
            s = (np.uint64(~old & 0xFFFF) + np.uint64(4 * 0xFFFF) - sum16(src, ip4 + IP4_ADDRS, 8)
                 + new)
        c = fold(s)
        put16(out, cs, 0xFFFF if proto == PROTO_UDP and c == 0 else c)
    return IP6_HLEN + l4


@helper
def _srv6(out, q, tos, label, inner_len, v6, hop, c, d, net):
    """Outer IPv6 + SRH at ``q``: the class's transit segments (reversed on the way back),
    then the far headend. Sent from the capture side: Segments Left n-1, else 0 (arriving)."""
    segs, nsegs, under6 = net.segs, net.nsegs, net.under6
    n = nsegs[c] + 1
    srh = q + IP6_HLEN
    _v6_header(out, q, tos, label, 8 + 16 * n + inner_len, IPPROTO_ROUTING, hop)
    for k in range(16):
        out[q + IP6_SRC + k] = under6[d, k]
    out[srh] = IPPROTO_IPV6 if v6 else IPPROTO_IPV4  # next header
    out[srh + 1] = 2 * n  # header extension length (8-byte units past the first 8)
    out[srh + 2] = 4  # routing type: segment routing
    sl = n - 1 if d == net.cfg[C_SIDE] else 0
    out[srh + 3] = sl  # segments left
    out[srh + 4] = n - 1  # last entry
    for k in range(5, 8):  # flags, tag
        out[srh + k] = 0
    for j in range(n):  # Segment List[j] is the (n-1-j)-th segment visited
        visit = n - 1 - j
        e = srh + 8 + 16 * j
        if visit == n - 1:
            for k in range(16):
                out[e + k] = under6[1 - d, k]
        else:
            t = visit if d == 0 else nsegs[c] - 1 - visit
            for k in range(16):
                out[e + k] = segs[c, t, k]
    for k in range(16):  # destination: the active segment
        out[q + IP6_DST + k] = out[srh + 8 + 16 * sl + k]
    return IP6_HLEN + 8 + 16 * n


@helper
def _flow_hash(src, ip4):
    """Hash of the inner 5-tuple (addresses, protocol, ports), as a switch's ECMP hash."""
    h = np.uint64(src[ip4 + 9])
    for k in range(12, 24):
        h = mix64(h * np.uint64(31) + np.uint64(src[ip4 + k]))
    return h


@kernel
def rewrite(src, src_off, out, out_off, rows, flows, net, pn0):
    """Rewrite the plain frames of ``rows`` (``FrameRows``; pcap records in ``src``, frame i at
    ``src_off[i]``) into ``out`` as pcap records of ``rows.wire_len[i]`` bytes; ``out_off[i]``
    gets frame i's start.

    ``flows``: ``FlowCols`` of the rows' flows; ``net``: ``NetTables``; ``pn0``: MACsec packet
    number of frame 0, minus 1. A QUIC flow's plain TCP frame has the QUIC packet's length.
    Returns the bytes written, or -1 - i if frame i's length disagrees with its wire_len.
    """
    cfg, dscp, ecn, labels, nlabels, vni, _, _, _, pre6 = net
    wire_len, dirs, flow_row, cls, qkind, qpn = rows  # out of the tuples once (see frames)
    f_v6, f_key, f_quic = flows
    encap, nvlan, macsec = cfg[C_ENCAP], cfg[C_NVLAN], cfg[C_MACSEC]
    o = 0
    for i in range(wire_len.shape[0]):
        s = src_off[i]
        ip4 = s + ETH_HLEN
        d = dirs[i]
        c = cls[i]
        f = flow_row[i]
        key = f_key[f]
        v6 = f_v6[f] != 0
        # a CE mark on the path (kernels.roce) stays
        tos = (dscp[c] << 2) | ecn[c] | (src[ip4 + IP4_TOS] & (src[ip4 + IP4_TOS] << 1) & 2) \
            | (src[ip4 + IP4_TOS] & (src[ip4 + IP4_TOS] >> 1) & 1)
        ttl = src[ip4 + IP4_TTL]
        for k in range(8):  # pcap record: the timestamp as built, the new lengths
            out[o + k] = src[s - PCAP_REC + k]
        wl = wire_len[i]
        for k in range(4):
            out[o + PCAP_INCL_LEN + k] = (wl >> (8 * k)) & 0xFF
            out[o + PCAP_ORIG_LEN + k] = (wl >> (8 * k)) & 0xFF
        p = o + PCAP_REC
        out_off[i] = p
        if encap == ENCAP_VXLAN:  # the VTEPs' MACs on the underlay
            _mac_of(out, p, 2, cfg[C_UNDER0 + 1 - d])
            _mac_of(out, p + ETH_SRC, 2, cfg[C_UNDER0 + d])
        else:
            _copy(out, p, src, s, ETH_TYPE)
        q = p + ETH_TYPE
        sec = q
        if macsec != MACSEC_OFF:
            q += SECTAG
        for t in range(nvlan):
            put16(out, q, ETHERTYPE_QINQ if nvlan == 2 and t == 0 else ETHERTYPE_VLAN)
            put16(out, q + VLAN_TCI, ((dscp[c] >> 3) << 13) | cfg[C_VLAN0 + t])
            q += VLAN_TAG
        fam = ETHERTYPE_IP6 if v6 else ETHERTYPE_IP4
        label = np.int64(mix64(key ^ (np.uint64(d + 1) * GOLDEN)) & np.uint64(0xFFFFF))
        inner_len = get16(src, ip4 + IP4_LEN) + (IP6_HLEN - IP4_HLEN if v6 else 0)
        udp = -1
        if encap == ENCAP_NONE:
            put16(out, q, fam)
            q += 2
        elif encap == ENCAP_MPLS:
            put16(out, q, ETHERTYPE_MPLS)
            q += 2
            nl = nlabels[c]
            for k in range(nl):
                put32(out, q, (labels[c, k] << 12) | ((dscp[c] >> 3) << 9)
                       | (256 if k == nl - 1 else 0) | ttl)
                q += 4
        elif encap == ENCAP_GRE:
            put16(out, q, ETHERTYPE_IP4)
            outer4(out, q + 2, tos, GRE_BYTES + inner_len,
                   outer_ident(cfg[C_UNDER0 + d], IPPROTO_GRE, pn0 + i + 1),
                   outer_ttl(d, cfg[C_SIDE]), True, IPPROTO_GRE, cfg[C_UNDER0 + d], cfg[C_UNDER0 + 1 - d])
            put16(out, q + 2 + IP4_HLEN, 0)  # GRE flags and version, then protocol type
            put16(out, q + 2 + IP4_HLEN + 2, fam)
            q += 2 + GRE_BYTES
        elif encap == ENCAP_VXLAN:
            put16(out, q, ETHERTYPE_IP4)
            outer4(out, q + 2, tos, VXLAN_BYTES + inner_len,
                   outer_ident(cfg[C_UNDER0 + d], PROTO_UDP, pn0 + i + 1),
                   outer_ttl(d, cfg[C_SIDE]), False, PROTO_UDP, cfg[C_UNDER0 + d], cfg[C_UNDER0 + 1 - d])
            udp = q + 2 + IP4_HLEN
            put16(out, udp + UDP_SPORT, 49152 + np.int64(_flow_hash(src, ip4) & np.uint64(0x3FFF)))
            put16(out, udp + UDP_DPORT, VXLAN_PORT)
            put16(out, udp + UDP_LEN, VXLAN_BYTES - IP4_HLEN + inner_len)  # UDP, VXLAN, inner frame
            put16(out, udp + UDP_CSUM, 0)
            vx = udp + UDP_HLEN
            put32(out, vx, 0x08000000)  # flags: a valid VNI
            put32(out, vx + 4, vni[c] << 8)
            _copy(out, vx + 8, src, s, ETH_TYPE)  # the inner frame's MAC addresses
            put16(out, vx + 8 + ETH_TYPE, fam)
            q += 2 + VXLAN_BYTES - ETH_HLEN + ETH_HLEN
        else:
            put16(out, q, ETHERTYPE_IP6)
            q += 2
            q += _srv6(out, q, tos, np.int64(_flow_hash(src, ip4) & np.uint64(0xFFFFF)),
                       inner_len, v6, ttl, c, d, net)
        ipq = q
        quic = f_quic[f] != 0
        q += _inner_ip(out, q, src, ip4, v6, tos, label, pre6, d, quic)
        if quic:
            _quic(out, ipq, q, v6, qkind[i], qpn[i], d, key)
        if udp >= 0:  # VXLAN: the UDP checksum covers the whole inner frame
            vxlan_checksum(out, udp, ipq, q, v6)
        if macsec != MACSEC_OFF:
            q = _sectag(out, p, sec, q, macsec, pn0 + i + 1, key)
        if q - p != wl:
            return -1 - i
        o = q
    return o


@helper
def _quic(out, ip, end, v6, kind, pn, d, key):
    """UDP + QUIC in place of the TCP segment of the IP packet ``out[ip:end]``."""
    u = ip + (IP6_HLEN if v6 else IP4_HLEN)
    n = end - u
    kq.write(out, u, n - UDP_HLEN, kind, pn, d, key)
    out[u + UDP_CSUM] = 0
    out[u + UDP_CSUM + 1] = 0
    ps = sum16(out, ip + IP6_ADDRS, 32) if v6 else sum16(out, ip + IP4_ADDRS, 8)
    cs = fold(ps + np.uint64(PROTO_UDP) + np.uint64(n) + sum16(out, u, n))
    put16(out, u + UDP_CSUM, 0xFFFF if cs == 0 else cs)


@helper
def _sectag(out, p, sec, q, mode, pn, key):
    """SecTAG at ``sec`` (frame at ``p``, secure data up to ``q``) and an ICV after it:
    pseudo-random bytes here (a key's GCM tag replaces them). Returns the frame's end."""
    put16(out, sec, ETHERTYPE_MACSEC)
    out[sec + 2] = 0x20 | (0x0C if mode == MACSEC_ENCRYPT else 0)  # SC; E and C if encrypted
    n = q - sec - SECTAG
    out[sec + 3] = n if n < 48 else 0
    put32(out, sec + 4, pn & 0xFFFFFFFF)
    for k in range(6):  # SCI: the sender's MAC and port 1
        out[sec + 8 + k] = out[p + ETH_SRC + k]
    put16(out, sec + 14, 1)
    for w in range(2):
        x = mix64(key + np.uint64(pn) * GOLDEN + np.uint64(w))
        for k in range(8):
            out[q + 8 * w + k] = (x >> np.uint64(8 * k)) & np.uint64(0xFF)
    return q + ICV
