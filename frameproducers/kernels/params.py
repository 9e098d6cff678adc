"""The scalar settings of the frame kernels: one numpy record that numba reads by field name.

A kernel takes a one-element :data:`FRAME_PARAM_DTYPE` array ``par`` (numba passes an array into ``prange``
loops, a bare record it does not) and reads ``par[0].<field>`` once, before its loops. Each public function
fills the fields it uses (:func:`frame_params`); the others stay 0 / False.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from numba import get_num_threads, set_num_threads

FRAME_PARAM_FIELDS: tuple[tuple[str, type], ...] = (
    # jet window (images, graph nodes)
    ("window", np.int64),  # W: window size in crystals (W x W pixels centred on the seed, h = W // 2)
    ("dz_max", np.float64),  # cm: tracks with |dz| < dz_max are from the primary vertex (d0/dz channels, shapes)
    ("hcal_upsample", np.bool_),  # HCAL tower -> its 5 x 5 crystals at E/25; False: all of E to the centre one
    ("coordinates", np.bool_),  # graph nodes: append (delta_eta, delta_phi [rad]) to the features
    # graph edges
    ("k", np.int64),  # neighbours per node (kNN); the most kept per node (radius)
    ("self_loops", np.bool_),  # a node is one of its own candidates (distance 0)
    ("brute_force", np.bool_),  # pixel kNN: all pairs and a full sort per node (the benchmark baseline)
    ("radius2", np.int64),  # radius graphs: squared radius in pixels, floor(radius^2) (integer distances)
    # jet shapes
    ("cone", np.float64),  # jet cone radius dR
    ("core", np.float64),  # core radius dR
    ("track_pt_min", np.float64),  # GeV: tracks counted need pT above this
    ("d0sig_min", np.float64),  # displaced tracks: |d0 / sigma(d0)| above this
)
FRAME_PARAM_DTYPE = np.dtype(list(FRAME_PARAM_FIELDS), align=True)
_NAMES = tuple(name for name, _ in FRAME_PARAM_FIELDS)


def frame_params(**values: float) -> np.ndarray:
    """A one-element :data:`FRAME_PARAM_DTYPE` array with the given fields set (the others 0 / False)."""
    par = np.zeros(1, FRAME_PARAM_DTYPE)
    for name, value in values.items():
        if name not in _NAMES:
            raise ValueError(f"'{name}' is not a field of FRAME_PARAM_DTYPE: {', '.join(_NAMES)}")
        par[name] = value
    return par


#: Fewer items (jets, graphs) than this run in the calling thread: waking numba's thread pool costs ~10-30 us on
#: a quiet machine and milliseconds when other processes hold the cores (measured: 8 ms per launch with 2 threads
#: while two other jobs ran), far more than a handful of jets take (single-event latency, small batches).
SERIAL_BELOW = 16


def n_chunks(n: int) -> int:
    """Number of work chunks for ``n`` items: a few per numba thread (load balance), each reusing its scratch;
    one below :data:`SERIAL_BELOW`."""
    return 1 if n < SERIAL_BELOW else max(1, min(n, 8 * get_num_threads()))


@contextmanager
def pool_for(n: int) -> Iterator[None]:
    """Run the parallel kernels called inside on numba's thread pool only for ``n >= SERIAL_BELOW`` items (the
    calling thread otherwise). The same results either way: the kernels' chunks are independent."""
    threads = get_num_threads()
    if n >= SERIAL_BELOW or threads == 1:
        yield
        return
    set_num_threads(1)
    try:
        yield
    finally:
        set_num_threads(threads)
