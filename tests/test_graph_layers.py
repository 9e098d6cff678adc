"""Gather + reduce graph layers equal the PyG layers on the producer's edge_index (padding included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frameproducers import kernels as K
from taggers.models.graph_layers import GATHER_LAYERS, dynamic_knn, neighbor_sum, pyg_layer


def _graphs(sizes: list[int], k: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Random graphs on a 21 x 21 window (some with fewer than k+1 nodes): x, neighbors, edge_index."""
    rng = np.random.default_rng(seed)
    pixels, offsets = [], [0]
    for n in sizes:
        pixels.append(np.sort(rng.choice(21 * 21, size=n, replace=False)).astype(np.int32))
        offsets.append(offsets[-1] + n)
    pixel = np.concatenate(pixels)
    node_offsets = np.asarray(offsets, dtype=np.int64)
    neighbors = K.knn_pixels(pixel, node_offsets, 21, k, False)
    edge_index = K.edge_index_from_neighbors(neighbors)
    x = torch.from_numpy(rng.normal(size=(len(pixel), 7)).astype(np.float32))
    return x, neighbors, edge_index


@pytest.mark.parametrize("kind", sorted(GATHER_LAYERS))
def test_gather_layer_equals_pyg(kind: str) -> None:
    torch.manual_seed(1)
    x, neighbors, edge_index = _graphs([40, 3, 1, 17, 60], k=8)
    conv = pyg_layer(kind, 7, 16)
    gather = GATHER_LAYERS[kind](7, 16).from_pyg(conv)
    with torch.no_grad():
        ref = conv(x, torch.from_numpy(edge_index))
        out = gather(x, torch.from_numpy(neighbors))
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_dynamic_knn_matches_brute_force() -> None:
    torch.manual_seed(2)
    sizes = [12, 2, 30]
    ptr = torch.tensor(np.concatenate([[0], np.cumsum(sizes)]))
    h = torch.randn(int(ptr[-1]), 5)
    nb = dynamic_knn(h, torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)), k=4)
    for g in range(len(sizes)):
        a, b = int(ptr[g]), int(ptr[g + 1])
        d = torch.cdist(h[a:b], h[a:b])
        d.fill_diagonal_(float("inf"))
        for i in range(a, b):
            m = min(4, b - a - 1)
            want = torch.topk(d[i - a], m, largest=False).indices + a
            assert torch.equal(nb[i, :m], want)
            assert torch.all(nb[i, m:] == i)  # too few nodes: the node itself


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_neighbor_sum_forms_agree(dtype: torch.dtype) -> None:
    """CSR (CPU inference), COO (training) and gather (export) aggregations give the same sums."""
    x, neighbors, _ = _graphs([40, 3, 1, 17], k=8, seed=5)
    nb = torch.from_numpy(neighbors).to(dtype)
    want = x[nb.long()].sum(dim=1) * 0.5
    with torch.no_grad():
        csr = neighbor_sum(x, nb, 0.5)
    coo = neighbor_sum(x.clone().requires_grad_(True), nb.long(), 0.5)
    torch.testing.assert_close(csr, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(coo.detach(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["sage", "graphconv"])
def test_training_path_equals_inference_path(kind: str) -> None:
    """With gradients on, SAGE/GraphConv aggregate by a sparse product: same values, same gradients as gather."""
    torch.manual_seed(4)
    x, neighbors, _ = _graphs([40, 3, 1, 17], k=8, seed=5)
    layer = GATHER_LAYERS[kind](7, 16)
    nb = torch.from_numpy(neighbors)
    xa = x.clone().requires_grad_(True)
    fast = layer(xa, nb)  # grad enabled: sparse path
    fast.square().sum().backward()
    xb = x.clone().requires_grad_(True)
    h = layer.lin_r if kind == "sage" else layer.lin_root
    agg = xb[nb].mean(1) if kind == "sage" else xb[nb].sum(1)
    lin = layer.lin_l if kind == "sage" else layer.lin_rel
    ref = lin(agg) + h(xb)  # the gather form, written out
    torch.testing.assert_close(fast.detach(), ref.detach(), rtol=1e-5, atol=1e-5)
    ref.square().sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-5)
