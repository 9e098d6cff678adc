"""Tagger networks: a graph network over JetGraphs and a ResNet over JetFrames (E2E ResNet-15 style).

Both take standardised inputs (per-feature / per-channel shift and scale kept as buffers, so the exported
model applies the same scaling) and return class logits ``[n_jets, n_classes]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from taggers.models.graph_layers import GATHER_LAYERS, _exporting, dynamic_knn, padded_index

#: the fewest rows of a product at inference (fewer are padded with zero rows): MKL computes products of very few
#: rows (fewer than 16 on the AVX-512 host probed, fewer than 12 seen on an AVX2 one) with other kernels that round
#: differently, so a jet's logits would depend on how many jets share its micro-batch (by ~1e-7)
MIN_ROWS = 32


def rowwise(f: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    """``f(z)`` for a row-wise ``f`` (each output row depends only on the same input row, e.g. an MLP head in eval
    mode), computed with at least :data:`MIN_ROWS` rows at inference: every row comes out as in a batch of many
    jets, bit for bit. Training and export call ``f(z)`` as it is."""
    n = z.shape[0]
    if n >= MIN_ROWS or torch.is_grad_enabled() or _exporting():
        return f(z)
    return f(torch.cat([z, z.new_zeros((MIN_ROWS - n, *z.shape[1:]))]))[:n]


def graph_pool(h: Tensor, batch: Tensor, ptr: Tensor) -> Tensor:
    """Mean and max of node features per graph: [B, 2H]; graphs without nodes give zeros.

    The number of graphs is ``ptr.shape[0] - 1`` (a dynamic axis in ONNX, never a baked constant). Exported, the
    nodes are gathered per graph and reduced (:func:`_graph_pool_padded`) instead of scattered. Inference on CPU
    reduces each graph's consecutive nodes in one pass (:func:`frameproducers.kernels.graph_pool.mean_max_pool`, the
    same values as the scatters: ~5 us per jet less for tau_gnn on one thread).
    """
    if _exporting():
        return _graph_pool_padded(h, ptr)
    n_graphs = ptr.shape[0] - 1
    if h.is_cpu and h.dtype == torch.float32 and not torch.is_grad_enabled() and ptr.dtype == torch.int64:
        from frameproducers.kernels.graph_pool import mean_max_pool

        out = h.new_empty((n_graphs, 2 * h.shape[1]))
        mean_max_pool(h.contiguous().numpy(), ptr.contiguous().numpy(), out.numpy())  # the same values, one pass
        return out
    index = batch.unsqueeze(1).expand_as(h)
    total = h.new_zeros((n_graphs, h.shape[1])).scatter_add(0, index, h)
    n_nodes = (ptr[1:] - ptr[:-1]).unsqueeze(1)
    counts = n_nodes.clamp(min=1).to(h.dtype)
    # include_self=True from -inf (ONNX has no include_self=False); rows of empty graphs are set to 0
    peak = h.new_full((n_graphs, h.shape[1]), float("-inf")).scatter_reduce(0, index, h, reduce="amax")
    peak = torch.where(n_nodes > 0, peak, torch.zeros_like(peak))
    return torch.cat([total / counts, peak], dim=1)


def _graph_pool_padded(h: Tensor, ptr: Tensor) -> Tensor:
    """:func:`graph_pool` as exported: the nodes gathered into ``[B, n_max, H]`` (:func:`padded_index`) and reduced
    over the slots (Gather, ReduceSum, ReduceMax). ONNX Runtime runs the scatters of the eager form, and the If and
    Identity nodes the exporter wraps around a max scatter, ~5x slower: tau_gnn_fast's model 1.2-1.4x faster in it,
    tau_gnn's 1.2x. The same values up to the order of the sum (logits within ~1e-6)."""
    index, valid = padded_index(ptr)
    p = h[index]  # [B, n_max, H]
    pad = ~valid.unsqueeze(2)
    n_nodes = (ptr[1:] - ptr[:-1]).unsqueeze(1)
    total = p.masked_fill(pad, 0.0).sum(dim=1)
    peak = p.masked_fill(pad, float("-inf")).amax(dim=1)
    peak = torch.where(n_nodes > 0, peak, torch.zeros_like(peak))
    return torch.cat([total / n_nodes.clamp(min=1).to(h.dtype), peak], dim=1)


class JetInputs(nn.Module):
    """Per-jet inputs joined after pooling: ``jet [B, G]`` batch-normalised (a fixed affine map in eval mode)
    and concatenated to the pooled node features; ``n = 0``: the pooled features unchanged."""

    def __init__(self, n: int) -> None:
        super().__init__()
        if n < 0:
            raise TypeError(f"n_jet_features must be >= 0, got {n}")
        self.n = int(n)
        self.norm = nn.BatchNorm1d(self.n) if self.n else None

    def forward(self, pooled: Tensor, jet: Tensor | None) -> Tensor:
        if self.norm is None:
            return pooled
        if jet is None:
            raise ValueError(f"this network joins {self.n} per-jet inputs after pooling and was given none")
        return torch.cat([pooled, self.norm(jet)], dim=1)


class StandardisedNet(nn.Module):
    """Base of the built-in networks: inputs standardised as ``(x - shift) * scale`` by buffers that e2e-train
    sets from the training sample (saved with the weights)."""

    input_kind = ""
    #: a jet's outputs do not depend on the other jets of its micro-batch, bit for bit, at inference on CPU (tested):
    #: a tagger may then split its batches into micro-batches of any size (to balance them over threads)
    rows_independent = False
    shift: Tensor
    scale: Tensor

    def standardisation(self, *shape: int) -> None:
        """Register the ``shift`` (zeros) and ``scale`` (ones) buffers of the given shape."""
        self.register_buffer("shift", torch.zeros(*shape))
        self.register_buffer("scale", torch.ones(*shape))


class GraphNet(StandardisedNet):
    """Message passing on the fixed-k neighbour index, then mean+max pooling and an MLP head.

    ``kind``: ``sage``, ``graphconv``, ``gat``, ``edgeconv`` (static kNN from the producer) or ``dgcnn``
    (EdgeConv; after the first layer the kNN is recomputed in feature space, inside the model).
    """

    input_kind = "graphs"

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        kind: str = "sage",
        hidden: int = 64,
        layers: int = 3,
        k_dynamic: int = 16,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        layer = GATHER_LAYERS["edgeconv" if kind == "dgcnn" else kind]
        self.kind = kind
        self.k_dynamic = k_dynamic
        self.standardisation(n_features)
        dims = [n_features] + [hidden] * layers
        self.convs = nn.ModuleList(layer(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.head = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
        )

    def forward(self, x: Tensor, neighbors: Tensor, batch: Tensor, ptr: Tensor) -> Tensor:
        h = (x - self.shift) * self.scale
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            nb = neighbors if (self.kind != "dgcnn" or i == 0) else dynamic_knn(h, batch, self.k_dynamic)
            h = norm(conv(h, nb))
            h = torch.relu(h) if torch.is_grad_enabled() else h.relu_()  # inference: in place (the same values)
        return self.head(graph_pool(h, batch, ptr))


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a skip connection (1x1 projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class ResNet(StandardisedNet):
    """ResNet in the style of E2E's ResNet-15: a 7x7 stem, residual stages, global average pooling, a linear head.

    Input: frames [n_jets, C, W, W], standardised per channel by the ``shift``/``scale`` buffers.
    """

    input_kind = "frames"

    def __init__(
        self,
        n_channels: int,
        n_classes: int,
        widths: tuple[int, ...] = (16, 32, 64),
        blocks_per_stage: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.standardisation(n_channels, 1, 1)
        self.stem = nn.Sequential(
            nn.Conv2d(n_channels, widths[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        stages = []
        c = widths[0]
        for i, w in enumerate(widths):
            for b in range(blocks_per_stage):
                stages.append(ResidualBlock(c, w, 2 if (b == 0 and i > 0) else 1))
                c = w
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, n_classes))

    def forward(self, frames: Tensor) -> Tensor:
        h = self.stages(self.stem((frames - self.shift) * self.scale))
        return self.head(h.mean(dim=(2, 3)))


class LinearNet(StandardisedNet):
    """Logistic regression on standardised per-jet observables (the classical baseline on jet shapes)."""

    input_kind = "table"

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.standardisation(n_features)
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, values: Tensor) -> Tensor:
        return self.linear((values - self.shift) * self.scale)
