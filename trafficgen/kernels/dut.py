"""Frames for a device under test: where each frame's headers are, which side sent it, and the
rewrites that address it to the device (MACs, mapped and shifted IP addresses, checksums).

All kernels walk a frame buffer (frame ``k`` is ``buf[off[k]:off[k] + length[k]]``) once and
write preallocated arrays; nothing runs per packet in Python.

Header walk: Ethernet, up to two 802.1Q/802.1ad tags, then IPv4 or IPv6 (IPv6 extension
headers hop-by-hop, routing, destination options and fragment are stepped over). Only the
outermost IP header is looked at: under VXLAN or GRE the inner packet is left as it is.

Checksums are updated incrementally (RFC 1624) for every 16-bit word that changes: the IPv4
header checksum, and the TCP, UDP (unless 0 on IPv4: none) and ICMPv6 checksums, whose
pseudo-header holds the addresses. A frame whose checksum was right stays right.
"""
from collections import namedtuple

import numpy as np

from .jit import helper, inline, kernel

FAM_NONE, FAM_V4, FAM_V6 = 0, 4, 6
PROTO_TCP, PROTO_UDP, PROTO_ICMP6 = 6, 17, 58
TCP_SYN, TCP_ACK = 0x02, 0x10
# a map row (uint8[MAP_WORDS]): family, prefix length, then the old and the new network (16
# bytes each; an IPv4 network in the first 4)
MAP_FAM, MAP_PLEN, MAP_OLD, MAP_NEW, MAP_WORDS = 0, 1, 2, 18, 34

Heads = namedtuple("Heads", "fam l3 l4 proto flags skey dkey")
Heads.__doc__ = """Per frame (arrays): the IP family (0: not IP), where the IP header and the
transport header start (-1: none, e.g. a later fragment), the transport protocol, the TCP
flags, and hashes of the source and destination endpoints (address and port)."""
Rewrite = namedtuple("Rewrite", "macs set_mac maps shift_add shift_plen")
Rewrite.__doc__ = """What to rewrite: ``macs`` uint8[ports, 12] (destination then source MAC
out of each port), ``set_mac`` bool[ports, 2] (write the destination, the source), ``maps``
uint8[m, MAP_WORDS] (networks mapped, first match wins), and the unique-ip shift: the client
address (source of port 0's frames, destination of port 1's) gets ``shift_add`` added to its
low host bits (those beyond ``shift_plen``, at most 32 of them); 0: no shift."""


@inline
def _u16(buf, o):
    return (np.int64(buf[o]) << 8) | np.int64(buf[o + 1])


@helper
def _l3(buf, o, n):
    """(family, IP header offset, transport offset, protocol) of the frame at ``o``."""
    p = o + 12
    end = o + n
    if p + 2 > end:
        return FAM_NONE, -1, -1, -1
    et = _u16(buf, p)
    tags = 0
    while (et == 0x8100 or et == 0x88A8) and tags < 2 and p + 6 <= end:
        p += 4
        et = _u16(buf, p)
        tags += 1
    l3 = p + 2
    if et == 0x0800 and l3 + 20 <= end and buf[l3] >> 4 == 4:
        ihl = (buf[l3] & 15) * 4
        frag = _u16(buf, l3 + 6) & 0x1FFF
        l4 = l3 + ihl if frag == 0 and l3 + ihl <= end else -1
        return FAM_V4, l3, l4, np.int64(buf[l3 + 9])
    if et == 0x86DD and l3 + 40 <= end and buf[l3] >> 4 == 6:
        nh = np.int64(buf[l3 + 6])
        q = l3 + 40
        for _ in range(8):
            if nh == 0 or nh == 43 or nh == 60:
                if q + 8 > end:
                    return FAM_V6, l3, -1, nh
                nh, q = np.int64(buf[q]), q + 8 + np.int64(buf[q + 1]) * 8
            elif nh == 44:
                if q + 8 > end or (_u16(buf, q + 2) & 0xFFF8) != 0:
                    return FAM_V6, l3, -1, np.int64(buf[q]) if q < end else nh
                nh, q = np.int64(buf[q]), q + 8
            else:
                break
        return FAM_V6, l3, (q if q <= end else -1), nh
    return FAM_NONE, -1, -1, -1


@helper
def _endpoint(buf, a, alen, l4, port_at, end):
    """FNV-1a hash of an address (``alen`` bytes at ``a``) and a port (at ``port_at``)."""
    h = np.uint64(14695981039346656037)
    for j in range(alen):
        h = (h ^ np.uint64(buf[a + j])) * np.uint64(1099511628211)
    if l4 >= 0 and port_at + 2 <= end:
        h = (h ^ np.uint64(buf[port_at])) * np.uint64(1099511628211)
        h = (h ^ np.uint64(buf[port_at + 1])) * np.uint64(1099511628211)
    return h


@kernel
def heads(buf, off, length, out):
    """Fill ``out`` (``Heads`` of arrays as long as ``off``) for every frame."""
    fam, l3s, l4s, proto, flags, skey, dkey = out
    for k in range(off.shape[0]):
        o, n = off[k], length[k]
        f, l3, l4, pr = _l3(buf, o, n)
        fam[k], l3s[k], l4s[k], proto[k], flags[k] = f, l3, l4, pr, 0
        skey[k] = dkey[k] = 0
        if f == FAM_NONE:
            continue
        end = o + n
        ported = l4 >= 0 and (pr == PROTO_TCP or pr == PROTO_UDP)
        if ported and pr == PROTO_TCP and l4 + 14 <= end:
            flags[k] = buf[l4 + 13]
        pl4 = l4 if ported else -1
        if f == FAM_V4:
            skey[k] = _endpoint(buf, l3 + 12, 4, pl4, l4, end)
            dkey[k] = _endpoint(buf, l3 + 16, 4, pl4, l4 + 2, end)
        else:
            skey[k] = _endpoint(buf, l3 + 8, 16, pl4, l4, end)
            dkey[k] = _endpoint(buf, l3 + 24, 16, pl4, l4 + 2, end)


@helper
def _in_net(buf, a, alen, net, plen):
    """Whether the ``alen``-byte address at ``a`` is in ``net`` (uint8[16]) / ``plen``."""
    full, rest = plen // 8, plen % 8
    for j in range(full):
        if buf[a + j] != net[j]:
            return False
    if rest and full < alen:
        mask = (0xFF << (8 - rest)) & 0xFF
        if (buf[a + full] & mask) != (net[full] & mask):
            return False
    return True


@kernel
def match_nets(buf, off, fam, l3, nets, src, out):
    """``out[k]`` = 1 when frame ``k``'s source (``src``) or destination address is in one of
    ``nets`` (rows of ``maps``' layout; only the old network is read), else 0."""
    for k in range(off.shape[0]):
        out[k] = 0
        f = fam[k]
        if f == FAM_NONE:
            continue
        alen = 4 if f == FAM_V4 else 16
        a = l3[k] + ((12 if src else 16) if f == FAM_V4 else (8 if src else 24))
        for m in range(nets.shape[0]):
            if nets[m, MAP_FAM] == f and _in_net(buf, a, alen, nets[m, MAP_OLD:MAP_OLD + 16],
                                                nets[m, MAP_PLEN]):
                out[k] = 1
                break


@inline
def _fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


@helper
def _adjust(buf, at, old, new, nwords, udp):
    """Update the checksum at ``buf[at:at + 2]`` for ``nwords`` 16-bit words changed from
    ``old`` to ``new`` (int64 arrays). A UDP checksum of 0 (none, on IPv4) stays 0."""
    hc = _u16(buf, at)
    if udp and hc == 0:
        return
    s = (~hc) & 0xFFFF
    for j in range(nwords):
        s += ((~old[j]) & 0xFFFF) + new[j]
    s = _fold(s)
    c = (~s) & 0xFFFF
    if udp and c == 0:
        c = 0xFFFF
    buf[at] = c >> 8
    buf[at + 1] = c & 0xFF


@helper
def _rewrite_addr(buf, a, alen, f, maps, shift, shift_add, shift_plen, old, new, w):
    """Map (and shift) the address at ``a``; the words before and after go to ``old``/``new``
    from ``w`` on. Returns the next free word."""
    for j in range(alen // 2):
        old[w + j] = _u16(buf, a + 2 * j)
    for m in range(maps.shape[0]):
        plen = np.int64(maps[m, MAP_PLEN])
        if maps[m, MAP_FAM] == f and _in_net(buf, a, alen, maps[m, MAP_OLD:MAP_OLD + 16], plen):
            for j in range(alen):  # network bits from the new network, host bits kept
                bits = min(max(plen - 8 * j, 0), 8)
                mask = (0xFF << (8 - bits)) & 0xFF
                buf[a + j] = (maps[m, MAP_NEW + j] & mask) | (buf[a + j] & ~mask & 0xFF)
            break
    if shift and shift_add != 0:
        host = min(alen * 8 - shift_plen, 32)
        if host > 0:
            t = a + alen - 4
            v = ((np.int64(buf[t]) << 24) | (np.int64(buf[t + 1]) << 16)
                 | (np.int64(buf[t + 2]) << 8) | np.int64(buf[t + 3]))
            hm = (np.int64(1) << host) - 1
            v = (v & ~hm) | ((v + shift_add) & hm)
            buf[t], buf[t + 1], buf[t + 2], buf[t + 3] = (v >> 24) & 0xFF, (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF
    for j in range(alen // 2):
        new[w + j] = _u16(buf, a + 2 * j)
    return w + alen // 2


@kernel
def rewrite(buf, off, length, port, rw):
    """Rewrite every frame for the port it goes out of (``port[k]``): MACs, mapped and shifted
    IP addresses, checksums fixed (see ``Rewrite``)."""
    macs, set_mac, maps, shift_add, shift_plen = rw
    old = np.zeros(16, np.int64)
    new = np.zeros(16, np.int64)
    do_ip = maps.shape[0] > 0 or shift_add != 0
    for k in range(off.shape[0]):
        o, n, p = off[k], length[k], port[k]
        if n < 14:
            continue
        if set_mac[p, 0]:
            for j in range(6):
                buf[o + j] = macs[p, j]
        if set_mac[p, 1]:
            for j in range(6):
                buf[o + 6 + j] = macs[p, 6 + j]
        if not do_ip:
            continue
        f, l3, l4, pr = _l3(buf, o, n)
        if f == FAM_NONE:
            continue
        alen = 4 if f == FAM_V4 else 16
        sa = l3 + (12 if f == FAM_V4 else 8)
        w = _rewrite_addr(buf, sa, alen, f, maps, p == 0, shift_add, shift_plen, old, new, 0)
        w = _rewrite_addr(buf, sa + alen, alen, f, maps, p == 1, shift_add, shift_plen, old, new, w)
        same = True
        for j in range(w):
            same = same and old[j] == new[j]
        if same:
            continue
        if f == FAM_V4:
            _adjust(buf, l3 + 10, old, new, w, False)
        end = o + n
        if l4 < 0:
            continue
        if pr == PROTO_TCP and l4 + 18 <= end:
            _adjust(buf, l4 + 16, old, new, w, False)
        elif pr == PROTO_UDP and l4 + 8 <= end:
            _adjust(buf, l4 + 6, old, new, w, f == FAM_V4)
        elif pr == PROTO_ICMP6 and f == FAM_V6 and l4 + 4 <= end:
            _adjust(buf, l4 + 2, old, new, w, False)


@inline
def _rd(buf, o, nbytes, big):
    v = np.int64(0)
    for j in range(nbytes):
        b = np.int64(buf[o + j]) if big else np.int64(buf[o + nbytes - 1 - j])
        v = (v << 8) | b
    return v


@kernel
def comment_dirs(buf, off, length, big, out):
    """Each pcapng enhanced packet block's ground truth: ``out[k]`` = 0 when its comment says
    ``dir=up``, 1 for ``dir=down``, -1 when it has no such comment (``buf``: the file's bytes as
    read, frame data at ``off``)."""
    for k in range(off.shape[0]):
        out[k] = -1
        start = off[k] - 28
        if start < 0 or _rd(buf, start, 4, big) != 6:
            continue
        end = start + _rd(buf, start + 4, 4, big) - 4
        p = off[k] + ((length[k] + 3) & ~3)
        while p + 4 <= end:
            code, n = _rd(buf, p, 2, big), _rd(buf, p + 2, 2, big)
            if code == 0:
                break
            if code == 1:
                v = p + 4
                for q in range(v, v + n - 5):  # "dir=up" / "dir=down"
                    if (buf[q] == 100 and buf[q + 1] == 105 and buf[q + 2] == 114
                            and buf[q + 3] == 61 and (q == v or buf[q - 1] == 32)):
                        if buf[q + 4] == 117 and buf[q + 5] == 112:
                            out[k] = 0
                        elif q + 7 < v + n and buf[q + 4] == 100 and buf[q + 5] == 111:
                            out[k] = 1
                        break
            p += 4 + ((n + 3) & ~3)


@kernel
def flow_lanes(buf, off, length, lanes, out):
    """``out[k]``: the lane (0..lanes-1) of frame ``k``'s flow, the same for both directions
    (a symmetric hash of the addresses, protocol and ports); frames that are not IP: lane 0."""
    for k in range(off.shape[0]):
        o, n = off[k], length[k]
        f, l3, l4, pr = _l3(buf, o, n)
        if f == FAM_NONE:
            out[k] = 0
            continue
        end = o + n
        ported = l4 >= 0 and (pr == PROTO_TCP or pr == PROTO_UDP)
        pl4 = l4 if ported else -1
        if f == FAM_V4:
            a = _endpoint(buf, l3 + 12, 4, pl4, l4, end)
            b = _endpoint(buf, l3 + 16, 4, pl4, l4 + 2, end)
        else:
            a = _endpoint(buf, l3 + 8, 16, pl4, l4, end)
            b = _endpoint(buf, l3 + 24, 16, pl4, l4 + 2, end)
        h = (a ^ b) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(pr)
        out[k] = np.int64((h >> np.uint64(33)) % np.uint64(lanes))
