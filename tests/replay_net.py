"""A private veth pair to replay onto and a tcpdump capture of its far end, for the replay
tests and bench/bench_replay.py. Nothing here touches an interface it did not create.

    with VethPair() as veth, PeerCapture(veth.peer, path) as cap:
        ... send onto veth.name ...
    ts, frames = read_pcap(path)  # helpers.read_pcap

(``read_pcap`` and ``write_pcap`` are ``helpers``' own, named here too for bench/bench_replay.py.)
"""
from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import numpy as np

from .helpers import read_pcap, write_pcap

__all__ = ["PeerCapture", "VethPair", "make_frames", "net_admin_reason", "peer_captures", "read_pcap",
           "write_pcap"]

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

    def __init__(self, dev: str, path: Path, tcpdump: str = "tcpdump", wait: float = 1.1):
        self.dev, self.path, self.tcpdump, self.wait = dev, Path(path), tcpdump, wait
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
        time.sleep(self.wait)  # the last ring block retires after tcpdump's 1 s timeout
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


@contextlib.contextmanager
def peer_captures(*pairs):
    """``PeerCapture`` of each (dev, path), stopped after one wait for all (the first to stop
    waits; the others' last blocks have retired by then)."""
    with contextlib.ExitStack() as stack:
        for k, (dev, path) in enumerate(pairs):
            stack.enter_context(PeerCapture(dev, path, wait=1.1 if k == len(pairs) - 1 else 0))
        yield


# --- files to replay -------------------------------------------------------------------------

def make_frames(n: int, seed: int = 1, lo: int = 60, hi: int = 1514) -> list[bytes]:
    """``n`` Ethernet frames of random sizes: a locally administered unicast destination, an
    experimental EtherType (0x88B5, nothing on the peer answers it), the frame number, then
    random bytes. Every frame differs, so order and integrity show in a byte comparison."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(lo, hi + 1, n)
    head = bytes.fromhex("02000000000102000000000288b5")
    return [head + struct.pack(">I", k) + rng.bytes(int(s) - 18) for k, s in enumerate(sizes)]
