"""Upper bounds a chain plans on (``chain``, ``pool``): how long a transfer or a connection's
handshake can take, so a call never starts before what it waits for has arrived."""
import numpy as np

from .chat import D_CLIENT_FIN, D_CLIENT_HELLO, D_REQUEST, D_SERVER_FLIGHT
from .jit import inline
from .tcp import ATO_NS, IW_SEGMENTS

SLACK_NS = 2_000_000  # on top of every bound: processing delays, serialisation rounding


@inline
def slow_start_rounds(nbytes, mss, rwnd):
    """Round trips to send ``nbytes`` from the initial window (doubling each round, capped by
    the receive window)."""
    segs = (nbytes + mss - 1) // mss
    cw = IW_SEGMENTS
    cap = max(1, rwnd // mss)
    rounds = 0
    while segs > 0:
        segs -= cw
        cw = min(2 * cw, cap)
        rounds += 1
    return rounds


@inline
def xfer_bound(nbytes, rtt, mss, ns_per_byte, rwnd):
    """Upper bound (ns) on sending ``nbytes`` from an idle connection: slow-start rounds from
    the initial window (doubling, capped by the receive window), serialisation, two
    delayed-ACK timers."""
    rounds = slow_start_rounds(nbytes, mss, rwnd)
    return rounds * rtt + np.int64(nbytes * ns_per_byte * 1.25) + 2 * ATO_NS + SLACK_NS


@inline
def handshake_bound(rtt):
    """From opening a connection to the request's first byte leaving: SYN, the TLS flights."""
    return 2 * rtt + D_CLIENT_HELLO + D_SERVER_FLIGHT + D_CLIENT_FIN + D_REQUEST + SLACK_NS
