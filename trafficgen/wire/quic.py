"""QUIC Initial packets sealed as RFC 9001 says, so any dissector decrypts them as it would a
real capture's: keys from the client's first destination connection id, AEAD_AES_128_GCM,
AES header protection, all through the ``cryptography`` package (never hand-rolled).

The client's Initials carry the ClientHello of the connection's client profile as that stack
sends it over QUIC (``tls_profiles.quic_hello``: ALPN h3, QUIC transport parameters, the
profile's groups and key shares) in CRYPTO frames, split evenly over the connection's client
Initials (all of one size, ``crypto_room`` bytes each by packet number), then PADDING; the
server's Initial an ACK and its ServerHello (the client's hybrid group if it offered one). One
library call per Initial packet, a few per QUIC connection (Handshake and 1-RTT packets stay
opaque: no endpoint's keys exist for them). Randomness comes from the flow key."""
from __future__ import annotations

import struct
from functools import lru_cache

import numpy as np

from trafficgen.kernels import quic as kq
from trafficgen.kernels.rng import fill_bytes

from .hello import SCID, vec16
from .tls import GROUP_X25519, GROUP_X25519MLKEM768, HYBRID_SERVER_SHARE, X25519_SHARE, ext

SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
PN_LEN = 2
HEAD = 1 + 4 + 1 + 8 + 1 + 8 + 1  # long header to the token length (8-byte connection ids)
CRYPTO_HEAD = 5  # CRYPTO frame: type, offset and length as two-byte varints


def expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """HKDF-Expand-Label (RFC 8446 section 7.1) with SHA-256 and an empty context."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    return HKDFExpand(hashes.SHA256(), length, info).derive(secret)


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract: HMAC-SHA256 keyed with the salt."""
    from cryptography.hazmat.primitives import hashes, hmac
    h = hmac.HMAC(salt, hashes.SHA256())
    h.update(ikm)
    return h.finalize()


@lru_cache(maxsize=4096)
def initial_keys(dcid: bytes, server: bool) -> tuple:
    """(AESGCM, iv, header-protection cipher) of one side's Initial packets."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    initial = hkdf_extract(SALT_V1, dcid)
    secret = expand_label(initial, b"server in" if server else b"client in", 32)
    hp = Cipher(algorithms.AES(expand_label(secret, b"quic hp", 16)), modes.ECB())
    return AESGCM(expand_label(secret, b"quic key", 16)), expand_label(secret, b"quic iv", 12), hp


def _varint(v: int) -> bytes:
    return bytes([v]) if v < 64 else struct.pack("!H", 0x4000 | v)


def _random(key: int, n: int, salt: int) -> bytes:
    out = np.empty(n, np.uint8)
    fill_bytes(np.uint64(key) ^ np.uint64(salt), out)
    return out.tobytes()


def cid(key: int, which: int) -> bytes:
    return struct.pack("!Q", int(kq.cid_value(np.uint64(key), which)))


def client_hello(key: int, hello: tuple[bytes, bytes]) -> bytes:
    """This connection's ClientHello in its QUIC Initials: the client profile's QUIC hello
    (``tls_profiles.quic_hello``: bytes, mask) with its holes filled from the flow key and
    the client's source connection id in its transport parameters."""
    data, mask = hello
    d = np.frombuffer(data, np.uint8).copy()
    m = np.frombuffer(mask, np.uint8)
    holes = m == 0
    d[holes] = np.frombuffer(_random(key, int(holes.sum()), 0xC11E), np.uint8)
    d[m == SCID] = np.frombuffer(cid(key, kq.CID_CLIENT), np.uint8)[d[m == SCID]]
    return d.tobytes()


def server_hello(key: int, hybrid: bool) -> bytes:
    """The server's ServerHello: X25519MLKEM768 if the client offered it a share, else X25519;
    an empty legacy_session_id_echo (the client's is empty over QUIC)."""
    share, group = ((HYBRID_SERVER_SHARE, GROUP_X25519MLKEM768) if hybrid
                    else (X25519_SHARE, GROUP_X25519))
    rnd = _random(key, 32 + share, 0x5E4E)
    exts = ext(0x002B, b"\x03\x04") + ext(0x0033, struct.pack("!HH", group, share) + rnd[32:])
    body = b"\x03\x03" + rnd[:32] + b"\x00" + b"\x13\x01" + b"\x00" + vec16(exts)
    return b"\x02" + struct.pack("!I", len(body))[1:] + body


def crypto_room(qlen: int) -> int:
    """ClientHello bytes a client Initial of ``qlen`` bytes carries (all of a connection's
    client Initials have one size: packet ``pn`` carries bytes ``pn * crypto_room``...)."""
    return qlen - HEAD - 2 - PN_LEN - 16 - CRYPTO_HEAD


def _frames(key: int, d: int, pn: int, qlen: int, room: int, hello) -> bytes:
    """The Initial's frames, padded with PADDING to ``room`` bytes (``hello``: the client's
    ClientHello bytes, or whether the server answers a hybrid share)."""
    if d == 0:
        n = crypto_room(qlen)
        off = pn * n
        data = hello[off:off + n]
        out = (b"\x06" + struct.pack("!HH", 0x4000 | off, 0x4000 | len(data)) + data) if data \
            else b"\x01"  # else PING
    else:
        data = server_hello(key, hello)[:max(0, room - 12)]
        out = b"\x02\x00\x00\x00\x00" + b"\x06\x00" + _varint(len(data)) + data  # ACK of pn 0
    return out + b"\x00" * (room - len(out))


def seal(key: int, d: int, pn: int, qlen: int, hello) -> bytes:
    """The ``qlen`` bytes of a protected Initial packet of direction ``d``, number ``pn``
    (``hello``: see ``_frames``)."""
    dcid0 = cid(key, kq.CID_CLIENT_DCID)
    if d == 0:
        dcid, scid = dcid0, cid(key, kq.CID_CLIENT)
    else:
        dcid, scid = cid(key, kq.CID_CLIENT), cid(key, kq.CID_SERVER)
    head = (bytes([0xC0 | (PN_LEN - 1)]) + struct.pack("!I", 1) + bytes([8]) + dcid + bytes([8])
            + scid + b"\x00")
    assert len(head) == HEAD
    room = qlen - len(head) - 2 - PN_LEN - 16
    head += struct.pack("!H", 0x4000 | (PN_LEN + room + 16)) + struct.pack("!H", pn & 0xFFFF)
    aead, iv, hp = initial_keys(dcid0, d == 1)
    nonce = (int.from_bytes(iv, "big") ^ pn).to_bytes(12, "big")
    body = aead.encrypt(nonce, _frames(key, d, pn, qlen, room, hello), head)
    pn_at = len(head) - PN_LEN
    sample = body[4 - PN_LEN:4 - PN_LEN + 16]
    enc = hp.encryptor()
    mask = enc.update(sample) + enc.finalize()
    first = bytes([head[0] ^ (mask[0] & 0x0F)])
    pnb = bytes(b ^ m for b, m in zip(head[pn_at:], mask[1:1 + PN_LEN]))
    return first + head[1:pn_at] + pnb + body


def seal_initials(plain, plain_off, part, cols, rows, hellos: list, hello_of_layout) -> np.ndarray:
    """Write the sealed Initial packets of a batch into its plain frames (where the rewrite
    copies them from) and return the QUIC kinds for the rewrite: Q_SEALED where done.
    An Initial's ``layout`` is its TCP write's (the ClientHello's or the server flight's);
    ``hello_of_layout[layout]`` indexes ``hellos``: (QUIC hello bytes and mask, hybrid)."""
    kind = part["segoff"].copy()
    todo = np.flatnonzero((cols["quic"][rows] != 0) & (kind == kq.Q_INITIAL))
    for i in todo:
        qlen = int(part["payload_len"][i])
        d = int(part["direction"][i])
        key = int(cols["key"][rows[i]])
        tpl, hybrid = hellos[hello_of_layout[int(part["layout"][i])]]
        at = int(plain_off[i]) + 14 + 20 + 8
        plain[at:at + qlen] = np.frombuffer(seal(key, d, int(part["seq"][i]), qlen,
                                                 client_hello(key, tpl) if d == 0 else hybrid), np.uint8)
        kind[i] = kq.Q_SEALED
    return kind
