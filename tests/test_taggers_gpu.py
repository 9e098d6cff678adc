"""CUDA paths of the taggers (marked gpu; skipped cleanly without a CUDA device)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, SAMPLE
from test_taggers import config, model_dir, tag  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_cuda_scores_equal_cpu_scores(tmp_path, model_dir, capsys, backend):  # noqa: F811
    if backend == "onnxruntime":
        ort = pytest.importorskip("onnxruntime")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            pytest.skip("onnxruntime without the CUDA execution provider (install onnxruntime-gpu: ORT=gpu make)")
    scores = {}
    for device in ("cpu", "cuda"):
        data = config(tmp_path, model_dir, backend)
        data["modules"]["tauGNN"]["device"] = device
        out, scores[device] = tag(tmp_path, data, device, capsys, 20)
        if device == "cuda":
            assert ("torch on cuda" in out) if backend == "torch" else ("CUDAExecutionProvider" in out)
    assert np.abs(scores["cpu"] - scores["cuda"]).max() <= 1e-4


def test_cnn_cuda_float32_by_default_and_tf32_on_request(tmp_path, capsys):
    """The shipped CNN on CUDA: float32 by default (torch would let cuDNN use TF32, which moved its scores by up to
    7e-4), within 1e-5 of the CPU; ``precision: tf32`` says so in the summary and leaves torch's switches as they
    were."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    scores = {}
    for device, precision in (("cpu", "float32"), ("cuda", "float32"), ("cuda", "tf32")):
        data = yaml.safe_load((REPO / "process_configs" / "tau_cnn.yaml").read_text())
        data["modules"]["tauCNN"].update(backend="torch", device=device, precision=precision)
        data["source"]["files"] = [str(SAMPLE)]
        out, scores[device, precision] = tag(tmp_path, data, f"{device}-{precision}", capsys, 20, "Jet_tauCNN_tau")
        if device == "cuda":
            assert f", {precision})" in out
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == saved
    assert np.abs(scores["cuda", "float32"] - scores["cpu", "float32"]).max() <= 1e-5
    assert np.abs(scores["cuda", "tf32"] - scores["cpu", "float32"]).max() <= 5e-2


def test_shipped_particlenet_on_cuda_runs_the_fused_kernel(tmp_path, capsys):
    """tau_gnn.yaml with torch on CUDA: the summary says that EdgeConv ran fused (where Triton imports, as with
    PyTorch's CUDA wheels), and the scores are within 1e-5 of the CPU's."""
    from taggers.models import edgeconv_cuda

    scores = {}
    for device in ("cpu", "cuda"):
        data = yaml.safe_load((REPO / "process_configs" / "tau_gnn.yaml").read_text())
        data["modules"]["tauGNN"].update(backend="torch", device=device)
        data["source"]["files"] = [str(SAMPLE)]
        out, scores[device] = tag(tmp_path, data, device, capsys, 20, "Jet_tauGNN_tau")
        if device == "cuda":
            assert "torch on cuda" in out
            assert ("EdgeConv fused by Triton" in out) == (edgeconv_cuda._kernel() is not None)
    assert np.abs(scores["cuda"] - scores["cpu"]).max() <= 1e-5


def test_frames_sent_as_their_nonzero_pixels_arrive_bit_for_bit():
    from taggers import transfer

    rng = np.random.default_rng(7)
    frames = np.where(rng.random((16, 8, 125, 125)) < 0.04, rng.normal(size=(16, 8, 125, 125)), 0).astype(np.float32)
    frames[0, 0, 0, :3] = [-0.0, np.nan, 1e-45]
    sent = transfer.to_device(frames, "cuda", sparse=True)
    assert sent.is_cuda
    np.testing.assert_array_equal(sent.cpu().numpy().view(np.uint32), frames.view(np.uint32))
