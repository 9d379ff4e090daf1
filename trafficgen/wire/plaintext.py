"""Plaintext HTTP/1.1 for DPI labs that look inside (a chat-shaped class's ``plaintext =
"http1"``): real request lines and headers, a JSON body of the request's size, and a chunked
``text/event-stream`` answer whose SSE ``data:`` events carry OpenAI-style JSON token deltas
of the model's event sizes. No TLS handshake; nothing secret (no credentials) on the wire.

The frame encoder fills these writes from templates (``Table``): a fixed prefix with length
fields, filler text inside the JSON string, and a fixed suffix at the write's end. A plain
template is marked by its last mask byte, ``PLAIN | len(suffix)`` (a fixed byte); mask ``DEC``/``HEX`` bytes
are a length field (decimal right-padded with spaces / hex zero-padded) whose value is the
write's length less the 16-bit number in the field's first two template bytes (see
``kernels/frames.py``). Layouts of a plaintext model are its message kinds (``K_*``).
"""
from __future__ import annotations

import struct

import numpy as np

PLAIN, FIXED, DEC, HEX = 0x80, 1, 2, 3
K_REQUEST, K_FIRST_EVENT, K_EVENT, K_DONE, K_KEEPALIVE, K_FIRST_KEEPALIVE, K_ERROR429, K_ERROR503 = range(1, 9)
KINDS = 8
RESPONSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                 b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n"
                 b"connection: keep-alive\r\nx-content-type-options: nosniff\r\n\r\n")
EVENT_OPEN = (b'data: {"id":"chatcmpl-trafficgen","object":"chat.completion.chunk",'
              b'"created":1767225600,"model":"gpt-4o-mini","system_fingerprint":"fp_0000000000",'
              b'"choices":[{"index":0,"delta":{"content":"')
EVENT_CLOSE = b'"},"logprobs":null,"finish_reason":null}]}\n\n'
HEX_WIDTH, DEC_WIDTH = 6, 8


class _Msg:
    """A message template: prefix parts, then filler, then a suffix."""

    def __init__(self):
        self.data, self.mask, self.suffix = bytearray(), bytearray(), b""

    def fixed(self, b: bytes):
        self.data += b
        self.mask += bytes([FIXED]) * len(b)
        return self

    def field(self, code: int, width: int):
        """A length field; its offset is filled in by ``base`` once the layout is known."""
        self._field = (len(self.data), code)
        self.data += b"\x00" * width
        self.mask += bytes([code]) * width
        return self

    def base(self, less: int):
        """The field's value is the write's length less ``less``."""
        at, _ = self._field
        self.data[at:at + 2] = struct.pack("!H", less)
        return self

    def done(self, suffix: bytes) -> tuple[bytes, bytes]:
        assert 0 < len(suffix) < 0x80
        data = bytes(self.data) + suffix
        mask = bytearray(self.mask) + bytes([FIXED]) * len(suffix)
        mask[-1] = PLAIN | len(suffix)
        return data, bytes(mask)


def _chunk(head: bytes, body_open: bytes, suffix_body: bytes, trailer: bytes = b"") -> _Msg:
    """``head`` then one chunk: hex size, CRLF, the data (``body_open`` + filler +
    ``suffix_body``), CRLF, then ``trailer``; the size is the write's length less the rest."""
    m = _Msg().fixed(head).field(HEX, HEX_WIDTH).fixed(b"\r\n" + body_open)
    m.base(len(head) + HEX_WIDTH + 2 + 2 + len(trailer))
    m.suffix = suffix_body + b"\r\n" + trailer
    return m


def error_answer(status: int, retry_after_s: int) -> bytes:
    """An error answer (429 or 503) as OpenAI's API words it: status line, headers (a 429's
    ``retry-after`` in whole seconds, none if 0) and a JSON error body."""
    reason, kind, msg = {
        429: (b"Too Many Requests", b"rate_limit_exceeded", b"Rate limit reached for requests"),
        503: (b"Service Unavailable", b"server_error", b"The server is overloaded, please retry"),
    }[status]
    body = b'{"error":{"message":"' + msg + b'","type":"' + kind + b'","code":"' + kind + b'"}}'
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n" % (status, reason)
    if status == 429 and retry_after_s > 0:
        head += b"retry-after: %d\r\n" % retry_after_s
    return head + b"content-length: %d\r\nconnection: keep-alive\r\n\r\n" % len(body) + body


def messages(host: str, path: str = "/v1/chat/completions",
             user_agent: str = "trafficgen (plaintext lab mode)",
             retry_after_s: int = 1) -> list[tuple[bytes, bytes]]:
    """The templates of the kinds K_REQUEST..K_ERROR503, in order."""
    head = (f"POST {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: {user_agent}\r\n"
            f"accept: text/event-stream\r\ncontent-type: application/json\r\n"
            f"content-length: ").encode()
    body_open = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"'
    req = _Msg().fixed(head).field(DEC, DEC_WIDTH).fixed(b"\r\n\r\n" + body_open)
    req.base(len(head) + DEC_WIDTH + 4)
    out = [req.done(b'"}]}')]
    for kind in (K_FIRST_EVENT, K_EVENT):
        m = _chunk(RESPONSE_HEAD if kind == K_FIRST_EVENT else b"", EVENT_OPEN, EVENT_CLOSE)
        out.append(m.done(m.suffix))
    out.append(_fixed_chunk(b"", b"data: [DONE]\n\n", b"0\r\n\r\n"))
    out.append(_fixed_chunk(b"", b": keep-alive\n\n"))
    out.append(_fixed_chunk(RESPONSE_HEAD, b": keep-alive\n\n"))
    for status in (429, 503):
        msg = error_answer(status, retry_after_s)
        out.append(_Msg().fixed(msg[:-2]).done(msg[-2:]))
    return out


def _fixed_chunk(head: bytes, body: bytes, trailer: bytes = b"") -> tuple[bytes, bytes]:
    """A chunk of fixed data (no filler): its write is exactly the template."""
    m = _chunk(head, b"", body, trailer)
    return m.done(m.suffix)


class Table:
    """Templates of a plaintext model (layouts 1..KINDS), in the ``tls.Templates`` layout,
    and each kind's shortest write (the whole template: prefix and suffix)."""

    def __init__(self, host: str, retry_after_s: int = 1):
        parts = [(b"", b"")] + messages(host, retry_after_s=retry_after_s)
        self.data = np.frombuffer(b"".join(p[0] for p in parts), np.uint8).copy()
        self.mask = np.frombuffer(b"".join(p[1] for p in parts), np.uint8).copy()
        lens = [len(p[0]) for p in parts]
        self.start = np.cumsum([0] + lens[:-1]).astype(np.int64)
        self.length = np.array(lens, np.int64)
        self.variants: list = []  # none: no TLS (see models.common.PlainPlan)
