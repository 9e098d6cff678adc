"""Graph networks export to ONNX with dynamic node/graph axes; torch and onnxruntime agree at several sizes."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch

from frameproducers import kernels as K
from taggers.models.networks import GraphNet

ort = pytest.importorskip("onnxruntime")


def _inputs(sizes: list[int], seed: int, k: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pixel = np.concatenate([np.sort(rng.choice(441, size=n, replace=False)) for n in sizes]).astype(np.int32)
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return {
        "x": rng.normal(size=(len(pixel), 7)).astype(np.float32),
        "neighbors": K.knn_pixels(pixel, ptr, 21, k, False),
        "batch": np.repeat(np.arange(len(sizes)), sizes).astype(np.int64),
        "ptr": ptr,
    }


@pytest.mark.parametrize("kind", ["sage", "graphconv", "gat", "edgeconv", "dgcnn"])
def test_onnx_parity_over_batch_and_graph_sizes(kind: str) -> None:
    torch.manual_seed(3)
    net = GraphNet(7, 2, kind=kind, hidden=16, layers=2, k_dynamic=4).eval()
    example = _inputs([12, 30], seed=0)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            tuple(torch.from_numpy(v) for v in example.values()),
            f,
            dynamo=False,
            opset_version=18,
            input_names=list(example),
            output_names=["logits"],
            dynamic_axes={
                "x": {0: "nodes"},
                "neighbors": {0: "nodes"},
                "batch": {0: "nodes"},
                "ptr": {0: "graphs_plus_one"},
                "logits": {0: "graphs"},
            },
        )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(f.getvalue(), options, providers=["CPUExecutionProvider"])
    for sizes in ([5], [40, 0, 3, 1], [60] * 7, [2, 9, 17, 33, 65, 1, 0, 12], [0, 0]):
        inputs = _inputs(sizes, seed=len(sizes))
        with torch.no_grad():
            ref = net(*(torch.from_numpy(v) for v in inputs.values())).numpy()
        out = session.run(None, {i.name: inputs[i.name] for i in session.get_inputs()})[0]  # as e2e feeds it
        assert out.shape == (len(sizes), 2)
        assert np.abs(out - ref).max() <= 1e-4
