"""The whole chunked EdgeConv edge MLP in one numba call, its products by a BLAS ``sgemm_`` given by address.

:func:`taggers.models.particlenet._edge_mlp_fused` runs, per chunk of edges, a gather kernel, then for each hidden
layer a torch product and an epilogue kernel: ~6 calls from Python per chunk, each taking the GIL back from the other
micro-batch threads (on 2 threads ~11% of the GNN's time went to waiting for it) and paying torch's dispatch.
:func:`edge_mlp_chunks` runs the same steps, in the same order, on the same buffers, as one ``nogil`` call: the
products call the ``sgemm_`` that torch's own ``mm``/``addmm`` call (its address passed in, found and checked by the
caller: :func:`taggers.models.particlenet._torch_sgemm`) with the arguments torch passes, so every value is the same
bit for bit. The address is an argument, never a compiled-in constant, so the kernel caches across processes.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from frameproducers.kernels.edge_mlp import bias_relu, bias_relu_mean_add, gather_add_relu


@intrinsic
def _call_sgemm(typingctx, fn, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Call the Fortran ``sgemm_`` at address ``fn`` with 13 pointer arguments given as integers (``ctypes.data``)."""
    sig = types.void(*([types.uintp] * 14))

    def codegen(context, builder, signature, args):
        ptr = ir.IntType(8).as_pointer()
        fn_type = ir.FunctionType(ir.VoidType(), [ptr] * 13)
        callee = builder.inttoptr(args[0], fn_type.as_pointer())
        builder.call(callee, [builder.inttoptr(v, ptr) for v in args[1:]])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def sgemm_rows(sgemm, e, w, y, accumulate, ints, floats, trans):
    """``y = e @ w`` (``accumulate``: ``y += e @ w``, as ``addmm`` after copying its bias into ``y``) for row-major
    float32 ``e [m, K]``, ``w [K, N]``, ``y [m, N]``, by the BLAS ``sgemm_`` at address ``sgemm``, called as torch
    calls it for a row-major result: the column-major ``y^T = w^T e^T``. Scratch: ``ints`` int32 [6], ``floats``
    float32 [2], ``trans`` uint8 [1] (``'n'``)."""
    if e.shape[1] != w.shape[0] or y.shape[0] != e.shape[0] or y.shape[1] != w.shape[1]:
        raise ValueError("sgemm_rows: shapes e [m, K], w [K, N], y [m, N] expected")
    if not (_dense(e) and _dense(w) and _dense(y)):  # BLAS reads them by their leading dimension
        raise ValueError("sgemm_rows: float32 row-major contiguous arrays expected")
    ints[0] = w.shape[1]
    ints[1] = e.shape[0]
    ints[2] = e.shape[1]
    ints[3] = w.shape[1]
    ints[4] = e.shape[1]
    ints[5] = y.shape[1]
    floats[0] = 1.0
    floats[1] = 1.0 if accumulate else 0.0
    i, f, t = ints.ctypes.data, floats.ctypes.data, trans.ctypes.data  # int32: 4 bytes apart
    a, b, c = w.ctypes.data, e.ctypes.data, y.ctypes.data
    _call_sgemm(sgemm, t, t, i, i + 4, i + 8, f, a, i + 12, b, i + 16, f + 4, c, i + 20)


@njit(cache=True, nogil=True, inline="always")
def _dense(x):
    """Whether the 2-d float32 ``x`` is row-major and dense (rows ``x.shape[1]`` elements apart)."""
    return x.strides[1] == 4 and x.strides[0] == 4 * x.shape[1]


@njit(cache=True, nogil=True, error_model="numpy")
def edge_mlp_chunks(
    sgemm, a, index, b, k, weights_t, biases, after, rows, min_rows, e0, e1, out, b_shift, out_shift, scratch
):
    """The edge MLP of an EdgeConv block over all nodes, ``rows`` nodes (``rows * k`` edges) at a time, its mean
    added to ``out`` (:func:`~taggers.models.particlenet._edge_mlp_fused`, whose torch products and kernel calls this
    makes in the same order): per chunk :func:`gather_add_relu` into ``e0``; for each layer ``l`` the product
    ``e @ weights_t[l]`` into the other buffer (at least ``min_rows`` rows; ``after[l]``: the bias added after it by
    the epilogue, else copied in before it, as ``addmm``), then :func:`bias_relu`, or for the last layer
    :func:`bias_relu_mean_add` into ``out``. ``a`` ``[nodes, W]`` (the neighbour's term), ``index`` ``[nodes * k]``
    (checked by the caller), ``b``, ``out`` ``[nodes, W]``; ``weights_t [L >= 1, W, W]``, ``biases [L, W]``;
    ``e0``, ``e1`` ``[>= max(rows * k, min_rows), W]``; ``b_shift``, ``out_shift``: as
    :func:`bias_relu_mean_add`'s, or None. ``scratch``: ``(ints, floats, trans)`` of :func:`sgemm_rows`."""
    ints, floats, trans = scratch
    n_layers = weights_t.shape[0]
    width = a.shape[1]
    n = b.shape[0]
    need = max(min(rows, n) * k, min_rows)
    if not (
        n_layers >= 1
        and rows >= 1
        and b.shape[1] == width
        and out.shape[0] == n
        and out.shape[1] == width
        and weights_t.shape[1] == width
        and weights_t.shape[2] == width
        and biases.shape[0] == n_layers
        and biases.shape[1] == width
        and index.shape[0] == n * k
        and e0.shape[0] >= need
        and e1.shape[0] >= need
        and e0.shape[1] == width
        and e1.shape[1] == width
    ):  # the kernels write through these shapes unchecked
        raise ValueError("edge_mlp_chunks: inconsistent shapes")
    zeros = np.zeros(width, np.float32)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        m = (stop - start) * k
        p = max(m, min_rows)
        e = e0[:p]
        gather_add_relu(a, index[start * k : stop * k], b[start:stop], k, e, b_shift)
        for layer in range(n_layers):
            y = e1[:p] if layer % 2 == 0 else e0[:p]
            if not after[layer]:
                for r in range(p):
                    y[r] = biases[layer]
            sgemm_rows(sgemm, e, weights_t[layer], y, not after[layer], ints, floats, trans)
            shift = biases[layer] if after[layer] else zeros
            if layer < n_layers - 1:
                bias_relu(y[:m], shift)
            else:
                bias_relu_mean_add(y, shift, k, out[start:stop], out_shift)
            e = y
