"""A new network for e2e in one file: Deep Sets on jet graphs (per-node MLP, sum and max pooling, MLP head).

It needs no change to e2e: the class declares the product it reads (``input_kind``), takes the size arguments
that kind fills in (``n_features``, ``n_classes``), holds ``shift``/``scale`` buffers for the input
standardisation that e2e-train computes, and its ``forward`` takes the kind's inputs (x, neighbors, batch,
ptr for graphs). e2e-train finds it by import path (``model.class_path: deepsets:DeepSetNet``), records that
path in model.yaml, and GNNTagger runs the exported ONNX (or, with ``backend: torch``, this class).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from taggers.models.networks import graph_pool


class DeepSetNet(nn.Module):
    """phi(x_i) for every node, mean+max over the jet's nodes, rho(.) -> class logits (neighbours unused)."""

    input_kind = "graphs"

    def __init__(self, n_features: int, n_classes: int, hidden: int = 32) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        self.phi = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.rho = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, x: Tensor, neighbors: Tensor, batch: Tensor, ptr: Tensor) -> Tensor:
        h = self.phi((x - self.shift) * self.scale)
        return self.rho(graph_pool(h, batch, ptr))
