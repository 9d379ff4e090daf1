"""Client profiles: what a named TLS client stack puts in its ClientHello, as data.

Each profile is a row of cipher suites, extension order, groups, key shares, signature
algorithms, supported versions, ALPN offer, GREASE and padding behaviour; ``client_hello``
turns a profile, a server name and an ALPN offer into a ClientHello record with holes (mask 0)
for what a real client draws per connection (random, session id, key shares, ECH GREASE), so
the frame encoder fills them from the random pool and bytes stay a function of the seed.

GREASE values (RFC 8701) are fixed per position (a real browser draws them per connection;
JA4 ignores them either way), and Chrome's extension order is one fixed permutation (Chrome
shuffles per connection; JA4 sorts extensions, so the fingerprint is the same).

``ja4`` is the JA4 fingerprint (FoxIO) of the profile's ClientHello with a server name and its
default ALPN: tests compute it with an independent parser and read it back from nDPI.
Sources: ``curl`` and ``python`` are the ClientHellos of curl 7.88.1 / OpenSSL 3.0 (Debian 12)
and of CPython 3.11's ``ssl.create_default_context()`` with ALPN http/1.1 (what httpx, the
openai and anthropic SDKs' HTTP stack, sends with HTTP/2 off), captured on loopback; ``chrome``
(131+, ALPS codepoint 0x44cd, X25519MLKEM768) and ``firefox`` (132+) match the JA4 strings
published for those browsers (t13d1516h2_8daaf6152771_d8a2da3f94cd,
t13d1717h2_5b57614c22b0_3cbfd9057e0d); ``okhttp`` is modelled on OkHttp 4 over Android's
Conscrypt (BoringSSL without GREASE) and is not checked against a capture.

``quic_hello`` is the ClientHello a profile with an HTTP/3 stack (``h3``: chrome, firefox)
sends in QUIC Initials, derived from its TCP one (``quic_extensions``, ``quic_suites``);
``quic_ja4`` its JA4 ("q..."). OkHttp, curl and httpx have no HTTP/3. The session id (mask
ECHO) is bytes the ServerHello template echoes.
"""
from __future__ import annotations

import random
import re
import struct
from dataclasses import dataclass

from trafficgen.errors import TrafficgenError

GREASE = 0x0A0A  # marker in the tables: "a GREASE value here"
X25519MLKEM768, X25519, SECP256R1, SECP384R1 = 0x11EC, 0x001D, 0x0017, 0x0018
SHARE_LEN = {X25519MLKEM768: 1216, X25519: 32, SECP256R1: 65, SECP384R1: 97}

# extension types
SNI, STATUS, GROUPS, ECPF, SIGALGS, ALPN, SCT, PADDING, ETM, EMS, COMPRESS, RSL = (
    0x0000, 0x0005, 0x000A, 0x000B, 0x000D, 0x0010, 0x0012, 0x0015, 0x0016, 0x0017, 0x001B, 0x001C)
DELEG, TICKET, VERSIONS, PSK_MODES, PHA, KEY_SHARE = 0x0022, 0x0023, 0x002B, 0x002D, 0x0031, 0x0033
PSK = 0x0029  # pre_shared_key: a resumption's last extension (``client_hello(psk=...)``)
ALPS, ECH, RENEG, QUIC_TP = 0x44CD, 0xFE0D, 0xFF01, 0x0039
# what a stack leaves out of its ClientHello over QUIC (RFC 9001: TLS 1.3 only, no TLS records):
# TLS 1.2's extended master secret, renegotiation info, EC point formats, session tickets,
# encrypt-then-MAC and padding; record_size_limit (QUIC has no TLS records)
NOT_OVER_QUIC = (EMS, RENEG, ECPF, TICKET, ETM, PADDING, RSL)

_OPENSSL_GROUPS = (X25519, SECP256R1, 0x001E, 0x0019, SECP384R1, 0x0100, 0x0101, 0x0102, 0x0103,
                   0x0104)
_OPENSSL_SIGS = (0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x0809, 0x080A, 0x080B, 0x0804, 0x0805,
                 0x0806, 0x0401, 0x0501, 0x0601, 0x0303, 0x0301, 0x0302, 0x0402, 0x0502, 0x0602)
_BSSL_SIGS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)
_BSSL_SUITES = (0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013,
                0xC014, 0x009C, 0x009D, 0x002F, 0x0035)


@dataclass(frozen=True)
class Profile:
    """One client stack's ClientHello, as data (see the module docstring)."""

    name: str
    description: str
    suites: tuple[int, ...]  # in order; GREASE marks a GREASE value
    extensions: tuple[int, ...]  # in order; GREASE marks a GREASE extension
    groups: tuple[int, ...]
    shares: tuple[int, ...]  # key_share entries (groups), in order
    sigalgs: tuple[int, ...]
    versions: tuple[int, ...]
    alpn: tuple[str, ...]  # the default offer
    ecpf: bytes = b"\x01\x00"  # ec_point_formats body
    compress: tuple[int, ...] = ()  # compress_certificate algorithms
    pad512: bool = False  # pad a hello of 256-511 handshake bytes to 512 (OpenSSL, BoringSSL)
    ja4: str = ""
    h3: bool = False  # the stack speaks HTTP/3 (has a QUIC variant: ``quic_hello``)
    quic_ja4: str = ""  # JA4 of its ClientHello over QUIC (with a server name)

    @property
    def hybrid(self) -> bool:
        return X25519MLKEM768 in self.shares


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("chrome", "Chrome 131+ on desktop (BoringSSL): GREASE, X25519MLKEM768, ALPS, ECH GREASE",
            (GREASE,) + _BSSL_SUITES,
            (GREASE, SNI, EMS, RENEG, GROUPS, ECPF, TICKET, ALPN, STATUS, SIGALGS, SCT, KEY_SHARE,
             PSK_MODES, VERSIONS, COMPRESS, ALPS, ECH, GREASE),
            (GREASE, X25519MLKEM768, X25519, SECP256R1, SECP384R1), (GREASE, X25519MLKEM768, X25519),
            _BSSL_SIGS, (GREASE, 0x0304, 0x0303), ("h2", "http/1.1"), compress=(2,),
            ja4="t13d1516h2_8daaf6152771_d8a2da3f94cd", h3=True,
            quic_ja4="q13d0313h3_55b375c5d22e_05ee7905d32b"),
    Profile("firefox", "Firefox 132+ (NSS): X25519MLKEM768, no GREASE, ECH GREASE",
            (0x1301, 0x1303, 0x1302, 0xC02B, 0xC02F, 0xCCA9, 0xCCA8, 0xC02C, 0xC030, 0xC00A, 0xC009,
             0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035),
            (SNI, EMS, RENEG, GROUPS, ECPF, TICKET, ALPN, STATUS, DELEG, SCT, KEY_SHARE, VERSIONS,
             SIGALGS, PSK_MODES, RSL, COMPRESS, ECH),
            (X25519MLKEM768, X25519, SECP256R1, SECP384R1, 0x0019, 0x0100, 0x0101),
            (X25519MLKEM768, X25519, SECP256R1),
            (0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0203, 0x0201),
            (0x0304, 0x0303), ("h2", "http/1.1"), compress=(1, 2, 3),
            ja4="t13d1717h2_5b57614c22b0_3cbfd9057e0d", h3=True,
            quic_ja4="q13d0313h3_55b375c5d22e_6beff6cbba42"),
    Profile("curl", "curl 7.88 / OpenSSL 3.0 (Debian 12): classical X25519 share, padded to 512",
            (0x1302, 0x1303, 0x1301, 0xC02C, 0xC030, 0x009F, 0xCCA9, 0xCCA8, 0xCCAA, 0xC02B, 0xC02F,
             0x009E, 0xC024, 0xC028, 0x006B, 0xC023, 0xC027, 0x0067, 0xC00A, 0xC014, 0x0039, 0xC009,
             0xC013, 0x0033, 0x009D, 0x009C, 0x003D, 0x003C, 0x0035, 0x002F, 0x00FF),
            (SNI, ECPF, GROUPS, ALPN, ETM, EMS, PHA, SIGALGS, VERSIONS, PSK_MODES, KEY_SHARE, PADDING),
            _OPENSSL_GROUPS, (X25519,), _OPENSSL_SIGS, (0x0304, 0x0303, 0x0302, 0x0301),
            ("h2", "http/1.1"), ecpf=b"\x03\x00\x01\x02", pad512=True,
            ja4="t13d3112h2_e8f1e7e78f70_b26ce05bbdd6"),
    Profile("python", "CPython 3.11 ssl + OpenSSL 3.0 as httpx uses it (openai, anthropic SDKs)",
            (0x1302, 0x1303, 0x1301, 0xC02C, 0xC030, 0xC02B, 0xC02F, 0xCCA9, 0xCCA8, 0xC024, 0xC028,
             0xC023, 0xC027, 0x009F, 0x009E, 0x006B, 0x0067, 0x00FF),
            (SNI, ECPF, GROUPS, TICKET, ALPN, ETM, EMS, SIGALGS, VERSIONS, PSK_MODES, KEY_SHARE,
             PADDING),
            _OPENSSL_GROUPS, (X25519,), _OPENSSL_SIGS, (0x0304, 0x0303), ("http/1.1",),
            ecpf=b"\x03\x00\x01\x02", pad512=True, ja4="t13d1812h1_85036bcba153_d41ae481755e"),
    Profile("okhttp", "OkHttp 4 on Android 14 (Conscrypt/BoringSSL, no GREASE): a mobile app",
            _BSSL_SUITES,
            (SNI, EMS, RENEG, GROUPS, ECPF, TICKET, ALPN, STATUS, SIGALGS, KEY_SHARE, PSK_MODES,
             VERSIONS, PADDING),
            (X25519, SECP256R1, SECP384R1), (X25519,), _BSSL_SIGS + (0x0201,), (0x0304, 0x0303),
            ("h2", "http/1.1"), pad512=True, ja4="t13d1513h2_8daaf6152771_eca864cca44a"),
)}
# stacks that permute their extensions per connection (Chrome 110+ turns BoringSSL's on)
PERMUTED = ("chrome",)
MAX_PROFILES = 4  # per class: the engine's template table has room for so many per endpoint
ECH_PAYLOAD = 208  # the GREASE ECH payload's length (BoringSSL and NSS pick one of a few)
_GREASE_VALUES = (0x0A0A, 0x3A3A, 0x5A5A, 0x7A7A, 0x9A9A, 0xBABA, 0xDADA, 0xFAFA)
_HOST = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")


def profile(name: str) -> Profile:
    if name not in PROFILES:
        raise TrafficgenError(f"unknown client profile {name!r} (known: {', '.join(PROFILES)})")
    return PROFILES[name]


def check_hostname(v) -> str:
    """A DNS hostname for SNI (RFC 6066: no IP literals, no trailing dot), lower case."""
    if not isinstance(v, str) or not _HOST.match(v.lower()):
        raise ValueError(f"expected a DNS hostname like 'api.openai.com', got {v!r}")
    return v.lower()


def check_alpn(v) -> tuple[str, ...]:
    """An ALPN offer: a list of protocol names (``["h2", "http/1.1"]``); [] is the profile's."""
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or not all(
            isinstance(x, str) and 0 < len(x) < 256 and x.isascii() and x.isprintable() for x in v):
        raise ValueError(f"expected a list of ALPN protocol names like ['h2', 'http/1.1'], got {v!r}")
    return tuple(v)


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


def check_profiles(v) -> tuple[tuple[str, float], ...]:
    """``"chrome"`` or ``{ chrome = 0.6, firefox = 0.3, okhttp = 0.1 }`` (weights of the
    clients using each profile): ((name, share), ...), shares summing to 1."""
    if isinstance(v, str):
        v = {v: 1.0}
    if not isinstance(v, dict) or not 1 <= len(v) <= MAX_PROFILES:
        raise ValueError(f"expected a profile name or a table of 1 to {MAX_PROFILES} profile "
                         f"weights like {{ chrome = 0.7, firefox = 0.3 }} (profiles: "
                         f"{', '.join(PROFILES)}), got {v!r}")
    for name, w in v.items():
        if name not in PROFILES:
            raise ValueError(f"unknown client profile {name!r} (known: {', '.join(PROFILES)})")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < float("inf"):
            raise ValueError(f"{name}: expected a weight >= 0, got {w!r}")
    total = float(sum(v.values()))
    if total <= 0:
        raise ValueError(f"the weights must not all be 0, got {v!r}")
    return tuple((name, w / total) for name, w in v.items())
