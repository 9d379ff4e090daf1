"""Failures of the calls themselves, for the chat-shaped classes (``kernels.chat``): what
becomes of each turn's call and what that puts on the wire.

Per turn ``k`` of a session, from the key derive(session, 3_000_000 + k): attempt ``n``'s draw
``4n`` picks whether the server answers it HTTP 429 (``rate_limited`` share) or 503
(``server_error`` share); ``4n + 1`` is the jitter of the client's backoff before the retry (0.5
s x 2^n x (1 - 0.25 u), at most 8 s, as OpenAI's and Anthropic's SDKs wait; a 429 with a
``retry_after`` waits that instead). After ``max_retries`` retries the client gives up. The
attempt the server answers may end short: a client timeout (its first byte, or the reasoning
silence before it, later than ``timeout`` after the request went), draw 100 a server reset
(``server_reset`` share; 101 the chunk it dies after), draw 102 a user's cancel (``cancel``
share; 103 the chunk the user stops after, uniform over the answer's chunks).

A cut answer: the server's writes that were under way when the client's cancel reached it (the
user saw chunk ``j``, reacts ``CANCEL_REACT_NS`` later, the cancel crosses the path: one RTT
after chunk ``j`` left the server) still go; then HTTP/2 sends RST_STREAM (CANCEL) on the
connection, which stays up for the next turn, and HTTP/1.1 resets the TCP connection (``W_RST``,
as a browser's abort does), the next turn opening a new one. A server reset is a TCP reset from
the server after chunk ``j``, whatever the protocol.
"""
from collections import namedtuple

import numpy as np

from .codes import DIR_DOWN, DIR_UP, PH_RESPONSE, PH_TEARDOWN
from .jit import helper, inline, kernel
from .rng import derive, uniform
from .tcpstate import W_RST
from .writes import put_write, token_time

# request status labels (trafficgen.labels.STATUSES)
ST_COMPLETED, ST_CANCELLED, ST_TIMEOUT, ST_RATE_LIMITED, ST_ERROR = range(5)
# write flags of the chat class's own, beside kernels.tcp's W_* (which the transport reads;
# these only the framing kernels, kernels.tlsvar): an error answer (429 or 503), a response
# cut short (its last chunk is no [DONE])
W_ERR429, W_ERR503, W_CUT = 64, 128, 256
RST_STREAM_PLAIN = 9 + 4  # HTTP/2 frame header + error code CANCEL (0x8)
ERROR_PLAIN = 160  # an error answer's JSON body (HTTP/2 adds HEADERS and a DATA header)
CANCEL_REACT_NS = 200_000_000  # from the chunk the user sees to the cancel
BACKOFF_NS, BACKOFF_MAX_NS = 500_000_000, 8_000_000_000
SALT = 3_000_000

Failures = namedtuple("Failures", "cancel timeout rate_limited server_error server_reset "
                                  "retry_after max_retries")
Failures.__doc__ = """A class's failure model (``CLASS.*`` keys): shares of answers cancelled,
of calls answered 429 and 503, of answers the server resets; the client's timeout (ns, 0:
none), a 429's retry-after (ns, 0: backoff) and the retries before the client gives up."""

Outcomes = namedtuple("Outcomes", "tries errs status cut chunks")
Outcomes.__doc__ = """Per turn (``outcome``'s output): failed attempts before the answer
(``max_retries + 1``: no answer), which of them were 503 (bit n), the answer's status, the
server time (after the request arrived) from which it sends nothing more (-1: whole), and
the chunks and keep-alives of the answer sent before that."""


@inline
def failing(f):
    return f.cancel > 0 or f.timeout > 0 or f.rate_limited > 0 or f.server_error > 0 or f.server_reset > 0


@helper
def cut_chunks(k_t, reason, out, tpc, ttft, silence, every, itl_p, stall_prob, stall_p,
               j, extra, limit):
    """Walk an answer's chunk times (server time after its request arrived): how many
    keep-alives and chunks leave before ``limit``, or, with ``j`` >= 0, before chunk ``j``'s
    time + ``extra``; and that limit."""
    n_ka = 0
    if every > 0 and reason > 0:
        n_ka = int((silence - 1) // every)
        if j < 0:
            n_ka = 0
            while n_ka < int((silence - 1) // every) and ttft + (n_ka + 1) * every < limit:
                n_ka += 1
    t_tok = ttft + silence
    done, c = reason, 0
    while done < out:
        ntok = min(tpc, out - done)
        for g in range(ntok):
            if done + g > reason:
                t_tok += token_time(k_t, done + g, itl_p, stall_prob, stall_p)
        if c == j:
            limit = t_tok + extra
        if t_tok >= limit:
            break
        done += ntok
        c += 1
    return n_ka, c, done, limit


@kernel
def backoff(k_f, n, err503, retry_after):
    """The client's wait before retry ``n + 1`` (ns)."""
    if not err503 and retry_after > 0:
        return np.int64(retry_after)
    base = min(BACKOFF_NS * (1 << n), BACKOFF_MAX_NS)
    return np.int64(base * (1.0 - 0.25 * uniform(k_f, 4 * n + 1)))


@helper
def outcome(k_s, k, f, reset_h1, rtt, ttft, reason, out, p, o, tr):
    """Turn ``k``'s fate into row ``tr`` of ``o`` (``Outcomes``); ``p``: ``ChatParams``,
    ``reset_h1``: the session's connections are HTTP/1.1 (a cancel resets them). Returns the
    writes it adds to a clean answer's (negative: fewer) and whether the connection ends."""
    o.tries[tr], o.errs[tr], o.status[tr], o.cut[tr], o.chunks[tr] = 0, 0, ST_COMPLETED, -1, 0
    if not failing(f):
        return 0, False
    k_f = derive(k_s, SALT + k)
    tries = 0
    while tries <= f.max_retries:
        u = uniform(k_f, 4 * tries)
        if u < f.rate_limited:
            pass
        elif u < f.rate_limited + f.server_error:
            o.errs[tr] |= 1 << tries
        else:
            break
        tries += 1
    o.tries[tr] = tries
    tpc, every, mean_gap = p.tokens_per_chunk, p.keepalive_every, p.mean_gap
    n_chunks = (out - reason + tpc - 1) // tpc
    n_ka = 0
    if every > 0 and reason > 0:
        n_ka = int((np.int64(reason) * mean_gap - 1) // every)
    clean = 2 + n_chunks + n_ka
    if tries > f.max_retries:  # no answer: the last error stands
        o.status[tr] = ST_ERROR if o.errs[tr] >> (tries - 1) & 1 else ST_RATE_LIMITED
        return 2 * tries - clean, False
    silence = np.int64(reason) * mean_gap
    first = ttft + (silence if every <= 0 or reason == 0 else min(silence, every))
    j, extra, limit = -1, np.int64(0), np.int64(1) << 62
    if f.timeout > 0 and rtt + first > f.timeout:
        o.status[tr], limit = ST_TIMEOUT, f.timeout
    elif uniform(k_f, 100) < f.server_reset:
        o.status[tr], extra = ST_ERROR, np.int64(1)
        j = min(int(uniform(k_f, 101) * n_chunks), n_chunks - 1)
    elif uniform(k_f, 102) < f.cancel:
        o.status[tr], extra = ST_CANCELLED, CANCEL_REACT_NS + rtt
        j = min(int(uniform(k_f, 103) * n_chunks), n_chunks - 1)
    if o.status[tr] == ST_COMPLETED:
        return 2 * tries, False
    k_t = derive(k_s, 1_000_000 + k)
    ka, c, _, lim = cut_chunks(k_t, reason, out, tpc, ttft, silence, every, p.itl, p.stall_prob,
                               p.stall, j, extra, limit)
    o.cut[tr], o.chunks[tr] = lim, c * 65536 + ka
    resets = reset_h1 or o.status[tr] == ST_ERROR
    # request + keep-alives + chunks + the cancel (RST_STREAM or RST); a reset replaces the close
    return 2 * tries + 2 + ka + c - clean - (1 if resets else 0), resets


@kernel
def h1_clients(clients, key, cum_w, h2, out):
    """Per client: 1 if its TLS profile (drawn as ``tlsvar.assign`` draws it) speaks HTTP/1.1
    to the class's one endpoint (``h2``: per profile, its variant's HTTP/2)."""
    n = cum_w.shape[0]
    for i in range(clients.shape[0]):
        u = uniform(derive(key, clients[i]), 0)
        q = 0
        while q + 1 < n and u >= cum_w[q]:
            q += 1
        out[i] = 0 if h2[q] else 1


@inline
def tls_wire(plain):
    """(``chat.tls_wire`` for writes of less than a record)"""
    return plain + 22


@helper
def error_answer(k_s, k, f, errs, n, req_local, ri, w, wd, r_status, r_output, r_reason):
    """The server's 429 or 503 to attempt ``n`` (request row ``ri``, its upload at local write
    ``req_local``); returns the next write and the client's wait before it retries."""
    err = (errs >> n) & 1
    w = put_write(w, DIR_DOWN, tls_wire(ERROR_PLAIN), req_local, 0, ri, PH_RESPONSE,
                  W_ERR503 if err else W_ERR429, 0, wd)
    r_status[ri] = ST_ERROR if err else ST_RATE_LIMITED
    r_output[ri] = r_reason[ri] = 0
    return w, backoff(derive(k_s, SALT + k), n, err, f.retry_after)


@helper
def cut_end(status, h1, done_tokens, reason, req_local, cut, ri, w, wd, r_output, r_reason):
    """The end of an answer cut short at ``cut`` (server time after its request arrived; the
    client's clock after its upload went, the same span: the answer's RTT is in it) with
    ``done_tokens`` sent: the client's RST_STREAM (HTTP/2) or TCP reset (HTTP/1.1), or the
    server's TCP reset. Its row's tokens become those sent. Returns the next write and
    whether the connection is reset."""
    visible = done_tokens - reason
    r_output[ri] = done_tokens if visible > 0 else 0
    r_reason[ri] = reason if visible > 0 else 0
    if status == ST_ERROR:
        return put_write(w, DIR_DOWN, 0, req_local, cut, ri, PH_TEARDOWN, W_RST, 0, wd), True
    if h1:
        return put_write(w, DIR_UP, 0, req_local, cut, ri, PH_TEARDOWN, W_RST, 0, wd), True
    return put_write(w, DIR_UP, tls_wire(RST_STREAM_PLAIN), req_local, cut, ri, PH_TEARDOWN, 0,
                     0, wd), False
