"""Replay onto interfaces: frames sent onto one end of a veth pair this test creates are
captured on the other end (tcpdump) and compared byte for byte and in order with the file;
the gaps and rates the capture shows are checked against what was asked; bad input is
refused with one line and exit status 2 before anything is sent.

Tests that send need root (CAP_NET_ADMIN to make the veth pair, CAP_NET_RAW to send): they
skip without it, and fail instead when TRAFFICGEN_REQUIRE_TOOLS is set (CI runs as root).
They send onto nothing but the pairs they make, and delete them afterwards.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import trafficgen as tg
from trafficgen.cli.main import main
from trafficgen.playback.capture import CaptureFile
from trafficgen.playback.rate import Pacer, Rate

from .helpers import read_pcap, require_tool, write_pcap, write_pcapng
from .replay_net import PeerCapture, VethPair, make_frames, net_admin_reason

T0 = 1_700_000_000 * 10**9 + 123_456_789  # first timestamp of the test files


def cli(*args, timeout=60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trafficgen", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def one_line_error(err: str, *words: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)


@pytest.fixture(scope="module")
def net():
    """Skip (or fail, in CI) where veth pairs cannot be made or tcpdump is missing."""
    reason = net_admin_reason()
    if reason:
        if os.environ.get("TRAFFICGEN_REQUIRE_TOOLS"):
            pytest.fail(f"{reason}, and TRAFFICGEN_REQUIRE_TOOLS is set")
        pytest.skip(reason)
    return require_tool("tcpdump")


@pytest.fixture
def veth(net):
    with VethPair() as pair:
        yield pair


def sent_and_captured(veth, tmp_path, source, rate=None, **kw):
    """Replay ``source`` onto ``veth`` through the library; (report, capture ts, frames)."""
    cap = tmp_path / "peer.pcap"
    with PeerCapture(veth.peer, cap) as pc:
        report = tg.replay(source, veth.name, rate, **kw)
    ts, frames = read_pcap(cap)
    assert pc.dropped == 0, f"tcpdump dropped {pc.dropped} frames: the check would be blind"
    return report, ts, frames


def lateness(ts_ns: np.ndarray, want_s: np.ndarray) -> np.ndarray:
    """Seconds each captured frame left after its place in the schedule ``want_s`` (offsets
    from the start), with the origin taken as the median, so one late first frame (a stall
    of the machine) does not shift the whole comparison."""
    rel = (ts_ns - ts_ns[0]) / 1e9 - want_s
    return rel - np.median(rel)


# --- without root: rates, deadlines, the reader --------------------------------------------

def test_rate_is_one_of_the_modes():
    assert Rate.choose() == Rate("original")
    assert Rate.choose(pps=5) == Rate("pps", 5)
    with pytest.raises(tg.TrafficgenError, match="at most one"):
        Rate.choose(pps=5, topspeed=True)
    for bad in (0, -1, float("nan"), "5"):
        with pytest.raises(tg.TrafficgenError):
            Rate("pps", bad)
    assert [Rate(*a).describe() for a in (("original",), ("topspeed",), ("multiplier", 2),
                                          ("pps", 20_000), ("mbps", 100))] == [
        "the file's own timing", "top speed", "2x the file's timing", "20,000 packets/s",
        "100 Mbit/s"]


def test_deadlines_are_absolute_and_do_not_drift():
    p = Pacer(Rate("pps", 3), t0_ns=1000)  # 333,333,333.33 ns apart: rounding would build up
    for _ in range(3):
        p.deadlines(np.zeros(1000, np.int64), np.full(1000, 60, np.int64))
    far = Pacer(Rate("pps", 3), t0_ns=1000)
    far.index = 3 * 10**9  # a billion seconds in: still the exact deadline
    d = far.deadlines(np.zeros(1, np.int64), np.full(1, 60, np.int64))
    assert d[0] == 1000 + 10**18
    assert p.last == 1000 + (2999 * 10**9) // 3
    m = Pacer(Rate("mbps", 8), t0_ns=0)  # 1 byte per microsecond
    assert list(m.deadlines(np.zeros(3, np.int64), np.array([100, 50, 10]))) == [0, 100_000, 150_000]
    o = Pacer(Rate("multiplier", 2), t0_ns=0)  # a stamp that goes back is sent right after
    assert list(o.deadlines(np.array([10, 30, 20, -1, 50]), np.ones(5, np.int64))) == [0, 10, 10, 10, 20]
    o.next_loop()
    assert o.deadlines(np.array([7]), np.ones(1, np.int64))[0] == 20


@pytest.mark.parametrize("fmt", ["pcap-ns", "pcap-us-be", "pcapng-ns", "pcapng-us-be", "pcapng-spb"])
def test_reader_walks_every_format_across_chunk_boundaries(tmp_path, fmt, monkeypatch):
    import trafficgen.playback.capture as capture
    frames = make_frames(3000, seed=2)
    ts = T0 + np.cumsum(np.random.default_rng(3).integers(0, 2_000_000, 3000))
    path = tmp_path / "f"
    if fmt.startswith("pcap-"):
        write_pcap(path, frames, ts, nanos="ns" in fmt, big="be" in fmt)
    else:
        write_pcapng(path, frames, ts, 9 if "ns" in fmt else 6, big="be" in fmt, simple="spb" in fmt)
    monkeypatch.setattr(capture, "CHUNK", 100_000)  # a chunk ends inside a record many times
    got, stamps, chunks = [], [], 0
    for c in CaptureFile(path).chunks():
        chunks += 1
        got += [c.buf[o:o + n].tobytes() for o, n in zip(c.off, c.length)]
        stamps.append(c.ts.copy())
    assert chunks > 10 and got == frames
    want = -np.ones(3000, np.int64) if "spb" in fmt else (ts if "ns" in fmt else ts // 1000 * 1000)
    assert np.array_equal(np.concatenate(stamps), want)


@pytest.fixture
def as_if_root(monkeypatch):
    """File and argument checks without root: CAP_NET_RAW taken as held (no socket opens:
    every case is refused before that)."""
    import trafficgen.playback.iface as iface
    monkeypatch.setattr(iface, "may_send_raw", lambda: True)


def test_bad_files_are_refused_with_the_offset(tmp_path, capsys, as_if_root):
    frames = make_frames(10)
    good = tmp_path / "good.pcap"
    write_pcap(good, frames, T0 + np.arange(10) * 1000)
    data = good.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:-7])
    end_of_9 = 24 + sum(16 + len(f) for f in frames[:9])
    corrupt = bytearray(data)
    corrupt[24 + 8:24 + 12] = (10**7).to_bytes(4, "little")  # first record: 10 MB captured
    (tmp_path / "corrupt.pcap").write_bytes(bytes(corrupt))
    (tmp_path / "raw.pcap").write_bytes(data[:20] + (101).to_bytes(4, "little") + data[24:])
    (tmp_path / "junk.pcap").write_bytes(b"hello world, not a capture")
    ng = tmp_path / "cut.pcapng"
    write_pcapng(ng, frames, T0 + np.arange(10) * 1000)
    ng.write_bytes(ng.read_bytes()[:-3])
    cases = {"cut.pcap": ["truncated record", f"at byte {end_of_9}", "packet 10"],
             "corrupt.pcap": ["corrupt record header", "at byte 24", "packet 1"],
             "raw.pcap": ["raw IP", "only Ethernet"], "junk.pcap": ["not a pcap"],
             "cut.pcapng": ["truncated block", "packet 10"]}
    for name, words in cases.items():
        assert main(["replay", str(tmp_path / name), "--iface", "lo"]) == 2
        one_line_error(capsys.readouterr().err, name, *words)
    assert main(["replay", str(good)]) == 2  # nothing is sent without --iface
    one_line_error(capsys.readouterr().err, "--iface", "nothing is sent")
    assert main(["replay", str(good), "--iface", "tgr-nonesuch0"]) == 2
    one_line_error(capsys.readouterr().err, "no such interface")
    assert main(["replay", str(good), "--iface", "lo", "--pps", "0"]) == 2
    one_line_error(capsys.readouterr().err, "--pps")


def test_replay_help_examples_parse():
    from trafficgen.cli.main import EXAMPLES, build_parser
    lines = [ln.split("#")[0].split() for ln in EXAMPLES["replay"].splitlines()[1:] if ln.strip()]
    assert len(lines) >= 4
    for argv in lines:
        assert argv[:2] == ["trafficgen", "replay"]
        args = build_parser().parse_args(argv[1:])  # exits (status 2) if an example is stale
        assert args.iface and args.file


def test_frames_the_interface_cannot_take():
    from trafficgen.playback.iface import oversize
    frames = [bytes(60), bytes(1514), b"\0" * 12 + b"\x81\x00" + bytes(1504), bytes(1515), bytes(10)]
    buf = np.frombuffer(b"".join(frames), np.uint8)
    length = np.array([len(f) for f in frames], np.int64)
    off = np.concatenate(([0], np.cumsum(length)[:-1]))
    assert oversize(buf, off, length, 1514) == 3  # an 802.1Q frame may carry 4 bytes more
    assert oversize(buf, off[:3], length[:3], 1514) == -1
    assert oversize(buf, off[4:], length[4:], 1514) == 0  # shorter than an Ethernet header


def test_bad_arguments(tmp_path, capsys, as_if_root):
    path = tmp_path / "a.pcap"
    write_pcap(path, make_frames(3), T0 + np.arange(3))
    for argv, words in ((["--loop", "-1"], ["--loop"]), (["--duration", "soon"], ["--duration"]),
                        (["--pps", "5", "--topspeed"], ["not allowed with"]),
                        (["--multiplier", "x"], ["--multiplier"])):
        code = None
        try:
            code = main(["replay", str(path), "--iface", "lo", *argv])
        except SystemExit as e:  # argparse's own refusals
            code = e.code
        assert code == 2, argv
        one_line_error(capsys.readouterr().err, *words)
    assert main(["generate", "chat", "--pps", "10", "-o", str(tmp_path / "x.pcap")]) == 2
    one_line_error(capsys.readouterr().err, "--pps", "--iface")
    assert not (tmp_path / "x.pcap").exists()


class RecordingTransmitter:
    """Stands in for the sending kernel: keeps the frames it is given, sends nothing."""

    def __init__(self, iface, rate, **kw):
        self.frames: list[bytes] = []
        self.stopped_by = self.warning = self.pacer = None
        self.realtime_used = False
        self.acc = np.zeros(1, np.int64)

    def send(self, buf, off, length, ts) -> bool:
        self.frames += [bytes(buf[o:o + n]) for o, n in zip(off, length)]
        self.acc[0] = len(self.frames)
        return True

    def stats(self) -> dict:
        return {"packets": len(self.frames), "bytes": sum(map(len, self.frames)), "send_errors": 0}

    def finish(self) -> None:
        pass


def test_run_prepares_a_replay_that_was_not(tmp_path, monkeypatch):
    """``run()`` alone checks and sends (``prepare()`` is optional); a Replay runs once; a
    check that fails in ``run()`` fails it as ``prepare()`` would, before anything is sent."""
    import types

    import trafficgen.playback.replayer as replayer
    calls = []
    monkeypatch.setattr(replayer, "check_interface", lambda name: (7, 1500))
    monkeypatch.setattr(replayer, "check_may_send", lambda name: None)
    monkeypatch.setattr(replayer, "open_interface", lambda name, bypass: types.SimpleNamespace(
        name=name, qdisc_bypass=bypass, close=lambda: calls.append("close")))
    monkeypatch.setattr(replayer, "Transmitter", RecordingTransmitter)
    real_open = replayer.Replay._open
    monkeypatch.setattr(replayer.Replay, "_open", lambda self: (calls.append("prepare"), real_open(self)))
    frames = make_frames(20, seed=4, hi=300)
    write_pcap(tmp_path / "in.pcap", frames, T0 + np.arange(20) * 1000)

    r = tg.Replay(tmp_path / "in.pcap", "fake0", Rate("topspeed"))
    rep = r.run()
    assert calls == ["prepare", "close"] and r.tx.frames == frames
    assert rep["packets"] == 20 and rep["source"]["packets"] == 20 and rep["stopped_by"] == "end"
    assert r.report is rep and r.stats()["state"] == "done"
    with pytest.raises(tg.TrafficgenError, match="sends once"):
        r.run()
    with pytest.raises(tg.TrafficgenError, match="already called"):
        r.prepare()

    calls.clear()
    r = tg.Replay(tmp_path / "in.pcap", "fake0", limit=5)
    assert r.prepare()["packets"] == 20
    assert r.run()["packets"] == 5 and calls == ["prepare", "close"]  # prepared once

    calls.clear()
    (tmp_path / "junk.pcap").write_bytes(b"not a capture at all")
    r = tg.Replay(tmp_path / "junk.pcap", "fake0")
    with pytest.raises(tg.TrafficgenError, match="junk.pcap"):
        r.run()
    assert r.tx is None and r.stats()["state"] is None and calls == ["prepare"]


# --- onto a veth pair ---------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["pcap-us", "pcapng-ns-be", "pcap-streamed"])
def test_every_frame_arrives_intact_and_in_order(veth, tmp_path, fmt, monkeypatch):
    frames = make_frames(5000, seed=4)
    path = tmp_path / "in"
    ts = T0 + np.arange(5000) * 10_000
    if fmt == "pcapng-ns-be":
        write_pcapng(path, frames, ts, 9, big=True)
    else:
        write_pcap(path, frames, ts, nanos=False)
    if fmt == "pcap-streamed":  # as a big file goes: read again each pass, in many chunks
        import trafficgen.playback.capture as capture
        import trafficgen.playback.replayer as replayer
        monkeypatch.setattr(replayer, "CACHE_BYTES", 0)
        monkeypatch.setattr(capture, "CHUNK", 100_000)
    report, _, got = sent_and_captured(veth, tmp_path, path, Rate("topspeed"), loop=2)
    assert report["packets"] == 10_000 and report["send_errors"] == 0
    assert report["bytes"] == 2 * sum(map(len, frames))
    assert len(got) == 10_000 and got == frames + frames


def test_fixed_pps_gaps_and_rate(veth, tmp_path):
    frames = make_frames(200, seed=5, hi=300)
    write_pcap(tmp_path / "in.pcap", frames, T0 + np.arange(200) * 10**9)  # 1 s apart in the file
    report, ts, got = sent_and_captured(veth, tmp_path, tmp_path / "in.pcap", Rate("pps", 20_000),
                                        limit=4000, loop=0)
    assert got == (frames * 20)[:4000] and report["stopped_by"] == "limit"
    gaps = np.diff(ts)
    late = lateness(ts, np.arange(4000) / 20_000)
    assert abs(late[-1]) < 0.003, late[-1]  # the last frame on schedule: nothing drifted
    assert abs(np.median(gaps) - 50_000) < 500, np.median(gaps)  # 1%: per-packet drift shows
    assert np.percentile(np.abs(gaps - 50_000), 75) < 20_000, np.percentile(np.abs(gaps - 50_000), 75)
    assert abs(report["packets_per_s"] - 20_000) < 400
    assert report["departure_error_us"]["p50"] < 100 and report["rate_reached"]


def test_original_timing_and_multiplier_follow_the_file(veth, tmp_path):
    rng = np.random.default_rng(6)
    gaps = rng.choice([0, 5_000, 50_000, 400_000, 3_000_000], 300)  # bursts and pauses
    ts = T0 + np.concatenate(([0], np.cumsum(gaps[1:])))
    frames = make_frames(300, seed=6)
    write_pcap(tmp_path / "in.pcap", frames, ts)
    want = (ts - ts[0]) / 1e9
    for mult in (None, 2.0):
        report, got_ts, got = sent_and_captured(veth, tmp_path, tmp_path / "in.pcap",
                                                Rate("multiplier", mult) if mult else None)
        assert got == frames
        late = lateness(got_ts, want / (mult or 1))
        assert abs(late[-1]) < 0.01 * want[-1], (late[-1], want[-1])  # the last one on time
        assert np.median(np.abs(late)) < 200e-6, np.median(np.abs(late))
        assert report["finish_late_ms"] < 5


def test_mbps(veth, tmp_path):
    frames = make_frames(500, seed=7, lo=1000, hi=1000)
    write_pcap(tmp_path / "in.pcap", frames, T0 + np.zeros(500, np.int64))
    report, ts, got = sent_and_captured(veth, tmp_path, tmp_path / "in.pcap", Rate("mbps", 40))
    assert got == frames
    assert abs(np.median(np.diff(ts)) - 200_000) < 2_000  # 5,000 frames/s of 8,000 bits
    assert abs(lateness(ts, np.arange(500) * 8000 / 40e6)[-1]) < 0.003


def test_duration_limit_and_out_of_reach_warning(veth, tmp_path):
    frames = make_frames(100, seed=8, hi=200)
    write_pcap(tmp_path / "in.pcap", frames, T0 + np.arange(100) * 1000)
    t = time.perf_counter()
    rep = tg.replay(tmp_path / "in.pcap", veth.name, Rate("pps", 1000), loop=0, duration=0.3)
    assert rep["stopped_by"] == "duration" and time.perf_counter() - t < 1.5
    assert 250 <= rep["packets"] <= 302, rep["packets"]
    done = cli("replay", tmp_path / "in.pcap", "--iface", veth.name, "--pps", "1e8",
               "--limit", 300_000, "--loop", 0, "--json")
    assert done.returncode == 0, done.stderr
    rep = json.loads(done.stdout)
    assert rep["packets"] == 300_000 and not rep["rate_reached"]
    assert "out of reach" in rep["warnings"][0]
    assert done.stderr.startswith("warning: the rate asked (100,000,000 packets/s) is out of reach")


def test_a_late_sender_catches_up_at_twice_the_rate(veth, tmp_path):
    """Behind by less than the bound (10 ms by default), frames keep half their gap (no burst
    onto the device under test); behind by more, every frame already due goes at once."""
    from trafficgen.kernels.txsend import A_CALLS
    from trafficgen.playback.iface import Transmitter, open_interface
    frames = make_frames(200, seed=12, hi=200)
    buf = np.frombuffer(b"".join(frames), np.uint8)
    length = np.array([len(f) for f in frames], np.int64)
    off = np.concatenate(([0], np.cumsum(length)[:-1]))
    stamps = T0 + np.arange(100) * 20_000  # 20 us apart: 2 ms of frames
    calls = []
    with PeerCapture(veth.peer, tmp_path / "peer.pcap"):
        iface = open_interface(veth.name)
        try:
            # 3 ms behind within a bound of 100 ms (not 10: a busy machine may stall the
            # test that long before the first frame), then 50 ms behind the default 10 ms
            for part, behind_ns, bound in ((slice(0, 100), 3_000_000, 100_000_000),
                                           (slice(100, 200), 50_000_000, 10_000_000)):
                tx = Transmitter(iface, Rate("original"), catchup_ns=bound)
                tx.start(lead_ns=-behind_ns)  # the clock started that long ago
                tx.send(buf, off[part], length[part], stamps)
                calls.append(int(tx.acc[A_CALLS]))
        finally:
            iface.close()
    ts, got = read_pcap(tmp_path / "peer.pcap")
    assert got == frames
    spaced, burst = np.diff(ts[:100]), np.diff(ts[100:])
    # about half of 20 us apart: over the whole run (a receiver's timestamps may bunch a few)
    assert calls[0] >= 100 and ts[99] - ts[0] >= 99 * 7_000, (calls, ts[99] - ts[0])
    assert np.quantile(spaced, 0.25) >= 7_000, np.quantile(spaced, 0.25)
    assert calls[1] < 10 and np.median(burst) < 5_000, (calls, np.median(burst))


def test_refused_before_anything_is_sent(net, tmp_path, capsys):
    frames = make_frames(20, seed=9, lo=900, hi=900) + make_frames(1, seed=9, lo=1300, hi=1300)
    write_pcap(tmp_path / "big.pcap", frames, T0 + np.arange(21) * 1000)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes((tmp_path / "big.pcap").read_bytes()[:-100])
    with VethPair(mtu=1200) as veth, PeerCapture(veth.peer, tmp_path / "peer.pcap"):
        assert main(["replay", str(tmp_path / "big.pcap"), "--iface", veth.name]) == 2
        one_line_error(capsys.readouterr().err, "packet 21", "1300 bytes", "MTU of 1200")
        assert main(["replay", str(cut), "--iface", veth.name]) == 2
        one_line_error(capsys.readouterr().err, "truncated", "packet 21")
        subprocess.run(["ip", "link", "set", veth.name, "down"], check=True)
        assert main(["replay", str(tmp_path / "big.pcap"), "--iface", veth.name]) == 2
        one_line_error(capsys.readouterr().err, "is down", f"ip link set {veth.name} up")
    assert read_pcap(tmp_path / "peer.pcap")[0].shape[0] == 0  # not one frame went out


def test_without_cap_net_raw(veth, tmp_path):
    # Stay the same user (so the interpreter and its packages stay readable, wherever they are
    # installed) but drop CAP_NET_RAW from the bounding set: root's exec then cannot regain it.
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    path = tmp_path / "in.pcap"
    write_pcap(path, make_frames(5), T0 + np.arange(5))
    done = subprocess.run([setpriv, "--bounding-set=-net_raw", "--inh-caps=-net_raw",
                           sys.executable, "-m", "trafficgen", "replay", str(path),
                           "--iface", veth.name], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    one_line_error(done.stderr, "CAP_NET_RAW", veth.name)


def test_library_lifecycle_from_a_thread(veth, tmp_path):
    frames = make_frames(50, seed=10, hi=200)
    write_pcap(tmp_path / "in.pcap", frames, T0 + np.arange(50) * 1000)
    with PeerCapture(veth.peer, tmp_path / "peer.pcap"):
        r = tg.Replay(tmp_path / "in.pcap", veth.name, Rate("pps", 2000), loop=0)
        assert r.prepare()["packets"] == 50
        thread = threading.Thread(target=r.run)
        thread.start()
        time.sleep(0.4)
        first = r.stats()
        time.sleep(0.2)
        second = r.stats()
        t = time.perf_counter()
        r.abort()
        thread.join(5)
        assert not thread.is_alive() and time.perf_counter() - t < 0.2
    assert first["state"] == "running" and 0 < first["packets"] < second["packets"]
    assert 300 < second["packets"] < 1400
    rep = r.report
    assert rep["stopped_by"] == "abort" and r.stats()["state"] == "done"
    _, got = read_pcap(tmp_path / "peer.pcap")
    assert len(got) == rep["packets"] and got == (frames * 40)[:len(got)]
    with pytest.raises(tg.TrafficgenError):
        r.run()  # one run per Replay


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_prints_the_report(veth, tmp_path, sig, code):
    """^C or SIGTERM (``kill``, ``timeout``) stops a replay: the report of what went, and the
    status of the signal (130, 143)."""
    write_pcap(tmp_path / "in.pcap", make_frames(10), T0 + np.arange(10) * 1000)
    proc = subprocess.Popen([sys.executable, "-m", "trafficgen", "replay", tmp_path / "in.pcap",
                             "--iface", veth.name, "--pps", "500", "--loop", "0", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    rep = json.loads(out)
    assert rep["stopped_by"] == "interrupt" and rep["packets"] > 0


def test_live_generate_sends_what_generate_writes(veth, tmp_path):
    args = ["chat", "-t", "chat.rate=20/s", "--duration", "2s", "--seed", "5"]
    assert cli("generate", *args, "-o", tmp_path / "ref.pcap", "-q").returncode == 0
    _, ref = read_pcap(tmp_path / "ref.pcap")
    with PeerCapture(veth.peer, tmp_path / "peer.pcap"):
        done = cli("generate", *args, "--iface", veth.name, "--pps", 20_000, "--limit", 3000, "--json")
    assert done.returncode == 0, done.stderr
    rep = json.loads(done.stdout)
    ts, got = read_pcap(tmp_path / "peer.pcap")
    assert rep["packets"] == 3000 and got == ref[:3000]
    assert abs(lateness(ts, np.arange(3000) / 20_000)[-1]) < 0.003


def test_live_generate_keeps_the_scenario_timing(veth, tmp_path):
    sc = tg.load_scenario("chat", {"chat.rate": "20/s"}, duration="2s", seed=6)
    tg.generate(sc, pcap=tmp_path / "ref.pcap")
    ref_ts, ref = read_pcap(tmp_path / "ref.pcap")
    calls = []
    with PeerCapture(veth.peer, tmp_path / "peer.pcap"):
        r = tg.Replay(sc, veth.name, Rate("multiplier", 1.5), limit=1500, progress=calls.append)
        r.prepare()
        rep = r.run()
    ts, got = read_pcap(tmp_path / "peer.pcap")
    assert rep["packets"] == 1500 and got == ref[:1500] and rep["stopped_by"] == "limit"
    want = (ref_ts[:1500] - ref_ts[0]) / 1.5 / 1e9
    assert want[-1] > 1  # more than a second of sending, so progress was reported
    late = lateness(ts, want)
    assert np.median(np.abs(late)) < 200e-6 and abs(late[-1]) < 0.01 * want[-1]
    assert calls and 0 < calls[0]["packets"] < 1500


def test_readme_example_runs(veth, tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"## Replay.*?```py\n(.*?)```", readme, flags=re.S).group(1)
    assert "veth0" in code
    with PeerCapture(veth.peer, tmp_path / "peer.pcap"):
        done = subprocess.run([sys.executable, "-c", code.replace("veth0", veth.name)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert int(lines[0].split()[0]) > 1000 and lines[1].endswith("abort")
    _, got = read_pcap(tmp_path / "peer.pcap")
    _, sent = read_pcap(tmp_path / "lab.pcap")
    looped = (sent * (len(got) // len(sent) + 2))
    last = min(10_000, len(sent))  # limit=10_000 stops at the file's end if that comes first
    first = len(got) - last  # the paced run, then the first 10,000 frames again
    assert got[:first] == looped[:first] and got[first:] == sent[:last]


@pytest.mark.slow
def test_a_big_file_streams_in_bounded_memory(veth, tmp_path):
    """A 300 MB file replays in about the memory of a 3 MB one: it is streamed, not loaded."""
    frames = make_frames(200, seed=11, lo=1514, hi=1514)
    small, big = tmp_path / "small.pcap", tmp_path / "big.pcap"
    write_pcap(small, frames * 10, T0 + np.arange(2000))
    data = small.read_bytes()
    with open(big, "wb") as fh:
        fh.write(data)
        for _ in range(99):
            fh.write(data[24:])
    assert big.stat().st_size > 300e6
    wrapper = ("import resource, subprocess, sys\n"
               "done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)\n"
               "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.stdout.decode())")
    peaks = {}
    for f in (small, big):
        out = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "trafficgen",
                              "replay", f, "--iface", veth.name, "--topspeed", "--json"],
                             capture_output=True, text=True, timeout=120)
        rc, kib, report = out.stdout.split(" ", 2)
        assert rc == "0", out.stderr
        peaks[f.name] = int(kib) / 1024
        assert json.loads(report)["packets"] == (2000 if f == small else 200_000)
    print(f"peak RSS: 3 MB file {peaks['small.pcap']:.0f} MiB, 300 MB file {peaks['big.pcap']:.0f} MiB")
    assert peaks["big.pcap"] < peaks["small.pcap"] + 40, peaks
