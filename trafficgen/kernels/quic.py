"""QUIC (HTTP/3 over UDP 443) for a share of the TCP/TLS flows: the TCP schedule as QUIC
packets, paced as the TCP version was, then each plain frame rewritten in place.

Schedule (``plan``): per QUIC flow, the TCP handshake goes (SYN, SYN-ACK and the client's
first pure ACK: QUIC has no separate handshake); the ClientHello's segments become client
Initial packets (padded to at least 1200 bytes of UDP payload), the server's first flight
segment a server Initial (its ACKs before that go) and the rest Handshake packets, the client's Finished a Handshake
packet, every later packet (data, ACKs, the close) a 1-RTT short-header packet; the last ACK
after the server's close goes. A data packet keeps its TCP frame's size (UDP 8 + QUIC header,
frames and AEAD tag 12 bytes more than the TCP header's 20, so the app bytes it carries are 19
fewer); an ACK-only packet is 32 bytes of QUIC (48 as a Handshake packet). Packet numbers count
per direction and packet-number space.

Frames (``write``): the plain TCP frame of the same length becomes UDP + QUIC: long headers
(version 1, 8-byte connection ids from the flow key, token length 0, Length) or a short header
(the peer's connection id), then opaque protected bytes (the frame's payload pool bytes).
Initials come already sealed with their real keys (``trafficgen.quic_initial``: Q_SEALED).
"""
import numpy as np

from .codes import FIN, PH_HANDSHAKE, SYN
from .headers import UDP_HLEN, UDP_LEN
from .jit import helper, inline, kernel
from .rng import mix64
from .wire import put16, put32

Q_DROP, Q_INITIAL, Q_HANDSHAKE, Q_SHORT = 0, 1, 2, 3
Q_SEALED = 4  # an Initial already sealed in the plain frame (``quic_initial``): keep its bytes
UDP_MORE = 12  # QUIC bytes beyond a TCP header's 20, in a packet of the TCP frame's size
ACK_LEN, HS_ACK_LEN, INITIAL_MIN = 32, 48, 1200
# per-flow state columns
F_CDATA, F_SDATA, F_CFIN, F_SCLOSE, F_PN = 0, 1, 2, 3, 4  # F_PN..: [direction][space]
F_COLS = F_PN + 6
CID_CLIENT_DCID, CID_CLIENT, CID_SERVER = 1, 2, 3


@kernel
def plan(flow_row, is_quic, dirs, flags, plen, phase, dup, kind, qlen, pn):
    """Per packet (in capture order) of ``n``: ``kind`` (uint8: Q_* or 255 for a packet of a
    TCP flow), ``qlen`` (int64: the QUIC packet's bytes, the UDP payload) and ``pn`` (int64:
    its packet number). ``flow_row`` indexes ``is_quic`` (bool) of the window's flows. A
    path's copy (``dup``: it follows its original) repeats the original's packet number."""
    st = np.zeros((is_quic.shape[0], F_COLS), np.int64)
    for i in range(flow_row.shape[0]):
        f = flow_row[i]
        if not is_quic[f]:
            kind[i] = 255
            continue
        d, fl, n = dirs[i], flags[i], plen[i]
        k, ln = Q_SHORT, ACK_LEN
        if fl & SYN:
            k = Q_DROP
        elif n == 0 and fl & FIN:
            if d == 1:
                st[f, F_SCLOSE] = 1
        elif n == 0:
            if d == 0 and (st[f, F_CDATA] == 0 or st[f, F_SCLOSE]):
                k = Q_DROP  # the TCP handshake's last ACK; the ACK of the server's close
            elif d == 1 and st[f, F_SDATA] == 0:
                k = Q_DROP  # the server acknowledges the ClientHello in its Initial
            elif phase[i] == PH_HANDSHAKE and st[f, F_CFIN] == 0:
                k, ln = Q_HANDSHAKE, HS_ACK_LEN
        else:
            ln = max(n + UDP_MORE, ACK_LEN)
            if phase[i] == PH_HANDSHAKE and d == 0 and st[f, F_SDATA] == 0:
                k, ln = Q_INITIAL, max(INITIAL_MIN, n + UDP_MORE)
            elif phase[i] == PH_HANDSHAKE and d == 0:
                k = Q_HANDSHAKE
                st[f, F_CFIN] = 1
            elif phase[i] == PH_HANDSHAKE and d == 1 and st[f, F_CFIN] == 0:
                k = Q_INITIAL if st[f, F_SDATA] == 0 else Q_HANDSHAKE
                ln = max(ln, 64)
            if d == 0:
                st[f, F_CDATA] = 1
            else:
                st[f, F_SDATA] = 1
        kind[i] = k
        qlen[i] = ln
        if k != Q_DROP:
            space = F_PN + 3 * d + k - 1
            if dup[i] and st[f, space] > 0:
                pn[i] = st[f, space] - 1
            else:
                pn[i] = st[f, space]
                st[f, space] += 1
    return 0


@kernel
def cid_value(key, which):
    """Connection id ``which`` (CID_*) of the flow with this key, as a uint64."""
    return mix64(np.uint64(key) ^ np.uint64(which * 0x51ED27))


@inline
def _cid(out, o, key, which):
    x = cid_value(key, which)
    for k in range(8):
        out[o + k] = (x >> np.uint64(8 * (7 - k))) & np.uint64(0xFF)


@helper
def write(out, u, qlen, kind, pn, d, key):
    """QUIC header of a ``qlen``-byte packet at ``u + 8`` (after the UDP header at ``u``,
    whose length is set here; its checksum comes after). Protected bytes already there."""
    put16(out, u + UDP_LEN, qlen + UDP_HLEN)
    q = u + UDP_HLEN
    if kind == Q_SEALED:
        return
    if kind == Q_SHORT:
        out[q] = 0x40 | (out[q + 9] & 0x3C) | 0x01  # fixed bit, spin/key phase bits, 2-byte PN
        _cid(out, q + 1, key, CID_SERVER if d == 0 else CID_CLIENT)
        put16(out, q + 9, pn & 0xFFFF)
        return
    out[q] = (0xC1 if kind == Q_INITIAL else 0xE1)  # long header, Initial/Handshake, 2-byte PN
    put32(out, q + 1, 1)  # version 1
    out[q + 5] = 8
    if d == 0:
        _cid(out, q + 6, key, CID_CLIENT_DCID if kind == Q_INITIAL else CID_SERVER)
        out[q + 14] = 8
        _cid(out, q + 15, key, CID_CLIENT)
    else:
        _cid(out, q + 6, key, CID_CLIENT)
        out[q + 14] = 8
        _cid(out, q + 15, key, CID_SERVER)
    h = q + 23
    if kind == Q_INITIAL:
        out[h] = 0  # token length
        h += 1
    put16(out, h, 0x4000 | (qlen - (h + 2 - q)))  # Length: packet number and payload
    put16(out, h + 2, pn & 0xFFFF)
