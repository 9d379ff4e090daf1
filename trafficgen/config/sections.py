"""Every section of a scenario, as tuples of keys (see :mod:`.keys`), and the parameter types
of the flow classes, made from them.

A class section is its parameters' keys plus, for all but ``kv_transfer``, the endpoint keys
(:data:`~.topology.ENDPOINT_KEYS`). Shared groups (the TLS sizes, the HTTP framing, the token
stream, the service's name) are tuples concatenated where a section declares its keys, in the
order a section's keys are checked and its defaults written out.
"""
from __future__ import annotations

import datetime as _dt
from types import MappingProxyType
from typing import Mapping

from trafficgen.wire.profiles import check_alpn, check_hostname, check_profiles

from .arrivals import ArrivalSpec, parse_arrivals
from .hosts import HOSTS_KEYS
from .impair import IMPAIR_KEYS
from .keys import (
    OPTIONAL,
    REQUIRED,
    Key,
    allows,
    bounded,
    dist,
    dist_within,
    duration_or_zero,
    float_in,
    int_in,
    key_table,
    one_of,
    params_class,
    seconds,
    section,
    size_in,
    text,
    with_defaults,
)
from .kvcache import KV_MODELS, KVModel, parse_kv_model
from .media import MEDIA_KEYS, VIDEO_KEYS, VOICE_KEYS
from .network import NETWORK
from .topology import ENDPOINT_KEYS, NAME, TOPOLOGY_KEYS, addresses
from .units import parse_bandwidth, parse_duration, parse_rate

MAX_DURATION_NS = 30 * 86_400 * 10**9


@allows("an ISO 8601 time like '2026-01-01T00:00:00Z', 1970 to 2106")
def _start_time(v) -> int:
    if isinstance(v, _dt.datetime):
        t = v
    elif isinstance(v, str):
        try:
            t = _dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError as e:
            raise ValueError(f"expected an ISO 8601 time like '2026-01-01T00:00:00Z', got {v!r}") from e
    else:
        raise ValueError(f"expected an ISO 8601 time like '2026-01-01T00:00:00Z', got {v!r}")
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    ns = int(t.timestamp()) * 10**9 + t.microsecond * 1000
    if not 0 <= ns < 2**32 * 10**9:
        raise ValueError("start_time must fall between 1970 and 2106 (the pcap time range)")
    return ns


@allows("false or \"off\" (HTTPS), \"http1\"")
def _plaintext(v) -> str:
    """false / "off" (HTTPS) or "http1" (plaintext HTTP/1.1)."""
    if v is False or v == "off":
        return ""
    if v == "http1":
        return v
    raise ValueError(f"expected false (HTTPS) or \"http1\" (plaintext HTTP/1.1), got {v!r}")


@allows("a DNS hostname (no IP literal)")
def _hostname(v) -> str:
    return check_hostname(v)


@allows("\"\" (none) or a DNS hostname")
def _hostname_or_none(v) -> str:
    return "" if v == "" else check_hostname(v)


@allows("a list of ALPN protocol names ([]: the client profile's)")
def _alpn(v) -> tuple[str, ...]:
    return check_alpn(v)


@allows("a client profile, or a table of profile -> share")
def _profiles(v) -> tuple[tuple[str, float], ...]:
    return check_profiles(v)


@allows("a table of process, cv, burst, batch, spread, daily, onoff")
def _arrivals(v) -> ArrivalSpec:
    return parse_arrivals(v)


@allows(f"{', '.join(KV_MODELS)}, or a table of layers, kv_heads, head_dim, bytes_per_value")
def _kv_model(v) -> KVModel:
    return parse_kv_model(v)


SCENARIO_KEYS = (
    Key("name", text(pattern=NAME), help="the scenario's name"),
    Key("description", text(), "", "a line on what it models"),
    Key("base", text(), OPTIONAL, "a scenario to start from (built-in name or path): its tables under this one's"),
    Key("duration", bounded(parse_duration, 10**6, MAX_DURATION_NS, seconds),
        help="requests start within it; those in flight at its end finish"),
    Key("seed", int_in(0, 2**63 - 1), help="every random draw derives from it"),
    Key("start_time", _start_time, "2026-01-01T00:00:00Z", "the capture's start (UTC without a zone)"),
)

# A backend a chain calls: ``{ servers = ..., port = 443, rtt = ..., latency = ..., ... }``.
SERVICE_KEYS = (
    Key("servers", addresses, help="its addresses"),
    Key("port", int_in(1, 65535), 443, "its TCP port"),
    Key("rtt", dist("duration"), help="the round trip of each path to it"),
    Key("latency", dist("duration", positive=False), help="how long it takes to answer"),
    Key("request_bytes", dist("bytes"), help="a request's size (before TLS)"),
    Key("response_bytes", dist("bytes"), help="an answer's size (before TLS)"),
    Key("sni", _hostname_or_none, "", "its hostname (TLS server name; \"\": none, an address)"),
    Key("alpn", _alpn, [], "the ALPN offer (empty: the client profile's own)"),
)
Service = params_class("Service", SERVICE_KEYS, "A backend a chain calls: its addresses and port, the RTT "
                       "of each path to it, how long it takes to answer, and the sizes of a request and its "
                       "answer.", __name__, init_defaults=("sni", "alpn"))
_SERVICE_NAMES = ", ".join(sorted(k.name for k in SERVICE_KEYS))


@allows(f"a table of {_SERVICE_NAMES}", returns="Service")
def _service(v):
    """``{ servers = "10.60.1.0/29", port = 443, rtt = ..., latency = ..., request_bytes = ...,
    response_bytes = ... }`` (port defaults to 443)."""
    if not isinstance(v, dict):
        raise ValueError(f"expected a service table with {_SERVICE_NAMES}, got {v!r}")
    extra = sorted(set(v) - {k.name for k in SERVICE_KEYS})
    missing = sorted(k.name for k in SERVICE_KEYS if k.default is REQUIRED and k.name not in v)
    if extra:
        raise ValueError(f"unknown key {extra[0]!r} (allowed: {_SERVICE_NAMES})")
    if missing:
        raise ValueError(f"missing {missing[0]!r} (a service has {_SERVICE_NAMES})")
    out = {}
    for key in SERVICE_KEYS:
        try:
            out[key.name] = key.parse(v.get(key.name, key.default))
        except ValueError as e:
            raise ValueError(f"{key.name}: {e}") from None
    return Service(**out)


_RATE = bounded(parse_rate, 0.0, 1e6, lambda x: f"{x:g}/s")
_KEEPALIVE = Key("keepalive", bounded(parse_duration, 10**6, 86_400 * 10**9, seconds),
                 help="an idle connection closes after this; the next request opens a new one")
_THINK_TIME = Key("think_time", dist("duration"), help="between a session's turns")
# east-west callers' HTTP client pools (kernels/pool.py): per (caller, backend), idle kept-alive
# connections first, a new one only when all are busy; Go net/http keeps 2 idle per host
# (MaxIdleConnsPerHost), urllib3/requests 10 (pool_maxsize), httpx 20 in all; Go closes an
# idle one after 90 s (DefaultTransport.IdleConnTimeout), aiohttp after 15 s, nginx's upstream
# keepalive_timeout 60 s
POOL_KEYS = (
    Key("pool_size", int_in(0, 10_000), 0,
        "idle kept-alive connections a caller pools per backend (0: no pool, each session its own)"),
    Key("pool_idle_timeout", bounded(parse_duration, 10**6, 86_400 * 10**9, seconds), "90s",
        "a pooled connection idle this long closes"),
)
_ARRIVALS = Key("arrivals", _arrivals, {"process": "poisson"}, "how sessions arrive (README: arrivals)")
TOKEN_STREAM_KEYS = (
    Key("output_tokens", dist("count"), help="tokens in an answer"),
    Key("ttft", dist("duration"), help="time to first token"),
    Key("itl", dist("duration"), help="the gap between tokens"),
    Key("stall_prob", float_in(0.0, 1.0), help="share of token gaps that are stalls"),
    Key("stall", dist("duration"), help="a stall's length"),
)
HTTP_KEYS = (
    Key("bytes_per_token", float_in(0.5, 64.0), help="text bytes per token"),
    Key("request_overhead_bytes", size_in(0, 1 << 20), help="HTTP headers and JSON envelope around a prompt"),
    Key("chunk_overhead_bytes", size_in(0, 16000), help="SSE and HTTP/2 DATA framing around a chunk of tokens"),
    Key("tokens_per_chunk", int_in(1, 4096), help="tokens per streamed chunk"),
)
# The hosts' TLS and HTTP delays, drawn per event (kernels/tlsvar.py); defaults (est) from
# ../MODELS.md "TLS 1.3 server compute" (openssl speed figures on one core); the scenarios in
# models/ set them with their sources.
HOST_DELAY_KEYS = (
    Key("client_hello_delay", dist("duration"), {"median": "150us", "p90": "400us", "max": "20ms"},
        "connection up -> the client's ClientHello (its TLS library's setup)"),
    Key("client_finished_delay", dist("duration"), {"median": "200us", "p90": "500us", "max": "20ms"},
        "the server's flight received -> the client's Finished (certificate checks, key schedule)"),
    Key("request_delay", dist("duration"), {"median": "60us", "p90": "250us", "max": "20ms"},
        "the client's Finished (or, in plaintext, connection up) -> its first request"),
    Key("server_kex_delay", dist("duration"), {"median": "70us", "p90": "110us", "max": "5ms"},
        "the server's X25519 key exchange and key schedule"),
    Key("server_mlkem_delay", dist("duration"), {"median": "40us", "p90": "65us", "max": "5ms"},
        "added for a hybrid X25519MLKEM768 share: the ML-KEM-768 encapsulation"),
    Key("server_sign_delay", dist("duration"), {"median": "60us", "p90": "95us", "max": "10ms"},
        "the server's CertificateVerify signature (ECDSA P-256; RSA-2048 is ~1 ms); none when resumed"),
    Key("ticket_delay", dist("duration"), {"median": "30us", "p90": "80us", "max": "5ms"},
        "the client's Finished received -> the server's NewSessionTicket"),
    Key("parse_delay", dist("duration"), {"median": "150us", "p90": "500us", "max": "50ms"},
        "a request received -> the server starts on it (HTTP parsing, routing)"),
)
TLS_KEYS = (
    Key("client_hello_bytes", size_in(64, 16000), 1750, "unused: the client profile sets the size"),
    Key("server_flight_bytes", size_in(64, 1 << 20), help="ServerHello to server Finished"),
    Key("session_ticket_bytes", size_in(0, 16000), help="the NewSessionTicket records after the handshake"),
    *HOST_DELAY_KEYS,
    Key("resumption", float_in(0.0, 1.0), 1.0, "share of repeat connections (a client to a service "
        "within a ticket's lifetime) that resume with a PSK, for client profiles that resume"),
    Key("ticket_lifetime", bounded(parse_duration, 10**9, 7 * 86_400 * 10**9, seconds), "2h",
        "how long a session ticket can be used (RFC 8446: at most 7 days)"),
)
_CLIENT_PROFILES = Key("client_profiles", _profiles, help="the clients' TLS stacks, with their shares")
SERVICE_NAME_KEYS = (
    Key("sni", _hostname, help="the service's hostname (TLS server name)"),
    Key("alpn", _alpn, [], "the ALPN offer (empty: each client profile's own)"),
    _CLIENT_PROFILES,
)

# failures of the calls themselves (kernels/failures.py; README: failing calls)
FAILURE_KEYS = (
    Key("cancel", float_in(0.0, 1.0), 0.0, "share of streamed answers the user cancels mid-answer"),
    Key("timeout", duration_or_zero(3600 * 10**9), 0,
        "the client's timeout: a first byte (or reasoning silence) later abandons the call (0: none)"),
    Key("rate_limited", float_in(0.0, 1.0), 0.0, "share of calls answered HTTP 429 (the client retries)"),
    Key("server_error", float_in(0.0, 1.0), 0.0, "share of calls answered HTTP 503 (the client retries)"),
    Key("server_reset", float_in(0.0, 1.0), 0.0, "share of answers the server resets (TCP RST) mid-answer"),
    Key("retry_after", duration_or_zero(3600 * 10**9), "1s",
        "a 429's retry-after, which the client waits (0: none, an exponential backoff)"),
    Key("max_retries", int_in(0, 10), 2, "retries after a 429 or 503 before the client gives up"),
)
CHAT_KEYS = (
    Key("rate", _RATE, help="requests per second, all sessions together"),
    Key("turns", float_in(1.0, 1000.0), help="mean turns per session (geometric, >= 1)"),
    _THINK_TIME, _KEEPALIVE,
    Key("prompt_tokens", dist("count"), help="prompt (context) tokens per request"),
    *TOKEN_STREAM_KEYS, *HTTP_KEYS, *TLS_KEYS, _ARRIVALS,
    Key("reasoning", dist_within(0.0, 1.0), 0, "share of the output tokens that are hidden reasoning"),
    Key("keepalive_every", duration_or_zero(3600 * 10**9), 0,
        "between SSE keep-alive comments while reasoning (0: none)"),
    Key("images", dist_within(0, 64), 0, "images per request"),
    Key("image_bytes", dist("bytes", positive=False), 0, "bytes per image before base64"),
    Key("image_tokens", dist("count", positive=False), 0, "prompt tokens per image"),
    Key("retrieval_share", float_in(0.0, 1.0), 0.0, "share of requests that fan out to RAG lookups"),
    Key("retrieval_lookups", float_in(1.0, 100.0), 1.0,
        "mean lookups (retrieval chains) per such request, geometric"),
    Key("retrieval_gap", dist("duration", positive=False), 0, "between a request's lookups"),
    *SERVICE_NAME_KEYS,
    Key("plaintext", _plaintext, False, "\"http1\": plaintext HTTP/1.1 (no TLS) for content inspection"),
    *FAILURE_KEYS,
)
AGENTIC_KEYS = (
    Key("rate", _RATE, help="LLM calls per second, all sessions together"),
    _ARRIVALS,
    Key("turns", float_in(1.0, 1000.0), help="mean turns (tasks) per session, geometric"),
    Key("llm_calls", float_in(1.0, 1000.0), help="mean LLM calls per turn, geometric"),
    _THINK_TIME, _KEEPALIVE,
    Key("context_tokens", dist("count"), help="the context the first call sends"),
    Key("turn_tokens", dist("count"), help="what each later turn adds (the user's next task)"),
    Key("max_context_tokens", int_in(1, 10_000_000), help="compaction: the context sent never exceeds this"),
    *TOKEN_STREAM_KEYS,
    Key("tools_per_step", dist_within(0, 64), help="parallel tool calls after each LLM call but the turn's last"),
    Key("agent_delay", dist("duration", positive=False), help="the agent's own time before each step"),
    Key("tool_error", float_in(0.0, 1.0), 0.0,
        "share of tool calls answered with an error (the agent retries twice, backing off)"),
    Key("tools", _service, help="the tool servers"),
    *HTTP_KEYS, *TLS_KEYS, *SERVICE_NAME_KEYS, *POOL_KEYS,
)
RAG_KEYS = (
    Key("rate", _RATE, help="retrievals per second, all sessions together"),
    _ARRIVALS,
    Key("turns", float_in(1.0, 1000.0), help="mean retrievals per session, geometric"),
    _THINK_TIME, _KEEPALIVE,
    Key("query_tokens", dist("count"), help="tokens of a query"),
    Key("top_k", dist_within(1, 1000), help="chunks a search returns"),
    Key("chunk_tokens", dist("count"), help="tokens per chunk"),
    Key("rerank_share", float_in(0.0, 1.0), help="share of retrievals that rerank"),
    Key("embed", _service, help="the embedding service"),
    Key("search", _service, help="the vector search"),
    Key("rerank", _service, help="the reranker"),
    HTTP_KEYS[0], *with_defaults(TLS_KEYS, client_hello_bytes=600), _CLIENT_PROFILES,
    *with_defaults(POOL_KEYS, pool_size=10, pool_idle_timeout="60s"),
)
KV_TRANSFER_KEYS = (
    Key("rate", _RATE, help="transfers per second"),
    Key("arrivals", _arrivals, {"process": "poisson"}, "how transfers arrive (README: arrivals)"),
    Key("model", _kv_model, help="the model, for its KV-cache bytes per token"),
    Key("prompt_tokens", dist("count"), help="prompt tokens per request"),
    Key("shared_prefix_tokens", int_in(0, 1 << 20), help="cached for every request (a common system prompt)"),
    Key("cache_hit_prob", float_in(0.0, 1.0), help="share of requests that continue a cached context"),
    Key("hit_uncached_tokens", dist("count"), help="tokens to prefill on such a hit (the rest is cached)"),
    Key("link_rate", bounded(parse_bandwidth, 1e6, 1.6e12, lambda x: f"{x:g}bps"), help="the link's bits per second"),
    Key("prefill_rate", bounded(parse_rate, 0.0, 1e9, lambda x: f"{x:g}/s"),
        help="prefill tokens per second (0: the KV is all ready at the start)"),
    Key("path_mtu", one_of((256, 512, 1024, 2048, 4096)), help="RDMA payload bytes per packet"),
    Key("prefill_servers", addresses, help="the prefill servers (senders)"),
    Key("decode_servers", addresses, help="the decode servers (receivers)"),
    Key("layers_per_message", int_in(1, 1024), help="layers per RDMA WRITE message"),
    Key("ack_every", int_in(1, 1 << 20), help="WRITE packets per coalesced ACK (and one at each message's end)"),
    Key("rtt", bounded(parse_duration, 0, 10**9, seconds), help="the fabric's round trip"),
)

ChatParams = params_class("ChatParams", CHAT_KEYS, "``[chat]``, ``[coding]``, ``[reasoning]``: sessions "
                          "of streamed model calls.", __name__)
MultimodalParams = params_class("MultimodalParams", MEDIA_KEYS, "``[multimodal]``: the chat-shaped image "
                                "requests plus voice and video sessions.", __name__, base=ChatParams)
AgenticParams = params_class("AgenticParams", AGENTIC_KEYS, "``[agentic]``: chains of LLM calls and tool "
                             "calls.", __name__)
RagParams = params_class("RagParams", RAG_KEYS, "``[rag]``: embed -> vector search -> rerank, east-west.",
                         __name__)
KVParams = params_class("KVParams", KV_TRANSFER_KEYS, "``[kv_transfer]``: prefill-to-decode KV-cache "
                        "transfers over RoCEv2 (kv-transfer.toml).", __name__)

# Flow classes: section name (= the ``class`` label) -> (parameters type, the built-in scenario
# whose section of that name supplies every key a scenario leaves out). In generation order.
CLASS_SECTIONS: Mapping[str, tuple[type, str]] = MappingProxyType({
    "chat": (ChatParams, "chat"),
    "coding": (ChatParams, "coding"),  # code completion: the chat flow shape, its own figures
    "reasoning": (ChatParams, "reasoning"),  # a silent thinking phase, then a long answer
    "multimodal": (MultimodalParams, "multimodal"),  # images upstream; voice and video sessions
    "agentic": (AgenticParams, "agentic"),  # chains of LLM calls and tool calls
    "rag": (RagParams, "rag"),  # embed -> vector search -> rerank, east-west
    "kv_transfer": (KVParams, "kv-transfer"),  # RoCEv2 between GPU servers
})
_CHAT = section(CHAT_KEYS, ENDPOINT_KEYS)
# Section -> its keys, in the order "unknown section" errors list them.
SECTIONS: Mapping[str, Mapping[str, Key]] = MappingProxyType({
    "scenario": section(SCENARIO_KEYS),
    "topology": section(TOPOLOGY_KEYS),
    "chat": _CHAT,
    "kv_transfer": section(KV_TRANSFER_KEYS),
    "agentic": section(AGENTIC_KEYS, ENDPOINT_KEYS),
    "rag": section(RAG_KEYS, ENDPOINT_KEYS),
    "network": NETWORK,
    "hosts": section(HOSTS_KEYS),
    "coding": _CHAT,
    "reasoning": _CHAT,
    "multimodal": section(CHAT_KEYS, ENDPOINT_KEYS, MEDIA_KEYS),
})
# The classes whose sections take the endpoint keys (a site of their own).
ENDPOINT_CLASSES = tuple(c for c in CLASS_SECTIONS if all(SECTIONS[c].get(k.name) is k for k in ENDPOINT_KEYS))
# Tables inside sections whose keys are declared too (for the reference): names -> keys.
SUBTABLES: Mapping[str, tuple[Key, ...]] = MappingProxyType({
    "multimodal.voice": VOICE_KEYS, "multimodal.video": VIDEO_KEYS,
    "agentic.tools, rag.embed, rag.search, rag.rerank": SERVICE_KEYS,
    "network.impair": IMPAIR_KEYS,
})


def key_reference() -> str:
    """Markdown: every section's keys (and the tables inside them), with default, allowed
    values and meaning. ``coding`` and ``reasoning`` have chat's keys."""
    out = []
    for name, keys in {**SECTIONS, **SUBTABLES}.items():
        if name in ("coding", "reasoning"):
            continue
        keys = keys.values() if isinstance(keys, Mapping) else keys
        heading = ", ".join(f"`[{n}]`" for n in name.split(", "))
        out.append(f"### {heading}\n\n" + key_table(keys))
    return "\n".join(out)
