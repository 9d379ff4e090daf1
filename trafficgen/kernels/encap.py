"""Frame post-pass: plain Ethernet/IPv4/{TCP,UDP} frames in, the configured wire stack out.

Inside out, per frame: the inner IP header (IPv4 with the class's DSCP/ECN and its checksum
recomputed, or IPv6 with the L4 checksum fixed incrementally from the pseudo-header
difference, RFC 1624), an encapsulation (MPLS label stack; GRE or VXLAN over an IPv4
underlay, the VXLAN UDP source port from the inner flow hash and its checksum over the whole
inner frame; SRv6: an outer IPv6 header and a Segment Routing Header with the class's segment
list, RFC 8754), 802.1Q or QinQ tags, and an 802.1AE SecTAG with a 16-byte ICV (opaque here;
``netplan.seal_macsec`` replaces it, and encrypts, when a key is configured).

The models never see any of this: they schedule plain IPv4 frames, ``netplan`` adds each flow's
constant overhead to ``wire_len``, and this kernel must land exactly on those lengths.
"""
import numpy as np

from . import quic as kq
from .frames import PCAP_REC, fold, put16, put32, sum16
from .jit import helper, inline, kernel
from .rng import GOLDEN, mix64
from .udp import ROCE_PORT, icrc_v6

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


@inline
def _copy(dst, o, src, s, n):
    d = dst[o:o + n]
    v = src[s:s + n]
    for k in range(n):  # over views: vectorised
        d[k] = v[k]


@inline
def _get16(b, o):
    return (np.int64(b[o]) << 8) | np.int64(b[o + 1])


@inline
def _mac_of(buf, o, tag, ip):
    buf[o] = 0x02
    buf[o + 1] = tag
    put32(buf, o + 2, ip)


@helper
def _outer4(out, o, tos, total, ipid, ttl, proto, src, dst):
    """A 20-byte IPv4 header at ``o`` with its checksum."""
    out[o] = 0x45
    out[o + 1] = tos
    put16(out, o + 2, total)
    put16(out, o + 4, ipid)
    out[o + 6] = 0x40  # DF
    out[o + 7] = 0
    out[o + 8] = ttl
    out[o + 9] = proto
    out[o + 10] = 0
    out[o + 11] = 0
    put32(out, o + 12, src)
    put32(out, o + 16, dst)
    put16(out, o + 10, fold(sum16(out, o, 20)))


@helper
def _v6_header(out, o, tos, label, plen, nh, hop):
    out[o] = 0x60 | (tos >> 4)
    out[o + 1] = ((tos & 0x0F) << 4) | ((label >> 16) & 0x0F)
    put16(out, o + 2, label & 0xFFFF)
    put16(out, o + 4, plen)
    out[o + 6] = nh
    out[o + 7] = hop


@helper
def _inner_ip(out, q, src, ip4, v6, tos, label, pre6, d, quic):
    """The inner IP packet at ``q`` from the plain IPv4 one at ``src[ip4:]``; returns its
    length. IPv6: addresses are the side's /96 prefix + the IPv4 address. ``quic``: the
    protocol becomes UDP (the caller writes the QUIC packet and the UDP checksum)."""
    tot4 = _get16(src, ip4 + 2)
    proto = 17 if quic else src[ip4 + 9]
    l4 = tot4 - 20
    if not v6:
        _copy(out, q, src, ip4, tot4)
        out[q + 1] = tos
        out[q + 9] = proto
        out[q + 10] = 0
        out[q + 11] = 0
        put16(out, q + 10, fold(sum16(out, q, 20)))
        return tot4
    _v6_header(out, q, tos, label, l4, proto, src[ip4 + 8])
    for k in range(16):
        out[q + 8 + k] = pre6[d, k]
        out[q + 24 + k] = pre6[1 - d, k]
    for k in range(4):
        out[q + 20 + k] = src[ip4 + 12 + k]
        out[q + 36 + k] = src[ip4 + 16 + k]
    _copy(out, q + 40, src, ip4 + 20, l4)
    if proto == 17 and not quic and (_get16(out, q + 42) == ROCE_PORT or _get16(out, q + 40) == ROCE_PORT):
        # RoCEv2: its ICRC covers the IP header, so it is made again over IPv6 (and the UDP
        # checksum, which covers the ICRC, in full)
        crc = icrc_v6(out, q, q + 40 + l4 - 4)
        for k in range(4):
            out[q + 40 + l4 - 4 + k] = (crc >> (8 * k)) & 0xFF
        out[q + 46] = 0
        out[q + 47] = 0
        s = sum16(out, q + 8, 32) + np.uint64(17) + np.uint64(l4) + sum16(out, q + 40, l4)
        c = fold(s)
        put16(out, q + 46, 0xFFFF if c == 0 else c)
        return 40 + l4
    if not quic and (proto == 6 or proto == 17):
        cs = q + 40 + (16 if proto == 6 else 6)
        old = _get16(out, cs)
        new = sum16(out, q + 8, 32)
        if proto == 17 and old == 0:  # no checksum over IPv4: IPv6 needs one (RFC 8200)
            s = new + np.uint64(17) + np.uint64(l4) + sum16(out, q + 40, l4)
        else:  # RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), m the old addresses, m' the new
            s = (np.uint64(~old & 0xFFFF) + np.uint64(4 * 0xFFFF) - sum16(src, ip4 + 12, 8)
                 + new)
        c = fold(s)
        put16(out, cs, 0xFFFF if proto == 17 and c == 0 else c)
    return 40 + l4


@helper
def _srv6(out, q, tos, label, inner_len, v6, hop, c, d, side, segs, nsegs, under6):
    """Outer IPv6 + SRH at ``q``: the class's transit segments (reversed on the way back),
    then the far headend. Sent from the capture side: Segments Left n-1, else 0 (arriving)."""
    n = nsegs[c] + 1
    srh = q + 40
    _v6_header(out, q, tos, label, 8 + 16 * n + inner_len, 43, hop)
    for k in range(16):
        out[q + 8 + k] = under6[d, k]
    out[srh] = 41 if v6 else 4
    out[srh + 1] = 2 * n
    out[srh + 2] = 4
    sl = n - 1 if d == side else 0
    out[srh + 3] = sl
    out[srh + 4] = n - 1
    out[srh + 5] = 0
    out[srh + 6] = 0
    out[srh + 7] = 0
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
        out[q + 24 + k] = out[srh + 8 + 16 * sl + k]
    return 40 + 8 + 16 * n


@helper
def _flow_hash(src, ip4):
    """Hash of the inner 5-tuple (addresses, protocol, ports), as a switch's ECMP hash."""
    h = np.uint64(src[ip4 + 9])
    for k in range(12, 24):
        h = mix64(h * np.uint64(31) + np.uint64(src[ip4 + k]))
    return h


@kernel
def rewrite(src, src_off, out, out_off, wire_len, dirs, flow_row, cls, pn0, f_v6, f_key, cfg,
            dscp, ecn, labels, nlabels, vni, segs, nsegs, under6, pre6, f_quic, qkind, qpn):
    """Rewrite ``n`` plain frames (pcap records in ``src``, frame i at ``src_off[i]``) into
    ``out`` as pcap records of ``wire_len[i]`` bytes; ``out_off[i]`` gets frame i's start.

    Per packet: dirs 0 up / 1 down, flow_row into f_v6 (uint8 0/1) and f_key (uint64), cls
    the class code into the per-class tables (dscp, ecn uint8[C]; labels int64[C, L], nlabels;
    vni int64[C]; segs uint8[C, S, 16], nsegs). ``cfg``: int64[C_LEN]; ``pn0``: MACsec packet
    number of frame 0, minus 1. under6, pre6: uint8[2, 16] (client side, server side).
    QUIC flows (f_quic uint8 per flow): the packet's kind (``kernels.quic`` Q_*) in ``qkind``
    and its packet number in ``qpn``; its plain TCP frame has the QUIC packet's length.
    Returns the bytes written, or -1 - i if frame i's length disagrees with ``wire_len[i]``.
    """
    encap, nvlan, macsec, side = cfg[C_ENCAP], cfg[C_NVLAN], cfg[C_MACSEC], cfg[C_SIDE]
    o = 0
    for i in range(wire_len.shape[0]):
        s = src_off[i]
        ip4 = s + 14
        d = dirs[i]
        c = cls[i]
        f = flow_row[i]
        v6 = f_v6[f] != 0
        tos = (dscp[c] << 2) | ecn[c]
        ttl = src[ip4 + 8]
        for k in range(8):  # pcap record: the timestamp as built, the new lengths
            out[o + k] = src[s - PCAP_REC + k]
        wl = wire_len[i]
        for k in range(4):
            out[o + 8 + k] = (wl >> (8 * k)) & 0xFF
            out[o + 12 + k] = (wl >> (8 * k)) & 0xFF
        p = o + PCAP_REC
        out_off[i] = p
        if encap == ENCAP_VXLAN:  # the VTEPs' MACs on the underlay
            _mac_of(out, p, 2, cfg[C_UNDER0 + 1 - d])
            _mac_of(out, p + 6, 2, cfg[C_UNDER0 + d])
        else:
            _copy(out, p, src, s, 12)
        q = p + 12
        sec = q
        if macsec != MACSEC_OFF:
            q += SECTAG
        for t in range(nvlan):
            put16(out, q, 0x88A8 if nvlan == 2 and t == 0 else 0x8100)
            put16(out, q + 2, ((dscp[c] >> 3) << 13) | cfg[C_VLAN0 + t])
            q += 4
        fam = 0x86DD if v6 else 0x0800
        label = np.int64(mix64(f_key[f] ^ (np.uint64(d + 1) * GOLDEN)) & np.uint64(0xFFFFF))
        inner_len = _get16(src, ip4 + 2) + (20 if v6 else 0)
        udp = -1
        if encap == ENCAP_NONE:
            put16(out, q, fam)
            q += 2
        elif encap == ENCAP_MPLS:
            put16(out, q, 0x8847)
            q += 2
            nl = nlabels[c]
            for k in range(nl):
                put32(out, q, (labels[c, k] << 12) | ((dscp[c] >> 3) << 9)
                       | (256 if k == nl - 1 else 0) | ttl)
                q += 4
        elif encap == ENCAP_GRE:
            put16(out, q, 0x0800)
            _outer4(out, q + 2, tos, GRE_BYTES + inner_len, _get16(src, ip4 + 4), ttl, 47,
                    cfg[C_UNDER0 + d], cfg[C_UNDER0 + 1 - d])
            put16(out, q + 22, 0)
            put16(out, q + 24, fam)
            q += 2 + GRE_BYTES
        elif encap == ENCAP_VXLAN:
            put16(out, q, 0x0800)
            _outer4(out, q + 2, tos, VXLAN_BYTES + inner_len, _get16(src, ip4 + 4), ttl,
                    17, cfg[C_UNDER0 + d], cfg[C_UNDER0 + 1 - d])
            udp = q + 22
            put16(out, udp, 49152 + np.int64(_flow_hash(src, ip4) & np.uint64(0x3FFF)))
            put16(out, udp + 2, VXLAN_PORT)
            put16(out, udp + 4, VXLAN_BYTES - 20 + inner_len)  # UDP, VXLAN, inner frame
            put16(out, udp + 6, 0)
            put32(out, udp + 8, 0x08000000)
            put32(out, udp + 12, vni[c] << 8)
            _copy(out, udp + 16, src, s, 12)
            put16(out, udp + 28, fam)
            q += 2 + VXLAN_BYTES - 14 + 14
        else:
            put16(out, q, 0x86DD)
            q += 2
            q += _srv6(out, q, tos, np.int64(_flow_hash(src, ip4) & np.uint64(0xFFFFF)),
                       inner_len, v6, ttl, c, d, side, segs, nsegs, under6)
        ipq = q
        quic = f_quic[f] != 0
        q += _inner_ip(out, q, src, ip4, v6, tos, label, pre6, d, quic)
        if quic:
            _quic(out, ipq, q, v6, qkind[i], qpn[i], d, f_key[f])
        if udp >= 0:  # VXLAN: the UDP checksum covers the whole inner frame
            _vxlan_checksum(out, udp, ipq, q, v6)
        if macsec != MACSEC_OFF:
            q = _sectag(out, p, sec, q, macsec, pn0 + i + 1, f_key[f])
        if q - p != wl:
            return -1 - i
        o = q
    return o


@inline
def _fold16(s):
    while s >> np.uint64(16):
        s = (s & np.uint64(0xFFFF)) + (s >> np.uint64(16))
    return s


@helper
def _vxlan_checksum(out, udp, ip, end, v6):
    """The outer UDP checksum of a VXLAN packet (UDP header at ``udp``, inner IP packet
    ``out[ip:end]``). An inner TCP/UDP segment with a checksum sums, by that checksum, to the
    complement of its pseudo-header (RFC 1071), so only headers are read; a segment without
    one (UDP checksum 0) is summed in full."""
    hl = 40 if v6 else 20
    proto = out[ip + 6] if v6 else out[ip + 9]
    seg = ip + hl
    n4 = end - seg
    cs_at = seg + (16 if proto == 6 else 6)
    if (proto == 6 or (proto == 17 and _get16(out, cs_at) != 0)) and n4 >= (20 if proto == 6 else 8):
        pseudo = (sum16(out, ip + 8, 32) if v6 else sum16(out, ip + 12, 8)) \
            + np.uint64(proto) + np.uint64(n4)
        body = sum16(out, ip, hl) + (~_fold16(pseudo) & np.uint64(0xFFFF))
    else:
        body = sum16(out, ip, end - ip)
    n = end - udp
    cs = fold(sum16(out, udp - 8, 8) + np.uint64(17) + np.uint64(n) + sum16(out, udp, ip - udp)
               + body)
    put16(out, udp + 6, 0xFFFF if cs == 0 else cs)


@helper
def _quic(out, ip, end, v6, kind, pn, d, key):
    """UDP + QUIC in place of the TCP segment of the IP packet ``out[ip:end]``."""
    u = ip + (40 if v6 else 20)
    n = end - u
    kq.write(out, u, n - 8, kind, pn, d, key)
    out[u + 6] = 0
    out[u + 7] = 0
    ps = sum16(out, ip + 8, 32) if v6 else sum16(out, ip + 12, 8)
    cs = fold(ps + np.uint64(17) + np.uint64(n) + sum16(out, u, n))
    put16(out, u + 6, 0xFFFF if cs == 0 else cs)


@helper
def _sectag(out, p, sec, q, mode, pn, key):
    """SecTAG at ``sec`` (frame at ``p``, secure data up to ``q``) and an ICV after it:
    pseudo-random bytes here (a key's GCM tag replaces them). Returns the frame's end."""
    put16(out, sec, 0x88E5)
    out[sec + 2] = 0x20 | (0x0C if mode == MACSEC_ENCRYPT else 0)  # SC; E and C if encrypted
    n = q - sec - SECTAG
    out[sec + 3] = n if n < 48 else 0
    put32(out, sec + 4, pn & 0xFFFFFFFF)
    for k in range(6):  # SCI: the sender's MAC and port 1
        out[sec + 8 + k] = out[p + 6 + k]
    put16(out, sec + 14, 1)
    for w in range(2):
        x = mix64(key + np.uint64(pn) * GOLDEN + np.uint64(w))
        for k in range(8):
            out[q + 8 * w + k] = (x >> np.uint64(8 * k)) & np.uint64(0xFF)
    return q + ICV
