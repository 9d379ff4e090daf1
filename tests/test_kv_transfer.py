"""The kv_transfer class and the encoder's UDP path: RoCEv2 frames read back by independent
decoders (zlib's CRC-32 over masked bytes built here, dpkt, tshark), the transfers' volume,
PSNs and pacing against the model, the samplers against their targets and the Mooncake trace,
determinism, a mix with chat, configuration errors (the UDP encoder alone: test_udp_frames.py).
"""
from __future__ import annotations

import hashlib
import json
import struct

import dpkt
import numpy as np
import pytest
from scipy import stats

import trafficgen as tg
from trafficgen.classes.kv_transfer import KVTransferModel
from trafficgen.config.kvcache import KV_MODELS
from trafficgen.kernels import udp as ku
from trafficgen.kernels.rng import derive_range, key_of

from .helpers import ROCE_OPS, TSHARK_PROBLEMS, icrc_of, ones_complement_sum, open_trace, run_tshark
from .kvcase import KV_OVERRIDES, digest, frames_of, icrc_v6_of, kv_scenario, table


@pytest.fixture(scope="module")
def kv_run(make_run, tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("kv_run"), kv_scenario())
    assert 500 < run.report["packets"] < 40_000 and run.report["requests"] > 10
    return run


# --- independent checks of the bytes -------------------------------------------------------

def test_icrc_and_checksums_recomputed_independently(kv_run):
    frames = frames_of(kv_run.pcap)
    assert len(frames) == kv_run.report["packets"]
    for k, (_ts, f) in enumerate(frames):
        assert struct.unpack("<I", f[-4:])[0] == icrc_of(f), f"frame {k + 1}: bad ICRC"
        assert ones_complement_sum(f[14:34]) == 0xFFFF, f"frame {k + 1}: bad IPv4 checksum"
        pseudo = f[26:34] + struct.pack("!BBH", 0, 17, len(f) - 34)
        assert ones_complement_sum(pseudo + f[34:]) == 0xFFFF, f"frame {k + 1}: bad UDP checksum"
    # negative control: one flipped payload bit breaks the ICRC
    f = bytearray(frames[0][1])
    f[60] ^= 1
    assert struct.unpack("<I", f[-4:])[0] != icrc_of(bytes(f))


def test_scapy_rebuilds_the_same_bytes(kv_run):
    """scapy's RoCE layer computes the ICRC itself (and IP/UDP checksums): cleared and rebuilt,
    every frame comes out byte for byte as we wrote it."""
    from scapy.all import Ether, raw
    from scapy.contrib.roce import BTH
    for _ts, f in frames_of(kv_run.pcap)[:400]:
        p = Ether(f)
        p[BTH].icrc = None
        p["UDP"].chksum = None
        p["IP"].chksum = None
        assert raw(Ether(raw(p))) == f


def test_dpkt_decodes_and_agrees_with_packet_table(kv_run):
    pk = table(kv_run.packets)
    flows = table(kv_run.flows)
    entropy = dict(zip(flows["flow_id"], flows["src_port"]))
    frames = frames_of(kv_run.pcap)
    assert len(frames) == len(pk["ts_ns"])
    for i, (ts, f) in enumerate(frames):
        eth = dpkt.ethernet.Ethernet(f)
        ip, udp = eth.data, eth.data.data
        assert isinstance(udp, dpkt.udp.UDP) and ip.len + 14 == len(f) and udp.ulen == ip.len - 20
        assert udp.dport == ku.ROCE_PORT and udp.sport == entropy[pk["flow_id"][i]]
        assert ts == pk["ts_ns"][i] and len(f) == pk["wire_len"][i]
        bth = bytes(udp.data)
        assert bth[0] == pk["tcp_flags"][i]
        assert int.from_bytes(bth[9:12], "big") == pk["seq"][i]
        assert len(bth) == ku.roce_bth_len(bth[0]) + pk["payload_len"][i] + (bth[1] >> 4 & 3) + 4


def test_tshark_dissects_every_frame_as_infiniband(tshark, kv_run):
    problems = run_tshark(tshark, kv_run.pcap, "-o", "udp.check_checksum:TRUE",
                          "-o", "ip.check_checksum:TRUE", "-Y",
                          '_ws.malformed || _ws.expert.severity >= warning || !infiniband || '
                          'ip.checksum.status == "Bad" || udp.checksum.status == "Bad"',
                          "-T", "fields", "-e", "frame.number")
    assert problems.split() == []
    out = run_tshark(tshark, kv_run.pcap, "-T", "fields", "-E", "separator=,", "-E", "occurrence=f",
                     "-e", "infiniband.bth.opcode", "-e", "infiniband.bth.psn",
                     "-e", "infiniband.bth.a", "-e", "infiniband.bth.padcnt",
                     "-e", "infiniband.reth.dmalen", "-e", "infiniband.reth.va",
                     "-e", "infiniband.aeth.msn", "-e", "udp.checksum.status")
    rows = [line.split(",") for line in out.splitlines()]
    pk = table(kv_run.packets)
    assert len(rows) == len(pk["ts_ns"])
    open_msgs = {}  # flow -> [DMA length, bytes so far]
    for i, (op, psn, areq, pad, dma, va, msn, ck) in enumerate(rows):
        op, f, n = int(op), int(pk["flow_id"][i]), int(pk["payload_len"][i])
        assert op == pk["tcp_flags"][i] and int(psn) == pk["seq"][i] and ck == "2"
        if op == ku.OP_ACK:
            assert pk["direction"][i] == "down" and int(msn) == pk["ack"][i]
            continue
        assert op in ROCE_OPS and pk["direction"][i] == "up" and int(pad) == -n % 4
        assert (areq in ("1", "True")) == bool(pk["ack"][i] >> 31)
        if op in (ku.OP_WRITE_FIRST, ku.OP_WRITE_ONLY):
            assert f not in open_msgs and int(va, 16) % 4096 == 0
            open_msgs[f] = [int(dma), 0]
        open_msgs[f][1] += n
        if op in (ku.OP_WRITE_LAST, ku.OP_WRITE_ONLY):
            dma_len, got = open_msgs.pop(f)
            assert got == dma_len
    assert not open_msgs


# --- the transfers against the model -------------------------------------------------------

def by_request(pk) -> dict:
    order = np.lexsort((np.arange(len(pk["ts_ns"])), pk["request_id"]))
    cuts = np.flatnonzero(np.diff(pk["request_id"][order])) + 1
    return {int(pk["request_id"][g[0]]): g for g in np.split(order, cuts)}


def test_bytes_written_follow_the_model(kv_run):
    pk, req = table(kv_run.packets), table(kv_run.requests)
    sc = kv_run.scenario
    per_token = sc.kv_transfer.model.bytes_per_token
    assert per_token == 3 * 2 * 93
    assert set(req["kind"]) == {"kv_transfer"} and set(pk["phase"]) == {"transfer"}
    groups = by_request(pk)
    assert sorted(groups) == list(req["request_id"])
    for r, tok, prompt in zip(req["request_id"], req["output_tokens"], req["prompt_tokens"]):
        g = groups[int(r)]
        up = g[pk["direction"][g] == "up"]
        assert pk["payload_len"][up].sum() == tok * per_token
        assert 1 <= tok <= prompt
        # one message per 2 layers: 2 messages, each a First..Last run or an Only
        ops = pk["tcp_flags"][up]
        assert (ops == ku.OP_WRITE_ONLY).sum() + (ops == ku.OP_WRITE_FIRST).sum() == 2
    assert (req["output_tokens"] < req["prompt_tokens"] - 8).any()  # some prefix hits
    assert (req["output_tokens"] % 2 == 1).any()  # some need pad bytes


@pytest.mark.parametrize("name", sorted(KV_MODELS))
def test_named_models_volume(name):
    sc = tg.load_scenario("kv-transfer", {"kv_transfer.rate": "3/s", "kv_transfer.model": name,
                                          "kv_transfer.prompt_tokens": 3,
                                          "kv_transfer.shared_prefix_tokens": 0,
                                          "kv_transfer.cache_hit_prob": 0.0}, duration="2s", seed=2)
    per_token = {"llama-3-8b": 128 << 10, "llama-3-70b": 320 << 10, "llama-3.1-405b": 504 << 10,
                 "deepseek-v3": 70_272}[name]
    total, reqs = 0, 0
    for b in tg.batches(sc, frames=False):
        up = b.packets["direction"] == 0
        total += int(b.packets["payload_len"][up].sum())
        reqs += b.requests.shape[0]
        assert (b.requests["output_tokens"] == 3).all()
    assert reqs > 0 and total == reqs * 3 * per_token


def test_psns_consecutive_and_acks_coalesced(kv_run):
    pk = table(kv_run.packets)
    every = kv_run.scenario.kv_transfer.ack_every
    for g in by_request(pk).values():
        up, down = g[pk["direction"][g] == "up"], g[pk["direction"][g] == "down"]
        psn = pk["seq"][up].astype(np.int64)
        assert (np.diff(psn) % (1 << 24) == 1).all()
        areq = (pk["ack"][up] >> 31).astype(bool)
        # one ACK per AckReq packet, for that PSN, after it; MSN counts finished messages
        assert np.array_equal(pk["seq"][down], pk["seq"][up][areq])
        assert (pk["ts_ns"][down] > pk["ts_ns"][up][areq]).all()
        last = np.isin(pk["tcp_flags"][up], (ku.OP_WRITE_LAST, ku.OP_WRITE_ONLY))
        assert np.array_equal(pk["ack"][down], np.cumsum(last)[areq])
        gaps = np.diff(np.flatnonzero(areq | last))
        assert (gaps <= every).all()


def test_messages_follow_prefill_and_packets_the_link_rate(kv_run):
    """Within a message, WRITEs leave back to back at the link rate; message k leaves when its
    layers are computed (``prefill_rate``) or when the link is free, whichever is later."""
    held = check_pacing(kv_run.scenario.kv_transfer, table(kv_run.packets), table(kv_run.requests))
    assert held > 0.5  # compute, not the link, held most messages back
    sc = kv_scenario(**{"kv_transfer.prefill_rate": 0})  # all layers ready: back to back
    parts = list(tg.batches(sc, frames=False))
    pk = {k: np.concatenate([b.packets[k] for b in parts]) for k in ("ts_ns", "request_id", "ack",
                                                                   "wire_len", "direction")}
    pk["direction"] = np.where(pk["direction"] == 0, "up", "down")
    req = {k: np.concatenate([b.requests[k] for b in parts]) for k in ("request_id", "output_tokens")}
    assert check_pacing(sc.kv_transfer, pk, req) == 0.0


def check_pacing(p, pk, req) -> float:
    """Assert the timing model on every WRITE; return the share of later messages (after a
    transfer's first) that waited for compute rather than for the link."""
    ns_per_byte = 8e9 / p.link_rate
    per_token_layer = 1e9 / p.prefill_rate / p.model.layers if p.prefill_rate else 0.0
    tokens = dict(zip(req["request_id"], req["output_tokens"]))
    held = msgs = 0
    for r, g in by_request(pk).items():
        up = g[pk["direction"][g] == "up"]
        hold = (pk["wire_len"][up].astype(np.int64) + 24) * ns_per_byte
        msg = pk["ack"][up].astype(np.int64) & 0x7FFFFFFF
        ready = np.minimum((msg + 1) * p.layers_per_message, p.model.layers) * tokens[r] * per_token_layer
        rel = pk["ts_ns"][up] - pk["ts_ns"][up][0]  # the first leaves once layers 0.. are done
        clock, prev = 0.0, -1
        for k in range(up.shape[0]):
            if msg[k] != prev:
                if prev >= 0:  # a later message: held by compute, or by the link?
                    held += ready[k] > clock
                    msgs += 1
                clock, prev = max(clock, ready[k]), msg[k]
            assert abs(rel[k] - (clock - ready[0])) <= 1.0
            clock += hold[k]
    return held / msgs


# --- samplers and the Mooncake fit --------------------------------------------------------

def draws(sc, n=40_000):
    model = KVTransferModel(sc)
    keys = np.empty(n, np.uint64)
    derive_range(key_of(12345), 0, keys)
    return model.draws(keys)


def uncached_cdf(p, x):
    """P(uncached <= x) of the model: prompt - prefix, or on a hit min(that, new tokens)."""
    fp = np.interp(np.log(x + 0.5 + p.shared_prefix_tokens), *quantile_axes(p.prompt_tokens))
    fn = np.interp(np.log(x + 0.5), *quantile_axes(p.hit_uncached_tokens))
    h = p.cache_hit_prob
    return (1 - h) * fp + h * (1 - (1 - fp) * (1 - fn))


def quantile_axes(d):
    ps = np.array([k[0] for k in d.knots])
    return np.log([k[1] for k in d.knots]), ps


def test_samplers_match_their_targets():
    sc = tg.load_scenario("kv-transfer")
    p = sc.kv_transfer
    d = draws(sc)
    def prompt_cdf(x):
        return np.interp(np.log(np.asarray(x) + 0.5), *quantile_axes(p.prompt_tokens))
    assert stats.kstest(d["prompt"], prompt_cdf).statistic < 0.012
    assert stats.kstest(d["uncached"], lambda x: uncached_cdf(p, np.asarray(x))).statistic < 0.012
    # negative control: the same draws against the model without prefix hits
    no_hits = tg.load_scenario("kv-transfer", {"kv_transfer.cache_hit_prob": 0.0}).kv_transfer
    assert stats.kstest(d["uncached"], lambda x: uncached_cdf(no_hits, np.asarray(x))).statistic > 0.1
    # servers uniform over the pools
    for key, pool in (("prefill", p.prefill_servers), ("decode", p.decode_servers)):
        counts = np.bincount(d[key], minlength=len(pool))
        assert stats.chisquare(counts).pvalue > 1e-3 and counts.shape[0] == len(pool)


def mooncake():
    seen, prompt, uncached = set(), [], []
    with open_trace("mooncake-conversation.jsonl") as fh:
        for line in fh:
            r = json.loads(line)
            cached = 0
            for h in r["hash_ids"]:
                if h not in seen:
                    break
                cached += 1
            seen.update(r["hash_ids"])
            prompt.append(r["input_length"])
            uncached.append(max(1, r["input_length"] - min(cached * 512, r["input_length"])))
    return np.array(prompt), np.array(uncached)


def test_mooncake_fit_against_the_trace():
    prompt, uncached = mooncake()
    d = draws(tg.load_scenario("kv-transfer"))
    assert stats.ks_2samp(d["prompt"], prompt).statistic < 0.02
    assert stats.ks_2samp(d["uncached"], uncached).statistic < 0.045
    share = lambda u, p: np.mean(1 - u / p)  # noqa: E731
    assert abs(share(d["uncached"], d["prompt"]) - share(uncached, prompt)) < 0.05
    assert abs(d["uncached"].mean() / uncached.mean() - 1) < 0.1
    # negative controls: the trace's prompts sent whole (no prefix cache) are far off, and so
    # is the cached share of the prompt drawn on its own (the TOML's reason for its shape)
    assert stats.ks_2samp(d["prompt"], uncached).statistic > 0.2
    rng = np.random.default_rng(3)
    p, share = rng.choice(prompt, 40_000), rng.choice(1 - uncached / prompt, 40_000)
    alone = np.maximum(1, p - np.round(share * p / 512) * 512)
    assert stats.ks_2samp(alone, uncached).statistic > 0.1


# --- determinism, mixing, configuration ---------------------------------------------------

def test_same_seed_same_bytes_whatever_the_window(kv_run):
    sc = kv_scenario()
    ref = hashlib.sha256(kv_run.pcap.read_bytes()).hexdigest()
    tmp = kv_run.dir / "again.pcap"
    tg.generate(sc, pcap=tmp)
    assert hashlib.sha256(tmp.read_bytes()).hexdigest() == ref
    base = digest(sc)
    assert digest(sc, window_ns=300_000_000, batch_packets=777) == base
    assert digest(tg.load_scenario(sc, seed=6)) != base


def test_mix_with_chat_passes_the_tcp_checks(tshark, make_run, tmp_path):
    data = tg.load_scenario("chat").to_dict()
    data["network"]["mtu"] = 9000
    data["topology"]["capture"] = "server"  # where both are seen (chat's front door, the fabric)
    data["kv_transfer"] = {k.split(".", 1)[1]: v for k, v in KV_OVERRIDES.items()}
    sc = tg.load_scenario(data, {"chat.rate": "4/s"}, duration="3s", seed=9)
    assert sc.classes == ("chat", "kv_transfer")
    run = make_run(tmp_path, sc)
    flows, req, pk = table(run.flows), table(run.requests), table(run.packets)
    assert set(flows["class"]) == {"chat", "kv_transfer"}
    assert set(flows["protocol"][flows["class"] == "kv_transfer"]) == {17}
    assert set(flows["requests"][flows["class"] == "kv_transfer"]) == {1}  # one transfer per QP
    assert set(flows["protocol"][flows["class"] == "chat"]) == {6}
    assert set(req["kind"][req["class"] == "kv_transfer"]) == {"kv_transfer"}
    size = run.pcap.stat().st_size
    assert size == 24 + 16 * len(pk["ts_ns"]) + int(pk["wire_len"].sum())
    assert int(flows["bytes_up"].sum() + flows["bytes_down"].sum()) == int(pk["wire_len"].sum())
    assert run_tshark(tshark, run.pcap, "-o", "tcp.check_checksum:TRUE", "-o",
                      "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-Y",
                      f'({TSHARK_PROBLEMS}) || udp.checksum.status == "Bad"',
                      "-T", "fields", "-e", "frame.number").split() == []
    n_ib = run_tshark(tshark, run.pcap, "-Y", "infiniband", "-T", "fields", "-e", "frame.number")
    assert len(n_ib.split()) == int((pk["class"] == "kv_transfer").sum())


@pytest.mark.parametrize("overrides, key", [
    (["kv_transfer.path_mtu=4096", "network.mtu=1500"], "kv_transfer.path_mtu"),
    (["kv_transfer.path_mtu=1000"], "kv_transfer.path_mtu"),
    (["kv_transfer.model=\"gpt-5\""], "kv_transfer.model"),
    (["kv_transfer.model={layers=4, kv_heads=0, head_dim=64}"], "kv_transfer.model"),
    (["kv_transfer.decode_servers=\"10.62.0.1\""], "kv_transfer.decode_servers"),
    (["kv_transfer.link_rate=\"fast\""], "kv_transfer.link_rate"),
    (["kv_transfer.cache_hit_prob=1.5"], "kv_transfer.cache_hit_prob"),
])
def test_bad_values_are_one_line_errors_naming_the_key(overrides, key):
    with pytest.raises(tg.ConfigError) as e:
        tg.load_scenario("kv-transfer", overrides)
    assert e.value.key == key and "\n" not in str(e.value)


def test_defaults_stay_lab_sized():
    """The TOML's promise: a 10-minute capture at the defaults is a few GB on average."""
    sc = tg.load_scenario("kv-transfer")
    p = sc.kv_transfer
    d = draws(sc, 100_000)
    frames = lambda tok: tok * p.model.bytes_per_token * (1 + 72 / p.path_mtu)  # noqa: E731
    mean_gb = sc.duration_ns / 1e9 * p.rate * frames(d["uncached"]).mean() / 1e9
    assert sc.duration_ns == 600 * 10**9 and 2.5 < mean_gb < 4.0


# --- RTP and opaque UDP through schedule_from_packets and the encoder ----------------------


def test_rocev2_over_ipv6(tshark, tmp_path):
    """``network.ip = 6``: RoCEv2 over IPv6, its ICRC made again over the IPv6 header (checked
    by a plain zlib build and by scapy), the UDP checksum over it, tshark clean."""
    sc = tg.load_scenario("kv-transfer", {**KV_OVERRIDES, "network.ip": "6"}, duration="3s", seed=3)
    pcap = tmp_path / "v6.pcap"
    tg.generate(sc, pcap=pcap)
    with open(pcap, "rb") as fh:
        frames = [bytes(b) for _, b in dpkt.pcap.Reader(fh)]
    assert frames and all(f[12:14] == b"\x86\xdd" for f in frames)
    for k, f in enumerate(frames[:2000]):
        assert struct.unpack("<I", f[-4:])[0] == icrc_v6_of(f), f"frame {k + 1}: bad ICRC"
    bad = bytearray(frames[0])
    bad[80] ^= 1
    assert struct.unpack("<I", bad[-4:])[0] != icrc_v6_of(bytes(bad))
    from scapy.contrib.roce import BTH
    from scapy.layers.l2 import Ether
    for f in frames[:50]:
        p = Ether(f)
        stored = p[BTH].icrc
        p[BTH].icrc = None
        assert Ether(bytes(p))[BTH].icrc == stored
    out = run_tshark(tshark, pcap, "-o", "udp.check_checksum:TRUE", "-Y",
                     f'({TSHARK_PROBLEMS}) || udp.checksum.status == "Bad"', "-T", "fields",
                     "-e", "frame.number")
    assert out.split() == []
    assert len(run_tshark(tshark, pcap, "-Y", "infiniband && ipv6", "-T", "fields", "-e",
                          "frame.number").split()) == len(frames)
