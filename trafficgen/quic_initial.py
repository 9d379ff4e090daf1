"""QUIC Initial packets sealed as RFC 9001 says, so any dissector decrypts them as it would a
real capture's: keys from the client's first destination connection id, AEAD_AES_128_GCM,
AES header protection, all through the ``cryptography`` package (never hand-rolled).

The client's Initials carry a TLS 1.3 ClientHello for HTTP/3 (ALPN h3, QUIC transport
parameters, an X25519MLKEM768 + X25519 key share) in CRYPTO frames, ``CHUNK`` bytes per
packet by packet number, then PADDING; the server's Initial an ACK and its ServerHello. One
library call per Initial packet, a few per QUIC connection (Handshake and 1-RTT packets stay
opaque: no endpoint's keys exist for them). Randomness comes from the flow key."""
from __future__ import annotations

import struct
from functools import lru_cache

import numpy as np

from .kernels import quic as kq
from .kernels.rng import fill_bytes
from .tls import GROUP_X25519, GROUP_X25519MLKEM768, HYBRID_CLIENT_SHARE, HYBRID_SERVER_SHARE, \
    X25519_SHARE, _ext, _vec16

SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
CHUNK = 1100  # ClientHello bytes per client Initial: fits the smallest (1200 bytes)
PN_LEN = 2


def _expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """HKDF-Expand-Label (RFC 8446 section 7.1) with SHA-256 and an empty context."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    return HKDFExpand(hashes.SHA256(), length, info).derive(secret)


def _extract(salt: bytes, ikm: bytes) -> bytes:
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
    initial = _extract(SALT_V1, dcid)
    secret = _expand_label(initial, b"server in" if server else b"client in", 32)
    hp = Cipher(algorithms.AES(_expand_label(secret, b"quic hp", 16)), modes.ECB())
    return AESGCM(_expand_label(secret, b"quic key", 16)), _expand_label(secret, b"quic iv", 12), hp


def _varint(v: int) -> bytes:
    return bytes([v]) if v < 64 else struct.pack("!H", 0x4000 | v)


def _random(key: int, n: int, salt: int) -> bytes:
    out = np.empty(n, np.uint8)
    fill_bytes(np.uint64(key) ^ np.uint64(salt), out)
    return out.tobytes()


def cid(key: int, which: int) -> bytes:
    return struct.pack("!Q", int(kq.cid_value(np.uint64(key), which)))


def client_hello(key: int, sni: bytes) -> bytes:
    """The TLS ClientHello handshake message of this connection's QUIC Initials, to the
    server name ``sni`` (its class's service)."""
    rnd = _random(key, 32 + HYBRID_CLIENT_SHARE + X25519_SHARE, 0xC11E)
    params = (b"\x01\x04\x80\x00\x75\x30" + b"\x04\x04\x80\x10\x00\x00" + b"\x08\x02\x40\x64"
              + b"\x0f\x08" + cid(key, kq.CID_CLIENT))
    shares = (struct.pack("!HH", GROUP_X25519MLKEM768, HYBRID_CLIENT_SHARE) + rnd[32:32 + HYBRID_CLIENT_SHARE]
              + struct.pack("!HH", GROUP_X25519, X25519_SHARE) + rnd[32 + HYBRID_CLIENT_SHARE:])
    exts = ((_ext(0x0000, _vec16(b"\x00" + _vec16(sni))) if sni else b"") + _ext(0x0010, _vec16(b"\x02h3"))
            + _ext(0x000A, _vec16(struct.pack("!HH", GROUP_X25519MLKEM768, GROUP_X25519)))
            + _ext(0x000D, _vec16(bytes.fromhex("0403080404010503080505010806"))) + _ext(0x002B, b"\x02\x03\x04")
            + _ext(0x0033, _vec16(shares)) + _ext(0x0039, params))
    body = b"\x03\x03" + rnd[:32] + b"\x00" + _vec16(bytes.fromhex("130113021303")) + b"\x01\x00" + _vec16(exts)
    return b"\x01" + struct.pack("!I", len(body))[1:] + body


def server_hello(key: int) -> bytes:
    rnd = _random(key, 32 + HYBRID_SERVER_SHARE, 0x5E4E)
    exts = _ext(0x002B, b"\x03\x04") + _ext(0x0033, struct.pack("!HH", GROUP_X25519MLKEM768,
                                                                 HYBRID_SERVER_SHARE) + rnd[32:])
    body = b"\x03\x03" + rnd[:32] + b"\x00" + b"\x13\x01" + b"\x00" + _vec16(exts)
    return b"\x02" + struct.pack("!I", len(body))[1:] + body


def _frames(key: int, d: int, pn: int, room: int, sni: bytes) -> bytes:
    """The Initial's frames, padded with PADDING to ``room`` bytes."""
    if d == 0:
        hello = client_hello(key, sni)
        off = pn * CHUNK
        data = hello[off:off + CHUNK]
        out = (b"\x06" + _varint(off) + _varint(len(data)) + data) if data else b"\x01"  # else PING
    else:
        data = server_hello(key)[:max(0, room - 12)]
        out = b"\x02\x00\x00\x00\x00" + b"\x06\x00" + _varint(len(data)) + data  # ACK of pn 0
    return out + b"\x00" * (room - len(out))


def seal(key: int, d: int, pn: int, qlen: int, sni: bytes = b"chatgpt.com") -> bytes:
    """The ``qlen`` bytes of a protected Initial packet of direction ``d``, number ``pn``
    (a client's carries a ClientHello to ``sni``)."""
    dcid0 = cid(key, kq.CID_CLIENT_DCID)
    if d == 0:
        dcid, scid = dcid0, cid(key, kq.CID_CLIENT)
    else:
        dcid, scid = cid(key, kq.CID_CLIENT), cid(key, kq.CID_SERVER)
    head = (bytes([0xC0 | (PN_LEN - 1)]) + struct.pack("!I", 1) + bytes([8]) + dcid + bytes([8])
            + scid + b"\x00")
    room = qlen - len(head) - 2 - PN_LEN - 16
    head += struct.pack("!H", 0x4000 | (PN_LEN + room + 16)) + struct.pack("!H", pn & 0xFFFF)
    aead, iv, hp = initial_keys(dcid0, d == 1)
    nonce = (int.from_bytes(iv, "big") ^ pn).to_bytes(12, "big")
    body = aead.encrypt(nonce, _frames(key, d, pn, room, sni), head)
    pn_at = len(head) - PN_LEN
    sample = body[4 - PN_LEN:4 - PN_LEN + 16]
    enc = hp.encryptor()
    mask = enc.update(sample) + enc.finalize()
    first = bytes([head[0] ^ (mask[0] & 0x0F)])
    pnb = bytes(b ^ m for b, m in zip(head[pn_at:], mask[1:1 + PN_LEN]))
    return first + head[1:pn_at] + pnb + body


def seal_initials(plain, plain_off, part, cols, rows, sni_of_class) -> np.ndarray:
    """Write the sealed Initial packets of a batch into its plain frames (where the rewrite
    copies them from) and return the QUIC kinds for the rewrite: Q_SEALED where done.
    ``sni_of_class``: the server name of each class's service (by class code)."""
    kind = part["segoff"].copy()
    todo = np.flatnonzero((cols["quic"][rows] != 0) & (kind == kq.Q_INITIAL))
    for i in todo:
        qlen = int(part["payload_len"][i])
        at = int(plain_off[i]) + 14 + 20 + 8
        plain[at:at + qlen] = np.frombuffer(seal(int(cols["key"][rows[i]]), int(part["direction"][i]),
                                                 int(part["seq"][i]), qlen,
                                                 sni_of_class[int(part["class"][i])]), np.uint8)
        kind[i] = kq.Q_SEALED
    return kind
