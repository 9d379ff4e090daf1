"""Per connection: which TLS variant (endpoint x client profile) it is, and what that does to
its writes: the ClientHello and server flight sizes of the variant (full, or resumed with a PSK
when it repeats an earlier connection of its session to the same endpoint within a ticket's
lifetime), template layouts into the engine's combined table, the hosts' delays drawn for its
handshake writes and requests, and the HTTP framing of the negotiated protocol (HTTP/2 or 1.1).

The models size their writes as HTTP/2 over TLS (a DATA frame header in every SSE event, the
request's HEADERS in its overhead). Here, per connection, HTTP/2 adds what sits around them:
the client's preface (magic, SETTINGS, WINDOW_UPDATE, SETTINGS ack) before its first request,
the server's SETTINGS, WINDOW_UPDATE and ack before its first data, a HEADERS frame before each
response and a DATA frame header around each non-streamed body; HTTP/1.1 instead has the
request's header block uncompressed, a status line and headers before each response, and a
chunk header per SSE event in place of the DATA frame header. Sizes are plaintext bytes; the
write's TLS records grow with them.
"""

from collections import namedtuple

import numpy as np

from .chat import L_CLIENT_FINISHED, L_CLIENT_HELLO, L_SERVER_FLIGHT, TLS_MAX_PLAIN, TLS_OVERHEAD, tls_wire
from .codes import DIR_DOWN, DIR_UP, PH_HANDSHAKE, PH_STREAM, PH_TEARDOWN, PH_THINKING
from .failures import W_CUT, W_ERR429, W_ERR503
from .jit import helper, inline, kernel
from .rng import derive, uniform
from .sampling import sample
from .tcp import W_ABS, W_REQ, WF_BYTES, WF_DELAY, WF_DEP, WF_DIR, WF_FLAGS, WF_LAYOUT, WF_PHASE, WF_REQ

H2_CLIENT_PREFACE = 24 + (9 + 24) + 13 + 9  # magic, SETTINGS (4), WINDOW_UPDATE, SETTINGS ack
H2_SERVER_PREFACE = (9 + 18) + 13 + 9  # SETTINGS (3), WINDOW_UPDATE, SETTINGS ack
H2_RESPONSE_HEADERS = 9 + 120  # HEADERS: :status, content-type, date, request ids (HPACK, est)
H2_DATA = 9  # a DATA frame header
H1_REQUEST_EXTRA = 100  # request line and headers uncompressed vs. HPACK (est)
H1_RESPONSE_HEAD = 250  # "HTTP/1.1 200 OK" and headers, chunked transfer-encoding (est)
# per variant: ClientHello, server flight, client CCS + Finished; a resumed connection's
# ClientHello (with pre_shared_key) and abbreviated server flight (wire.tls.Templates)
LAYOUTS = 5
L_PSK_HELLO, L_RESUMED_FLIGHT = 4, 5
# per variant (int64[V, VA_COLS]): wire bytes of the ClientHello, the server's flight, the
# resumed ClientHello and flight; HTTP/2; a hybrid (ML-KEM) key share; the profile resumes
VA_HELLO, VA_FLIGHT, VA_PSK_HELLO, VA_RESUMED_FLIGHT, VA_H2, VA_HYBRID, VA_RESUMES = range(7)
VA_COLS = 7
# host delays (float64[DL_COUNT, DIST_LEN], packed distributions, ns): the client's TLS setup
# (connection up -> ClientHello), its Finished (flight received -> Finished), its first request
# (Finished -> request); the server's X25519 key exchange, ML-KEM-768 encapsulation (hybrid
# shares), CertificateVerify signature (full handshakes only), ticket (client Finished ->
# NewSessionTicket) and request parsing (request received -> its first answer's clock starts)
DL_HELLO, DL_FINISHED, DL_REQUEST, DL_KEX, DL_MLKEM, DL_SIGN, DL_TICKET, DL_PARSE = range(8)
DL_COUNT = 8
D_PARSE = 64  # draw index of the parse delay of the request at local write w: D_PARSE + w

TlsConns = namedtuple("TlsConns", "w0 wn client endpoint seed session open_dep open_at prior")
TlsConns.__doc__ = """Per connection, what ``assign`` reads: its writes (first row, count), its
client (which profile it runs), endpoint, a stable seed (its delay draws: the same in any
window), session (``-1``: resumption off), the connection it opens after (-1: ``open_at`` is
absolute) and when (ns; after that one, or absolute), and when its client's latest earlier
session of the class started (ns, the frame of ``open_at``; ``NO_PRIOR``: none within a
ticket's lifetime): that session's connection left the client a ticket."""
NO_PRIOR = -(1 << 62)
TlsHosts = namedtuple("TlsHosts", "key delays resumption lifetime")
TlsHosts.__doc__ = """The hosts' side of a class's TLS: the key of the per-connection draws,
the host delays (``DL_*`` rows), the share of repeat connections that resume and a ticket's
lifetime (ns)."""


@inline
def _plain(wire):
    """Plaintext bytes of a write of ``wire`` bytes of TLS records."""
    return wire - TLS_OVERHEAD * ((wire + TLS_MAX_PLAIN + TLS_OVERHEAD - 1) // (TLS_MAX_PLAIN + TLS_OVERHEAD))


@inline
def _grow(wd, w, delta):
    wd[w, WF_BYTES] = tls_wire(max(_plain(wd[w, WF_BYTES]) + delta, 1))


@inline
def _chunk_header(n):
    """HTTP/1.1 chunk framing of an ``n``-byte chunk: hex length, CRLF, CRLF."""
    digits = 1
    while n >= 16:
        n >>= 4
        digits += 1
    return digits + 4


@inline
def delay(delays, row, k, i):
    """Host delay ``row`` (``DL_*``) of a connection: draw ``i`` of its key ``k``, 1 ns at least."""
    return max(np.int64(sample(delays[row], uniform(k, i))), np.int64(1))


@helper
def _repeat(cc, c, hosts):
    """Whether connection ``c`` repeats an earlier one of its session (the connections just
    before it) to the same endpoint within a ticket's lifetime: the time between their opening
    is at least the sum of the relative opening delays between them (a lower bound)."""
    session, endpoint, open_dep, open_at = cc.session, cc.endpoint, cc.open_dep, cc.open_at
    if session[c] < 0:
        return False
    b = c - 1
    while b >= 0 and session[b] == session[c]:
        if endpoint[b] == endpoint[c]:
            x, t = c, np.int64(0)
            while x != b and open_dep[x] >= 0:
                t += open_at[x]
                x = open_dep[x]
            if x != b:  # reached an absolute opening time: compare it with b's
                if open_dep[b] >= 0:
                    return True  # b's own time is relative: taken as within the lifetime
                t += open_at[x] - open_at[b]
            return t < hosts.lifetime
        b -= 1
    return False


@inline
def _prior(cc, c, hosts):
    """Whether connection ``c``, opening at an absolute time, holds a ticket from its client's
    earlier session (``cc.prior``) that is still within its lifetime."""
    return cc.open_dep[c] < 0 and cc.prior[c] != NO_PRIOR and cc.open_at[c] - cc.prior[c] < hosts.lifetime


@kernel
def assign(wd, cc, key, cum_w, var, framing, base, hosts):
    """Give each connection ``c`` of ``cc`` (``TlsConns``; writes ``wd[w0[c]:w0[c] + wn[c]]``)
    its variant: endpoint ``endpoint[c]`` x the profile its client draws (uniform of
    derive(key, client) against ``cum_w``, the profiles' cumulative weights); ``var``: the
    variants' ``VA_*`` columns. Template layouts 1..3 become ``base + LAYOUTS v + layout``
    (4 and 5 for a resumed connection: a repeat within the lifetime, of its session's or of its
    client's earlier session (``cc.prior``), of a profile that resumes, with the share
    ``hosts.resumption``). The handshake writes get their host delays drawn per
    connection from derive(hosts.key, seed[c]) (draws ``DL_*`` by row, 16 resumption,
    ``D_PARSE + w`` the parse delay of the request at local write w, added to the server's
    writes that wait on it). ``framing``: apply the HTTP framing (0 for WebSocket flows)."""
    n_prof = cum_w.shape[0]
    c_w0, c_wn, c_client, c_endpoint, c_seed = cc.w0, cc.wn, cc.client, cc.endpoint, cc.seed
    delays = hosts.delays
    for c in range(c_w0.shape[0]):
        u = uniform(derive(key, c_client[c]), 0)
        p = 0
        while p + 1 < n_prof and u >= cum_w[p]:
            p += 1
        v = c_endpoint[c] * n_prof + p
        h2 = var[v, VA_H2] != 0
        k = derive(hosts.key, c_seed[c])
        resumed = (var[v, VA_RESUMES] != 0 and uniform(k, 16) < hosts.resumption
                   and (_repeat(cc, c, hosts) or _prior(cc, c, hosts)))
        first_up = first_down = True
        last_req = -1
        w0 = c_w0[c]
        fin, req_done = -1, False
        for w in range(w0, w0 + c_wn[c]):
            lay = wd[w, WF_LAYOUT]
            dep = wd[w, WF_DEP]
            if lay > 0:
                if lay == L_CLIENT_HELLO:
                    wd[w, WF_BYTES] = var[v, VA_PSK_HELLO] if resumed else var[v, VA_HELLO]
                    wd[w, WF_DELAY] = delay(delays, DL_HELLO, k, DL_HELLO)
                    if resumed:
                        lay = L_PSK_HELLO
                elif lay == L_SERVER_FLIGHT:
                    wd[w, WF_BYTES] = var[v, VA_RESUMED_FLIGHT] if resumed else var[v, VA_FLIGHT]
                    d = delay(delays, DL_KEX, k, DL_KEX)
                    if var[v, VA_HYBRID] != 0:
                        d += delay(delays, DL_MLKEM, k, DL_MLKEM)
                    if resumed:
                        lay = L_RESUMED_FLIGHT
                    else:  # no certificate on a resumed connection: nothing to sign
                        d += delay(delays, DL_SIGN, k, DL_SIGN)
                    wd[w, WF_DELAY] = d
                elif lay == L_CLIENT_FINISHED:
                    wd[w, WF_DELAY] = delay(delays, DL_FINISHED, k, DL_FINISHED)
                    fin = w - w0
                wd[w, WF_LAYOUT] = base + LAYOUTS * v + lay
                continue
            if fin >= 0 and dep == fin and wd[w, WF_FLAGS] & W_ABS == 0:
                if wd[w, WF_DIR] == DIR_DOWN and wd[w, WF_PHASE] == PH_HANDSHAKE:
                    wd[w, WF_DELAY] = delay(delays, DL_TICKET, k, DL_TICKET)
                    if resumed:  # one new ticket after a resumption (OpenSSL), two after a full one
                        wd[w, WF_BYTES] = tls_wire(max(_plain(wd[w, WF_BYTES]) // 2, 1))
                elif wd[w, WF_DIR] == DIR_UP and not req_done:
                    wd[w, WF_DELAY] = delay(delays, DL_REQUEST, k, DL_REQUEST)
                    req_done = True
            if (wd[w, WF_DIR] == DIR_DOWN and dep >= 0 and wd[w, WF_FLAGS] & W_ABS == 0
                    and wd[w0 + dep, WF_DIR] == DIR_UP and wd[w0 + dep, WF_FLAGS] & W_REQ):
                wd[w, WF_DELAY] += delay(delays, DL_PARSE, k, D_PARSE + dep)
            ph, req = wd[w, WF_PHASE], wd[w, WF_REQ]
            if framing == 0 or ph == PH_TEARDOWN:
                continue
            if wd[w, WF_DIR] == DIR_UP:
                if wd[w, WF_FLAGS] & W_REQ:
                    delta = H1_REQUEST_EXTRA
                    if h2:
                        delta = H2_CLIENT_PREFACE if first_up else 0
                    first_up = False
                    _grow(wd, w, delta)
                continue
            if wd[w, WF_DIR] != DIR_DOWN:
                continue
            delta = 0
            if h2 and first_down:  # the server's SETTINGS go out with its first records
                delta += H2_SERVER_PREFACE
                first_down = False
            if ph != PH_HANDSHAKE and req >= 0:
                streamed = ph == PH_STREAM or ph == PH_THINKING
                if req != last_req:
                    delta += H2_RESPONSE_HEADERS if h2 else H1_RESPONSE_HEAD
                    last_req = req
                if h2 and not streamed:
                    delta += H2_DATA
                elif not h2 and streamed:
                    plain = _plain(wd[w, WF_BYTES]) - H2_DATA
                    delta += _chunk_header(plain) - H2_DATA
            if delta != 0:
                _grow(wd, w, delta)


# plaintext HTTP/1.1 message kinds (trafficgen/plaintext.py: K_*)
K_REQUEST, K_FIRST_EVENT, K_EVENT, K_DONE, K_KEEPALIVE, K_FIRST_KEEPALIVE, K_ERROR429, K_ERROR503 = range(1, 9)
CHUNK_FRAMING = 6 + 2 + 2  # hex size, CRLF, ..., CRLF


@kernel
def assign_plain(wd, cc, kind_len, base, hosts):
    """Plaintext HTTP/1.1 connections (no handshake writes): each write's message kind as its
    layout (``base + kind``) and its plaintext size: a request's bytes less their TLS records
    plus the uncompressed header block; an SSE event's JSON with a chunk header in place of
    the DATA frame header, the first of a response after the status line and headers; fixed
    messages ([DONE], keep-alive comments, 429 and 503 answers) exactly their template; no
    close_notify. Host
    delays as ``assign``'s: the first request ``DL_REQUEST`` after the connection is up, the
    server's parse delay before its answers."""
    head = kind_len[K_FIRST_KEEPALIVE] - kind_len[K_KEEPALIVE]  # the response's status + headers
    c_w0, c_wn, c_seed, delays = cc.w0, cc.wn, cc.seed, hosts.delays
    for c in range(c_w0.shape[0]):
        last_req = -1
        w0 = c_w0[c]
        w_end = w0 + c_wn[c]
        k = derive(hosts.key, c_seed[c])
        for w in range(w0, w_end):
            ph, req, dep = wd[w, WF_PHASE], wd[w, WF_REQ], wd[w, WF_DEP]
            if wd[w, WF_FLAGS] & W_ABS == 0:
                if dep < 0 and wd[w, WF_DIR] == DIR_UP:
                    wd[w, WF_DELAY] = delay(delays, DL_REQUEST, k, DL_REQUEST)
                elif (wd[w, WF_DIR] == DIR_DOWN and dep >= 0 and wd[w0 + dep, WF_DIR] == DIR_UP
                      and wd[w0 + dep, WF_FLAGS] & W_REQ):
                    wd[w, WF_DELAY] += delay(delays, DL_PARSE, k, D_PARSE + dep)
            if ph == PH_TEARDOWN:
                wd[w, WF_BYTES] = 0
                continue
            plain = _plain(wd[w, WF_BYTES])
            flags = wd[w, WF_FLAGS]
            if wd[w, WF_DIR] == DIR_UP:
                kind, size = K_REQUEST, plain + H1_REQUEST_EXTRA
            elif flags & (W_ERR429 | W_ERR503):  # an error answer: its whole template
                kind, size = (K_ERROR503 if flags & W_ERR503 else K_ERROR429), 0
            else:
                first = req != last_req
                last_req = req
                last = w + 1 >= w_end or wd[w + 1, WF_REQ] != req or wd[w + 1, WF_DIR] != DIR_DOWN
                if ph == PH_THINKING:
                    kind = K_FIRST_KEEPALIVE if first else K_KEEPALIVE
                    size = 0
                elif last and not first and not flags & W_CUT:  # (a cut answer has no [DONE])
                    kind, size = K_DONE, 0
                else:
                    kind = K_FIRST_EVENT if first else K_EVENT
                    size = plain - H2_DATA + CHUNK_FRAMING + (head if first else 0)
            wd[w, WF_BYTES] = max(size, kind_len[kind])
            wd[w, WF_LAYOUT] = base + kind
