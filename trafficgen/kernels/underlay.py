"""The tunnels' outer IPv4 header (GRE, VXLAN): written by the encapsulating host (the VTEP or
tunnel endpoint), so its ID, TTL and DF are that host's, never the inner packet's.

- **ID.** Linux's tunnels (``iptunnel_xmit`` -> ``__ip_select_ident``) take the outer ID from
  the host's ident counter for the bucket of (outer source, outer destination, protocol),
  one counter that every packet the host sends to that peer advances. Here each endpoint's
  counter is its own base (a hash of its underlay address and the protocol) plus the frame's
  index in the whole capture (``first_packet`` of the batch + its row): it grows by at least
  one per frame the endpoint sends, and by the frames between (the host's other traffic, as
  a real counter shared by every flow to the peer), wraps at 2**16, and is the same whatever
  the window, batch or worker count (the index is the stream's, fixed before framing).
- **TTL.** The endpoint's own initial TTL (Linux 64: VXLAN's default ``ttl`` is
  ``ip4_dst_hoplimit``; a GRE tunnel configured with ``ttl 64`` rather than ``inherit``),
  one value per endpoint at the tap: 64 from the endpoint on the capture side, 64 - 3 from
  the far one (leaf, spine, leaf: three routed hops of the underlay (est)).
- **DF.** VXLAN: clear (Linux's ``df unset`` default, ``vxlan_xmit_one``); GRE: set (the
  tunnel's ``pmtudisc`` default copies IP_DF into the outer header).
"""
import numpy as np

from .codes import PROTO_TCP, PROTO_UDP
from .headers import (
    IP4_ADDRS,
    IP4_CSUM,
    IP4_DF,
    IP4_DST,
    IP4_FRAG,
    IP4_HLEN,
    IP4_ID,
    IP4_LEN,
    IP4_PROTO,
    IP4_SRC,
    IP4_TOS,
    IP4_TTL,
    IP4_VER_IHL,
    IP4_VER_IHL_20,
    IP6_ADDRS,
    IP6_HLEN,
    IP6_NEXT,
    TCP_CSUM,
    UDP_CSUM,
    UDP_HLEN,
)
from .jit import helper, inline
from .rng import GOLDEN, mix64
from .wire import fold, get16, put16, put32, sum16

VTEP_TTL = 64  # Linux net.ipv4.ip_default_ttl
UNDERLAY_HOPS = 3  # routed hops between the far endpoint and the tap: leaf, spine, leaf (est)
IDENT_SALT = np.uint64(0x1DE47)


@inline
def outer_ident(addr, proto, frame):
    """The outer IPv4 ID of the capture's frame number ``frame`` sent by the endpoint at
    underlay address ``addr`` with outer protocol ``proto``: the endpoint's counter."""
    base = mix64((np.uint64(addr) << np.uint64(8)) ^ np.uint64(proto) ^ (IDENT_SALT * GOLDEN))
    return np.int64((base + np.uint64(frame)) & np.uint64(0xFFFF))


@inline
def outer_ttl(d, side):
    """The outer TTL at the tap of a frame sent by endpoint ``d`` (the capture's ``side``)."""
    return VTEP_TTL if d == side else VTEP_TTL - UNDERLAY_HOPS


@helper
def outer4(out, o, tos, total, ipid, ttl, df, proto, src, dst):
    """A 20-byte IPv4 header at ``o`` with its checksum (``df``: set Don't Fragment)."""
    out[o + IP4_VER_IHL] = IP4_VER_IHL_20
    out[o + IP4_TOS] = tos
    put16(out, o + IP4_LEN, total)
    put16(out, o + IP4_ID, ipid)
    out[o + IP4_FRAG] = IP4_DF if df else 0
    out[o + IP4_FRAG + 1] = 0
    out[o + IP4_TTL] = ttl
    out[o + IP4_PROTO] = proto
    out[o + IP4_CSUM] = 0
    out[o + IP4_CSUM + 1] = 0
    put32(out, o + IP4_SRC, src)
    put32(out, o + IP4_DST, dst)
    put16(out, o + IP4_CSUM, fold(sum16(out, o, IP4_HLEN)))


@inline
def _fold16(s):
    while s >> np.uint64(16):
        s = (s & np.uint64(0xFFFF)) + (s >> np.uint64(16))
    return s


@helper
def vxlan_checksum(out, udp, ip, end, v6):
    """The outer UDP checksum of a VXLAN packet (UDP header at ``udp``, inner IP packet
    ``out[ip:end]``). An inner TCP/UDP segment with a checksum sums, by that checksum, to the
    complement of its pseudo-header (RFC 1071), so only headers are read; a segment without
    one (UDP checksum 0) is summed in full."""
    hl = IP6_HLEN if v6 else IP4_HLEN
    proto = out[ip + IP6_NEXT] if v6 else out[ip + IP4_PROTO]
    seg = ip + hl
    n4 = end - seg
    cs_at = seg + (TCP_CSUM if proto == PROTO_TCP else UDP_CSUM)
    if (proto == PROTO_TCP or (proto == PROTO_UDP and get16(out, cs_at) != 0)) \
            and n4 >= (20 if proto == PROTO_TCP else UDP_HLEN):
        pseudo = (sum16(out, ip + IP6_ADDRS, 32) if v6 else sum16(out, ip + IP4_ADDRS, 8)) \
            + np.uint64(proto) + np.uint64(n4)
        body = sum16(out, ip, hl) + (~_fold16(pseudo) & np.uint64(0xFFFF))
    else:
        body = sum16(out, ip, end - ip)
    n = end - udp
    # the outer pseudo-header: the underlay's addresses, just before the UDP header
    cs = fold(sum16(out, udp - IP4_HLEN + IP4_ADDRS, 8) + np.uint64(PROTO_UDP) + np.uint64(n)
              + sum16(out, udp, ip - udp) + body)
    put16(out, udp + UDP_CSUM, 0xFFFF if cs == 0 else cs)
