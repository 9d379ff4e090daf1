"""pcapng output (``-o X.pcapng``): capinfos and tshark read it, every packet's comment is its
row of the packet table, the frames and timestamps are the pcap's, dpkt's reader agrees, and
``trafficgen inspect`` reads it back."""
from __future__ import annotations

import json
import struct
import subprocess
import sys

import dpkt
import pyarrow.parquet as pq
import pytest

import trafficgen as tg

from .helpers import read_pcap

OVER = ["chat.rate=4/s", "network.vlan=42", "network.dscp=18"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pcapng")
    sc = tg.load_scenario("chat", OVER, duration="3s", seed=9)
    ng, pc, pk = d / "c.pcapng", d / "c.pcap", d / "p.parquet"
    report = tg.generate(sc, pcap=ng, packets=pk)
    tg.generate(sc, pcap=pc)
    return sc, ng, pc, pq.read_table(pk), report


def blocks(data: bytes):
    """(type, body) of every block, checking both length fields."""
    o, out = 0, []
    while o < len(data):
        btype, blen = struct.unpack_from("<II", data, o)
        assert blen % 4 == 0 and blen >= 12 and o + blen <= len(data)
        assert struct.unpack_from("<I", data, o + blen - 4)[0] == blen
        out.append((btype, data[o + 8:o + blen - 4]))
        o += blen
    return out


def options(raw: bytes) -> list[tuple[int, bytes]]:
    o, out = 0, []
    while o + 4 <= len(raw):
        code, n = struct.unpack_from("<HH", raw, o)
        if code == 0:
            break
        out.append((code, raw[o + 4:o + 4 + n]))
        o += 4 + n + (-n % 4)
    return out


def test_structure_frames_and_timestamps(pair):
    sc, ng, pc, _, report = pair
    bl = blocks(ng.read_bytes())
    assert bl[0][0] == 0x0A0D0D0A and bl[1][0] == 1
    bom, major, minor, _len = struct.unpack_from("<IHHq", bl[0][1])
    assert (bom, major, minor) == (0x1A2B3C4D, 1, 0)
    shb = dict(options(bl[0][1][16:]))
    assert b"scenario chat" in shb[1] and b"seed 9" in shb[1] and tg.__version__.encode() in shb[1]
    link, _r, snap = struct.unpack_from("<HHI", bl[1][1])
    assert link == 1 and snap >= 65535
    assert dict(options(bl[1][1][8:]))[9] == b"\x09"  # if_tsresol: ns
    epbs = [b for t, b in bl[2:]]
    assert all(t == 6 for t, _ in bl[2:]) and len(epbs) == report["packets"]
    ts, frames = read_pcap(pc)
    for i, body in enumerate(epbs):
        iface, hi, lo, cap, orig = struct.unpack_from("<IIIII", body)
        assert iface == 0 and cap == orig == len(frames[i])
        assert (hi << 32 | lo) == ts[i]
        assert body[20:20 + cap] == frames[i]


def test_comments_are_the_packet_table(pair, tshark):
    _, ng, _, table, _ = pair
    out = subprocess.run([tshark, "-n", "-r", str(ng), "-T", "fields", "-e", "frame.comment"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    cols = {k: table.column(k).to_pylist() for k in ("class", "flow_id", "request_id",
                                                     "direction", "phase")}
    assert len(out) == table.num_rows
    for i, line in enumerate(out):
        want = (f"class={cols['class'][i]} flow={cols['flow_id'][i]} "
                f"request={cols['request_id'][i]} dir={cols['direction'][i]} phase={cols['phase'][i]}")
        assert line == want, i


def test_tshark_and_capinfos_read_it(pair, tshark, capinfos):
    _, ng, _, _, report = pair
    bad = subprocess.run([tshark, "-n", "-r", str(ng), "-o", "tcp.check_checksum:TRUE",
                          "-o", "ip.check_checksum:TRUE", "-Y",
                          '_ws.malformed || _ws.expert.severity >= warning || ip.checksum.status == "Bad"'
                          ' || tcp.checksum.status == "Bad"', "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert bad == []
    info = subprocess.run([capinfos, "-c", "-t", "-i", str(ng)], capture_output=True, text=True,
                          check=True).stdout
    assert "pcapng" in info and f"{report['packets']}" in info.replace(",", "")
    assert "nanoseconds" in subprocess.run([capinfos, str(ng)], capture_output=True, text=True,
                                           check=True).stdout


def test_dpkt_and_inspect_agree(pair):
    _, ng, pc, _, report = pair
    ts, frames = read_pcap(pc)
    with open(ng, "rb") as fh:
        got = list(dpkt.pcapng.Reader(fh))
    assert [bytes(b) for _, b in got] == frames
    done = subprocess.run([sys.executable, "-m", "trafficgen", "inspect", str(ng), "--json"],
                          capture_output=True, text=True, check=True)
    rep = json.loads(done.stdout)
    assert rep["format"] == "pcapng" and rep["packets"] == report["packets"]
    assert rep["captured_bytes"] == rep["wire_bytes"] == sum(len(f) for f in frames)
    assert rep["first_ns"] == ts[0] and rep["last_ns"] == ts[-1]


def test_same_bytes_whatever_the_batching(pair, tmp_path):
    sc, ng, *_ = pair
    again = tmp_path / "again.pcapng"
    tg.generate(sc, pcap=again, batch_packets=250, window="1s")
    assert again.read_bytes() == ng.read_bytes()

