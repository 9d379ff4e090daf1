"""An independent walker for the network section's frames (tests only): plain ``struct`` over
the bytes, written from the RFCs and IEEE 802.1Q/802.1AE rather than from the encoder. It
peels MACsec, VLAN tags, MPLS, GRE, VXLAN and SRv6 down to the inner IP packet and checks every
length, next-header field and checksum on the way; problems are raised as AssertionError."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .helpers import ones_complement_sum


def csum(data: bytes) -> int:
    """RFC 1071 over ``data`` (zero-padded), folded and complemented: 0 over a packet whose
    checksum field is right."""
    return ~ones_complement_sum(data) & 0xFFFF


def l4_ok(src: bytes, dst: bytes, proto: int, seg: bytes) -> bool:
    """Does the TCP/UDP segment's checksum verify over its IPv4 or IPv6 pseudo-header?"""
    if proto == 17 and seg[6:8] == b"\0\0":
        return len(src) == 4  # no checksum: allowed over IPv4 only
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, proto, len(seg))
    else:
        pseudo = src + dst + struct.pack("!I3xB", len(seg), proto)
    return csum(pseudo + seg) == 0


@dataclass
class Walk:
    macsec: tuple | None = None  # (tci, sl, pn, sci, secure data length)
    vlans: list = field(default_factory=list)  # (tpid, pcp, vid)
    labels: list = field(default_factory=list)  # (label, tc, s, ttl)
    outer: dict | None = None  # tunnel header fields
    inner_eth: bytes | None = None  # VXLAN: the inner frame's MAC addresses
    ip_version: int = 0
    tos: int = 0
    ttl: int = 0
    src: bytes = b""
    dst: bytes = b""
    proto: int = 0
    ip_header: bytes = b""
    l4: bytes = b""  # the inner transport segment (header and payload)


def _u16(b, o):
    return struct.unpack_from("!H", b, o)[0]


def _ip(b: bytes, o: int, end: int, w: Walk, tunnel_ok: bool) -> None:
    ver = b[o] >> 4
    if ver == 4:
        hl = (b[o] & 0x0F) * 4
        assert hl == 20, f"IPv4 IHL {hl}"
        total = _u16(b, o + 2)
        assert o + total == end, f"IPv4 total length {total} != {end - o} bytes left"
        assert csum(b[o:o + 20]) == 0, "bad IPv4 header checksum"
        proto = b[o + 9]
        src, dst = b[o + 12:o + 16], b[o + 16:o + 20]
        if tunnel_ok and proto == 47:
            flags, ptype = struct.unpack_from("!HH", b, o + 20)
            assert flags == 0, "GRE flags/version"
            w.outer = {"kind": "gre", "src": src, "dst": dst, "ptype": ptype, "tos": b[o + 1],
                       "ttl": b[o + 8], "id": _u16(b, o + 4), "df": bool(b[o + 6] & 0x40)}
            return _ip(b, o + 24, end, w, False)
        if tunnel_ok and proto == 17 and _u16(b, o + 22) == 4789:
            seg = b[o + 20:end]
            assert _u16(seg, 4) == len(seg), "outer UDP length"
            assert seg[6:8] != b"\0\0" and l4_ok(src, dst, 17, seg), "bad outer UDP checksum"
            assert seg[8] == 0x08 and seg[9:12] == b"\0\0\0" and seg[15] == 0, "VXLAN flags"
            w.outer = {"kind": "vxlan", "src": src, "dst": dst, "sport": _u16(seg, 0),
                       "vni": int.from_bytes(seg[12:15], "big"), "tos": b[o + 1], "ttl": b[o + 8],
                       "id": _u16(b, o + 4), "df": bool(b[o + 6] & 0x40)}
            w.inner_eth = seg[16:28]
            et = _u16(seg, 28)
            assert et in (0x0800, 0x86DD), f"inner ethertype {et:#x}"
            _ip(b, o + 20 + 30, end, w, False)
            assert (et == 0x86DD) == (w.ip_version == 6), "inner ethertype vs IP version"
            return None
        w.ip_version, w.tos, w.ttl, w.proto = 4, b[o + 1], b[o + 8], proto
        w.src, w.dst, w.ip_header, w.l4 = src, dst, b[o:o + 20], b[o + 20:end]
    elif ver == 6:
        plen, nh, hop = struct.unpack_from("!HBB", b, o + 4)
        assert o + 40 + plen == end, f"IPv6 payload length {plen} != {end - o - 40}"
        tc = (_u16(b, o) >> 4) & 0xFF
        src, dst = b[o + 8:o + 24], b[o + 24:o + 40]
        if tunnel_ok and nh == 43:
            srh = o + 40
            inner_nh, hdr_ext, rtype, sl, last = b[srh:srh + 5]
            assert rtype == 4, f"routing type {rtype}"
            n = hdr_ext // 2
            assert hdr_ext == 2 * n and last == n - 1 and sl <= last, "SRH lengths"
            segs = [b[srh + 8 + 16 * j:srh + 24 + 16 * j] for j in range(n)]
            assert dst == segs[sl], "destination is not the active segment"
            w.outer = {"kind": "srv6", "src": src, "dst": dst, "segments_left": sl,
                       "segments": segs, "nh": inner_nh, "tos": tc, "hop": hop}
            _ip(b, srh + 8 + 8 * hdr_ext, end, w, False)
            assert inner_nh == (41 if w.ip_version == 6 else 4), "SRH next header"
            return None
        w.ip_version, w.tos, w.ttl, w.proto = 6, tc, hop, nh
        w.src, w.dst, w.ip_header, w.l4 = src, dst, b[o:o + 40], b[o + 40:end]
    else:
        raise AssertionError(f"IP version {ver}")
    if w.proto in (6, 17):
        assert l4_ok(w.src, w.dst, w.proto, w.l4), f"bad inner {'TCP' if w.proto == 6 else 'UDP'} checksum"
    return None


def walk(frame: bytes, macsec_clear: bool = True) -> Walk:
    """Peel one frame. ``macsec_clear``: the MACsec secure data is plaintext (no key, or
    integrity only); an encrypted frame is walked only as far as its SecTAG."""
    w = Walk()
    b, end, o = frame, len(frame), 12
    et = _u16(b, o)
    if et == 0x88E5:
        tci, sl, pn = b[o + 2], b[o + 3], struct.unpack_from("!I", b, o + 4)[0]
        secure = end - 16 - (o + 16)
        assert tci & 0x20, "SCI expected in the SecTAG"
        assert sl == (secure if secure < 48 else 0), f"SecTAG SL {sl} for {secure} bytes"
        w.macsec = (tci, sl, pn, b[o + 8:o + 16], secure)
        o += 16
        end -= 16
        if not macsec_clear:
            return w
        et = _u16(b, o)
    while et in (0x8100, 0x88A8):
        tci = _u16(b, o + 2)
        w.vlans.append((et, tci >> 13, tci & 0x0FFF))
        o += 4
        et = _u16(b, o)
    o += 2
    if et == 0x8847:
        while True:
            (v,) = struct.unpack_from("!I", b, o)
            w.labels.append((v >> 12, (v >> 9) & 7, (v >> 8) & 1, v & 0xFF))
            o += 4
            if v & 0x100:
                break
        _ip(b, o, end, w, False)
    else:
        assert et in (0x0800, 0x86DD), f"ethertype {et:#x}"
        _ip(b, o, end, w, True)
        assert (et == 0x86DD) == ((w.outer or {}).get("kind") == "srv6" or
                                  (w.outer is None and w.ip_version == 6)), "ethertype vs IP"
    return w
