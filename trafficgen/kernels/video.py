"""WebSocket sessions of the media model: the TLS + WebSocket setup and close every realtime
connection shares, and the video sessions' writes.

A realtime connection: ClientHello, the server's flight, the client's Finished, session
tickets, the HTTP/1.1 Upgrade request and ``101 Switching Protocols``, ``session.created``,
the client's ``session.update`` and the server's ``session.updated``; at the end a WebSocket
close frame each way, then close_notify and FIN (``kernels.tcp`` W_CLOSE).

A video session sends one sampled frame (a JPEG, base64 in a JSON event) every 1 / ``fps``
(plus up to 5% capture jitter) and now and then (``reply_every``) the model answers the frame
just sent with text deltas, one token each at the class's inter-token gaps. Request rows are
segments: the frames since the previous answer and the answer they prompted (``images`` the
frames, prompt tokens ``tokens_per_frame`` each); frames after the last answer make a last
request without one. Draws per session key: 0 client, 1 server, 2 length, 4 first frame;
frame i derive(session, 1_000_000) (2i bytes, 2i+1 jitter); reply j derive(session,
2_000_000) (3j gap, 3j+1 tokens, 3j+2 latency); its token gaps derive(session, 3_000_000 + j).
"""
from collections import namedtuple

import numpy as np

from .chat import (
    CLOSE_NOTIFY_WIRE,
    D_CLIENT_FIN,
    D_CLIENT_HELLO,
    D_REQUEST,
    D_SERVER_FLIGHT,
    D_TICKET,
    FINISHED_WIRE,
    L_APPDATA,
    L_CLIENT_FINISHED,
    L_CLIENT_HELLO,
    L_SERVER_FLIGHT,
    put_write,
    tls_wire,
)
from .codes import DIR_DOWN, DIR_UP, PH_HANDSHAKE, PH_REQUEST, PH_STREAM, PH_TEARDOWN
from .jit import inline, kernel
from .media import RESPONSE_DONE, RESPONSE_START, b64, ws_client, ws_server
from .rng import derive, uniform
from .sampling import sample
from .tcp import W_ABS, W_CLOSE, W_REQ, W_TURN

UPGRADE_REQ = 520  # GET /v1/realtime?model=... with Host, Upgrade, Sec-WebSocket-Key, auth (est)
UPGRADE_RESP = 230  # HTTP/1.1 101 Switching Protocols with Sec-WebSocket-Accept (est)
SESSION_CREATED = 1400  # session.created: the session's whole configuration (est)
SESSION_UPDATE = 700  # session.update: voice, formats, turn detection, instructions (est)
FRAME_JSON = 100  # the JSON around a frame's base64 (realtimeInput mediaChunks / input_image)
TEXT_DELTA_JSON = 170  # response.text.delta with its ids, around the text
SETUP_WRITES = 8  # hello, flight, finished, upgrade, 101, created, update, updated (+ ticket)
CLOSE_WRITES = 3
MAX_FRAMES = 1_000_000

VideoParams = namedtuple("VideoParams", "period frame reply tokens lat itl bytes_per_token "
                                        "tokens_per_frame")
VideoParams.__doc__ = """A video stream: ns between frames, packed distributions of a frame's
JPEG bytes, the time between replies, a reply's tokens, the model's latency and the inter-token
gap; bytes per token of a text delta, prompt tokens per frame."""
VideoCounts = namedtuple("VideoCounts", "writes reqs tend")
VideoCounts.__doc__ = """``segments``' count per session: writes, requests, when it may close."""
Segments = namedtuple("Segments", "session turn conn prompt output images")
Segments.__doc__ = """Request rows of video segments (frames up to a reply): session, segment,
connection, prompt tokens, output tokens, frames."""


@kernel
def ws_setup(c_w0, hello_wire, flight_wire, ticket_wire, wd, c_next):
    """Each connection's handshake and upgrade writes from ``c_w0[c]``; ``c_next[c]`` gets the
    next free row."""
    for c in range(c_w0.shape[0]):
        w = c_w0[c]
        w = put_write(w, DIR_UP, hello_wire, -1, D_CLIENT_HELLO, -1, PH_HANDSHAKE, 0, L_CLIENT_HELLO, wd)
        w = put_write(w, DIR_DOWN, flight_wire, 0, D_SERVER_FLIGHT, -1, PH_HANDSHAKE, 0,
                   L_SERVER_FLIGHT, wd)
        w = put_write(w, DIR_UP, FINISHED_WIRE, 1, D_CLIENT_FIN, -1, PH_HANDSHAKE, 0,
                   L_CLIENT_FINISHED, wd)
        if ticket_wire > 0:
            w = put_write(w, DIR_DOWN, ticket_wire, 2, D_TICKET, -1, PH_HANDSHAKE, 0, L_APPDATA, wd)
        g = w - c_w0[c]
        w = put_write(w, DIR_UP, tls_wire(UPGRADE_REQ), 2, D_REQUEST, -1, PH_HANDSHAKE, 0, L_APPDATA, wd)
        w = put_write(w, DIR_DOWN, tls_wire(UPGRADE_RESP), g, 2_000_000, -1, PH_HANDSHAKE, 0,
                   L_APPDATA, wd)
        w = put_write(w, DIR_DOWN, tls_wire(ws_server(SESSION_CREATED)), g + 1, 100_000, -1,
                   PH_HANDSHAKE, 0, L_APPDATA, wd)
        w = put_write(w, DIR_UP, tls_wire(ws_client(SESSION_UPDATE)), g + 2, 5_000_000, -1,
                   PH_HANDSHAKE, 0, L_APPDATA, wd)
        # session.updated: the whole configuration again, as large as session.created
        w = put_write(w, DIR_DOWN, tls_wire(ws_server(SESSION_CREATED)), g + 3, 1_000_000, -1,
                   PH_HANDSHAKE, 0, L_APPDATA, wd)
        c_next[c] = w


@kernel
def ws_close(c_w0, c_next, c_tend, wd, c_wn):
    """Each connection's close at ``c_tend[c]``: a WebSocket close frame up (status 1000), its
    echo, close_notify and FIN. ``c_wn[c]`` gets the connection's write count."""
    for c in range(c_w0.shape[0]):
        w = c_next[c]
        g = w - c_w0[c]
        w = put_write(w, DIR_UP, tls_wire(ws_client(2)), -1, c_tend[c], -1, PH_TEARDOWN, W_ABS,
                   L_APPDATA, wd)
        w = put_write(w, DIR_DOWN, tls_wire(ws_server(2)), g, 1_000_000, -1, PH_TEARDOWN, 0,
                   L_APPDATA, wd)
        w = put_write(w, DIR_UP, CLOSE_NOTIFY_WIRE, g + 1, 1_000_000, -1, PH_TEARDOWN, W_CLOSE,
                   L_APPDATA, wd)
        c_wn[c] = w - c_w0[c]


@kernel
def segments(store, s_key, st, vp, conn0, req0, c_next, counts, wd, seg_rows):
    """Count (``store`` 0: writes, requests, end time per session into ``counts``,
    ``VideoCounts``) or fill (1: writes from ``c_next[conn0 + s]``, request rows
    (``seg_rows``, ``Segments``) from ``req0[s]``) every video session (``st``:
    ``media.MediaSessions``; ``vp``: ``VideoParams``)."""
    s_first, s_end, s_rtt = st.first, st.end, st.rtt
    period, frame_p, reply_p, tokens_p, lat_p, itl_p = vp.period, vp.frame, vp.reply, vp.tokens, vp.lat, vp.itl
    bytes_per_token, tokens_per_frame = vp.bytes_per_token, vp.tokens_per_frame
    for s in range(s_key.shape[0]):
        k = s_key[s]
        k_fr, k_re = derive(k, 1_000_000), derive(k, 2_000_000)
        owd = s_rtt[s] // 2
        c = conn0 + s
        w = c_next[c] if store else 0
        writes = seg = frames = 0
        next_reply = s_first[s] + np.int64(sample(reply_p, uniform(k_re, 0)))
        t_end = s_first[s]
        i = 0
        while i < MAX_FRAMES:
            tf = s_first[s] + np.int64((i + 0.05 * uniform(k_fr, 2 * i + 1)) * period)
            if tf >= s_end[s]:
                break
            prompts = tf >= next_reply
            if store:
                jpeg = max(1, int(round(sample(frame_p, uniform(k_fr, 2 * i)))))
                fl = W_ABS | (W_TURN | W_REQ if frames == 0 else 0)
                w = put_write(w, DIR_UP, tls_wire(ws_client(FRAME_JSON + b64(jpeg))), -1, tf,
                           req0[s] + seg, PH_REQUEST, fl, L_APPDATA, wd)
            writes += 1
            frames += 1
            t_end = max(t_end, tf)
            if prompts:
                ntok = max(1, int(round(sample(tokens_p, uniform(k_re, 3 * seg + 1)))))
                t = tf + owd + np.int64(sample(lat_p, uniform(k_re, 3 * seg + 2)))
                k_t = derive(k, 3_000_000 + seg)
                if store:
                    r = req0[s] + seg
                    w = put_write(w, DIR_DOWN, tls_wire(ws_server(RESPONSE_START)), -1, t, r,
                               PH_STREAM, W_ABS, L_APPDATA, wd)
                for g in range(ntok):
                    if g:
                        t += np.int64(sample(itl_p, uniform(k_t, g)))
                    if store:
                        text = int(round(bytes_per_token))
                        w = put_write(w, DIR_DOWN, tls_wire(ws_server(TEXT_DELTA_JSON + text)), -1,
                                   t, r, PH_STREAM, W_ABS, L_APPDATA, wd)
                t += 1_000_000
                if store:
                    w = put_write(w, DIR_DOWN, tls_wire(ws_server(RESPONSE_DONE)), -1, t, r,
                               PH_STREAM, W_ABS, L_APPDATA, wd)
                    _request(seg_rows, r, s, seg, c, frames * tokens_per_frame, ntok, frames)
                writes += 2 + ntok
                t_end = max(t_end, t + owd)
                next_reply = max(next_reply + np.int64(sample(reply_p, uniform(k_re, 3 * seg + 3))),
                                 t + owd)
                seg += 1
                frames = 0
            i += 1
        if frames > 0:  # frames after the last answer: a request without one
            if store:
                _request(seg_rows, req0[s] + seg, s, seg, c, frames * tokens_per_frame, 0, frames)
            seg += 1
        if store:
            c_next[c] = w
        else:
            counts.writes[s], counts.reqs[s], counts.tend[s] = writes, seg, t_end + 100_000_000


@inline
def _request(rows, r, s, seg, c, prompt, ntok, frames):
    rows.session[r], rows.turn[r], rows.conn[r] = s, seg, c
    rows.prompt[r], rows.output[r], rows.images[r] = prompt, ntok, frames
