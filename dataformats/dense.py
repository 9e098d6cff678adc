"""Dense per-event detector maps (MLAnalyzer ``RHTree`` layout) to sparse cells, and back.

A dense map holds ``height x width`` values per event, flat and row-major (``cell = ieta * width + iphi``), as
MLAnalyzer's ``RecHitAnalyzer`` stores ``ECAL_energy`` (280 x 360) or ``HBHE_energy`` (56 x 72). A chunk of
``n`` events is one flat array of ``n * height * width`` values. :func:`nonzero_cells` finds, per event, the cells
where any of several maps is non-zero (in cell order), in numba, without materialising anything dense beyond
the maps themselves; :func:`gather` then reads each map at those cells. :func:`dense_from_cells` is the
inverse (used to write RHTree-format files from sparse hits).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def _count_union(maps, n_events, size, counts):
    for e in prange(n_events):
        base = e * size
        n = 0
        for i in range(size):
            for k in range(len(maps)):
                if maps[k][base + i] != 0:
                    n += 1
                    break
        counts[e] = n


@njit(parallel=True, cache=True)
def _fill_union(maps, n_events, size, offsets, cells):
    for e in prange(n_events):
        base = e * size
        j = offsets[e]
        for i in range(size):
            for k in range(len(maps)):
                if maps[k][base + i] != 0:
                    cells[j] = i
                    j += 1
                    break


def nonzero_cells(maps: tuple[np.ndarray, ...], n_events: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per event, the cells where any of ``maps`` is non-zero, in cell order.

    ``maps``: 1-D float32 arrays of ``n_events * size`` values each (one chunk of a dense branch, row-major).
    Returns ``(offsets, cells)``: int64 ``[n_events + 1]`` and int64 cell numbers ``0..size-1`` (NaN counts as
    non-zero, so a check after :func:`gather` sees it).
    """
    if not maps:
        raise ValueError("nonzero_cells needs at least one map")
    arrays = tuple(np.ascontiguousarray(m, dtype=np.float32) for m in maps)
    for m in arrays:
        if m.shape != (n_events * size,):
            raise ValueError(f"a dense map chunk has {m.size} values, expected {n_events} x {size}")
    counts = np.zeros(n_events, dtype=np.int64)
    _count_union(arrays, n_events, size, counts)
    offsets = np.zeros(n_events + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    cells = np.empty(offsets[-1], dtype=np.int64)
    _fill_union(arrays, n_events, size, offsets, cells)
    return offsets, cells


def gather(dense: np.ndarray, offsets: np.ndarray, cells: np.ndarray, size: int) -> np.ndarray:
    """Values of one dense map chunk at the cells of :func:`nonzero_cells` (same order)."""
    event = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    return np.asarray(dense)[event * size + cells]


def dense_from_cells(
    offsets: np.ndarray, cells: np.ndarray, values: np.ndarray, size: int, dtype: type = np.float32
) -> np.ndarray:
    """Dense ``[n_events, size]`` maps summing ``values`` at ``cells`` (in input order, in ``dtype``)."""
    n = len(offsets) - 1
    out: np.ndarray = np.zeros(n * size, dtype=dtype)
    event = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
    np.add.at(out, event * size + np.asarray(cells, dtype=np.int64), np.asarray(values, dtype=dtype))
    return out.reshape(n, size)
