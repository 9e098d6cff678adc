"""k nearest neighbours of graph nodes in pixel space: all pairs for small graphs, a distance-ordered walk
over a dense grid for dense graphs, tiles and blocks for sparse ones (frameproducers.kernels.knn_sparse),
and the brute-force baseline. All exact, same result (frameproducers.kernels.neighbors: keys, padding)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from frameproducers.kernels.jit import no_refcount
from frameproducers.kernels.knn_sparse import knn_sparse_graph
from frameproducers.kernels.neighbors import SHIFT, check_graph, insert_sorted, pixel_key, write_row
from frameproducers.kernels.params import SERIAL_BELOW, frame_params, n_chunks, pool_for

#: kNN strategy per graph: at most _SMALL_GRAPH nodes: all pairs; occupancy (nodes / W^2) >= _DENSE_OCCUPANCY:
#: distance-ordered offsets on a dense grid; otherwise tiles and blocks (see knn_sparse_graph).
_SMALL_GRAPH = 24
_DENSE_OCCUPANCY = 0.16


class OffsetTable(NamedTuple):
    """All pixel offsets (dr, dc) of a W x W window, |dr|, |dc| < W, by squared distance d2: int32 [(2W - 1)^2]."""

    dr: np.ndarray
    dc: np.ndarray
    d2: np.ndarray


@functools.lru_cache(maxsize=16)
def _offset_table(W: int) -> OffsetTable:
    d = np.arange(-(W - 1), W, dtype=np.int32)
    dr, dc = (a.ravel() for a in np.meshgrid(d, d, indexing="ij"))
    d2 = dr * dr + dc * dc
    order = np.argsort(d2, kind="stable")
    return OffsetTable(dr[order], dc[order], d2[order])


@njit(cache=True)
def _graph_coordinates(pixel, a, n, W, r_of, c_of, row_start):
    """Row and column of the n nodes of the graph at ``a``; row_start[r]: first node of row r (pixels ascend)."""
    for r in range(W + 1):
        row_start[r] = 0
    for li in range(n):
        p = np.int64(pixel[a + li])
        r = p // W
        r_of[li] = r
        c_of[li] = p - r * W
        row_start[r + 1] += 1
    for r in range(W):
        row_start[r + 1] += row_start[r]


@no_refcount
def _knn_small_graph(a, n, k, self_loops, out, r_of, c_of, sel):
    """kNN of a small graph: all candidates of each node, sorted by insertion (O(n^2))."""
    for li in range(n):
        cnt = np.int64(0)
        for m in range(n):
            if m != li or self_loops:
                cnt = insert_sorted(sel, cnt, pixel_key(r_of, c_of, li, m))
        write_row(out, a + li, a, sel, cnt, k)


@njit(cache=True)
def _merge_sort(a, n, tmp):
    """Bottom-up merge sort of a[:n] (tmp: scratch of n)."""
    src, dst = a, tmp
    in_a = True
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i, j = lo, mid
            for o in range(lo, hi):
                if j >= hi or (i < mid and src[i] <= src[j]):
                    dst[o] = src[i]
                    i += 1
                else:
                    dst[o] = src[j]
                    j += 1
        src, dst = dst, src
        in_a = not in_a
        width *= 2
    if not in_a:  # the result is in tmp (a loop: a slice copy checks for overlap with a temporary array)
        for i in range(n):
            a[i] = src[i]


@no_refcount
def _knn_brute_graph(a, n, k, self_loops, out, r_of, c_of, keys, tmp):
    """kNN by brute force (the benchmark baseline): the keys of all candidates of each node, fully sorted."""
    for li in range(n):
        cnt = np.int64(0)
        for m in range(n):
            if m != li or self_loops:
                keys[cnt] = pixel_key(r_of, c_of, li, m)
                cnt += 1
        _merge_sort(keys, cnt, tmp)
        write_row(out, a + li, a, keys, cnt, k)


@no_refcount
def _knn_dense_graph(a, n, W, k, self_loops, out, r_of, c_of, grid, offsets, sel):
    """kNN of a dense graph: the nodes are put on a dense W x W ``grid`` of local ids (-1: empty) and each
    node visits the pixel ``offsets`` in order of squared distance until the last offset at the distance of
    its k-th neighbour, so every candidate tied with it is seen; the found keys are already ordered by
    distance, the ties are put in index order by a final (nearly sorted) insertion sort.
    Cost per node ~ pixels within the k-th neighbour distance."""
    tdr, tdc, td2 = offsets
    big = np.int64(1) << 62
    for li in range(n):
        grid[r_of[li] * W + c_of[li]] = li
    for li in range(n):
        r = r_of[li]
        c = c_of[li]
        excl = -1 if self_loops else li
        limit = big
        cnt = np.int64(0)
        for t in range(td2.shape[0]):
            d2 = td2[t]
            if d2 > limit:
                break
            rr = r + tdr[t]
            cc = c + tdc[t]
            if rr < 0 or rr >= W or cc < 0 or cc >= W:
                continue
            m = grid[rr * W + cc]
            sel[cnt] = (np.int64(d2) << SHIFT) | m
            cnt += (m >= 0) & (m != excl)
            if cnt == k and limit == big:
                limit = d2
        for i in range(1, cnt):  # insertion sort (only ties are out of order)
            insert_sorted(sel, i, sel[i])
        write_row(out, a + li, a, sel, cnt, k)
    for li in range(n):
        grid[r_of[li] * W + c_of[li]] = -1


@njit(cache=True)
def _knn_graphs(pixel, node_offsets, par, out, offsets, g0, g1):
    """kNN of graphs g0..g1-1 (see knn_pixels) with one scratch reused across them; ``par[0].brute_force``: all
    pairs and a full sort per node, whatever the graph."""
    W = par[0].window
    k = par[0].k
    self_loops = par[0].self_loops
    brute = par[0].brute_force
    WW = W * W
    grid = np.full(WW, -1, np.int32)
    r_of = np.empty(WW, np.int64)
    c_of = np.empty(WW, np.int64)
    row_start = np.empty(W + 1, np.int64)
    col_start = np.empty(W * (W + 1), np.int64)
    tile_start = np.empty(W + 2, np.int64)
    tile_nodes = np.empty(WW, np.int64)
    br = np.empty(WW, np.int64)
    bc = np.empty(WW, np.int64)
    bid = np.empty(WW, np.int64)
    dist = np.empty(WW, np.int32)
    sel = np.empty(WW + 1, np.int64)
    for g in range(g0, g1):
        a = node_offsets[g]
        n = node_offsets[g + 1] - a
        if n == 0:
            continue
        _graph_coordinates(pixel, a, n, W, r_of, c_of, row_start)
        if brute:
            _knn_brute_graph(a, n, k, self_loops, out, r_of, c_of, sel, br)
        elif n <= _SMALL_GRAPH:
            _knn_small_graph(a, n, k, self_loops, out, r_of, c_of, sel)
        elif n >= _DENSE_OCCUPANCY * WW:
            _knn_dense_graph(a, n, W, k, self_loops, out, r_of, c_of, grid, offsets, sel)
        else:
            knn_sparse_graph(
                a, n, W, k, self_loops, out, r_of, c_of, row_start, col_start, tile_start, tile_nodes, br, bc, bid,
                dist, sel,
            )  # fmt: skip


@njit(parallel=True, cache=True)
def _knn_pixels(pixel, node_offsets, par, out, nch, offsets):
    """kNN of every graph, parallel over ``nch`` chunks of graphs (:func:`_knn_graphs`, each with its scratch)."""
    n_graphs = node_offsets.shape[0] - 1
    for t in prange(nch):
        _knn_graphs(pixel, node_offsets, par, out, offsets, t * n_graphs // nch, (t + 1) * n_graphs // nch)


def _knn_table(
    pixel: np.ndarray, node_offsets: np.ndarray, W: int, k: int, self_loops: bool, brute_force: bool
) -> np.ndarray:
    pixel, node_offsets, W = check_graph(pixel, node_offsets, W)
    if k < 1:
        raise ValueError("k must be >= 1")
    out = np.empty((len(pixel), int(k)), np.int64)
    par = frame_params(window=W, k=int(k), self_loops=bool(self_loops), brute_force=brute_force)
    n_graphs = len(node_offsets) - 1
    if n_graphs < SERIAL_BELOW:  # in the calling thread, without numba's parallel launch
        _knn_graphs(pixel, node_offsets, par, out, _offset_table(W), 0, n_graphs)
    if n_graphs >= SERIAL_BELOW or n_graphs == 0:  # (none: the setup warm-up, which compiles or loads both)
        with pool_for(n_graphs):
            _knn_pixels(pixel, node_offsets, par, out, n_chunks(n_graphs), _offset_table(W))
    return out


def knn_pixels(pixel: np.ndarray, node_offsets: np.ndarray, W: int, k: int, self_loops: bool) -> np.ndarray:
    """k nearest neighbours of every node in pixel space: ``neighbors`` int64 [N, k] (global node indices).

    Distance: squared Euclidean distance between the (r, c) = divmod(pixel, W) of two nodes (integers, exact).
    Candidates of node i: the other nodes of its graph, plus i itself (distance 0) when ``self_loops``;
    sorted by (distance, global index), the first k kept. Padding rule: with m candidates, 1 <= m < k,
    the row is the m sorted candidates repeated cyclically (c0, c1, ..., c_{m-1}, c0, c1, ...) to length k;
    with m = 0 (a single-node graph without self loops) the row is k copies of i.

    ``pixel`` int32 [N] (any integer dtype) must be strictly ascending within each graph, as
    :func:`~frameproducers.kernels.nodes.build_graph_nodes` returns it; ``node_offsets`` int64 [n_graphs + 1].
    Parallel over graphs, with per-thread scratch reused across graphs. Method per graph (all exact): up to 24
    nodes, all pairs; occupancy n / W^2 >= 0.16 (dense), a walk over the pixel offsets in increasing distance
    on a dense W x W grid of node ids, stopping after the distance of the k-th neighbour (cost per node ~ the
    pixels within it); otherwise (sparse) S x S tiles whose 3S x 3S blocks hold ~5k nodes on average: the k-th
    distance by bisection on counts over the block, proven by the distance to the block border, else the
    block is widened (cost per node ~ the nodes of its block).
    """
    return _knn_table(pixel, node_offsets, W, k, self_loops, False)


def brute_force_knn_pixels(pixel: np.ndarray, node_offsets: np.ndarray, W: int, k: int, self_loops: bool) -> np.ndarray:
    """Same result as :func:`knn_pixels` by brute force: all O(n^2) candidate distances of a graph and a full
    sort per node (the benchmark baseline; same parallel driver over graphs). Returns int64 [N, k] global node
    indices, same padding rule."""
    return _knn_table(pixel, node_offsets, W, k, self_loops, True)
