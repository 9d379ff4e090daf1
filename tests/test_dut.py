"""Replay through a device under test on two ports.

Without root: the rewrite kernel (MACs, mapped and shifted addresses) leaves every checksum
right, as tshark verifies; the sides of frames (by ground truth, client networks or SYN).
With root: a device made of real Linux parts (``tests/dut_net.py``: a namespace routing
between two veth pairs under an nftables stateful firewall; one for the module, reset per
test) passes our capture whole, and its connection tracking counts the flow table's
connections (three times as many with ``--loop 3 --unique-ip``); a capture of the real Linux
stack made elsewhere, split by ``--client-net``, passes it too. Replays run in this process
(the lab's ports are in this namespace): a fresh process per replay cost seconds each.
TRAFFICGEN_DUT_ALL=1 replays every TCP scenario, not just chat.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from trafficgen.playback.capture import CaptureFile
from trafficgen.playback.ports import Addressing, Split, syn_split

from .dut_net import DutLab, NsCapture, sh
from .helpers import (
    TSHARK_CHECKSUMS,
    ipv4_checksum,
    ones_complement_sum,
    read_pcap,
    require_tool,
    run_tshark,
    tcp_checksum,
    write_pcap,
    write_pcapng,
)

T0 = 1_700_000_000 * 10**9
# the TCP scenarios (kv-transfer is RoCEv2 over UDP: a TCP firewall drops it), with the
# arguments that give a short capture some requests
SCENARIOS = {"chat": [], "coding": ["-t", "coding.rate=40/s"], "reasoning": [], "agentic": [], "rag": [],
             "multimodal": [], "enterprise-mix": []}


def ip4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


def tcp4(src, dst, sport, dport, flags=0x10, payload=b"x" * 10, vlan=None) -> bytes:
    seg = struct.pack(">HHIIBBHHH", sport, dport, 1000, 2000, 5 << 4, flags, 65535, 0, 0) + payload
    seg = seg[:16] + struct.pack(">H", tcp_checksum(ip4(src), ip4(dst), seg)) + seg[18:]
    hdr = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 1, 0, 64, 6, 0, ip4(src), ip4(dst))
    hdr = hdr[:10] + struct.pack(">H", ipv4_checksum(hdr)) + hdr[12:]
    eth = bytes.fromhex("020000000002020000000001")
    eth += (struct.pack(">HH", 0x8100, vlan) if vlan is not None else b"") + b"\x08\x00"
    return eth + hdr + seg


def udp4(src, dst, sport, dport, payload=b"y" * 20, csum=True) -> bytes:
    dgram = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    if csum:
        pseudo = ip4(src) + ip4(dst) + struct.pack(">BBH", 0, 17, len(dgram))
        c = (~ones_complement_sum(pseudo + dgram)) & 0xFFFF or 0xFFFF
        dgram = dgram[:6] + struct.pack(">H", c) + dgram[8:]
    hdr = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(dgram), 1, 0, 64, 17, 0, ip4(src), ip4(dst))
    hdr = hdr[:10] + struct.pack(">H", ipv4_checksum(hdr)) + hdr[12:]
    return bytes.fromhex("020000000002020000000001") + b"\x08\x00" + hdr + dgram


def tcp6(src: bytes, dst: bytes, sport, dport, payload=b"z" * 8) -> bytes:
    seg = struct.pack(">HHIIBBHHH", sport, dport, 1, 2, 5 << 4, 0x18, 65535, 0, 0) + payload
    pseudo = src + dst + struct.pack(">IxxxB", len(seg), 6)
    c = (~ones_complement_sum(pseudo + seg)) & 0xFFFF
    seg = seg[:16] + struct.pack(">H", c) + seg[18:]
    hdr = struct.pack(">IHBB16s16s", 6 << 28, len(seg), 6, 64, src, dst)
    return bytes.fromhex("020000000002020000000001") + b"\x86\xdd" + hdr + seg


def buffer_of(frames):
    buf = np.frombuffer(b"".join(frames), np.uint8).copy()
    length = np.array([len(f) for f in frames], np.int64)
    off = np.concatenate(([0], np.cumsum(length)[:-1])).astype(np.int64)
    return buf, off, length


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    """One second of chat: (capture, flow table, packet table), made once for the module."""
    from .helpers import cli
    d = tmp_path_factory.mktemp("chat")
    paths = d / "chat.pcapng", d / "flows.parquet", d / "packets.parquet"
    done = cli("generate", "chat", "--duration", "1s", "-o", paths[0], "--flows", paths[1],
               "--packets", paths[2])
    assert done.returncode == 0, done.stderr
    return paths


# --- without root ------------------------------------------------------------------------------

def test_rewrite_maps_shifts_and_keeps_checksums_right(tmp_path):
    tshark = require_tool("tshark")
    v6c, v6s = bytes.fromhex("20010db800c0" + "00" * 9 + "05"), bytes.fromhex("20010db8005e" + "00" * 9 + "07")
    frames = [tcp4("10.20.1.5", "203.0.113.10", 40000, 443, flags=0x02),       # up
              tcp4("203.0.113.10", "10.20.1.5", 443, 40000, flags=0x12),       # down
              tcp4("10.20.255.250", "203.0.113.11", 40001, 443, vlan=7),      # up, tagged
              udp4("10.20.1.6", "203.0.113.10", 5000, 4789),                  # up, UDP
              udp4("203.0.113.10", "10.20.1.6", 4789, 5000, csum=False),      # down, no csum
              tcp6(v6c, v6s, 40002, 443)]                                     # up, IPv6
    port = np.array([0, 1, 0, 0, 1, 0], np.uint8)
    buf, off, length = buffer_of(frames)
    a = Addressing(["a", "b"], dmac="02:aa:00:00:00:01", smac="02:aa:00:00:00:02",
                   peer_dmac="02:bb:00:00:00:01", peer_smac="02:bb:00:00:00:02",
                   map_client=["10.20.0.0/16=10.77.0.0/16"], map_server=["203.0.113.0/24=10.99.0.0/24",
                                                                         "2001:db8:5e::/48=fd00:5e::/48"],
                   unique_ip=True)
    a.plen_from(None)
    a.span = 10
    a.apply(buf, off, length, port, pass_k=1)  # client addresses + 10 within 10.77.0.0/16
    out = [bytes(buf[o:o + n]) for o, n in zip(off, length)]
    path = tmp_path / "rw.pcap"
    write_pcap(path, out, T0 + np.arange(len(out)) * 1000)
    fields = run_tshark(tshark, path, *TSHARK_CHECKSUMS, "-T", "fields", "-e", "eth.dst", "-e",
                        "eth.src", "-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst",
                        "-e", "tcp.checksum.status", "-e", "udp.checksum.status",
                        "-e", "ip.checksum.status").splitlines()
    rows = [ln.split("\t") for ln in fields]
    assert [r[0] for r in rows] == ["02:aa:00:00:00:01", "02:bb:00:00:00:01", "02:aa:00:00:00:01",
                                    "02:aa:00:00:00:01", "02:bb:00:00:00:01", "02:aa:00:00:00:01"]
    assert rows[1][1] == "02:bb:00:00:00:02"
    assert [(r[2], r[3]) for r in rows[:5]] == [
        ("10.77.1.15", "10.99.0.10"), ("10.99.0.10", "10.77.1.15"), ("10.77.0.4", "10.99.0.11"),
        ("10.77.1.16", "10.99.0.10"), ("10.99.0.10", "10.77.1.16")]  # 255.250 + 10 wraps in the /16
    assert rows[5][4] == "2001:db8:c0::f" and rows[5][5] == "fd00:5e::7"
    for r in rows:
        assert "0" not in (r[6], r[7], r[8]), r  # tshark: 0 bad, 1 good, 2 unchecked, 3 absent
    assert rows[0][6] == "1" and rows[3][7] == "1" and rows[5][6] == "1" and rows[4][7] == "3"
    bad = run_tshark(tshark, path, *TSHARK_CHECKSUMS, "-Y",
                     'ip.checksum.status == "Bad" || tcp.checksum.status == "Bad" || udp.checksum.status == "Bad"')
    assert bad == ""


def test_sides_by_syn_by_client_net_and_by_ground_truth(tmp_path):
    frames = [udp4("10.9.0.1", "10.1.0.5", 53, 3000),                  # a flow begun by 10.9.0.1
              tcp4("10.1.0.5", "10.9.0.9", 40000, 80, flags=0x02),      # SYN: 10.1.0.5 the client
              tcp4("10.9.0.9", "10.1.0.5", 80, 40000, flags=0x12),
              udp4("10.1.0.5", "10.9.0.1", 3000, 53),
              tcp4("10.1.0.5", "10.9.0.9", 40000, 80),
              tcp4("10.9.0.9", "10.1.0.5", 80, 40000)]
    buf, off, length = buffer_of(frames)
    from trafficgen.playback.ports import heads_of
    h = heads_of(buf, off, length)
    assert list(syn_split(h.fam, h.proto, h.flags, h.skey, h.dkey)) == [0, 0, 1, 1, 0, 1]
    path = tmp_path / "x.pcapng"
    write_pcapng(path, frames, T0 + np.arange(6) * 1000)
    for split, want in ((Split(["10.1.0.0/24"]), [1, 0, 1, 0, 0, 1]),
                        (Split(syn=True), [0, 0, 1, 1, 0, 1])):
        for c in CaptureFile(path).chunks():
            split.scan(c, True, c.big)
        assert list(split.finish(path)) == want
    gt = Split()
    for c in CaptureFile(path).chunks():
        gt.scan(c, True, c.big)
    with pytest.raises(Exception, match="cannot tell which side sent packet 1 .*--client-net|client_net"):
        gt.finish(path)


def test_ground_truth_sides_read_from_our_pcapng(chat):
    path, _, packets = chat
    split = Split()
    for c in CaptureFile(path).chunks():
        split.scan(c, True, c.big)
    dirs = split.finish(path)
    truth = pq.read_table(packets, columns=["direction"]).column(0).to_pylist()
    assert list(np.where(dirs == 0, "up", "down")) == truth


@pytest.mark.parametrize("args, words", [
    (["--iface", "lo", "--peer-iface", "lo"], ["--peer-iface lo", "must differ"]),
    (["--iface", "lo", "--peer-iface", "nosuch0"], ["--peer-iface nosuch0", "no such interface"]),
    (["--iface", "lo", "--dmac", "zz"], ["--dmac zz", "MAC address"]),
    (["--iface", "lo", "--peer-dmac", "02:00:00:00:00:01"], ["--peer-dmac", "give --peer-iface"]),
    (["--iface", "lo", "--client-net", "10.0.0.0/8"], ["--client-net", "give --peer-iface"]),
    (["--iface", "lo", "--peer-iface", "x", "--split", "syn", "--client-net", "10.0.0.0/8"], ["not both"]),
    (["--iface", "lo", "--peer-iface", "x", "--client-net", "10.0.0.0/33"], ["--client-net 10.0.0.0/33"]),
    (["--iface", "lo", "--map-client", "10.0.0.0/8=10.0.0.0/16"], ["--map-client", "one prefix length"]),
    (["--iface", "lo", "--map-server", "10.0.0.0/8"], ["--map-server", "OLD=NEW"]),
    (["--iface", "lo", "--count-back"], ["--count-back", "give --peer-iface"]),
    (["--iface", "lo", "--loop", "2", "--unique-ip"], ["--unique-ip", "give --peer-iface"]),
    (["--iface", "lo", "--dmac", "arp:10.1.2"], ["--dmac arp:10.1.2", "arp:IPV4"]),
])
def test_bad_two_port_arguments_are_one_line_and_exit_2(tmp_path, capsys, args, words):
    from trafficgen.cli.main import main
    path = tmp_path / "x.pcap"
    write_pcap(path, [tcp4("10.1.0.1", "10.9.0.9", 40000, 80, flags=0x02)], np.array([T0]))
    assert main(["replay", str(path), *args]) == 2  # in this process: quick
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)


def test_a_bad_argument_from_a_fresh_process(tmp_path):
    from .helpers import cli
    path = tmp_path / "x.pcap"
    write_pcap(path, [tcp4("10.1.0.1", "10.9.0.9", 40000, 80, flags=0x02)], np.array([T0]))
    done = cli("replay", path, "--iface", "lo", "--peer-iface", "lo")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "error: --peer-iface lo: the same interface as --iface: the two ports must differ\n"


# --- with root: the device under test --------------------------------------------------------

@pytest.fixture(scope="module")
def tools():
    reason = None
    if os.geteuid() != 0:
        reason = "a device under test in namespaces needs root"
    else:
        for tool in ("ip", "nft", "conntrack", "tcpdump"):
            if shutil.which(tool) is None:
                reason = f"{tool} is not installed (apt-get install nftables conntrack tcpdump iproute2)"
                break
        else:
            probe = f"tgprobe{os.getpid()}"
            made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
            subprocess.run(["ip", "netns", "del", probe], capture_output=True)
            if made.returncode != 0:
                reason = f"cannot make a network namespace: {made.stderr.strip()}"
    if reason:
        if os.environ.get("TRAFFICGEN_REQUIRE_TOOLS"):
            pytest.fail(f"{reason}, and TRAFFICGEN_REQUIRE_TOOLS is set")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def dut_lab(tools):
    with DutLab() as it:
        yield it


@pytest.fixture
def lab(dut_lab):
    """The module's device, its connection tracking and firewall counters reset."""
    dut_lab.reset()
    return dut_lab


@pytest.fixture(scope="module")
def veth():
    """A veth pair in this namespace: two ports that are up, where nothing answers ARP."""
    from .replay_net import VethPair, net_admin_reason
    reason = net_admin_reason()
    if reason:
        if os.environ.get("TRAFFICGEN_REQUIRE_TOOLS"):
            pytest.fail(f"{reason}, and TRAFFICGEN_REQUIRE_TOOLS is set")
        pytest.skip(reason)
    with VethPair() as it:
        yield it


def in_process(*args) -> tuple[int, str]:
    """``trafficgen ARGS`` in this process (kernels loaded once for the module): exit code and
    standard output."""
    from trafficgen.cli.main import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    return code, out.getvalue()


def replay_through(lab, tmp_path, path, *extra, tag="r"):
    """Replay ``path`` through ``lab``; (report, IPv4 frames that arrived on port A, on B)."""
    with NsCapture(None, [lab.port_a, lab.port_b], [tmp_path / f"{tag}{p}.pcap" for p in "ab"]):
        code, out = in_process("replay", path, "--iface", lab.port_a, "--peer-iface", lab.port_b, "--dmac",
                               lab.dmac_a, "--peer-dmac", lab.dmac_b, "--json", "--count-back", *extra)
    assert code == 0
    ip = [[f for f in read_pcap(tmp_path / f"{tag}{p}.pcap")[1] if f[12:14] == b"\x08\x00"] for p in "ab"]
    return json.loads(out), ip[0], ip[1]  # IPv4 only: not the device's ARP replies


def sides(path) -> tuple[int, int]:
    split = Split()
    for c in CaptureFile(path).chunks():
        split.scan(c, True, c.big)
    d = split.finish(path)
    return int((d == 0).sum()), int((d == 1).sum())


@pytest.mark.parametrize("scenario", list(SCENARIOS) if os.environ.get("TRAFFICGEN_DUT_ALL") else ["chat"])
def test_capture_passes_a_stateful_firewall_whole(lab, tmp_path, scenario, chat):
    from .helpers import cli
    path, table = chat[:2]
    if scenario != "chat":
        path, table = tmp_path / f"{scenario}.pcapng", tmp_path / "f.parquet"
        done = cli("generate", scenario, "--duration", "1s", *SCENARIOS[scenario], "-o", path,
                   "--flows", table)
        assert done.returncode == 0, done.stderr
    flows = pq.read_table(table).num_rows
    up, down = sides(path)
    rep, at_a, at_b = replay_through(lab, tmp_path, path, "--multiplier", "10")
    assert (len(at_b), len(at_a)) == (up, down)  # every frame passed, each side to the other
    assert [p["came_back"] for p in rep["ports"]] == [up, down]
    assert [p["packets"] for p in rep["ports"]] == [up, down]
    assert lab.nft_counters()["dropped"] == 0
    assert lab.conntrack_tcp() == flows > 0
    # three passes, client addresses shifted: three times the connections
    lab.flush_conntrack()
    rep3, at_a, at_b = replay_through(lab, tmp_path, path, "--topspeed", "--loop", "3",
                                      "--unique-ip", "--tx-threads", "2", tag="u")
    assert lab.nft_counters()["dropped"] == 0
    assert lab.conntrack_tcp() == 3 * flows
    assert len(at_b) == 3 * up and len(at_a) == 3 * down
    assert rep3["unique_ip"]["passes"] == 3 and rep3["warnings"] == []
    span = rep3["unique_ip"]["shift_per_pass"]
    srcs = {struct.unpack(">I", f[26:30])[0] for f in at_b}  # IPv4 sources of what went up
    assert len(srcs) == 3 * len({s for s in srcs if s < min(srcs) + span})


def test_addresses_mapped_and_a_loop_without_unique_ip_warns(lab, tmp_path, chat):
    """Client and server networks mapped: what arrives carries the new addresses, checksums
    right (tshark), and the device tracks every connection; ``--loop 2`` without
    ``--unique-ip`` warns, and its second pass opens no new connection (Linux lets a SYN
    reopen one in TIME_WAIT)."""
    tshark = require_tool("tshark")
    path, flows, _ = chat
    up, down = sides(path)
    rep, at_a, at_b = replay_through(lab, tmp_path, path, "--topspeed", "--loop", "2",
                                     "--map-client", "10.20.0.0/16=10.77.0.0/16",
                                     "--map-server", "203.0.113.0/24=10.99.0.0/24")
    assert (len(at_b), len(at_a)) == (2 * up, 2 * down)
    assert lab.conntrack_tcp() == pq.read_table(flows).num_rows
    assert {f[26:28] for f in at_b} == {bytes([10, 77])} and {f[30:33] for f in at_b} == {bytes([10, 99, 0])}
    bad = run_tshark(tshark, tmp_path / "rb.pcap", *TSHARK_CHECKSUMS, "-Y",
                     'ip.checksum.status == "Bad" || tcp.checksum.status == "Bad"')
    assert bad == ""
    assert any("same connections" in w for w in rep["warnings"]), rep["warnings"]
    assert "unique_ip" not in rep


def test_capture_made_elsewhere_passes_split_by_client_net(lab, tmp_path):
    """tcpdump of python's http.server and urllib in two namespaces (the real Linux stack)."""
    ethtool = require_tool("ethtool")
    c, s, path = f"{lab.tag}c", f"{lab.tag}s", tmp_path / "real.pcap"
    made = []
    try:
        for ns in (c, s):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        sh("ip", "link", "add", "rc0", "netns", c, "type", "veth", "peer", "name", "rs0", "netns", s)
        for ns, dev, addr in ((c, "rc0", "10.1.0.1/24"), (s, "rs0", "10.1.0.2/24")):
            sh("ip", "addr", "add", addr, "dev", dev, ns=ns)
            sh("ip", "link", "set", dev, "up", ns=ns)
            # checksums computed by the stack, not left to the veth's offload (which captures
            # partial ones the device drops): without ethtool nothing gets through
            sh(ethtool, "-K", dev, "tx", "off", "tso", "off", "gso", "off", ns=ns, check=False)
        server = subprocess.Popen(["ip", "netns", "exec", s, sys.executable, "-m", "http.server",
                                   "8000", "--bind", "10.1.0.2", "-d", str(tmp_path)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            cap = subprocess.Popen(["ip", "netns", "exec", c, "tcpdump", "-i", "rc0", "-w", str(path),
                                    "-n", "--immediate-mode", "tcp"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
            assert "listening" in cap.stderr.readline()
            code = ("import urllib.request, time\n"
                    "get = urllib.request.build_opener(urllib.request.ProxyHandler({})).open\n"
                    "for i in range(3):\n"
                    "    for t in range(50):\n"
                    "        try:\n"
                    "            get('http://10.1.0.2:8000/', timeout=2).read(); break\n"
                    "        except OSError: time.sleep(0.1)\n")
            sh(sys.executable, "-c", code, ns=c, timeout=30)
            time.sleep(0.5)
            cap.send_signal(signal.SIGINT)
            cap.communicate(timeout=10)
        finally:
            server.terminate()
            server.wait(timeout=10)
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
    frames = read_pcap(path)[1]
    up = sum(1 for f in frames if f[26:30] == ip4("10.1.0.1"))
    assert up and len(frames) > up
    rep, at_a, at_b = replay_through(lab, tmp_path, path, "--client-net", "10.1.0.1/32",  # the
                                     "--dmac", "arp:10.250.1.254", "--peer-dmac", "arp:10.250.2.254")  # device answers
    assert (len(at_b), len(at_a)) == (up, len(frames) - up)
    assert lab.nft_counters()["dropped"] == 0
    assert lab.conntrack_tcp() == 3
    assert rep["split"] == "client_net"


def test_no_way_to_split_is_one_line_and_exit_2(veth, tmp_path, capsys):
    from trafficgen.cli.main import main
    path = tmp_path / "plain.pcap"
    write_pcap(path, [tcp4("10.1.0.1", "10.9.0.9", 40000, 80, flags=0x02)], np.array([T0]))
    assert main(["replay", str(path), "--iface", veth.name, "--peer-iface", veth.peer]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert err.startswith("error: --peer-iface") and "--client-net" in err


def test_live_generate_on_two_ports_passes(lab, tmp_path, chat):
    """``generate --iface A --peer-iface B``: the same frames as the capture of that scenario
    and seed, split by the packet table's direction, pass the device whole."""
    path, flows, _ = chat
    up, down = sides(path)
    with NsCapture(None, [lab.port_a, lab.port_b], [tmp_path / "a.pcap", tmp_path / "b.pcap"]):
        code, out = in_process("generate", "chat", "--duration", "1s", "--iface", lab.port_a, "--peer-iface",
                               lab.port_b, "--dmac", lab.dmac_a, "--peer-dmac", lab.dmac_b, "--multiplier", "10")
    assert code == 0
    assert (len(read_pcap(tmp_path / "b.pcap")[1]), len(read_pcap(tmp_path / "a.pcap")[1])) == (up, down)
    assert lab.nft_counters()["dropped"] == 0
    assert lab.conntrack_tcp() == pq.read_table(flows).num_rows
    assert "client port" in out and "server port" in out


def test_threads_keep_each_flows_order(tools, tmp_path, chat):
    """``--topspeed --tx-threads 2``: every frame arrives, and each flow's frames (both
    directions) in the file's order."""
    import trafficgen as tg

    from .replay_net import PeerCapture, VethPair
    path = chat[0]
    sent = []
    for c in CaptureFile(path).chunks():
        sent += [bytes(c.buf[o:o + n]) for o, n in zip(c.off, c.length)]
    with VethPair() as veth:
        cap = tmp_path / "peer.pcap"
        with PeerCapture(veth.peer, cap):
            rep = tg.replay(path, veth.name, tg.Rate("topspeed"), loop=3, tx_threads=2)
        got = read_pcap(cap)[1]
    assert rep["warnings"] == [] and rep["packets"] == 3 * len(sent)

    def flows(frames):
        out: dict = {}
        for f in frames:
            ends = sorted([f[26:30] + f[34:36], f[30:34] + f[36:38]])
            out.setdefault(tuple(ends), []).append(f)
        return out
    want = flows(sent * 3)
    assert len(got) == 3 * len(sent) and len(want) > 5
    assert flows(got) == want  # per flow, the file's order (across flows it may differ)


def test_streamed_and_kept_files_send_the_same_bytes(tools, tmp_path, monkeypatch, chat):
    """A file read in chunks each pass (over the in-memory limit) and one kept in memory send
    the same frames out of each port, rewritten alike; with ``unique_ip``, pass 2's client
    addresses are pass 1's plus the span the report names; checksums right (tshark)."""
    import trafficgen as tg
    import trafficgen.playback.replayer as replayer

    from .replay_net import VethPair, peer_captures
    tshark = require_tool("tshark")
    path = chat[0]
    got = []
    with VethPair() as a, VethPair() as b:
        for cache in (replayer.CACHE_BYTES, 0):
            monkeypatch.setattr(replayer, "CACHE_BYTES", cache)
            pa, pb = tmp_path / f"a{cache}.pcap", tmp_path / f"b{cache}.pcap"
            with peer_captures((a.peer, pa), (b.peer, pb)):
                rep = tg.replay(path, a.name, tg.Rate("topspeed"), peer_iface=b.name, loop=2,
                                dmac="02:00:00:00:0a:01", peer_dmac="02:00:00:00:0b:01",
                                map_server="203.0.113.0/24=10.99.0.0/24", unique_ip=True)
            got.append((read_pcap(pa)[1], read_pcap(pb)[1]))
    assert got[0] == got[1]
    up, down = got[0]
    assert rep["ports"][0]["packets"] == len(up) and rep["ports"][1]["packets"] == len(down)
    span, n = rep["unique_ip"]["shift_per_pass"], len(up) // 2
    assert span > 1 and up[0][:6] == bytes.fromhex("020000000a01") and down[0][:6] == bytes.fromhex("020000000b01")
    for f1, f2 in zip(up[:n], up[n:]):
        s1, s2 = struct.unpack(">I", f1[26:30])[0], struct.unpack(">I", f2[26:30])[0]
        assert s2 - s1 == span or (s2 - s1) % 65536 == span  # within the client /16
        assert f2[30:33] == bytes([10, 99, 0])
    bad = run_tshark(tshark, tmp_path / "b0.pcap", *TSHARK_CHECKSUMS, "-Y",
                     'ip.checksum.status == "Bad" || tcp.checksum.status == "Bad"')
    assert bad == ""


def test_arp_that_nobody_answers_is_one_line_and_exit_2(veth, tmp_path, capsys, monkeypatch):
    """``--dmac arp:IP`` where nothing answers (the peer has no address): one line naming
    the port and the time waited (each try's wait shortened here)."""
    import trafficgen.playback.ports as ports
    from trafficgen.cli.main import main
    monkeypatch.setattr(ports, "ARP_WAIT_S", 0.2)
    path = tmp_path / "plain.pcap"
    write_pcap(path, [tcp4("10.1.0.1", "10.9.0.9", 40000, 80, flags=0x02)], np.array([T0]))
    t = time.monotonic()
    assert main(["replay", str(path), "--iface", veth.name, "--peer-iface", veth.peer, "--client-net",
                 "10.1.0.0/24", "--dmac", "arp:10.250.1.99"]) == 2
    out, err = capsys.readouterr()
    assert time.monotonic() - t >= 0.6
    assert out == "" and err.splitlines() == [
        f"error: --dmac arp:10.250.1.99: nothing answered ARP for 10.250.1.99 on {veth.name} in 0.6 s"]
