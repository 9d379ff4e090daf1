"""Frame encoder: packet schedule rows in, Ethernet/IPv4/TCP frames (optionally as pcap records)
out, with correct IPv4 and TCP checksums, into one caller-allocated buffer.

Payload bytes are a slice of a pseudo-random pool at an offset derived from (flow, direction,
sequence number), overlaid with the write's template prefix (TLS handshake messages) and the
TLS record headers that fall inside the segment. Template bytes of mask ECHO come from the pool
at an offset of the flow key alone (the template byte is the index past it): the ServerHello's
legacy_session_id_echo is then the ClientHello's session id. No per-packet allocation.
"""
from collections import namedtuple

import numpy as np

from . import udp as _udp
from .codes import ACK, PROTO_TCP, PROTO_UDP, SYN
from .headers import (
    ETH_DST,
    ETH_HLEN,
    ETH_SRC,
    ETH_TYPE,
    ETHERTYPE_IP4,
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
    PCAP_REC,
    TCP_ACK,
    TCP_CSUM,
    TCP_DPORT,
    TCP_FLAGS,
    TCP_HLEN,
    TCP_OFF,
    TCP_OPTS,
    TCP_SEQ,
    TCP_SPORT,
    TCP_URG,
    TCP_WIN,
)
from .jit import inline, ir_inline, kernel
from .rng import mix64
from .stacks import (
    K_DF,
    K_SYN_LAYOUT,
    K_SYN_OPT_BYTES,
    K_TTL,
    K_WSCALE,
    STACKS,
    SYNACK_OPT_BYTES_NOTS,
    SYNACK_OPT_BYTES_TS,
    TS_OPT_BYTES,
    ip_id,
    syn_window,
    tcp_options,
    two_words,
)
from .tcpstate import SACK_OPT_BYTES
from .wire import fold, pcap_record, put16, put32, sum16, sum_words, words32

REC_SPAN = 16384 + 22  # one full TLS 1.3 record on the wire
PLAIN, DEC, HEX = 0x80, 2, 3  # plaintext HTTP templates' mask codes (trafficgen/plaintext.py)
ECHO = 4  # TLS templates' mask code: pool byte ``tpl`` past the flow's echo offset (session ids)
ECHO_SALT = 0x5E55101D
# TLS templates' per-connection choices (wire/profiles.py, wire/tls.py), from pool bytes past
# the flow's echo offset: GREASE values (mask GREASE: (byte ``tpl`` & 0xF0) | 0x0A; GREASE_OTHER:
# the same, moved by 0x10 when equal to the byte before's), and which of a template's copies
# (first byte's mask COPIES | j: 2**j copies; two bytes at COPY_SEED pick one)
GREASE, GREASE_OTHER, COPIES, COPY_SEED = 6, 7, 0x40, 48
TEXT = np.frombuffer(b"etaoinshrdlucmfwypvbgkjqxz etaoinshrd ", np.uint8).copy()
WIN_SCALED = 2052  # x 2**7 = 262,656 bytes (the emulator's receive window)
WSCALE = 7

PacketRows = namedtuple("PacketRows", "ts flow_row dirs seq ack flags plen ipid layout segoff "
                                      "writelen wire_len win tsval tsecr")
PacketRows.__doc__ = """The schedule's columns the encoder reads, one value per packet: ``ts``
int64 ns since the run's start; ``flow_row`` the row of the packet's flow in ``FlowAttrs``;
``dirs`` 0 up / 1 down; ``seq``/``ack`` absolute; ``flags`` TCP flags; ``plen`` payload bytes;
``ipid`` the IPv4 id; ``layout``/``segoff``/``writelen`` place the payload inside its
application write; ``wire_len`` the frame's bytes (UDP rows: see ``schema.SCHED_DTYPE``);
``win`` the sender's receive window in bytes, ``tsval``/``tsecr`` its TCP timestamps."""

FlowAttrs = namedtuple("FlowAttrs", "cip sip cport sport key hops side proto cos sos tsopt")
FlowAttrs.__doc__ = """Per flow row: client and server addresses (uint32) and ports (uint16),
the flow key (uint64: payload offsets, ids), ``hops`` between the two ends, ``side`` the end
the capture is on (0 client, 1 server), ``proto`` (uint8: 17 = UDP, encoded by
``kernels.udp``; else TCP), the client's and server's stacks ``cos``/``sos`` (uint8,
``kernels.stacks`` OS codes) and ``tsopt`` (1: the connection's segments carry timestamps).

How a TCP segment reads (``kernels.stacks``): the SYN's options in the client stack's order
(MSS, window scale, SACK permitted, timestamps where the stack uses them), the SYN/ACK's in the
Linux server's (timestamps only if the SYN had them), ``nop,nop,ts`` on every later segment of a
connection with timestamps; windows from :func:`stacks.syn_window` on SYNs, else ``win`` shifted
by the sender's window scale (at most 65535); the sender's initial TTL less the path's ``hops``
at the far side's tap; DF and the IPv4 id as the sender's stack sets them (``stacks.ip_id``)."""

Payloads = namedtuple("Payloads", "pool tpl tpl_mask tpl_start tpl_len")
Payloads.__doc__ = """Where payload bytes come from: the pseudo-random ``pool`` (uint8, 64 KiB
longer than the span offsets are drawn in) and the write templates (``wire.tls.Templates``:
bytes, masks, start and length per layout)."""


@kernel
def frame_space(wire_len, pcap):
    """Bytes needed for these frames (plus pcap record headers if ``pcap``)."""
    total = 0
    for i in range(wire_len.shape[0]):
        total += wire_len[i]
    return total + (PCAP_REC * wire_len.shape[0] if pcap else 0)


@inline
def _mac(buf, o, kind, ip, gw_mac):
    """kind 0: gateway MAC; 1: a client's (02:00 + IPv4); 2: a server's (02:01 + IPv4)."""
    if kind == 0:
        for k in range(6):
            buf[o + k] = gw_mac[k]
    else:
        buf[o] = 0x02
        buf[o + 1] = kind - 1
        put32(buf, o + 2, ip)


def encode(out, pcap, start_ns, rows, flows, gw_mac, mss, payloads, offsets):
    """Encode the packets of ``rows`` (``PacketRows``) into ``out`` (uint8); ``offsets[i]``
    gets frame i's start.

    ``flows``: ``FlowAttrs`` of the rows' flows; ``pcap``: each frame after a pcap record
    header (times ``start_ns`` + ts); ``gw_mac``: the gateway's MAC (uint8[6]); ``mss``: the
    SYNs' MSS option; ``payloads``: ``Payloads``. Returns the bytes written.

    The kernel is :func:`encode_tcp`, or :func:`encode_mixed` when a flow is UDP: a run of TCP
    flows alone never compiles the UDP encoders (the same bytes either way).
    """
    both = bool((flows.proto == PROTO_UDP).any())
    return (encode_mixed if both else encode_tcp)(out, pcap, start_ns, rows, flows, gw_mac, mss,
                                                   payloads, offsets)


@kernel
def encode_tcp(out, pcap, start_ns, rows, flows, gw_mac, mss, payloads, offsets):
    """:func:`encode` where every flow is TCP."""
    # arrays out of their tuples once: a tuple's member read in a loop costs a reference count
    ts, flow_row, dirs, seq, ack, flags, plen, ipid, layout, segoff, writelen, wire_len, win, \
        tsval, tsecr = rows
    f_cip, f_sip, f_cport, f_sport, f_key, f_hops, f_side, _, f_cos, f_sos, f_ts = flows
    o = 0
    pool_span = payloads.pool.shape[0] - 65536
    for i in range(ts.shape[0]):
        if pcap:
            pcap_record(out, o, start_ns + ts[i], wire_len[i])
            o += PCAP_REC
        offsets[i] = o
        f = flow_row[i]
        d = dirs[i]
        so = f_cos[f] if d == 0 else f_sos[f]
        ttl = STACKS[so, K_TTL] - _ethernet(out, o, d, f_side[f], f_cip[f], f_sip[f], f_hops[f],
                                            gw_mac)
        o = _tcp(out, o + ETH_HLEN, d, ttl, flags[i], plen[i], ipid[i], seq[i], ack[i], layout[i],
                 segoff[i], writelen[i], f_cip[f], f_sip[f], f_cport[f], f_sport[f], f_key[f], mss,
                 payloads, pool_span, f_cos[f], f_sos[f], f_ts[f], win[i], tsval[i], tsecr[i])
    return o


@kernel
def encode_mixed(out, pcap, start_ns, rows, flows, gw_mac, mss, payloads, offsets):
    """:func:`encode` where flows may be TCP or UDP (``flows.proto``)."""
    ts, flow_row, dirs, seq, ack, flags, plen, ipid, layout, segoff, writelen, wire_len, win, \
        tsval, tsecr = rows
    f_cip, f_sip, f_cport, f_sport, f_key, f_hops, f_side, f_proto, f_cos, f_sos, f_ts = flows
    o = 0
    pool_span = payloads.pool.shape[0] - 65536
    for i in range(ts.shape[0]):
        if pcap:
            pcap_record(out, o, start_ns + ts[i], wire_len[i])
            o += PCAP_REC
        offsets[i] = o
        f = flow_row[i]
        d = dirs[i]
        so = f_cos[f] if d == 0 else f_sos[f]
        ttl = STACKS[so, K_TTL] - _ethernet(out, o, d, f_side[f], f_cip[f], f_sip[f], f_hops[f],
                                            gw_mac)
        if f_proto[f] == PROTO_UDP:
            o = _udp.udp_frame(out, o + ETH_HLEN, rows, i, flows, f, ttl, payloads.pool, pool_span)
        else:
            o = _tcp(out, o + ETH_HLEN, d, ttl, flags[i], plen[i], ipid[i], seq[i], ack[i],
                     layout[i], segoff[i], writelen[i], f_cip[f], f_sip[f], f_cport[f], f_sport[f],
                     f_key[f], mss, payloads, pool_span, f_cos[f], f_sos[f], f_ts[f], win[i],
                     tsval[i], tsecr[i])
    return o


@inline
def _ethernet(out, o, d, capture_side, cip, sip, hops, gw_mac):
    """The Ethernet header of a frame sent by side ``d`` at ``o``: at the client side, client
    <-> gateway; at the server side, router <-> server. Returns the hops its IPv4 TTL has lost
    when seen there (0 from the capture side's own host)."""
    up = d == 0
    if capture_side == 0:
        _mac(out, o + ETH_DST, 0 if up else 1, cip, gw_mac)
        _mac(out, o + ETH_SRC, 1 if up else 0, cip, gw_mac)
    else:
        _mac(out, o + ETH_DST, 2 if up else 0, sip, gw_mac)
        _mac(out, o + ETH_SRC, 0 if up else 2, sip, gw_mac)
    put16(out, o + ETH_TYPE, ETHERTYPE_IP4)
    return 0 if d == capture_side else hops


@inline
def _tcp(out, ip, d, ttl, fl, n, ipid, seq, ack, lay, segoff, writelen, cip, sip, cport, sport,
         key, mss, payloads, pool_span, cos, sos, tsopt, win, tsval, tsecr):
    """IPv4 + TCP + payload of a segment sent by side ``d``, at ``ip`` (just after the Ethernet
    header); returns the frame's end. The header as the sender's stack writes it (``FlowAttrs``)."""
    up = d == 0
    so = cos if up else sos
    syn = (fl & SYN) != 0
    synack = syn and (fl & ACK) != 0
    if synack:
        thl = TCP_HLEN + (SYNACK_OPT_BYTES_TS if tsopt else SYNACK_OPT_BYTES_NOTS)
    elif syn:
        thl = TCP_HLEN + STACKS[cos, K_SYN_OPT_BYTES]
    else:
        thl = TCP_HLEN + (TS_OPT_BYTES if tsopt else 0)
    sack = n == 0 and segoff != writelen and not syn  # a pure ACK's SACK block (tcpstate)
    thl += SACK_OPT_BYTES * sack
    # the checksums are summed from the values written, not read back: a wide load of bytes
    # just stored one by one stalls (their sums are the same, ``wire.sum16``'s)
    length = np.int64(IP4_HLEN + thl + n) & 0xFFFF
    ident = np.int64(ip_id(so, ipid, key, d, synack)) & 0xFFFF
    df = IP4_DF if STACKS[so, K_DF] else 0
    src, dst = np.int64(cip if up else sip), np.int64(sip if up else cip)
    out[ip + IP4_VER_IHL] = IP4_VER_IHL_20
    out[ip + IP4_TOS] = 0
    put16(out, ip + IP4_LEN, length)
    put16(out, ip + IP4_ID, ident)
    out[ip + IP4_FRAG] = df
    out[ip + IP4_FRAG + 1] = 0
    out[ip + IP4_TTL] = ttl
    out[ip + IP4_PROTO] = PROTO_TCP
    put32(out, ip + IP4_SRC, src)
    put32(out, ip + IP4_DST, dst)
    addrs = words32(src) + words32(dst)
    put16(out, ip + IP4_CSUM, fold(np.uint64((IP4_VER_IHL_20 << 8) + length + ident + (df << 8)
                                             + ((np.int64(ttl) & 0xFF) << 8) + PROTO_TCP + addrs)))
    tp = ip + IP4_HLEN
    ports = (np.int64(cport if up else sport), np.int64(sport if up else cport))
    put16(out, tp + TCP_SPORT, ports[0])
    put16(out, tp + TCP_DPORT, ports[1])
    put32(out, tp + TCP_SEQ, seq)
    put32(out, tp + TCP_ACK, ack)
    out[tp + TCP_OFF] = (thl // 4) << 4
    out[tp + TCP_FLAGS] = fl
    ws = STACKS[so, K_WSCALE]
    if syn:
        w = syn_window(so, mss, tsopt, 1 if synack else 0)
    else:
        w = min(np.int64(win) >> ws, 65535)
    put16(out, tp + TCP_WIN, w)
    out[tp + TCP_CSUM] = 0
    out[tp + TCP_CSUM + 1] = 0
    out[tp + TCP_URG] = 0
    out[tp + TCP_URG + 1] = 0
    if syn:
        tcp_options(out, tp + TCP_OPTS, syn, synack, STACKS[cos, K_SYN_LAYOUT], tsopt, mss, ws,
                    tsval, tsecr)
        head = sum16(out, tp, thl)  # a SYN's options, as its stack lays them out
    else:
        head = np.uint64(ports[0] + ports[1] + words32(seq) + words32(ack)
                         + ((((thl // 4) << 4) << 8) | (np.int64(fl) & 0xFF)) + (w & 0xFFFF))
        if tsopt:  # nop, nop, timestamps: most segments
            head += two_words(out, tp + TCP_OPTS, 8, tsval, tsecr)
    if sack:  # nop, nop, SACK with one block [segoff, writelen)
        head += two_words(out, tp + thl - SACK_OPT_BYTES, 5, segoff, writelen)
    pl = tp + thl
    if n > 0:
        _payload(out, pl, n, lay, segoff, writelen,
                 (key + np.uint64(d) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seq))
                 % np.uint64(pool_span), echo_offset(key, pool_span), payloads)
        head += sum_words(out, pl, n)
    # pseudo-header + TCP header + payload
    s = np.uint64(addrs + PROTO_TCP + thl + n) + head
    put16(out, tp + TCP_CSUM, fold(s))
    return pl + n


@inline
def echo_offset(key, pool_span):
    """Where a connection's ECHO bytes start in the pool: a function of its flow key alone, so
    both directions' templates (ClientHello and ServerHello session ids) get the same bytes."""
    return np.int64(mix64(np.uint64(key) ^ np.uint64(ECHO_SALT)) % np.uint64(pool_span))


@ir_inline
def _payload(out, pl, n, lay, segoff, writelen, pool_off, echo_off, payloads):
    """The payload of one segment: ``n`` bytes at ``pl``, bytes ``segoff``.. of its write."""
    pool, tpl, tpl_mask, tpl_start, tpl_len = payloads
    po = np.int64(pool_off)
    dst = out[pl:pl + n]
    src = pool[po:po + n]
    for k in range(n):  # over views: vectorised (see sum16)
        dst[k] = src[k]
    # template prefix of the write (handshake messages), where it overlaps this segment
    plen_t = tpl_len[lay]
    if plen_t > 0 and tpl_mask[tpl_start[lay] + plen_t - 1] >= PLAIN:
        _plain(out, pl, n, segoff, writelen, po, payloads, tpl_start[lay], plen_t)
        return
    if segoff < plen_t:
        t0 = tpl_start[lay]
        m0 = tpl_mask[t0]
        if m0 & COPIES and m0 < PLAIN:  # one of 2**j copies, per connection
            pick = np.int64(pool[echo_off + COPY_SEED]) | (np.int64(pool[echo_off + COPY_SEED + 1]) << 8)
            t0 += plen_t * (pick & ((np.int64(1) << (m0 & 0xF)) - 1))
        for k in range(segoff, min(plen_t, segoff + n)):
            m = tpl_mask[t0 + k]
            if m == ECHO:
                out[pl + k - segoff] = pool[echo_off + tpl[t0 + k]]
            elif m == GREASE or m == GREASE_OTHER:
                g = (pool[echo_off + tpl[t0 + k]] & 0xF0) | 0x0A
                if m == GREASE_OTHER and g == (pool[echo_off + tpl[t0 + k] - 1] & 0xF0) | 0x0A:
                    g ^= 0x10
                out[pl + k - segoff] = g
            elif m:
                out[pl + k - segoff] = tpl[t0 + k]
    # TLS application-data record headers after the prefix
    app_total = writelen - plen_t
    if app_total <= 0:
        return
    lo = max(segoff, plen_t) - plen_t  # first app-data byte of this segment
    hi = segoff + n - plen_t  # one past the last
    r = lo // REC_SPAN
    while r * REC_SPAN < hi:
        rs = r * REC_SPAN
        rlen = min(REC_SPAN, app_total - rs) - 5
        for k in range(5):
            pos = rs + k
            if lo <= pos < hi:
                if k == 0:
                    b = 0x17
                elif k < 3:
                    b = 0x03
                elif k == 3:
                    b = (rlen >> 8) & 0xFF
                else:
                    b = rlen & 0xFF
                out[pl + pos + plen_t - segoff] = b
        r += 1


@inline
def _field(tpl, tpl_mask, t0, k, writelen):
    """Byte ``k`` of a length field (mask DEC or HEX): the write's length less the field's
    first two template bytes, decimal right-padded with spaces or hex zero-padded."""
    code = tpl_mask[t0 + k]
    s = np.int64(k)
    while s > 0 and tpl_mask[t0 + s - 1] == code:
        s -= 1
    e = np.int64(k)
    while tpl_mask[t0 + e + 1] == code:
        e += 1
    v = np.int64(writelen) - (np.int64(tpl[t0 + s]) * 256 + np.int64(tpl[t0 + s + 1]))
    j = k - s
    if code == HEX:
        d = (v >> (4 * (e - k))) & 0xF
        return 48 + d if d < 10 else 87 + d
    nd = 1
    while v >= 10 ** nd:
        nd += 1
    if j >= nd:
        return 32
    return 48 + (v // 10 ** (nd - 1 - j)) % 10


@inline
def _plain(out, pl, n, segoff, writelen, po, payloads, t0, plen_t):
    """A plaintext HTTP write: the template's prefix (with its length fields), filler text
    from the pool, the template's suffix at the write's end."""
    pool, tpl, tpl_mask = payloads.pool, payloads.tpl, payloads.tpl_mask
    t0, plen_t, seg, wl = np.int64(t0), np.int64(plen_t), np.int64(segoff), np.int64(writelen)
    suf = np.int64(tpl_mask[t0 + plen_t - 1] & 0x7F)
    pre = plen_t - suf
    fill_end = wl - suf
    for k in range(seg, seg + n):
        if k < pre:
            m = tpl_mask[t0 + k]
            b = _field(tpl, tpl_mask, t0, k, wl) if m == DEC or m == HEX else tpl[t0 + k]
        elif k < fill_end:
            b = TEXT[pool[po + k - seg] % TEXT.shape[0]]
        else:
            b = tpl[t0 + pre + k - fill_end]
        out[pl + k - seg] = b
