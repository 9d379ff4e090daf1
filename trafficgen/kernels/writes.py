"""Small pieces the chat-shaped kernels share (``kernels.chat``, ``kernels.failures``,
``kernels.chain``, ``kernels.media``): one write's row, one token's gap, and a client's latest
earlier session (``classes.chat.ClientHistory``)."""
import numpy as np

from .jit import inline, kernel
from .rng import uniform
from .sampling import sample
from .tcp import WF_BYTES, WF_DELAY, WF_DEP, WF_DIR, WF_FLAGS, WF_LAYOUT, WF_PHASE, WF_REQ


@inline
def token_time(k_t, idx, itl_p, stall_prob, stall_p):
    """Gap before token ``idx`` (>= 1) of a turn: an inter-token gap, or now and then a stall."""
    if uniform(k_t, 3 * idx + 1) < stall_prob:
        return np.int64(sample(stall_p, uniform(k_t, 3 * idx + 2)))
    return np.int64(sample(itl_p, uniform(k_t, 3 * idx)))


@kernel
def latest_in_blocks(cs, ts, offs, qc, qt, lifetime, none, out):
    """For each query (client ``qc[i]``, time ``qt[i]``): the latest time of ``ts`` before it
    of the same client within ``lifetime`` (``none`` if there is none). Blocks ``k`` are
    ``[offs[k], offs[k + 1])`` in time order, each sorted by client, then time: searched from
    the newest back, the first that has the client before the query's time has its latest."""
    n_blocks = offs.shape[0] - 1
    for i in range(qc.shape[0]):
        c, t = qc[i], qt[i]
        out[i] = none
        for k in range(n_blocks - 1, -1, -1):
            a, b = offs[k], offs[k + 1]
            lo, hi = a, b
            while lo < hi:
                mid = (lo + hi) // 2
                if cs[mid] < c or (cs[mid] == c and ts[mid] < t):
                    lo = mid + 1
                else:
                    hi = mid
            j = lo - 1
            if j >= a and cs[j] == c:
                if t - ts[j] < lifetime:
                    out[i] = ts[j]
                break


@inline
def put_write(w, d, nbytes, dep, delay, req, phase, flags, layout, wd):
    wd[w, WF_DIR], wd[w, WF_BYTES], wd[w, WF_DEP], wd[w, WF_DELAY] = d, nbytes, dep, delay
    wd[w, WF_REQ], wd[w, WF_PHASE], wd[w, WF_FLAGS], wd[w, WF_LAYOUT] = req, phase, flags, layout
    return w + 1
