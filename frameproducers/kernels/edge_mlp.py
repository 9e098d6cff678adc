"""The elementwise steps of the EdgeConv edge MLP at inference on CPU, each fused into one pass (numba).

:meth:`taggers.models.particlenet.EdgeConvBlock._forward_in_chunks` runs the MLP over a chunk of edges
(``k`` consecutive edges per node) as matrix products (torch) between these kernels. Each replaces two or
three torch passes over the chunk's ``[edges, width]`` intermediates (a gather, an add and a clamp; the
bias that ``addmm`` copies into its output before the product and the clamp after it; a clamp and a mean) by
one, with the same float32 operations in the same order, so the scores do not change (tested bit for bit
against the torch form). ReLU is ``clamp(min=0)``: NaN stays NaN. ``nogil``: torch's micro-batch threads run
them concurrently. Shapes: ``a``, ``b``, ``out`` ``[nodes, width]``, ``y``, ``e`` ``[nodes * k, width]``.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy")
def gather_add_relu(a, index, b, k, e):
    """``e[i * k + j] = relu(a[index[i * k + j]] + b[i])``: the first layer of the edge MLP, the neighbour's term
    gathered and the node's own term added (``b`` carries the bias)."""
    zero = np.float32(0)
    width = a.shape[1]
    for i in range(b.shape[0]):
        for j in range(k):
            r = i * k + j
            src = index[r]
            for c in range(width):
                v = a[src, c] + b[i, c]
                e[r, c] = zero if v < zero else v


@njit(cache=True, nogil=True, error_model="numpy")
def bias_relu(y, bias):
    """``y = relu(y + bias)`` in place: a hidden layer's epilogue after its product ``y = e @ W``."""
    zero = np.float32(0)
    width = y.shape[1]
    for r in range(y.shape[0]):
        for c in range(width):
            v = y[r, c] + bias[c]
            y[r, c] = zero if v < zero else v


@njit(cache=True, nogil=True, error_model="numpy")
def bias_relu_mean_add(y, bias, k, out):
    """``out[i] += mean_j relu(y[i * k + j] + bias)``: the last layer's epilogue and the mean over the k edges of
    each node, added to ``out`` (the shortcut); the sum runs over j in order, then divides by k."""
    zero = np.float32(0)
    kf = np.float32(k)
    width = y.shape[1]
    acc = np.empty_like(bias)
    for i in range(out.shape[0]):
        acc[:] = zero
        for j in range(k):
            r = i * k + j
            for c in range(width):
                v = y[r, c] + bias[c]
                acc[c] += zero if v < zero else v
        for c in range(width):
            out[i, c] += acc[c] / kf
