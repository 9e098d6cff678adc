"""Sparse form of dense jet frames: the non-zero pixels, as written to ROOT and kept by training datasets, and the
flat non-zero elements that taggers/transfer.py sends to a GPU.

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


class FlatNonzero(NamedTuple):
    """The non-zero elements of an array (bit patterns other than +0.0: -0.0 and NaN are kept) in flat order."""

    position: np.ndarray  # int32 where the array has fewer than 2**31 elements, else int64
    value: np.ndarray  # float32


#: elements per chunk of :func:`flat_nonzero` (its unit of parallel work)
FLAT_CHUNK = 1 << 16


@njit(cache=True)
def _count_nonzero(bits):
    """Non-zero elements of one chunk (a loop LLVM vectorises; 5x faster than counting behind a branch)."""
    k = 0
    for i in range(bits.shape[0]):
        k += bits[i] != 0
    return k


@njit(parallel=True, cache=True)
def _count_flat_nonzero(bits, chunk, counts):
    n = bits.shape[0]
    for c in prange(counts.shape[0]):
        counts[c] = _count_nonzero(bits[c * chunk : min(n, (c + 1) * chunk)])


@njit(cache=True)
def _fill_nonzero(bits, values, first, k, end, position, value):
    """One chunk's non-zero elements into ``position[k:end]``, ``value[k:end]`` (``first``: the chunk's flat
    start). Blocks of 16 elements that are all zero are skipped after one OR; the others are written without a
    branch (every element written, the slot advanced by one where it is non-zero) while 16 slots remain before
    ``end`` (the next chunk's first slot, written by another thread), and with a branch after."""
    n16 = bits.shape[0] // 16 * 16
    for s in range(0, n16, 16):
        o = np.uint32(0)
        for q in range(16):
            o |= bits[s + q]
        if o == 0:
            continue
        if k + 16 <= end:
            for q in range(s, s + 16):
                position[k] = first + q
                value[k] = values[q]
                k += bits[q] != 0
        else:
            for q in range(s, s + 16):
                if bits[q] != 0:
                    position[k] = first + q
                    value[k] = values[q]
                    k += 1
    for q in range(n16, bits.shape[0]):
        if bits[q] != 0:
            position[k] = first + q
            value[k] = values[q]
            k += 1


@njit(parallel=True, cache=True)
def _fill_flat_nonzero(bits, values, chunk, offsets, position, value):
    n = bits.shape[0]
    for c in prange(offsets.shape[0] - 1):
        lo, hi = c * chunk, min(n, (c + 1) * chunk)
        _fill_nonzero(bits[lo:hi], values[lo:hi], lo, offsets[c], offsets[c + 1], position, value)


def count_flat_nonzero(data: np.ndarray) -> np.ndarray:
    """Non-zero elements (by bit pattern) of float32 ``data`` per :data:`FLAT_CHUNK` of its flat form, parallel."""
    bits = np.ascontiguousarray(data).reshape(-1).view(np.uint32)
    counts = np.empty(-(-bits.size // FLAT_CHUNK), dtype=np.int64)
    _count_flat_nonzero(bits, FLAT_CHUNK, counts)
    return counts


def flat_nonzero(data: np.ndarray, counts: np.ndarray | None = None) -> FlatNonzero:
    """The non-zero elements of float32 ``data`` (any shape) as flat indices and values, in order: ``out =
    zeros(data.size); out[position] = value`` gives ``data.ravel()`` back bit for bit. Parallel over chunks (two
    passes; ``counts``: the first, from :func:`count_flat_nonzero`, when the caller has it). Not
    :func:`frame_pixels`: that one drops -0.0 and splits each position into (channel, row, col); built on this
    kernel (numpy splitting the positions) it was 1.4x slower on one thread, 2.2x on two, than its own kernel."""
    data = np.ascontiguousarray(data)
    if data.dtype != np.float32:
        raise TypeError(f"flat_nonzero: float32 arrays only, got {data.dtype}")
    flat = data.reshape(-1)
    counts = count_flat_nonzero(data) if counts is None else counts
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    total = int(offsets[-1])
    position = np.empty(total, dtype=np.int32 if flat.size < 2**31 else np.int64)
    value = np.empty(total, dtype=np.float32)
    _fill_flat_nonzero(flat.view(np.uint32), flat, FLAT_CHUNK, offsets, position, value)
    return FlatNonzero(position, value)
