"""numba's thread pool is used only for batches large enough to gain from it (frameproducers.kernels.params)."""

from __future__ import annotations

import numba
import numpy as np

from frameproducers import kernels as K
from frameproducers.kernels.params import SERIAL_BELOW, n_chunks, pool_for


def test_small_batches_run_in_the_calling_thread_and_the_thread_count_is_restored() -> None:
    before = numba.get_num_threads()
    with pool_for(SERIAL_BELOW - 1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with pool_for(SERIAL_BELOW):
        assert numba.get_num_threads() == before
    try:
        with pool_for(1):
            raise RuntimeError("inside")
    except RuntimeError:
        pass
    assert numba.get_num_threads() == before
    assert n_chunks(SERIAL_BELOW - 1) == 1 and n_chunks(0) == 1
    assert n_chunks(SERIAL_BELOW) >= 1


def test_knn_of_a_few_graphs_equals_the_same_graphs_among_many() -> None:
    """The serial path (a few graphs) gives each graph the neighbours it gets in a large, parallel batch."""
    rng = np.random.default_rng(3)
    sizes = rng.integers(0, 40, size=4 * SERIAL_BELOW)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    x = rng.normal(size=(int(offsets[-1]), 2)).astype(np.float32)
    many = K.knn_features(x, offsets, 5, False)
    a, b = offsets[3], offsets[6]
    few = K.knn_features(x[a:b], offsets[3:7] - a, 5, False)
    np.testing.assert_array_equal(few + a, many[a:b])
