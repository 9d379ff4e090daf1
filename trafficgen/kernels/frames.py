"""Frame encoder: packet schedule rows in, Ethernet/IPv4/TCP frames (optionally as pcap records)
out, with correct IPv4 and TCP checksums, into one caller-allocated buffer.

Payload bytes are a slice of a pseudo-random pool at an offset derived from (flow, direction,
sequence number), overlaid with the write's template prefix (TLS handshake messages) and the
TLS record headers that fall inside the segment. Template bytes of mask ECHO come from the pool
at an offset of the flow key alone (the template byte is the index past it): the ServerHello's
legacy_session_id_echo is then the ClientHello's session id. No per-packet allocation.
"""
import numpy as np

from . import udp as _udp
from .codes import PROTO_UDP, SYN
from .jit import helper, inline, kernel
from .rng import mix64
from .wire import fold, put16, put32, sum16  # noqa: F401 (encap imports them from here)

REC_SPAN = 16384 + 22  # one full TLS 1.3 record on the wire
PLAIN, DEC, HEX = 0x80, 2, 3  # plaintext HTTP templates' mask codes (trafficgen/plaintext.py)
ECHO = 4  # TLS templates' mask code: pool byte ``tpl`` past the flow's echo offset (session ids)
ECHO_SALT = 0x5E55101D
TEXT = np.frombuffer(b"etaoinshrdlucmfwypvbgkjqxz etaoinshrd ", np.uint8).copy()
PCAP_REC = 16  # pcap record header
WIN_SYN = (64240, 65160)  # Linux SYN / SYN-ACK windows
WIN_SCALED = 2052  # x 2**7 = 262,656 bytes (the emulator's receive window)
WSCALE = 7


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


@kernel
def build(out, pcap, start_ns, ts, flow_row, dirs, seq, ack, flags, plen, ipid, layout, segoff,
          writelen, wire_len, f_cip, f_sip, f_cport, f_sport, f_key, f_hops, f_side,
          gw_mac, mss, pool, tpl, tpl_mask, tpl_start, tpl_len, offsets, f_proto=None):
    """Encode ``n`` packets into ``out`` (uint8); ``offsets[i]`` gets frame i's start.

    Per packet: ts int64 ns since ``start_ns``; flow_row index into the f_* flow arrays;
    dirs 0 up / 1 down; seq/ack absolute; plen payload bytes; layout/segoff/writelen place the
    payload inside its application write; f_side is the end of each flow the capture is on
    (0 client, 1 server). ``f_proto`` (uint8 per flow, optional): flows of protocol 17 are
    UDP, encoded by ``kernels.udp`` (see schema.py for their columns). Returns the bytes
    written.
    """
    o = 0
    pool_span = pool.shape[0] - 65536
    for i in range(ts.shape[0]):
        wl = wire_len[i]
        if pcap:
            t = start_ns + ts[i]
            sec = t // 1_000_000_000
            nsec = t - sec * 1_000_000_000
            for k in range(4):
                out[o + k] = (sec >> (8 * k)) & 0xFF
                out[o + 4 + k] = (nsec >> (8 * k)) & 0xFF
                out[o + 8 + k] = (wl >> (8 * k)) & 0xFF
                out[o + 12 + k] = (wl >> (8 * k)) & 0xFF
            o += PCAP_REC
        offsets[i] = o
        f = flow_row[i]
        d = dirs[i]
        up = d == 0
        cip, sip = f_cip[f], f_sip[f]
        capture_side = f_side[f]
        # Ethernet: at the client side, client <-> gateway; at the server side, router <-> server
        if capture_side == 0:
            _mac(out, o, 0 if up else 1, cip, gw_mac)
            _mac(out, o + 6, 1 if up else 0, cip, gw_mac)
        else:
            _mac(out, o, 2 if up else 0, sip, gw_mac)
            _mac(out, o + 6, 0 if up else 2, sip, gw_mac)
        out[o + 12] = 0x08
        out[o + 13] = 0x00
        if f_proto is not None and f_proto[f] == PROTO_UDP:
            o = _udp.udp_frame(out, o + 14, d, up, cip, sip, f_cport[f], f_sport[f],
                               64 if d == capture_side else 64 - f_hops[f], layout[i], flags[i],
                               seq[i], ack[i], plen[i], ipid[i], segoff[i], writelen[i], f_key[f],
                               pool, pool_span)
            continue
        # IPv4
        ip = o + 14
        fl = flags[i]
        thl = 32 if fl & SYN else 20
        n = plen[i]
        out[ip] = 0x45
        out[ip + 1] = 0
        put16(out, ip + 2, 20 + thl + n)
        put16(out, ip + 4, ipid[i])
        out[ip + 6] = 0x40  # DF
        out[ip + 7] = 0
        out[ip + 8] = 64 if d == capture_side else 64 - f_hops[f]
        out[ip + 9] = 6
        out[ip + 10] = 0
        out[ip + 11] = 0
        put32(out, ip + 12, cip if up else sip)
        put32(out, ip + 16, sip if up else cip)
        put16(out, ip + 10, fold(sum16(out, ip, 20)))
        # TCP
        tp = ip + 20
        put16(out, tp, f_cport[f] if up else f_sport[f])
        put16(out, tp + 2, f_sport[f] if up else f_cport[f])
        put32(out, tp + 4, seq[i])
        put32(out, tp + 8, ack[i])
        out[tp + 12] = (thl // 4) << 4
        out[tp + 13] = fl
        put16(out, tp + 14, WIN_SYN[d] if fl & SYN else WIN_SCALED)
        out[tp + 16] = 0
        out[tp + 17] = 0
        out[tp + 18] = 0
        out[tp + 19] = 0
        if fl & SYN:  # MSS, NOP, window scale, NOP, NOP, SACK permitted
            out[tp + 20] = 2
            out[tp + 21] = 4
            put16(out, tp + 22, mss)
            out[tp + 24] = 1
            out[tp + 25] = 3
            out[tp + 26] = 3
            out[tp + 27] = WSCALE
            out[tp + 28] = 1
            out[tp + 29] = 1
            out[tp + 30] = 4
            out[tp + 31] = 2
        pl = tp + thl
        if n > 0:
            _payload(out, pl, n, layout[i], segoff[i], writelen[i],
                     (f_key[f] + np.uint64(d) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seq[i]))
                     % np.uint64(pool_span), echo_offset(f_key[f], pool_span), pool, tpl,
                     tpl_mask, tpl_start, tpl_len)
        # pseudo-header + TCP header + payload
        s = sum16(out, ip + 12, 8) + np.uint64(6) + np.uint64(thl + n) + sum16(out, tp, thl + n)
        put16(out, tp + 16, fold(s))
        o = pl + n
    return o


@inline
def echo_offset(key, pool_span):
    """Where a connection's ECHO bytes start in the pool: a function of its flow key alone, so
    both directions' templates (ClientHello and ServerHello session ids) get the same bytes."""
    return np.int64(mix64(np.uint64(key) ^ np.uint64(ECHO_SALT)) % np.uint64(pool_span))


@helper
def _payload(out, pl, n, lay, segoff, writelen, pool_off, echo_off, pool, tpl, tpl_mask, tpl_start,
             tpl_len):
    po = np.int64(pool_off)
    dst = out[pl:pl + n]
    src = pool[po:po + n]
    for k in range(n):  # over views: vectorised (see sum16)
        dst[k] = src[k]
    # template prefix of the write (handshake messages), where it overlaps this segment
    plen_t = tpl_len[lay]
    if plen_t > 0 and tpl_mask[tpl_start[lay] + plen_t - 1] >= PLAIN:
        _plain(out, pl, n, segoff, writelen, po, pool, tpl, tpl_mask, tpl_start[lay], plen_t)
        return
    if segoff < plen_t:
        t0 = tpl_start[lay]
        for k in range(segoff, min(plen_t, segoff + n)):
            m = tpl_mask[t0 + k]
            if m == ECHO:
                out[pl + k - segoff] = pool[echo_off + tpl[t0 + k]]
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


@helper
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


@helper
def _plain(out, pl, n, segoff, writelen, po, pool, tpl, tpl_mask, t0, plen_t):
    """A plaintext HTTP write: the template's prefix (with its length fields), filler text
    from the pool, the template's suffix at the write's end."""
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
