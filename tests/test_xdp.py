"""``replay --xdp``: frames sent through AF_XDP sockets arrive byte for byte (tcpdump on the
peer of a veth pair this test makes), paced and counted per port like AF_PACKET's; where
AF_XDP cannot bind (a queue another AF_XDP socket holds), one stderr line says so and
AF_PACKET sends every frame."""
from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path

import numpy as np
import pytest

from .helpers import cli, ipv4_checksum, tcp_checksum
from .replay_net import PeerCapture, VethPair, make_frames, net_admin_reason, peer_captures, read_pcap, write_pcap

T0 = 1_700_000_000 * 10**9


def tcp4(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An Ethernet/IPv4/TCP frame, checksums right."""
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    seg = struct.pack(">HHIIBBHHH", sport, dport, 1000, 2000, 5 << 4, 0x18, 65535, 0, 0) + payload
    seg = seg[:16] + struct.pack(">H", tcp_checksum(s, d, seg)) + seg[18:]
    hdr = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 1, 0, 64, 6, 0, s, d)
    hdr = hdr[:10] + struct.pack(">H", ipv4_checksum(hdr)) + hdr[12:]
    return bytes.fromhex("020000000002020000000001") + b"\x08\x00" + hdr + seg


@pytest.fixture(scope="module")
def veths():
    reason = net_admin_reason()
    if reason:
        if os.environ.get("TRAFFICGEN_REQUIRE_TOOLS"):
            pytest.fail(f"{reason}, and TRAFFICGEN_REQUIRE_TOOLS is set")
        pytest.skip(reason)
    with VethPair() as a, VethPair() as b:
        yield a, b


def xdp_reason(dev: str) -> str | None:
    """Why this kernel or process cannot bind an AF_XDP socket to ``dev`` (None: it can)."""
    from trafficgen.playback.xdp import XdpPorts
    try:
        XdpPorts([dev], 1514).close()
    except OSError as e:
        return f"AF_XDP is not available: {e.strerror or e}"
    return None


def test_xdp_sends_every_frame_byte_for_byte_on_two_ports(veths, tmp_path):
    """Two ports through AF_XDP: client frames (``--client-net``) out of one, server frames
    out of the other (source MAC: the port's own), at the file's 50 us gaps; each peer receives
    its side's frames whole and in order, and the report counts them per port."""
    a, b = veths
    reason = xdp_reason(a.name)
    if reason:
        if os.environ.get("TRAFFICGEN_REQUIRE_TOOLS"):
            pytest.fail(f"{reason}, and TRAFFICGEN_REQUIRE_TOOLS is set")
        pytest.skip(reason)
    rng = np.random.default_rng(7)
    up = [k % 3 != 0 for k in range(300)]
    frames = [tcp4(f"10.1.0.{k % 200 + 1}", "10.9.0.9", 40000 + k, 80, payload=rng.bytes(int(n)))
              if u else tcp4("10.9.0.9", f"10.1.0.{k % 200 + 1}", 80, 40000 + k, payload=rng.bytes(int(n)))
              for k, (u, n) in enumerate(zip(up, rng.integers(0, 1460, len(up))))]
    path = tmp_path / "in.pcap"
    write_pcap(path, frames, T0 + np.arange(len(frames), dtype=np.int64) * 50_000)
    with peer_captures((a.peer, tmp_path / "a.pcap"), (b.peer, tmp_path / "b.pcap")):
        done = cli("replay", path, "--iface", a.name, "--peer-iface", b.name, "--client-net",
                   "10.1.0.0/24", "--xdp", "--json")
    assert done.returncode == 0, done.stderr
    assert "AF_XDP not used" not in done.stderr
    rep = json.loads(done.stdout)
    assert rep["path"] == "af_xdp" and rep["xdp_mode"] == "copy"  # veth: no zero-copy
    mac = {v: bytes.fromhex(Path(f"/sys/class/net/{v}/address").read_text().strip().replace(":", ""))
           for v in (a.name, b.name)}
    want_a = [f[:6] + mac[a.name] + f[12:] for f, u in zip(frames, up) if u]
    want_b = [f[:6] + mac[b.name] + f[12:] for f, u in zip(frames, up) if not u]
    assert read_pcap(tmp_path / "a.pcap")[1] == want_a
    assert read_pcap(tmp_path / "b.pcap")[1] == want_b
    assert [p["packets"] for p in rep["ports"]] == [len(want_a), len(want_b)]
    assert rep["packets"] == len(frames) and rep["send_errors"] == 0
    assert rep["departure_error_us"]["p50"] < 1000  # paced: the file's 50 us gaps, not a burst
    assert rep["elapsed_s"] >= 0.0149  # 299 gaps of 50 us


def test_xdp_refused_falls_back_with_one_line(veths, tmp_path):
    """Another AF_XDP socket holds the interface's queue: the bind fails (EBUSY), one line
    says why, AF_PACKET sends every frame (peer capture), the report says af_packet."""
    from trafficgen.playback.xdp import XdpPorts
    a, _ = veths
    frames = make_frames(200, seed=8)
    path = tmp_path / "in.pcap"
    write_pcap(path, frames, T0 + np.arange(len(frames), dtype=np.int64) * 1000)
    held = xdp_reason(a.name) is None  # else AF_XDP fails anyway, at the socket
    holder = XdpPorts([a.name], 1514) if held else None  # this process holds queue 0 of a
    try:
        with PeerCapture(a.peer, tmp_path / "a.pcap"):
            done = cli("replay", path, "--iface", a.name, "--xdp", "--topspeed", "--json")
    finally:
        if holder is not None:
            holder.close()
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if "AF_XDP" in ln]
    assert len(lines) == 1 and "sending through AF_PACKET" in lines[0], done.stderr
    assert "bind to" in lines[0] or not held, lines[0]
    rep = json.loads(done.stdout)
    assert rep["path"] == "af_packet" and "xdp_mode" not in rep
    assert read_pcap(tmp_path / "a.pcap")[1] == frames
