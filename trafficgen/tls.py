"""TLS 1.3 byte templates for the handshake writes, with holes for per-connection randomness.

The frame kernel fills a write's bytes as: a template prefix (this module) whose mask marks
bytes to take from the random pool (randoms, session ids, key shares), then TLS 1.3
application-data records (``17 03 03 len``) over opaque bytes, as encrypted records look.
Templates are structurally valid, so tshark dissects ClientHello and ServerHello cleanly.
"""
from __future__ import annotations

import struct

import numpy as np

from .errors import TrafficgenError

GROUP_X25519MLKEM768, GROUP_X25519, GROUP_SECP256R1 = 0x11EC, 0x001D, 0x0017
HYBRID_CLIENT_SHARE, HYBRID_SERVER_SHARE, X25519_SHARE = 1216, 1120, 32
CCS = bytes.fromhex("140303000101")
SERVER_NAME = b"chat.example.com"


class _Buf:
    """Bytes with a parallel mask: 1 = fixed template byte, 0 = random hole."""

    def __init__(self):
        self.data, self.mask = bytearray(), bytearray()

    def fixed(self, b: bytes):
        self.data += b
        self.mask += b"\x01" * len(b)

    def hole(self, n: int):
        self.data += b"\x00" * n
        self.mask += b"\x00" * n


def _ext(etype: int, body: bytes) -> bytes:
    return struct.pack("!HH", etype, len(body)) + body


def _vec16(body: bytes) -> bytes:
    return struct.pack("!H", len(body)) + body


def client_hello(total: int) -> tuple[bytes, bytes]:
    """A ClientHello record of exactly ``total`` bytes; hybrid key share if it fits."""
    sni = _ext(0x0000, _vec16(b"\x00" + _vec16(SERVER_NAME)))
    alpn = _ext(0x0010, _vec16(b"\x02h2\x08http/1.1"))
    groups = _ext(0x000A, _vec16(struct.pack("!HHH", GROUP_X25519MLKEM768, GROUP_X25519, GROUP_SECP256R1)))
    sigs = _ext(0x000D, _vec16(bytes.fromhex("0403080404010503080505010806060102010201")[:16]))
    versions = _ext(0x002B, b"\x04\x03\x04\x03\x03")
    psk_modes = _ext(0x002D, b"\x01\x01")
    for hybrid in (True, False):
        shares = [(GROUP_X25519MLKEM768, HYBRID_CLIENT_SHARE)] if hybrid else []
        shares.append((GROUP_X25519, X25519_SHARE))
        share_len = sum(4 + n for _, n in shares)
        fixed_exts = sni + alpn + groups + sigs + versions + psk_modes
        ks_len = 4 + 2 + share_len
        # record(5) + handshake(4) + version(2) + random(32) + sid(33) + suites(8) + comp(2) + extlen(2)
        base = 5 + 4 + 2 + 32 + 33 + 8 + 2 + 2 + len(fixed_exts) + ks_len
        pad = total - base - 4
        if pad >= 0:
            break
    else:
        raise TrafficgenError(f"chat.client_hello_bytes: {total} is too small for a ClientHello "
                              f"(at least {base + 4} bytes)")
    b = _Buf()
    body_len = total - 9
    b.fixed(struct.pack("!BHH", 0x16, 0x0301, total - 5) + struct.pack("!I", (1 << 24) | body_len)
            + b"\x03\x03")
    b.hole(32)
    b.fixed(b"\x20")
    b.hole(32)
    b.fixed(bytes.fromhex("0006130113021303") + b"\x01\x00")
    b.fixed(struct.pack("!H", total - base + len(fixed_exts) + ks_len))
    b.fixed(fixed_exts)
    b.fixed(struct.pack("!HHH", 0x0033, ks_len - 4, share_len))
    for group, n in shares:
        b.fixed(struct.pack("!HH", group, n))
        b.hole(n)
    b.fixed(_ext(0x0015, b"\x00" * pad))
    assert len(b.data) == total, (len(b.data), total)
    return bytes(b.data), bytes(b.mask)


def server_hello_prefix(hybrid: bool) -> tuple[bytes, bytes]:
    """ServerHello record + ChangeCipherSpec: the fixed start of the server's flight."""
    share = HYBRID_SERVER_SHARE if hybrid else X25519_SHARE
    group = GROUP_X25519MLKEM768 if hybrid else GROUP_X25519
    exts_len = 6 + 4 + 4 + share
    body_len = 2 + 32 + 33 + 2 + 1 + 2 + exts_len
    b = _Buf()
    b.fixed(struct.pack("!BHH", 0x16, 0x0303, body_len + 4) + struct.pack("!I", (2 << 24) | body_len)
            + b"\x03\x03")
    b.hole(32)
    b.fixed(b"\x20")
    b.hole(32)
    b.fixed(b"\x13\x01\x00" + struct.pack("!H", exts_len) + _ext(0x002B, b"\x03\x04")
            + struct.pack("!HHHH", 0x0033, 4 + share, group, share))
    b.hole(share)
    b.fixed(CCS)
    return bytes(b.data), bytes(b.mask)


def is_hybrid(hello: bytes) -> bool:
    return struct.pack("!HH", GROUP_X25519MLKEM768, HYBRID_CLIENT_SHARE) in hello


class Templates:
    """Concatenated templates and masks, indexed by write layout (see kernels/chat.py)."""

    def __init__(self, hello_wire: int, flight_wire: int):
        hello, hello_mask = client_hello(hello_wire)
        sh, sh_mask = server_hello_prefix(is_hybrid(hello))
        if flight_wire < len(sh) + 23:
            raise TrafficgenError(f"chat.server_flight_bytes: {flight_wire} is too small for the "
                                  f"server's flight (at least {len(sh) + 23} bytes)")
        parts = [(b"", b""), (hello, hello_mask), (sh, sh_mask), (CCS, b"\x01" * len(CCS))]
        self.data = np.frombuffer(b"".join(p[0] for p in parts), dtype=np.uint8).copy()
        self.mask = np.frombuffer(b"".join(p[1] for p in parts), dtype=np.uint8).copy()
        lens = [len(p[0]) for p in parts]
        self.start = np.cumsum([0] + lens[:-1]).astype(np.int64)
        self.length = np.array(lens, dtype=np.int64)


class CombinedTemplates:
    """Several models' templates in one table for the frame encoder: layout 0 is "no
    template"; model k's layout j (1..3) is at ``3 * k + j`` (its ``layout_base`` is ``3 * k``)."""

    PER_MODEL = 3

    def __init__(self, parts: list[Templates]):
        data, mask, start, length = [np.zeros(0, np.uint8)], [np.zeros(0, np.uint8)], [0], [0]
        offset = 0
        for t in parts:
            data.append(t.data)
            mask.append(t.mask)
            start.extend(int(offset + x) for x in t.start[1:])
            length.extend(int(x) for x in t.length[1:])
            offset += t.data.shape[0]
        self.data = np.concatenate(data)
        self.mask = np.concatenate(mask)
        self.start = np.array(start, np.int64)
        self.length = np.array(length, np.int64)
