"""ParticleNet's EdgeConv edge MLP on CUDA as one fused Triton kernel: no ``[nodes, k, width]`` tensor in memory.

The torch form on a GPU (:meth:`taggers.models.particlenet.EdgeConvBlock.forward`) writes and reads the edge
tensor several times per block: the gather of the neighbours' terms, the addition of the node's term, a ReLU
after each product and the mean. On an H200 those passes were ~75 % of tau_gnn's kernel time (gather 33 %,
ReLU 14 %, products 20 %, additions 8.5 %; README "On a GPU"). Here each Triton program takes a block of nodes and
their k edges, and keeps the edge rows in registers from the gather to the mean:

    h = relu(a[neighbors] + b)            # the first layer, decomposed as in EdgeConvBlock (per-node products)
    h = relu(h @ W_l + bias_l)            # each later layer: tl.dot in IEEE float32 (no TF32)
    out = relu(mean_k(h) + shortcut)

The same operations in float32 as the torch form; the summation orders differ (tau_gnn's scores 1.2e-6 from the
CPU's, the torch form's 9.5e-7; tests/test_edgeconv_fused.py). tau_gnn alone on an H200: 292k-302k jets/s against
146k-147k in the torch form, measured in the same runs (benchmarks/bench_gpu.py). Used only on CUDA, in inference
(no gradients, not exporting, no autocast), when Triton imports (PyTorch's CUDA wheels ship it); set
:data:`ENABLED` to False for the torch form.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Any

import torch
from torch import Tensor

#: use the fused kernel on CUDA when Triton is available (benchmarks and tests switch it off to compare)
ENABLED = True

#: edge rows (nodes x k, k padded to a power of two) per Triton program, by padded width
BLOCK_ROWS = {16: 128, 32: 128, 64: 128, 128: 64}
#: warps per program
NUM_WARPS = 8
#: widest block the kernel takes (its ``[width, width]`` weight tiles live in registers); wider: the torch form
MAX_WIDTH = 128


@functools.cache
def _kernel() -> Any:
    """The Triton kernel, compiled on first use (None where Triton does not import)."""
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None

    @triton.jit
    def edge_mlp(
        a_ptr, b_ptr, nb_ptr, w_ptr, bias_ptr, sc_ptr, out_ptr, n_nodes,
        K: tl.constexpr, KP: tl.constexpr, W: tl.constexpr, WP: tl.constexpr, NODES: tl.constexpr,
        LAYERS: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0)
        rows = tl.arange(0, NODES * KP)
        node = pid * NODES + rows // KP
        slot = rows % KP
        valid = (node < n_nodes) & (slot < K)
        cols = tl.arange(0, WP)
        col_ok = cols < W
        nbr = tl.load(nb_ptr + node.to(tl.int64) * K + slot, mask=valid, other=0).to(tl.int64)
        mask = valid[:, None] & col_ok[None, :]
        h = tl.load(a_ptr + nbr[:, None] * W + cols[None, :], mask=mask, other=0.0)
        h += tl.load(b_ptr + node.to(tl.int64)[:, None] * W + cols[None, :], mask=mask, other=0.0)
        h = tl.maximum(h, 0.0)
        wrow = tl.arange(0, WP)
        wmask = (wrow < W)[:, None] & col_ok[None, :]
        for layer in tl.static_range(LAYERS):
            w = tl.load(w_ptr + layer * W * W + wrow[:, None] * W + cols[None, :], mask=wmask, other=0.0)
            bias = tl.load(bias_ptr + layer * W + cols, mask=col_ok, other=0.0)
            h = tl.dot(h, w, input_precision="ieee") + bias[None, :]
            h = tl.maximum(h, 0.0)
        h = tl.where(valid[:, None], h, 0.0)
        total = tl.sum(tl.reshape(h, (NODES, KP, WP)), axis=1)
        out_node = pid * NODES + tl.arange(0, NODES)
        out_mask = (out_node < n_nodes)[:, None] & col_ok[None, :]
        offs = out_node.to(tl.int64)[:, None] * W + cols[None, :]
        shortcut = tl.load(sc_ptr + offs, mask=out_mask, other=0.0)
        tl.store(out_ptr + offs, tl.maximum(total / K + shortcut, 0.0), mask=out_mask)

    return edge_mlp


def available(x: Tensor) -> bool:
    """Whether the fused kernel runs for ``x``: CUDA float32 outside autocast (bf16 autocast keeps the torch form),
    :data:`ENABLED`, and Triton imports."""
    return (
        ENABLED
        and x.is_cuda
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cuda")
        and _kernel() is not None
    )


def used_by(model: Any) -> bool:
    """Whether ``model`` (a torch module on CUDA) runs EdgeConv blocks through the fused kernel."""
    from taggers.models.particlenet import EdgeConvBlock

    if not isinstance(model, torch.nn.Module) or not ENABLED or _kernel() is None:
        return False
    return any(isinstance(m, EdgeConvBlock) for m in model.modules())


def _pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def edge_mlp(
    a: Tensor, b: Tensor, neighbors: Tensor, layers: tuple[Tensor, Tensor] | None, shortcut: Tensor
) -> Tensor | None:
    """``relu(mean_j mlp(relu(a[neighbors[i, j]] + b[i])) + shortcut[i])`` per node ``i``, ``[N, width]``.

    ``a``, ``b``, ``shortcut``: ``[N, width]`` float32 on CUDA (the first layer's neighbour and node terms, the
    shortcut, batch norms folded in); ``neighbors [N, k]`` indices into ``a``'s rows (checked: one reduction and a
    synchronisation per call); ``layers``: the later layers stacked, ``(W^T [L, width, width], bias [L, width])``
    (contiguous; None for none).

    None (the caller runs the torch form) for widths over :data:`MAX_WIDTH`, or when Triton cannot compile the
    kernel here: then a warning names the cause once and the kernel stays off in this process."""
    global ENABLED
    n, k = neighbors.shape
    width = a.shape[1]
    if width > MAX_WIDTH:
        return None
    out = torch.empty_like(shortcut)
    if n == 0:
        return out
    lo, hi = torch.stack(torch.aminmax(neighbors)).tolist()
    if lo < 0 or hi >= a.shape[0]:
        raise IndexError(f"EdgeConv: neighbour indices outside 0..{a.shape[0] - 1} (the micro-batch's nodes)")
    # (no later layer: the kernel still needs valid pointers, which no layer reads)
    weights, biases = layers if layers is not None else (a.new_zeros(1), a.new_zeros(1))
    kp, wp = _pow2(k), max(16, _pow2(width))
    nodes = max(1, BLOCK_ROWS.get(wp, 32) // kp)
    if nodes * kp < 16:  # tl.dot needs at least 16 rows
        nodes = _pow2(-(-16 // kp))
    grid = (-(-n // nodes),)
    try:
        # Triton launches on the current CUDA device: make it the tensors' (the interpreter runs on the CPU)
        with torch.cuda.device(a.device) if a.is_cuda else contextlib.nullcontext():
            _kernel()[grid](
                a.contiguous(), b.contiguous(), neighbors.contiguous(), weights, biases, shortcut.contiguous(), out,
                n, K=k, KP=kp, W=width, WP=wp, NODES=nodes, LAYERS=0 if layers is None else len(weights),
                num_warps=NUM_WARPS,
            )  # fmt: skip
    except Exception as err:
        if not type(err).__module__.startswith("triton"):
            raise
        ENABLED = False
        cause = " ".join(str(err).split())[:200]
        warnings.warn(f"EdgeConv: the fused Triton kernel failed ({type(err).__name__}: {cause}); using the torch "
                      "form on CUDA in this process", RuntimeWarning, stacklevel=2)  # fmt: skip
        return None
    return out
