"""Neighbour tables shared by the graph-edge kernels: sort keys, sorted insertion, the row padding rule, the
checks of a graph batch and the PyG ``edge_index`` of a table.

A neighbour table is int64 [N, k] of global node indices, row i the neighbours of node i sorted by
(distance, global index). Padding rule of kNN rows: with m candidates, 1 <= m < k, the row is the m sorted
candidates repeated cyclically (c0, c1, ..., c_{m-1}, c0, c1, ...) to length k; with m = 0 (a single-node
graph without self loops) the row is k copies of i.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from frameproducers.kernels.inputs import as_int64, check_window

#: Sort keys of pixel-space candidates: (squared distance << _SHIFT) | graph-local node index (< W*W <= 2**17).
SHIFT = 32
LOCAL_MASK = (1 << SHIFT) - 1


@njit(inline="always", cache=True)
def pixel_key(r_of, c_of, li, m):
    """Sort key of candidate m of node li: their squared pixel distance, then m."""
    dr = r_of[m] - r_of[li]
    dc = c_of[m] - c_of[li]
    return ((dr * dr + dc * dc) << SHIFT) | m


@njit(inline="always", cache=True)
def insert_sorted(keys, cnt, key):
    """Insert ``key`` into the ascending ``keys[:cnt]`` (keys[cnt] is free); returns cnt + 1."""
    j = cnt
    while j > 0 and keys[j - 1] > key:
        keys[j] = keys[j - 1]
        j -= 1
    keys[j] = key
    return cnt + 1


@njit(inline="always", cache=True)
def insert_bounded(keys, cnt, k, key):
    """Insert ``key`` into the ascending ``keys[:cnt]`` kept at most ``k`` long; returns the new count."""
    if cnt == k:
        if key >= keys[k - 1]:
            return cnt
        i = k - 1
    else:
        i = cnt
        cnt += 1
    while i > 0 and keys[i - 1] > key:
        keys[i] = keys[i - 1]
        i -= 1
    keys[i] = key
    return cnt


@njit(inline="always", cache=True)
def pad_row(out, row, cnt, k):
    """The padding rule: slots cnt..k-1 of ``out[row]`` repeat its cnt neighbours; without any, the node itself."""
    if cnt == 0:
        for s in range(k):
            out[row, s] = row
    else:
        for s in range(cnt, k):
            out[row, s] = out[row, s - cnt]


@njit(inline="always", cache=True)
def write_row(out, row, a, keys, cnt, k):
    """Row ``row`` of a kNN table from the ascending ``keys[:cnt]`` of the graph starting at node a, padded."""
    for s in range(min(cnt, k)):
        out[row, s] = a + (keys[s] & LOCAL_MASK)
    pad_row(out, row, cnt, k)


def check_offsets(node_offsets: np.ndarray, n_nodes: int) -> np.ndarray:
    """node_offsets as int64, starting at 0, non-decreasing, ending at the number of nodes."""
    node_offsets = as_int64(node_offsets)
    if node_offsets.ndim != 1 or len(node_offsets) < 1 or node_offsets[0] != 0 or node_offsets[-1] != n_nodes:
        raise ValueError("node_offsets must start at 0 and end at the number of nodes")
    if _decreasing(node_offsets):
        raise ValueError("node_offsets must be non-decreasing")
    return node_offsets


@njit(cache=True)
def _decreasing(offsets):
    """Whether any offset is below the one before it (one pass; numpy's diff and any cost ~10 us per call)."""
    for i in range(1, offsets.shape[0]):
        if offsets[i] < offsets[i - 1]:
            return True
    return False


@njit(cache=True)
def _pixel_problem(pixel, node_offsets, WW):
    """0 when every pixel lies in 0..WW-1 and the pixels of each graph strictly ascend; 1: a pixel out of range;
    2: not ascending (``node_offsets`` checked before)."""
    for i in range(pixel.shape[0]):
        if pixel[i] < 0 or pixel[i] >= WW:
            return 1
    for g in range(node_offsets.shape[0] - 1):
        for i in range(node_offsets[g] + 1, node_offsets[g + 1]):
            if pixel[i] <= pixel[i - 1]:
                return 2
    return 0


def check_graph(pixel: np.ndarray, node_offsets: np.ndarray, W: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate a graph batch: pixels in 0..W*W-1, strictly ascending within each graph (as built)."""
    pixel = np.ascontiguousarray(pixel, dtype=np.int32)
    W = check_window(W)
    node_offsets = check_offsets(node_offsets, len(pixel))
    problem = _pixel_problem(pixel, node_offsets, W * W)
    if problem == 1:
        raise ValueError(f"pixel indices must lie in 0..W*W-1 = {W * W - 1}")
    if problem == 2:
        raise ValueError("pixel must be strictly ascending within each graph (as build_graph_nodes makes it)")
    return pixel, node_offsets, W


def edge_index_from_neighbors(neighbors: np.ndarray, num_neighbors: np.ndarray | None = None) -> np.ndarray:
    """PyG ``edge_index`` int64 [2, E] from a neighbour table [N, k]: edge (source j = neighbour, target i),
    ordered by target, then slot. Without ``num_neighbors`` (kNN) every slot is an edge, padding included
    (E = N k, row 0 = ``neighbors.ravel()``); with it only the first num_neighbors[i] slots of row i."""
    neighbors = np.asarray(neighbors)
    n, k = neighbors.shape
    if num_neighbors is None:
        src = neighbors.reshape(-1).astype(np.int64)
        dst = np.repeat(np.arange(n, dtype=np.int64), k)
    else:
        num = np.asarray(num_neighbors, dtype=np.int64)
        mask = np.arange(k)[None, :] < num[:, None]
        src = neighbors[mask].astype(np.int64)
        dst = np.repeat(np.arange(n, dtype=np.int64), np.minimum(num, k))
    return np.stack([src, dst])
