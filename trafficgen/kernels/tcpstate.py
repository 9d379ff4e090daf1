"""The transport kernel's layout (``kernels.tcp``, ``tcpseg``, ``recovery``, ``sack``, ``path``):
its packet rows' columns (``P_*``) and what happened to each (``T_*``), the write matrix
(``WF_*``, ``WS_*``, ``WO_*``, ``W_*``) and one connection's state array (``S_*``).
The transport's inputs (``Conns``, ``Link``, ``Hosts``) are defined here and used as
``kernels.tcp``'s."""
from collections import namedtuple

import numpy as np

INF = np.int64(2**62)
HDR = 54  # Ethernet 14 + IPv4 20 + TCP 20
IFG_BYTES = 24  # a frame on the wire beyond its captured bytes: FCS 4, preamble and SFD 8, gap 12
TURN_STEPS = 4096  # a turnaround distribution's quantile table: TURN_STEPS + 1 values

# per-packet output columns (int64[cap, P_COLS], narrowed by the caller)
# P_WIN: the receive window the sender advertises (bytes, before its window scale); P_TSVAL,
# P_TSECR: its TCP timestamp option (0 where the connection has no timestamps); P_ARR: when
# its last bit reaches the receiver
# P_TRUTH: what happened to it (T_* bits; 0 on a clean path)
P_TS, P_CONN, P_DIR, P_SEQ, P_ACK, P_FLAGS, P_PLEN, P_REQ, P_PHASE, P_IPID, P_WLEN, \
    P_LAYOUT, P_SEGOFF, P_WRITELEN, P_SEND, P_WIN, P_TSVAL, P_TSECR, P_ARR, P_TRUTH = range(20)
P_COLS = 20
# P_TRUTH bits: carries bytes sent before; lost after the tap (captured, never delivered); lost
# before it (never captured); new bytes of its direction were lost before the tap just before
# it; held back on the path (reordered: later frames of its direction overtake it); a copy
# the path made (duplicated); not captured but delivered (a copy made past the tap)
T_RETX, T_AFTER, T_BEFORE, T_GAP, T_REORD, T_DUP, T_UNSEEN = 1, 2, 4, 8, 16, 32, 64
T_LOST = T_AFTER | T_BEFORE
T_OFFTAP = T_BEFORE | T_UNSEEN  # rows the capture does not hold
# a pure ACK's SACK block (impaired paths): absolute [P_SEGOFF, P_WRITELEN) (equal: none), the
# receiver's latest block (RFC 2018's first) or a D-SACK (RFC 2883: a duplicate's, below the
# ACK), written as nop, nop, SACK (kind 5, length 10)
SACK_OPT_BYTES = 12

# write matrix columns (int64[W, WF_COLS]); dep is an index local to the connection
WF_DIR, WF_BYTES, WF_DEP, WF_DELAY, WF_REQ, WF_PHASE, WF_FLAGS, WF_LAYOUT = range(8)
WF_COLS = 8
# per-write state of the current connection (int64[wn, 3])
WS_START, WS_END, WS_QTIME = 0, 1, 2
# per-write results (int64[W, 2])
WO_DELIV, WO_ISSUED = 0, 1
# write flags
W_TURN = 1  # a later turn: skipped (and the connection closed) if ready at or after the end
W_CLOSE = 2  # close_notify then FIN; ready at min(dep + delay, the run's end)
W_REQ = 4  # a request upload: its delivery starts the prefill wait
W_ABS = 8  # ready at the absolute time in its delay (model clock), not relative to its dep
W_RST = 16  # the application aborts: its side sends a reset (RST|ACK) and the connection ends

# connection state: per-direction (or per-side) pairs, then scalars
S_NXT, S_UNA, S_QUEUED, S_CWND, S_LINKFREE, S_LASTSEND, S_CNT, S_RCV, S_UNACKED, S_TIMER, \
    S_HEAD, S_NEXTW, S_SENDW, S_DELIVW, S_FINPEND, S_FINSENT, S_LASTQ, S_ISN, S_IPID, \
    S_FARFREE, S_TSOFF, S_TSRECENT, S_REDGE, S_PEEREDGE, S_RDP, S_READ, S_RDELAY, S_NDRAW, \
    S_OS = range(0, 58, 2)
S_STREQ, S_STPHASE, S_TRUNC, S_LASTDOWN, S_DONE, S_TSON, S_HDR, S_EMSS, S_HSRTT = range(58, 67)
# loss recovery (kernels.recovery), per direction of data: slow-start threshold, duplicate
# ACKs, recovery point (0: not in recovery), retransmission pointer, end of the bytes deemed
# lost, RFC 6298 srtt/rttvar/rto and backoff, RTO and tail-loss-probe timers, the timed
# segment's end and send time, CUBIC's W_max and epoch, the highest byte sent, the loss
# chain's state, a gap pending for the next captured packet, recovery after an RTO, a probe
# out, the last new segment's start, the SACK scoreboard's and out-of-order queue's block
# counts, an out-of-order FIN's sequence + 1, the end of the bytes captured, the packets held
# back on the path (reordered) and a pending D-SACK (a duplicate's [start, end), 0 0 none)
S_SSTH, S_DUP, S_RECOVER, S_RTXNXT, S_LOSTEND, S_SRTT, S_RTTVAR, S_RTO, S_BACKOFF, S_RTOT, \
    S_TLPT, S_RTTSEQ, S_RTTTIME, S_WMAX, S_EPOCH, S_SNDMAX, S_GE, S_GAP, S_LOSSST, S_TLPOUT, \
    S_LASTSEG, S_NB, S_NR, S_FINRCV, S_CAPMAX, S_NH, S_DSL, S_DSH = range(67, 123, 2)
# then the block lists (kernels.sack: 4 lists of MAXB [start, end) pairs), per direction the
# rows held back on the path (kernels.path: HELD each) and the run's path jitter as a quantile
# table in ns (TURN_STEPS + 1 values, set once per run): inside S, which every helper takes
# already (another array argument would be reference-counted at every call)
MAXB, HELD = 8, 4
S_SB = 123
S_HELD = S_SB + 4 * MAXB * 2
S_JIT = S_HELD + 2 * HELD
S_LEN = S_JIT + TURN_STEPS + 1

Conns = namedtuple("Conns", "session open_dep open_at rtt isn ipid w0 wn jitter os")
Conns.__doc__ = """Per connection, the transport's input: session, the connection it waits for
(-1 none), when it opens (absolute, or after that one's last response), RTT, ISNs and first IP
ids ([C, 2] by direction), its writes (first row of ``wd``, count), clock jitter and each
end's stack (``stacks.OS_*``, [C, 2]: client, server)."""
Link = namedtuple("Link", "dur_end mss ns_byte_c ns_byte_s capture_side key stack_hdr loss burst "
                         "before_tap reorder duplicate jitter impaired",
                  defaults=(0.0, 1.0, 0.0, 0.0, 0.0, 0, 0))
Link.__doc__ = """The path, per class: the run's end (ns), MSS, ns per byte on the client's and
the server's link, the end the capture is on (0 client, 1 server), the key of the hosts'
draws and whether header lengths follow the stacks (1) or are the fixed 66-byte SYNs and
54-byte segments of an encoder that writes no timestamps (0); its impairments
(``config.impair``): loss probability per packet, mean loss burst, share of losses before the
tap, the probabilities that a packet is held back (reordered) or duplicated, 1 if packets
draw a delay jitter (``Hosts.jitter``), and 1 if any of these is on (0: a clean path, which
never runs ``kernels.recovery`` or ``kernels.path``). Scalars only: it goes to every helper
call (an array in it would be reference-counted at each)."""
Hosts = namedtuple("Hosts", "turn app_read jitter")
Hosts.__doc__ = """The hosts' delays: their kernels' turnaround (float64[2, TURN_STEPS + 1],
client and server: quantile tables, ``kernels.tcpseg.turnaround``), the application's read
delay (float64[DIST_LEN], a packed distribution); and the path's delay jitter between them
(float64[TURN_STEPS + 1], a quantile table as ``turn``'s; used where ``Link.jitter``)."""
