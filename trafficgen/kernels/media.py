"""Realtime voice sessions: a conversation of talk spurts -> WebSocket writes or RTP packets.

A session alternates exchanges: the user speaks for ``user_spurt``, the model's audio starts
``latency`` after the end of that speech (at the server), lasts ``model_spurt`` of audio, and
the user speaks again ``pause`` after hearing it all, or (with probability ``barge_in``) cuts
into it: the server stops sending once its voice detector hears the user (``VAD_NS`` after the
speech reaches it). Exchanges start while the session's length has not run out.

Transports: ``websocket`` (the OpenAI Realtime API's events inside TLS over one TCP connection:
``input_audio_buffer.append`` every ``chunk`` with base64 PCM16 up, ``response.audio.delta``
every ``down_chunk`` of audio down, paced ``down_speed`` x real time, each with a transcript
delta; server events around each answer) or ``rtp`` (RTP/Opus, a 20 ms frame per packet both
ways, 48 kHz RTP clock; silence as comfort noise, one frame per 400 ms under DTX).

Times: ns on the model clock (0 = capture start); the client's clock for the user's speech,
the server's for the model's sending (one way ``owd`` = rtt / 2 apart).
Draws per session key: 0 client, 1 server, 2 session length, 3 transport, 4 first pause,
5 the RTP server's frame phase, 6/7 RTP sequence and timestamp starts (per direction);
exchange j: 16+8j.. (user spurt, latency, model spurt, barge-in, where it cuts, pause);
a WebSocket connection's ISNs, IP ids and close jitter are bits of the session key itself
(models/media.py); Opus frame sizes derive(session, 3_000_000 + direction),
arrival jitter derive(session, 3_100_000 + direction).
"""
from collections import namedtuple

import numpy as np

from .chat import put_write, session_path, tls_wire
from .codes import DIR_DOWN, DIR_UP, PH_PREFILL_WAIT, PH_REQUEST, PH_SILENCE, PH_STREAM
from .jit import helper, inline, kernel
from .rng import bits, derive, uniform
from .sampling import sample
from .tcp import W_ABS, W_REQ, W_TURN
from .udp import L_RTP, RTP_PT_OPUS

FRAME_NS = 20_000_000  # Opus frame (RFC 7587: 20 ms is the WebRTC default)
RTP_TICKS = 960  # 48 kHz RTP clock x 20 ms (RFC 7587 section 4.1)
DTX_EVERY = 20  # under DTX one silence frame per 400 ms (RFC 7587 section 3.1.3, est)
VAD_NS = 200_000_000  # server voice detection: how long speech runs before it is noticed (est)
MAX_EXCHANGES = 100_000
# JSON of the events around their base64 (bytes, est from the documented event fields)
APPEND_JSON = 76  # {"event_id":"event_...","type":"input_audio_buffer.append","audio":"..."}
DELTA_JSON = 190  # response.audio.delta with event, response and item ids, indexes
TRANSCRIPT_JSON = 200  # response.audio_transcript.delta with a word or two
SPEECH_STARTED = 170  # input_audio_buffer.speech_started
COMMITTED = 620  # speech_stopped + committed + conversation.item.created
RESPONSE_START = 1100  # response.created + output_item.added + content_part.added
RESPONSE_DONE = 1800  # audio.done + audio_transcript.done + content_part/output_item/response.done

MediaSessions = namedtuple("MediaSessions", "client server rtt rtp first end")
MediaSessions.__doc__ = """Per media session (``session_draws``' output): client, server, path RTT,
transport (1 = RTP), when the user first speaks (video: sends its first frame) and until when
exchanges may start."""
Talk = namedtuple("Talk", "user model lat pause barge_in")
Talk.__doc__ = """How a voice conversation goes: packed distributions of the user's and the
model's speech spurts, the model's latency and the pause before the user speaks again, and the
probability the user speaks into an answer."""
Exchanges = namedtuple("Exchanges", "x0 nx last u0 u1 r0 sent")
Exchanges.__doc__ = """Voice exchanges: per session (``x0``, ``nx``: its first and count;
``last``: the end of its last) and per exchange the user's speech [u0, u1) (client clock), the
answer's first audio at the server ``r0`` and the ns of its audio sent."""
WsAudio = namedtuple("WsAudio", "chunk sample_rate down_chunk speed")
WsAudio.__doc__ = """Audio over a WebSocket: ns of audio per append event up, the sample rate,
ns of audio per delta down, and how much faster than real time the answer is sent."""
Rtp = namedtuple("Rtp", "opus silence_bytes dtx jitter side class_id")
Rtp.__doc__ = """RTP streams: the packed distribution of an Opus frame's bytes in speech, a
silence frame's bytes, DTX on, the far end's jitter (ns), the capture's end, the class code."""


@inline
def ws_client(n):
    """Plain bytes of a masked client WebSocket frame of ``n`` payload bytes (RFC 6455)."""
    return n + 6 + (2 if n >= 126 else 0) + (6 if n >= 65536 else 0)


@inline
def ws_server(n):
    return n + 2 + (2 if n >= 126 else 0) + (6 if n >= 65536 else 0)


@inline
def b64(n):
    return 4 * ((n + 2) // 3)


@helper
def timeline(k, t_first, s_end, owd, speed, talk, x0, ex, store):
    """Exchanges of one session from ``t_first`` until ``s_end`` (``talk``: ``Talk``): the
    user's speech [u0, u1) (client clock), the answer's first audio at the server ``r0`` and
    the ns of its audio sent (``sent``; less than drawn when barged into). Stored into ``ex``
    (``Exchanges``) at ``x0`` if ``store``. Returns (exchanges, end time: the last answer
    heard, or the last speech)."""
    user_p, model_p, lat_p, pause_p, barge_in = talk  # out of the tuples once (see frames)
    e_u0, e_u1, e_r0, e_sent = ex.u0, ex.u1, ex.r0, ex.sent
    t = t_first
    j = 0
    end = t_first
    while t < s_end and j < MAX_EXCHANGES:
        b = 16 + 8 * j
        u = max(np.int64(sample(user_p, uniform(k, b))), np.int64(FRAME_NS))
        r0 = t + u + owd + np.int64(sample(lat_p, uniform(k, b + 1)))
        m = max(np.int64(sample(model_p, uniform(k, b + 2))), np.int64(FRAME_NS))
        if uniform(k, b + 3) < barge_in:
            nxt = r0 + owd + np.int64(uniform(k, b + 4) * m)  # the user speaks into it
            sent = min(m, np.int64((nxt + owd + VAD_NS - r0) * speed))
            end = nxt
        else:
            nxt = r0 + owd + m + np.int64(sample(pause_p, uniform(k, b + 5)))
            sent = m
            end = r0 + owd + m
        if store:
            e_u0[x0 + j], e_u1[x0 + j], e_r0[x0 + j], e_sent[x0 + j] = t, t + u, r0, sent
        t = nxt
        j += 1
    return j, end


@kernel
def session_draws(s_key, s_start, paths, setup_rtts, session_p, pause_p, rtp_share, dur_end, out):
    """Per session (``out``: ``MediaSessions``): client, server, path RTT (``chat.Paths``),
    transport (1 = RTP), when the user first speaks and until when exchanges may start (the
    session's length, or the run's end ``dur_end``)."""
    s_client, s_server, s_rtt, s_rtp, s_first, s_end = out
    for s in range(s_key.shape[0]):
        k = s_key[s]
        client, server, rtt = session_path(k, paths)
        rtt = max(rtt, np.int64(2))
        s_client[s], s_server[s], s_rtt[s] = client, server, rtt
        s_rtp[s] = 1 if uniform(k, 3) < rtp_share else 0
        setup = (setup_rtts * rtt + 20_000_000) if s_rtp[s] == 0 else 0
        s_first[s] = s_start[s] + setup + np.int64(sample(pause_p, uniform(k, 4)))
        s_end[s] = min(s_start[s] + np.int64(sample(session_p, uniform(k, 2))), dur_end)


@kernel
def exchange_draws(s_key, st, speed, talk, ex, store):
    """Count (``store`` 0) or fill (1, at ``ex.x0``) every session's exchanges (``st``:
    ``MediaSessions``; ``talk``: ``Talk``; ``ex``: ``Exchanges``, its ``nx`` and ``last``
    filled); ``speed``: the answer's sending speed on WebSocket sessions."""
    s_rtt, s_rtp, s_first, s_end = st.rtt, st.rtp, st.first, st.end
    s_x0, s_nx, s_last = ex.x0, ex.nx, ex.last
    for s in range(s_key.shape[0]):
        sp = 1.0 if s_rtp[s] else speed
        n, last = timeline(s_key[s], s_first[s], s_end[s], s_rtt[s] // 2, sp, talk, s_x0[s], ex,
                           store)
        s_nx[s], s_last[s] = n, last


@inline
def _ceil(a, b):
    return (a + b - 1) // b


@kernel
def ws_count(s_x0, s_nx, e_u0, e_u1, e_sent, chunk, down_chunk, setup_writes, s_writes):
    """Writes of each WebSocket session (``setup_writes``: handshake and upgrade, and close)."""
    for s in range(s_x0.shape[0]):
        w = setup_writes
        for x in range(s_x0[s], s_x0[s] + s_nx[s]):
            w += _ceil(e_u1[x] - e_u0[x], chunk) + 4 + 2 * _ceil(e_sent[x], down_chunk)
        s_writes[s] = w


@kernel
def ws_writes(c_w0, ex, s_rtt, audio, req0, w_after_setup, wd):
    """An exchange's writes (``ex``: ``Exchanges`` of the WebSocket sessions, one connection
    each; ``audio``: ``WsAudio``), appended after each session's setup writes
    (``w_after_setup[c]`` is the next free row of connection ``c``); returns nothing, rows are
    as ``ws_count`` sized. Request ``req0[c] + j`` is exchange j. All times absolute (W_ABS)."""
    s_x0, s_nx, e_u0, e_u1, e_r0, e_sent = ex.x0, ex.nx, ex.u0, ex.u1, ex.r0, ex.sent
    chunk, sample_rate, down_chunk, speed = audio
    for c in range(c_w0.shape[0]):
        w = w_after_setup[c]
        owd = s_rtt[c] // 2
        for j in range(s_nx[c]):
            x = s_x0[c] + j
            r = req0[c] + j
            u0, u1, r0, sent = e_u0[x], e_u1[x], e_r0[x], e_sent[x]
            n_app = _ceil(u1 - u0, chunk)
            for i in range(n_app):
                t_end = min(u0 + (i + 1) * chunk, u1)
                audio = 2 * ((t_end - (u0 + i * chunk)) * sample_rate // 1_000_000_000)
                fl = W_ABS | (W_TURN if i == 0 else 0) | (W_REQ if i == n_app - 1 else 0)
                w = put_write(w, DIR_UP, tls_wire(ws_client(APPEND_JSON + b64(audio))), -1, t_end,
                           r, PH_REQUEST, fl, 0, wd)
            # the voice detector's events: outside the request (its first byte is the answer's)
            w = put_write(w, DIR_DOWN, tls_wire(ws_server(SPEECH_STARTED)), -1,
                       u0 + owd + VAD_NS, -1, PH_REQUEST, W_ABS, 0, wd)
            w = put_write(w, DIR_DOWN, tls_wire(ws_server(COMMITTED)), -1,
                       u1 + owd + (r0 - u1 - owd) // 2, -1, PH_PREFILL_WAIT, W_ABS, 0, wd)
            w = put_write(w, DIR_DOWN, tls_wire(ws_server(RESPONSE_START)), -1, r0, r, PH_STREAM,
                       W_ABS, 0, wd)
            n_d = _ceil(sent, down_chunk)
            t = r0
            for i in range(n_d):
                t = r0 + np.int64(i * down_chunk / speed)
                a_ns = min(down_chunk, sent - i * down_chunk)
                audio = 2 * (a_ns * sample_rate // 1_000_000_000)
                w = put_write(w, DIR_DOWN, tls_wire(ws_server(DELTA_JSON + b64(audio))), -1, t, r,
                           PH_STREAM, W_ABS, 0, wd)
                w = put_write(w, DIR_DOWN, tls_wire(ws_server(TRANSCRIPT_JSON)), -1, t + 1_000, r,
                           PH_STREAM, W_ABS, 0, wd)
            w = put_write(w, DIR_DOWN, tls_wire(ws_server(RESPONSE_DONE)), -1, t + 2_000_000, r,
                       PH_STREAM, W_ABS, 0, wd)
        w_after_setup[c] = w


@kernel
def rtp_rows(s_key, s_rtt, s_first, ex, rtp, flow0, req0, row0, s_rows, rows, store):
    """RTP packets of each RTP session (``ex``: their ``Exchanges``; flow ``flow0[s]``,
    requests from ``req0[s]``) from its first speech to its end, both ways: counted into
    ``s_rows`` (``store`` 0) or filled into ``rows`` (SCHED_DTYPE) at ``row0`` (``store`` 1).
    ``rtp``: ``Rtp``; the far end's packets (the capture is at ``rtp.side``) arrive ``owd``
    plus up to ``rtp.jitter`` ns late (uniform, less than a frame: they stay in order)."""
    s_x0, s_nx, s_last, e_u0, e_u1, e_r0, e_sent = ex.x0, ex.nx, ex.last, ex.u0, ex.u1, ex.r0, ex.sent
    opus_p, silence_bytes, dtx, jitter, side, class_id = rtp
    for s in range(s_key.shape[0]):
        k = s_key[s]
        owd = s_rtt[s] // 2
        n_slots = (s_last[s] - s_first[s]) // FRAME_NS + 1
        o = row0[s]
        cnt = 0
        for d in range(2):
            k_f, k_j = derive(k, 3_000_000 + d), derive(k, 3_100_000 + d)
            seq = np.int64(bits(k, 6) >> np.uint64(16 * d)) & 0xFFFF
            ts0 = np.int64(bits(k, 7) >> np.uint64(32 * d)) & 0xFFFFFFFF
            ipid = np.int64(bits(k, 8) >> np.uint64(16 * d)) & 0xFFFF
            phase = 0 if d == 0 else np.int64(uniform(k, 5) * FRAME_NS)
            x = s_x0[s]
            xend = s_x0[s] + s_nx[s]
            quiet = 1_000_000  # slots since speech (a large number: the stream starts quiet)
            first = True
            for n in range(n_slots):
                t = s_first[s] + phase + n * FRAME_NS  # the sender's clock
                speech = False
                if d == 0:
                    while x < xend and e_u1[x] <= t:
                        x += 1
                    speech = x < xend and e_u0[x] <= t
                else:
                    while x < xend and e_r0[x] + e_sent[x] <= t:
                        x += 1
                    speech = x < xend and e_r0[x] <= t
                if speech:
                    send = True
                else:
                    send = (not dtx) or quiet % DTX_EVERY == 0 or first
                if send:
                    if store:
                        i = o + cnt
                        plen = silence_bytes
                        if speech:
                            plen = max(1, int(round(sample(opus_p, uniform(k_f, n)))))
                        marker = speech and (first or (dtx and quiet > 0))
                        late = owd + np.int64(uniform(k_j, n) * jitter) if d != side else 0
                        rows[i]["ts_ns"] = t + late
                        rows[i]["flow_id"] = flow0[s]
                        rows[i]["request_id"] = req0[s] + x - s_x0[s] if speech else -1
                        rows[i]["direction"] = d
                        rows[i]["wire_len"] = 54 + plen
                        rows[i]["phase"] = (PH_REQUEST if d == DIR_UP else PH_STREAM) if speech else PH_SILENCE
                        rows[i]["class"] = class_id
                        rows[i]["tcp_flags"] = RTP_PT_OPUS | (0x80 if marker else 0)
                        rows[i]["seq"] = seq & 0xFFFF
                        rows[i]["ack"] = (ts0 + n * RTP_TICKS) & 0xFFFFFFFF
                        rows[i]["payload_len"] = plen
                        rows[i]["ipid"] = ipid & 0xFFFF
                        rows[i]["layout"] = L_RTP
                        rows[i]["segoff"] = 0
                        rows[i]["writelen"] = 0
                    seq += 1
                    ipid += 1
                    cnt += 1
                    first = False
                quiet = 0 if speech else quiet + 1
        s_rows[s] = cnt
