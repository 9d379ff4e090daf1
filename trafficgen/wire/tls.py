"""TLS 1.3 byte templates for the handshake writes, with holes for per-connection randomness.

The frame kernel fills a write's bytes as: a template prefix (this module) whose mask marks
bytes to take from the random pool (randoms, key shares) or, for the session id both hellos
carry, from the connection's echo bytes (mask ECHO), then TLS 1.3 application-data records
(``17 03 03 len``) over opaque bytes, as encrypted records look.
Templates are structurally valid, so tshark dissects ClientHello and ServerHello cleanly.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from trafficgen.errors import TrafficgenError

from .hello import Buf, client_hello
from .profiles import GREASE, PERMUTED, profile

GROUP_X25519MLKEM768, GROUP_X25519, GROUP_SECP256R1 = 0x11EC, 0x001D, 0x0017
HYBRID_CLIENT_SHARE, HYBRID_SERVER_SHARE, X25519_SHARE = 1216, 1120, 32
CCS = bytes.fromhex("140303000101")
MAX_VARIANTS = 7  # (endpoint, client profile) pairs per model: 5 layouts each, ids fit a byte
LAYOUTS = 5  # per variant (kernels/tlsvar.py: LAYOUTS)
PSK = 0x0029  # pre_shared_key
ORDERINGS = 64  # extension orders per permuting profile's ClientHello (a power of 2, at most 2**15)
COPIES = 0x40  # mask code of a template's first byte: ``2 ** (mask & 0xF)`` copies follow (frames.py)
RESUMED_PLAIN = 60  # EncryptedExtensions (ALPN) + Finished (36) in one record (est)
# Which client stacks resume TLS 1.3 sessions on a repeat connection (a PSK from a
# NewSessionTicket): browsers and OkHttp (Conscrypt's session cache) do; the curl command line
# starts a new process (an empty cache) per call, and Python's ssl resumes only when the
# application passes ``session=``, which httpx (the openai and anthropic SDKs) does not.
RESUMES = {"chrome": True, "firefox": True, "okhttp": True, "curl": False, "python": False}


def ext(etype: int, body: bytes) -> bytes:
    return struct.pack("!HH", etype, len(body)) + body


@dataclass(frozen=True)
class Variant:
    """One kind of connection a model makes: a client profile to a server name, offering an
    ALPN list (empty: the profile's own). ``h2``: the server picks HTTP/2 (first offered)."""

    profile: str
    sni: str
    alpn: tuple[str, ...] = ()

    @property
    def offer(self) -> tuple[str, ...]:
        return self.alpn or profile(self.profile).alpn

    @property
    def h2(self) -> bool:
        return self.offer[0] == "h2"

    @property
    def resumes(self) -> bool:
        return RESUMES.get(self.profile, False)

    def hello(self, psk: int = 0, order: int = 0, drawn: bool = False) -> tuple[bytes, bytes]:
        """The ClientHello; ``psk`` > 0: a resumption's, offering a ticket of ``psk`` bytes;
        ``order``, ``drawn``: see ``profiles.client_hello``."""
        return client_hello(profile(self.profile), self.sni, self.alpn, psk, order, drawn)

    def hellos(self, psk: int = 0) -> tuple[bytes, bytes, int]:
        """The ClientHello as the template table holds it: (bytes, mask, length of one). A
        profile with GREASE draws it per connection (mask codes); one that permutes its
        extensions per connection has ``ORDERINGS`` of them one after the other, the first
        byte's mask ``COPIES | log2(ORDERINGS)`` (the frame encoder picks one per connection)."""
        p = profile(self.profile)
        drawn = GREASE in p.suites
        if p.name not in PERMUTED:
            data, mask = self.hello(psk, 0, drawn)
            return data, mask, len(data)
        copies = [self.hello(psk, 1 + i, drawn) for i in range(ORDERINGS)]
        data = b"".join(d for d, _ in copies)
        mask = bytearray(b"".join(m for _, m in copies))
        mask[0] = COPIES | ORDERINGS.bit_length() - 1
        return data, bytes(mask), len(copies[0][0])


def ticket_identity(ticket_bytes: int) -> int:
    """The ticket's size inside a NewSessionTicket (RFC 8446 4.6.1) when the server sends two
    in ``ticket_bytes`` of TLS records: each message less its type and length (4), lifetime
    (4), age_add (4), an 8-byte nonce (9), the ticket's length (2) and no extensions (2)."""
    return max(16, (ticket_bytes - 22) // 2 - 25)


def server_hello_prefix(hybrid: bool, psk: bool = False) -> tuple[bytes, bytes]:
    """ServerHello record + ChangeCipherSpec: the fixed start of the server's flight; ``psk``:
    it accepts the client's first PSK (pre_shared_key, selected_identity 0; RFC 8446 4.2.11)."""
    share = HYBRID_SERVER_SHARE if hybrid else X25519_SHARE
    group = GROUP_X25519MLKEM768 if hybrid else GROUP_X25519
    exts_len = 6 + 4 + 4 + share + (6 if psk else 0)
    body_len = 2 + 32 + 33 + 2 + 1 + 2 + exts_len
    b = Buf()
    b.fixed(struct.pack("!BHH", 0x16, 0x0303, body_len + 4) + struct.pack("!I", (2 << 24) | body_len)
            + b"\x03\x03")
    b.hole(32)
    b.fixed(b"\x20")
    b.echo(32)  # legacy_session_id_echo: the client's session id (RFC 8446 4.1.3)
    b.fixed(b"\x13\x01\x00" + struct.pack("!H", exts_len) + ext(0x002B, b"\x03\x04")
            + struct.pack("!HHHH", 0x0033, 4 + share, group, share))
    b.hole(share)
    if psk:
        b.fixed(ext(PSK, b"\x00\x00"))
    b.fixed(CCS)
    return bytes(b.data), bytes(b.mask)


class Templates:
    """Concatenated templates and masks of a model's variants: variant ``v``'s layouts are
    ``5 v + 1`` (ClientHello), ``5 v + 2`` (ServerHello + CCS), ``5 v + 3`` (the client's
    CCS), ``5 v + 4`` (a resumption's ClientHello, with a PSK of a ticket of ``psk`` bytes)
    and ``5 v + 5`` (the ServerHello accepting it + CCS); layout 0 is "no template" (see
    kernels/chat.py and kernels/tlsvar.py)."""

    def __init__(self, variants: list[Variant], flight_wire: int, where: str = "chat",
                 psk: int = 32):
        if not 1 <= len(variants) <= MAX_VARIANTS:
            raise TrafficgenError(f"{where}: {len(variants)} kinds of TLS connection (client "
                                  f"profiles x services); at most {MAX_VARIANTS} per class")
        self.variants = list(variants)
        parts = [(b"", b"")]
        for v in variants:
            hybrid = profile(v.profile).hybrid
            sh, sh_mask = server_hello_prefix(hybrid)
            if flight_wire < len(sh) + 23:
                raise TrafficgenError(f"{where}.server_flight_bytes: {flight_wire} is too small "
                                      f"for the server's flight (at least {len(sh) + 23} bytes)")
            rsh, rsh_mask = server_hello_prefix(hybrid, True)
            parts += [v.hellos(), (sh, sh_mask, len(sh)), (CCS, b"\x01" * len(CCS), len(CCS)),
                      v.hellos(psk), (rsh, rsh_mask, len(rsh))]
        parts[0] = (b"", b"", 0)
        self.data = np.frombuffer(b"".join(p[0] for p in parts), dtype=np.uint8).copy()
        self.mask = np.frombuffer(b"".join(p[1] for p in parts), dtype=np.uint8).copy()
        spans = [len(p[0]) for p in parts]
        self.start = np.cumsum([0] + spans[:-1]).astype(np.int64)
        self.length = np.array([p[2] for p in parts], dtype=np.int64)


class CombinedTemplates:
    """Several models' templates in one table for the frame encoder: layout 0 is "no
    template"; model k's layout j (1..PER_MODEL) is at ``PER_MODEL * k + j`` (its
    ``layout_base``); a model with fewer layouts leaves the rest of its slots empty."""

    PER_MODEL = LAYOUTS * MAX_VARIANTS

    def __init__(self, parts: list):
        data, mask, start, length = [np.zeros(0, np.uint8)], [np.zeros(0, np.uint8)], [0], [0]
        offset = 0
        self.hello_variant: dict[int, Variant] = {}  # ClientHello layout -> its variant
        for k, t in enumerate(parts):
            if isinstance(t, Templates):
                for v, var in enumerate(t.variants):
                    for j in (1, 4):  # full and resumed: the next layout is the flight
                        self.hello_variant[self.PER_MODEL * k + LAYOUTS * v + j] = var
            n = t.length.shape[0] - 1
            if n > self.PER_MODEL:
                raise ValueError(f"a model has {n} template layouts, more than {self.PER_MODEL}")
            data.append(t.data)
            mask.append(t.mask)
            start.extend(int(offset + x) for x in t.start[1:])
            length.extend(int(x) for x in t.length[1:])
            start.extend([0] * (self.PER_MODEL - n))
            length.extend([0] * (self.PER_MODEL - n))
            offset += t.data.shape[0]
        self.data = np.concatenate(data)
        self.mask = np.concatenate(mask)
        self.start = np.array(start, np.int64)
        self.length = np.array(length, np.int64)
