"""Dense per-event detector maps (MLAnalyzer ``RHTree`` layout) to sparse cells, and back.

A dense map holds ``height x width`` values per event, flat and row-major (``cell = ieta * width + iphi``), as
MLAnalyzer's ``RecHitAnalyzer`` stores ``ECAL_energy`` (280 x 360) or ``HBHE_energy`` (56 x 72). A chunk of
``n`` events is one flat array of ``n * height * width`` values. :func:`sparse_cells` finds, per event, the cells
where a map is non-zero (in cell order) and the values there, in numba, in one pass over the chunk that tests
blocks of cells at once and skips the empty ones; :func:`gather` reads another map of the same grid at those
cells. :func:`dense_from_cells` is the inverse (used to write RHTree-format files from sparse hits).
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: The bits of a float32 other than its sign: a value is zero (0.0 or -0.0) when these are all clear.
_MAGNITUDE = np.uint32(0x7FFFFFFF)
#: Cells tested at once before looking at each (a vectorisable OR over the block; most blocks are empty).
_BLOCK = 32


@njit(cache=True, inline="always")
def _emit(bits, values, base, start, stop, cells, out, j, capacity):
    """Append the non-zero cells of ``start:stop`` (event offset ``base``); -1 when the buffer is full."""
    for i in range(start, stop):
        if bits[base + i] & _MAGNITUDE:
            if j == capacity:
                return -1
            cells[j] = i
            out[j] = values[base + i]
            j += 1
    return j


@njit(cache=True)
def _sparse(bits, values, n_events, size, offsets, cells, out, capacity):
    """One pass: non-zero cells and their values, event by event; returns the number found, or -1 when more
    than ``capacity`` (the caller retries with a larger buffer). Blocks of ``_BLOCK`` cells are tested with one
    OR over a fixed-length run (vectorised) and skipped when empty."""
    j = 0
    offsets[0] = 0
    full = size - size % _BLOCK
    for e in range(n_events):
        base = e * size
        for start in range(0, full, _BLOCK):
            acc = np.uint32(0)
            for k in range(_BLOCK):
                acc |= bits[base + start + k]
            if acc & _MAGNITUDE:
                if j + _BLOCK > capacity:
                    return -1
                for k in range(_BLOCK):  # branch-free: write every cell, advance past the non-zero ones
                    i = start + k
                    cells[j] = i
                    out[j] = values[base + i]
                    j += (bits[base + i] & _MAGNITUDE) != 0
        j = _emit(bits, values, base, full, size, cells, out, j, capacity)
        if j < 0:
            return -1
        offsets[e + 1] = j
    return j


def sparse_cells(dense: np.ndarray, n_events: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per event, the cells where a dense map is non-zero (in cell order) and its values there.

    ``dense``: ``n_events * size`` values (one chunk of a dense branch, row-major; cast to float32). Returns
    ``(offsets, cells, values)``: int64 ``[n_events + 1]``, int64 cell numbers ``0..size-1`` and float32. -0.0
    counts as zero; NaN as non-zero (so a value check sees it).
    """
    arr = np.ascontiguousarray(dense, dtype=np.float32)
    if arr.shape != (n_events * size,):
        raise ValueError(f"a dense map chunk has {arr.size} values, expected {n_events} x {size}")
    bits = arr.view(np.uint32)
    offsets = np.zeros(n_events + 1, dtype=np.int64)
    most = arr.size + _BLOCK  # the branch-free block fill needs room for a whole block past the last cell
    capacity = min(most, max(1024, arr.size // 16))
    while True:
        cells = np.empty(capacity, dtype=np.int64)
        values = np.empty(capacity, dtype=np.float32)
        n = _sparse(bits, arr, n_events, size, offsets, cells, values, capacity)
        if n >= 0:
            return offsets, cells[:n].copy(), values[:n].copy()
        capacity = min(most, capacity * 4)


def gather(dense: np.ndarray, offsets: np.ndarray, cells: np.ndarray, size: int) -> np.ndarray:
    """Values of one dense map chunk at the cells of :func:`sparse_cells` (same order)."""
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
