"""The chat flow class: sessions -> turns -> connections and their application writes.

A session is a conversation of ``n`` turns (geometric). Turn ``k`` waits ``think`` after the
previous reply; a wait longer than the keep-alive means the old connection has closed and the
turn opens a new one. Each connection carries: ClientHello, the server's flight, the client's
Finished, session tickets, then per turn the request upload and one TLS record per token chunk,
and finally close_notify + FIN. The transport kernel (``tcp.simulate``) turns this into packets.

Reasoning replies (``reasoning`` share > 0) stay silent while the hidden tokens are decoded
(``reasoning_tokens`` x the mean token gap after the first-token wait), with an SSE keep-alive
comment every ``keepalive_every`` if set, then stream the visible tokens. Multimodal requests
carry images: each one's bytes, base64-encoded (x 4/3), ride in the request upload, and its
tokens count into the prompt tokens.

Draw indices per session key: 0 client, 1 server, 2 turns, 16+8k.. turn k (think, prompt,
output, ttft, reasoning share, image count); turn k's images derive(session, 2_000_000+k)
(2i bytes, 2i+1 tokens of image i). Sessions that began before the capture (warm-up epochs) keep
only the turns whose nominal start falls inside it; the first of those opens the connection.
Connection ``j`` of a session uses key derive(session, 100+j), turn ``k``'s token gaps
derive(session, 1_000_000+k), turn ``k``'s fate (``kernels.failures``: 429s, 503s,
cancels, resets) derive(session, 3_000_000+k). Changing one draw never shifts another.
"""
import math
from collections import namedtuple

import numpy as np

from . import failures as kf
from .codes import DIR_DOWN, DIR_UP, PH_HANDSHAKE, PH_REQUEST, PH_STREAM, PH_TEARDOWN, PH_THINKING
from .jit import helper, inline, kernel
from .rng import bits, derive, uniform
from .sampling import sample
from .tcp import W_CLOSE, W_REQ, W_TURN
from .writes import put_write, token_time

TLS_OVERHEAD = 22  # record header 5 + inner content type 1 + AEAD tag 16
TLS_MAX_PLAIN = 16384
DONE_PLAIN = 23  # "data: [DONE]\n\n" + HTTP/2 DATA frame header
FINISHED_WIRE = 64  # ChangeCipherSpec (6) + encrypted Finished record (58)
CLOSE_NOTIFY_WIRE = 24
KEEPALIVE_PLAIN = 9 + 13  # HTTP/2 DATA frame header + ": keep-alive\n\n"
BASE64 = 4.0 / 3.0
# write layouts: how the frame kernel fills a write's bytes (see kernels/frames.py)
L_APPDATA, L_CLIENT_HELLO, L_SERVER_FLIGHT, L_CLIENT_FINISHED = 0, 1, 2, 3
# nominal host delays (ns): a TLS connection's are drawn per connection in its place
# (kernels/tlsvar.py: assign); the chain kernels' planning bounds use these
D_CLIENT_HELLO, D_SERVER_FLIGHT, D_CLIENT_FIN, D_TICKET, D_REQUEST = 50_000, 300_000, 150_000, 50_000, 10_000

ChatParams = namedtuple("ChatParams", [
    # packed distributions (float64[DIST_LEN], ``config.dist.Dist.params``)
    "think", "prompt", "output", "ttft", "reason", "images", "itl", "stall", "image_bytes",
    "image_tokens",
    # scalars
    "stall_prob", "mean_gap", "keepalive_every", "keepalive", "tokens_per_chunk",
    "setup_writes", "nominal_rtt", "bytes_per_token", "req_overhead", "chunk_overhead",
    "hello_wire", "flight_wire", "ticket_wire"])
ChatParams.__doc__ = """A chat-shaped class's parameters, built once per model
(``classes.chat.ChatModel``): its distributions (think time, prompt and output tokens, time
to first token, reasoning share, images per request, inter-token gap, stall, image bytes and
tokens) and scalars: the stall probability, the mean token gap (ns), SSE keep-alive period
(0: none), connection keep-alive (ns), tokens per streamed chunk, a connection's setup writes
(``setup_count``), the nominal RTT, bytes per token, request and chunk overheads, and the wire
bytes of the ClientHello (0: plaintext HTTP), the server's flight and the session ticket."""

Paths = namedtuple("Paths", "n_clients client_skew n_servers paths_key site_first rtt_sites")
Paths.__doc__ = """Who talks to whom: ``n_clients`` ranked by ``client_skew`` (``client_rank``),
``n_servers``, the key of the path RTT draws (shared by all classes), and per site its first
client and packed RTT distribution (``Topology.rtt_table``)."""

Turns = namedtuple("Turns", "think prompt out ttft reason images at keep new")
Turns.__doc__ = """Per turn (``plan``'s output, ``fill``'s input): think time, prompt, output and
reasoning tokens, time to first token, images, nominal start, kept, opens a connection."""

Sessions = namedtuple("Sessions", "key turn0 req0 conn0 write0 client server")
Sessions.__doc__ = """Per session: its key, where its turns, requests, connections and writes
start (``plan``'s counts summed), and (``fill``'s output) its client and server."""

Requests = namedtuple("Requests", "session turn conn prompt output ttft reasoning images status retries")
Requests.__doc__ = """Per request (an attempt of a kept turn): session, turn, connection, prompt,
output and reasoning tokens (as sent), time to first token, images, status
(``failures.ST_*``) and the attempts before it."""


@kernel
def tls_wire(plain):
    """Wire bytes of ``plain`` application bytes sent as TLS 1.3 records."""
    return plain + TLS_OVERHEAD * ((plain + TLS_MAX_PLAIN - 1) // TLS_MAX_PLAIN)


def setup_count(has_ticket: bool, tls: bool) -> int:
    """A connection's writes besides its requests': TLS hello, flight, finished, [ticket] and
    close; plaintext HTTP only the close."""
    return 4 + int(has_ticket) if tls else 1


@inline
def turn_count(u, mean):
    if mean <= 1.0:
        return 1
    n = 1 + int(math.floor(math.log(u) / math.log(1.0 - 1.0 / mean)))
    return min(n, 100_000)


@kernel
def turn_counts(s_key, turns_mean, s_turns):
    """Turns per session."""
    for s in range(s_key.shape[0]):
        s_turns[s] = turn_count(uniform(s_key[s], 2), turns_mean)


@inline
def _turn_draws(k_s, k, think_p, prompt_p, output_p, ttft_p):
    base = 16 + 8 * k
    think = np.int64(sample(think_p, uniform(k_s, base))) if k > 0 else np.int64(0)
    prompt = max(1, int(round(sample(prompt_p, uniform(k_s, base + 1)))))
    out = max(1, int(round(sample(output_p, uniform(k_s, base + 2)))))
    ttft = np.int64(sample(ttft_p, uniform(k_s, base + 3)))
    return think, prompt, out, ttft


@inline
def turn_extras(k_s, k, out, reason_p, images_p):
    """Reasoning tokens (inside ``out``, at least one token stays visible) and images of turn
    ``k``: zero, and no draw, where the distributions are the constant 0."""
    base = 16 + 8 * k
    reason = 0
    if reason_p[0] != 0 or reason_p[1] != 0:
        share = sample(reason_p, uniform(k_s, base + 4))
        reason = min(int(round(out * share)), out - 1)
    images = 0
    if images_p[0] != 0 or images_p[1] != 0:
        images = max(0, int(round(sample(images_p, uniform(k_s, base + 5)))))
    return reason, images


@inline
def _silence(reason, mean_gap):
    """How long the hidden reasoning tokens keep the stream silent after the first-token wait."""
    return np.int64(reason) * mean_gap


@inline
def keepalives(reason, mean_gap, keepalive_every):
    if keepalive_every <= 0 or reason == 0:
        return 0
    return int((_silence(reason, mean_gap) - 1) // keepalive_every)


@kernel
def plan(s_key, s_start, s_turn0, t_min, p, t, s_kept, s_conns, s_writes, f, s_h1, o):
    """Per turn: draws, nominal start time, whether it is kept and opens a connection (into
    ``t``, ``Turns``), for the class of ``p`` (``ChatParams``).

    A turn is kept if its nominal start is at or after ``t_min`` (0 for warm sessions that
    began before the capture; their first kept turn opens the connection). A reply's nominal
    length is the path's median RTT, its ttft and ``mean_gap`` per further token (the mean
    token gap, stalls included): drawing every token of ten minutes of warm-up sessions cost
    more than all else in a short run, and a sum of hundreds of gaps barely differs from its
    mean next to think times of tens of seconds. Per session: kept turns, connections, writes.
    """
    mean_gap, keepalive, tokens_per_chunk = p.mean_gap, p.keepalive, p.tokens_per_chunk
    setup_writes, keepalive_every, nominal_rtt = p.setup_writes, p.keepalive_every, p.nominal_rtt
    think_p, prompt_p, output_p, ttft_p, reason_p, images_p = p.think, p.prompt, p.output, p.ttft, p.reason, p.images
    r_think, r_prompt, r_out, r_ttft, r_reason, r_images, r_at, r_keep, r_new = t
    for s in range(s_key.shape[0]):
        k_s = s_key[s]
        ts = s_start[s]
        kept = conns = writes = reqs = 0
        ended = False  # the previous kept turn's connection was reset
        for k in range(s_turns_of(s_turn0, s, r_think.shape[0])):
            r = s_turn0[s] + k
            think, prompt, out, ttft = _turn_draws(k_s, k, think_p, prompt_p, output_p, ttft_p)
            reason, images = turn_extras(k_s, k, out, reason_p, images_p)
            ts += think
            r_think[r], r_prompt[r], r_out[r], r_ttft[r], r_at[r] = think, prompt, out, ttft, ts
            r_reason[r], r_images[r] = reason, images
            r_keep[r] = ts >= t_min
            r_new[r] = r_keep[r] and (kept == 0 or think > keepalive or ended)
            if r_keep[r]:
                kept += 1
                more, ended = kf.outcome(k_s, k, f, s_h1[s], nominal_rtt, ttft, reason, out, p, o, r)
                writes += more
                reqs += o.tries[r] + (1 if o.tries[r] <= f.max_retries else 0)
                if r_new[r]:
                    conns += 1
                    writes += setup_writes  # hello, server flight, finished, [ticket], close
                writes += 2 + (out - reason + tokens_per_chunk - 1) // tokens_per_chunk
                writes += keepalives(reason, mean_gap, keepalive_every)
            if s_start[s] >= t_min:
                continue  # every turn is kept: later nominal times are not needed
            ts += nominal_rtt + ttft + (out - 1) * mean_gap  # the reply's nominal length
        s_kept[s], s_conns[s], s_writes[s] = reqs, conns, writes


@kernel
def session_clients(keys, paths, out):
    """The client of each session of ``keys`` (as ``session_path`` draws it)."""
    for i in range(keys.shape[0]):
        out[i] = client_rank(uniform(keys[i], 0), paths.n_clients, paths.client_skew)


@kernel
def session_uniforms(keys, salt, out):
    """A uniform in [0, 1) per session key, of its child key ``salt``: draws of the session's
    own that no other use of the key shares."""
    for i in range(keys.shape[0]):
        out[i] = uniform(derive(keys[i], salt), 0)


@inline
def s_turns_of(s_turn0, s, total):
    return (s_turn0[s + 1] if s + 1 < s_turn0.shape[0] else total) - s_turn0[s]


@kernel
def client_rank(u, n, skew):
    """A client index in [0, n) for the uniform ``u``: uniform for ``skew`` 0, else a
    power law over ranks (client 0 the most active): P(rank r) ~ (r + 1) ** -skew (a
    continuous Zipf, sampled by its inverse CDF)."""
    if skew == 0.0:
        return min(int(u * n), n - 1)
    if skew == 1.0:
        x = (n + 1.0) ** u
    else:
        e = 1.0 - skew
        x = (u * ((n + 1.0) ** e - 1.0) + 1.0) ** (1.0 / e)
    return min(max(int(x) - 1, 0), n - 1)


@inline
def site_of(site_first, client):
    """``client``'s site: the last site whose first client index is at or before it
    (``Topology.rtt_table``: its row of the RTT distributions)."""
    k = 0
    while k + 1 < site_first.shape[0] and site_first[k + 1] <= client:
        k += 1
    return k


@inline
def session_path(k_s, paths):
    """A session's client, server and path RTT (ns; the draws its key's 0 and 1 pick)."""
    n_servers = paths.n_servers
    client = client_rank(uniform(k_s, 0), paths.n_clients, paths.client_skew)
    server = min(int(uniform(k_s, 1) * n_servers), n_servers - 1)
    rtt = np.int64(sample(paths.rtt_sites[site_of(paths.site_first, client)],
                          uniform(derive(paths.paths_key, client * n_servers + server), 0)))
    return client, server, rtt


@kernel
def fill(ss, paths, p, t, r, c, wd, f, s_h1, o):
    """Fill requests (``r``, ``Requests``: kept turns), connections (``c``, ``tcp.Conns``) and
    writes (``wd``, [W, WF_COLS]) of the sessions ``ss`` (``Sessions``: their clients and
    servers filled too) at the offsets ``plan`` sized; ``t``: ``plan``'s ``Turns``, ``p``
    the ``ChatParams``, ``paths`` the ``Paths``. ``p.hello_wire`` 0: plaintext HTTP (no TLS
    handshake; the request goes out at once). ``f``, ``s_h1``, ``o``: ``plan``'s (each turn's
    fate: its attempts answered 429 or 503, each a request row, and an answer cut short)."""
    # arrays out of their tuples once: a tuple's member read in a loop costs a reference count
    keepalive, tokens_per_chunk, bytes_per_token = p.keepalive, p.tokens_per_chunk, p.bytes_per_token
    mean_gap, keepalive_every = p.mean_gap, p.keepalive_every
    hello_wire, flight_wire, ticket_wire = p.hello_wire, p.flight_wire, p.ticket_wire
    req_overhead, chunk_overhead, stall_prob = p.req_overhead, p.chunk_overhead, p.stall_prob
    image_bytes_p, image_tokens_p, itl_p, stall_p = p.image_bytes, p.image_tokens, p.itl, p.stall
    s_key, s_turn0, s_req0, s_conn0, s_write0, s_client, s_server = ss
    t_think, t_prompt, t_out, t_ttft, t_reason, t_images, t_at, t_keep, t_new = t
    r_session, r_turn, r_conn, r_prompt, r_output, r_ttft, r_reason, r_images, r_status, r_retries = r
    o_tries, o_errs, o_status, o_cut = o.tries, o.errs, o.status, o.cut
    max_retries = f.max_retries
    c_session, c_open_dep, c_open_at, c_rtt, c_isn, c_ipid, c_w0, c_wn, c_jitter, _ = c  # (c.os: the caller's)
    for s in range(s_key.shape[0]):
        k_s = s_key[s]
        client, server, rtt = session_path(k_s, paths)
        s_client[s], s_server[s] = client, server
        conn0 = s_conn0[s]
        ci = conn0 - 1
        w = s_write0[s]
        ri = s_req0[s]
        last_done = -1  # local index of the previous turn's last write on this connection
        reset = False  # the connection ended in a TCP reset: no close
        for k in range(s_turns_of(s_turn0, s, t_think.shape[0])):
            tr = s_turn0[s] + k
            if not t_keep[tr]:
                continue
            if t_new[tr]:
                if ci >= conn0:
                    w = _close(ci, w, last_done, keepalive, reset, c_w0, c_wn, wd)
                reset = False
                ci += 1
                k_c = derive(k_s, 100 + ci - conn0)
                c_session[ci] = s
                c_open_dep[ci] = -1 if ci == conn0 else ci - 1
                c_open_at[ci] = t_at[tr] if ci == conn0 else t_think[tr]
                c_rtt[ci] = max(rtt, np.int64(2))
                c_isn[ci, 0] = bits(k_c, 0) & 0xFFFFFFFF
                c_isn[ci, 1] = bits(k_c, 1) & 0xFFFFFFFF
                c_ipid[ci, 0] = bits(k_c, 2) & 0xFFFF
                c_ipid[ci, 1] = bits(k_c, 3) & 0xFFFF
                c_jitter[ci] = np.int64(uniform(k_c, 4) * 100_000_000)
                c_w0[ci] = w
                if hello_wire > 0:
                    w = put_write(w, DIR_UP, hello_wire, -1, D_CLIENT_HELLO, -1, PH_HANDSHAKE, 0,
                                  L_CLIENT_HELLO, wd)
                    w = put_write(w, DIR_DOWN, flight_wire, 0, D_SERVER_FLIGHT, -1, PH_HANDSHAKE,
                                  0, L_SERVER_FLIGHT, wd)
                    w = put_write(w, DIR_UP, FINISHED_WIRE, 1, D_CLIENT_FIN, -1, PH_HANDSHAKE, 0,
                                  L_CLIENT_FINISHED, wd)
                    if ticket_wire > 0:
                        w = put_write(w, DIR_DOWN, ticket_wire, 2, D_TICKET, -1, PH_HANDSHAKE, 0,
                                      L_APPDATA, wd)
                    req_dep, req_delay, req_flags = 2, D_REQUEST, W_REQ
                else:
                    req_dep, req_delay, req_flags = -1, D_CLIENT_HELLO, W_REQ
            else:
                req_dep, req_delay, req_flags = last_done, t_think[tr], W_REQ | W_TURN
            out = t_out[tr]
            reason = t_reason[tr]
            upload = int(round(t_prompt[tr] * bytes_per_token)) + req_overhead
            image_tokens = 0
            if t_images[tr] > 0:
                k_i = derive(k_s, 2_000_000 + k)
                for i in range(t_images[tr]):
                    upload += int(round(sample(image_bytes_p, uniform(k_i, 2 * i)) * BASE64))
                    image_tokens += int(round(sample(image_tokens_p, uniform(k_i, 2 * i + 1))))
            tries, cut = o_tries[tr], o_cut[tr]
            for n in range(tries + 1):  # the attempts answered 429 or 503, then the answer
                if n == tries and tries > max_retries:
                    break
                r_session[ri], r_turn[ri], r_conn[ri], r_retries[ri] = s, k, ci, n
                r_prompt[ri], r_output[ri], r_ttft[ri] = t_prompt[tr] + image_tokens, out, t_ttft[tr]
                r_reason[ri], r_images[ri], r_status[ri] = reason, t_images[tr], o_status[tr]
                req_local = w - c_w0[ci]
                w = put_write(w, DIR_UP, tls_wire(upload), req_dep, req_delay, ri, PH_REQUEST,
                              req_flags, L_APPDATA, wd)
                if n < tries:
                    w, req_delay = kf.error_answer(k_s, k, f, o_errs[tr], n, req_local, ri, w, wd,
                                                   r_status, r_output, r_reason)
                    req_dep, req_flags = w - 1 - c_w0[ci], W_REQ | W_TURN
                    last_done = req_dep
                    ri += 1
            if tries > max_retries:
                continue
            lim = cut if cut >= 0 else np.int64(1) << 62  # the server sends nothing from then on
            cflag = kf.W_CUT if cut >= 0 else 0
            k_t = derive(k_s, 1_000_000 + k)
            t_tok = t_ttft[tr]
            for j in range(keepalives(reason, mean_gap, keepalive_every)):
                if t_tok + (j + 1) * keepalive_every >= lim:
                    break
                w = put_write(w, DIR_DOWN, tls_wire(KEEPALIVE_PLAIN), req_local,
                              t_tok + (j + 1) * keepalive_every, ri, PH_THINKING, cflag, L_APPDATA, wd)
            t_tok += _silence(reason, mean_gap)
            done_tokens = reason  # hidden: no bytes on the wire
            while done_tokens < out:
                ntok = min(tokens_per_chunk, out - done_tokens)
                for g in range(ntok):
                    if done_tokens + g > reason:  # the first visible token comes at ttft + silence
                        t_tok += token_time(k_t, done_tokens + g, itl_p, stall_prob, stall_p)
                if t_tok >= lim:
                    break
                plain = chunk_overhead + int(round(ntok * bytes_per_token))
                w = put_write(w, DIR_DOWN, tls_wire(plain), req_local, t_tok, ri, PH_STREAM, cflag,
                              L_APPDATA, wd)
                done_tokens += ntok
            if cut < 0:
                w = put_write(w, DIR_DOWN, tls_wire(DONE_PLAIN), req_local, t_tok + 100_000, ri,
                              PH_STREAM, 0, L_APPDATA, wd)
            else:
                w, reset = kf.cut_end(o_status[tr], s_h1[s], done_tokens, reason, req_local, cut, ri,
                                      w, wd, r_output, r_reason)
            last_done = w - 1 - c_w0[ci]
            ri += 1
        if ci >= conn0:
            _close(ci, w, last_done, keepalive, reset, c_w0, c_wn, wd)


@helper
def _close(c, w, last_done, keepalive, reset, c_w0, c_wn, wd):
    """Connection ``c``'s close (none after a reset) and its count of writes."""
    if not reset:
        w = put_write(w, DIR_UP, CLOSE_NOTIFY_WIRE, last_done, keepalive, -1, PH_TEARDOWN, W_CLOSE,
                      L_APPDATA, wd)
    c_wn[c] = w - c_w0[c]
    return w
