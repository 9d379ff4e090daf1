"""Python side of the multimodal class's media sessions: realtime voice and sampled video.

The class's second model (``models.model_types``): the image requests stay with ``ChatModel``;
this one draws voice sessions (``voice_rate``) and video sessions (``video_rate``) per 60 s
arrival block from keys of its own (``key_of(seed, class, VOICE_KEY_ID | VIDEO_KEY_ID)``), so
the image requests do not change when it is switched on. Voice sessions go over a WebSocket
inside TLS (``kernels.media``, then ``kernels.tcp``) or, a ``voice.rtp_share`` of them, as
RTP/Opus over UDP (``kernels.media.rtp_rows``, then ``udp.schedule_from_packets``); video
sessions over a WebSocket (``kernels.video``).

Request rows (kind ``media``): voice, one per exchange (the user's spurt and the answer to it:
``prompt_tokens`` = seconds of speech x ``input_tokens_per_s``, ``output_tokens`` = seconds of
answer audio sent x ``output_tokens_per_s``, ``turn`` = its index in the session); video, one
per answer with the frames that led to it (``images`` = frames, ``prompt_tokens`` = frames x
``tokens_per_frame``, ``output_tokens`` = the answer's text tokens). Sessions start inside the
capture only (``warmup_ns`` 0): a long-lived connection cut at the capture's start would begin
mid-stream.
"""
from __future__ import annotations

import numpy as np

from trafficgen.config.arrivals import ArrivalSpec
from trafficgen.config.dist import parse_dist
from trafficgen.config.scenario import Scenario
from trafficgen.kernels import chat as kc
from trafficgen.kernels import media as km
from trafficgen.kernels import video as kv
from trafficgen.kernels.rng import key_of
from trafficgen.kernels.tcp import WF_COLS
from trafficgen.schema import CLASS_CODE, KIND_CODE, SCHED_DTYPE, concat_rows

from .common import EpochSchedule, SessionModel, TlsPlan, offsets, schedule_from_sim
from .udp import schedule_from_packets

VOICE_KEY_ID, VIDEO_KEY_ID = 0x3ED1A, 0x3ED1B  # never the chat model's keys (its class key)
SETUP_RTTS = 4  # TCP, TLS, the upgrade, session.update: round trips before the user speaks
_ZERO = parse_dist(0, "duration", positive=False).params()


class _Stream(SessionModel):
    """One session stream (voice or video): arrivals per block from its own key."""

    def __init__(self, scenario, class_id, key_id, rate):
        self.scenario, self.params = scenario, self
        self.arrivals = ArrivalSpec()  # Poisson
        self.key = key_of(scenario.seed, class_id, key_id)
        self.levels_key = key_of(scenario.seed, class_id, key_id, 0xB0257)
        self.session_rate_per_ns = rate / 1e9


class MediaModel:
    """Voice and video sessions of the multimodal class for one scenario."""

    def __init__(self, scenario: Scenario, cls: str = "multimodal", layout_base: int = 0):
        p = getattr(scenario, cls)
        self.scenario, self.cls, self.params = scenario, cls, p
        self.class_id = CLASS_CODE[cls]
        self.side = scenario.topology.side(cls) or 0
        self.topo = scenario.topology_of(cls)
        self.voice = _Stream(scenario, self.class_id, VOICE_KEY_ID, p.voice_rate)
        self.video = _Stream(scenario, self.class_id, VIDEO_KEY_ID, p.video_rate)
        self.paths_key = key_of(scenario.seed, 0xFFFF)  # path RTTs, shared by all classes
        # realtime WebSockets: the clients' usual hello; the server picks HTTP/1.1 for the
        # upgrade, and the messages are WebSocket frames (no HTTP framing added)
        self.tls = TlsPlan(scenario, cls, p, [(p.sni, p.alpn)], framing=False)
        self.templates, self.layout_base = self.tls.templates, layout_base
        self.flight_wire, self.ticket_wire = int(self.tls.flight[0]), self.tls.ticket
        v, f = p.voice, p.video
        self.vd = {k: getattr(v, k).params() for k in
                   ("session", "user_spurt", "model_spurt", "latency", "pause", "opus_bytes")}
        self.fd = {k: getattr(f, k).params() for k in
                   ("session", "frame_bytes", "reply_every", "reply_tokens", "latency")}
        self.itl = p.itl.params()
        self.rtt_params = self.topo.rtt_table()  # (first client of each site, its RTT)
        self.warmup_ns = 0
        t = self.topo
        self.paths = kc.Paths(t.client_count, t.client_skew, len(t.servers), self.paths_key,
                              *self.rtt_params)
        d = self.vd
        self.talk = km.Talk(user=d["user_spurt"], model=d["model_spurt"], lat=d["latency"],
                            pause=d["pause"], barge_in=v.barge_in)
        self.video_params = kv.VideoParams(
            period=1e9 / f.fps, frame=self.fd["frame_bytes"], reply=self.fd["reply_every"],
            tokens=self.fd["reply_tokens"], lat=self.fd["latency"], itl=self.itl,
            bytes_per_token=p.bytes_per_token, tokens_per_frame=f.tokens_per_frame)

    def _sessions(self, keys, starts, pause_p, rtp_share, session_p):
        n = keys.shape[0]
        out = {k: np.empty(n, np.int64) for k in km.MediaSessions._fields}
        km.session_draws(keys, starts, self.paths, SETUP_RTTS, session_p, pause_p, rtp_share,
                         self.scenario.duration_ns, km.MediaSessions(**out))
        out["start"] = starts
        return out

    def window(self, t0: int, t1: int) -> EpochSchedule:
        """Every flow, request and packet of the media sessions that start in [t0, t1)."""
        v = self.params.voice
        vk, vstart = self.voice.sessions(t0, t1)
        fk, fstart = self.video.sessions(t0, t1)
        vs = self._sessions(vk, vstart, self.vd["pause"], v.rtp_share, self.vd["session"])
        fs = self._sessions(fk, fstart, _ZERO, 0.0, self.fd["session"])
        ex = self._exchanges(vk, vs)
        nv, nf = vk.shape[0], fk.shape[0]
        # one session order for both streams, by start (voice first on a tie): a window's ids
        # then follow session starts, so no window size changes them
        rank = np.empty(nv + nf, np.int64)
        rank[np.lexsort((np.arange(nv + nf), np.concatenate((vstart, fstart))))] = np.arange(nv + nf)
        vs["sess"], fs["sess"] = rank[:nv], rank[nv:]
        s_client, s_server = np.empty(nv + nf, np.int64), np.empty(nv + nf, np.int64)
        for st in (vs, fs):
            s_client[st["sess"]], s_server[st["sess"]] = st["client"], st["server"]
        tcp = self._tcp(vk, vs, ex, fk, fs, s_client, s_server)
        udp = self._rtp(vk, vs, ex)
        return _join(tcp, udp, nv + nf)

    def _exchanges(self, vk, vs):
        v = self.params.voice
        n = vk.shape[0]
        nx, last, x0 = np.empty(n, np.int64), np.empty(n, np.int64), np.zeros(n, np.int64)
        e = [np.empty(0, np.int64)] * 4
        st = _session_rows(vs)
        km.exchange_draws(vk, st, v.down_speed, self.talk, km.Exchanges(x0, nx, last, *e), 0)
        x0 = offsets(nx)
        e = [np.empty(int(nx.sum()), np.int64) for _ in range(4)]
        km.exchange_draws(vk, st, v.down_speed, self.talk, km.Exchanges(x0, nx, last, *e), 1)
        return {"x0": x0, "nx": nx, "last": last, "u0": e[0], "u1": e[1], "r0": e[2], "sent": e[3]}

    def _tcp(self, vk, vs, ex, fk, fs, s_client, s_server) -> EpochSchedule:
        """The WebSocket connections: voice sessions on WebSocket, then every video session."""
        v = self.params.voice
        ws = np.flatnonzero(vs["rtp"] == 0)
        nw, nf = ws.shape[0], fk.shape[0]
        setup = kv.SETUP_WRITES + (1 if self.ticket_wire else 0) + kv.CLOSE_WRITES
        vw = np.empty(nw, np.int64)
        km.ws_count(ex["x0"][ws], ex["nx"][ws], ex["u0"], ex["u1"], ex["sent"], v.chunk,
                    v.down_chunk, setup, vw)
        z = np.empty(0, np.int64)
        fw, fr, ftend = (np.empty(nf, np.int64) for _ in range(3))
        f_rows, counts = _session_rows(fs), kv.VideoCounts(writes=fw, reqs=fr, tend=ftend)
        kv.segments(0, fk, f_rows, self.video_params, nw, z, z, counts,
                    np.empty((0, WF_COLS), np.int64), kv.Segments(z, z, z, z, z, z))
        C = nw + nf
        c_w0 = offsets(np.concatenate((vw, fw + setup)))
        wd = np.empty((int(vw.sum() + fw.sum()) + nf * setup, WF_COLS), np.int64)
        c_next = np.empty(C, np.int64)
        kv.ws_setup(c_w0, int(self.tls.hello[0]), self.flight_wire, self.ticket_wire, wd, c_next)
        # requests: voice exchanges (in session order), then video segments
        nxw = ex["nx"][ws]
        vreq0, freq0 = offsets(nxw), int(nxw.sum()) + offsets(fr)
        R = int(nxw.sum() + fr.sum())
        r = {k: np.zeros(R, np.int64) for k in ("session", "turn", "conn", "prompt", "output",
                                                "reasoning", "images")}
        xw = _runs(ex["x0"][ws], nxw)  # their exchanges' rows
        nvr = xw.shape[0]
        r["session"][:nvr] = np.repeat(vs["sess"][ws], nxw)
        r["conn"][:nvr] = np.repeat(np.arange(nw), nxw)
        r["turn"][:nvr] = xw - np.repeat(ex["x0"][ws], nxw)
        r["prompt"][:nvr] = np.round((ex["u1"][xw] - ex["u0"][xw]) / 1e9 * v.input_tokens_per_s)
        r["output"][:nvr] = np.round(ex["sent"][xw] / 1e9 * v.output_tokens_per_s)
        ws_ex = km.Exchanges(x0=ex["x0"][ws], nx=nxw, last=ex["last"][ws], u0=ex["u0"],
                             u1=ex["u1"], r0=ex["r0"], sent=ex["sent"])
        audio = km.WsAudio(chunk=v.chunk, sample_rate=v.sample_rate, down_chunk=v.down_chunk,
                           speed=v.down_speed)
        km.ws_writes(c_w0[:nw], ws_ex, vs["rtt"][ws], audio, vreq0, c_next[:nw], wd)
        kv.segments(1, fk, f_rows, self.video_params, nw, freq0, c_next, counts, wd,
                    kv.Segments(**{k: r[k] for k in kv.Segments._fields}))
        r["session"][nvr:] = fs["sess"][r["session"][nvr:]]
        r["kind"] = np.full(R, KIND_CODE["media"], np.int64)
        tend = np.concatenate((ex["last"][ws] + 200_000_000, ftend))
        c_wn = np.empty(C, np.int64)
        kv.ws_close(c_w0, c_next, tend, wd, c_wn)
        sess = np.concatenate((vs["sess"][ws], fs["sess"]))
        keys = np.concatenate((vk[ws], fk))
        self.tls.apply(wd, c_w0, c_wn, s_client[sess], np.zeros(C, np.int64), self.layout_base,
                       seed=keys.view(np.int64), session=sess,
                       open_at=np.concatenate((vs["start"][ws], fs["start"])))
        rtt = np.concatenate((vs["rtt"][ws], fs["rtt"]))
        c = {"session": sess, "open_dep": np.full(C, -1, np.int64),
             "open_at": np.concatenate((vs["start"][ws], fs["start"])),
             "rtt": rtt, "w0": c_w0, "wn": c_wn}
        c_isn = np.stack([(keys >> np.uint64(s)).astype(np.int64) & 0xFFFFFFFF for s in (0, 32)], 1)
        c_ipid = np.stack([(keys >> np.uint64(s)).astype(np.int64) & 0xFFFF for s in (7, 23)], 1)
        c["jitter"] = ((keys >> np.uint64(40)) % np.uint64(100_000_000)).astype(np.int64)
        perm = np.argsort(sess, kind="stable")  # connections in session order
        c = {k: a[perm] for k, a in c.items()}
        c_isn, c_ipid = c_isn[perm], c_ipid[perm]
        inv = np.empty(C, np.int64)
        inv[perm] = np.arange(C)
        r["conn"] = inv[r["conn"]]
        c_os = np.stack([self.tls.client_os(s_client[c["session"]]), np.zeros(C, np.int64)], 1)
        ep = schedule_from_sim(self.scenario, self.topo, self.class_id, self.side, s_client,
                               s_server, r, c, c_isn, c_ipid, wd, c_os=c_os)
        _end_unanswered(ep)
        return ep

    def _rtp(self, vk, vs, ex) -> EpochSchedule:
        """The RTP sessions: one UDP flow each."""
        v, t = self.params.voice, self.topo
        rs = np.flatnonzero((vs["rtp"] == 1) & (ex["nx"] > 0))  # none: no packets at all
        n = rs.shape[0]
        nx = ex["nx"][rs]
        rtp_ex = km.Exchanges(x0=ex["x0"][rs], nx=nx, last=ex["last"][rs], u0=ex["u0"],
                              u1=ex["u1"], r0=ex["r0"], sent=ex["sent"])
        rtp = km.Rtp(opus=self.vd["opus_bytes"], silence_bytes=v.silence_bytes, dtx=v.dtx,
                     jitter=v.jitter, side=self.side, class_id=self.class_id)
        args = (vk[rs], vs["rtt"][rs], vs["first"][rs], rtp_ex, rtp, np.arange(n), offsets(nx))
        counts = np.empty(n, np.int64)
        km.rtp_rows(*args, counts, counts, np.empty(0, SCHED_DTYPE), 0)
        rows = np.zeros(int(counts.sum()), SCHED_DTYPE)
        km.rtp_rows(*args, offsets(counts), counts, rows, 1)
        flows = {"session": vs["sess"][rs], "src_ip": t.client_addresses(vs["client"][rs]),
                 "dst_ip": np.asarray(t.servers, np.int64)[vs["server"][rs]],
                 "dst_port": np.full(n, v.rtp_port), "client_id": vs["client"][rs],
                 "rtt": vs["rtt"][rs],
                 "client_os": self.tls.client_os(vs["client"][rs])}
        xr = _runs(ex["x0"][rs], nx)
        requests = {"flow": np.repeat(np.arange(n), nx), "session": np.repeat(vs["sess"][rs], nx),
                    "kind": KIND_CODE["media"], "turn": xr - np.repeat(ex["x0"][rs], nx),
                    "prompt_tokens": np.round((ex["u1"][xr] - ex["u0"][xr]) / 1e9
                                              * v.input_tokens_per_s).astype(np.int64),
                    "output_tokens": np.round(ex["sent"][xr] / 1e9
                                              * v.output_tokens_per_s).astype(np.int64),
                    "client_id": np.repeat(vs["client"][rs], nx)}
        return schedule_from_packets(self.scenario.start_ns, self.class_id, rows, flows, requests, 0)


def _session_rows(st: dict) -> km.MediaSessions:
    """The kernels' view of a stream's session columns (``MediaModel._sessions``)."""
    return km.MediaSessions(**{k: st[k] for k in km.MediaSessions._fields})


def _runs(first: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The concatenated ranges first[i] .. first[i] + counts[i] - 1."""
    return np.repeat(first - offsets(counts), counts) + np.arange(int(counts.sum()))


def _end_unanswered(ep: EpochSchedule) -> None:
    """A request without an answer (video frames after the last reply) ends with its last
    payload packet (``first_byte_ns`` stays -1)."""
    req = ep.requests
    open_ = req["end_ns"] < 0
    if not open_.any():
        return
    s = ep.sched
    mine = (s["request_id"] >= 0) & (s["payload_len"] > 0)
    last = np.full(req.shape[0], -1, np.int64)
    np.maximum.at(last, s["request_id"][mine], s["ts_ns"][mine])
    req["end_ns"][open_] = last[open_]


def _join(a: EpochSchedule, b: EpochSchedule, n_sessions: int) -> EpochSchedule:
    """One schedule of two (local ids): flows in session order (a session has one flow),
    requests by (session, turn), packets by (time, flow, packet order)."""
    from trafficgen.schema import take_rows
    flows, reqs = concat_rows([a.flows, b.flows]), concat_rows([a.requests, b.requests])
    nf, nr = a.flows.shape[0], a.requests.shape[0]
    b.sched["flow_id"] += nf
    b.sched["request_id"] = np.where(b.sched["request_id"] >= 0, b.sched["request_id"] + nr, -1)
    reqs["flow_id"][nr:] += nf
    f_order = np.argsort(flows["session_id"], kind="stable")
    f_new = np.empty(f_order.shape[0], np.int64)
    f_new[f_order] = np.arange(f_order.shape[0])
    r_order = np.lexsort((reqs["turn"], reqs["session_id"]))
    r_new = np.empty(r_order.shape[0], np.int64)
    r_new[r_order] = np.arange(r_order.shape[0])
    flows, reqs = take_rows(flows, f_order), take_rows(reqs, r_order)
    flows["flow_id"] = np.arange(flows.shape[0])
    reqs["request_id"] = np.arange(reqs.shape[0])
    reqs["flow_id"] = f_new[reqs["flow_id"]]
    sched = concat_rows([a.sched, b.sched])
    sched["flow_id"] = f_new[sched["flow_id"]]
    rid = sched["request_id"]
    sched["request_id"] = np.where(rid >= 0, r_new[np.maximum(rid, 0)], -1) if nr + b.requests.shape[0] else -1
    sched = take_rows(sched, np.lexsort((sched["flow_id"], sched["ts_ns"])))
    return EpochSchedule(sched, flows, reqs, n_sessions)
