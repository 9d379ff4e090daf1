"""Mutated inputs for the fault suite (``test_fuzz_inputs.py``) and the on-demand campaign
(``bench/fault_campaign.py``): valid seed inputs of every kind the tool reads, mutators that
break them, and the readers (the CLI's commands, called in this process) with the promise each
must keep: exit 0, or exit 2 with one ``error:`` line; never a traceback, ``unexpected``,
exit 1, a hang or a memory blow-up.

A mutator takes a *draw* (``Draw``): the campaign's draws come from ``random.Random(seed)``,
the suite's from hypothesis (``HypothesisDraw``), so hypothesis shrinks what it finds and the
campaign names each case by its seed alone.
"""
from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import random
import struct
from pathlib import Path

# --- draws ------------------------------------------------------------------------------------


class Draw:
    """Choices from ``random.Random``."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def choice(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def bytes(self, n: int) -> bytes:
        return bytes(self.int(0, 255) for _ in range(n))


class HypothesisDraw(Draw):
    """Choices from hypothesis' ``data`` (``st.data()``): shrinkable."""

    def __init__(self, data):
        from hypothesis import strategies as st
        self.data, self.st = data, st

    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))

    def bytes(self, n: int) -> bytes:
        return self.data.draw(self.st.binary(min_size=n, max_size=n))


# --- seeds: small valid inputs of each kind ---------------------------------------------------

FRAME = bytes.fromhex("ffffffffffff02000000000108004500002e0000400040060000c0a80001c0a80002"
                      "d431005000000001000000005002ffff00000000") + bytes(6)


def pcap_bytes(n: int = 4, nanos: bool = True, big: bool = False, snaplen: int = 262144) -> bytes:
    e = ">" if big else "<"
    out = [struct.pack(e + "IHHiIII", 0xA1B23C4D if nanos else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1)]
    for k in range(n):
        t = 1_700_000_000 * 10**9 + k * 1_000_000
        out.append(struct.pack(e + "IIII", t // 10**9, t % 10**9 if nanos else t % 10**9 // 1000,
                               len(FRAME), len(FRAME)) + FRAME)
    return b"".join(out)


def pcapng_bytes(n: int = 4, tsresol: int = 9, big: bool = False) -> bytes:
    e = ">" if big else "<"

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack(e + "II", btype, len(body) + 12) + body + struct.pack(e + "I", len(body) + 12)

    opt = struct.pack(e + "HH", 9, 1) + bytes([tsresol]) + b"\0" * 3 + struct.pack(e + "HH", 0, 0)
    out = [block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1)),
           block(1, struct.pack(e + "HHI", 1, 0, 262144) + opt)]
    for k in range(n):
        units = 2 ** (tsresol & 0x7F) if tsresol & 0x80 else 10**tsresol
        t = (1_700_000_000 * units + k * 1000) & (2**64 - 1)
        comment = struct.pack(e + "HH", 1, 9) + b"class=chat" + b"\0" * 3 + struct.pack(e + "HH", 0, 0)
        out.append(block(6, struct.pack(e + "IIIII", 0, t >> 32, t & 0xFFFFFFFF, len(FRAME), len(FRAME))
                         + FRAME + b"\0" * (-len(FRAME) % 4) + comment))
        if k == 1:
            out.append(block(4, struct.pack(e + "HH", 0, 0)))  # name resolution: skipped
    return b"".join(out)


AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
    f"2023-11-16 18:15:{46 + k}.6805900,{100 + 37 * k},{20 + 5 * k}\n" for k in range(12))
GENERIC = "time_s,input_tokens,output_tokens,class,session,client\n" + "".join(
    f"{0.5 * k},{200 + k},{30 + k},{'chat' if k % 2 else 'coding'},{k // 3},{k % 4}\n" for k in range(12))
BURSTGPT = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n" + "".join(
    f"{k * 1.5},ChatGPT,{300 + k},{40 + k},{340 + 2 * k},Conversation log\n" for k in range(12))
MOONCAKE = "".join(json.dumps({"timestamp": 250 * k, "input_length": 1000 + k, "output_length": 10 + k,
                               "hash_ids": [0, 1, k + 2]}) + "\n" for k in range(12))
LONG = "time_s,input_tokens,output_tokens\n" + "".join(  # enough requests (100) for fit
    f"{0.37 * k * (1 + k % 7 / 3):.3f},{100 + k * 13 % 900},{20 + k * 7 % 300}\n" for k in range(120))
TEXT_TRACES = {"azure.csv": AZURE, "generic.csv": GENERIC, "burstgpt.csv": BURSTGPT,
               "mooncake.jsonl": MOONCAKE, "long.csv": LONG}

# cell values that are no good number (or an extreme one)
BAD_CELLS = ("", "nan", "NaN", "inf", "-inf", "-1", "-0", "0", "1e308", "1e-308", "9" * 40, "abc",
             "1.5", "0x10", "1_000", " 7 ", '"3"', "2023-13-45 99:99:99", "1970-01-01 00:00:00",
             "9999-12-31 23:59:59.9999999", "\u00e9", "\\N", "null", "true", "[1]", "{}", "1e19",
             "-9223372036854775808", "18446744073709551616", "2e9", "1e-9", "3,4")


def mutate_text_trace(text: str, d: Draw) -> str:
    """Break a CSV or JSON-lines trace: cells, columns, rows, structure."""
    lines = text.splitlines()
    jsonl = lines[0].startswith("{")
    for _ in range(d.int(1, 4)):
        op = d.int(0, 9)
        row = d.int(0, len(lines) - 1) if lines else 0
        if not lines:
            break
        if op <= 3 and not jsonl:  # a cell
            cells = lines[row].split(",")
            cells[d.int(0, len(cells) - 1)] = d.choice(BAD_CELLS)
            lines[row] = ",".join(cells)
        elif op <= 3:  # a JSON field: a bad value, or gone
            try:
                obj = json.loads(lines[row])
            except ValueError:
                continue
            key = d.choice(sorted(obj))
            if d.int(0, 3) == 0:
                del obj[key]
            else:
                obj[key] = d.choice([None, "x", -1, 1e308, float("nan"), float("inf"), 2**70, [], {},
                                     True, 1.5, "12", [-1], ["a"], [2**70], 0])
            lines[row] = json.dumps(obj)
        elif op == 4:  # a column gone (every row)
            if not jsonl:
                k = d.int(0, lines[0].count(","))
                lines = [",".join(c for i, c in enumerate(ln.split(",")) if i != k) for ln in lines]
        elif op == 5:  # rows gone, or all but the header
            lines = lines[:d.int(0, len(lines))]
        elif op == 6:  # a row repeated many times (equal times), or rows reversed
            lines = lines + [lines[row]] * d.int(1, 300) if d.int(0, 1) else lines[:1] + lines[:0:-1]
        elif op == 7:  # a row cut short or given an extra cell
            lines[row] = lines[row][:d.int(0, len(lines[row]))] if d.int(0, 1) else lines[row] + ",5"
        elif op == 8:  # stray bytes
            at = d.int(0, len(lines[row]))
            stray = d.choice(['"', "\0", "\r", "\t", "\ufeff", ";", "#", "\x1b"])
            lines[row] = lines[row][:at] + stray + lines[row][at:]
        else:  # the header renamed
            lines[0] = lines[0].replace(d.choice(["_tokens", "time", "TIMESTAMP", "Tokens", "length", "Timestamp"]),
                                        d.choice(["", "x", "_s", "_ms", "_ns"]))
    return "\n".join(lines) + ("\n" if d.int(0, 3) else "")


def compress(data: bytes, d: Draw) -> tuple[bytes, str]:
    """``data`` as is, or gzip/xz/bzip2-compressed (sometimes cut short or with a flipped bit)."""
    codec = d.choice(["", "", ".gz", ".xz", ".bz2"])
    if codec:
        data = {".gz": gzip.compress, ".xz": lzma.compress, ".bz2": bz2.compress}[codec](data)
        if d.int(0, 4) == 0:
            data = mutate_bytes(data, d, ops=1)
    return data, codec


def mutate_bytes(data: bytes, d: Draw, ops: int | None = None) -> bytes:
    """Generic binary damage: bit flips, extreme 32-bit words, cuts, inserts, repeats."""
    b = bytearray(data)
    for _ in range(ops or d.int(1, 4)):
        if not b:
            b += d.bytes(d.int(0, 8))
            continue
        at = d.int(0, len(b) - 1)
        op = d.int(0, 6)
        if op <= 1:
            b[at] ^= 1 << d.int(0, 7)
        elif op == 2:
            at -= at % 4
            word = d.choice([0, 1, 3, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFF0, 12, 16, 28])
            b[at:at + 4] = struct.pack(d.choice(["<I", ">I"]), word)[:len(b) - at]
        elif op == 3:
            del b[d.int(0, len(b)):]
        elif op == 4:
            b[at:at] = d.bytes(d.int(1, 16))
        elif op == 5:
            end = min(len(b), at + d.int(1, 64))
            b[at:at] = bytes(b[at:end]) * d.int(1, 4)
        else:
            b[at] = d.int(0, 255)
    return bytes(b)


def mutate_capture(data: bytes, d: Draw) -> bytes:
    """Damage aimed at a capture's fields (pcap header, record lengths; pcapng block lengths,
    ``if_tsresol``, byte order), else generic damage."""
    b = bytearray(data)
    pcapng = data[:4] == b"\n\r\r\n"
    e = ">" if data[8:12] == b"\x1a\x2b\x3c\x4d" or data[:4] in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d") else "<"
    huge = d.choice([0, 1, 11, 12, 13, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 65536, 262144, 1 << 24, 2**31 + 8])
    op = d.int(0, 5)
    if op == 0 and not pcapng and len(b) >= 24:  # snaplen, link type, version
        at = d.choice([16, 20, 4, 6])
        b[at:at + 4] = struct.pack(e + "I", huge)[:len(b[at:at + 4])]
    elif op == 0 and len(b) > 40:  # if_tsresol (the 9/1 option in the IDB)
        at = bytes(b).find(struct.pack(e + "HH", 9, 1))
        if at >= 0:
            b[at + 4] = d.int(0, 255)
    elif op == 1:  # a record's or block's length field
        offsets = _record_offsets(bytes(b), pcapng, e)
        if offsets:
            at = d.choice(offsets) + d.choice([4, 8, 12] if not pcapng else [4, 20, 24])
            b[at:at + 4] = struct.pack(e + "I", huge)[:len(b[at:at + 4])]
    elif op == 2:  # magic or byte-order mark
        at = d.choice([0, 8] if pcapng else [0])
        b[at:at + 4] = d.choice([b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\n\r\r\n", b"\x4d\x3c\x2b\x1a",
                                 b"\x1a\x2b\x3c\x4d", b"PAR1", b"\0\0\0\0", d.bytes(4)])
    elif op == 3:  # cut at a record boundary or just past one
        offsets = _record_offsets(bytes(b), pcapng, e) or [0]
        del b[d.choice(offsets) + d.int(0, 20):]
    elif op == 4:  # timestamps: far, backwards, huge fractions
        offsets = _record_offsets(bytes(b), pcapng, e)
        if offsets:
            at = d.choice(offsets) + (12 if pcapng else 0)
            stamp = struct.pack(e + "II", huge, d.choice([0, 999_999_999, 0xFFFFFFFF, 10**9]))
            b[at:at + 8] = stamp[:len(b[at:at + 8])]
    else:
        return mutate_bytes(bytes(b), d)
    return bytes(b)


def _record_offsets(data: bytes, pcapng: bool, e: str) -> list[int]:
    """Where each record (pcap) or block (pcapng) starts, as far as the lengths can be followed."""
    out, at = [], 0 if pcapng else 24
    while at + 16 <= len(data) and len(out) < 64:
        out.append(at)
        if pcapng:
            n = struct.unpack_from(e + "I", data, at + 4)[0]
            if n < 12:
                break
            at += n
        else:
            at += 16 + struct.unpack_from(e + "I", data, at + 8)[0]
    return out


# --- Parquet tables ---------------------------------------------------------------------------

def mutate_table(path: Path, d: Draw) -> bytes:
    """A Parquet table with its columns, types, rows or ``trafficgen.*`` metadata broken (or its
    bytes damaged)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    if d.int(0, 4) == 0:
        return mutate_bytes(path.read_bytes(), d)
    t = pq.read_table(path)
    meta = dict(t.schema.metadata or {})
    for _ in range(d.int(1, 3)):
        op = d.int(0, 5)
        name = d.choice(t.column_names)
        k = t.column_names.index(name)
        if op == 0:
            t = t.remove_column(k)
        elif op == 1:  # a column of another type
            n = t.num_rows
            col = d.choice([pa.array([d.choice(BAD_CELLS)] * n), pa.array([None] * n, pa.int64()),
                            pa.array(np.full(n, d.choice([np.nan, np.inf, -np.inf, -1.0, 1e300]))),
                            pa.array(np.full(n, d.choice([-1, 0, 2**62, -2**63, 2**63 - 1]), np.int64)),
                            pa.array([True] * n), pa.array([[1]] * n)])
            t = t.set_column(k, name, col)
        elif op == 2:  # one cell of a numeric column made extreme
            col = t.column(k).to_pylist()
            if col and isinstance(col[0], (int, float)) and not isinstance(col[0], bool):
                col[d.int(0, len(col) - 1)] = d.choice([-1, 0, 2**62, -2**62, 10**18, 2**63 - 1])
                try:
                    t = t.set_column(k, name, pa.array(col, t.column(k).type))
                except (pa.ArrowException, OverflowError):
                    pass
        elif op == 3:
            t = t.slice(0, d.int(0, min(2, t.num_rows)))
        elif op == 4:
            t = t.rename_columns([n if i != k else d.choice(["", "x", name.upper(), name + "_"])
                                  for i, n in enumerate(t.column_names)])
        else:
            keys = [m for m in meta if m.startswith(b"trafficgen")] or [b"trafficgen.table"]
            meta[d.choice(keys)] = d.choice([b"", b"abc", b"\xff\xfe", b"-1", b"1e400", b"{", b"[]", b"null",
                                             b'{"a": 1}', b"requests", b"packets", b"9" * 30])
    buf = io.BytesIO()
    pq.write_table(t.replace_schema_metadata(meta), buf)
    return buf.getvalue()
