"""The selection step of a kNN on given distances: the k smallest entries of each row, per graph (numba).

Used by the in-model kNN of the graph taggers (:func:`taggers.models.graph_layers.knn_per_graph`) at inference
on CPU: torch computes the padded per-graph distances ``[B, n, n]`` (or, graphs grouped by size, each group's in
one flat buffer: :func:`smallest_in_groups`, the kernel of both) and this kernel replaces its mask, ``topk`` and
index arithmetic (``topk`` alone was half of that kNN's time: ~1.8 us per row of ~110 candidates), and by the hit
graphs' kNN (:func:`frameproducers.kernels.knn_features`).

A kNN row is first cut at a bound taken from a node already done (:func:`neighbour_bound`: the k neighbours of the
nearest earlier node, ~24 of ~110 candidates left on the shipped jets), so that the selection proper sees few
candidates; the cut is only kept when it leaves at least k, which makes the result the same whatever the bound.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from frameproducers.kernels.params import n_chunks, pool_for

#: value buckets of :func:`select_smallest`'s first pass (between the row's smallest and largest candidate)
BUCKETS = 64
#: candidates beyond which :func:`select_smallest` ranks those the buckets left with a heap, O(c log k), rather than
#: by counting, O(c^2) (rows of equal values, or one outlier that puts every other value in one bucket: 100k ECAL hits
#: with one of 1e6 GeV took 3.9 s instead of 3 ms)
SORT_ABOVE = 256


@njit(inline="always", cache=True)
def select_smallest(row, n, skip, k, kd, ki, hist, cv, ci, bound):
    """The k smallest ``row[m]`` over ``m < n``, ``m != skip``, ``row[m] < inf`` (NaN and +inf never count), ascending,
    ties to the lower m: values into ``kd``, indices into ``ki``; returns how many (<= k).

    ``bound`` (``inf``: none) is a guess of the k-th smallest value: the candidates ``<= bound`` are taken first,
    and only if there are at least k of them (then they hold the k smallest and all their ties); otherwise all.

    Exact, and nearly free of unpredictable branches (inserting each candidate into a sorted top k costs ~50
    mispredicted insertions per row of ~110 in random order): the candidates are counted in :data:`BUCKETS`
    equal-width value buckets between their smallest and largest value, and only those of the buckets up to the
    one that holds the k-th smallest are kept, in index order (again while more than :func:`rank_limit` are left);
    each is then placed at its rank by counting, O(c^2) for the c left (a bucket pass, O(c + BUCKETS), is cheaper
    than counting ranks among a few more). Bucketing is monotone in the value, so no candidate left out can precede one
    kept. More than :data:`SORT_ABOVE` left (equal values, an outlier) are ranked with a heap instead.
    Scratch: ``hist`` int64 ``[BUCKETS + 1 + n]``, ``cv`` (the row's dtype) and ``ci`` (int64) ``[n]``.
    """
    c = _candidates(row, n, skip, cv, ci, bound, False) if bound < np.inf else 0  # up to the bound
    if c < k:
        c = _candidates(row, n, skip, cv, ci, np.inf, True)  # all finite
    bucket = hist[BUCKETS + 1 :]
    limit = rank_limit(k)
    for _ in range(4):
        if c <= limit:
            break
        lo = cv[0]
        hi = cv[0]
        for j in range(c):
            lo = min(lo, cv[j])
            hi = max(hi, cv[j])
        span = hi - lo  # (beyond the float range, inf: every bucket index was NaN -> INT64_MIN, a write out of hist)
        if not (span > 0 and span < np.inf):  # equal values, or a range too wide to bucket
            break
        scale = BUCKETS / span
        if not scale < np.inf:  # (a subnormal span)
            break
        for j in range(c):
            bucket[j] = min(np.int64((cv[j] - lo) * scale), BUCKETS - 1)
        hist[:BUCKETS] = 0
        for j in range(c):
            hist[bucket[j]] += 1
        last = BUCKETS - 1
        total = 0
        for b in range(BUCKETS):
            total += hist[b]
            if total >= k:
                last = b
                break
        kept = 0
        for j in range(c):  # in place, index order kept
            cv[kept] = cv[j]
            ci[kept] = ci[j]
            kept += bucket[j] <= last
        if kept == c:  # nothing left out (an outlier stretches the range: every other value in one bucket)
            break
        c = kept
    if c > SORT_ABOVE:  # (ties, or a range no bucket pass could narrow: counting ranks would be O(c^2))
        return _heap_smallest(cv, ci, c, k, kd, ki)
    for j in range(c):
        v = cv[j]
        rank = 0
        for i in range(c):
            rank += (cv[i] < v) | ((cv[i] == v) & (i < j))
        if rank < k:
            kd[rank] = v
            ki[rank] = ci[j]
    return min(c, k)


@njit(inline="always", cache=True)
def _before(v, i, w, j):
    """Whether (value v, index i) ranks before (w, j): the smaller value, ties to the lower index."""
    return (v < w) | ((v == w) & (i < j))


@njit(inline="always", cache=True)
def _heap_smallest(cv, ci, c, k, kd, ki):
    """The min(c, k) smallest of ``cv[:c]`` (ties to the lower ``ci``, which ascends), ascending, into ``kd``/``ki``:
    a max-heap of them in ``kd``/``ki`` over one pass, O(c log k), then sorted in place (the same ranks as
    :func:`select_smallest`'s counting, for rows its buckets cannot narrow). Returns how many."""
    m = min(c, k)
    size = 0
    for j in range(c):
        v = cv[j]
        i = ci[j]
        if size < m:  # push, sift up
            pos = size
            size += 1
            while pos > 0:
                parent = (pos - 1) // 2
                if not _before(kd[parent], ki[parent], v, i):
                    break
                kd[pos] = kd[parent]
                ki[pos] = ki[parent]
                pos = parent
            kd[pos] = v
            ki[pos] = i
        elif _before(v, i, kd[0], ki[0]):  # replace the largest, sift down
            pos = 0
            while True:
                child = 2 * pos + 1
                if child >= size:
                    break
                if child + 1 < size and _before(kd[child], ki[child], kd[child + 1], ki[child + 1]):
                    child += 1
                if not _before(v, i, kd[child], ki[child]):
                    break
                kd[pos] = kd[child]
                ki[pos] = ki[child]
                pos = child
            kd[pos] = v
            ki[pos] = i
    for a in range(1, m):  # ascending (m <= k entries)
        v = kd[a]
        i = ki[a]
        b = a - 1
        while b >= 0 and _before(v, i, kd[b], ki[b]):
            kd[b + 1] = kd[b]
            ki[b + 1] = ki[b]
            b -= 1
        kd[b + 1] = v
        ki[b + 1] = i
    return m


@njit(inline="always", cache=True)
def rank_limit(k):
    """The most candidates :func:`select_smallest` ranks by counting, k + k / 4 (20 for k = 16): the hit graphs' kNN
    (k = 16, ~107 nodes, ~24 candidates under the bound) ran 1.12x faster than with 2k, one thread."""
    return k + (k + 3) // 4


@njit(inline="always", cache=True)
def _candidates(row, n, skip, cv, ci, bound, strict):
    """Copy the candidates ``row[m] <= bound`` (``< bound`` when ``strict``; never NaN), ``m < n``, ``m != skip``, in
    index order into ``cv`` (values) and ``ci`` (indices); returns how many."""
    c = 0
    for m in range(n):
        v = row[m]
        cv[c] = v
        ci[c] = m
        c += (m != skip) & ((v < bound) if strict else (v <= bound))
    return c


@njit(inline="always", cache=True)
def neighbour_bound(row, i, k, out, a):
    """A guess of the k-th smallest distance of node ``i`` (``row``: its distances to the nodes of its graph, which
    starts at node ``a``), from its nearest earlier node j (``j < i``, whose k neighbours are in ``out[a + j]``, global
    indices): the largest distance from i to j and to j's neighbours other than i, ``inf`` for the first node (or when
    no earlier node is at a finite distance). The k or k + 1 nodes it is taken from lie within it (unless NaN or
    repeated as padding), and for distances that obey the triangle inequality it is close to i's own k-th distance.
    Only a hint to :func:`select_smallest`, which checks it; the minimum runs over eight lanes so that it vectorises.
    """
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = np.inf
    m = 0
    while m + 8 <= i:
        m0 = min(m0, row[m])
        m1 = min(m1, row[m + 1])
        m2 = min(m2, row[m + 2])
        m3 = min(m3, row[m + 3])
        m4 = min(m4, row[m + 4])
        m5 = min(m5, row[m + 5])
        m6 = min(m6, row[m + 6])
        m7 = min(m7, row[m + 7])
        m += 8
    while m < i:
        m0 = min(m0, row[m])
        m += 1
    nearest = min(min(min(m0, m1), min(m2, m3)), min(min(m4, m5), min(m6, m7)))
    if not nearest < np.inf:
        return np.inf
    j = 0
    while j < i and row[j] != nearest:
        j += 1
    if j == i:
        return np.inf
    bound = nearest
    for s in range(k):
        m = out[a + j, s] - a
        v = row[m]
        bound = v if (v > bound) & (m != i) else bound
    return bound


@njit(inline="always", cache=True)
def selection_scratch(k, n_max, like):
    """The scratch of :func:`select_smallest` for rows of up to ``n_max`` values of ``like``'s dtype:
    ``(kd, ki, hist, cv, ci)``."""
    return (
        np.empty(k, like.dtype),
        np.empty(k, np.int64),
        np.empty(BUCKETS + 1 + n_max, np.int64),
        np.empty(n_max, like.dtype),
        np.empty(n_max, np.int64),
    )


class GroupLayout(NamedTuple):
    """Graphs padded in groups, in flat buffers (:func:`group_layout`): ``order [B]`` the graphs in group order,
    ``group`` graphs per group, ``sizes [n_groups]`` each group's padded size n, ``row_start`` / ``d_start
    [n_groups + 1]`` where each group's ``[G, n]`` padded rows and ``[G, n, n]`` distances start (the last entry: their
    totals), ``rows [row_start[-1]]`` the node each padded row copies (padding repeats a node of its graph, or node
    0; it is never read)."""

    order: np.ndarray
    group: int
    sizes: np.ndarray
    row_start: np.ndarray
    d_start: np.ndarray
    rows: np.ndarray


def group_layout(ptr: np.ndarray, group: int) -> GroupLayout:
    """The layout of the graphs with offsets ``ptr [B+1]`` sorted by node count (stable), ``group`` at a time, each
    group padded to its largest graph (:func:`smallest_in_groups`)."""
    ptr = np.asarray(ptr, dtype=np.int64)
    counts = np.diff(ptr)
    n_graphs = len(counts)
    order = np.argsort(counts, kind="stable")
    per_group = np.minimum(group, n_graphs - np.arange(0, n_graphs, group))
    sizes = counts[order][np.cumsum(per_group) - 1] if n_graphs else np.zeros(0, np.int64)  # ascending: the last
    row_start = np.concatenate([[0], np.cumsum(per_group * sizes)])
    d_start = np.concatenate([[0], np.cumsum(per_group * sizes * sizes)])
    rows = np.empty(int(row_start[-1]), np.int64)
    _padded_rows(ptr, order, int(group), sizes, row_start, rows)
    return GroupLayout(order, int(group), sizes, row_start, d_start, rows)


@njit(cache=True, nogil=True)
def _padded_rows(ptr, order, group, sizes, row_start, rows):
    """:class:`GroupLayout`'s ``rows``: graph ``order[at]`` fills the slots ``at % group`` of its group ``at // group``
    (``sizes[g]`` rows each, from ``row_start[g]``) with its nodes, then repeats its last node (node 0 if it has
    none, at most the last node of the batch)."""
    top = max(ptr[-1] - 1, 0)
    for at in range(order.shape[0]):
        g = at // group
        n = sizes[g]
        b = order[at]
        first = row_start[g] + (at - g * group) * n
        last = max(ptr[b + 1] - ptr[b] - 1, 0)
        for s in range(n):
            rows[first + s] = min(ptr[b] + min(s, last), top)


@njit(parallel=True, cache=True, nogil=True)
def _smallest_in_groups(d, sq, gram, ptr, order, group, sizes, row_start, d_start, k, out, first, stop, nch):
    """:func:`smallest_in_groups` on the flat buffers for the graphs ``order[first:stop]``, parallel over ``nch``
    chunks of them."""
    n_max = 0
    for g in range(first // group, (stop + group - 1) // group):
        n_max = max(n_max, sizes[g])
    n_graphs = stop - first
    for t in prange(nch):
        kd, ki, hist, cv, ci = selection_scratch(k, n_max, d)
        row = np.empty(n_max if gram else 0, d.dtype)
        for at in range(first + t * n_graphs // nch, first + (t + 1) * n_graphs // nch):
            g = at // group
            slot = at - g * group
            n = sizes[g]
            b = order[at]
            a = ptr[b]
            c = ptr[b + 1] - a
            rs = row_start[g] + slot * n  # the graph's first padded row
            norms = sq[rs : rs + c] if gram else sq
            for i in range(c):
                ds = d_start[g] + (slot * n + i) * n  # its distances (or Gram row) to the graph's nodes
                di = d[ds : ds + c]
                if gram:  # as torch's (sq_i + sq_j) - 2 g_ij, in the arrays' dtype (2 g exactly: g + g)
                    si = sq[rs + i]
                    for j in range(c):
                        row[j] = (si + norms[j]) - (di[j] + di[j])
                    cnt = select_smallest(row, c, i, k, kd, ki, hist, cv, ci, neighbour_bound(row, i, k, out, a))
                else:
                    cnt = select_smallest(di, c, i, k, kd, ki, hist, cv, ci, neighbour_bound(di, i, k, out, a))
                for s in range(cnt):
                    out[a + i, s] = a + ki[s]
                for s in range(cnt, k):
                    out[a + i, s] = a + i


def smallest_in_groups(
    d: np.ndarray,
    ptr: np.ndarray,
    k: int,
    layout: GroupLayout,
    sq: np.ndarray | None = None,
    groups: tuple[int, int] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The k nearest neighbours of the nodes of graphs laid out in padded groups (``layout``): ``d`` flat, group g's
    ``[G, n, n]`` distances (or Gram matrix, with ``sq`` flat, its ``[G, n]`` squared norms at the group's padded rows)
    from ``d_start[g]``. Returns ``out``, int64 ``[ptr[-1], k]`` (new if None), filled for the nodes of the groups
    ``groups = (first, stop)`` (default all) as :func:`smallest_per_row` fills it: global indices ``ptr[b] + j``,
    nearest first, ties to the lower index, self-filled. Called group by group right after each group's product,
    the distances are read while in cache."""
    first, stop = groups if groups is not None else (0, len(layout.sizes))
    if k < 1:
        raise ValueError("k must be >= 1")
    if not 0 <= first <= stop <= len(layout.sizes):
        raise ValueError(f"groups must be within 0..{len(layout.sizes)}, got {first}..{stop}")
    n_d, n_rows = int(layout.d_start[-1]), int(layout.row_start[-1])
    if d.ndim != 1 or d.shape[0] != n_d or (sq is not None and sq.shape != (n_rows,)):
        raise ValueError(f"d must be flat [{n_d}] and sq [{n_rows}] (the layout's)")
    if out is None:
        out = np.empty((int(ptr[-1]), int(k)), np.int64)
    elif out.shape != (ptr[-1], k) or out.dtype != np.int64:
        raise ValueError(f"out must be int64 [{ptr[-1]}, {k}]")
    norms = np.ascontiguousarray(sq) if sq is not None else np.empty(0, d.dtype)
    a, b = first * layout.group, min(stop * layout.group, len(layout.order))
    ptr = np.ascontiguousarray(ptr, dtype=np.int64)
    sizes, starts = layout.sizes, (layout.row_start, layout.d_start)
    with pool_for(b - a):
        _smallest_in_groups(
            np.ascontiguousarray(d), norms, sq is not None, ptr, layout.order, layout.group, sizes, *starts, int(k),
            out, a, b, n_chunks(b - a),
        )  # fmt: skip
    return out


def smallest_per_row(d: np.ndarray, counts: np.ndarray, k: int, sq: np.ndarray | None = None) -> np.ndarray:
    """The k nearest neighbours of every node of a batch of graphs, given their padded distances.

    ``d [B, n, n]`` (float32 or float64): ``d[b, i, j]`` the distance from node i to node j of graph b, whose
    ``counts[b] <= n`` nodes fill the first slots (the rest is padding and never read). Returns int64
    ``[sum(counts), k]``: for each node (graph after graph) the flat indices ``starts[b] + j`` of its k
    nearest other nodes, nearest first, ties to the lower index (as ONNX TopK and a stable sort); a node
    with fewer than k other nodes at finite distance fills the remaining slots with itself. Parallel over
    graphs (serial below :data:`~frameproducers.kernels.params.SERIAL_BELOW` graphs).

    With ``sq [B, n]`` (the squared norms of the nodes' features ``p``), ``d`` is their Gram matrix ``p p^T``
    and the distance is ``(sq_i + sq_j) - 2 d_ij``, formed a row at a time in ``d``'s dtype: the same values as
    torch's ``sq[:, :, None] + sq[:, None] - 2.0 * d`` without its three passes over ``[B, n, n]``. (The batch
    is one group of :func:`smallest_in_groups`, in its own order.)
    """
    if d.ndim != 3 or d.shape[1] != d.shape[2]:
        raise ValueError(f"d must be [B, n, n], got shape {d.shape}")
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    if counts.shape != (d.shape[0],) or (counts < 0).any() or (counts > d.shape[1]).any():
        raise ValueError(f"counts must be [B] = [{d.shape[0]}] values in 0..{d.shape[1]}")
    if sq is not None and (sq.shape != d.shape[:2] or sq.dtype != d.dtype):
        raise ValueError(f"sq must be {d.dtype} [B, n] = {list(d.shape[:2])}, got {sq.dtype} {list(sq.shape)}")
    n_graphs, n = d.shape[:2]
    one = GroupLayout(
        np.arange(n_graphs), max(n_graphs, 1), np.array([n]), np.array([0, n_graphs * n]),
        np.array([0, n_graphs * n * n]), np.zeros(0, np.int64),
    )  # fmt: skip
    ptr = np.concatenate([[0], np.cumsum(counts)])
    flat_sq = None if sq is None else np.ascontiguousarray(sq).reshape(-1)
    return smallest_in_groups(np.ascontiguousarray(d).reshape(-1), ptr, k, one, flat_sq)
