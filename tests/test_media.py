"""The multimodal class's media sessions (models/media.py): realtime voice over a WebSocket in
TLS or RTP/Opus over UDP, and sampled video over a WebSocket.

Samplers against their targets (KS or quantiles, each with a negative control), then the
capture: tshark dissects the WebSocket flows as TLS and the RTP flows as RTP without a
problem, RTP sequence numbers and timestamps as RFC 7587 says, the upstream audio at the
configured bit rate, video frames about once a second, the tables adding up to the capture,
and the same bytes however the run is cut.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import stats

import trafficgen as tg
from trafficgen.classes.common import offsets
from trafficgen.kernels import chat as kc
from trafficgen.kernels import media as km
from trafficgen.kernels import video as kv
from trafficgen.kernels.rng import derive_range, key_of
from trafficgen.kernels.tcp import WF_BYTES, WF_COLS, WF_DIR, WF_PHASE
from trafficgen.schema import KIND_CODE, PHASE_CODE, PSH

from .helpers import TSHARK_PROBLEMS, batch_tables, lognormal_cdf, run_tshark

ALPHA = 1e-3
RTP_PORT = 49170
MEDIA = ["multimodal.rate=0", "multimodal.voice_rate=0.3/s", "multimodal.video_rate=0.1/s"]
TLS_REC = 22


@pytest.fixture(scope="module")
def media_run(tmp_path_factory, make_run):
    sc = tg.load_scenario("multimodal", MEDIA, duration="60s", seed=9)
    run = make_run(tmp_path_factory.mktemp("media"), sc)
    return run, sc, *batch_tables(sc, "flows", "requests", "packets")


# --- samplers ----------------------------------------------------------------------------

def _voice_draws(n=3000, barge_in=0.0, speed=1.0):
    """Sessions and exchanges straight from the kernels, no run end in the way."""
    sc = tg.load_scenario("multimodal")
    v = sc.multimodal.voice
    keys = np.empty(n, np.uint64)
    derive_range(key_of(1, 2, 77), 0, keys)
    starts = np.zeros(n, np.int64)
    s = {k: np.empty(n, np.int64) for k in ("client", "server", "rtt", "rtp", "first", "end")}
    d = {k: getattr(v, k).params() for k in ("session", "user_spurt", "model_spurt", "latency", "pause")}
    paths = kc.Paths(100, 0.0, 2, key_of(1, 0xFFFF), *sc.topology.rtt_table())
    st = km.MediaSessions(**s)
    km.session_draws(keys, starts, paths, 4, d["session"], d["pause"], v.rtp_share, 2**62, st)
    nx, last = np.empty(n, np.int64), np.empty(n, np.int64)
    talk = km.Talk(d["user_spurt"], d["model_spurt"], d["latency"], d["pause"], barge_in)
    e0 = [np.empty(0, np.int64)] * 4
    km.exchange_draws(keys, st, speed, talk, km.Exchanges(np.zeros(n, np.int64), nx, last, *e0), 0)
    x0 = offsets(nx)
    e = [np.empty(int(nx.sum()), np.int64) for _ in range(4)]
    km.exchange_draws(keys, st, speed, talk, km.Exchanges(x0, nx, last, *e), 1)
    owd = np.repeat(s["rtt"] // 2, nx)
    e = dict(zip(("u0", "u1", "r0", "sent"), e), sess=np.repeat(np.arange(n), nx))
    return v, s, e, owd


def test_voice_samplers_follow_their_distributions():
    v, s, e, owd = _voice_draws()
    user, model = (e["u1"] - e["u0"]).astype(float), e["sent"].astype(float)
    latency = (e["r0"] - e["u1"] - owd).astype(float)
    length = s["end"].astype(float)  # sessions start at 0
    for x, d in ((user, v.user_spurt), (model, v.model_spurt), (latency, v.latency),
                 (length, v.session)):
        assert stats.kstest(x, lognormal_cdf(d)).pvalue > ALPHA
    # negative controls: a user spurt is not an answer, nor a latency a spurt
    assert stats.kstest(user, lognormal_cdf(v.model_spurt)).pvalue < ALPHA
    assert stats.kstest(latency, lognormal_cdf(v.pause)).pvalue < ALPHA
    assert abs(s["rtp"].mean() - v.rtp_share) < 0.03
    # exchanges follow one another: the user speaks again ``pause`` after hearing the answer
    same = e["sess"][1:] == e["sess"][:-1]
    pause = (e["u0"][1:] - (e["r0"][:-1] + owd[:-1] + e["sent"][:-1]))[same].astype(float)
    assert stats.kstest(pause, lognormal_cdf(v.pause)).pvalue > ALPHA
    assert stats.kstest(pause, lognormal_cdf(v.latency)).pvalue < ALPHA


def test_barge_in_cuts_answers():
    _, _, calm, _ = _voice_draws(barge_in=0.0)
    v, _, cut, _ = _voice_draws(barge_in=0.5)
    ratio = cut["sent"].mean() / calm["sent"].mean()
    # half the answers are cut somewhere uniform: about 3/4 of the audio is sent
    assert 0.6 < ratio < 0.9


def test_video_frames_and_replies():
    """Frame bytes against ``frame_bytes`` (KS, from the kernel's writes), about ``fps`` frames
    per second, answers every ``reply_every`` on average."""
    sc = tg.load_scenario("multimodal")
    f = sc.multimodal.video
    n = 300
    keys = np.empty(n, np.uint64)
    derive_range(key_of(1, 2, 78), 0, keys)
    first = np.zeros(n, np.int64)
    end = np.full(n, 120 * 10**9, np.int64)
    rtt = np.full(n, 30_000_000, np.int64)
    pr = {k: getattr(f, k).params() for k in ("frame_bytes", "reply_every", "reply_tokens", "latency")}
    z = np.empty(0, np.int64)
    fw, fr, ft = (np.empty(n, np.int64) for _ in range(3))
    st = km.MediaSessions(z, z, rtt, z, first, end)
    vp = kv.VideoParams(1e9 / f.fps, pr["frame_bytes"], pr["reply_every"], pr["reply_tokens"],
                        pr["latency"], sc.multimodal.itl.params(), 4.0, f.tokens_per_frame)
    counts = kv.VideoCounts(fw, fr, ft)
    kv.segments(0, keys, st, vp, 0, z, z, counts, np.empty((0, WF_COLS), np.int64),
                kv.Segments(z, z, z, z, z, z))
    wd = np.empty((int(fw.sum()), WF_COLS), np.int64)
    R = int(fr.sum())
    r = [np.zeros(R, np.int64) for _ in range(6)]
    c_next = offsets(fw)
    kv.segments(1, keys, st, vp, 0, offsets(fr), c_next, counts, wd, kv.Segments(*r))
    up = (wd[:, WF_DIR] == 0) & (wd[:, WF_PHASE] == PHASE_CODE["request"])
    plain = wd[up, WF_BYTES] - TLS_REC * np.ceil(wd[up, WF_BYTES] / (16384 + TLS_REC))
    b64 = plain - kv.FRAME_JSON - 14  # a masked client frame with a 64-bit length
    jpeg = b64 * 3 / 4
    assert stats.kstest(jpeg, lognormal_cdf(f.frame_bytes)).pvalue > ALPHA
    assert stats.kstest(jpeg * 4 / 3, lognormal_cdf(f.frame_bytes)).pvalue < ALPHA  # base64 seen
    assert up.sum() / (n * 120) == pytest.approx(f.fps, rel=0.01)
    images, prompt = r[5], r[3]
    assert images.sum() == up.sum() and (prompt == 258 * images).all()
    answered = r[4] > 0
    assert answered.sum() / (n * 120) == pytest.approx(1 / (f.reply_every.mean() / 1e9), rel=0.15)


# --- the capture -------------------------------------------------------------------------

def test_tshark_sees_tls_and_rtp_without_problems(tshark, media_run):
    run, *_ = media_run
    out = run_tshark(tshark, run.pcap, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
                     "-o", "udp.check_checksum:TRUE", "-d", f"udp.port=={RTP_PORT},rtp",
                     "-Y", f'({TSHARK_PROBLEMS}) || udp.checksum.status == "Bad"',
                     "-T", "fields", "-e", "frame.number")
    assert out.split() == []
    proto = run_tshark(tshark, run.pcap, "-2", "-d", f"udp.port=={RTP_PORT},rtp", "-T", "fields",
                       "-e", "frame.protocols", "-e", "tcp.len", "-e", "tcp.reassembled_in")
    rows = [line.split("\t") for line in proto.splitlines()]
    udp = [r[0] for r in rows if ":udp" in r[0]]
    assert udp and all(p.endswith(":udp:rtp") for p in udp)
    data = [r for r in rows if ":tcp" in r[0] and r[1] not in ("", "0")]
    assert data and all(":tls" in r[0] or r[2] for r in data)  # TLS, or a segment of a record


def test_rtp_sequence_timestamps_and_spacing(tshark, media_run):
    """Per stream: consecutive sequence numbers, the 48 kHz timestamp 960 per 20 ms frame,
    speech every 20 ms, DTX comfort noise every 400 ms, the marker on each talk spurt's first
    packet. The client's packets are seen as sent (exact 20 ms multiples), the server's a
    little late (up to ``voice.jitter``)."""
    run, sc, flows, req, pk = media_run
    v = sc.multimodal.voice
    out = run_tshark(tshark, run.pcap, "-d", f"udp.port=={RTP_PORT},rtp", "-Y", "rtp", "-T",
                     "fields", "-e", "rtp.ssrc", "-e", "rtp.seq", "-e", "rtp.timestamp",
                     "-e", "frame.time_epoch", "-e", "rtp.marker", "-e", "udp.length",
                     "-e", "udp.dstport")
    streams: dict = {}
    for line in out.splitlines():
        ssrc, seq, ts, t, marker, ulen, dport = line.split("\t")
        sec, _, frac = t.partition(".")
        streams.setdefault((ssrc, dport == str(RTP_PORT)), []).append(
            (int(seq), int(ts), int(sec) * 10**9 + int(frac.ljust(9, "0")[:9]),
             marker in ("1", "True"), int(ulen)))
    assert len(streams) >= 4
    late = []
    for (_, up), rows in streams.items():
        a = np.array([r[:3] for r in rows], np.int64)
        assert ((np.diff(a[:, 0]) % 65536) == 1).all()  # consecutive sequence numbers
        dt = np.diff(a[:, 2])
        frames = np.round(dt / 20_000_000).astype(np.int64)
        assert (frames > 0).all()
        assert ((np.diff(a[:, 1]) % 2**32) == frames * 960).all()  # the 48 kHz clock
        off = dt - frames * 20_000_000
        if up:  # the client's own packets: exact 20 ms multiples, but where one waited for the
            # tap's link behind another flow's frame (engine/tap.py: microseconds)
            assert (np.abs(off) <= 200_000).all() and np.mean(off == 0) > 0.9
        else:
            assert (np.abs(off) <= v.jitter).all()
            late.append(off)
        big = np.array([r[4] for r in rows]) > 8 + 12 + v.silence_bytes
        assert big.any() and (frames[big[1:] & big[:-1]] == 1).all()  # speech: every 20 ms
        quiet = ~big[1:] & ~big[:-1]
        assert (frames[quiet] % 20 == 0).all()  # DTX: one comfort-noise frame per 400 ms
        marks = np.array([r[3] for r in rows])
        assert (marks[1:] == (big[1:] & ~big[:-1])).all()  # the marker opens each talk spurt
    late = np.concatenate(late)
    assert late.std() > v.jitter / 6  # the server's packets do jitter (uniform: jitter / 2.45)


def test_opus_frame_sizes(media_run):
    _, sc, flows, req, pk = media_run
    speech = (pk["layout"] == 1) & (pk["request_id"] >= 0)
    size = pk["payload_len"][speech].astype(float)
    d = sc.multimodal.voice.opus_bytes
    assert np.median(size) == pytest.approx(d.quantile(0.5), abs=1.5)
    assert np.quantile(size, 0.9) == pytest.approx(d.quantile(0.9), abs=2.5)
    assert not np.quantile(size, 0.9) == pytest.approx(d.quantile(0.5), abs=2.5)  # control


def test_upstream_audio_at_the_configured_bit_rate(media_run):
    """Base64 PCM16 in the appends of WebSocket voice requests, over the speech they carry:
    16 x sample_rate bits per second (384 kb/s), 4/3 of it as base64."""
    _, sc, flows, req, pk = media_run
    v = sc.multimodal.voice
    ws_voice = (req["kind"] == KIND_CODE["media"]) & (req["images"] == 0)
    ws_voice &= np.isin(req["flow_id"], flows["flow_id"][flows["protocol"] == 6])
    pcm = speech = 0.0
    for rid in req["request_id"][ws_voice]:
        m = (pk["request_id"] == rid) & (pk["direction"] == 0) & (pk["payload_len"] > 0)
        ends = m & ((pk["tcp_flags"] & PSH) != 0)  # one append each
        n = int(ends.sum())
        plain = pk["payload_len"][m].sum() - n * TLS_REC
        pcm += (plain - n * (8 + km.APPEND_JSON)) * 3 / 4
        t = pk["ts_ns"][ends]
        speech += (t.max() - pk["ts_ns"][m].min() + v.chunk) / 1e9
    assert speech > 30
    rate = 8 * pcm / speech
    assert rate == pytest.approx(16 * v.sample_rate, rel=0.02)
    assert not rate == pytest.approx(16 * 16000, rel=0.02)  # control: another rate is seen


def test_video_frames_about_once_a_second(media_run):
    _, sc, flows, req, pk = media_run
    video = np.unique(req["flow_id"][req["images"] > 0])
    assert video.shape[0] >= 2
    frames = 0
    for fid in video:
        m = (pk["flow_id"] == fid) & (pk["direction"] == 0) & (pk["phase"] == PHASE_CODE["request"])
        ends = m & ((pk["tcp_flags"] & PSH) != 0)
        t = pk["ts_ns"][ends]
        frames += t.shape[0]
        if t.shape[0] > 10:
            assert np.median(np.diff(t)) / 1e9 == pytest.approx(1 / sc.multimodal.video.fps, rel=0.1)
    assert frames == req["images"].sum()


def test_tables_add_up_to_the_capture(media_run):
    run, sc, flows, req, pk = media_run
    assert run.report["packets"] == pk.shape[0]
    assert run.report["wire_bytes"] == int(pk["wire_len"].sum())
    assert int(flows["bytes_up"].sum() + flows["bytes_down"].sum()) == run.report["wire_bytes"]
    assert (req["kind"] == KIND_CODE["media"]).all()
    assert set(flows["protocol"].tolist()) == {6, 17}
    for col, d in (("bytes_up", 0), ("bytes_down", 1)):
        got = np.bincount(pk["request_id"][(pk["request_id"] >= 0) & (pk["direction"] == d)],
                          weights=pk["wire_len"][(pk["request_id"] >= 0) & (pk["direction"] == d)],
                          minlength=req.shape[0])
        assert np.array_equal(got[req["request_id"] - req["request_id"].min()].astype(np.int64), req[col])
    assert (req["start_ns"] <= req["end_ns"]).all()
    answered = req["first_byte_ns"] >= 0
    assert (req["first_byte_ns"][answered] >= req["start_ns"][answered]).all()
    assert (~answered).sum() <= (req["images"] > 0).sum()  # only video frames go unanswered
    per_flow = np.bincount(req["flow_id"], minlength=flows["flow_id"].max() + 1)
    assert np.array_equal(per_flow[flows["flow_id"]], flows["requests"])
    v = sc.multimodal.voice
    voice = req["images"] == 0
    assert (req["prompt_tokens"][voice] > 0).all() and (req["output_tokens"][voice] > 0).all()
    assert v.input_tokens_per_s == 10


def _digest(sc, **kw) -> tuple:
    """Digests of the packet rows, the frames and the request and flow rows, each as one
    stream (batches and windows cut them in different places)."""
    h = {k: hashlib.sha256() for k in ("packets", "frames", "requests", "flows")}
    for b in tg.batches(sc, **kw):
        h["packets"].update(b.packets.tobytes())
        h["frames"].update(b.frames.tobytes() if b.frames is not None else b"")
        h["requests"].update(b.requests.tobytes())
        h["flows"].update(b.flows.tobytes())
    return tuple(x.hexdigest() for x in h.values())


def test_same_seed_same_bytes_however_cut():
    sc = tg.load_scenario("multimodal", MEDIA, duration="25s", seed=4)
    base = _digest(sc)
    assert _digest(sc) == base
    assert _digest(sc, window="3s", batch_packets=777) == base
    other = _digest(tg.load_scenario("multimodal", MEDIA, duration="25s", seed=5))
    assert all(a != b for a, b in zip(other, base))


def test_image_requests_and_media_together_however_cut():
    """Two models of one class: ids go block by block, model by model, whatever the window."""
    sc = tg.load_scenario("multimodal", ["multimodal.rate=1/s", "multimodal.voice_rate=0.3/s"],
                          duration="25s", seed=4)
    assert _digest(sc, window="3s") == _digest(sc)


def test_media_keys_leave_the_image_requests_alone():
    """The chat-shaped image requests are the same with and without media sessions."""
    on = batch_tables(tg.load_scenario("multimodal", ["multimodal.rate=2/s", "multimodal.voice_rate=0.5/s",
                                                      "multimodal.video_rate=0.2/s"], duration="20s", seed=3),
                      "requests")[0]
    off = batch_tables(tg.load_scenario("multimodal", ["multimodal.rate=2/s", "multimodal.voice_rate=0",
                                                       "multimodal.video_rate=0"], duration="20s", seed=3),
                       "requests")[0]
    llm = on[on["kind"] == KIND_CODE["llm"]]
    assert (on["kind"] == KIND_CODE["media"]).any() and llm.shape[0] == off.shape[0]
    for col in ("start_ns", "end_ns", "bytes_up", "bytes_down", "prompt_tokens", "images"):
        assert np.array_equal(llm[col], off[col]), col


def test_mixed_run_carries_voice(mix_run):
    import pyarrow.parquet as pq
    req = pq.read_table(mix_run.requests).column("kind").to_pylist()
    assert "media" in req and "llm" in req


@pytest.mark.parametrize("override, key", [
    ("multimodal.voice={chunk='5ms'}", "multimodal.voice"),
    ("multimodal.voice={transport=1}", "multimodal.voice"),
    ("multimodal.video={fps=0}", "multimodal.video"),
    ("multimodal.voice_rate=fast", "multimodal.voice_rate"),
])
def test_bad_media_keys_are_refused_by_name(override, key):
    with pytest.raises(tg.ConfigError) as e:
        tg.load_scenario("multimodal", [override])
    msg = str(e.value)
    assert key in msg and "\n" not in msg
