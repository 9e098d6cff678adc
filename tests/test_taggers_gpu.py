"""CUDA paths of the taggers (marked gpu; skipped cleanly without a CUDA device)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import uproot
import yaml
from conftest import run_cli
from test_taggers import config, model_dir  # noqa: F401  (the fixture)

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
        data["outputs"][0]["file"] = str(tmp_path / f"{device}.root")
        cfg = tmp_path / f"{device}.yaml"
        cfg.write_text(yaml.safe_dump(data))
        rc, out, err = run_cli([str(cfg), "-n", "20", "--no-progress"], capsys)
        assert rc == 0, err
        if device == "cuda":
            assert ("torch on cuda" in out) if backend == "torch" else ("CUDAExecutionProvider" in out)
        with uproot.open(tmp_path / f"{device}.root") as f:
            scores[device] = np.concatenate(f["Events"]["Jet_tauGNN_tau"].array(library="np"))
    assert np.abs(scores["cpu"] - scores["cuda"]).max() <= 1e-4
