"""Trace-driven sessions: the chat kernels' plan, with each turn's time and tokens given.

``plan`` sizes the turns of sessions whose turn times (ns) and prompt and output tokens come
from a trace, drawing everything else (time to first token, the reasoning share) with the same
draw indices as ``kernels.chat.plan`` uses, so ``kernels.chat.fill`` then builds them as usual.
``paths`` gives each session's path RTT exactly as ``fill`` will (for how early a connection
must open). ``kv_uncached``: a transfer's uncached tokens from the trace's cached prefix, or,
where the trace has none, from the scenario's prefix-cache model (``kernels.kv.draw``'s draws).
"""
import numpy as np

from .chat import keepalives, s_turns_of, session_path, turn_extras
from .jit import kernel
from .kv import D_HIT, D_NEW
from .rng import uniform
from .sampling import sample


@kernel
def paths(s_key, paths, out_rtt):
    """Per session: the RTT (ns) of its client-server path (``chat.Paths``), as
    ``kernels.chat.fill`` draws it."""
    for s in range(s_key.shape[0]):
        _, _, rtt = session_path(s_key[s], paths)
        out_rtt[s] = max(rtt, np.int64(2))


@kernel
def plan(s_key, s_turn0, p, t, s_kept, s_conns, s_writes):
    """Per turn (``t.at`` its request time, ``t.out`` its output tokens, int64[T]; ``t`` a
    ``chat.Turns``): the draws (``p``, ``chat.ChatParams``: its ``images`` the constant 0) and
    whether it opens a connection (the first turn, or one more than ``keepalive`` after the
    turn before); every turn is kept. Per session: kept turns, connections, writes."""
    mean_gap, keepalive, tokens_per_chunk = p.mean_gap, p.keepalive, p.tokens_per_chunk
    setup_writes, keepalive_every = p.setup_writes, p.keepalive_every
    ttft_p, reason_p, no_images = p.ttft, p.reason, p.images
    r_think, _, t_out, r_ttft, r_reason, r_images, t_at, r_keep, r_new = t
    for s in range(s_key.shape[0]):
        k_s = s_key[s]
        conns = writes = 0
        nt = s_turns_of(s_turn0, s, t_at.shape[0])
        for k in range(nt):
            r = s_turn0[s] + k
            think = t_at[r] - t_at[r - 1] if k > 0 else np.int64(0)
            out = t_out[r]
            reason = 0
            if out > 1:
                reason, _ = turn_extras(k_s, k, out, reason_p, no_images)
            r_think[r] = think
            r_ttft[r] = np.int64(sample(ttft_p, uniform(k_s, 16 + 8 * k + 3)))
            r_reason[r], r_images[r] = reason, 0
            r_keep[r] = True
            r_new[r] = k == 0 or think > keepalive
            if r_new[r]:
                conns += 1
                writes += setup_writes
            writes += 2 + (out - reason + tokens_per_chunk - 1) // tokens_per_chunk
            writes += keepalives(reason, mean_gap, keepalive_every)
        s_kept[s], s_conns[s], s_writes[s] = nt, conns, writes


@kernel
def kv_uncached(keys, prompt, cached, prefix, hit_prob, hit_new, out):
    """Uncached tokens (>= 1) per transfer: the prompt minus the trace's cached prefix where it
    has one (``cached`` >= 0); else as the scenario's model draws it (every prompt's first
    ``prefix`` tokens cached, with ``hit_prob`` a hit leaving ``hit_new`` tokens to prefill)."""
    for t in range(keys.shape[0]):
        p = prompt[t]
        if cached[t] >= 0:
            fresh = p - cached[t]
        else:
            k = keys[t]
            fresh = p - prefix
            if uniform(k, D_HIT) < hit_prob:
                fresh = min(fresh, int(round(sample(hit_new, uniform(k, D_NEW)))))
        out[t] = max(1, fresh)
