"""Radius graphs in pixel space: the nodes within a radius of each node, nearest first, at most k."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from dataformats.geometry import ECAL_N_IETA
from frameproducers.kernels.jit import no_refcount
from frameproducers.kernels.neighbors import LOCAL_MASK, SHIFT, check_graph, insert_bounded
from frameproducers.kernels.params import frame_params, n_chunks, pool_for


@njit(cache=True)
def _isqrt(v):
    """floor(sqrt(v)) for an integer v >= 0."""
    s = np.int64(math.sqrt(v))
    while s * s > v:
        s -= 1
    while (s + 1) * (s + 1) <= v:
        s += 1
    return s


@njit(inline="always", cache=True)
def _disc_on_grid(grid, W, r, c, li, R, r2, self_loops, keys, max_neighbors):
    """The keys of the nodes (local ids on the dense ``grid``, -1: empty) in the disc of squared radius r2 around
    pixel (r, c), the nearest max_neighbors kept in ``keys``; returns their count."""
    cnt = np.int64(0)
    for rr in range(max(r - R, 0), min(r + R, W - 1) + 1):
        dr = rr - r
        w = _isqrt(r2 - dr * dr)
        for cc in range(max(c - w, 0), min(c + w, W - 1) + 1):
            m = np.int64(grid[rr * W + cc])
            if m >= 0 and (m != li or self_loops):
                dc = cc - c
                cnt = insert_bounded(keys, cnt, max_neighbors, ((dr * dr + dc * dc) << SHIFT) | m)
    return cnt


@njit(inline="always", cache=True)
def _disc_of_graph(pixel, a, n, W, r, c, li, r2, self_loops, keys, max_neighbors):
    """Same as _disc_on_grid over the n nodes of the graph at ``a`` (small graphs)."""
    cnt = np.int64(0)
    for m in range(n):
        if m == li and not self_loops:
            continue
        q = np.int64(pixel[a + m])
        rq = q // W
        dr = rq - r
        dc = q - rq * W - c
        d2 = dr * dr + dc * dc
        if d2 <= r2:
            cnt = insert_bounded(keys, cnt, max_neighbors, (d2 << SHIFT) | m)
    return cnt


@no_refcount
def _radius_graph(pixel, a, n, W, R, r2, max_neighbors, self_loops, grid, keys, out, num):
    """Radius-graph rows of the n nodes of the graph at ``a`` (``grid``: -1 everywhere, as left here)."""
    use_grid = n * n > (2 * R + 1) * (2 * R + 1) * 2
    if use_grid:
        for li in range(n):
            grid[pixel[a + li]] = li
    for li in range(n):
        p = np.int64(pixel[a + li])
        r = p // W
        c = p - r * W
        if use_grid:  # the disc on the grid
            cnt = _disc_on_grid(grid, W, r, c, li, R, r2, self_loops, keys, max_neighbors)
        else:  # all nodes of a small graph
            cnt = _disc_of_graph(pixel, a, n, W, r, c, li, r2, self_loops, keys, max_neighbors)
        i = a + li
        num[i] = cnt
        for s in range(cnt):
            out[i, s] = a + (keys[s] & LOCAL_MASK)
        for s in range(cnt, max_neighbors):
            out[i, s] = i
    if use_grid:
        for li in range(n):
            grid[pixel[a + li]] = -1


@njit(parallel=True, cache=True)
def _radius_pixels(pixel, node_offsets, par, out, num, nch):
    """Radius graph of every graph (see radius_pixels), parallel over ``nch`` chunks of graphs."""
    W = par[0].window
    r2 = par[0].radius2
    max_neighbors = par[0].k
    self_loops = par[0].self_loops
    n_graphs = node_offsets.shape[0] - 1
    R = _isqrt(r2)
    for t in prange(nch):
        grid = np.full(W * W, -1, np.int32)
        keys = np.empty(max_neighbors, np.int64)
        for g in range(t * n_graphs // nch, (t + 1) * n_graphs // nch):
            a = node_offsets[g]
            _radius_graph(pixel, a, node_offsets[g + 1] - a, W, R, r2, max_neighbors, self_loops, grid, keys, out, num)


def radius_pixels(
    pixel: np.ndarray, node_offsets: np.ndarray, W: int, radius: float, max_neighbors: int, self_loops: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Radius graph in pixel space: ``neighbors`` int64 [N, max_neighbors] and ``num_neighbors`` int32 [N].

    Candidates of node i: nodes of its graph with squared pixel distance <= radius^2 (radius in crystals),
    plus i itself when ``self_loops``; sorted by (distance, global index), the first ``max_neighbors`` kept
    in slots 0..num_neighbors[i]-1. Padding rule: the unused slots hold i itself.
    """
    pixel, node_offsets, W = check_graph(pixel, node_offsets, W)
    if max_neighbors < 1:
        raise ValueError("max_neighbors must be >= 1")
    if not radius >= 0:
        raise ValueError("radius must be >= 0")
    r2 = int(math.floor(min(float(radius), 2.0 * ECAL_N_IETA) ** 2))  # integer distances: d2 <= radius^2
    out = np.empty((len(pixel), int(max_neighbors)), np.int64)
    num = np.empty(len(pixel), np.int32)
    par = frame_params(window=W, radius2=r2, k=int(max_neighbors), self_loops=bool(self_loops))
    with pool_for(len(node_offsets) - 1):
        _radius_pixels(pixel, node_offsets, par, out, num, n_chunks(len(node_offsets) - 1))
    return out, num
