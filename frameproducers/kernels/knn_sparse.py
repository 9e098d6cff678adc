"""Pixel-space kNN of a sparse graph by tiles and blocks (the strategy of frameproducers.kernels.knn for graphs
of more than a few nodes and occupancy below the dense threshold).

The window is cut into S x S tiles (S from the node density, so that a 3S x 3S block holds ~_BLOCK_NODES * k
nodes); the nodes of the block around a tile (tile +- S) are gathered once per tile, in node order, from a
per-row column index. For each node of the tile: squared distances to the block nodes (vectorised), then a T
with k <= count(d <= T) <= k + slack by bisection on counts. The result is exact when T is below the squared
distance to the nearest pixel outside the block (sides at the window edge excepted); otherwise the node is
redone in a block twice as wide. The candidates with d <= T are ranked by (distance, index) without branches.
Cost per node ~ block size, plus W^2 per graph for the column index.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from frameproducers.kernels.jit import no_refcount
from frameproducers.kernels.neighbors import LOCAL_MASK, SHIFT, pad_row

#: A 3S x 3S block around an S x S tile holds ~_BLOCK_NODES * k nodes on average.
_BLOCK_NODES = 5.0
#: The candidates kept for the final sort exceed k by at most this (fewer bisection steps).
_SELECT_SLACK = 2


@njit(cache=True)
def _column_index(W, c_of, row_start, col_start):
    """col_start[r * (W + 1) + c]: the first node of row r at column >= c (nodes ascend by pixel)."""
    W1 = W + 1
    for r in range(W):
        q = row_start[r]
        end = row_start[r + 1]
        for cc in range(W1):
            while q < end and c_of[q] < cc:
                q += 1
            col_start[r * W1 + cc] = q


@njit(cache=True)
def _bucket_band(b0, b1, S, nt, c_of, tile_start, tile_nodes):
    """The nodes b0..b1-1 of a band of rows bucketed by tile column: tile tc holds
    tile_nodes[tile_start[tc]:tile_start[tc + 1]], ascending."""
    for tc in range(nt + 1):
        tile_start[tc] = 0
    for s in range(b0, b1):
        tile_start[c_of[s] // S + 1] += 1
    for tc in range(nt):
        tile_start[tc + 1] += tile_start[tc]
    for s in range(b0, b1):
        tc = c_of[s] // S
        tile_nodes[tile_start[tc]] = s
        tile_start[tc] += 1
    for tc in range(nt, 0, -1):
        tile_start[tc] = tile_start[tc - 1]
    tile_start[0] = 0


@njit(inline="always", cache=True)
def _gather_block(R0, R1, C0, C1, W, c_of, col_start, br, bc, bid):
    """The nodes of rows R0..R1, columns C0..C1, in node order: row, column and local id into br, bc, bid;
    returns their count."""
    W1 = W + 1
    mb = np.int64(0)
    for rr in range(R0, R1 + 1):
        for s in range(col_start[rr * W1 + C0], col_start[rr * W1 + C1 + 1]):
            br[mb] = rr
            bc[mb] = c_of[s]
            bid[mb] = s
            mb += 1
    return mb


@njit(inline="always", cache=True)
def _border_gap(r, c, R0, R1, C0, C1, W):
    """Distance in pixels from (r, c) to the nearest pixel outside the block R0..R1 x C0..C1 across a side that
    is not the window edge; 2 W when the block is the whole window."""
    gap = 2 * W
    if R0 > 0:
        gap = min(gap, r - R0 + 1)
    if R1 < W - 1:
        gap = min(gap, R1 - r + 1)
    if C0 > 0:
        gap = min(gap, c - C0 + 1)
    if C1 < W - 1:
        gap = min(gap, C1 - c + 1)
    return gap


@njit(inline="always", cache=True)
def _block_distances(r, c, excl, mb, br, bc, bid, dist):
    """dist[q]: squared distance from (r, c) to block node q (node ``excl``: int32 max); returns the largest."""
    big = np.int32(2**31 - 1)
    dmax = np.int32(0)
    for q in range(mb):
        dr = np.int32(br[q] - r)
        dc = np.int32(bc[q] - c)
        dd = dr * dr + dc * dc
        dist[q] = dd if bid[q] != excl else big
        dmax = max(dmax, dd)
    return dmax


@njit(inline="always", cache=True)
def _count_within(dist, mb, d2):
    """Number of block nodes with squared distance <= d2."""
    n = np.int64(0)
    for q in range(mb):
        n += dist[q] <= d2
    return n


@njit(inline="always", cache=True)
def _bisect_cut(dist, mb, k, hi, n_hi):
    """A T <= hi with k <= count(d <= T) <= k + _SELECT_SLACK (or T = hi), from count(d <= hi) = n_hi >= k."""
    lo = np.int64(0)
    while lo < hi and n_hi > k + _SELECT_SLACK:
        mid = (lo + hi) >> 1
        n_mid = _count_within(dist, mb, mid)
        if n_mid >= k:
            hi = mid
            n_hi = n_mid
        else:
            lo = mid + 1
    return hi


@njit(inline="always", cache=True)
def _rank_into_row(out, row, a, k, cut, mb, dist, bid, sel):
    """Row ``row``: the block nodes with d <= cut ranked by (distance, index), the first k kept, padded."""
    cnt = np.int64(0)
    for q in range(mb):  # branch-free compaction of the keys with d <= cut
        sel[cnt] = (np.int64(dist[q]) << SHIFT) | bid[q]
        cnt += dist[q] <= cut
    for i in range(cnt):  # rank (keys are unique): its slot in the sorted row
        key = sel[i]
        rank = np.int64(0)
        for jj in range(cnt):
            rank += sel[jj] < key
        if rank < k:
            out[row, rank] = a + (key & LOCAL_MASK)
    pad_row(out, row, cnt, k)


@no_refcount
def knn_sparse_graph(
    a, n, W, k, self_loops, out, r_of, c_of, row_start, col_start, tile_start, tile_nodes, br, bc, bid, dist, sel
):
    """kNN rows of the n nodes of the graph at ``a`` (r_of, c_of, row_start from the pixels; the rest scratch)."""
    _column_index(W, c_of, row_start, col_start)
    S = max(1, min(W, int(math.sqrt(_BLOCK_NODES * k * W * W / (9.0 * n)) + 0.5)))
    nt = (W + S - 1) // S
    for tr in range(nt):
        r_lo = tr * S
        r_hi = min(r_lo + S, W) - 1
        b0 = row_start[r_lo]
        b1 = row_start[r_hi + 1]
        if b0 == b1:
            continue
        _bucket_band(b0, b1, S, nt, c_of, tile_start, tile_nodes)
        for tc in range(nt):
            if tile_start[tc] == tile_start[tc + 1]:
                continue
            c_lo = tc * S
            c_hi = min(c_lo + S, W) - 1
            e = 0  # block half-margin; 0: not gathered yet
            for u in range(tile_start[tc], tile_start[tc + 1]):
                li = tile_nodes[u]
                r = r_of[li]
                c = c_of[li]
                excl = -1 if self_loops else li
                e_node = S
                while True:
                    if e != e_node:  # gather the block: the tile +- e_node, in node order
                        e = e_node
                        R0 = max(r_lo - e, 0)
                        R1 = min(r_hi + e, W - 1)
                        C0 = max(c_lo - e, 0)
                        C1 = min(c_hi + e, W - 1)
                        mb = _gather_block(R0, R1, C0, C1, W, c_of, col_start, br, bc, bid)
                    gap = _border_gap(r, c, R0, R1, C0, C1, W)
                    closed = gap == 2 * W  # the block is the whole window
                    dmax = _block_distances(r, c, excl, mb, br, bc, bid, dist)
                    hi = np.int64(dmax) if closed else min(np.int64(gap * gap - 1), np.int64(dmax))
                    n_hi = _count_within(dist, mb, hi)
                    if n_hi >= k or closed:
                        break
                    e_node = 2 * e  # the k-th neighbour may lie outside: a block twice as wide
                if n_hi >= k:
                    hi = _bisect_cut(dist, mb, k, hi, n_hi)
                _rank_into_row(out, a + li, a, k, hi, mb, dist, bid, sel)
