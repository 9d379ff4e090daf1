"""Ordering kernels: merging sorted packet runs into one total order."""
import numpy as np
from numba import njit


@njit(cache=True)
def merge_index(ts_a, ts_b, out):
    """Merge two ts-sorted runs; ``out[k]`` is i (< len(a)) or len(a) + j. Ties take ``a``
    first, so when every flow in ``a`` has a lower id than those in ``b`` the result is ordered
    by (ts, flow_id, packet order)."""
    na, nb = ts_a.shape[0], ts_b.shape[0]
    i = j = k = 0
    while i < na and j < nb:
        if ts_a[i] <= ts_b[j]:
            out[k] = i
            i += 1
        else:
            out[k] = na + j
            j += 1
        k += 1
    while i < na:
        out[k] = i
        i += 1
        k += 1
    while j < nb:
        out[k] = na + j
        j += 1
        k += 1
