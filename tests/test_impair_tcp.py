"""TCP on an impaired path (``[network.impair]``): tshark's TCP analysis of the capture agrees
with the packet table's truth (``retransmit``, ``lost``, ``gap``), the bytes do not depend on
windows, batches or workers, every frame dissects cleanly with right checksums, and a bulk
upload under random loss moves at the rate Mathis et al. predict (MSS / RTT x 1.22 / sqrt(p)).
The sweep over loss rates and the cost of impairments: bench/bench_impair.py."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import trafficgen as tg

from .helpers import TSHARK_CHECKSUMS, generate_run, run_tshark, seen_before

LOSSY = {"chat.rate": "12/s", "network.impair.loss": 0.02, "network.impair.before_tap": 0.5}
FIELDS = ("frame.number", "tcp.analysis.retransmission", "tcp.analysis.fast_retransmission",
          "tcp.analysis.spurious_retransmission", "tcp.analysis.out_of_order",
          "tcp.analysis.lost_segment", "tcp.analysis.ack_lost_segment", "_ws.malformed",
          "_ws.expert.message", "ip.checksum.status", "tcp.checksum.status")


@pytest.fixture(scope="module")
def lossy(tmp_path_factory):
    sc = tg.load_scenario("chat", LOSSY, duration="4s", seed=7)
    return generate_run(tmp_path_factory.mktemp("lossy"), sc)


def tshark_flags(tshark, pcap) -> pd.DataFrame:
    args = ["-T", "fields", "-E", "separator=|", "-E", "occurrence=a", *TSHARK_CHECKSUMS]
    for f in FIELDS:
        args += ["-e", f]
    out = run_tshark(tshark, pcap, *args)
    return pd.read_csv(io.StringIO(out), sep="|", header=None, names=FIELDS, dtype=str)


def steady_goodput(g) -> float | None:
    """An upload's goodput (bytes/s) over its second half, and after its first retransmission
    (the Mathis relation is congestion avoidance's: slow start's overshoot takes a few loss
    events to wear off), to its last data frame, over at least 1 MB; the bytes are the new ones
    (sequence space) sent in that span."""
    seq, n = g.seq.values.astype(np.int64), g.payload_len.values.astype(np.int64)
    end = np.maximum.accumulate(seq - seq[0] + n)
    first = np.flatnonzero(g.retransmit.values)
    if first.shape[0] == 0:
        return None
    k = max(first[0], int(np.searchsorted(end, end[-1] // 2)))
    span = end[-1] - end[k]
    if span < 1e6:
        return None
    return span / ((g.ts_ns.values[-1] - g.ts_ns.values[k]) / 1e9)


def test_tshark_agrees_with_the_truth_at_the_tap(lossy, tshark):
    t = pq.read_table(lossy.packets).to_pandas()
    c = tshark_flags(tshark, lossy.pcap)
    assert len(c) == len(t)
    has = {f: c[f].notna().values for f in FIELDS}
    retx = t.retransmit.values
    # losses happened on both sides of the tap, and were recovered
    assert retx.sum() > 50 and (t.lost == 1).sum() > 30 and t.gap.sum() > 30
    # tshark's retransmissions (plain, fast, spurious; and those it calls out-of-order: with no
    # reordering on the path, a hole's resend reaching the receiver's tap within the initial
    # RTT of the newest segment) are exactly the table's retransmissions of bytes the tap saw
    # before; a resend of bytes lost before the tap is new to tshark (a hole filled, its "gap")
    flagged = (has["tcp.analysis.retransmission"] | has["tcp.analysis.fast_retransmission"]
               | has["tcp.analysis.spurious_retransmission"] | has["tcp.analysis.out_of_order"])
    seen = seen_before(t)
    np.testing.assert_array_equal(flagged, retx & seen)
    assert (retx & ~seen).sum() <= t.gap[retx & ~seen].sum() + 2
    # "previous segment not captured" only where the table has a loss before the tap
    lost_seg = has["tcp.analysis.lost_segment"]
    assert lost_seg.sum() > 20 and not (lost_seg & ~t.gap.values).any()
    assert not has["tcp.analysis.ack_lost_segment"].any()
    # a frame lost after the tap is captured once and its bytes come again later
    assert t.retransmit[t.lost == 1].mean() < 0.5


def test_the_tables_add_up_to_the_capture(lossy):
    """Frames lost before the tap are in no table; the flow rows count the captured ones."""
    t = pq.read_table(lossy.packets).to_pandas()
    f = pq.read_table(lossy.flows).to_pandas().set_index("flow_id")
    per = t.groupby("flow_id").wire_len.sum()
    assert (per == (f.bytes_up + f.bytes_down)[per.index]).all()
    assert len(t) == (f.packets_up + f.packets_down).sum() == lossy.report["packets"]


def test_inspect_stats_report_retransmissions_and_losses(lossy):
    from trafficgen.analysis.report import inspect_file
    t = pq.read_table(lossy.packets).to_pandas()
    r = inspect_file(lossy.packets, stats=True)["stats"]["chat"]
    data = t.payload_len > 0
    assert r["data_frames"] == data.sum() and r["retransmits"] == (data & t.retransmit).sum()
    assert r["lost_after_tap"] == (t.lost == 1).sum() and r["gaps"] == t.gap.sum()
    # half the losses fall after the tap: about 1% of the frames, of the 2% configured
    assert 0.006 < r["lost_after_tap"] / r["frames"] < 0.014
    assert 0.01 < r["loss_rate"] < 0.025


def test_an_impaired_capture_dissects_cleanly(lossy, tshark):
    """No malformed frame and every checksum right. tshark's reassembly notes an overlap
    ("New fragment overlaps old data") where a TLS record's resent segment comes back inside
    it: that is a retransmission it has flagged itself, not a broken frame."""
    c = tshark_flags(tshark, lossy.pcap)
    t = pq.read_table(lossy.packets).to_pandas()
    bad = c["_ws.malformed"].notna().values
    overlap = c["_ws.expert.message"].fillna("").str.contains("New fragment overlaps old data").values
    assert not (bad & ~(overlap & t.retransmit.values)).any()
    for col in ("ip.checksum.status", "tcp.checksum.status"):
        assert set(c[col].dropna()) == {"1"}, col  # 1: good (0 bad, 2 unverified)


def test_the_same_bytes_for_any_window_batch_or_workers(tmp_path):
    sc = tg.load_scenario("chat", {**LOSSY, "network.impair.burst": 3, "network.impair.reorder": 0.02,
                                   "network.impair.duplicate": 0.01, "network.impair.jitter": "1ms"},
                          duration="3s", seed=3)
    ref, ref_p = tmp_path / "ref.pcap", tmp_path / "ref.parquet"
    tg.generate(sc, pcap=ref, packets=ref_p)
    ref_t = pq.read_table(ref_p)
    for col in ("retransmit", "reordered", "duplicate"):
        assert ref_t.column(col).to_numpy().sum() > 10, col
    for i, kw in enumerate(({"window": "1s", "batch_packets": 333}, {"workers": 2})):
        again = tmp_path / f"again{i}.pcap"
        tg.generate(sc, pcap=again, **kw)
        assert again.read_bytes() == ref.read_bytes(), kw


def mathis_ratios(packets, flows, p: float) -> list[float]:
    """Per upload (a flow's up data segments) in the packet and flow tables at ``packets`` and
    ``flows``: its steady goodput over MSS / RTT x 1.22 / sqrt(p) (``bench/bench_impair.py``
    measures with it too)."""
    t = pq.read_table(packets).to_pandas()
    f = pq.read_table(flows).to_pandas().set_index("flow_id")
    ratios = []
    for fid, g in t[(t.direction == "up") & (t.payload_len > 1000)].groupby("flow_id"):
        goodput = steady_goodput(g)
        if goodput is None:
            continue
        n = g.payload_len.values
        ratios.append(goodput / (np.median(n) / (f.rtt_ns[fid] / 1e9) * 1.22 / np.sqrt(p)))
    return ratios


def test_a_bulk_upload_moves_at_the_mathis_rate(tmp_path):
    """4 MB image uploads over a 40 ms path losing 2% of packets: goodput (new bytes over
    time after slow start's first loss, from the capture) within 30% of MSS / RTT x 1.22 /
    sqrt(p)."""
    p = 0.02
    sc = tg.load_scenario("multimodal", {
        "multimodal.rate": "0.5/s", "multimodal.voice_rate": 0, "multimodal.video_rate": 0,
        "multimodal.images": 1, "multimodal.image_bytes": "4MB", "topology.rtt": "40ms",
        "network.impair.loss": p}, duration="12s", seed=2)
    run = generate_run(tmp_path, sc, pcap=False)
    ratios = mathis_ratios(run.packets, run.flows, p)
    assert len(ratios) >= 3
    assert 0.7 < np.median(ratios) < 1.3, ratios
