"""Model inputs to a CUDA device: mostly-empty arrays (jet frames) sent as their non-zero elements.

A tau_cnn frame is 0.5 MB (8 x 125 x 125 float32) of which ~3.6 % is non-zero. Copied dense from pageable memory,
the frames were the CNN job's whole tagger stage on an H200 (63 of 67 us per jet; the ResNet itself 9). Sent as
(int32 flat index, float32 value) pairs, 8 bytes per non-zero element, and scattered into zeros on the device,
they arrive as the same array bit for bit (every bit pattern other than +0.0 is sent: -0.0 and NaN too); finding
them takes two parallel passes over the array on the CPU (:func:`dataformats.sparse.flat_nonzero`: a count, then
the fill). On the H200 host (16 threads) the CNN's tagger stage went from 79.0 to 40.0 us per jet (README "On a
GPU"). ONNX Runtime sessions take numpy arrays and still copy dense.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dataformats.sparse import count_flat_nonzero, flat_nonzero

#: send marked inputs as their non-zero elements (benchmarks switch it off to compare)
ENABLED = True
#: only float32 arrays of at least this many bytes (below it the copy is cheap and the scan is not)
MIN_BYTES = 1 << 20
#: only when at most this fraction of the elements is non-zero (the pairs are then at most half the dense bytes)
MAX_DENSITY = 0.25


def to_device(value: np.ndarray, device: Any, sparse: bool = False) -> Any:
    """``torch.from_numpy(value).to(device)``; with ``sparse`` (an input marked so by its kind) a large, mostly
    empty float32 array goes as its non-zero elements and is rebuilt there, bit for bit."""
    import torch

    if not (sparse and ENABLED and value.dtype == np.float32 and value.nbytes >= MIN_BYTES):
        return torch.from_numpy(value).to(device)
    value = np.ascontiguousarray(value)
    counts = count_flat_nonzero(value)
    if int(counts.sum()) > MAX_DENSITY * value.size:
        return torch.from_numpy(value).to(device)
    nz = flat_nonzero(value, counts)
    out = torch.zeros(value.shape, dtype=torch.float32, device=device)
    out.view(-1).index_put_((torch.from_numpy(nz.position).to(device).long(),), torch.from_numpy(nz.value).to(device))
    return out
