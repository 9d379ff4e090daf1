"""Host TCP/IP stacks: what each OS puts in its headers, as one table the kernels index.

A connection's two ends each run a stack (``OS_*`` code: the client's from its profile, the
server's Linux). Row ``os`` of :data:`STACKS` holds that stack's constants (``K_*`` columns);
the transport kernel reads the header lengths and the timestamp clock, the frame encoder the
option layout, TTL, window, scale, DF and IPv4 ID behaviour. Figures: ``MODELS.md`` (Hosts,
stacks and paths), from Linux ``tcp_output.c`` and the p0f 3 database (``p0f.fp``).

Option layouts (``K_SYN_LAYOUT``), as p0f writes them:

- ``LAY_LINUX``:   ``mss,sok,ts,nop,ws`` (20 option bytes)
- ``LAY_WINDOWS``: ``mss,nop,ws,nop,nop,sok`` (12 option bytes; no timestamps)
- ``LAY_APPLE``:   ``mss,nop,ws,nop,nop,ts,sok,eol`` (24 option bytes, eol padded)

A SYN/ACK answers with the options the SYN offered that its own stack supports, in its own
order. Timestamps are on for a connection when both ends use them (Linux server and a Linux,
Android, macOS or iOS client; not Windows); then every segment after the SYNs carries
``nop,nop,ts`` (12 bytes) and the MSS a segment may carry is 12 bytes less.

The figures are chosen so the p0f 3 database (``/etc/p0f/p0f.fp``) names each stack as its own:
Linux ``mss*44,7`` ("Linux 2.2.x-3.x"), Android ``mss*44,3`` ("Linux (Android)": p0f's only
Android signature, a wscale of 3 as Android's 512 KiB ``tcp_rmem`` maximum gives), Windows
``mss,nop,ws,nop,nop,sok`` TTL 128 ("Windows NT kernel"), macOS/iOS ``65535,6`` ("Mac OS X").
SYN windows are the stack's receive space rounded down to a multiple of the MSS as Linux's
``tcp_select_initial_window`` does (64240 at MSS 1460); the Linux server's SYN/ACK offers 10
times its MSS (``SYNACK_WIN_SEGS``: the initial receive window of the kernels p0f's "Linux 3.x"
SYN/ACK signature knows, "mss*10"; 4.19+ offer ~64 KB, which p0f 3 does not name) and IPv4 id 0
(Linux ``ip_build_and_send_pkt`` zeroes the id of a DF SYN/ACK). See :func:`syn_window`: the
encoder writes it on SYNs whatever the schedule's ``win`` says there.

IPv4 ids (``K_IPID``): Linux and Android a per-connection counter from a random start (the
schedule's ``ipid``); Windows one counter per host (:func:`host_ipids`); macOS and iOS a
random id per packet (``kernels.frames``).
"""
import numpy as np

from .jit import helper, inline, kernel
from .rng import derive, mix64, uniform
from .wire import put16, put32, words32

# OS codes (schema: the flow table's ``client_os`` and ``server_os``); append only
OS_LINUX, OS_ANDROID, OS_WINDOWS, OS_MACOS, OS_IOS = range(5)
OS_NAMES = ("linux", "android", "windows", "macos", "ios")

LAY_LINUX, LAY_WINDOWS, LAY_APPLE = range(3)
# ipv4 id behaviour
IPID_PER_CONN, IPID_GLOBAL, IPID_RANDOM = range(3)

# columns of STACKS
K_TTL, K_SYN_LAYOUT, K_SYN_OPT_BYTES, K_TS, K_TS_HZ, K_SYN_WIN, K_WSCALE, K_IPID, K_DF, \
    K_RCVBUF_INIT, K_RCVBUF_MAX = range(11)
K_COLS = 11

TS_OPT_BYTES = 12  # nop, nop, kind 8 len 10 on every segment once negotiated

STACKS = np.array([
    # ttl, layout, syn opts, ts, ts Hz, SYN window (space: rounded down to an MSS multiple where
    # K_SYN_LAYOUT is LAY_LINUX or LAY_WINDOWS, see syn_window), wscale, ipid, DF, rcvbuf
    # initial, max
    [64, LAY_LINUX, 20, 1, 1000, 65535, 7, IPID_PER_CONN, 1, 131072, 6291456],    # linux
    [64, LAY_LINUX, 20, 1, 1000, 65535, 3, IPID_PER_CONN, 1, 131072, 524288],     # android
    [128, LAY_WINDOWS, 12, 0, 0, 65535, 8, IPID_GLOBAL, 1, 65536, 16777216],      # windows
    [64, LAY_APPLE, 24, 1, 1000, 65535, 6, IPID_RANDOM, 1, 131072, 4194304],      # macos
    [64, LAY_APPLE, 24, 1, 1000, 65535, 6, IPID_RANDOM, 1, 131072, 4194304],      # ios
], np.int64)

# A Linux server's SYN/ACK options: with timestamps (the client offered them) ``mss,sok,ts,nop,ws``;
# without (a Windows client) ``mss,nop,nop,sok,nop,ws``. Servers run Linux.
SYNACK_OPT_BYTES_TS, SYNACK_OPT_BYTES_NOTS = 20, 12
SYNACK_WIN_SEGS = 10  # the Linux server's SYN/ACK window, in segments (see the docstring)
UNSEEN = np.int64(-(1 << 62))  # host_ipids: a connection none of whose rows is read yet
IPID_TICK_NS = 1_000_000  # a Windows host's id counter: one more per ms for its other traffic
HOST_SALT = 0x40570  # hosts' keys: derive(key_of(seed, HOST_SALT), IPv4 address)


@kernel
def syn_window(os, mss, ts, synack):
    """The window field of a SYN (``synack`` 0) or a Linux server's SYN/ACK (1) from stack
    ``os`` with MSS option ``mss`` (``ts``: the connection has timestamps; unused): the receive
    space rounded down to a multiple of the MSS, Apple stacks their space as it is; a SYN/ACK
    ``SYNACK_WIN_SEGS`` times the MSS."""
    if synack:  # 10 x the MSS option: p0f's "mss*10", and above a first flight of 10 segments
        return min(SYNACK_WIN_SEGS * mss, 65535)  # that carry timestamps (tshark: not "full")
    space = STACKS[os, K_SYN_WIN]
    if STACKS[os, K_SYN_LAYOUT] == LAY_APPLE:
        return space
    return (space // mss) * mss


@kernel
def host_ipids(out, cols, c_os, c_ipid, host_key, c_addr, c_first):
    """IPv4 ids of the packets a Windows client sends, in place: one counter per host, as
    Windows keeps. Across windows and processes the host's other packets are unknown, so its
    counter when a connection opens is approximated as a per-host start (drawn from
    derive(``host_key``, the client's IPv4 address ``c_addr[c]``)) plus one per
    ``IPID_TICK_NS`` since the capture start (the connection's first packet), and each packet
    of the connection then takes the next id: a host's ids grow with time across its
    connections.

    ``out``: the transport's packet rows (int64[n, cols]), each connection's together (the
    simulation writes a connection's rows at once); ``cols``: the indexes of their time,
    connection, direction and id columns; ``c_ipid[c, 0]``: the client's per-connection start
    the rows' ids count from; ``c_first``: scratch, int64[C]. One pass: a connection's first
    time is found over its rows, which are then still in cache for its ids. Returns how many
    connections' rows were not together (0; else some of their ids are wrong)."""
    t_col, c_col, d_col, id_col = cols[0], cols[1], cols[2], cols[3]
    for c in range(c_first.shape[0]):
        c_first[c] = UNSEEN
    apart = 0
    n = out.shape[0]
    a = 0
    while a < n:
        c = out[a, c_col]
        if c_first[c] != UNSEEN:
            apart += 1
        # its first time: the earliest, unless one before 0 (warm-up) is followed by another
        first = np.int64(-1)
        b = a
        while b < n and out[b, c_col] == c:
            if first < 0 or out[b, t_col] < first:
                first = out[b, t_col]
            b += 1
        c_first[c] = first
        if STACKS[c_os[c, 0], K_IPID] == IPID_GLOBAL:
            start = np.int64(mix64(derive(host_key, c_addr[c])) & np.uint64(0xFFFF)) \
                + max(first, 0) // IPID_TICK_NS
            for i in range(a, b):
                if out[i, d_col] == 0:
                    k = (out[i, id_col] - c_ipid[c, 0]) & 0xFFFF  # its place in its connection
                    out[i, id_col] = (start + k) & 0xFFFF
        a = b
    return apart


@kernel
def client_os(key, clients, cum_w, os_cum, out):
    """The OS each client runs (``out[i]`` of client ``clients[i]``): the profile it draws as
    ``tlsvar.assign`` draws it (draw 0 of derive(key, client) against ``cum_w``), then an OS
    by that profile's shares (draw 1 against ``os_cum[profile]``, cumulative over OS codes): a
    client is one host, the same OS in all its connections."""
    n_prof = cum_w.shape[0]
    for i in range(clients.shape[0]):
        k = derive(key, clients[i])
        u = uniform(k, 0)
        p = 0
        while p + 1 < n_prof and u >= cum_w[p]:
            p += 1
        v = uniform(k, 1)
        o = 0
        while o + 1 < os_cum.shape[1] and v >= os_cum[p, o]:
            o += 1
        out[i] = o


@inline
def ip_id(os, ipid, key, d, synack):
    """The IPv4 id a packet from stack ``os`` carries: the schedule's ``ipid`` (a per-connection
    counter; Windows' per-host one, see ``host_ipids``), 0 on a Linux SYN/ACK (DF), or for
    Apple stacks a random id per packet (a hash of the flow ``key``, direction ``d`` and the
    packet's place in its direction, ``ipid``)."""
    mode = STACKS[os, K_IPID]
    if mode == IPID_RANDOM:
        h = mix64(np.uint64(key) ^ (np.uint64(d + 1) << np.uint64(48)) ^ np.uint64(ipid & 0xFFFF))
        return np.int64(h & np.uint64(0xFFFF))
    if synack and STACKS[os, K_SYN_LAYOUT] == LAY_LINUX:
        return np.int64(0)
    return np.int64(ipid)


@inline
def _ts(out, o, tsval, tsecr):
    out[o] = 8
    out[o + 1] = 10
    put32(out, o + 2, tsval)
    put32(out, o + 6, tsecr)
    return o + 10


@inline
def _nops(out, o, k):
    for j in range(k):
        out[o + j] = 1
    return o + k


@inline
def two_words(out, op, kind, a, b):
    """nop, nop, then option ``kind`` of length 10 holding two 32-bit words (timestamps: 8;
    one SACK block: 5), at ``op``. Returns the option's sum as big-endian 16-bit words (the
    segment's checksum adds it)."""
    out[op] = 1
    out[op + 1] = 1
    out[op + 2] = kind
    out[op + 3] = 10
    put32(out, op + 4, a)
    put32(out, op + 8, b)
    return np.uint64(0x0101 + (kind << 8) + 10 + words32(a) + words32(b))


@helper
def tcp_options(out, o, syn, synack, layout, tsopt, mss, ws, tsval, tsecr):
    """The TCP options at ``o``: a SYN's in its stack's layout (``layout``: the client's), a
    Linux SYN/ACK's, or ``nop,nop,ts`` on a later segment (``tsopt``)."""
    if not syn:
        _ts(out, _nops(out, o, 2), tsval, tsecr)
        return
    out[o] = 2  # MSS
    out[o + 1] = 4
    put16(out, o + 2, mss)
    o += 4
    if synack or layout != LAY_WINDOWS and layout != LAY_APPLE:  # Linux: sok, ts, nop, ws
        if tsopt or not synack:
            out[o] = 4  # SACK permitted
            out[o + 1] = 2
            o = _ts(out, o + 2, tsval, tsecr)
        else:  # a SYN/ACK without timestamps: nop, nop, sok, nop, ws
            o = _nops(out, o, 2)
            out[o] = 4
            out[o + 1] = 2
            o += 2
        o = _nops(out, o, 1)
        out[o] = 3
        out[o + 1] = 3
        out[o + 2] = ws
        return
    o = _nops(out, o, 1)  # Windows and Apple: mss, nop, ws, nop, nop, ...
    out[o] = 3
    out[o + 1] = 3
    out[o + 2] = ws
    o = _nops(out, o + 3, 2)
    if layout == LAY_APPLE:  # ts, sok, eol (and one byte of padding)
        o = _ts(out, o, tsval, tsecr)
        out[o] = 4
        out[o + 1] = 2
        out[o + 2] = 0
        out[o + 3] = 0
        return
    out[o] = 4  # Windows: sok
    out[o + 1] = 2
