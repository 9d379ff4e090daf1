"""What the RoCEv2 tests share (tests/test_kv_transfer.py, tests/test_roce_impair.py): a small
kv-transfer scenario, the tables and frames of a run read back plainly, a run's digests and the
ICRC over IPv6."""
from __future__ import annotations

import hashlib
import struct
import zlib

import pyarrow.parquet as pq

import trafficgen as tg
from trafficgen.engine.core import Engine

# A small run: a made-up model of 186 B per token per layer (odd token counts need RoCE pad
# bytes), 3 layers in 2 messages, short prompts with prefix hits, several packets per message.
KV_OVERRIDES = {
    "kv_transfer.rate": "6/s", "kv_transfer.model": {"layers": 3, "kv_heads": 1, "head_dim": 93,
                                                     "bytes_per_value": 1},
    "kv_transfer.prompt_tokens": {"median": 40, "p90": 120, "min": 20, "max": 400},
    "kv_transfer.shared_prefix_tokens": 8, "kv_transfer.cache_hit_prob": 0.4,
    "kv_transfer.hit_uncached_tokens": {"median": 6, "p90": 30, "max": 200},
    "kv_transfer.layers_per_message": 2, "kv_transfer.path_mtu": 1024, "kv_transfer.ack_every": 4,
}
KV_ARGS = dict(duration="4s", seed=5)


def kv_scenario(**extra):
    return tg.load_scenario("kv-transfer", {**KV_OVERRIDES, **extra}, **KV_ARGS)


def table(path) -> dict:
    t = pq.read_table(path)
    return {c: t.column(c).to_numpy() for c in t.column_names}


def frames_of(path) -> list[tuple[int, bytes]]:
    """(ts ns, frame) per record of a nanosecond pcap, read by hand."""
    data, o, out = path.read_bytes(), 24, []
    while o < len(data):
        sec, ns, incl, _wire = struct.unpack_from("<IIII", data, o)
        out.append((sec * 10**9 + ns, data[o + 16:o + 16 + incl]))
        o += 16 + incl
    return out


def digest(sc, **kw) -> tuple[str, str]:
    frames, rows = hashlib.sha256(), hashlib.sha256()
    for b in Engine(sc, **kw):
        if b.frames is not None:
            frames.update(b.frames.tobytes())
        rows.update(b.packets.tobytes())
    return frames.hexdigest(), rows.hexdigest()


def icrc_v6_of(frame: bytes) -> int:
    """IBTA A17 invariant CRC of a RoCEv2/IPv6 frame, built plainly: the LRH as ones, the IPv6
    traffic class, flow label and hop limit, the UDP checksum and BTH byte 4 masked to ones."""
    ip = bytearray(frame[14:54])
    ip[0] |= 0x0F
    ip[1:4] = b"\xff\xff\xff"
    ip[7] = 0xFF
    udp = bytearray(frame[54:62])
    udp[6:8] = b"\xff\xff"
    bth = bytearray(frame[62:74])
    bth[4] = 0xFF
    return zlib.crc32(b"\xff" * 8 + bytes(ip) + bytes(udp) + bytes(bth) + frame[74:-4])
