"""RoCEv2 under congestion and loss (``[network.impair]`` ecn, loss, burst, before_tap for
kv_transfer; kernels/roce.py), read back by tshark and by hand: every CNP and NAK dissected, the
ICRC and checksums right, CNPs paced per QP, the sender slower after each CNP (measured from the
capture), go-back-N after each NAK with the resends flagged ``retransmit``, the same bytes for
any window, batch or worker count, and nothing changed without ecn or loss.
"""
from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest

import trafficgen as tg
from trafficgen.kernels import udp as ku
from trafficgen.schema import STATUS_CODE

from .helpers import icrc_of, ones_complement_sum, run_tshark
from .kvcase import KV_OVERRIDES, digest, frames_of, icrc_v6_of, kv_scenario, table

IMPAIR = {"ecn": 0.05, "loss": 0.02, "burst": 1.5, "before_tap": 0.5}
# long messages on a 10 Gb/s link, all ready at once: the sender is busy for milliseconds, so
# its rate around each CNP shows in the capture
RATE_OVERRIDES = {**KV_OVERRIDES, "kv_transfer.link_rate": "10Gbps", "kv_transfer.rate": "4/s",
                  "kv_transfer.prompt_tokens": {"median": 3000, "p90": 4000, "min": 2000,
                                                "max": 6000},
                  "kv_transfer.cache_hit_prob": 0, "kv_transfer.prefill_rate": 0,
                  "network.impair": {"ecn": 0.01}}


def impaired_scenario(**extra):
    return kv_scenario(**{"network.impair": IMPAIR}, **extra)


@pytest.fixture(scope="module")
def run(make_run, tmp_path_factory):
    r = make_run(tmp_path_factory.mktemp("roce_impair"), impaired_scenario())
    pk = table(r.packets)
    assert (pk["tcp_flags"] == ku.OP_CNP).sum() >= 10 and pk["retransmit"].sum() >= 10
    assert pk["lost"].sum() >= 3
    return r


@pytest.fixture(scope="module")
def rate_run(make_run, tmp_path_factory):
    sc = tg.load_scenario("kv-transfer", RATE_OVERRIDES, duration="1s", seed=5)
    return make_run(tmp_path_factory.mktemp("roce_rate"), sc)


def test_icrc_checksums_and_ecn_bits(run):
    pk = table(run.packets)
    frames = frames_of(run.pcap)
    assert len(frames) == len(pk["ts_ns"])
    ce = 0
    for k, (_ts, f) in enumerate(frames):
        assert struct.unpack("<I", f[-4:])[0] == icrc_of(f), f"frame {k + 1}: bad ICRC"
        assert ones_complement_sum(f[14:34]) == 0xFFFF, f"frame {k + 1}: bad IPv4 checksum"
        pseudo = f[26:34] + struct.pack("!BBH", 0, 17, len(f) - 34)
        assert ones_complement_sum(pseudo + f[34:]) == 0xFFFF, f"frame {k + 1}: bad UDP checksum"
        op = f[42]
        if op == ku.OP_CNP:
            assert f[15] == ku.CNP_TOS and f[46] == 0x40 and f[54:70] == bytes(16)
        elif pk["direction"][k] == "up":  # data: ECT(0), or CE where marked
            assert f[15] >> 2 == 26 and f[15] & 3 in (2, 3)
            ce += f[15] & 3 == 3
    n_data = int((pk["direction"] == "up").sum())
    assert 0.02 * n_data < ce < 0.1 * n_data  # about the share asked, 5%


def tshark_rows(tshark, path):
    out = run_tshark(tshark, path, "-T", "fields", "-E", "separator=,", "-E", "occurrence=f",
                     "-e", "infiniband.bth.opcode", "-e", "infiniband.bth.destqp",
                     "-e", "infiniband.bth.psn", "-e", "infiniband.aeth.syndrome",
                     "-e", "ip.dsfield.ecn")
    return [line.split(",") for line in out.splitlines()]


def test_tshark_dissects_every_cnp_and_nak(tshark, run):
    problems = run_tshark(tshark, run.pcap, "-o", "udp.check_checksum:TRUE",
                          "-o", "ip.check_checksum:TRUE", "-Y",
                          '_ws.malformed || _ws.expert.severity >= warning || !infiniband || '
                          'ip.checksum.status == "Bad" || udp.checksum.status == "Bad"',
                          "-T", "fields", "-e", "frame.number")
    assert problems.split() == []
    pk = table(run.packets)
    rows = tshark_rows(tshark, run.pcap)
    assert len(rows) == len(pk["ts_ns"])
    ack_qp, cnps, naks = {}, 0, 0
    last_cnp: dict[int, int] = {}
    ce_in: dict[int, int] = {}  # flow -> CE-marked data delivered since its last CNP
    for i, (op, qp, psn, syn, ecn) in enumerate(rows):
        op, f, t = int(op), int(pk["flow_id"][i]), int(pk["ts_ns"][i])
        assert op == pk["tcp_flags"][i] and int(psn) == pk["seq"][i]
        if pk["direction"][i] == "up":
            if ecn == "3" and not pk["lost"][i]:
                ce_in[f] = ce_in.get(f, 0) + 1
            continue
        if op == ku.OP_ACK:
            assert ack_qp.setdefault(f, qp) == qp  # the sender's QP
            if int(syn, 16 if syn.startswith("0x") else 10) == ku.AETH_NAK_PSN:
                naks += 1
            continue
        assert op == ku.OP_CNP  # (BECN and the reserved bytes: test_icrc_checksums_and_ecn_bits)
        cnps += 1
        assert ce_in.pop(f, 0) >= 1  # answers a CE-marked packet that came in
        assert t - last_cnp.get(f, -10**12) >= 50_000 - 1  # at most one per 50 us per QP
        last_cnp[f] = t
        assert ack_qp.get(f, qp) == qp
    assert cnps == (pk["tcp_flags"] == ku.OP_CNP).sum() >= 10 and naks >= 3
    for f, qp in ack_qp.items():  # CNPs go to the same QP as the flow's ACKs
        cnp_qps = {r[1] for i, r in enumerate(rows) if int(r[0]) == ku.OP_CNP and pk["flow_id"][i] == f}
        assert cnp_qps <= {qp}


def test_go_back_n_after_each_nak_and_the_retransmit_flag(tshark, run):
    pk = table(run.packets)
    rows = tshark_rows(tshark, run.pcap)
    data = pk["direction"] == "up"
    checked = gaps = 0
    for f in np.unique(pk["flow_id"]):
        idx = np.flatnonzero(pk["flow_id"] == f)
        sent_max = -1
        first = int(pk["seq"][idx[data[idx]][0]])
        for i in idx:  # a PSN at or under one captured before is a resend, flagged; one past a
            if data[i]:  # hole in the PSNs captured so far is a gap (lost before the tap)
                psn = (int(pk["seq"][i]) - first) & 0xFFFFFF
                if psn <= sent_max:
                    assert pk["retransmit"][i], f"frame {i + 1}: a resend not flagged"
                assert pk["gap"][i] == (psn > sent_max + 1), f"frame {i + 1}: gap"
                gaps += bool(pk["gap"][i])
                sent_max = max(sent_max, psn)
        for i in idx:
            if data[i] or int(rows[i][0]) != ku.OP_ACK or rows[i][3] in ("", "0x1f", "31"):
                continue
            x, t = int(pk["seq"][i]), int(pk["ts_ns"][i])  # a NAK: PSN x expected
            later = [j for j in idx if data[j] and pk["ts_ns"][j] >= t]
            assert later, f"frame {i + 1}: no resend after the NAK"
            k = next(n for n, j in enumerate(later) if pk["seq"][j] == x)
            assert k <= 2 and pk["retransmit"][later[k]]  # back to x, at once
            psns = [int(pk["seq"][j]) for j in later[k:k + 6]]
            assert all(b > a for a, b in zip(psns, psns[1:])), psns  # and on from there
            checked += 1
    assert checked >= 3 and gaps >= 2
    assert pk["retransmit"][~data].sum() == 0 and pk["lost"][~data].sum() == 0
    assert pk["gap"][~data].sum() == 0


def rate_ratios(pk, window_ns):
    """Per CNP of a QP busy on both sides: its data packets in the window after / before."""
    out = []
    for f in np.unique(pk["flow_id"]):
        g = pk["flow_id"] == f
        up = pk["ts_ns"][g & (pk["direction"] == "up")]
        for tc in pk["ts_ns"][g & (pk["tcp_flags"] == ku.OP_CNP)]:
            if up[0] > tc - window_ns or up[-1] < tc + window_ns:
                continue
            before = ((up >= tc - window_ns) & (up < tc)).sum()
            after = ((up >= tc) & (up < tc + window_ns)).sum()
            out.append(after / before)
    return np.array(out)


def test_sender_rate_drops_after_each_cnp(rate_run):
    """At the prefill-side tap a CNP is seen when it reaches the sender, which cuts its rate
    there: its WRITEs in the 50 (and 100) us after are fewer than in as long before."""
    pk = table(rate_run.packets)
    for w in (50_000, 100_000):
        r = rate_ratios(pk, w)
        assert len(r) >= 10, w
        assert (r < 0.9).all() and np.median(r) < 0.8, (w, np.sort(r))
    # control: the same measure at times between CNPs finds no such drop
    ctl = pk.copy()
    ctl["ts_ns"] = np.where(ctl["tcp_flags"] == ku.OP_CNP, ctl["ts_ns"] - 25_000, ctl["ts_ns"])
    assert np.median(rate_ratios(ctl, 20_000)) > 0.9


def test_same_bytes_whatever_the_window_batch_or_workers(run, tmp_path):
    sc = impaired_scenario()
    base = digest(sc)
    assert digest(sc, window_ns=300_000_000, batch_packets=777) == base
    ref = hashlib.sha256(run.pcap.read_bytes()).hexdigest()
    tg.generate(sc, pcap=tmp_path / "w.pcap", workers=2)
    assert hashlib.sha256((tmp_path / "w.pcap").read_bytes()).hexdigest() == ref
    assert digest(tg.load_scenario(sc, seed=6)) != base


def test_no_ecn_or_loss_no_change():
    """Impairments of other classes, or none that touch RoCE, leave the transfers as they were."""
    other = kv_scenario(**{"network.impair": {"loss": {"chat": 0.1}, "before_tap": 0.5}})
    assert digest(other) == digest(kv_scenario())


def test_retries_exhausted_end_the_transfer():
    """Losses in long bursts: resends lost while the responder waits for them time out, and
    after RETRY_CNT timeouts at one PSN the QP is in error: the transfer stops there (its rows
    bounded, its request's status "error"), the others go on and complete."""
    from trafficgen.kernels.roce import RETRY_CNT
    sc = kv_scenario(**{"network.impair": {"loss": 0.3, "burst": 200}})
    bs = list(tg.batches(sc, frames=False))
    p = np.concatenate([b.packets for b in bs])
    req = np.concatenate([b.requests for b in bs])
    error = req["flow_id"][req["status"] == STATUS_CODE["error"]]
    assert set(np.unique(req["status"])) <= {STATUS_CODE["error"], STATUS_CODE["completed"]}
    up, acks = p[p["direction"] == 0], p[(p["tcp_flags"] == ku.OP_ACK) & (p["segoff"] == 0)]
    ended = done = 0
    for f in np.unique(up["flow_id"]):
        psn = up["seq"][up["flow_id"] == f].astype(np.int64)
        span = int(psn.max() - psn.min() + 1)
        assert len(psn) <= (RETRY_CNT + 2) * span + 64  # bounded
        acked = acks["seq"][acks["flow_id"] == f].astype(np.int64)
        if acked.size and acked.max() == psn.max():
            done += 1
            assert f not in error  # its request completed
            continue
        # never acknowledged to its end: one PSN past the last ACK tried 1 + 7 times, and its
        # request ended in error
        ended += 1
        assert f in error
        after = psn[psn > (acked.max() if acked.size else -1)]
        assert np.bincount(after - after.min()).max() >= RETRY_CNT + 1
    assert ended >= 1 and done >= 1


def test_ce_marks_and_cnps_over_ipv6_with_a_dscp(tshark, run, tmp_path):
    """Rewritten into IPv6 with the class's own DSCP, the frames keep their CE marks (the same
    frames as in IPv4), and the ICRC made again over IPv6 is right."""
    sc = impaired_scenario(**{"network.ip": "6", "network.dscp": {"kv_transfer": 26},
                              "network.ecn": {"kv_transfer": "ect0"}})
    pcap = tmp_path / "v6.pcap"
    tg.generate(sc, pcap=pcap)
    v4 = [f[15] & 3 == 3 for _ts, f in frames_of(run.pcap)]
    frames = [f for _ts, f in frames_of(pcap)]
    assert len(frames) == len(v4) and all(f[12:14] == b"\x86\xdd" for f in frames)
    v6 = [((f[14] & 0x0F) << 4 | f[15] >> 4) & 3 == 3 for f in frames]
    assert v6 == v4 and sum(v6) >= 10
    for k, f in enumerate(frames):
        assert struct.unpack("<I", f[-4:])[0] == icrc_v6_of(f), f"frame {k + 1}: bad ICRC"
    out = run_tshark(tshark, pcap, "-o", "udp.check_checksum:TRUE", "-Y",
                     '_ws.malformed || _ws.expert.severity >= warning || !infiniband || '
                     'udp.checksum.status == "Bad"', "-T", "fields", "-e", "frame.number")
    assert out.split() == []


def test_loss_share_and_bursts_as_configured():
    """All losses after the tap (every one in the table): their share of the WRITEs sent is
    ``loss`` and their runs, in each QP's sending order, are ``burst`` long on average."""
    over = {**RATE_OVERRIDES, "network.impair": {"loss": 0.02, "burst": 3}}
    sc = tg.load_scenario("kv-transfer", over, duration="1s", seed=5)
    p = np.concatenate([b.packets for b in tg.batches(sc, frames=False)])
    up = p[p["direction"] == 0]
    lost = up["lost"].astype(bool)
    assert up.shape[0] > 5000 and 0.014 < lost.mean() < 0.026, lost.mean()
    runs = []
    for f in np.unique(up["flow_id"]):
        x = np.r_[False, lost[up["flow_id"] == f], False].astype(np.int8)
        d = np.diff(x)
        runs += list(np.flatnonzero(d == -1) - np.flatnonzero(d == 1))
    assert len(runs) > 20 and 2.2 < np.mean(runs) < 3.9, np.mean(runs)
