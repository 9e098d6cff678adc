"""The shipped zoo models: they run in the main job and reproduce the held-out metrics recorded in model.yaml."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from conftest import REPO, run_cli

from taggers.artefact import ZOO, Artefact

MODELS = sorted(p.name for p in ZOO.iterdir() if (p / "model.yaml").is_file())


def test_zoo_is_shipped():
    assert {"tau_gnn", "tau_gnn_fast", "tau_cnn", "tau_shapes", "tau_multiclass", "jet_mass"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_artefact_is_complete_and_self_describing(name):
    art = Artefact.load(f"zoo:{name}")
    for f in ("model.onnx", "weights.safetensors", "model.yaml", "metrics.json"):
        assert (art.path / f).is_file(), f
    if "tau" in art.outputs:  # a tagger: its ROC curve; a model with heads: one figure per head
        assert (art.path / "roc.png").is_file()
    for head in art.spec.get("heads", []):
        assert (art.path / f"{head['name']}.png").is_file(), head["name"]
    prov = art.spec["provenance"]
    assert prov["command"].startswith("e2e-train ") and len(prov["config_sha256"]) == 64
    parity = art.spec["parity"]  # e2e-train's rule: within 1e-4, but for one jet or 0.5 % of them (up to 1e-2)
    assert prov["dataset"]["jets"]["train"] and parity["max_abs_logit_difference"] <= 1e-2
    assert parity.get("jets_above_1e-4", 0) <= max(1.0, 0.005 * parity.get("jets_compared", 584))
    if "jets_above_1e-4" not in parity:  # artefacts exported before the rule: every jet within 1e-4
        assert parity["max_abs_logit_difference"] <= 1e-4
    onnx = pytest.importorskip("onnx")
    meta = {p.key: p.value for p in onnx.load(str(art.path / "model.onnx")).metadata_props}
    assert yaml.safe_load(meta["e2e_model_yaml"])["name"] == name


@pytest.mark.parametrize(
    ("config", "taggers"),
    [
        ("tau_gnn", (("tauGNN", "tau_gnn"), ("tauShapes", "tau_shapes"))),
        ("tau_gnn_fast", (("tauGNN", "tau_gnn_fast"),)),
        ("tau_cnn", (("tauCNN", "tau_cnn"),)),
    ],
)
def test_main_jobs_reproduce_recorded_heldout_metrics(config, taggers, tmp_path, capsys, monkeypatch):
    from e2e.cli.eval import main as eval_main

    monkeypatch.chdir(REPO)
    out = tmp_path / f"{config}.root"
    rc, _, err = run_cli([str(REPO / "process_configs" / f"{config}.yaml"), "-o", str(out), "--no-progress"], capsys)
    assert rc == 0, err
    assert eval_main([str(out), "--json", str(tmp_path / "eval.json"), "--plot", str(tmp_path / "roc.png")]) == 0
    results = json.loads((tmp_path / "eval.json").read_text())
    for label, model in taggers:
        recorded = Artefact.load(f"zoo:{model}").spec["metrics"]["heldout"]
        again = results[label]["all"]
        assert again["n_signal"] == recorded["n_signal"] and again["n_background"] == recorded["n_background"]
        assert abs(again["auc"] - recorded["auc"]) <= max(1e-4, 0.1 * recorded["auc_error"])


def test_multi_head_main_jobs_run_on_the_sample(tmp_path, capsys, monkeypatch):
    """tau_multiclass.yaml and jet_mass.yaml on the shipped sample: every head's branches, and what e2e-eval
    makes of them within what the held-out samples gave (README)."""
    from e2e.cli.eval import main as eval_main

    monkeypatch.chdir(REPO)
    for config in ("tau_multiclass", "jet_mass"):
        out = tmp_path / f"{config}.root"
        args = [str(REPO / "process_configs" / f"{config}.yaml"), "-o", str(out), "--no-progress"]
        rc, _, err = run_cli(args, capsys)
        assert rc == 0, err
        js = tmp_path / f"{config}.json"
        assert eval_main([str(out), "--json", str(js), "--plot", str(tmp_path / f"{config}.png")]) == 0
    multi = json.loads((tmp_path / "tau_multiclass.json").read_text())["tauMulti"]
    assert multi["all"]["auc"] > 0.9 and multi["heads"]["flavour"]["accuracy"] > 0.75
    assert np.array(multi["heads"]["decay_mode"]["confusion"]).shape == (5, 5)
    mass = json.loads((tmp_path / "jet_mass.json").read_text())["jetMass"]["heads"]["mass"]
    tau = mass["by_label"]["tau"]  # the sample's 65 tau jets: the regression far better than the jet mass
    assert abs(tau["model"]["response"] - 1.0) < 0.3
    assert tau["model"]["resolution"] < 0.5 * tau["baseline"]["resolution"]


def test_parameter_count_excludes_buffers():
    art = Artefact.load("zoo:tau_shapes")  # logistic regression: one weight per shape and class, one bias per class
    n_shapes, n_classes = art.spec["architecture"]["hyperparameters"]["n_features"], len(art.outputs)
    assert art.n_parameters() == (n_shapes + 1) * n_classes


def test_flush_subnormals_zeroes_only_subnormal_floats():
    import torch

    from taggers.artefact import flush_subnormals

    tiny = torch.finfo(torch.float32).tiny
    values = [1.0, -2.5, tiny, -tiny, tiny / 2, -tiny / 4, 1e-45, 0.0, -0.0, float("inf"), float("nan")]
    doubles = torch.tensor([1e-310, 1e-300], dtype=torch.float64)
    state = {"w": torch.tensor(values), "n": torch.tensor([3, 0, -1]), "d": doubles}
    out = flush_subnormals(state)
    want = [1.0, -2.5, tiny, -tiny, 0.0, 0.0, 0.0, 0.0, -0.0, float("inf"), float("nan")]
    got = out["w"].tolist()
    assert [np.copysign(1.0, g) for g in got[:-1]] == [np.copysign(1.0, w) for w in want[:-1]]  # -0.0 kept
    np.testing.assert_array_equal(np.array(got), np.array(want))
    assert out["n"].tolist() == [3, 0, -1] and out["d"].tolist() == [0.0, 1e-300]  # float64: its own tiny


def test_subnormal_weights_are_flushed_at_load_with_the_same_scores():
    """tau_gnn_fast's head holds ~1,465 subnormal weights (weight decay on dead units); build_torch sets them to zero
    (on x86 each multiplication by one takes a microcode assist, ~100x slower) and the logits stay the same, bit for
    bit, as those of the stored weights."""
    import torch
    from safetensors.torch import load_file

    from e2e.config import load_process
    from e2e.process import Process
    from taggers.inputs import INPUT_KINDS

    art = Artefact.load("zoo:tau_gnn_fast")
    tiny = torch.finfo(torch.float32).tiny
    stored = load_file(str(art.path / "weights.safetensors"))
    assert sum(int(((t != 0) & (t.abs() < tiny)).sum()) for t in stored.values() if t.is_floating_point()) > 0
    flushed = art.build_torch()
    assert not any(((t != 0) & (t.abs() < tiny)).any() for t in flushed.state_dict().values() if t.is_floating_point())
    raw = art.build_torch()
    raw.load_state_dict(stored)  # the stored values, subnormals included
    data = yaml.safe_load((REPO / "process_configs" / "tau_gnn_fast.yaml").read_text())
    data["source"]["max_events"] = 60
    data["source"]["files"] = [str(REPO / "data" / "sample_tau_qcd.root")]
    batch = next(Process(load_process(data)).iter_batches())
    with torch.inference_mode():
        for inputs in INPUT_KINDS["graphs"].micro_batches(batch.get("jetGraphs"), 512):
            args = [torch.from_numpy(v) for v in inputs.values()]
            assert torch.equal(flushed(*args), raw(*args))
