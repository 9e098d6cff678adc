"""k nearest neighbours of graph nodes in feature space (brute force per graph, exact)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from frameproducers.kernels.knn_select import neighbour_bound, select_smallest, selection_scratch
from frameproducers.kernels.neighbors import check_offsets, pad_row
from frameproducers.kernels.params import frame_params, n_chunks, pool_for


@njit(inline="always", cache=True)
def _feature_distances(xt, n, li, d):
    """d[m]: squared distance from node li to node m over the columns of ``xt`` [F, n] (float64, column order)."""
    d[:n] = 0.0
    for f in range(xt.shape[0]):  # column order, as the reference
        xf = xt[f]
        xi = xf[li]
        for m in range(n):
            u = xf[m] - xi
            d[m] += u * u


@njit(parallel=True, cache=True)
def _knn_features(x, node_offsets, par, out, nch):
    """kNN of every graph in feature space (see knn_features), parallel over ``nch`` chunks of graphs."""
    k = par[0].k
    self_loops = par[0].self_loops
    n_graphs = node_offsets.shape[0] - 1
    F = x.shape[1]
    n_max = 0
    for g in range(n_graphs):
        n_max = max(n_max, node_offsets[g + 1] - node_offsets[g])
    for t in prange(nch):
        xt = np.empty((F, n_max), np.float64)  # the graph's features, transposed: the distance loop vectorises
        d = np.empty(n_max, np.float64)
        kd, ki, hist, cv, ci = selection_scratch(k, n_max, d)
        for g in range(t * n_graphs // nch, (t + 1) * n_graphs // nch):
            a = node_offsets[g]
            n = node_offsets[g + 1] - a
            for m in range(n):
                for f in range(F):
                    xt[f, m] = x[a + m, f]
            for li in range(n):
                _feature_distances(xt, n, li, d)
                bound = neighbour_bound(d, li, k, out, a)
                cnt = select_smallest(d, n, -1 if self_loops else li, k, kd, ki, hist, cv, ci, bound)
                i = a + li
                for s in range(min(cnt, k)):
                    out[i, s] = a + ki[s]
                pad_row(out, i, cnt, k)


def knn_features(x: np.ndarray, node_offsets: np.ndarray, k: int, self_loops: bool) -> np.ndarray:
    """k nearest neighbours of every node in feature space: int64 [N, k] global node indices.

    Distance: squared Euclidean distance over all columns of ``x`` [N, F], accumulated in float64 in column
    order (each squared difference rounded, then added). Same tie rule (distance, then global index) and
    padding rule as :func:`~frameproducers.kernels.knn.knn_pixels` (a node at infinite or NaN distance is never a
    neighbour). Brute force, O(n^2 F) per graph of n nodes (vectorised distances, the k nearest by
    :func:`~frameproducers.kernels.knn_select.select_smallest`); parallel over graphs.
    """
    x = np.ascontiguousarray(x)
    if x.ndim != 2:
        raise ValueError("x must be [N, F]")
    node_offsets = check_offsets(node_offsets, x.shape[0])
    if k < 1:
        raise ValueError("k must be >= 1")
    out = np.empty((x.shape[0], int(k)), np.int64)
    par = frame_params(k=int(k), self_loops=bool(self_loops))
    with pool_for(len(node_offsets) - 1):
        _knn_features(x, node_offsets, par, out, n_chunks(len(node_offsets) - 1))
    return out
