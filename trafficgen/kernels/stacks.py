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
"""
import numpy as np

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
    # ttl, layout, syn opts, ts, ts Hz, SYN window, wscale, ipid, DF, rcvbuf initial, max
    [64, LAY_LINUX, 20, 1, 1000, 64240, 7, IPID_PER_CONN, 1, 131072, 6291456],    # linux
    [64, LAY_LINUX, 20, 1, 1000, 65535, 9, IPID_PER_CONN, 1, 131072, 6291456],    # android
    [128, LAY_WINDOWS, 12, 0, 0, 64240, 8, IPID_GLOBAL, 1, 65536, 16777216],      # windows
    [64, LAY_APPLE, 24, 1, 1000, 65535, 6, IPID_RANDOM, 1, 131072, 4194304],      # macos
    [64, LAY_APPLE, 24, 1, 1000, 65535, 6, IPID_RANDOM, 1, 131072, 4194304],      # ios
], np.int64)

# A Linux server's SYN/ACK options: with timestamps (the client offered them) ``mss,sok,ts,nop,ws``;
# without (a Windows client) ``mss,nop,nop,sok,nop,ws``. Servers run Linux.
SYNACK_OPT_BYTES_TS, SYNACK_OPT_BYTES_NOTS = 20, 12
