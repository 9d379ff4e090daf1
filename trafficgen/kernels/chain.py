"""Call chains: sessions whose turns are chains of calls to several services (an agent's LLM
calls with tool calls between them; a retrieval's embed -> search -> rerank), as connections
and application writes for the transport kernel (``tcp.simulate``).

A chain crosses connections (a tool call follows an LLM reply on another connection), and the
transport kernel runs one connection at a time, so the chain is planned on the clock: each
call is ready at an absolute time (``W_ABS``), the end of the step before it bounded from
above (handshake, slow-start rounds of the upload, the service's latency or token stream,
the answer's rounds, delayed ACKs) plus the caller's own delay. A call therefore never starts
before what it waits for has arrived, whatever the transport makes of the bytes.

Three passes, all per session in start order: ``walk(fill=False)`` counts calls and
connections, ``walk(fill=True)`` records them (``CM_*`` and ``CN_*`` columns), and
``writes`` turns each connection's calls (sorted by connection) into writes.

Draws: session key 0 client, 1 main server, 2 turns, 3 first context, 100+v the server of
service v, 16+8k.. turn k (think, new tokens, calls); call ``i`` of a session has the key
derive(session, 10_000 + i) (0 output or up bytes, 1 latency, 2 down bytes, 3 parallel tools,
4 a per-call server, 5 the agent's delay, 6 top-k, 7 chunk tokens, 8 rerank), its tokens'
gaps derive(call key, 1).
"""
from collections import namedtuple

import numpy as np

from .bounds import SLACK_NS, handshake_bound, xfer_bound
from .chat import (
    CLOSE_NOTIFY_WIRE,
    D_CLIENT_FIN,
    D_CLIENT_HELLO,
    D_REQUEST,
    D_SERVER_FLIGHT,
    D_TICKET,
    DONE_PLAIN,
    FINISHED_WIRE,
    L_APPDATA,
    L_CLIENT_FINISHED,
    L_CLIENT_HELLO,
    L_SERVER_FLIGHT,
    client_rank,
    put_write,
    tls_wire,
    token_time,
    turn_count,
)
from .codes import DIR_DOWN, DIR_UP, PH_HANDSHAKE, PH_REQUEST, PH_RESPONSE, PH_STREAM, PH_TEARDOWN, PH_TOOL
from .jit import helper, inline, kernel
from .rng import bits, derive, uniform
from .sampling import sample
from .tcp import W_ABS, W_CLOSE, W_REQ

MODE_AGENTIC, MODE_RAG = 0, 1
K_LLM, K_TOOL, K_EMBED, K_SEARCH, K_RERANK = 0, 1, 2, 3, 4  # schema.KINDS order
# call matrix columns
CM_SESSION, CM_TURN, CM_LLM, CM_TOOL, CM_KIND, CM_SERVICE, CM_CONN, CM_T, CM_UP, CM_DOWN, \
    CM_STREAM, CM_LATENCY, CM_PROMPT, CM_OUTPUT, CM_KEY, CM_NEW = range(16)
CM_COLS = 16
# connection matrix columns
CN_SESSION, CN_SERVICE, CN_SERVER, CN_OPEN, CN_RTT, CN_PERCALL, CN_ISN0, CN_ISN1, CN_IPID0, \
    CN_IPID1, CN_JITTER, CN_IDLE = range(12)
CN_COLS = 12  # CN_IDLE: a pooled connection's close after its last answer (``kernels.pool``)
CALL_KEY = 10_000
TOOL_TRIES, TOOL_ERROR_BYTES = 3, 160  # a tool call and its 2 retries; an error answer's body

Chain = namedtuple("Chain", "mode n_clients client_skew paths_key ip dp fp pool")
Chain.__doc__ = """A chain class's parameters (``classes.chain.ChainModel``): ``mode``
(MODE_AGENTIC or MODE_RAG), its clients (count, rank skew), the key of the path RTT draws,
its int, packed-distribution and float parameters ``ip``, ``dp``, ``fp`` (AI_*/AD_* or
RI_*/RD_* rows), and per service 1 if its calls are pooled (``kernels.pool``)."""
Services = namedtuple("Services", "addr addr0 naddr rtt lat req resp")
Services.__doc__ = """The services 0.. a chain calls: server addresses flat in ``addr``
(service v's from ``addr0[v]``, ``naddr[v]`` of them) and, per service, packed distributions
of its path RTT, latency, request and response bytes ([V, DIST_LEN])."""
Link = namedtuple("Link", "mss ns_per_byte rwnd")  # MSS, ns per byte, receive window (bytes)
Plan = namedtuple("Plan", "s_client s_calls s_conns cm cn")
Plan.__doc__ = """``walk``'s output: per session its client and (counting) calls and connections
or (filling) their offsets; the call and connection matrices ([n, CM_COLS], [n, CN_COLS])."""
Replies = namedtuple("Replies", "hello_wire flight_wire ticket_wire keepalive chunk_overhead "
                                "bpt tokens_per_chunk itl stall_prob stall")
Replies.__doc__ = """What ``writes`` needs beyond the calls: the TLS handshake's wire bytes
(ClientHello, server flight, ticket: 0 none), the connections' keep-alive (ns), a streamed
chunk's overhead, bytes per token, tokens per chunk, and the token gaps (inter-token gap,
stall probability, stall)."""


@helper
def stream_time(k_call, out, itl_p, stall_prob, stall_p):
    """The reply stream's length after its first token: the gaps of tokens 1..out-1."""
    k_t = derive(k_call, 1)
    t = np.int64(0)
    for i in range(1, out):
        t += token_time(k_t, i, itl_p, stall_prob, stall_p)
    return t


@inline
def path_rtt(paths_key, svc, client, server, n_servers, rtt_p):
    """One RTT per (service, client, server) path; service 0's paths are the chat classes'."""
    ident = client * n_servers + server
    if svc > 0:
        ident += np.int64(svc) << 40
    return max(np.int64(2), np.int64(sample(rtt_p, uniform(derive(paths_key, ident), 0))))


@helper
def _conn(fill, cn, c, s, svc, server_addr, t_open, rtt, percall, k):
    if fill:
        cn[c, CN_SESSION], cn[c, CN_SERVICE], cn[c, CN_SERVER] = s, svc, server_addr
        cn[c, CN_OPEN], cn[c, CN_RTT], cn[c, CN_PERCALL] = t_open, rtt, percall
        cn[c, CN_ISN0] = bits(k, 0) & 0xFFFFFFFF
        cn[c, CN_ISN1] = bits(k, 1) & 0xFFFFFFFF
        cn[c, CN_IPID0] = bits(k, 2) & 0xFFFF
        cn[c, CN_IPID1] = bits(k, 3) & 0xFFFF
        cn[c, CN_JITTER] = np.int64(uniform(k, 4) * 100_000_000)
        cn[c, CN_IDLE] = 0
    return c + 1


@helper
def _call(fill, cm, i, row):
    """Row ``i`` of the call matrix, if ``fill``: ``row`` holds its CM_* columns in order
    (session, turn, llm call, tool call, kind, service, connection, time, up and down bytes,
    stream, latency, prompt and output tokens, call key, new connection). Returns i + 1."""
    if fill:
        cm[i, CM_SESSION], cm[i, CM_TURN], cm[i, CM_LLM], cm[i, CM_TOOL] = row[0], row[1], row[2], row[3]
        cm[i, CM_KIND], cm[i, CM_SERVICE], cm[i, CM_CONN], cm[i, CM_T] = row[4], row[5], row[6], row[7]
        cm[i, CM_UP], cm[i, CM_DOWN], cm[i, CM_STREAM], cm[i, CM_LATENCY] = row[8], row[9], row[10], row[11]
        cm[i, CM_PROMPT], cm[i, CM_OUTPUT], cm[i, CM_KEY], cm[i, CM_NEW] = row[12], row[13], np.int64(row[14]), row[15]
    return i + 1


@kernel
def walk(fill, s_key, s_start, t_min, t_end, chain, svc, link, rec):
    """Plan every session's chain (see the module docstring) of the class ``chain``
    (``Chain``) over the services ``svc`` (``Services``); count (``fill`` False: per session
    calls and connections into ``rec.s_calls``/``rec.s_conns``) or record them into
    ``rec.cm`` and ``rec.cn`` at the offsets ``rec.s_calls``/``rec.s_conns`` now hold
    (``rec``: a ``Plan``). ``link``: ``Link``.

    Calls whose ready time falls before ``t_min`` (warm-up) are planned but not kept; a
    session stops at the first call ready at or after ``t_end``.
    """
    span = (t_min, t_end)
    for s in range(s_key.shape[0]):
        k_s = s_key[s]
        client = client_rank(uniform(k_s, 0), chain.n_clients, chain.client_skew)
        rec.s_client[s] = client
        i = rec.s_calls[s] if fill else 0
        c = rec.s_conns[s] if fill else 0
        if chain.mode == MODE_AGENTIC:
            i, c = _agentic(fill, s, k_s, s_start[s], span, client, chain, svc, link, rec, i, c)
        else:
            i, c = _rag(fill, s, k_s, s_start[s], span, client, chain, svc, link, rec, i, c)
        if not fill:
            rec.s_calls[s], rec.s_conns[s] = i, c


# agentic parameters: ip = [turns x1000, llm calls x1000, keepalive, max context, overhead,
# chunk overhead, tokens per chunk, tools seen (0: the tools' flows are not captured)];
# dp rows = [think, turn tokens, first context, output, ttft, itl, stall, tools per step, agent delay];
# fp = [bytes per token, stall prob]
AI_TURNS, AI_CALLS, AI_KEEPALIVE, AI_MAXCTX, AI_OVERHEAD, AI_CHUNK, AI_TPC, AI_TOOLS_SEEN = range(8)
AD_THINK, AD_TURN_TOKENS, AD_CONTEXT, AD_OUTPUT, AD_TTFT, AD_ITL, AD_STALL, AD_TOOLS, AD_DELAY = range(9)


@helper
def _agentic(fill, s, k_s, t, span, client, chain, svc, link, rec, i, c):
    t_min, t_end = span
    ip, dp, fp, paths_key = chain.ip, chain.dp, chain.fp, chain.paths_key
    svc_addr, svc_addr0, svc_naddr, svc_rtt, svc_lat, svc_req, svc_resp = svc
    mss, ns_per_byte, rwnd = link
    cm, cn = rec.cm, rec.cn
    c0 = c
    bpt, stall_prob = fp[0], fp[1]
    n0 = svc_naddr[0]
    server = min(int(uniform(k_s, 1) * n0), n0 - 1)
    rtt = path_rtt(paths_key, 0, client, server, n0, svc_rtt[0])
    n_turns = turn_count(uniform(k_s, 2), ip[AI_TURNS] / 1000.0)
    context = max(1, int(round(sample(dp[AD_CONTEXT], uniform(k_s, 3)))))
    conn, last = -1, np.int64(-(2**62))
    n_call = 0
    for k in range(n_turns):
        base = 16 + 8 * k
        if k > 0:
            t += np.int64(sample(dp[AD_THINK], uniform(k_s, base)))
            context += max(1, int(round(sample(dp[AD_TURN_TOKENS], uniform(k_s, base + 1)))))
        n_llm = turn_count(uniform(k_s, base + 2), ip[AI_CALLS] / 1000.0)
        n_tool = 0
        for j in range(n_llm):
            if t >= t_end:
                return i, c
            k_c = derive(k_s, CALL_KEY + n_call)
            n_call += 1
            context = min(context, ip[AI_MAXCTX])
            out = max(1, int(round(sample(dp[AD_OUTPUT], uniform(k_c, 0)))))
            ttft = np.int64(sample(dp[AD_TTFT], uniform(k_c, 1)))
            up = int(round(context * bpt)) + ip[AI_OVERHEAD]
            new = conn < 0 or t - last > ip[AI_KEEPALIVE]
            if t >= t_min:
                if new:
                    conn = c
                    c = _conn(fill, cn, c, s, 0, svc_addr[svc_addr0[0] + server], t, rtt, 0,
                              derive(k_s, 100_000 + c - c0))
                i = _call(fill, cm, i, (s, k, j, -1, K_LLM, 0, conn, t, tls_wire(up), out, 1,
                                        ttft, context, out, k_c, 1 if new else 0))
            t_send = t + (handshake_bound(rtt) if new else 0)
            t_deliv = t_send + xfer_bound(tls_wire(up), rtt, mss, ns_per_byte, rwnd) + rtt // 2
            # the last token and the end of the stream reach the agent (an RTT of slack for
            # a window still opening)
            t = t_deliv + ttft + stream_time(k_c, out, dp[AD_ITL], stall_prob, dp[AD_STALL]) \
                + 100_000 + rtt + rtt // 2 + SLACK_NS
            last = t
            context += out
            if j == n_llm - 1:
                break
            # the agent runs the tools this reply asked for, in parallel, then calls again
            n_par = max(0, int(round(sample(dp[AD_TOOLS], uniform(k_c, 3)))))
            t_tools = t + np.int64(sample(dp[AD_DELAY], uniform(k_c, 5)))
            t_next = t_tools
            for g in range(n_par):
                k_g = derive(k_c, 1000 + g)
                nt = svc_naddr[1]
                ts = min(int(uniform(k_g, 4) * nt), nt - 1)
                r_t = path_rtt(paths_key, 1, client, ts, nt, svc_rtt[1])
                req = max(1, int(round(sample(svc_req[1], uniform(k_g, 0)))))
                resp = max(1, int(round(sample(svc_resp[1], uniform(k_g, 2)))))
                lat = np.int64(sample(svc_lat[1], uniform(k_g, 1)))
                t_a = t_tools
                for a in range(TOOL_TRIES):  # a failed call (an error answer) is retried
                    fail = uniform(k_g, 8 + a) < fp[2]  # (output 1 marks it: classes.chain)
                    down = tls_wire(TOOL_ERROR_BYTES if fail else resp)
                    if t_min <= t_a < t_end and ip[AI_TOOLS_SEEN]:
                        tc = c
                        c = _conn(fill, cn, c, s, 1, svc_addr[svc_addr0[1] + ts], t_a, r_t, 1,
                                  derive(k_s, 100_000 + c - c0))
                        i = _call(fill, cm, i, (s, k, j, n_tool, K_TOOL, 1, tc, t_a, tls_wire(req),
                                                down, 0, lat, 0, 1 if fail else 0, derive(k_g, a) if a else k_g, 1))
                    done = t_a + handshake_bound(r_t) + xfer_bound(tls_wire(req), r_t, mss, ns_per_byte, rwnd) \
                        + r_t + lat + xfer_bound(down, r_t, mss, ns_per_byte, rwnd)
                    if not fail:
                        break
                    t_a = done + np.int64(500_000_000 * (1 << a) * (1.0 - 0.25 * uniform(k_g, 12 + a)))
                n_tool += 1
                t_next = max(t_next, done)
                context += int(resp / bpt)
            t = t_next + np.int64(sample(dp[AD_DELAY], uniform(k_c, 6)))
    return i, c


# rag parameters: ip = [turns x1000, keepalive, rerank per mille]; dp rows = [think, query
# tokens, top-k, chunk tokens]; fp = [bytes per token]; services 1 embed, 2 search, 3 rerank
RI_TURNS, RI_KEEPALIVE, RI_RERANK = range(3)
RD_THINK, RD_QUERY, RD_TOPK, RD_CHUNK = range(4)


@helper
def _rag(fill, s, k_s, t, span, client, chain, svc, link, rec, i, c):
    t_min, t_end = span
    ip, dp, fp, paths_key = chain.ip, chain.dp, chain.fp, chain.paths_key
    svc_addr, svc_addr0, svc_naddr, svc_rtt, svc_lat, svc_req, svc_resp = svc
    mss, ns_per_byte, rwnd = link
    cm, cn = rec.cm, rec.cn
    c0 = c
    bpt = fp[0]
    n_turns = turn_count(uniform(k_s, 2), ip[RI_TURNS] / 1000.0)
    conns = np.full(4, -1, np.int64)
    last = np.full(4, -(2**62), np.int64)
    servers = np.empty(4, np.int64)
    rtts = np.empty(4, np.int64)
    for v in range(1, 4):
        servers[v] = min(int(uniform(k_s, 100 + v) * svc_naddr[v]), svc_naddr[v] - 1)
        rtts[v] = path_rtt(paths_key, v, client, servers[v], svc_naddr[v], svc_rtt[v])
    n_call = 0
    for k in range(n_turns):
        base = 16 + 8 * k
        if k > 0:
            t += np.int64(sample(dp[RD_THINK], uniform(k_s, base)))
        if t >= t_end:
            return i, c
        k_q = derive(k_s, CALL_KEY + n_call)
        query = max(1, int(round(sample(dp[RD_QUERY], uniform(k_q, 7)))))
        top_k = max(1, int(round(sample(dp[RD_TOPK], uniform(k_q, 6)))))
        chunks = 0
        for m in range(top_k):
            chunks += max(1, int(round(sample(dp[RD_CHUNK], uniform(derive(k_q, 2000), m)))))
        rerank = uniform(k_q, 8) * 1000.0 < ip[RI_RERANK]
        for step in range(3 if rerank else 2):
            v = step + 1
            k_c = derive(k_s, CALL_KEY + n_call)
            n_call += 1
            req = max(1, int(round(sample(svc_req[v], uniform(k_c, 0)))))
            resp = max(1, int(round(sample(svc_resp[v], uniform(k_c, 2)))))
            lat = np.int64(sample(svc_lat[v], uniform(k_c, 1)))
            prompt = 0
            if v == 1:  # embed the query
                req += int(round(query * bpt))
                prompt = query
            elif v == 2:  # the top-k chunks come back
                resp += int(round(chunks * bpt))
            else:  # rerank the chunks against the query
                req += int(round((query + chunks) * bpt))
                prompt = query + chunks
            new = conns[v] < 0 or t - last[v] > ip[RI_KEEPALIVE]
            if t >= t_min:
                if new:
                    conns[v] = c
                    c = _conn(fill, cn, c, s, v, svc_addr[svc_addr0[v] + servers[v]], t, rtts[v],
                              0, derive(k_s, 100_000 + c - c0))
                i = _call(fill, cm, i, (s, k, -1, -1, K_EMBED + step, v, conns[v], t,
                                        tls_wire(req), tls_wire(resp), 0, lat, prompt,
                                        chunks if v == 2 else 0, k_c, 1 if new else 0))
            r, last[v] = rtts[v], t  # kept alive from its last call's start: never past its close
            hs = new or chain.pool[v]  # pooled: it may find no idle connection: bound a handshake
            t += (handshake_bound(r) if hs else 0) + xfer_bound(tls_wire(req), r, mss, ns_per_byte, rwnd) \
                + r + lat + xfer_bound(tls_wire(resp), r, mss, ns_per_byte, rwnd)
            t += 100_000  # the gateway's own step
    return i, c


@kernel
def writes(cm, order, cn, c_call0, c_ncalls, rp, c_w0, c_wn, wd):
    """Each connection's writes at ``c_w0[c]`` (calls ``order[c_call0[c]:+c_ncalls[c]]`` of
    ``cm``, in time order): handshake, per call its upload (``W_ABS`` at the call's time, or
    after the handshake on a new connection) and its reply (a token stream or one answer),
    then close_notify + FIN (a per-call connection right after its answer, a kept-alive one
    ``rp.keepalive`` after its last). ``rp``: ``Replies``."""
    hello_wire, flight_wire, ticket_wire, keepalive = rp.hello_wire, rp.flight_wire, rp.ticket_wire, rp.keepalive
    chunk_overhead, bpt, tokens_per_chunk = rp.chunk_overhead, rp.bpt, rp.tokens_per_chunk
    itl_p, stall_prob, stall_p = rp.itl, rp.stall_prob, rp.stall
    for c in range(cn.shape[0]):
        w = c_w0[c]
        w = put_write(w, DIR_UP, hello_wire, -1, D_CLIENT_HELLO, -1, PH_HANDSHAKE, 0, L_CLIENT_HELLO, wd)
        w = put_write(w, DIR_DOWN, flight_wire, 0, D_SERVER_FLIGHT, -1, PH_HANDSHAKE, 0, L_SERVER_FLIGHT, wd)
        w = put_write(w, DIR_UP, FINISHED_WIRE, 1, D_CLIENT_FIN, -1, PH_HANDSHAKE, 0, L_CLIENT_FINISHED, wd)
        if ticket_wire > 0:
            w = put_write(w, DIR_DOWN, ticket_wire, 2, D_TICKET, -1, PH_HANDSHAKE, 0, L_APPDATA, wd)
        last_done = 2
        for q in range(c_ncalls[c]):
            g = order[c_call0[c] + q]
            phase = PH_TOOL if cm[g, CM_KIND] == K_TOOL else PH_REQUEST
            if q == 0:
                dep, delay, flags = 2, D_REQUEST, W_REQ
            else:
                dep, delay, flags = last_done, cm[g, CM_T], W_REQ | W_ABS
            req_local = w - c_w0[c]
            w = put_write(w, DIR_UP, cm[g, CM_UP], dep, delay, g, phase, flags, L_APPDATA, wd)
            lat = cm[g, CM_LATENCY]
            if cm[g, CM_STREAM]:
                out = cm[g, CM_DOWN]
                k_t = derive(np.uint64(cm[g, CM_KEY]), 1)
                t_tok = lat
                done = 0
                while done < out:
                    ntok = min(tokens_per_chunk, out - done)
                    for h in range(ntok):
                        if done + h > 0:
                            t_tok += token_time(k_t, done + h, itl_p, stall_prob, stall_p)
                    w = put_write(w, DIR_DOWN, tls_wire(chunk_overhead + int(round(ntok * bpt))),
                               req_local, t_tok, g, PH_STREAM, 0, L_APPDATA, wd)
                    done += ntok
                w = put_write(w, DIR_DOWN, tls_wire(DONE_PLAIN), req_local, t_tok + 100_000, g,
                           PH_STREAM, 0, L_APPDATA, wd)
            else:
                w = put_write(w, DIR_DOWN, cm[g, CM_DOWN], req_local, lat, g,
                           PH_TOOL if phase == PH_TOOL else PH_RESPONSE, 0, L_APPDATA, wd)
            last_done = w - 1 - c_w0[c]
        pc = cn[c, CN_PERCALL]  # 1: per call, 2: pooled (kernels.pool), 0: the session's
        idle = keepalive if pc == 0 else (1_000_000 if pc == 1 else cn[c, CN_IDLE])
        w = put_write(w, DIR_UP, CLOSE_NOTIFY_WIRE, last_done, idle, -1, PH_TEARDOWN, W_CLOSE,
                   L_APPDATA, wd)
        c_wn[c] = w - c_w0[c]


@kernel
def write_counts(cm, order, c_call0, c_ncalls, has_ticket, tokens_per_chunk, out):
    """Writes per connection: handshake (3, +1 ticket), per call 1 up + its reply, close."""
    for c in range(c_call0.shape[0]):
        n = 4 + has_ticket
        for q in range(c_ncalls[c]):
            g = order[c_call0[c] + q]
            n += 1
            if cm[g, CM_STREAM]:
                n += (cm[g, CM_DOWN] + tokens_per_chunk - 1) // tokens_per_chunk + 1
            else:
                n += 1
        out[c] = n
