"""Per-entry bookkeeping of jagged collections (numba): the event of every entry and its index within the event.

Imported by :class:`dataformats.products.JaggedCollection` on first use (numba is not needed to import products).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _event_index(offsets):
    """(event, index within its event, True) of every entry; (empty, empty, False) for decreasing offsets."""
    n_events = offsets.shape[0] - 1
    for e in range(n_events):
        if offsets[e + 1] < offsets[e]:
            return np.empty(0, np.int64), np.empty(0, np.int32), False
    base = offsets[0] if n_events >= 0 else 0
    n = offsets[n_events] - base if n_events >= 0 else 0
    event = np.empty(n, np.int64)
    local = np.empty(n, np.int32)
    for e in range(n_events):
        for j in range(offsets[e], offsets[e + 1]):
            event[j - base] = e
            local[j - base] = j - offsets[e]
    return event, local, True


def event_and_local_index(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(event int64, index within its event int32) of every entry of a collection with ``offsets`` [n_events + 1]
    (any start), in one loop instead of numpy's repeat, arange and gather (~10 us less for one event's jets);
    ValueError for decreasing offsets."""
    event, local, ok = _event_index(np.ascontiguousarray(offsets, dtype=np.int64))
    if not ok:
        raise ValueError("offsets must be non-decreasing")
    return event, local
