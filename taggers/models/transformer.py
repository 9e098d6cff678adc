"""GraphTransformer (ParT-lite) on JetGraphs: self-attention among the nodes of each jet, a class token.

The flat node list is laid out per jet as ``[B, 1 + n_max, H]`` (class token first, padding masked out of
the keys; :func:`padded_index`), so attention never crosses jets and a jet's logits do not depend on the
other jets of its batch. Every query sees at least the class token: empty and one-node jets give finite
logits. Exports to ONNX with dynamic node and jet axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from taggers.models.graph_layers import padded_index
from taggers.models.networks import JetInputs, StandardisedNet


class EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer: ``h + attn(LN h)``, then ``h + ffn(LN h)``.

    Attention by ``scaled_dot_product_attention`` (fused on CPU; MatMul + Softmax in ONNX), keys masked or
    biased by ``mask``.
    """

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise TypeError(f"GraphTransformer: hidden {hidden} is not a multiple of heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, hidden))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        """``h [B, n, H]``; ``mask``: bool ``[B, 1, 1, n]`` (False: padding) or the additive float bias
        ``[B, heads, n, n]`` (-inf at padding) -> ``[B, n, H]``."""
        b, n, hidden = h.shape
        q, k, v = self.qkv(self.norm1(h)).reshape(b, n, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(b, n, hidden)
        h = h + self.drop(self.proj(o))
        return h + self.drop(self.ffn(self.norm2(h)))


class GraphTransformer(StandardisedNet):
    """Node embedding MLP, ``layers`` encoder layers within each jet, the class token's output to an MLP head.

    ``hidden``: width, ``heads``: attention heads, ``ffn_ratio``: feed-forward width / hidden, ``dropout``: in
    the residual branches and the head. ``pair_features``: the indices of two raw node-feature columns
    (delta_eta, delta_phi of the producer, in radians) from which a per-head attention bias is computed:
    ``MLP(ln dR, d_eta, d_phi)`` of every node pair, shared by the layers (``dR`` clamped at 1e-4); empty: no
    pair bias. ``n_jet_features``: per-jet inputs (input ``jet``) joined to the class token's output. The
    producer's ``neighbors`` are not used. Hyperparameters that do not fit raise TypeError
    (e2e-train and model loading report it in one line).
    """

    input_kind = "graphs"

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden: int = 64,
        heads: int = 4,
        layers: int = 3,
        ffn_ratio: int = 2,
        dropout: float = 0.1,
        pair_features: Sequence[int] = (),
        pair_hidden: int = 8,
        n_jet_features: int = 0,
    ) -> None:
        super().__init__()
        if len(pair_features) not in (0, 2) or any(not 0 <= int(i) < n_features for i in pair_features):
            raise TypeError(
                f"GraphTransformer: pair_features must be two node-feature indices in 0..{n_features - 1} "
                f"(delta_eta, delta_phi) or empty, got {list(pair_features)}"
            )
        self.pair_features = [int(i) for i in pair_features]
        self.standardisation(n_features)
        self.embed = nn.Sequential(nn.Linear(n_features, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.cls = nn.Parameter(torch.zeros(1, 1, hidden))
        nn.init.normal_(self.cls, std=0.02)
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads, ffn_ratio * hidden, dropout) for _ in range(layers))
        self.pair = (
            nn.ModuleList([nn.Linear(3, pair_hidden), nn.Linear(pair_hidden, heads)]) if self.pair_features else None
        )
        self.norm = nn.LayerNorm(hidden)
        self.jet_inputs = JetInputs(n_jet_features)
        self.head = nn.Sequential(
            nn.Linear(hidden + self.jet_inputs.n, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
        )

    def pair_bias(self, x: Tensor, index: Tensor) -> Tensor:
        """Attention bias ``[B, heads, 1 + n, 1 + n]`` from the raw coordinates of node pairs (0 for the class
        token's row and column). The first linear layer on ``(ln dR, d_eta, d_phi)`` is split into per-node
        products and one multiply-add per pair (the pair tensors are the cost)."""
        assert self.pair is not None
        c = x[:, self.pair_features][index]  # [B, n, 2]
        d = c.unsqueeze(2) - c.unsqueeze(1)  # [B, n, n, 2]
        log_dr = 0.5 * torch.log(d.square().sum(-1, keepdim=True).clamp_min(1e-8))
        first, second = cast(list[nn.Linear], list(self.pair))
        u = F.linear(c, first.weight[:, 1:])  # first layer = its d terms (per node, i minus j) + its ln dR term
        h = (u + first.bias).unsqueeze(2) - u.unsqueeze(1)
        bias = second(h.addcmul_(log_dr, first.weight[:, 0]).relu_()).permute(0, 3, 1, 2)  # [B, heads, n, n]
        return F.pad(bias, (1, 0, 1, 0))

    def forward(self, x: Tensor, neighbors: Tensor, batch: Tensor, ptr: Tensor, jet: Tensor | None = None) -> Tensor:
        """Node features ``x [N, F]`` (``neighbors``, ``batch`` unused), ``ptr [B+1]``, ``jet [B, G]`` (with per-jet
        inputs) -> logits ``[B, n_classes]``."""
        index, valid = padded_index(ptr)
        h = self.embed((x - self.shift) * self.scale)[index] * valid.unsqueeze(-1).to(x.dtype)  # [B, n, H]
        b = index.shape[0]
        h = torch.cat([self.cls.expand(b, 1, -1), h], dim=1)
        keep = torch.cat([valid.new_ones((b, 1)), valid], dim=1)[:, None, None, :]  # [B, 1, 1, 1 + n]
        mask = keep if self.pair is None else self.pair_bias(x, index).masked_fill(~keep, float("-inf"))
        for layer in self.layers:
            h = layer(h, mask)
        return self.head(self.jet_inputs(self.norm(h[:, 0]), jet))
