"""Python side of the kv_transfer flow class: prefill-to-decode KV-cache transfers over RoCEv2.

One transfer per request of a disaggregated server (Mooncake, DistServe, Splitwise): the
prefill server writes the KV cache of the prompt's uncached tokens into the decode server's
memory with RDMA WRITEs on a reliable-connected QP of its own (one flow: prefill -> decode, UDP
to 4791, the source port as the RoCE entropy), one message per ``layers_per_message`` layers,
each as soon as prefill has computed its layers (``prefill_rate``) and paced at the link rate;
the decode server's coalesced ACKs come back on the same flow.

Transfers arrive per fixed 60 s block (``arrivals.BLOCK_NS``); every draw comes from keys of
(seed, class, block, transfer index), so any window is generated alone with the same result.
A transfer that starts in a window is generated whole there (the engine holds its later
packets). Transfers that would start before the capture are not made (they last milliseconds
to about a second), so ``warmup_ns`` is 0.

With ``[network.impair]`` giving the class an ``ecn`` share or a ``loss``, the transfers go
through ``kernels.roce`` instead (CE marks, CNPs and DCQCN; NAKs and go-back-N resends; the
packet table's ``retransmit``, ``lost`` and ``gap``); without, through ``kernels.kv`` as ever.

Request rows (kind ``kv_transfer``): ``prompt_tokens`` the request's prompt, ``output_tokens``
the tokens whose KV is sent (prompt minus its cached prefix; bytes written = output_tokens x
the model's KV bytes per token), ``start_ns``/``end_ns`` the first WRITE and the last ACK,
``first_byte_ns`` the first ACK, ``client_id`` the prefill server's index in its pool; the
other labels are 0 (``tool_call`` -1).
"""
from __future__ import annotations

import numpy as np

from trafficgen.config.impair import impair_for
from trafficgen.config.scenario import Scenario
from trafficgen.kernels import kv as kk
from trafficgen.kernels import roce
from trafficgen.kernels.rng import key_of
from trafficgen.kernels.udp import ROCE_PORT
from trafficgen.schema import CLASS_CODE, KIND_CODE, SCHED_DTYPE, STATUS_CODE

from .common import EpochSchedule, SessionModel
from .udp import EmptyTemplates, schedule_from_packets

ACK_TURNAROUND_NS = 1_000  # a responder NIC's ACK turnaround, seen at the decode side (est)
# DCQCN's rate steps (Zhu et al. 2015: R_AI 40 Mb/s; hyper increase 10 x as ConnectX's
# rpg_hai_rate is to rpg_ai_rate) and least rate (a floor of our own, est)
DCQCN_AI_BPS, DCQCN_HAI_BPS, DCQCN_MIN_SHARE = 40e6, 400e6, 0.01


def roce_impairments(scenario: Scenario, cls: str, p) -> roce.Impair | None:
    """The class's ``[network.impair]`` as the RoCE kernel takes it (``kernels.roce``), or None
    without a loss or an ECN share (the transfers as before, byte for byte). The loss chain of
    mean burst b at stationary loss p: lost after a delivered packet with q = p (1 - r) /
    (1 - p), after a lost one with r = max(p, 1 - 1/b) (b = 1: Bernoulli)."""
    imp = impair_for(scenario, cls)
    if not imp.loss and not imp.ecn:
        return None
    loss = imp.loss
    stay = max(loss, 1.0 - 1.0 / imp.burst)
    first = loss * (1.0 - stay) / (1.0 - loss)
    return roce.Impair(p_first=first, p_next=stay, before_tap=imp.before_tap, ecn=imp.ecn,
                       rtt_ns=float(p.rtt), ai=DCQCN_AI_BPS / p.link_rate,
                       hai=DCQCN_HAI_BPS / p.link_rate, min_frac=DCQCN_MIN_SHARE)


class KVTransferModel(SessionModel):
    """Prepared parameters of the kv_transfer class for one scenario."""

    def __init__(self, scenario: Scenario, cls: str = "kv_transfer", layout_base: int = 0):
        p = getattr(scenario, cls)
        self.scenario, self.cls, self.params = scenario, cls, p
        self.class_id = CLASS_CODE[cls]
        self.key = key_of(scenario.seed, self.class_id)
        self.levels_key = key_of(scenario.seed, self.class_id, 0xB0257)
        self.session_rate_per_ns = p.rate / 1e9  # a transfer is a session of one request
        self.dists = {k: getattr(p, k).params() for k in ("prompt_tokens", "hit_uncached_tokens")}
        self.ns_per_byte = 8e9 / p.link_rate
        # prefill compute per token per layer: a layer's KV is ready this long after the last
        self.layer_ns_per_token = 1e9 / p.prefill_rate / p.model.layers if p.prefill_rate else 0.0
        # client-side capture (at the prefill server): an ACK is seen a round trip after the
        # WRITE it acknowledges; server-side: right after the WRITE arrives
        self.ack_lag_ns = p.rtt if scenario.topology.side(cls) == 0 else ACK_TURNAROUND_NS
        self.prefill = np.asarray(p.prefill_servers, np.int64)
        self.decode = np.asarray(p.decode_servers, np.int64)
        self.templates = EmptyTemplates()
        self.warmup_ns = 0
        self.transfers = kk.Transfers(
            layer_bytes=p.model.layer_bytes, layers=p.model.layers, per_msg=p.layers_per_message,
            pmtu=p.path_mtu, ack_every=p.ack_every, ns_per_byte=self.ns_per_byte,
            layer_ns_per_token=self.layer_ns_per_token, ack_lag_ns=self.ack_lag_ns,
            class_id=self.class_id)
        self.impair = roce_impairments(scenario, cls, p)

    def draws(self, keys: np.ndarray) -> dict:
        """Per transfer: ``prompt``, ``uncached`` tokens and ``prefill``/``decode`` indexes."""
        n, p = keys.shape[0], self.params
        out = {k: np.empty(n, np.int64) for k in ("prompt", "uncached", "prefill", "decode")}
        kk.draw(keys, self.dists["prompt_tokens"], p.shared_prefix_tokens, p.cache_hit_prob,
                self.dists["hit_uncached_tokens"], self.prefill.shape[0], self.decode.shape[0],
                out["prompt"], out["uncached"], out["prefill"], out["decode"])
        return out

    def window(self, t0: int, t1: int) -> EpochSchedule:
        """Every flow, request and packet of the transfers that start in [t0, t1)."""
        keys, starts = self.sessions(t0, t1)
        return self.build(keys, starts, self.draws(keys))

    def build(self, keys: np.ndarray, starts: np.ndarray, d: dict) -> EpochSchedule:
        """The packets, flows and requests of transfers given their keys, start times and
        ``draws``."""
        n = keys.shape[0]
        rows, failed = np.empty(n, np.int64), np.zeros(n, np.int64)
        if self.impair is None:
            total = kk.count(d["uncached"], self.transfers, rows)
        else:  # the impaired transfers run twice: their row counts, then their rows
            total = roce.simulate(keys, starts, d["uncached"], self.transfers, self.impair, rows,
                                  np.zeros(0, SCHED_DTYPE), 0, failed)
        row0 = np.zeros(n, np.int64)
        np.cumsum(rows[:-1], out=row0[1:])
        pk = np.zeros(total, SCHED_DTYPE)
        if self.impair is None:
            kk.fill(keys, starts, d["uncached"], row0, self.transfers, pk)
        else:
            roce.simulate(keys, starts, d["uncached"], self.transfers, self.impair, row0, pk, 1,
                          failed)
        ids = np.arange(n)
        flows = {"session": ids, "src_ip": self.prefill[d["prefill"]],
                 "dst_ip": self.decode[d["decode"]], "dst_port": np.full(n, ROCE_PORT),
                 "client_id": d["prefill"]}
        requests = {"flow": ids, "session": ids, "kind": KIND_CODE["kv_transfer"],
                    "prompt_tokens": d["prompt"], "output_tokens": d["uncached"],
                    "client_id": d["prefill"],
                    # a QP in error (retries exhausted) never completes its transfer
                    "status": np.where(failed > 0, STATUS_CODE["error"], STATUS_CODE["completed"])}
        return schedule_from_packets(self.scenario.start_ns, self.class_id, pk, flows, requests, n)
