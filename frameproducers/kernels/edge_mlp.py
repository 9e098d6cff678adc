"""The elementwise steps of the EdgeConv edge MLP at inference on CPU, each fused into one pass (numba).

:meth:`taggers.models.particlenet.EdgeConvBlock._forward_in_chunks` runs the MLP over a chunk of edges
(``k`` consecutive edges per node) as matrix products (torch) between these kernels. Each replaces two or
three torch passes over the chunk's ``[edges, width]`` intermediates (a gather, an add and a clamp; the
bias that ``addmm`` copies into its output before the product and the clamp after it; a clamp and a mean) by
one, with the same float32 operations in the same order, so the scores do not change (tested bit for bit
against the torch form). ReLU is ``clamp(min=0)``: NaN stays NaN. ``nogil``: torch's micro-batch threads run
them concurrently. Shapes: ``a``, ``b``, ``out`` ``[nodes, width]``, ``y``, ``e`` ``[nodes * k, width]``.

``precision: bf16`` (the products in bfloat16) passes ``e`` and ``y`` as bfloat16 bit patterns (uint16; numba has
no bfloat16) to :func:`gather_add_relu` and :func:`mean_add_bf16`: rounded from float32 to nearest even as torch
rounds (NaN stays NaN); every sum is float32.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload


@njit(cache=True, nogil=True, error_model="numpy")
def gather_add_relu(a, index, b, k, e, b_shift=None):
    """``e[i * k + j] = relu(a[index[i * k + j]] + b[i])``: the first layer of the edge MLP, the neighbour's term
    gathered and the node's own term added (``b`` carries the bias, or ``b_shift [width]`` does: then
    ``b[i] + b_shift`` first, as ``addmm`` rounds it when it adds its bias after the product). ``e`` float32, or
    uint16 for bfloat16: the sum and the ReLU in float32, then rounded once (:func:`to_bf16`)."""
    zero = np.float32(0)
    width = a.shape[1]
    node = np.empty(width, np.float32)
    for i in range(b.shape[0]):
        if b_shift is None:
            node[:] = b[i]
        else:
            for c in range(width):
                node[c] = b[i, c] + b_shift[c]
        for j in range(k):
            r = i * k + j
            src = index[r]
            for c in range(width):
                v = a[src, c] + node[c]
                _store(e, r, c, zero if v < zero else v)


@njit(cache=True, nogil=True)
def indices_within(index, n):
    """Whether every entry of the integer array ``index`` lies in ``0..n-1`` (one pass; the kernels that gather by
    it do not check their reads)."""
    low = 0
    high = n - 1
    for v in index:
        low = min(low, v)
        high = max(high, v)
    return low >= 0 and high < n


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
def bias_relu_mean_add(y, bias, k, out, out_shift=None):
    """``out[i] += mean_j relu(y[i * k + j] + bias)``: the last layer's epilogue and the mean over the k edges of
    each node, added to ``out`` (the shortcut); the sum runs over j in order, then divides by k. With ``out_shift
    [width]`` (the shortcut's bias, not yet in ``out``): ``out[i] = relu((out[i] + out_shift) + mean)``, the block's
    output finished (as ``addmm`` rounds its bias added after the product)."""
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
        if out_shift is None:
            for c in range(width):
                out[i, c] += acc[c] / kf
        else:
            for c in range(width):
                v = (out[i, c] + out_shift[c]) + acc[c] / kf
                out[i, c] = zero if v < zero else v


@intrinsic
def _float_bits(typingctx, x):
    """The bit pattern of a float32 as uint32 (a register move)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def _bits_float(typingctx, x):
    """The float32 of a uint32 bit pattern."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def to_bf16(v):
    """The bfloat16 (uint16 bits) nearest to the float32 ``v``, ties to even (as torch's conversion); NaN: a NaN."""
    bits = _float_bits(v)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    return np.uint16(np.uint32(0x7FC0) if v != v else rounded)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def from_bf16(u):
    """The float32 value of a bfloat16 (uint16 bits): exact."""
    return _bits_float(np.uint32(u) << np.uint32(16))


def _store(e, r, c, v):
    """``e[r, c] = v`` for a float32 ``v``: as it is into float32 ``e``, rounded to bfloat16 into uint16 ``e``."""
    raise NotImplementedError("compiled only")  # pragma: no cover


@overload(_store, inline="always")
def _store_by_dtype(e, r, c, v):
    if e.dtype == types.uint16:

        def to_bits(e, r, c, v):
            e[r, c] = to_bf16(v)

        return to_bits

    def as_is(e, r, c, v):
        e[r, c] = v

    return as_is


@njit(cache=True, nogil=True, error_model="numpy")
def mean_add_bf16(y, k, out):
    """``out[i] += mean_j y[i * k + j]`` for bfloat16 ``y`` (uint16 bits; the last layer's output after its fused
    bias and ReLU): summed in float32 over j in order, then divided by k."""
    zero = np.float32(0)
    kf = np.float32(k)
    width = y.shape[1]
    acc = np.empty(width, np.float32)
    for i in range(out.shape[0]):
        acc[:] = zero
        for j in range(k):
            r = i * k + j
            for c in range(width):
                acc[c] += from_bf16(y[r, c])
        for c in range(width):
            out[i, c] += acc[c] / kf
