"""Sparse form of dense jet frames: the non-zero pixels, as written to ROOT and kept by training datasets.

The numba kernels live with the product (not with the producers that make frames), so writers and datasets
need nothing above ``dataformats``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange


class FramePixels(NamedTuple):
    """Non-zero pixels of frames in (jet, channel, row, col) order; ``counts`` per jet, the rest per pixel."""

    counts: np.ndarray  # int64 [n_jets]
    channel: np.ndarray  # int16 (8-bit integer arrays read as strings in ROOT's TTree::Draw)
    row: np.ndarray  # int16
    col: np.ndarray  # int16
    value: np.ndarray  # float32


@njit(parallel=True, cache=True)
def _count_frame_pixels(data, counts):
    for j in prange(data.shape[0]):
        n = 0
        for c in range(data.shape[1]):
            for r in range(data.shape[2]):
                for q in range(data.shape[3]):
                    if data[j, c, r, q] != 0.0:
                        n += 1
        counts[j] = n


@njit(parallel=True, cache=True)
def _fill_frame_pixels(data, offsets, channel, row, col, value):
    for j in prange(data.shape[0]):
        i = offsets[j]
        for c in range(data.shape[1]):
            for r in range(data.shape[2]):
                for q in range(data.shape[3]):
                    v = data[j, c, r, q]
                    if v != 0.0:
                        channel[i] = c
                        row[i] = r
                        col[i] = q
                        value[i] = v
                        i += 1


def frame_pixels(data: np.ndarray) -> FramePixels:
    """Non-zero pixels of frames float32 [n_jets, C, H, W] in (jet, channel, row, col) order, as np.nonzero.

    Parallel over jets (two passes: count, then fill). Returns :class:`FramePixels`.
    """
    data = np.ascontiguousarray(data, dtype=np.float32)
    n = data.shape[0]
    counts = np.empty(n, dtype=np.int64)
    _count_frame_pixels(data, counts)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    total = int(offsets[-1])
    channel = np.empty(total, dtype=np.int16)
    row = np.empty(total, dtype=np.int16)
    col = np.empty(total, dtype=np.int16)
    value = np.empty(total, dtype=np.float32)
    _fill_frame_pixels(data, offsets, channel, row, col, value)
    return FramePixels(counts, channel, row, col, value)
