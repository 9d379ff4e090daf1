"""The capture on the wire: what independent decoders (tshark, dpkt, scapy, plain Python) make
of the generated pcap, and whether it agrees with the Parquet tables row for row.

Everything here is recomputed from the bytes of the file: checksums, sequence spaces,
handshakes and teardowns, per-flow totals. The shared runs come from ``conftest.py``.
"""
from __future__ import annotations

import ipaddress
import struct
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import dpkt
import numpy as np
import pytest

from trafficgen.schema import ACK, FIN, PSH, RST, SYN

from .helpers import (
    PCAP_NS_MAGIC,
    TSHARK_PROBLEMS,
    Capture,
    ipv4_checksum,
    ones_complement_sum,
    read_capture,
    run_tshark,
    table_columns,
    tcp_checksum,
)

M32 = 0xFFFFFFFF


def test_checksum_helpers_against_known_values():
    # RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2 (folded)
    assert ones_complement_sum(bytes.fromhex("0001f203f4f5f6f7")) == 0xDDF2
    # a textbook IPv4 header (checksum b861)
    hdr = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert ipv4_checksum(hdr) == 0xB861
    assert ones_complement_sum(bytes.fromhex("01")) == 0x0100


def ip_u32(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


_CAPTURES: dict[Path, Capture] = {}


def capture_of(run) -> Capture:
    if run.pcap not in _CAPTURES:
        _CAPTURES[run.pcap] = read_capture(run.pcap)
    return _CAPTURES[run.pcap]


@dataclass
class Tables:
    flows: dict
    requests: dict
    packets: dict


_TABLES: dict[Path, Tables] = {}


def tables_of(run) -> Tables:
    if run.flows not in _TABLES:
        flows = table_columns(run.flows)
        flows["src_ip"] = np.array([ip_u32(s) for s in flows["src_ip"]], np.int64)
        flows["dst_ip"] = np.array([ip_u32(s) for s in flows["dst_ip"]], np.int64)
        _TABLES[run.flows] = Tables(flows, table_columns(run.requests), table_columns(run.packets))
    return _TABLES[run.flows]


@pytest.fixture(params=["client", "server", "mix"])
def run(request):
    """Each test taking ``run`` checks both the client-side and the server-side capture."""
    return request.getfixturevalue({"client": "chat_run", "server": "server_run",
                                    "mix": "mix_run"}[request.param])


def tshark_problem_frames(tshark: str, path: Path) -> list[int]:
    out = run_tshark(tshark, path, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
                     "-Y", TSHARK_PROBLEMS, "-T", "fields", "-e", "frame.number")
    return [int(x) for x in out.split()]


# --- tshark ----------------------------------------------------------------------------------

def test_tshark_reports_no_problems(tshark, run):
    problems = tshark_problem_frames(tshark, run.pcap)
    assert problems == [], f"tshark flags {len(problems)} frames, first {problems[:20]}"


def test_tshark_problem_filter_is_live(tshark, chat_run, tmp_path):
    """Corrupt a copy: one payload byte (bad TCP checksum), one TTL (bad IPv4 checksum); the
    same command must then report exactly those two frames."""
    cap = capture_of(chat_run)
    data = bytearray(chat_run.pcap.read_bytes())
    starts = 24 + np.concatenate(([0], np.cumsum(cap.caplen[:-1] + 16))) + 16
    payload_frame = next(i for i in range(10, cap.n) if cap.plen[i] >= 64)
    ack_frame = next(i for i in range(payload_frame + 1, cap.n)
                     if cap.plen[i] == 0 and cap.flags[i] == ACK)
    pos = int(starts[payload_frame]) + cap.caplen[payload_frame] - 1  # last payload byte
    data[pos] ^= 0x5A
    data[int(starts[ack_frame]) + 14 + 8] ^= 0x01  # TTL
    bad = tmp_path / "corrupt.pcap"
    bad.write_bytes(bytes(data))
    assert tshark_problem_frames(tshark, bad) == sorted([payload_frame + 1, ack_frame + 1])
    status = run_tshark(tshark, bad, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
                        "-Y", f"frame.number == {payload_frame + 1} || frame.number == {ack_frame + 1}",
                        "-T", "fields", "-e", "frame.number", "-e", "ip.checksum.status",
                        "-e", "tcp.checksum.status")
    rows = {int(r.split("\t")[0]): r.split("\t")[1:] for r in status.strip().splitlines()}
    # checksum status: 0 bad, 1 good
    assert rows[payload_frame + 1] == ["1", "0"]
    assert rows[ack_frame + 1] == ["0", "1"]


def test_tshark_rejects_a_bad_filter(tshark, chat_run):
    """The helper fails loudly on a filter tshark cannot compile (so typos cannot pass)."""
    with pytest.raises(AssertionError, match="tshark failed"):
        run_tshark(tshark, chat_run.pcap, "-Y", "tcp.analysis.no_such_field", "-T", "fields",
                   "-e", "frame.number")


@pytest.fixture(scope="module")
def tshark_fields(tshark, chat_run):
    out = run_tshark(tshark, chat_run.pcap, "-T", "fields", "-E", "separator=\t",
                     "-e", "frame.number", "-e", "tcp.stream", "-e", "frame.len",
                     "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport",
                     "-e", "tls.handshake.type")
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == capture_of(chat_run).n
    return rows


def test_tshark_conversations_match_flow_table(tshark, chat_run, tshark_fields):
    t = tables_of(chat_run)
    flows = t.flows
    by_tuple = {(int(flows["src_ip"][k]), int(flows["src_port"][k]), int(flows["dst_ip"][k]),
                 int(flows["dst_port"][k])): k for k in range(flows["flow_id"].shape[0])}
    assert len(by_tuple) == flows["flow_id"].shape[0], "two flows share a 4-tuple"
    stats: dict[int, dict] = defaultdict(lambda: {"tuple": set(), "pk": [0, 0], "bytes": [0, 0]})
    for _num, stream, flen, src, sport, dst, dport, _hs in tshark_fields:
        s = stats[int(stream)]
        up = (ip_u32(src), int(sport), ip_u32(dst), int(dport))
        if up in by_tuple:
            d = 0
        else:
            up = (ip_u32(dst), int(dport), ip_u32(src), int(sport))
            assert up in by_tuple, f"stream {stream}: {src}:{sport} -> {dst}:{dport} is no flow"
            d = 1
        s["tuple"].add(up)
        s["pk"][d] += 1
        s["bytes"][d] += int(flen)
    assert len(stats) == flows["flow_id"].shape[0]
    seen = set()
    for stream, s in stats.items():
        assert len(s["tuple"]) == 1, f"tshark stream {stream} mixes flows"
        k = by_tuple[next(iter(s["tuple"]))]
        assert k not in seen, "one flow split over several tshark streams"
        seen.add(k)
        assert s["pk"] == [flows["packets_up"][k], flows["packets_down"][k]], f"flow {k}"
        assert s["bytes"] == [flows["bytes_up"][k], flows["bytes_down"][k]], f"flow {k}"


def test_tshark_conv_table_count(tshark, chat_run):
    out = run_tshark(tshark, chat_run.pcap, "-q", "-z", "conv,tcp")
    lines = [ln for ln in out.splitlines() if "<->" in ln]
    assert len(lines) == tables_of(chat_run).flows["flow_id"].shape[0]


def test_tshark_one_client_and_server_hello_per_flow(tshark, chat_run, tshark_fields):
    n_flows = tables_of(chat_run).flows["flow_id"].shape[0]
    hello: dict[int, list] = {1: [], 2: []}
    for _num, stream, *_rest, hs in tshark_fields:
        types = {int(x) for x in hs.split(",") if x}
        for t in (1, 2):
            if t in types:
                hello[t].append(int(stream))
    for t in (1, 2):
        assert len(hello[t]) == n_flows, f"handshake type {t}"
        assert len(set(hello[t])) == n_flows, f"handshake type {t}: a stream has two"


# --- dpkt and plain Python ---------------------------------------------------------------------

def test_pcap_global_header(chat_run):
    magic, major, minor, _tz, _sig, snaplen, linktype = capture_of(chat_run).header
    assert magic == PCAP_NS_MAGIC  # little-endian, nanosecond timestamps
    assert (major, minor) == (2, 4)
    assert linktype == 1  # Ethernet
    assert snaplen >= 65535


def test_every_frame_decodes_and_records_are_whole(run):
    cap = capture_of(run)
    assert cap.n == run.report["packets"]
    assert cap.decode_errors == [], cap.decode_errors[:10]
    assert np.array_equal(cap.caplen, cap.origlen), "truncated frames"
    assert (cap.caplen >= 54).all()
    # TCP options by stack (kernels/stacks.py): a SYN's 12 (Windows), 20 (Linux, Android) or 24
    # (macOS, iOS) bytes, the Linux server's SYN/ACK 20 with timestamps or 12 without, and
    # every later segment 12 (timestamps) or none
    opts = np.array([(f[46] >> 4) * 4 - 20 for f in cap.frames])
    assert np.array_equal(cap.caplen, 54 + opts + cap.plen)
    syn, ack = (cap.flags & SYN) != 0, (cap.flags & ACK) != 0
    for mask, allowed in ((syn & ~ack, {12, 20, 24}), (syn & ack, {12, 20}), (~syn, {0, 12})):
        assert set(opts[mask].tolist()) <= allowed, (set(opts[mask].tolist()), allowed)
    assert (cap.plen[syn] == 0).all()
    assert run.pcap.stat().st_size == 24 + 16 * cap.n + int(cap.caplen.sum())


def test_dpkt_reader_agrees(chat_run):
    """dpkt's own pcap reader (nanosecond magic: exact Decimal timestamps) sees the same."""
    cap = capture_of(chat_run)
    with open(chat_run.pcap, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        got = list(reader)
    assert len(got) == cap.n
    for i, (ts, buf) in enumerate(got):
        assert int(ts * 1_000_000_000) == cap.ts_ns[i], i
        assert buf == cap.frames[i], i


def test_timestamps_nondecreasing_and_inside_the_run(run):
    cap = capture_of(run)
    assert (np.diff(cap.ts_ns) >= 0).all()
    assert cap.ts_ns[0] >= run.scenario.start_ns
    # requests start before the duration ends; only their tails and the teardowns run past it
    assert cap.ts_ns[0] < run.scenario.start_ns + run.scenario.duration_ns


def test_checksums_recomputed_independently(run):
    cap = capture_of(run)
    bad_ip, bad_tcp = [], []
    for i, buf in enumerate(cap.frames):
        ip = buf[14:34]
        if ipv4_checksum(ip) != struct.unpack_from("!H", ip, 10)[0]:
            bad_ip.append(i + 1)
        seg = buf[34:]
        if tcp_checksum(ip[12:16], ip[16:20], seg) != struct.unpack_from("!H", seg, 16)[0]:
            bad_tcp.append(i + 1)
    assert bad_ip == [], f"bad IPv4 checksums in frames {bad_ip[:20]}"
    assert bad_tcp == [], f"bad TCP checksums in frames {bad_tcp[:20]}"


def test_pcap_equals_packet_table_row_for_row(run):
    cap = capture_of(run)
    t = tables_of(run)
    p, flows = t.packets, t.flows
    assert p["ts_ns"].shape[0] == cap.n
    assert np.array_equal(p["ts_ns"], cap.ts_ns)
    assert np.array_equal(p["wire_len"].astype(np.int64), cap.caplen)
    assert np.array_equal(p["seq"].astype(np.int64), cap.seq)
    assert np.array_equal(p["ack"].astype(np.int64), cap.ack)
    assert np.array_equal(p["tcp_flags"].astype(np.int64), cap.flags)
    assert np.array_equal(p["payload_len"].astype(np.int64), cap.plen)
    # join to the flow table: direction, addresses and ports
    order = np.argsort(flows["flow_id"])
    fid_sorted = flows["flow_id"][order]
    k = np.searchsorted(fid_sorted, p["flow_id"])
    assert (k < fid_sorted.shape[0]).all(), "packets reference flows missing from the flow table"
    assert np.array_equal(fid_sorted[k], p["flow_id"]), "packets reference missing flows"
    row = order[k]
    cip, sip = flows["src_ip"][row], flows["dst_ip"][row]
    cport, sport = flows["src_port"][row].astype(np.int64), flows["dst_port"][row].astype(np.int64)
    down = p["direction"] == "down"
    assert set(np.unique(p["direction"])) <= {"up", "down"}
    assert np.array_equal(cap.src, np.where(down, sip, cip))
    assert np.array_equal(cap.dst, np.where(down, cip, sip))
    assert np.array_equal(cap.sport, np.where(down, sport, cport))
    assert np.array_equal(cap.dport, np.where(down, cport, sport))
    assert (flows["protocol"] == 6).all()


# the most a frame of these runs waits for the tap's link behind other flows' frames (a few
# frames' serialization: microseconds); the tables keep the transport's times (engine/tap.py)
TAP_WAIT = 200_000

def test_flow_totals_equal_packet_sums(run):
    cap = capture_of(run)
    t = tables_of(run)
    p, flows = t.packets, t.flows
    nf = flows["flow_id"].shape[0]
    assert np.unique(flows["flow_id"]).shape[0] == nf
    waited = 0
    down = (p["direction"] == "down").astype(np.int64)
    wl = p["wire_len"].astype(np.int64)
    for k in range(nf):
        fid = flows["flow_id"][k]
        m = p["flow_id"] == fid
        assert m.any(), f"flow {fid} has no packets"
        assert flows["bytes_up"][k] == wl[m & (down == 0)].sum(), fid
        assert flows["bytes_down"][k] == wl[m & (down == 1)].sum(), fid
        assert flows["packets_up"][k] == (m & (down == 0)).sum(), fid
        assert flows["packets_down"][k] == (m & (down == 1)).sum(), fid
        # a frame may wait for the tap's link behind other flows' frames (engine/tap.py): the
        # capture shows it that much after the table's time, by a few frames' time at most
        for col, t in (("start_ns", p["ts_ns"][m].min()), ("end_ns", p["ts_ns"][m].max())):
            assert 0 <= t - flows[col][k] <= TAP_WAIT, (fid, col)
            waited += t != flows[col][k]
    assert waited <= 0.05 * 2 * nf
    total = int(flows["bytes_up"].sum() + flows["bytes_down"].sum())
    assert total == int(cap.caplen.sum()) == run.report["wire_bytes"]
    assert int(flows["packets_up"].sum() + flows["packets_down"].sum()) == cap.n
    assert run.report["flows"] == nf


def test_requests_agree_with_packets(run):
    t = tables_of(run)
    p, r, flows = t.packets, t.requests, t.flows
    nr = r["request_id"].shape[0]
    assert nr == run.report["requests"] and nr > 0
    assert np.unique(r["request_id"]).shape[0] == nr
    known = set(r["request_id"].tolist())
    assert set(np.unique(p["request_id"]).tolist()) <= known | {-1}
    flow_row = {int(f): k for k, f in enumerate(flows["flow_id"])}
    assert (r["start_ns"] <= r["first_byte_ns"]).all()
    assert (r["first_byte_ns"] <= r["end_ns"]).all()
    down = p["direction"] == "down"
    wl = p["wire_len"].astype(np.int64)
    data = p["payload_len"] > 0
    order = np.argsort(p["request_id"], kind="stable")
    rid_sorted = p["request_id"][order]
    per_flow = defaultdict(int)
    waited = 0
    for j in range(nr):
        rid, fid = int(r["request_id"][j]), int(r["flow_id"][j])
        assert fid in flow_row, f"request {rid}: flow {fid} missing"
        per_flow[fid] += 1
        f = flow_row[fid]
        lo, hi = np.searchsorted(rid_sorted, [rid, rid + 1])
        idx = order[lo:hi]
        assert idx.shape[0] > 0, f"request {rid} has no packets"
        assert (p["flow_id"][idx] == fid).all(), f"request {rid}: packets of another flow"
        ts = p["ts_ns"][idx]
        assert flows["start_ns"][f] <= ts.min() and ts.max() <= flows["end_ns"][f] + TAP_WAIT, rid
        assert r["bytes_up"][j] == wl[idx][~down[idx]].sum(), rid
        assert r["bytes_down"][j] == wl[idx][down[idx]].sum(), rid
        up_data = idx[~down[idx] & data[idx]]
        down_data = idx[down[idx] & data[idx]]
        assert up_data.shape[0] and down_data.shape[0], f"request {rid}: no upload or no reply"
        # start: first request byte seen; first_byte/end: first/last response byte seen (where
        # the frame waited for the tap's link: that much later in the capture)
        for col, t in (("start_ns", p["ts_ns"][up_data].min()),
                       ("first_byte_ns", p["ts_ns"][down_data].min()),
                       ("end_ns", p["ts_ns"][down_data].max())):
            assert 0 <= t - r[col][j] <= TAP_WAIT, (rid, col)
            waited += t != r[col][j]
        assert r["client_id"][j] == flows["client_id"][f], rid
        assert r["session_id"][j] == flows["session_id"][f], rid
    assert waited <= 0.05 * 3 * nr
    for k, fid in enumerate(flows["flow_id"]):
        assert flows["requests"][k] == per_flow.get(int(fid), 0), f"flow {fid}"


# --- TCP semantics, from the capture alone -------------------------------------------------------

def test_tcp_sequence_and_ack_consistency(run):
    """Per connection (4-tuple from the bytes): SYN, SYN-ACK, ACK first; every segment's seq
    continues its direction's sequence space; ACKs never run ahead of what the other side has
    sent earlier in the capture, nor go backwards; one FIN each way, both acknowledged."""
    cap = capture_of(run)
    conns: dict[tuple, list[int]] = defaultdict(list)
    for i in range(cap.n):
        a = (int(cap.src[i]), int(cap.sport[i]))
        b = (int(cap.dst[i]), int(cap.dport[i]))
        conns[(a, b) if a < b else (b, a)].append(i)
    flows = tables_of(run).flows
    flow_tuples = {((int(flows["src_ip"][k]), int(flows["src_port"][k])),
                    (int(flows["dst_ip"][k]), int(flows["dst_port"][k])))
                   for k in range(flows["flow_id"].shape[0])}
    assert len(conns) == len(flow_tuples)
    assert (cap.flags & RST).sum() == 0, "RST seen"
    for key, idx in conns.items():
        s0, s1, s2 = idx[:3]
        where = f"connection {key}"
        client = (int(cap.src[s0]), int(cap.sport[s0]))
        assert (client, key[1] if key[0] == client else key[0]) in flow_tuples, where
        assert cap.flags[s0] == SYN and cap.ack[s0] == 0, where
        isn = [int(cap.seq[s0]), None]
        assert (int(cap.src[s1]), int(cap.sport[s1])) != client, where
        assert cap.flags[s1] == SYN | ACK and cap.ack[s1] == (isn[0] + 1) & M32, where
        isn[1] = int(cap.seq[s1])
        assert (int(cap.src[s2]), int(cap.sport[s2])) == client, where
        assert cap.flags[s2] == ACK and cap.plen[s2] == 0, where
        assert cap.seq[s2] == (isn[0] + 1) & M32 and cap.ack[s2] == (isn[1] + 1) & M32, where
        nxt = [0, 0]  # sequence space used so far, relative to the ISN
        last_ack = [0, 0]
        fin_at = [None, None]  # relative sequence number of each side's FIN
        for i in idx:
            d = 0 if (int(cap.src[i]), int(cap.sport[i])) == client else 1
            fl = int(cap.flags[i])
            rel_seq = (int(cap.seq[i]) - isn[d]) & M32
            assert rel_seq == nxt[d], f"{where} frame {i + 1}: seq {rel_seq} != expected {nxt[d]}"
            if fin_at[d] is not None:
                assert cap.plen[i] == 0 and not fl & (SYN | FIN), f"{where}: data after FIN"
            if fl & ACK:
                rel_ack = (int(cap.ack[i]) - isn[1 - d]) & M32
                assert rel_ack <= nxt[1 - d], \
                    f"{where} frame {i + 1}: acks {rel_ack}, other side sent {nxt[1 - d]}"
                assert rel_ack >= last_ack[d], f"{where} frame {i + 1}: ACK went backwards"
                last_ack[d] = rel_ack
            else:
                assert i == s0, f"{where} frame {i + 1}: no ACK flag after the SYN"
            if fl & PSH:
                assert cap.plen[i] > 0, f"{where} frame {i + 1}: PSH without data"
            nxt[d] += int(cap.plen[i]) + (1 if fl & SYN else 0)
            if fl & FIN:
                assert fin_at[d] is None, f"{where}: two FINs from one side"
                fin_at[d] = nxt[d]
                nxt[d] += 1
        assert fin_at[0] is not None and fin_at[1] is not None, f"{where}: missing FIN"
        # both FINs (and so everything before them) acknowledged by the end
        assert last_ack[0] == nxt[1] and last_ack[1] == nxt[0], f"{where}: not all acknowledged"
        assert cap.flags[idx[-1]] == ACK, f"{where}: does not end with the last FIN's ACK"


# each stack's SYN options in its order (p0f.fp; MODELS.md "Hosts, stacks and paths") and window
# scale, by the flow table's client_os; the Linux server's SYN/ACK
SYN_LAYOUT = {"linux": ("mss,sok,ts,nop,ws", 7), "android": ("mss,sok,ts,nop,ws", 3),
              "windows": ("mss,nop,ws,nop,nop,sok", 8), "macos": ("mss,nop,ws,nop,nop,ts,sok,eol", 6),
              "ios": ("mss,nop,ws,nop,nop,ts,sok,eol", 6)}
OPT_NAME = {0: "eol", 1: "nop", 2: "mss", 3: "ws", 4: "sok", 8: "ts"}


def test_syn_options(run):
    cap = capture_of(run)
    mss = run.scenario.topology.mss
    flows = table_columns(run.flows)
    os_of = {(int(ipaddress.ip_address(a)), int(p)): o for a, p, o in
             zip(flows["src_ip"], flows["src_port"], flows["client_os"])}
    seen = set()
    for i in np.flatnonzero(cap.flags & SYN):
        tcp = dpkt.ethernet.Ethernet(cap.frames[i]).data.data
        opts = dpkt.tcp.parse_opts(tcp.opts)
        kinds = ",".join(OPT_NAME[k] for k, _ in opts).split(",eol")[0]  # zeros after EOL: padding
        kinds += ",eol" if dpkt.tcp.TCP_OPT_EOL in dict(opts) else ""
        client = (int(cap.src[i]), int(cap.sport[i])) if not tcp.flags & dpkt.tcp.TH_ACK else \
            (int(cap.dst[i]), int(cap.dport[i]))
        layout, ws = SYN_LAYOUT[os_of[client]]
        if tcp.flags & dpkt.tcp.TH_ACK:  # the Linux server's answer: timestamps if offered
            layout, ws = ("mss,sok,ts,nop,ws" if "ts" in layout else "mss,nop,nop,sok,nop,ws"), 7
        assert kinds == layout, (i, os_of[client])
        assert struct.unpack("!H", opts[0][1])[0] == mss
        assert dict(opts)[dpkt.tcp.TCP_OPT_WSCALE] == bytes([ws])
        seen.add(os_of[client])
    assert len(seen) >= 2, seen


# --- scapy ---------------------------------------------------------------------------------------

SCAPY_PREFIX = 2000


def test_scapy_decodes_and_agrees_on_checksums(chat_run):
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Padding, Raw
    from scapy.utils import PcapReader

    cap = capture_of(chat_run)
    n = 0
    with PcapReader(str(chat_run.pcap)) as reader:
        for i, pkt in enumerate(reader):
            if i >= SCAPY_PREFIX:
                break
            n += 1
            assert int(pkt.time * 1_000_000_000) == cap.ts_ns[i], i
            assert bytes(pkt) == cap.frames[i], i
            assert isinstance(pkt, Ether) and isinstance(pkt.payload, IP), i
            assert isinstance(pkt[IP].payload, TCP), f"frame {i + 1}: IP payload not TCP"
            assert not pkt.haslayer(Padding), f"frame {i + 1}: padding after the IP packet"
            tcp_payload = pkt[TCP].payload
            assert len(bytes(tcp_payload)) == cap.plen[i], i
            if cap.plen[i]:
                assert isinstance(tcp_payload, Raw), i
            rebuilt = pkt[IP].copy()
            del rebuilt.chksum
            del rebuilt[TCP].chksum
            rebuilt = IP(bytes(rebuilt))
            assert rebuilt.chksum == pkt[IP].chksum, f"frame {i + 1}: IPv4 checksum"
            assert rebuilt[TCP].chksum == pkt[TCP].chksum, f"frame {i + 1}: TCP checksum"
            if pkt[TCP].flags.S:  # each stack's options (test_syn_options); scapy reads them
                names = [name for name, _ in pkt[TCP].options]
                assert names[0] == "MSS" and {"WScale", "SAckOK"} <= set(names), (i, names)
    assert n == min(SCAPY_PREFIX, cap.n)

