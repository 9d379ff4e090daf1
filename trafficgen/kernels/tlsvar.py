"""Per connection: which TLS variant (endpoint x client profile) it is, and what that does to
its writes: the ClientHello and server flight sizes of the variant, template layouts into the
engine's combined table, and the HTTP framing of the negotiated protocol (HTTP/2 or 1.1).

The models size their writes as HTTP/2 over TLS (a DATA frame header in every SSE event, the
request's HEADERS in its overhead). Here, per connection, HTTP/2 adds what sits around them:
the client's preface (magic, SETTINGS, WINDOW_UPDATE, SETTINGS ack) before its first request,
the server's SETTINGS, WINDOW_UPDATE and ack before its first data, a HEADERS frame before each
response and a DATA frame header around each non-streamed body; HTTP/1.1 instead has the
request's header block uncompressed, a status line and headers before each response, and a
chunk header per SSE event in place of the DATA frame header. Sizes are plaintext bytes; the
write's TLS records grow with them.
"""

from .chat import L_CLIENT_HELLO, L_SERVER_FLIGHT, TLS_MAX_PLAIN, TLS_OVERHEAD, tls_wire
from .codes import DIR_DOWN, DIR_UP, PH_HANDSHAKE, PH_STREAM, PH_TEARDOWN, PH_THINKING
from .jit import inline, kernel
from .rng import derive, uniform
from .tcp import W_REQ, WF_BYTES, WF_DIR, WF_FLAGS, WF_LAYOUT, WF_PHASE, WF_REQ

H2_CLIENT_PREFACE = 24 + (9 + 24) + 13 + 9  # magic, SETTINGS (4), WINDOW_UPDATE, SETTINGS ack
H2_SERVER_PREFACE = (9 + 18) + 13 + 9  # SETTINGS (3), WINDOW_UPDATE, SETTINGS ack
H2_RESPONSE_HEADERS = 9 + 120  # HEADERS: :status, content-type, date, request ids (HPACK, est)
H2_DATA = 9  # a DATA frame header
H1_REQUEST_EXTRA = 100  # request line and headers uncompressed vs. HPACK (est)
H1_RESPONSE_HEAD = 250  # "HTTP/1.1 200 OK" and headers, chunked transfer-encoding (est)
LAYOUTS = 3  # per variant: ClientHello, server flight, client CCS + Finished


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


@kernel
def assign(wd, c_w0, c_wn, c_client, c_endpoint, key, cum_w, var_hello, var_flight, var_h2,
           framing, base):
    """Give each connection ``c`` (writes ``wd[c_w0[c]:c_w0[c] + c_wn[c]]``) its variant:
    endpoint ``c_endpoint[c]`` x the profile its client draws (uniform of derive(key, client)
    against ``cum_w``, the profiles' cumulative weights). Template layouts 1..3 become
    ``base + 3 v + layout``; ``framing``: apply the HTTP framing (0 for WebSocket flows)."""
    n_prof = cum_w.shape[0]
    for c in range(c_w0.shape[0]):
        u = uniform(derive(key, c_client[c]), 0)
        p = 0
        while p + 1 < n_prof and u >= cum_w[p]:
            p += 1
        v = c_endpoint[c] * n_prof + p
        h2 = var_h2[v] != 0
        first_up = first_down = True
        last_req = -1
        for w in range(c_w0[c], c_w0[c] + c_wn[c]):
            lay = wd[w, WF_LAYOUT]
            if lay > 0:
                if lay == L_CLIENT_HELLO:
                    wd[w, WF_BYTES] = var_hello[v]
                elif lay == L_SERVER_FLIGHT:
                    wd[w, WF_BYTES] = var_flight[v]
                wd[w, WF_LAYOUT] = base + LAYOUTS * v + lay
                continue
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
K_REQUEST, K_FIRST_EVENT, K_EVENT, K_DONE, K_KEEPALIVE, K_FIRST_KEEPALIVE = range(1, 7)
CHUNK_FRAMING = 6 + 2 + 2  # hex size, CRLF, ..., CRLF


@kernel
def assign_plain(wd, c_w0, c_wn, kind_len, base):
    """Plaintext HTTP/1.1 connections (no handshake writes): each write's message kind as its
    layout (``base + kind``) and its plaintext size: a request's bytes less their TLS records
    plus the uncompressed header block; an SSE event's JSON with a chunk header in place of
    the DATA frame header, the first of a response after the status line and headers; fixed
    messages ([DONE], keep-alive comments) exactly their template; no close_notify."""
    head = kind_len[K_FIRST_KEEPALIVE] - kind_len[K_KEEPALIVE]  # the response's status + headers
    for c in range(c_w0.shape[0]):
        last_req = -1
        w_end = c_w0[c] + c_wn[c]
        for w in range(c_w0[c], w_end):
            ph, req = wd[w, WF_PHASE], wd[w, WF_REQ]
            if ph == PH_TEARDOWN:
                wd[w, WF_BYTES] = 0
                continue
            plain = _plain(wd[w, WF_BYTES])
            if wd[w, WF_DIR] == DIR_UP:
                kind, size = K_REQUEST, plain + H1_REQUEST_EXTRA
            else:
                first = req != last_req
                last_req = req
                last = w + 1 >= w_end or wd[w + 1, WF_REQ] != req or wd[w + 1, WF_DIR] != DIR_DOWN
                if ph == PH_THINKING:
                    kind = K_FIRST_KEEPALIVE if first else K_KEEPALIVE
                    size = 0
                elif last and not first:
                    kind, size = K_DONE, 0
                else:
                    kind = K_FIRST_EVENT if first else K_EVENT
                    size = plain - H2_DATA + CHUNK_FRAMING + (head if first else 0)
            wd[w, WF_BYTES] = max(size, kind_len[kind])
            wd[w, WF_LAYOUT] = base + kind
