"""A private veth pair to replay onto and a tcpdump capture of its far end, for the replay
tests and bench/bench_replay.py. Nothing here touches an interface it did not create.

    with VethPair() as veth, PeerCapture(veth.peer, path) as cap:
        ... send onto veth.name ...
    ts, frames = read_pcap(path)
"""
from __future__ import annotations

import itertools
import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import numpy as np

_serial = itertools.count()


def net_admin_reason() -> str | None:
    """Why veth pairs cannot be made here (None when they can)."""
    if os.geteuid() != 0:
        return "replay onto a veth pair needs root (CAP_NET_ADMIN and CAP_NET_RAW)"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    probe = VethPair()
    try:
        probe.create()
    except subprocess.CalledProcessError as e:
        return f"cannot create a veth pair: {e.stderr.strip() or e}"
    finally:
        probe.delete()
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


class VethPair:
    """A veth pair with unique names (``name`` to send on, ``peer`` to capture on), up, with
    IPv6 address generation off so the kernel sends nothing of its own. Deleted on exit."""

    def __init__(self, mtu: int | None = None):
        tag = f"{os.getpid() % 100000:05d}{next(_serial) % 100:02d}"
        self.name, self.peer = f"tgr{tag}a", f"tgr{tag}b"
        self.mtu = mtu
        self.created = False

    def create(self) -> "VethPair":
        _ip("link", "add", self.name, "type", "veth", "peer", "name", self.peer)
        self.created = True
        for dev in (self.name, self.peer):
            _ip("link", "set", dev, "addrgenmode", "none")
            if self.mtu:
                _ip("link", "set", dev, "mtu", str(self.mtu))
            _ip("link", "set", dev, "up")
        deadline = time.monotonic() + 5
        while Path(f"/sys/class/net/{self.name}/carrier").read_text().strip() != "1":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no carrier after 5 s")
            time.sleep(0.01)
        return self

    def delete(self) -> None:
        if Path(f"/sys/class/net/{self.name}").exists():
            subprocess.run(["ip", "link", "del", self.name], capture_output=True, timeout=10)
        self.created = False

    def __enter__(self) -> "VethPair":
        try:
            return self.create()
        except BaseException:
            self.delete()
            raise

    def __exit__(self, *exc) -> None:
        self.delete()


class PeerCapture:
    """tcpdump on ``dev`` into ``path``: nanosecond stamps, a 64 MiB ring. Not in immediate
    mode: woken per frame, tcpdump would preempt the sender it measures on a busy machine;
    woken per ring block, it leaves the last frames in a block the kernel retires after a
    second, hence the wait on exit. Ready when entered, stopped on exit; ``dropped`` is what
    tcpdump says the kernel dropped."""

    def __init__(self, dev: str, path: Path, tcpdump: str = "tcpdump"):
        self.dev, self.path, self.tcpdump = dev, Path(path), tcpdump
        self.proc: subprocess.Popen | None = None
        self.dropped = self.captured = None

    def __enter__(self) -> "PeerCapture":
        self.proc = subprocess.Popen(
            [self.tcpdump, "-i", self.dev, "-w", str(self.path), "-s", "0", "-B", "65536", "-n",
             "--time-stamp-precision=nano"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()  # "listening on ..." once the socket is open
        if "listening" not in line:
            self.proc.kill()
            raise RuntimeError(f"tcpdump did not start: {line.strip()}")
        time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(1.1)  # the last ring block retires after tcpdump's 1 s timeout
        self.proc.send_signal(signal.SIGINT)
        try:
            rest = self.proc.communicate(timeout=10)[1]
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rest = self.proc.communicate()[1]
        for ln in rest.splitlines():
            words = ln.split()
            if "captured" in ln and words:
                self.captured = int(words[0])
            if "dropped by kernel" in ln and words:
                self.dropped = int(words[0])


def read_pcap(path) -> tuple[np.ndarray, list[bytes]]:
    """Timestamps (int64 ns) and frames of a classic pcap (either time resolution), read with
    nothing but struct: the tests' independent check of what arrived."""
    data = Path(path).read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    e, frac = {0xA1B2C3D4: ("<", 1000), 0xA1B23C4D: ("<", 1),
               0xD4C3B2A1: (">", 1000), 0x4D3CB2A1: (">", 1)}[magic]
    pos, ts, frames = 24, [], []
    while pos + 16 <= len(data):
        sec, sub, incl, _orig = struct.unpack_from(e + "IIII", data, pos)
        ts.append(sec * 1_000_000_000 + sub * frac)
        frames.append(data[pos + 16:pos + 16 + incl])
        pos += 16 + incl
    return np.array(ts, np.int64), frames


# --- files to replay -------------------------------------------------------------------------

def make_frames(n: int, seed: int = 1, lo: int = 60, hi: int = 1514) -> list[bytes]:
    """``n`` Ethernet frames of random sizes: a locally administered unicast destination, an
    experimental EtherType (0x88B5, nothing on the peer answers it), the frame number, then
    random bytes. Every frame differs, so order and integrity show in a byte comparison."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(lo, hi + 1, n)
    head = bytes.fromhex("02000000000102000000000288b5")
    return [head + struct.pack(">I", k) + rng.bytes(int(s) - 18) for k, s in enumerate(sizes)]


def write_pcap(path, frames, ts_ns, nanos: bool = True, big: bool = False, linktype: int = 1) -> None:
    """A classic pcap (micro- or nanosecond stamps, either byte order)."""
    e = ">" if big else "<"
    out = [struct.pack(e + "IHHiIII", 0xA1B23C4D if nanos else 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)]
    for f, t in zip(frames, ts_ns):
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
