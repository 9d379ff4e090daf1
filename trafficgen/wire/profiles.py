"""Client profiles: what a named TLS client stack puts in its ClientHello, as data.

Each profile is a row of cipher suites, extension order, groups, key shares, signature
algorithms, supported versions, ALPN offer, GREASE and padding behaviour; ``wire.hello`` turns
a profile, a server name and an ALPN offer into a ClientHello record with holes (mask 0) for
what a real client draws per connection (random, session id, key shares, ECH GREASE), so the
frame encoder fills them from the random pool and bytes stay a function of the seed.

GREASE values (RFC 8701) are drawn per connection where a stack has them, and the stacks in
``PERMUTED`` (Chrome 110+) shuffle their extension order per connection (``hello.permuted``);
JA4 ignores GREASE and sorts extensions, so the fingerprint is the profile's either way.

``ja4`` is the JA4 fingerprint (FoxIO) of the profile's ClientHello with a server name and its
default ALPN: tests compute it with an independent parser and read it back from nDPI.
Sources: ``curl`` and ``python`` are the ClientHellos of curl 7.88.1 / OpenSSL 3.0 (Debian 12)
and of CPython 3.11's ``ssl.create_default_context()`` with ALPN http/1.1 (what httpx, the
openai and anthropic SDKs' HTTP stack, sends with HTTP/2 off), captured on loopback; ``chrome``
(131+, ALPS codepoint 0x44cd, X25519MLKEM768) and ``firefox`` (132+) match the JA4 strings
published for those browsers (t13d1516h2_8daaf6152771_d8a2da3f94cd,
t13d1717h2_5b57614c22b0_3cbfd9057e0d); ``okhttp`` is modelled on OkHttp 4 over Android's
Conscrypt (BoringSSL without GREASE) and is not checked against a capture.

``hello.quic_hello`` is the ClientHello a profile with an HTTP/3 stack (``h3``: chrome, firefox)
sends in QUIC Initials, derived from its TCP one (``quic_extensions``, ``quic_suites``);
``quic_ja4`` its JA4 ("q..."). OkHttp, curl and httpx have no HTTP/3. The session id (mask
ECHO) is bytes the ServerHello template echoes.
"""
from __future__ import annotations

import re
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
# The operating systems each profile's clients run on, with their shares (kernels/stacks.py codes:
# linux 0, android 1, windows 2, macos 3, ios 4). Desktop browsers: StatCounter's desktop OS
# share, 2024-2025 (Windows ~71%, macOS ~16%, Linux ~4% of the rest known; Firefox's users lean
# more to Linux: Firefox Hardware Report); OkHttp is Android's HTTP client; curl and the Python
# SDKs run on Linux servers and containers. Servers run Linux.
PROFILE_OS: dict[str, tuple[tuple[int, float], ...]] = {
    "chrome": ((2, 0.72), (3, 0.20), (0, 0.08)), "firefox": ((2, 0.70), (3, 0.12), (0, 0.18)),
    "curl": ((0, 1.0),), "python": ((0, 1.0),), "okhttp": ((1, 1.0),)}
# stacks that permute their extensions per connection (Chrome 110+ turns BoringSSL's on)
PERMUTED = ("chrome",)
MAX_PROFILES = 4  # per class: the engine's template table has room for so many per endpoint
ECH_PAYLOAD = 208  # the GREASE ECH payload's length (BoringSSL and NSS pick one of a few)
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
