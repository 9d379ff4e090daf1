"""ClientHello bytes of a client profile (``profiles.Profile``): over TCP (``client_hello``:
a record with holes for what a real client draws per connection -- random, session id, key
shares, ECH GREASE, and for GREASE stacks the GREASE values -- and, resuming, a PSK of a ticket)
and over QUIC (``quic_hello``). ``Buf`` is bytes with a parallel mask the frame encoder reads
(kernels/frames.py).

Chrome (110+) permutes its extensions per connection (``permuted``: ``wire.tls.Templates``
holds ``ORDERINGS`` of them and the encoder picks one per connection) and draws its GREASE
values per connection (RFC 8701; mask codes GREASE_CODE/GREASE_OTHER at BoringSSL's GREASE
indices); JA3 then varies and JA4, which sorts and skips GREASE, does not. A plain
``client_hello`` (order 0, not drawn) is the profile's own order with fixed GREASE values.
"""
from __future__ import annotations

import random
import struct

from trafficgen.errors import TrafficgenError

from .profiles import (
    ALPN,
    ALPS,
    COMPRESS,
    DELEG,
    ECH,
    ECH_PAYLOAD,
    ECPF,
    EMS,
    ETM,
    GREASE,
    GROUPS,
    KEY_SHARE,
    NOT_OVER_QUIC,
    PADDING,
    PERMUTED,
    PHA,
    PSK,
    PSK_MODES,
    QUIC_TP,
    RENEG,
    RSL,
    SCT,
    SHARE_LEN,
    SIGALGS,
    SNI,
    STATUS,
    TICKET,
    VERSIONS,
    Profile,
)

_GREASE_VALUES = (0x0A0A, 0x3A3A, 0x5A5A, 0x7A7A, 0x9A9A, 0xBABA, 0xDADA, 0xFAFA)

ECHO = 4  # mask code: a per-connection byte both ends share (kernels/frames.py: ECHO)
# mask codes of a GREASE value drawn per connection (RFC 8701; kernels/frames.py): both bytes
# are (pool byte ``data`` past the connection's echo offset & 0xF0) | 0x0A, as BoringSSL draws
# them from its per-connection seed; GREASE_OTHER: the second GREASE extension, moved by 0x1010
# when it equals the first (the byte before its seed byte)
GREASE_CODE, GREASE_OTHER = 6, 7
GREASE_SEED = 32  # the seed bytes start after the 32 session-id echo bytes
# BoringSSL's GREASE indices (ssl_grease_index_t) of this module's GREASE uses g(i)
_BSSL_GREASE = {0: 0, 1: 1, 11: 2, 12: 3, 2: 4}  # cipher, group, extension 1 and 2, version


class Buf:
    """Bytes with a parallel mask: 1 = fixed template byte, 0 = random hole, ECHO = byte
    ``data`` of the connection's echo bytes (the same in both directions' templates)."""

    def __init__(self):
        self.data, self.mask = bytearray(), bytearray()

    def fixed(self, b: bytes):
        self.data += b
        self.mask += b"\x01" * len(b)

    def hole(self, n: int):
        self.data += b"\x00" * n
        self.mask += b"\x00" * n

    def echo(self, n: int):
        self.data += bytes(range(n))
        self.mask += bytes([ECHO]) * n

    def grease(self, i: int):
        """A GREASE value drawn per connection: BoringSSL's GREASE index ``i``."""
        self.data += bytes([GREASE_SEED + i]) * 2
        self.mask += bytes([GREASE_OTHER if i == 3 else GREASE_CODE]) * 2

    def __iadd__(self, other: "Buf"):
        self.data += other.data
        self.mask += other.mask
        return self


def _u16s(vals) -> bytes:
    return struct.pack(f"!{len(vals)}H", *vals)


def vec16(body: bytes) -> bytes:
    return struct.pack("!H", len(body)) + body


class _Grease:
    """The GREASE values of one ClientHello: ``value(i)`` fixed ones (one per use ``i``, in
    order of first use), or, ``drawn``, ``put`` writes a per-connection one (mask codes)."""

    def __init__(self, drawn: bool):
        self.drawn, self.values, self.free = drawn, {}, iter(_GREASE_VALUES)

    def value(self, i: int) -> int:
        return self.values.setdefault(i, next(self.free))

    def put(self, b: Buf, i: int):
        if self.drawn:
            b.grease(_BSSL_GREASE[i])
        else:
            b.fixed(struct.pack("!H", self.value(i)))

    def u16s(self, vals, i: int) -> Buf:
        """``vals`` as u16s, GREASE entries as GREASE use ``i``."""
        b = Buf()
        for v in vals:
            if v == GREASE:
                self.put(b, i)
            else:
                b.fixed(struct.pack("!H", v))
        return b


def _ext_body(p: Profile, t: int, sni: bytes, alpn: tuple[str, ...], g: _Grease, quic: bool) -> Buf:
    """Extension ``t``'s body for profile ``p`` (``g``: its GREASE values; ``quic``: TLS 1.3
    only, ALPS for h3)."""
    b = Buf()
    if t == SNI:
        b.fixed(vec16(b"\x00" + vec16(sni)))
    elif t == ALPN:
        b.fixed(vec16(b"".join(bytes([len(a)]) + a.encode() for a in alpn)))
    elif t == GROUPS:
        b.fixed(struct.pack("!H", 2 * len(p.groups)))
        b += g.u16s(p.groups, 1)
    elif t == ECPF:
        b.fixed(p.ecpf)
    elif t == SIGALGS:
        b.fixed(vec16(_u16s(p.sigalgs)))
    elif t == VERSIONS:
        v = g.u16s([x for x in p.versions if not quic or x in (GREASE, 0x0304)], 2)
        b.fixed(bytes([len(v.data)]))
        b += v
    elif t == PSK_MODES:
        b.fixed(b"\x01\x01")
    elif t == RENEG:
        b.fixed(b"\x00")
    elif t == STATUS:
        b.fixed(b"\x01\x00\x00\x00\x00")
    elif t == COMPRESS:
        b.fixed(bytes([2 * len(p.compress)]) + _u16s(p.compress))
    elif t == ALPS:
        b.fixed(vec16(b"\x02h3" if quic else b"\x02h2"))
    elif t == DELEG:
        b.fixed(vec16(_u16s((0x0403, 0x0503, 0x0603, 0x0203))))
    elif t == RSL:
        b.fixed(b"\x40\x01")
    elif t == KEY_SHARE:
        shares = [(s, 1 if s == GREASE else SHARE_LEN[s]) for s in p.shares]
        b.fixed(struct.pack("!H", sum(4 + n for _, n in shares)))
        for group, n in shares:
            b += g.u16s((group,), 1)
            b.fixed(struct.pack("!H", n))
            if n == 1:
                b.fixed(b"\x00")  # a GREASE share is one zero byte (BoringSSL)
            else:
                b.hole(n)
    elif t == ECH:  # GREASE ECH: outer, HKDF-SHA256 / AES-128-GCM, random id, enc, payload
        b.fixed(b"\x00\x00\x01\x00\x01")
        b.hole(1)
        b.fixed(b"\x00\x20")
        b.hole(32)
        b.fixed(struct.pack("!H", ECH_PAYLOAD))
        b.hole(ECH_PAYLOAD)
    elif t not in (SCT, ETM, EMS, TICKET, PHA):  # the empty ones
        raise AssertionError(f"no body for extension {t:#06x}")
    return b


def _psk_ext(ticket: int) -> Buf:
    """pre_shared_key (RFC 8446 4.2.11), the last extension: one identity (an opaque ticket of
    ``ticket`` bytes and its obfuscated_ticket_age) and its binder (HMAC-SHA256: 32 bytes)."""
    b = Buf()
    b.fixed(struct.pack("!HHHH", PSK, 2 + 2 + ticket + 4 + 2 + 1 + 32, 2 + ticket + 4, ticket))
    b.hole(ticket + 4)
    b.fixed(struct.pack("!HB", 33, 32))
    b.hole(32)
    return b


def permuted(p: Profile, order: int) -> tuple[int, ...]:
    """``p``'s extensions in its ``order``-th permutation (Chrome 110+ / BoringSSL's
    ``permute_extensions``: every extension shuffled per connection but the GREASE ones, which
    stay first and last, and padding and pre_shared_key, added after them); order 0 or a
    profile that does not permute: its own order."""
    if order == 0 or p.name not in PERMUTED:
        return p.extensions
    inner = [t for t in p.extensions if t != GREASE]
    random.Random(f"{p.name}/{order}").shuffle(inner)
    head = (GREASE,) if p.extensions[0] == GREASE else ()
    tail = (GREASE,) if p.extensions[-1] == GREASE else ()
    return head + tuple(inner) + tail


def _hello_body(p: Profile, sni: str, alpn: tuple[str, ...], quic: bool, psk: int = 0,
                order: int = 0, drawn: bool = False) -> Buf:
    """The ClientHello handshake message of ``p`` (type, length, body), over TCP or QUIC;
    ``psk`` > 0: resuming with a ticket of so many bytes (pre_shared_key last); ``order``: its
    extensions' permutation (``permuted``); ``drawn``: GREASE values drawn per connection."""
    g = _Grease(drawn)
    n_grease_ext = 0
    exts = Buf()
    for t in (quic_extensions(p) if quic else permuted(p, order)):
        if t == PADDING or (t == SNI and not sni):
            continue
        if t == GREASE:
            n_grease_ext += 1
            last = n_grease_ext > 1
            body = b"\x00" if last else b""
            g.put(exts, 10 + n_grease_ext)
            exts.fixed(struct.pack("!H", len(body)) + body)
            continue
        body = _quic_params() if t == QUIC_TP else _ext_body(p, t, sni.encode(), alpn, g, quic)
        exts.fixed(struct.pack("!HH", t, len(body.data)))
        exts += body
    suites = g.u16s(quic_suites(p) if quic else p.suites, 0)
    sid = 0 if quic else 32  # RFC 9001 8.4: a QUIC ClientHello's legacy_session_id is empty
    # handshake: type+len 4, version 2, random 32, session id, suites, compression 2, exts
    psk_ext = _psk_ext(psk) if psk else Buf()
    hs_len = 4 + 2 + 32 + 1 + sid + 2 + len(suites.data) + 2 + 2 + len(exts.data) + len(psk_ext.data)
    if p.pad512 and not quic and 0xFF < hs_len < 0x200:  # (OpenSSL counts the PSK in)
        pad = max(0x200 - hs_len - 4, 1)
        exts.fixed(struct.pack("!HH", PADDING, pad) + b"\x00" * pad)
        hs_len += 4 + pad
    exts += psk_ext
    b = Buf()
    b.fixed(struct.pack("!I", (1 << 24) | (hs_len - 4)) + b"\x03\x03")
    b.hole(32)
    b.fixed(bytes([sid]))
    b.echo(sid)  # legacy_session_id: the server echoes it
    b.fixed(struct.pack("!H", len(suites.data)))
    b += suites
    b.fixed(b"\x01\x00" + struct.pack("!H", len(exts.data)))
    b += exts
    assert len(b.data) == hs_len
    return b


def client_hello(p: Profile, sni: str, alpn: tuple[str, ...] = (), psk: int = 0, order: int = 0,
                 drawn: bool = False) -> tuple[bytes, bytes]:
    """Profile ``p``'s ClientHello record (bytes, mask) to ``sni`` ("" for none) offering
    ``alpn`` (() for the profile's own offer); ``psk``: resuming with a ticket of so many
    bytes; ``order``: its extensions' permutation (``permuted``); ``drawn``: its GREASE values
    drawn per connection by the frame encoder (mask codes GREASE_CODE, GREASE_OTHER) rather
    than fixed."""
    body = _hello_body(p, sni, alpn or p.alpn, False, psk, order, drawn)
    b = Buf()
    b.fixed(struct.pack("!BHH", 0x16, 0x0301, len(body.data)))
    b += body
    return bytes(b.data), bytes(b.mask)


def quic_extensions(p: Profile) -> tuple[int, ...]:
    """``p``'s extensions over QUIC: its TCP order less NOT_OVER_QUIC, with the QUIC transport
    parameters before ECH (or last; GREASE stays last)."""
    exts = [t for t in p.extensions if t not in NOT_OVER_QUIC]
    at = exts.index(ECH) if ECH in exts else len(exts) - (exts[-1] == GREASE)
    return tuple(exts[:at] + [QUIC_TP] + exts[at:])


def quic_suites(p: Profile) -> tuple[int, ...]:
    """``p``'s cipher suites over QUIC: the TLS 1.3 ones (and its GREASE value)."""
    return tuple(s for s in p.suites if s == GREASE or s >> 8 == 0x13)


SCID = 5  # mask code: byte ``data`` of the client's source connection id (quic_initial)
CID_LEN = 8


def _quic_params() -> Buf:
    """quic_transport_parameters (RFC 9000 18.2): idle timeout 30 s, max UDP payload 1472,
    connection and stream flow-control windows (16 MiB, 6 MiB), 100 bidi / 103 uni streams,
    initial_source_connection_id (the client's SCID, mask SCID)."""
    b = Buf()
    b.fixed(bytes.fromhex("01048000753003024" "5c004048100000005048060000006048060000007048060000008"
                          "024064090240670f") + bytes([CID_LEN]))
    b.data += bytes(range(CID_LEN))
    b.mask += bytes([SCID]) * CID_LEN
    return b


def quic_hello(p: Profile, sni: str) -> tuple[bytes, bytes]:
    """Profile ``p``'s ClientHello as its stack sends it in QUIC Initials (the handshake
    message: QUIC has no TLS records) to ``sni``, ALPN h3: TLS 1.3 suites only, no session id,
    no TLS 1.2 extensions or padding (the Initial pads), plus quic_transport_parameters.
    Mask: 1 fixed, 0 random, SCID the client's connection id."""
    if not p.h3:
        raise TrafficgenError(f"client profile {p.name!r} has no HTTP/3 stack")
    b = _hello_body(p, sni, ("h3",), True)
    return bytes(b.data), bytes(b.mask)
