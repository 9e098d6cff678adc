"""Graph layers in the fixed-k neighbour (gather + reduce) form, numerically equivalent to the PyG layers.

Every layer takes node features ``x [N, F]`` and the neighbour index ``neighbors [N, k]`` of
:class:`dataformats.products.JetGraphs` (global node indices; node ``i`` aggregates ``x[neighbors[i]]``).
Because the producer's COO ``edge_index`` is exactly the flattened neighbour index (padding included),
each layer here equals its PyG counterpart run on that ``edge_index`` with the same weights
(tests/test_graph_layers.py); :meth:`from_pyg` copies the weights of a PyG layer.

Gather + reduce exports to ONNX as Gather + ReduceMean/Max/Sum, which ONNX Runtime runs ~2x faster than
torch's scatter (PyG scatter in ONNX Runtime is ~9x slower), and needs no torch-scatter or pyg-lib. In torch
on CPU the sum aggregations (SAGE, GraphConv) run as a CSR sparse product instead (see :func:`neighbor_sum`).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

# the CSR product below is the documented, tested path; torch labels CSR tensors "beta" on first use
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)


def _exporting() -> bool:
    """Tracing or exporting to ONNX (an export imports ``torch.onnx`` first: inference does not pay its ~40 ms)."""
    return torch.jit.is_tracing() or ("torch.onnx" in sys.modules and torch.onnx.is_in_onnx_export())


def neighbor_sum(x: Tensor, neighbors: Tensor, weight: float = 1.0) -> Tensor:
    """``weight * sum_s x[neighbors[:, s]]`` per node (duplicates count, as edges of the COO form do).

    Three equal forms, chosen by context:

    - export/trace, and inference on a GPU: gather ``[N, k, F]`` then reduce (ONNX Gather + ReduceSum);
    - inference on CPU: the CSR adjacency times ``x`` (row ``i`` holds ``neighbors[i]``). It never
      materialises the ``[N, k, F]`` gather, which is memory-bound: ~3x faster for ``tau_gnn``;
    - training (gradients on): the sparse COO adjacency, whose backward is a sparse product too (~3-5x
      faster on CPU than the scatter-add backward of a gather).
    """
    if _exporting() or (not torch.is_grad_enabled() and not x.is_cpu):
        s = x[neighbors].sum(dim=1)
        return s * weight if weight != 1.0 else s
    n, k = neighbors.shape
    values = torch.full((n * k,), weight, dtype=x.dtype, device=x.device)
    if not torch.is_grad_enabled():
        crow = torch.arange(0, n * k + 1, k, dtype=neighbors.dtype, device=x.device)
        adj = torch.sparse_csr_tensor(crow, neighbors.reshape(-1), values, (n, x.shape[0]), check_invariants=False)
        return adj @ x
    rows = torch.arange(n, device=x.device).repeat_interleave(k)
    adj = torch.sparse_coo_tensor(
        torch.stack([rows, neighbors.reshape(-1)]), values, (n, x.shape[0]), check_invariants=False
    )
    return torch.sparse.mm(adj, x)


class SAGEGather(nn.Module):
    """GraphSAGE, mean aggregation: ``lin_l(mean_j x_j) + lin_r(x_i)`` (PyG ``SAGEConv``, root weight)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.lin_l = nn.Linear(in_channels, out_channels, bias=True)
        self.lin_r = nn.Linear(in_channels, out_channels, bias=False)

    def forward(self, x: Tensor, neighbors: Tensor) -> Tensor:
        out = self.lin_l(neighbor_sum(x, neighbors, 1.0 / neighbors.shape[1]))
        if torch.is_grad_enabled():
            return out + self.lin_r(x)
        return out.add_(self.lin_r(x))  # inference: in place, one pass over [N, out] less (the same values)

    def from_pyg(self, conv: Any) -> SAGEGather:
        self.lin_l.load_state_dict(conv.lin_l.state_dict())
        self.lin_r.load_state_dict(conv.lin_r.state_dict())
        return self


class GraphConvGather(nn.Module):
    """GraphConv, sum aggregation: ``lin_rel(sum_j x_j) + lin_root(x_i)`` (PyG ``GraphConv``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.lin_rel = nn.Linear(in_channels, out_channels, bias=True)
        self.lin_root = nn.Linear(in_channels, out_channels, bias=False)

    def forward(self, x: Tensor, neighbors: Tensor) -> Tensor:
        return self.lin_rel(neighbor_sum(x, neighbors)) + self.lin_root(x)

    def from_pyg(self, conv: Any) -> GraphConvGather:
        self.lin_rel.load_state_dict(conv.lin_rel.state_dict())
        self.lin_root.load_state_dict(conv.lin_root.state_dict())
        return self


class GATGather(nn.Module):
    """Graph attention, one head (PyG ``GATConv(heads=1)`` with its default self-loop).

    ``h = W x``; ``e_ij = LeakyReLU(a_src . h_j + a_dst . h_i, 0.2)`` over the neighbours and ``i`` itself,
    softmax over them, ``out_i = sum_j alpha_ij h_j + b``. Graphs must come without self loops (the
    producer's default), as PyG replaces existing self loops by one.
    """

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.lin = nn.Linear(in_channels, out_channels, bias=False)
        self.att_src = nn.Parameter(torch.empty(out_channels))
        self.att_dst = nn.Parameter(torch.empty(out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.negative_slope = negative_slope
        nn.init.normal_(self.att_src, std=0.1)
        nn.init.normal_(self.att_dst, std=0.1)

    def forward(self, x: Tensor, neighbors: Tensor) -> Tensor:
        h = self.lin(x)
        idx = torch.cat([torch.arange(x.shape[0], device=x.device).unsqueeze(1), neighbors], dim=1)  # self first
        hj = h[idx]  # [N, k+1, H]
        score = (hj * self.att_src).sum(-1) + (h * self.att_dst).sum(-1, keepdim=True)
        alpha = torch.softmax(nn.functional.leaky_relu(score, self.negative_slope), dim=1)
        return (alpha.unsqueeze(-1) * hj).sum(dim=1) + self.bias

    def from_pyg(self, conv: Any) -> GATGather:
        self.lin.weight.data.copy_(conv.lin.weight.data)
        self.att_src.data.copy_(conv.att_src.data.reshape(-1))
        self.att_dst.data.copy_(conv.att_dst.data.reshape(-1))
        self.bias.data.copy_(conv.bias.data)
        return self


class EdgeConvGather(nn.Module):
    """EdgeConv, max aggregation: ``max_j mlp([x_i, x_j - x_i])`` (PyG ``EdgeConv(mlp, aggr='max')``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(2 * in_channels, out_channels), nn.ReLU(), nn.Linear(out_channels, out_channels)
        )

    def forward(self, x: Tensor, neighbors: Tensor) -> Tensor:
        xj = x[neighbors]  # [N, k, F]
        xi = x.unsqueeze(1).expand_as(xj)
        return self.mlp(torch.cat([xi, xj - xi], dim=-1)).amax(dim=1)

    def from_pyg(self, conv: Any) -> EdgeConvGather:
        self.mlp.load_state_dict(conv.nn.state_dict())
        return self


def pyg_layer(kind: str, in_channels: int, out_channels: int) -> nn.Module:
    """The PyG layer that :data:`GATHER_LAYERS` ``[kind]`` is equivalent to (for tests and training with PyG)."""
    from torch_geometric import nn as gnn

    if kind == "sage":
        return gnn.SAGEConv(in_channels, out_channels, aggr="mean")
    if kind == "graphconv":
        return gnn.GraphConv(in_channels, out_channels, aggr="add")
    if kind == "gat":
        return gnn.GATConv(in_channels, out_channels, heads=1)
    if kind == "edgeconv":
        mlp = nn.Sequential(nn.Linear(2 * in_channels, out_channels), nn.ReLU(), nn.Linear(out_channels, out_channels))
        return gnn.EdgeConv(mlp, aggr="max")
    raise ValueError(f"unknown graph layer '{kind}' (known: {', '.join(GATHER_LAYERS)})")


GATHER_LAYERS: dict[str, type[nn.Module]] = {
    "sage": SAGEGather,
    "graphconv": GraphConvGather,
    "gat": GATGather,
    "edgeconv": EdgeConvGather,
}


def dynamic_knn(h: Tensor, batch: Tensor, k: int) -> Tensor:
    """kNN in feature space inside each graph (DGCNN), exportable to ONNX with dynamic sizes.

    One masked ``cdist`` over the nodes of the (micro-)batch: memory O(N^2), so DGCNN runs in micro-batches
    of a few tens of jets. Returns global neighbour indices [N, k], self excluded, ties by index; graphs with
    fewer than k+1 nodes fill the missing slots with the node itself.
    """
    n = h.shape[0]
    d = torch.cdist(h, h)
    other = batch.unsqueeze(0) != batch.unsqueeze(1)
    ar = torch.arange(n, device=h.device)
    d = d.masked_fill(other | (ar.unsqueeze(0) == ar.unsqueeze(1)), float("inf"))  # (no bool EyeLike in ORT)
    d = torch.cat([d, torch.full((n, k), float("inf"), dtype=d.dtype, device=d.device)], dim=1)  # always k columns
    dist, idx = torch.topk(d, k, dim=1, largest=False, sorted=True)
    self_idx = ar.unsqueeze(1).expand(n, k)
    return torch.where(torch.isinf(dist), self_idx, idx)


def padded_index(ptr: Tensor) -> tuple[Tensor, Tensor]:
    """The per-graph padded layout of a flat node list, from the graph offsets ``ptr [B+1]``.

    Returns ``index [B, n_max]`` (global node index of slot ``s`` of graph ``b``; 0 at padding) and ``valid
    [B, n_max]`` (bool, False at padding), ``n_max`` the largest graph (0 when every graph is empty). ``h[index]``
    is the padded ``[B, n_max, F]`` tensor. Sizes stay dynamic in ONNX (``n_max`` is a ReduceMax, never a
    constant), and a graph's slots do not depend on the other graphs of the batch.
    """
    counts = ptr[1:] - ptr[:-1]
    n_max = torch.cat([counts, counts.new_zeros(1)]).max()  # 0 graphs: no ReduceMax over an empty axis
    slot = torch.arange(n_max, device=ptr.device).unsqueeze(0)  # type: ignore[call-overload]  # 0-d: dynamic
    valid = slot < counts.unsqueeze(1)
    return torch.where(valid, ptr[:-1].unsqueeze(1) + slot, torch.zeros_like(slot)), valid


def knn_per_graph(h: Tensor, batch: Tensor, ptr: Tensor, k: int) -> Tensor:
    """kNN in the space of ``h [N, C]`` inside each graph, on the padded ``[B, n_max, n_max]`` distances.

    Same result as :func:`dynamic_knn` (global indices ``[N, k]``, self excluded, slots beyond a graph's
    ``n - 1`` other nodes filled with the node itself; empty graphs have no rows), but memory
    ``O(B n_max^2)`` instead of ``O(N^2)``, so whole batches of large jets fit.

    Coordinates (``C <= 4``): explicit differences, so the exact ties of a pixel grid survive (in torch and ONNX
    Runtime alike), and a stable sort gives ties to the lower node index as ONNX TopK does: a graph's neighbours
    never depend on the rest of the batch, nor on the backend. Features (``C > 4``): ``|a|^2 + |b|^2 - 2 a.b``
    by a batched product and ``topk`` (~4x faster than the sort).

    Inference on CPU (not exporting, no gradients) groups the graphs by size, :data:`KNN_GROUP` at a time, so that each
    group is padded to its own largest graph instead of the batch's (every graph gets the same neighbours; a batch of up
    to :data:`KNN_GROUP` graphs, e.g. one event, is one group, laid out by numpy instead of :func:`padded_index`'s ~8
    torch operations: ~40 us less per event), and selects the k nearest from torch's distances with a numba kernel
    (:func:`frameproducers.kernels.knn_select.smallest_in_groups`, the model 1.2x and 1.05x faster) instead of the mask,
    ``topk`` and index arithmetic. Its ties go to the lower index, as in ONNX TopK and the stable sort; ``topk`` leaves
    the order of exactly equal distances open, and in features those occur from float32 rounding (5 of 127,523 nodes of
    a held-out sample), so the scores of such jets can change slightly (7 of 23,807 held-out jets, by at most 0.002).
    """
    if h.is_cpu and not _exporting() and not torch.is_grad_enabled():
        return _knn_by_size(h, ptr, k)
    return _knn_padded(h, batch, ptr, k)


#: graphs per size group of :func:`knn_per_graph` on CPU
KNN_GROUP = 32


def _knn_by_size(h: Tensor, ptr: Tensor, k: int) -> Tensor:
    """:func:`_knn_padded` on groups of :data:`KNN_GROUP` graphs of similar size (sorted by node count), each group
    padded to its own largest graph: the rows of every group gathered at once, one batched product per group (the
    Gram matrix, or the coordinate differences) into one flat buffer, and each group's selection by one kernel call
    right after its product, while in cache (:func:`frameproducers.kernels.knn_select.smallest_in_groups`). The same
    neighbours as :func:`_knn_padded` group by group, with ~25 fewer operations per group."""
    from frameproducers.kernels.knn_select import group_layout, smallest_in_groups

    ptr_np = ptr.numpy()
    layout = group_layout(ptr_np, KNN_GROUP)
    sizes, row_start, d_start = layout.sizes, layout.row_start, layout.d_start
    p = _rows(h, torch.from_numpy(layout.rows))  # [padded rows, C]
    exact = h.shape[1] <= 4
    sq = None if exact else p.square().sum(-1).numpy()  # row by row: the same values as per group
    d = h.new_empty(int(d_start[-1]))
    d_np = d.numpy()
    out = np.empty((int(ptr_np[-1]), k), np.int64)
    for g, n in enumerate(sizes.tolist()):
        if n:
            pg = p[int(row_start[g]) : int(row_start[g + 1])].view(-1, n, p.shape[1])
            dg = d[int(d_start[g]) : int(d_start[g + 1])].view(-1, n, n)
            if exact:  # as _knn_padded: explicit differences keep the exact ties of a grid
                torch.sum((pg.unsqueeze(2) - pg.unsqueeze(1)).square(), dim=-1, out=dg)
            else:
                torch.bmm(pg, pg.transpose(1, 2), out=dg)
        smallest_in_groups(d_np, ptr_np, k, layout, sq, (g, g + 1), out)  # while the group is in cache
    return torch.from_numpy(out)


def _knn_padded(h: Tensor, batch: Tensor, ptr: Tensor, k: int) -> Tensor:
    """:func:`knn_per_graph` on the whole batch padded to its largest graph (the exported form; in inference on CPU
    the selection from the distances is frameproducers' kernel, with the same neighbours up to exact ties)."""
    index, valid = padded_index(ptr)
    p = _rows(h, index)  # [B, n, C]
    exact = h.shape[1] <= 4
    kernel = p.is_cpu and not _exporting() and not p.requires_grad  # mask, sort/topk and indices in one kernel
    if kernel:
        from frameproducers.kernels.knn_select import smallest_per_row
    if exact:
        d = (p.unsqueeze(2) - p.unsqueeze(1)).square().sum(-1)
    else:
        sq = p.square().sum(-1)
        gram = p @ p.transpose(1, 2)
        if kernel:  # the kernel forms sq_i + sq_j - 2 gram_ij row by row, as below
            return torch.from_numpy(smallest_per_row(gram.numpy(), (ptr[1:] - ptr[:-1]).numpy(), k, sq=sq.numpy()))
        d = sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * gram
    if kernel:
        return torch.from_numpy(smallest_per_row(d.numpy(), (ptr[1:] - ptr[:-1]).numpy(), k))
    slot = torch.arange(p.shape[1], device=h.device)
    d = d.masked_fill(~valid.unsqueeze(1) | (slot.unsqueeze(1) == slot.unsqueeze(0)), float("inf"))
    d = torch.cat([d, d.new_full((d.shape[0], d.shape[1], k), float("inf"))], dim=2)  # always k columns
    if exact and not _exporting():  # ONNX TopK orders ties by index; torch.sort(stable=True) does not export
        dist, nb = torch.sort(d, dim=2, stable=True)
        dist, nb = dist[:, :, :k], nb[:, :, :k]
    else:
        dist, nb = torch.topk(d, k, dim=2, largest=False, sorted=True)
    nb = nb + ptr[:-1].view(-1, 1, 1)
    nb = torch.where(torch.isinf(dist), index.unsqueeze(2), nb)
    pos = torch.arange(h.shape[0], device=h.device) - _rows(ptr, batch)  # slot of every node in its graph
    return _rows(nb.reshape(-1, k), batch * p.shape[1] + pos)


def _rows(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` for an integer ``index`` of any shape: ``index_select`` in torch (~3x faster than advanced
    indexing on CPU), a plain Gather when exporting."""
    if _exporting():
        return x[index]
    return torch.index_select(x, 0, index.reshape(-1)).view(*index.shape, *x.shape[1:])
