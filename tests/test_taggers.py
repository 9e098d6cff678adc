"""Tagger modules through e2e-run: torch and onnxruntime agree, mismatched producer/model pairs are refused.

The artefact here is built in the test with random weights (a test fixture, not a shipped model).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import uproot
import yaml
from conftest import SAMPLE, SMALL_GRAPHS, run_cli

from e2e.config import load_process
from e2e.process import Process
from taggers import artefact
from taggers.inputs import jet_groups
from taggers.models.networks import GraphNet

pytest.importorskip("onnxruntime")
N = 20
GRAPHS = SMALL_GRAPHS


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A GraphNet artefact whose input spec is the parameters of GRAPHS (weights random)."""
    data = {
        "source": {"files": [str(SAMPLE)], "max_events": 4},
        "modules": {"jetGraphs": GRAPHS},
        "outputs": [{"file": "unused.root", "keep": ["jetGraphs"]}],
    }
    g = next(Process(load_process(data)).iter_batches()).get("jetGraphs")
    torch.manual_seed(0)
    hyper = {"n_features": g.x.shape[1], "n_classes": 2, "kind": "sage", "hidden": 16, "layers": 2}
    net = GraphNet(**hyper)
    keys = ("channels", "window", "k", "hcal_upsample", "thresholds", "scale", "coordinates", "edges", "space")
    spec = {
        "name": "test_gnn",
        "architecture": {"name": "GraphNet", "hyperparameters": hyper},
        "input": {"product": "graphs", **{k: g.params[k] for k in keys}},
        "outputs": ["qcd", "tau"],
        "provenance": {"training": "random weights (test fixture)"},
    }
    ptr = torch.from_numpy(g.node_offsets)
    inputs = (torch.from_numpy(g.x), torch.from_numpy(g.neighbors), torch.from_numpy(g.batch_vector()), ptr)
    path = tmp_path_factory.mktemp("model") / "test_gnn"
    return artefact.save(
        path,
        net,
        spec,
        inputs,
        ["x", "neighbors", "batch", "ptr"],
        {"x": {0: "nodes"}, "neighbors": {0: "nodes"}, "batch": {0: "nodes"}, "ptr": {0: "ptr"}},
    )


def config(tmp, model_dir, backend, **graphs) -> dict:
    return {
        "process": "Tag",
        "source": {"files": [str(SAMPLE)]},
        "modules": {
            "jetGraphs": {**GRAPHS, **graphs},
            "tauGNN": {
                "type": "GNNTagger",
                "model": str(model_dir),
                "backend": backend,
                "device": "cpu",
                "micro_batch": 7,
            },
        },
        "outputs": [{"file": str(tmp / f"{backend}.root"), "keep": ["tauGNN"]}],
    }


def tag(tmp, data, name, capsys, n_events, branch="Jet_tauGNN_tau") -> tuple[str, np.ndarray]:
    """Run the configuration ``data`` through e2e-run on ``n_events``, written to TMP/NAME.root: (its stdout, the
    scores ``branch`` of all jets)."""
    data["outputs"][0]["file"] = str(tmp / f"{name}.root")
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(data))
    rc, out, err = run_cli([str(cfg), "-n", str(n_events), "--no-progress"], capsys)
    assert rc == 0, err
    with uproot.open(tmp / f"{name}.root") as f:
        return out, np.concatenate(f["Events"][branch].array(library="np"))


def test_torch_and_onnxruntime_agree_through_e2e_run(tmp_path, model_dir, capsys):
    scores = {}
    for backend in ("torch", "onnxruntime"):
        cfg = tmp_path / f"{backend}.yaml"
        cfg.write_text(yaml.safe_dump(config(tmp_path, model_dir, backend)))
        rc, out, err = run_cli([str(cfg), "-n", str(N), "--no-progress"], capsys)
        assert rc == 0, err
        assert ("torch on cpu" if backend == "torch" else "CPUExecutionProvider") in out
        with uproot.open(tmp_path / f"{backend}.root") as f:
            t = f["Events"].arrays(["nJet", "Jet_tauGNN_tau", "Jet_tauGNN_qcd"], library="np")
        scores[backend] = np.concatenate(t["Jet_tauGNN_tau"])
        assert all(len(s) == n for s, n in zip(t["Jet_tauGNN_tau"], t["nJet"], strict=True))
        total = np.concatenate(t["Jet_tauGNN_tau"]) + np.concatenate(t["Jet_tauGNN_qcd"])
        np.testing.assert_allclose(total, 1.0, rtol=1e-5)
    assert np.abs(scores["torch"] - scores["onnxruntime"]).max() <= 1e-4


def test_mismatched_producer_is_refused(tmp_path, model_dir, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, model_dir, "onnxruntime", k=16)))
    rc, _, err = run_cli([str(cfg), "-n", "2", "--no-progress"], capsys)
    assert rc == 2 and err.count("\n") == 1
    assert "do not match" in err and "k: producer 16, model 8" in err
    assert not (tmp_path / "onnxruntime.root").exists()


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_jet_groups_cover_the_jets_in_order_and_balance_over_threads(parts: int) -> None:
    """Micro-batches: consecutive, covering every jet once, at most ``step`` jets; over ``parts`` threads their
    number is a multiple of ``parts`` (unless there are fewer jets) and their sizes differ by at most one."""
    for n_jets in (0, 1, 2, 5, 9, 100, 1587, 1830):
        for step in (1, 2, 7, 16, 128, 10_000):
            groups = jet_groups(n_jets, step, parts)
            bounds = [a for a, _ in groups] + [n_jets]
            assert [b for _, b in groups] == bounds[1:] and bounds[0] == 0 and len(groups) <= n_jets
            sizes = [b - a for a, b in groups]
            assert all(0 < s <= step for s in sizes)
            if parts == 1:
                assert sizes[:-1] == [step] * (len(sizes) - 1)
            else:
                assert max(sizes, default=0) - min(sizes, default=0) <= 1
                assert len(groups) % parts == 0 or len(groups) == n_jets
                assert len(groups) < -(-n_jets // step) + parts
    with pytest.raises(ValueError, match="step and parts"):
        jet_groups(10, 0)


def test_missing_model_is_a_config_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, "zoo:no_such_model", "torch")))
    rc, _, err = run_cli([str(cfg), "--no-progress"], capsys)
    assert rc == 2 and "no zoo model 'no_such_model'" in err


@pytest.mark.parametrize(("config_name", "label"), [("tau_gnn", "tauGNN"), ("tau_cnn", "tauCNN")])
def test_torch_micro_batches_on_threads_give_the_same_scores(config_name, label):
    """torch on CPU with 2 threads runs 2 micro-batches at once, one thread each: the scores of the shipped
    models are those of one thread, bit for bit, and so are those of a lone micro-batch, which keeps both threads.
    Micro-batches of another size group the jets differently: tau_gnn's ParticleNet gives each jet the same scores
    bit for bit whatever its micro-batch (rows_independent: on 2 threads the tagger makes its micro-batches equal,
    an even number of them); tau_cnn's ResNet agrees to float rounding only (< 1e-6), as on some CPUs (AVX-512
    MKL / oneDNN) the products' kernels depend on the row count."""
    scores = {}
    for threads, micro_batch in ((1, 16), (2, 16), (1, 10_000), (2, 10_000)):
        data = yaml.safe_load((SAMPLE.parents[1] / "process_configs" / f"{config_name}.yaml").read_text())
        data["source"].update(files=[str(SAMPLE)], max_events=24)
        data["modules"][label].update(backend="torch", device="cpu", threads=threads, micro_batch=micro_batch)
        data["outputs"][0]["keep"] = [label]
        process = Process(load_process(data))
        tagger = process.desc.modules[label]
        got = [b.get(label) for b in process.iter_batches()]
        scores[threads, micro_batch] = np.concatenate([t.values for t in got])
        if (threads, micro_batch) == (2, 16):
            assert tagger._threads == 2 and len(scores[threads, micro_batch]) > 2 * 16
            assert tagger._rows_independent() is (config_name == "tau_gnn")
    np.testing.assert_array_equal(scores[2, 16], scores[1, 16])
    np.testing.assert_array_equal(scores[2, 10_000], scores[1, 10_000])
    if config_name == "tau_gnn":
        np.testing.assert_array_equal(scores[1, 10_000], scores[1, 16])
    else:
        np.testing.assert_allclose(scores[1, 10_000], scores[1, 16], rtol=0, atol=1e-6)


def test_tf32_switch_is_restored_and_cpu_ignores_precision(tmp_path, model_dir, capsys):
    """``precision: tf32`` acts on CUDA only, inside each call: torch's process-wide TF32 switches are the caller's
    again afterwards, and on the CPU the scores are float32's bit for bit (and the summary names no precision)."""
    from taggers.modules import tf32_switches

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = True, False
        with tf32_switches(False):
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, False)
        with pytest.raises(RuntimeError), tf32_switches(True):
            assert torch.backends.cudnn.allow_tf32
            raise RuntimeError
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, False)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    scores = {}
    for precision in ("float32", "tf32"):
        data = config(tmp_path, model_dir, "torch")
        data["modules"]["tauGNN"]["precision"] = precision
        out, scores[precision] = tag(tmp_path, data, precision, capsys, 5)
        assert "torch on cpu, micro-batch" in out and "tf32" not in out.split("tauGNN: model")[1].splitlines()[0]
    assert np.array_equal(scores["float32"], scores["tf32"])


def test_unknown_precision_is_one_line(tmp_path, model_dir, capsys):
    data = config(tmp_path, model_dir, "torch")
    data["modules"]["tauGNN"]["precision"] = "fp16"
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(data))
    rc, _, err = run_cli([str(cfg), "-n", "2", "--no-progress"], capsys)
    assert rc == 2 and err.count("\n") == 1
    assert "modules.tauGNN.precision" in err and "float32" in err and "tf32" in err and "bf16" in err


def test_onnxruntime_cuda_provider_that_does_not_start(tmp_path, model_dir, capsys, monkeypatch):
    """ONNX Runtime lists its CUDA provider but runs the CPU one (its CUDA or cuDNN libraries did not load; here a
    CPU build that claims it): ``device: cuda`` is one line naming the cause, ``auto`` runs on the CPU and says so."""
    import onnxruntime as ort

    from taggers import modules

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(modules, "_cuda_device_present", lambda: True)
    for device in ("cuda", "auto"):
        data = config(tmp_path, model_dir, "onnxruntime")
        data["modules"]["tauGNN"]["device"] = device
        data["outputs"][0]["file"] = str(tmp_path / f"{device}.root")
        cfg = tmp_path / f"{device}.yaml"
        cfg.write_text(yaml.safe_dump(data))
        with pytest.warns(UserWarning, match="CUDAExecutionProvider"):  # onnxruntime's own warning
            rc, out, err = run_cli([str(cfg), "-n", "3", "--no-progress"], capsys)
        if device == "cuda":
            assert rc == 2 and err.count("\n") == 1, err
            assert "modules.tauGNN.device: cuda requested" in err and "could not start its CUDA" in err
            assert not (tmp_path / "cuda.root").exists()
        else:
            assert rc == 0, err
            assert "onnxruntime, CPUExecutionProvider (the CUDA provider did not start)" in out
