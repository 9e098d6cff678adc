"""Mostly-empty model inputs sent to a device as their non-zero elements (taggers/transfer.py): the flat non-zero
kernel against numpy, and the array rebuilt bit for bit (on the CPU here; on CUDA in tests/test_taggers_gpu.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dataformats import sparse
from dataformats.sparse import FLAT_CHUNK, count_flat_nonzero, flat_nonzero
from taggers import transfer
from taggers.inputs import INPUT_KINDS


def _sparse_array(shape: tuple[int, ...], density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.zeros(shape, np.float32)
    flat = a.reshape(-1)
    hit = rng.random(flat.size) < density
    flat[hit] = rng.normal(size=int(hit.sum())).astype(np.float32)
    if flat.size > 10:  # bit patterns that compare equal to zero or to nothing: kept, not dropped
        flat[[1, 5, flat.size - 1]] = [-0.0, np.nan, np.float32(1e-45)]
    return a


@pytest.mark.parametrize(
    "shape, density",
    [((3, 8, 125, 125), 0.036), ((1,), 0.0), ((0, 8, 5, 5), 0.1), ((2, FLAT_CHUNK + 7), 0.5), ((4, 3, 7), 1.0)],
)
def test_flat_nonzero_matches_numpy_bit_for_bit(shape, density):
    a = _sparse_array(shape, density, seed=len(shape))
    bits = a.reshape(-1).view(np.uint32)
    expected = np.flatnonzero(bits)
    nz = flat_nonzero(a)
    assert nz.position.dtype == np.int32
    np.testing.assert_array_equal(nz.position, expected)
    np.testing.assert_array_equal(nz.value.view(np.uint32), bits[expected])
    assert count_flat_nonzero(a).sum() == expected.size
    rebuilt = np.zeros(a.size, np.float32)
    rebuilt[nz.position] = nz.value
    np.testing.assert_array_equal(rebuilt.view(np.uint32), bits)


def test_flat_nonzero_refuses_other_dtypes():
    with pytest.raises(TypeError, match="float32 arrays only, got float64"):
        flat_nonzero(np.zeros(4))


@pytest.mark.parametrize("density", [0.036, 0.2, 0.6])
def test_to_device_rebuilds_the_array_bit_for_bit(monkeypatch, density):
    """Sparse when marked, large and empty enough, dense otherwise; the same array either way."""
    calls = []
    real = sparse.flat_nonzero
    monkeypatch.setattr(transfer, "flat_nonzero", lambda *a: calls.append(1) or real(*a))
    a = _sparse_array((6, 8, 125, 125), density, seed=3)
    for marked in (True, False):
        t = transfer.to_device(a, "cpu", sparse=marked)
        assert t.dtype == torch.float32 and tuple(t.shape) == a.shape
        np.testing.assert_array_equal(t.numpy().view(np.uint32), a.view(np.uint32))
    assert len(calls) == (1 if density <= transfer.MAX_DENSITY else 0)  # only the marked, empty-enough one
    small = _sparse_array((2, 8, 10, 10), 0.03, seed=4)  # under MIN_BYTES: copied as it is
    np.testing.assert_array_equal(transfer.to_device(small, "cpu", sparse=True).numpy(), small)
    assert len(calls) == (1 if density <= transfer.MAX_DENSITY else 0)


def test_frames_are_the_sparse_input():
    assert INPUT_KINDS["frames"].sparse_inputs == ("frames",)
    assert all(not kind.sparse_inputs for name, kind in INPUT_KINDS.items() if name != "frames")
