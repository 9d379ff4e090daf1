"""``trafficgen inspect``: its figures against independent readers (dpkt, capinfos, pyarrow,
plain struct), every capture flavour, chunk boundaries, and one-line errors."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import dpkt
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trafficgen.analysis import capinfo
from trafficgen.analysis import report as ti
from trafficgen.errors import TrafficgenError

from .helpers import read_pcap, write_pcap


def five_tuples(records) -> tuple[int, int]:
    """(distinct direction-insensitive TCP/UDP/IP flows, SYNs without ACK), by dpkt."""
    flows, syns = set(), 0
    for _ts, frame in records:
        eth = dpkt.ethernet.Ethernet(frame)
        ip = eth.data
        if not isinstance(ip, dpkt.ip.IP):
            continue
        l4 = ip.data
        ports = (l4.sport, l4.dport) if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)) else (0, 0)
        a, b = (ip.src, ports[0]), (ip.dst, ports[1])
        flows.add((min(a, b), max(a, b), ip.p))
        if isinstance(l4, dpkt.tcp.TCP) and l4.flags & dpkt.tcp.TH_SYN and not l4.flags & dpkt.tcp.TH_ACK:
            syns += 1
    return len(flows), syns


@pytest.fixture(scope="module")
def records(chat_run):
    """(ts_ns, frame) of every record of the shared chat run's pcap, read with struct."""
    return [(int(t), f) for t, f in zip(*read_pcap(chat_run.pcap))]


def test_pcap_report_matches_independent_reading(chat_run, records):
    info = ti.inspect_file(chat_run.pcap)
    ts = [t for t, _ in records]
    assert info["format"] == "pcap" and info["timestamp_resolution"] == "ns"
    assert info["link_types"] == ["Ethernet"]
    assert info["packets"] == len(records) == chat_run.report["packets"]
    assert info["wire_bytes"] == info["captured_bytes"] == sum(len(f) for _, f in records)
    assert (info["first_ns"], info["last_ns"]) == (min(ts), max(ts))
    assert info["duration_s"] == pytest.approx((max(ts) - min(ts)) / 1e9)
    assert info["packets_per_s"] == pytest.approx(len(ts) / info["duration_s"])
    assert info["bits_per_s"] == pytest.approx(info["wire_bytes"] * 8 / info["duration_s"])
    n_flows, syns = five_tuples(records)
    assert info["flows"] == n_flows == pq.read_metadata(chat_run.flows).num_rows
    assert info["tcp_connections_opened"] == syns == n_flows
    assert info["protocols"] == {"tcp": len(records), "udp": 0, "other_ip": 0, "non_ip": 0}
    assert info["out_of_order_timestamps"] == 0
    assert info["first"].startswith("2026-01-01T00:00:") and info["first"].endswith("Z")


def test_capinfos_agrees(chat_run, capinfos):
    out = subprocess.run([capinfos, "-M", "-c", "-u", "-a", "-e", "-T", "-r", str(chat_run.pcap)],
                         capture_output=True, text=True, check=True).stdout.strip().split("\t")
    info = ti.inspect_file(chat_run.pcap)
    assert int(out[1]) == info["packets"]
    assert float(out[2]) == pytest.approx(info["duration_s"], abs=1e-6)
    assert out[3].replace(" ", "T") + "Z" == info["first"]
    assert out[4].replace(" ", "T") + "Z" == info["last"]


def test_pcapng_from_tshark_gives_the_same_figures(chat_run, tshark, tmp_path):
    ng = tmp_path / "capture.pcapng"
    subprocess.run([tshark, "-r", str(chat_run.pcap), "-F", "pcapng", "-w", str(ng)], check=True,
                   capture_output=True)
    a, b = ti.inspect_file(chat_run.pcap), ti.inspect_file(ng)
    assert b["format"] == "pcapng" and b["timestamp_resolution"] == "ns"
    for key in ("packets", "wire_bytes", "captured_bytes", "first_ns", "last_ns", "flows",
                "tcp_connections_opened", "protocols", "link_types"):
        assert a[key] == b[key], key


def test_microsecond_and_big_endian_pcaps(records, tmp_path):
    ref = ti.inspect_file(_write(tmp_path / "ref.pcap", records))
    us = ti.inspect_file(_write(tmp_path / "us.pcap", records, nanos=False))
    be = ti.inspect_file(_write(tmp_path / "be.pcap", records, big=True))
    assert be == {**ref, "file": be["file"]}
    assert us["timestamp_resolution"] == "us"
    assert us["first_ns"] == records[0][0] // 1000 * 1000
    for key in ("packets", "wire_bytes", "flows", "protocols"):
        assert us[key] == ref[key]


def _write(path, records, **kw):
    """Write (ts_ns, frame) records as a classic pcap (``helpers.write_pcap``'s options)."""
    write_pcap(path, [f for _, f in records], [t for t, _ in records], **kw)
    return path


def test_chunk_and_batch_boundaries_change_nothing(chat_run, monkeypatch):
    ref = ti.inspect_file(chat_run.pcap)
    monkeypatch.setattr(capinfo, "CHUNK", 1000)  # smaller than some records: the buffer must grow
    monkeypatch.setattr(capinfo, "MAX_PACKETS", 7)
    assert ti.inspect_file(chat_run.pcap) == ref


@pytest.mark.parametrize("table", ["flows", "requests", "packets"])
def test_parquet_tables(chat_run, table):
    path = getattr(chat_run, table)
    info = ti.inspect_file(path)
    t = pq.read_table(path)
    assert info["format"] == "parquet" and info["table"] == table
    assert info["rows"] == t.num_rows
    assert info["scenario"] == "chat" and info["seed"] == 7
    classes = t.column("class").cast("string").to_pylist()
    assert {k: v["rows"] for k, v in info["classes"].items()} == {c: classes.count(c) for c in set(classes)}
    pcap_bytes = ti.inspect_file(chat_run.pcap)["wire_bytes"]
    if table == "packets":
        assert info["wire_bytes"] == pcap_bytes
        assert info["flows"] == pq.read_metadata(chat_run.flows).num_rows
        assert info["first_ns"] == pc.min(t.column("ts_ns")).as_py()
    if table == "flows":
        assert info["wire_bytes"] == pcap_bytes
        assert info["classes"]["chat"]["packets"] == chat_run.report["packets"]
    if table == "requests":
        kinds = t.column("kind").cast("string").to_pylist()
        assert info["kinds"] == {k: kinds.count(k) for k in set(kinds)}
        assert info["classes"]["chat"]["output_tokens"] == pc.sum(t.column("output_tokens")).as_py()


def test_text_report(chat_run):
    text = ti.format_report(ti.inspect_file(chat_run.pcap))
    lines = dict(line.split(":", 1) for line in text.splitlines())
    assert lines["packets"].strip() == f"{chat_run.report['packets']:,}"
    assert "Mbit/s" in lines["bit rate"] or "kbit/s" in lines["bit rate"]


# --- a property test of the scanner against struct-built captures ---------------------------

def _frame(draw_ip, sport, dport, proto, flags, payload):
    if not draw_ip:
        return b"\x02" * 12 + b"\x86\x00" + payload  # not IP
    l4 = (struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 1000, 0, 0) if proto == 6
          else struct.pack("!HHHH", sport, dport, 8 + len(payload), 0))
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4) + len(payload), 0, 0x4000, 64,
                     proto, 0, bytes([10, 0, 0, sport % 3]), bytes([10, 0, 1, dport % 3]))
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + l4 + payload


records_strategy = st.lists(
    st.tuples(st.integers(0, 2**32 * 10**9 - 1), st.booleans(), st.integers(1, 4),
              st.integers(1, 4), st.sampled_from([6, 17]), st.sampled_from([0x02, 0x12, 0x10]),
              st.binary(max_size=64)),
    max_size=40)


@settings(max_examples=60, deadline=None)
@given(records_strategy, st.booleans(), st.booleans())
def test_scanner_agrees_with_struct_and_dpkt(tmp_path_factory, recs, big, nano):
    path = tmp_path_factory.mktemp("prop") / "x.pcap"
    records = [(ts, _frame(is_ip, sp, dp, proto, fl, pl)) for ts, is_ip, sp, dp, proto, fl, pl in recs]
    _write(path, records, big=big, nanos=nano)
    info = ti.inspect_file(path)
    assert info["packets"] == len(records)
    assert info["wire_bytes"] == sum(len(f) for _, f in records)
    ts = [t if nano else t // 1000 * 1000 for t, _ in records]
    assert info["first_ns"] == (min(ts) if ts else None)
    assert info["last_ns"] == (max(ts) if ts else None)
    assert info["out_of_order_timestamps"] == sum(b < a for a, b in zip(ts, ts[1:]))
    flows, syns = five_tuples(records)
    assert info["flows"] == flows
    assert info["tcp_connections_opened"] == syns


# --- bad input ------------------------------------------------------------------------------

def _bad_files(tmp: Path, good: Path) -> dict[str, Path]:
    data = good.read_bytes()
    files = {"empty": b"", "text": b"hello, world\n", "random": bytes(range(256)) * 4,
             "truncated": data[:1000], "header only": data[:20],
             "huge record": data[:24] + struct.pack("<IIII", 0, 0, 2**31, 2**31) + b"x" * 64,
             "bad parquet": b"PAR1" + b"\0" * 100}
    out = {}
    for name, content in files.items():
        p = tmp / (name.replace(" ", "_") + ".pcap")
        p.write_bytes(content)
        out[name] = p
    out["missing"] = tmp / "missing.pcap"
    out["directory"] = tmp
    return out


def test_bad_input_is_one_line_naming_the_file(chat_run, tmp_path):
    for name, path in _bad_files(tmp_path, chat_run.pcap).items():
        with pytest.raises(TrafficgenError) as e:
            ti.inspect_file(path)
        msg = str(e.value)
        assert str(path) in msg and "\n" not in msg, (name, msg)
        done = subprocess.run([sys.executable, "-m", "trafficgen", "inspect", str(path)],
                              capture_output=True, text=True)
        assert done.returncode == 2, (name, done.stderr)
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), name
        assert "Traceback" not in done.stderr


def test_json_output(chat_run):
    done = subprocess.run([sys.executable, "-m", "trafficgen", "inspect", str(chat_run.pcap),
                           "--json"], capture_output=True, text=True, check=True)
    info = json.loads(done.stdout)
    assert info["packets"] == chat_run.report["packets"]
    assert info == json.loads(json.dumps(ti.inspect_file(chat_run.pcap)))
    assert np.isfinite(info["bits_per_s"])
