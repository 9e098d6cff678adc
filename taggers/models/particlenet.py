"""ParticleNet (Qu & Gouskos 2020) on JetGraphs: EdgeConv blocks with kNN recomputed in feature space.

Block 1 reads the producer's ``neighbors`` (or a kNN on chosen coordinate columns of the raw node features);
every later block recomputes the kNN in its input feature space, per jet (:func:`knn_per_graph`). Exports to
ONNX with dynamic node and jet axes; a jet's logits do not depend on the other jets of its batch (eval mode).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from taggers.models import edgeconv_cuda
from taggers.models.graph_layers import _exporting, knn_per_graph
from taggers.models.networks import MIN_ROWS, JetInputs, StandardisedNet, graph_pool, rowwise


def _linear_bn(x: Tensor, weight: Tensor, bn: nn.BatchNorm1d, bias: bool = True) -> Tensor:
    """``bn(x @ weight.T)`` over the last axis of ``x [..., C]``. In eval mode the batch norm is folded into the
    weights (one pass over the edges instead of two; ONNX Runtime folds it the same way); ``bias=False``
    leaves out its shift (added by the caller)."""
    if bn.training:
        y = F.linear(x, weight)
        return bn(y.reshape(-1, y.shape[-1])).reshape(y.shape)
    return F.linear(x, *_folded_linear(weight, bn, bias))


class EdgeConvBlock(nn.Module):
    """ParticleNet EdgeConv: ``relu(mean_j mlp(x_i, x_j - x_i) + shortcut(x_i))`` over the k neighbours.

    ``mlp``: ``layers`` x (Linear, BatchNorm, ReLU) of width ``width``; shortcut: Linear + BatchNorm. The first
    linear layer acts on ``(x_i, x_j - x_i)`` as ``(W_i - W_j) x_i + W_j x_j``: two per-node products and a
    gather, instead of a product per edge (same weights as a Linear on the concatenated edge features).

    Inference runs the edge MLP in chunks with numba's elementwise kernels on CPU (:meth:`_forward_in_chunks`) and
    as one fused Triton kernel on CUDA (:mod:`taggers.models.edgeconv_cuda`, 2x the torch form on an H200).
    """

    def __init__(self, in_channels: int, width: int, layers: int = 3) -> None:
        super().__init__()
        self.lins = nn.ModuleList(
            nn.Linear(2 * in_channels if i == 0 else width, width, bias=False) for i in range(layers)
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(width) for _ in range(layers))
        self.shortcut = nn.Linear(in_channels, width, bias=False)
        self.shortcut_norm = nn.BatchNorm1d(width)
        self._frozen: _FoldedWeights | None = None
        self.register_load_state_dict_post_hook(EdgeConvBlock._thaw)

    def forward(self, x: Tensor, neighbors: Tensor) -> Tensor:
        """``x [N, C_in]``, ``neighbors [N, k]`` global node indices -> ``[N, width]``."""
        lins, norms = cast(list[nn.Linear], list(self.lins)), cast(list[nn.BatchNorm1d], list(self.norms))
        c, w, bn = x.shape[1], lins[0].weight, norms[0]
        if (
            not bn.training
            and x.is_cpu
            and x.dtype == torch.float32
            and not torch.is_grad_enabled()
            and not _exporting()
            and neighbors.shape[1] > 0  # (no neighbour column: the plain form's mean over none)
        ):
            return self._forward_in_chunks(x, neighbors, lins, norms)
        if not bn.training and not torch.is_grad_enabled() and not _exporting() and edgeconv_cuda.available(x):
            weights = self._folded_weights(c, lins, norms)
            fused = edgeconv_cuda.edge_mlp(
                F.linear(x, *weights.neighbour),
                F.linear(x, *weights.node),
                neighbors,
                weights.stacked,
                F.linear(x, *weights.shortcut),
            )
            if fused is not None:
                return fused
        if bn.training:
            e = F.linear(x, w[:, :c] - w[:, c:]).unsqueeze(1) + F.linear(x, w[:, c:])[neighbors]  # [N, k, width]
            e = bn(e.reshape(-1, e.shape[-1])).reshape(e.shape)
        else:
            e = _linear_bn(x, w[:, c:], bn, bias=False)[neighbors]
            e += _linear_bn(x, w[:, :c] - w[:, c:], bn).unsqueeze(1)
        e = F.relu(e, inplace=True)
        for lin, norm in zip(lins[1:], norms[1:], strict=True):
            e = F.relu(_linear_bn(e, lin.weight, norm), inplace=True)
        return torch.relu(e.mean(dim=1) + _linear_bn(x, self.shortcut.weight, self.shortcut_norm))

    def _forward_in_chunks(
        self, x: Tensor, neighbors: Tensor, lins: list[nn.Linear], norms: list[nn.BatchNorm1d]
    ) -> Tensor:
        """Inference on CPU: the edge MLP over :data:`EDGE_CHUNK` edges at a time, so that its ``[edges, width]``
        intermediates stay in cache instead of streaming the whole micro-batch's edges through memory once per
        layer (2x faster for tau_gnn), its elementwise steps fused into one pass each between the products
        (:func:`_edge_mlp_fused`, 1.2x on one thread; on several, the products use them and the fused passes were
        still faster than torch's threaded steps: 1.05x for 128-jet batches on 2 threads, a single event 3%).
        Each row is computed by the same operations as :meth:`forward`: the same scores, bit for bit
        (tests/test_strong_networks.py, on 1 and 2 threads)."""
        weights = self._folded_weights(x.shape[1], lins, norms)
        a = rowwise(lambda v: F.linear(v, *weights.neighbour), x)  # the neighbour's term, gathered per edge
        k = max(neighbors.shape[1], 1)
        # float32: the biases of the node's term and the shortcut added by the kernels where that rounds the same
        epilogue = None if weights.bf16 is not None else _epilogue_shifts(weights, x.shape[1], neighbors.shape[1])
        node, shortcut = weights.node, weights.shortcut
        if epilogue is not None:  # their products without the bias
            node, shortcut = (node[0], None), (shortcut[0], None)
        b = rowwise(lambda v: F.linear(v, *node), x)  # the node's own term
        out = rowwise(lambda v: F.linear(v, *shortcut), x)
        if weights.bf16 is not None:
            _edge_mlp_bf16(a, b, neighbors, weights.bf16, out, max(1, EDGE_CHUNK_BF16 // k))
        else:
            _edge_mlp_fused(a, b, neighbors, weights.layers, out, max(1, EDGE_CHUNK // k), epilogue, weights.stacked)
        return out.clamp_(min=0) if epilogue is None else out  # (with the epilogue the kernel applied the ReLU)

    def freeze(self, bf16: bool = False) -> None:
        """Fold the eval-mode batch norms into the weights once, for a block whose weights no longer change (an
        inference session: :meth:`taggers.artefact.Artefact.build_torch`). CPU inference then skips ~50 small
        operations per call (~0.2 ms of a single event's ~2 ms), with the same values. ``train()`` and
        ``load_state_dict()`` and conversions (``to()``, ``half()``) undo it; a change of the weights by other means
        (``.data``) needs a new freeze.

        ``bf16``: CPU inference runs the edge MLP's later layers as bfloat16 products (``precision: bf16``,
        :func:`_edge_mlp_bf16`): not the float32 scores."""
        lins, norms = cast(list[nn.Linear], list(self.lins)), cast(list[nn.BatchNorm1d], list(self.norms))
        self._frozen = None  # folded anew
        with torch.no_grad():
            frozen = self._folded_weights(lins[0].weight.shape[1] // 2, lins, norms)
            if bf16:
                layers = [(w.t().contiguous().bfloat16(), bias.bfloat16()) for w, bias in frozen.layers]
                frozen = frozen._replace(bf16=layers)
            self._frozen = frozen

    def train(self, mode: bool = True) -> EdgeConvBlock:
        if mode:
            self._frozen = None
        return super().train(mode)

    def _apply(self, fn: Any, recurse: bool = True) -> EdgeConvBlock:
        """``to()``, ``half()``, ``cuda()``, ...: new weights, so the folded ones are dropped."""
        self._frozen = None
        return super()._apply(fn, recurse)

    @staticmethod
    def _thaw(module: nn.Module, _keys: object) -> None:
        """After ``load_state_dict``: the folded weights are those of the old weights."""
        cast(EdgeConvBlock, module)._frozen = None

    def _folded_weights(self, c: int, lins: list[nn.Linear], norms: list[nn.BatchNorm1d]) -> _FoldedWeights:
        """The eval-mode weights with the batch norms folded in, as :func:`_linear_bn` and :func:`_folded` fold
        them (the same values): the frozen ones, else computed now."""
        if self._frozen is not None:
            return self._frozen
        w, bn = lins[0].weight, norms[0]
        layers = [_folded(lin.weight, norm) for lin, norm in zip(lins[1:], norms[1:], strict=True)]
        return _FoldedWeights(
            _folded_linear(w[:, c:], bn, bias=False),
            _folded_linear(w[:, :c] - w[:, c:], bn),
            layers,
            _folded_linear(self.shortcut.weight, self.shortcut_norm),
            (torch.stack([t for t, _ in layers]), torch.stack([b for _, b in layers])) if layers else None,
            None,
        )


def freeze_for_inference(model: nn.Module, bf16: bool = False) -> nn.Module:
    """Freeze every EdgeConv block of ``model`` (:meth:`EdgeConvBlock.freeze`, with bfloat16 edge-MLP products on
    CPU when ``bf16``; a model in eval mode whose weights no longer change); returns ``model``."""
    for m in model.modules():
        if isinstance(m, EdgeConvBlock):
            m.freeze(bf16)
    return model


def bf16_note() -> str:
    """How ``precision: bf16`` runs on this CPU, for the run summary."""
    if _LINEAR_POINTWISE is not None:
        return "bf16 edge-MLP products (oneDNN, native bfloat16)"
    return "bf16 edge-MLP products (this CPU has no native bfloat16: emulated, slower than float32)"


def has_edgeconv(model: nn.Module) -> bool:
    """Whether ``model`` has an EdgeConv block (the layers that ``precision: bf16`` changes)."""
    return any(isinstance(m, EdgeConvBlock) for m in model.modules())


class _FoldedWeights(NamedTuple):
    """An EdgeConv block's eval-mode weights, batch norms folded in: ``(weight, bias)`` of ``F.linear`` for the
    neighbour's and the node's terms of the first layer and the shortcut; ``(W^T, bias)`` of the later layers."""

    neighbour: tuple[Tensor, Tensor | None]
    node: tuple[Tensor, Tensor | None]
    layers: list[tuple[Tensor, Tensor]]
    shortcut: tuple[Tensor, Tensor | None]
    #: the later layers stacked, ``(W^T [L, width, width], bias [L, width])``, as the CUDA kernel reads them (None: L 0)
    stacked: tuple[Tensor, Tensor] | None
    #: ``precision: bf16``: the later layers' ``(W [width, width], bias)`` in bfloat16 for CPU inference; else None
    bf16: list[tuple[Tensor, Tensor]] | None


def _folded_linear(weight: Tensor, bn: nn.BatchNorm1d, bias: bool = True) -> tuple[Tensor, Tensor | None]:
    """``(weight, bias)`` of ``F.linear`` equal to :func:`_linear_bn`'s in eval mode."""
    assert bn.running_mean is not None and bn.running_var is not None
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return weight * scale.unsqueeze(1), bn.bias - bn.running_mean * scale if bias else None


def _edge_mlp_fused(
    a: Tensor,
    b: Tensor,
    neighbors: Tensor,
    folded: list[tuple[Tensor, Tensor]],
    out: Tensor,
    rows: int,
    epilogue: tuple[np.ndarray, np.ndarray] | None = None,
    stacked: tuple[Tensor, Tensor] | None = None,
) -> None:
    """:meth:`EdgeConvBlock._forward_in_chunks`'s edge MLP, ``rows`` nodes at a time, its mean added to ``out``:
    the products in torch, each elementwise step one pass of :mod:`frameproducers.kernels.edge_mlp` (the gather,
    add and ReLU of the first layer; the bias and ReLU of the next, which ``addmm`` would copy in before the
    product; the last one's and the mean), into two buffers reused chunk after chunk. Where those would round
    differently from torch, torch's ``addmm`` and ``mean`` remain (:func:`_bias_after_product`,
    :func:`_mean_in_order`). ``epilogue`` (:func:`_epilogue_shifts`): the biases of ``b`` and ``out``, not yet in
    them, added by the kernels, which also apply the block's final ReLU to ``out``. ``stacked``: ``folded`` stacked
    (:attr:`_FoldedWeights.stacked`), else stacked here.

    Where torch's ``sgemm_`` is found and probed equal (:func:`_torch_sgemm`), the whole loop runs as one numba call
    without the GIL (:func:`frameproducers.kernels.edge_mlp_blas.edge_mlp_chunks`, the same calls in the same
    order): the tau_gnn stage 1.11x faster on 2 threads (its micro-batch threads no longer wait for the GIL between
    ~6 calls per chunk), the same scores bit for bit."""
    from frameproducers.kernels.edge_mlp import bias_relu, bias_relu_mean_add, gather_add_relu

    k, width = neighbors.shape[1], a.shape[1]
    flat = _flat_neighbours(neighbors, a.shape[0])
    full = max(min(rows, a.shape[0]) * k, MIN_ROWS)
    buffers = [(t, t.numpy()) for t in (a.new_empty((full, width)), a.new_empty((full, width)))]
    for t, _ in buffers:  # the only rows a product reads past the chunk's (when it has fewer than MIN_ROWS): finite
        t[:MIN_ROWS].zero_()
    threads = torch.get_num_threads()
    after = [_bias_after_product(int(wt.shape[0]), int(wt.shape[1]), threads) for wt, _ in folded]
    in_order = _mean_in_order(int(width), int(k), threads)
    shifts = [(bias.numpy(), np.zeros_like(bias.numpy())) for _, bias in folded]  # after the product; in addmm
    an, bn, o = a.numpy(), b.numpy(), out.numpy()
    last = len(folded) - 1
    node_shift, out_shift = epilogue if epilogue is not None else (None, None)
    if epilogue is not None and not (folded and in_order):
        raise ValueError("EdgeConv: the kernels add the biases only when they also take the mean (_epilogue_shifts)")
    sgemm = _torch_sgemm(int(width), threads) if folded and in_order else 0
    if sgemm:  # the loop below as one call without the GIL, the same products (torch's sgemm_) and kernels
        from frameproducers.kernels.edge_mlp_blas import edge_mlp_chunks

        if stacked is None:
            stacked = (torch.stack([wt for wt, _ in folded]), torch.stack([bias for _, bias in folded]))
        weights_t, biases = stacked[0].numpy(), stacked[1].numpy()
        scratch = (np.empty(6, np.int32), np.empty(2, np.float32), np.frombuffer(b"n", np.uint8).copy())
        edge_mlp_chunks(
            sgemm, an, flat, bn, k, weights_t, biases, np.asarray(after), rows, MIN_ROWS, buffers[0][1], buffers[1][1],
            o, node_shift, out_shift, scratch,
        )  # fmt: skip
        return
    # the Python between the kernels runs once per chunk, holding the GIL that the other micro-batch threads'
    # kernels and products release: its views are made once for the full chunks
    for start in range(0, a.shape[0], rows):
        stop = min(start + rows, a.shape[0])
        m = (stop - start) * k
        # the products run on at least MIN_ROWS rows (the rows past m: zeros or left over, and not used), so that
        # each edge's row is computed as in a full chunk whatever the micro-batch (networks.MIN_ROWS)
        p = max(m, MIN_ROWS)
        views = buffers if p == full else [(t[:p], t_np[:p]) for t, t_np in buffers]
        e, e_np = views[0]
        gather_add_relu(an, flat[start * k : stop * k], bn[start:stop], k, e_np, node_shift)
        for layer, (weight_t, bias) in enumerate(folded):
            y, y_np = views[(layer + 1) % 2]
            if after[layer]:
                torch.mm(e, weight_t, out=y)
            else:
                torch.addmm(bias, e, weight_t, out=y)
            shift = shifts[layer][0 if after[layer] else 1]
            if layer < last or not in_order:
                bias_relu(y_np if m == p else y_np[:m], shift)
            else:
                bias_relu_mean_add(y_np, shift, k, o[start:stop], out_shift)
            e = y
        if not folded or not in_order:
            out[start:stop] += e[:m].view(-1, k, width).mean(dim=1)


def _flat_neighbours(neighbors: Tensor, n_nodes: int) -> np.ndarray:
    """``neighbors [N, k]`` flat as numpy, checked against the ``n_nodes`` nodes (the kernels do not check reads)."""
    from frameproducers.kernels.edge_mlp import indices_within

    flat = neighbors.reshape(-1).contiguous().numpy()
    if not indices_within(flat, n_nodes):
        raise IndexError(f"EdgeConv: neighbour indices outside 0..{n_nodes - 1} (the micro-batch's nodes)")
    return flat


def _edge_mlp_bf16(
    a: Tensor, b: Tensor, neighbors: Tensor, layers: list[tuple[Tensor, Tensor]], out: Tensor, rows: int
) -> None:
    """:func:`_edge_mlp_fused` with the later layers in bfloat16 (``precision: bf16``): each layer one oneDNN
    product with its bias and ReLU fused (float32 accumulation, the result rounded to bfloat16; AMX tiles where
    the CPU has them), between the kernels of :mod:`frameproducers.kernels.edge_mlp` that round the first layer's
    output to bfloat16 and sum the last one's in float32 for the mean. The per-node products, the shortcut, the
    kNN and the head stay float32. A row's values do not depend on the other rows of its chunk (tested).

    The products run on a multiple of :data:`BF16_ROW_STEP` rows (the rows past the chunk's: zeros or left over,
    and not used): oneDNN creates a kernel for each new row count (~0.8 ms) and caches it, so that every micro-batch's
    last chunk, and every single event, would otherwise pay for one."""
    from frameproducers.kernels.edge_mlp import gather_add_relu, mean_add_bf16

    k, width = neighbors.shape[1], a.shape[1]
    flat = _flat_neighbours(neighbors, a.shape[0])
    step = BF16_ROW_STEP
    e_full = a.new_zeros((-(-max(min(rows, a.shape[0]) * k, 1) // step) * step, width), dtype=torch.bfloat16)
    an, bn, o = a.numpy(), b.numpy(), out.numpy()
    for start in range(0, a.shape[0], rows):
        stop = min(start + rows, a.shape[0])
        m = (stop - start) * k
        e = e_full[: -(-m // step) * step]
        gather_add_relu(an, flat[start * k : stop * k], bn[start:stop], k, _bits(e[:m]))
        for weight, bias in layers:
            e = _linear_relu_bf16(e, weight, bias)
        mean_add_bf16(_bits(e[:m]), k, o[start:stop])


#: ``precision: bf16``: the products' rows are a multiple of this (at most 16 row counts per width for oneDNN to
#: create kernels for, once per process)
BF16_ROW_STEP = 512


def _bits(t: Tensor) -> np.ndarray:
    """The uint16 bit patterns of a contiguous bfloat16 tensor, as a numpy view (numpy has no bfloat16)."""
    return t.view(torch.int16).numpy().view(np.uint16)


def _linear_relu_bf16(e: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``relu(e @ weight.T + bias)`` in bfloat16: oneDNN's linear with the ReLU fused (torch's ``mkldnn`` op, as
    torch.compile's CPU backend calls it), else torch's ``linear`` and ``relu`` (the same values, tested)."""
    if _LINEAR_POINTWISE is not None:
        return cast(Tensor, _LINEAR_POINTWISE(e, weight, bias, "relu", [], ""))
    return torch.relu_(F.linear(e, weight, bias))


def _linear_pointwise() -> Any:
    """oneDNN's fused linear, where this torch has it and the CPU runs bfloat16 natively (AVX512-BF16 or AMX)."""
    try:
        if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        pass
    return None


_LINEAR_POINTWISE = _linear_pointwise()


#: row counts at which the rounding probes compare two ways of computing a product (up to a micro-batch's nodes)
PROBE_ROWS = (MIN_ROWS, MIN_ROWS + 1, 47, 64, 255, 512, 4099, 20011)


@functools.cache
def _bias_after_product(n_in: int, n_out: int, threads: int, linear: bool = False) -> bool:
    """Whether ``mm(e, W) + bias`` rounds as ``addmm(bias, e, W)`` for ``W [n_in, n_out]`` (``linear``: stored
    ``[n_out, n_in]`` and transposed, as ``F.linear`` passes its weight) and every ``e`` of at least
    :data:`~taggers.models.networks.MIN_ROWS` rows (probed once per torch thread count, the current one, at several
    row counts up to those of a micro-batch's nodes: MKL adds ``bias`` to the finished product, except in its
    kernels for a few rows)."""
    g = torch.Generator().manual_seed(0)
    e = torch.randn(PROBE_ROWS[-1], n_in, generator=g)
    w = torch.randn(n_out, n_in, generator=g).t() if linear else torch.randn(n_in, n_out, generator=g)
    bias = torch.randn(n_out, generator=g)
    return all(torch.equal(torch.addmm(bias, e[:m], w), torch.mm(e[:m], w) + bias) for m in PROBE_ROWS)


@functools.cache
def _torch_sgemm(width: int, threads: int) -> int:
    """The address of the BLAS ``sgemm_`` that torch's CPU products call (exported by ``libtorch_cpu``), for
    :func:`frameproducers.kernels.edge_mlp_blas.edge_mlp_chunks`; 0 where this torch has none, or where calling it
    as that kernel does does not give ``mm`` and ``addmm``'s values bit for bit (probed once per width and torch
    thread count, the current one, at the row counts of :func:`_bias_after_product`)."""
    import ctypes

    from frameproducers.kernels.edge_mlp_blas import sgemm_rows

    try:
        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / f"libtorch_cpu{_SHARED_SUFFIX}"))
        address = ctypes.cast(lib.sgemm_, ctypes.c_void_p).value or 0
    except (OSError, AttributeError):
        return 0
    if not address:
        return 0
    g = torch.Generator().manual_seed(0)
    e = torch.randn(PROBE_ROWS[-1], width, generator=g)
    w = torch.randn(width, width, generator=g)
    bias = torch.randn(width, generator=g)
    scratch = (np.empty(6, np.int32), np.empty(2, np.float32), np.frombuffer(b"n", np.uint8).copy())
    for m in PROBE_ROWS:
        mine = np.empty((m, width), np.float32)
        sgemm_rows(address, e[:m].numpy(), w.numpy(), mine, False, *scratch)
        with_bias = np.broadcast_to(bias.numpy(), (m, width)).copy()
        sgemm_rows(address, e[:m].numpy(), w.numpy(), with_bias, True, *scratch)
        if not (
            np.array_equal(mine, torch.mm(e[:m], w).numpy())
            and np.array_equal(with_bias, torch.addmm(bias, e[:m], w).numpy())
        ):
            return 0
    return address


_SHARED_SUFFIX = {"darwin": ".dylib", "win32": ".dll"}.get(sys.platform, ".so")


def _epilogue_shifts(weights: _FoldedWeights, n_in: int, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The biases of the node's term and of the shortcut as numpy, for the kernels of :func:`_edge_mlp_fused` to
    add (and the block's ReLU with them), when that gives the same values: ``F.linear`` with a bias copies it into
    its output before the product (~9 us per jet of tau_gnn's ~350 on one thread), and rounds as the product plus
    the bias (:func:`_bias_after_product`); None where not (then ``F.linear`` adds them)."""
    (_, node_bias), (_, short_bias) = weights.node, weights.shortcut
    if node_bias is None or short_bias is None or not weights.layers or k < 1:
        return None
    width, threads = int(node_bias.shape[0]), torch.get_num_threads()
    if not (_mean_in_order(width, k, threads) and _bias_after_product(n_in, width, threads, linear=True)):
        return None
    return node_bias.contiguous().numpy(), short_bias.contiguous().numpy()


@functools.cache
def _mean_in_order(width: int, k: int, threads: int) -> bool:
    """Whether torch's ``mean`` over the k edges of ``[nodes, k, width]`` (on ``threads``, the current torch thread
    count) sums them in order, as
    :func:`~frameproducers.kernels.edge_mlp.bias_relu_mean_add` does (probed once; torch 2.13 with AVX2 does
    for k <= 17 and widths that are multiples of 32, and accumulates otherwise in several partial sums)."""
    y = torch.rand(64, k, width, generator=torch.Generator().manual_seed(0))
    total = torch.zeros(64, width)
    for j in range(k):
        total += y[:, j]
    return torch.equal(y.mean(dim=1), total / k)


#: edges per step of :meth:`EdgeConvBlock._forward_in_chunks` (4096 x 64 channels x 4 B = 1 MB per intermediate:
#: the two of the fused path fit a 2 MB L2; 8192 was 3% slower on such a core, the same on one with less L2)
EDGE_CHUNK = 4096
#: the same for ``precision: bf16`` (half the bytes per edge: the same 1 MB per intermediate; 1.08x faster than 4096)
EDGE_CHUNK_BF16 = 8192


def _folded(weight: Tensor, bn: nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
    """(``W^T`` with the eval-mode batch norm folded in, contiguous for ``addmm``; the folded shift)."""
    folded, shift = _folded_linear(weight, bn)
    assert shift is not None
    return folded.t().contiguous(), shift


class ParticleNet(StandardisedNet):
    """EdgeConv blocks (widths ``widths``, ``layers`` linear layers each), mean+max pooling, an MLP head.

    ``k``: neighbours of the blocks that compute their own kNN (every block after the first, and the first
    when ``coord_features`` is given). ``coord_features``: indices of node-feature columns (raw, before
    standardisation; e.g. the producer's delta_eta, delta_phi) for block 1's kNN; empty: the producer's
    ``neighbors``. ``head``: width of the hidden layer of the head, ``dropout`` before its output layer.
    ``n_jet_features``: per-jet inputs (the product's ``jet_features``, input ``jet``) joined after pooling.
    Hyperparameters that do not fit raise TypeError (e2e-train and model loading report it in one line).
    """

    input_kind = "graphs"
    rows_independent = True  # MIN_ROWS: the products never take the kernels for a few rows

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        k: int = 16,
        widths: Sequence[int] = (64, 128),
        layers: int = 3,
        head: int = 128,
        dropout: float = 0.1,
        coord_features: Sequence[int] = (),
        n_jet_features: int = 0,
    ) -> None:
        super().__init__()
        if not widths or any(int(w) < 1 for w in widths) or k < 1 or layers < 1:
            raise TypeError(f"ParticleNet: need k >= 1, layers >= 1 and positive widths, got {k}, {layers}, {widths}")
        if any(not 0 <= int(i) < n_features for i in coord_features):
            raise TypeError(f"ParticleNet: coord_features {list(coord_features)} outside 0..{n_features - 1}")
        self.k = int(k)
        self.coord_features = [int(i) for i in coord_features]
        self.standardisation(n_features)
        dims = [n_features, *(int(w) for w in widths)]
        self.blocks = nn.ModuleList(EdgeConvBlock(a, b, layers) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.jet_inputs = JetInputs(n_jet_features)
        self.head = nn.Sequential(
            nn.Linear(2 * dims[-1] + self.jet_inputs.n, head),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(head, n_classes),
        )

    def forward(self, x: Tensor, neighbors: Tensor, batch: Tensor, ptr: Tensor, jet: Tensor | None = None) -> Tensor:
        """``x [N, F]``, ``neighbors [N, k]``, ``batch [N]``, ``ptr [B+1]``, ``jet [B, G]`` (with per-jet inputs)
        -> logits ``[B, n_classes]``."""
        h = (x - self.shift) * self.scale
        for i, block in enumerate(self.blocks):
            if i > 0:
                nb = knn_per_graph(h, batch, ptr, self.k)
            elif self.coord_features:
                nb = knn_per_graph(x[:, self.coord_features], batch, ptr, self.k)
            else:
                nb = neighbors
            h = block(h, nb)
        return rowwise(self.head, self.jet_inputs(graph_pool(h, batch, ptr), jet))
