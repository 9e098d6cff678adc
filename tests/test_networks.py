"""Tagger networks: shapes, empty graphs, batch independence (a jet's score does not depend on its batch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frameproducers import kernels as K
from taggers.models.networks import GraphNet, ResNet


def _batch(sizes: list[int], k: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    pixel = np.concatenate([np.sort(rng.choice(441, size=n, replace=False)) for n in sizes]).astype(np.int32)
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    nb = K.knn_pixels(pixel, ptr, 21, k, False)
    x = torch.from_numpy(rng.normal(size=(len(pixel), 7)).astype(np.float32))
    batch = torch.from_numpy(np.repeat(np.arange(len(sizes)), sizes))
    return x, torch.from_numpy(nb), batch, torch.from_numpy(ptr)


@pytest.mark.parametrize("kind", ["sage", "graphconv", "gat", "edgeconv", "dgcnn"])
def test_graph_net_scores_do_not_depend_on_the_batch(kind: str) -> None:
    torch.manual_seed(0)
    net = GraphNet(7, 2, kind=kind, hidden=16, layers=2, k_dynamic=4).eval()
    sizes = [30, 0, 5, 1, 22]
    x, nb, batch, ptr = _batch(sizes)
    with torch.no_grad():
        together = net(x, nb, batch, ptr)
        assert together.shape == (5, 2) and torch.isfinite(together).all()
        a, b = int(ptr[2]), int(ptr[5])  # graphs 2..4 alone: indices shifted to start at 0
        alone = net(x[a:b], nb[a:b] - a, batch[a:b] - 2, ptr[2:] - a)
    torch.testing.assert_close(alone, together[2:], rtol=1e-5, atol=1e-5)


def test_resnet_shapes() -> None:
    net = ResNet(8, 2).eval()
    with torch.no_grad():
        out = net(torch.rand(3, 8, 125, 125))
    assert out.shape == (3, 2)
