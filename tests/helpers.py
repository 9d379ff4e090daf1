"""What the tests share: plain functions and constants, no fixtures (the shared runs are
fixtures in ``conftest.py``, built with :func:`generate_run`). A test module imports from here,
from ``netwalk`` (the frame walker), ``ja4ref`` (JA4 by the spec) or ``replay_net`` (veth pairs),
never from another ``test_*.py``.

Sections: runs and their tables; external tools (tshark, nfstream); pcap files read and written
with ``struct`` alone; checksums and CRCs; traces and distributions; peak memory.
"""
from __future__ import annotations

import bz2
import datetime as dt
import gzip
import hashlib
import lzma
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import dpkt
import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import stats

import trafficgen as tg
from trafficgen.kernels import frames as kf
from trafficgen.kernels import udp as ku

# --- runs and their tables ------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One generated run: its scenario, output paths (``None`` if not written) and report."""

    scenario: object
    dir: Path
    pcap: Path | None
    flows: Path | None
    requests: Path | None
    packets: Path | None
    report: dict


def generate_run(dest: Path, scenario, *, pcap=True, tables=True, **kwargs) -> Run:
    """Generate ``scenario`` into ``dest`` (a folder) and return the :class:`Run`."""
    dest.mkdir(parents=True, exist_ok=True)
    paths = {
        "pcap": dest / "capture.pcap" if pcap else None,
        "flows": dest / "flows.parquet" if tables else None,
        "requests": dest / "requests.parquet" if tables else None,
        "packets": dest / "packets.parquet" if tables else None,
    }
    report = tg.generate(scenario, **paths, **kwargs)
    return Run(scenario=scenario, dir=dest, report=report, **paths)


# The determinism reference (the ``reference_run`` fixture): what runs of its seed must equal.
REFERENCE = dict(overrides={"chat.rate": "6/s"}, duration="25s")


def reference_scenario(seed: int = 5, **extra):
    """The reference run's scenario (chat at 6 calls/s for 25 s), another seed or keys."""
    over = {**REFERENCE["overrides"], **extra}
    return tg.load_scenario("chat", over, duration=REFERENCE["duration"], seed=seed)


def batch_tables(sc, *names: str) -> tuple[np.ndarray, ...]:
    """The named tables (``"flows"``, ``"requests"``, ``"packets"``) of a run of ``sc``, from
    ``tg.batches`` without frames, each concatenated into one structured array."""
    parts = {name: [] for name in names}
    for b in tg.batches(sc, frames=False):
        for name in names:
            parts[name].append(getattr(b, name))
    return tuple(np.concatenate(parts[name]) for name in names)


def splitmix64_finaliser(z: int) -> int:
    """splitmix64's finaliser, the textbook way (``kernels.rng.mix64``: payload offsets, ids)."""
    m = 2**64 - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def packet_rows(sched: np.ndarray) -> kf.PacketRows:
    """The frame encoder's ``PacketRows`` of schedule rows (``SCHED_DTYPE``), each row's flow
    at row ``flow_id`` of the ``FlowAttrs`` passed beside them."""
    return kf.PacketRows(
        ts=sched["ts_ns"], flow_row=sched["flow_id"], dirs=sched["direction"], seq=sched["seq"],
        ack=sched["ack"], flags=sched["tcp_flags"], plen=sched["payload_len"], ipid=sched["ipid"],
        layout=sched["layout"], segoff=sched["segoff"], writelen=sched["writelen"],
        wire_len=sched["wire_len"], win=sched["win"], tsval=sched["tsval"], tsecr=sched["tsecr"])


def table_columns(path) -> dict:
    """A Parquet file's columns as numpy arrays (strings and labels as object arrays)."""
    t = pq.read_table(path)
    return {name: t.column(name).to_numpy(zero_copy_only=False) for name in t.column_names}


# The [network] tests' runs (test_network, test_quic): chat for 3 s, seed 3, plus options.
NETWORK_BASE = ["chat.rate=4/s"]
NETWORK_ARGS = dict(duration="3s", seed=3)


class NetworkRun:
    """A chat run with ``overrides`` written into ``folder``: the pcap read back (``ts``,
    ``frames``), the three tables as numpy columns and each flow id's row."""

    def __init__(self, folder: Path, overrides, **kw):
        folder.mkdir(parents=True, exist_ok=True)
        self.sc = tg.load_scenario("chat", NETWORK_BASE + overrides, **{**NETWORK_ARGS, **kw})
        self.pcap = folder / "c.pcap"
        paths = {k: folder / f"{k}.parquet" for k in ("flows", "requests", "packets")}
        self.report = tg.generate(self.sc, pcap=self.pcap, **paths)
        self.ts, self.frames = read_pcap(self.pcap)
        self.flows, self.requests, self.packets = (table_columns(paths[k])
                                                   for k in ("flows", "requests", "packets"))
        self.flow_row = {int(f): k for k, f in enumerate(self.flows["flow_id"])}


# Reasoning requests that fan out to rag lookups at the gateway (test_classes, test_engine).
FANOUT = ["reasoning.rate=6/s", "reasoning.retrieval_share=0.4", "reasoning.retrieval_lookups=2",
          'reasoning.retrieval_gap={median="800ms", p90="3s"}']


def digest(path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def digests(run: Run) -> dict[str, str]:
    """sha256 of each output a :class:`Run` wrote."""
    return {k: digest(getattr(run, k)) for k in ("pcap", "flows", "requests", "packets")
            if getattr(run, k) is not None}


def listing(folder: Path) -> list[str]:
    """Names in ``folder``, sorted (to see that nothing, not even a temporary file, was left)."""
    return sorted(p.name for p in folder.iterdir())


# A 3 s chat run on the command line (test_cli, test_sinks).
SMALL_ARGS = ["-t", "chat.rate=4/s", "--duration", "3s", "--seed", "3"]


COMPILING = re.compile(r"^compiling kernels \((first run only|no cache folder: every run)\) \.\.\.\n",
                       re.MULTILINE)


def without_compiling(err: str) -> str:
    """``err`` without the progress line a run prints while numba compiles (exactly
    ``compiling kernels (first run only) ...``). Whether a run compiles depends on what ran
    before it in the installed copy's cache, not on what a test checks; every other line stays
    (tests/test_startup.py checks the line itself)."""
    return COMPILING.sub("", err)


def cli(*args, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    """``python -m trafficgen ARGS`` in a fresh process, no stdin, output captured as text;
    stderr without the compile progress line (:func:`without_compiling`)."""
    done = subprocess.run([sys.executable, "-m", "trafficgen", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    done.stderr = without_compiling(done.stderr)
    return done


# --- external tools -------------------------------------------------------------------------

def require_tool(name: str) -> str:
    """Path of an external tool; skip when it is missing, fail when TRAFFICGEN_REQUIRE_TOOLS
    is set (CI installs every tool, so a skip there would hide a broken install)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("TRAFFICGEN_REQUIRE_TOOLS"):
            pytest.fail(f"{name} is not installed and TRAFFICGEN_REQUIRE_TOOLS is set")
        pytest.skip(f"{name} is not installed (apt-get install {'tshark' if name == 'capinfos' else name})")
    return path


def nfstream_module():
    """The nfstream module (nDPI); skipped or failed like :func:`require_tool`."""
    try:
        import nfstream
    except ImportError:
        if os.environ.get("TRAFFICGEN_REQUIRE_TOOLS"):
            pytest.fail("nfstream (nDPI) is not installed and TRAFFICGEN_REQUIRE_TOOLS is set")
        pytest.skip("nfstream is not installed (pip install nfstream)")
    return nfstream


# Frames tshark flags on a plain TCP capture: malformed, expert warnings, bad checksums and
# anything its TCP analysis finds odd in a stream.
TSHARK_PROBLEMS = (
    '_ws.malformed || _ws.expert.severity >= warning || ip.checksum.status == "Bad" || '
    'tcp.checksum.status == "Bad" || tcp.analysis.lost_segment || tcp.analysis.ack_lost_segment || '
    'tcp.analysis.retransmission || tcp.analysis.fast_retransmission || '
    'tcp.analysis.spurious_retransmission || tcp.analysis.out_of_order || '
    'tcp.analysis.duplicate_ack || tcp.analysis.zero_window || tcp.analysis.window_full')
# Frames tshark flags at any layer of an encapsulated frame (no TCP stream analysis), with the
# options that make it verify every IP, TCP and UDP checksum (test_network, test_macsec).
TSHARK_FRAME_PROBLEMS = ('_ws.malformed || _ws.expert.severity >= warning || ip.checksum.status == "Bad"'
                         ' || tcp.checksum.status == "Bad" || udp.checksum.status == "Bad"')
TSHARK_CHECKSUMS = ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
                    "-o", "udp.check_checksum:TRUE"]


def run_tshark(tshark: str, path: Path, *args: str) -> str:
    """Run tshark; a non-zero exit (a bad filter, an unreadable file) fails the test."""
    proc = subprocess.run([tshark, "-n", "-r", str(path), *args], capture_output=True, text=True)
    assert proc.returncode == 0, f"tshark failed ({proc.returncode}): {proc.stderr.strip()}"
    return proc.stdout


# --- pcap files, with struct alone -----------------------------------------------------------

PCAP_NS_MAGIC = 0xA1B23C4D
# magic as read little-endian -> (byte order, timestamp unit in ns)
PCAP_MAGICS = {0xA1B2C3D4: ("<", 1000), 0xA1B23C4D: ("<", 1),
               0xD4C3B2A1: (">", 1000), 0x4D3CB2A1: (">", 1)}


def pcap_records(data: bytes):
    """A classic pcap's global header fields and its records: ``(header, ts_ns, caplen,
    origlen, frames)``; either byte order and time resolution; a cut record fails."""
    assert len(data) >= 24, "no pcap global header"
    e, unit = PCAP_MAGICS[struct.unpack_from("<I", data)[0]]
    header = struct.unpack_from(e + "IHHiIII", data, 0)
    o = 24
    ts, cap, orig, frames = [], [], [], []
    while o < len(data):
        assert o + 16 <= len(data), f"truncated record header at byte {o}"
        sec, frac, incl, wire = struct.unpack_from(e + "IIII", data, o)
        o += 16
        assert o + incl <= len(data), f"truncated record at byte {o}"
        ts.append(sec * 1_000_000_000 + frac * unit)
        cap.append(incl)
        orig.append(wire)
        frames.append(data[o:o + incl])
        o += incl
    return header, ts, cap, orig, frames


def read_pcap(path) -> tuple[np.ndarray, list[bytes]]:
    """Timestamps (int64 ns) and frames of a classic pcap of whole frames (captured length =
    wire length)."""
    _, ts, cap, orig, frames = pcap_records(Path(path).read_bytes())
    assert cap == orig, "a frame was captured short of its wire length"
    return np.array(ts, np.int64), frames


def write_pcap(path, frames, ts_ns, nanos: bool = True, big: bool = False, linktype: int = 1,
               snaplen: int = 262144) -> None:
    """A classic pcap (micro- or nanosecond stamps, either byte order)."""
    e = ">" if big else "<"
    out = [struct.pack(e + "IHHiIII", 0xA1B23C4D if nanos else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for f, t in zip(frames, ts_ns):
        t = int(t)
        sub = t % 10**9 if nanos else (t % 10**9) // 1000
        out.append(struct.pack(e + "IIII", t // 10**9, sub, len(f), len(f)) + f)
    Path(path).write_bytes(b"".join(out))


def write_pcapng(path, frames, ts_ns, tsresol: int = 9, big: bool = False, simple: bool = False) -> None:
    """A pcapng: one section, one Ethernet interface with ``if_tsresol`` = ``tsresol`` (a
    power of ten), an EPB per frame (or SPBs, without timestamps, with ``simple``), and a
    name-resolution block in the middle that a reader must skip."""
    e = ">" if big else "<"

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)

    opt = struct.pack(e + "HH", 9, 1) + bytes([tsresol]) + b"\0" * 3 + struct.pack(e + "HH", 0, 0)
    out = [block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1)),
           block(1, struct.pack(e + "HHI", 1, 0, 262144) + opt)]
    unit = 10 ** (9 - tsresol)
    for k, (f, t) in enumerate(zip(frames, ts_ns)):
        if k == len(frames) // 2:
            out.append(block(4, struct.pack(e + "HH", 0, 0)))  # name resolution: skipped
        if simple:
            out.append(block(3, struct.pack(e + "I", len(f)) + f))
        else:
            raw = t // unit
            out.append(block(6, struct.pack(e + "IIIII", 0, raw >> 32, raw & 0xFFFFFFFF, len(f),
                                            len(f)) + f))
    Path(path).write_bytes(b"".join(out))


@dataclass
class Capture:
    """A pcap parsed record by record, with every frame decoded by dpkt as Ethernet/IPv4/TCP."""

    path: Path
    header: tuple
    ts_ns: np.ndarray
    caplen: np.ndarray
    origlen: np.ndarray
    frames: list
    src: np.ndarray = field(default=None)
    dst: np.ndarray = field(default=None)
    sport: np.ndarray = field(default=None)
    dport: np.ndarray = field(default=None)
    seq: np.ndarray = field(default=None)
    ack: np.ndarray = field(default=None)
    flags: np.ndarray = field(default=None)
    plen: np.ndarray = field(default=None)
    decode_errors: list = field(default_factory=list)  # (frame number, why)

    @property
    def n(self) -> int:
        return len(self.frames)


def read_capture(path: Path) -> Capture:
    """A TCP capture's records (exact ns timestamps, both length fields), decoded by dpkt."""
    header, ts, cap, orig, frames = pcap_records(Path(path).read_bytes())
    c = Capture(path, header, np.array(ts, np.int64), np.array(cap, np.int64),
                np.array(orig, np.int64), frames)
    cols = {k: np.zeros(c.n, np.int64) for k in
            ("src", "dst", "sport", "dport", "seq", "ack", "flags", "plen")}
    for i, buf in enumerate(c.frames):
        try:
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if eth.type != dpkt.ethernet.ETH_TYPE_IP or not isinstance(ip, dpkt.ip.IP):
                raise ValueError(f"not IPv4 (ethertype {eth.type:#06x})")
            tcp = ip.data
            if ip.p != 6 or not isinstance(tcp, dpkt.tcp.TCP):
                raise ValueError(f"not TCP (protocol {ip.p})")
            if ip.v != 4 or ip.hl != 5:
                raise ValueError(f"IPv4 version/IHL {ip.v}/{ip.hl}")
            if 14 + ip.len != len(buf):
                raise ValueError(f"IP total length {ip.len} + 14 != frame length {len(buf)}")
            if ip.mf or ip.offset:
                raise ValueError("fragment")
        except (dpkt.UnpackError, ValueError) as e:
            c.decode_errors.append((i + 1, repr(e)))
            continue
        cols["src"][i] = int.from_bytes(ip.src, "big")
        cols["dst"][i] = int.from_bytes(ip.dst, "big")
        cols["sport"][i] = tcp.sport
        cols["dport"][i] = tcp.dport
        cols["seq"][i] = tcp.seq
        cols["ack"][i] = tcp.ack
        cols["flags"][i] = tcp.flags
        cols["plen"][i] = len(tcp.data)
    for k, v in cols.items():
        setattr(c, k, v)
    return c


# --- checksums and CRCs ---------------------------------------------------------------------

def ones_complement_sum(data: bytes) -> int:
    """RFC 1071 sum of big-endian 16-bit words (odd length padded with a zero byte), folded."""
    if len(data) % 2:
        data += b"\x00"
    s = int(np.frombuffer(data, dtype=">u2").sum(dtype=np.uint64))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ipv4_checksum(header: bytes) -> int:
    """The checksum an IPv4 header should carry (its checksum field taken as zero)."""
    return ~ones_complement_sum(header[:10] + b"\x00\x00" + header[12:]) & 0xFFFF


def tcp_checksum(src: bytes, dst: bytes, segment: bytes) -> int:
    """The checksum a TCP segment should carry, over the IPv4 pseudo-header and the segment."""
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(segment))
    return ~ones_complement_sum(pseudo + segment[:16] + b"\x00\x00" + segment[18:]) & 0xFFFF


ROCE_OPS = {ku.OP_WRITE_FIRST, ku.OP_WRITE_MIDDLE, ku.OP_WRITE_LAST, ku.OP_WRITE_ONLY}


def icrc_of(frame: bytes) -> int:
    """IBTA A17 invariant CRC of a RoCEv2/IPv4 frame, built plainly: 8 bytes of ones for the
    LRH, IP TOS/TTL/checksum, UDP checksum and BTH byte 4 masked to ones, the rest as is."""
    ip = bytearray(frame[14:34])
    ip[1], ip[8], ip[10:12] = 0xFF, 0xFF, b"\xff\xff"
    udp = bytearray(frame[34:42])
    udp[6:8] = b"\xff\xff"
    bth = bytearray(frame[42:54])
    bth[4] = 0xFF
    return zlib.crc32(b"\xff" * 8 + bytes(ip) + bytes(udp) + bytes(bth) + frame[54:-4])


# --- traces and distributions -----------------------------------------------------------------

# The reference traces ship with the project, compressed (traces/README.md); the tests read them
# from there, or first from $TRAFFICGEN_TRACES where it is set (another copy, e.g. the
# uncompressed originals), each name plain or with a compression suffix.
PROJECT_TRACES = Path(__file__).resolve().parents[1] / "traces"
TRACE_SUFFIXES = ("", ".gz", ".xz", ".bz2")


def traces_dirs() -> list[Path]:
    """Where the reference traces are looked for, in order: $TRAFFICGEN_TRACES (if set), then
    the project's ``traces/``."""
    env = os.environ.get("TRAFFICGEN_TRACES")
    return ([Path(env)] if env else []) + [PROJECT_TRACES]


def real_trace(name: str) -> Path:
    """The path of a reference trace, by its uncompressed name (``"azure-llm-2023-code.csv"``):
    the first of :func:`traces_dirs` that has it, plain or compressed. The project ships them,
    so a missing one fails the test (a broken checkout), never skips it."""
    for folder in traces_dirs():
        for suffix in TRACE_SUFFIXES:
            path = folder / (name + suffix)
            if path.is_file():
                return path
    pytest.fail(f"reference trace {name} not found in {', '.join(map(str, traces_dirs()))} "
                f"(the project ships it in traces/; see traces/README.md)")


def open_trace(name: str):
    """A reference trace's text, decompressed, as a file of lines (``str``)."""
    path = real_trace(name)
    opener = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}.get(path.suffix, open)
    return opener(path, "rt", encoding="utf-8")


def trace_tokens(name: str) -> np.ndarray:
    """(prompt, output) token counts of an Azure CSV trace, one row per request."""
    with open_trace(name) as fh:
        return np.loadtxt(fh, delimiter=",", skiprows=1, usecols=(1, 2))


def trace_times(name: str) -> np.ndarray:
    """Sorted arrival times (int64 ns since the epoch) of an Azure CSV trace."""
    out = []
    with open_trace(name) as fh:
        lines = fh.read().splitlines()[1:]
    for line in lines:
        stamp = line.split(",")[0]
        whole, frac = stamp.split(".")
        base = dt.datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)
        out.append(int(base.timestamp()) * 10**9 + int(frac.ljust(9, "0")[:9]))
    return np.sort(np.array(out, np.int64))


def lognormal_cdf(d):
    """CDF of a (possibly truncated) lognormal Dist, from scipy."""
    base = stats.lognorm(s=d.b, scale=math.exp(d.a))
    lo = base.cdf(d.lo) if d.lo > 0 else 0.0
    hi = base.cdf(d.hi) if math.isfinite(d.hi) else 1.0
    return lambda x: np.clip((base.cdf(x) - lo) / (hi - lo), 0.0, 1.0)


# --- peak memory --------------------------------------------------------------------------------

# runs argv[1:] as a child and prints its exit status and the children's peak RSS (KiB)
RSS_WRAPPER = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""
GROWTH_LIMIT = 1.4  # peak memory of 10 minutes against 1 minute; measured 1.25 (chat)


def peak_rss_of(argv: list[str]) -> float:
    """Peak resident memory (MiB, Linux) of a process running ``argv``, which must succeed."""
    out = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *argv], capture_output=True,
                         text=True, timeout=600)
    rc, kib = out.stdout.split()
    assert rc == "0", out.stderr
    return int(kib) / 1024


# The schedule's columns in the order the tests' row tuples list them (the packet table's first
# eleven, then the encoder's), so columns added to the tables later leave those tuples valid.
ROW_FIELDS = ("ts_ns", "flow_id", "request_id", "direction", "wire_len", "phase", "class",
              "tcp_flags", "seq", "ack", "payload_len", "ipid", "layout", "segoff", "writelen",
              "win", "tsval", "tsecr")


def put_row(rows: np.ndarray, i: int, values: tuple) -> None:
    """Set row ``i`` of schedule ``rows`` from ``values`` in :data:`ROW_FIELDS` order (the
    other columns keep their values)."""
    for name, v in zip(ROW_FIELDS, values, strict=True):
        rows[name][i] = v


def seen_before(t) -> np.ndarray:
    """Per frame with bytes of a packet table ``t`` (a DataFrame in capture order): whether
    they lie below the sequence space an earlier frame of its flow and direction reached (its
    seq + length, a pure ACK's seq included): what a reader at the tap knows, and tshark's
    test for a retransmission or an out-of-order segment."""
    out = np.zeros(len(t), bool)
    top: dict = {}
    for i, (f, d, s, n) in enumerate(zip(t.flow_id.values, t.direction.values,
                                         t.seq.values.astype(np.int64),
                                         t.payload_len.values.astype(np.int64))):
        hi = top.get((f, d))
        out[i] = n > 0 and hi is not None and (s - hi + 2**31) % 2**32 - 2**31 < 0
        end = (s + n) % 2**32
        if hi is None or (end - hi + 2**31) % 2**32 - 2**31 > 0:
            top[(f, d)] = end
    return out
