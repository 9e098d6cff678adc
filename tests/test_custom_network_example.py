"""examples/custom_network: a network outside the package (class_path), trained briefly, run through e2e-run."""

from __future__ import annotations

import numpy as np
import uproot
import yaml
from conftest import REPO, run_cli

EXAMPLE = REPO / "examples" / "custom_network"


def test_external_architecture_trains_and_tags(tmp_path, capsys, monkeypatch):
    from e2e.cli.train import main as train_main

    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.chdir(REPO)
    model = tmp_path / "tau_deepsets"
    assert (
        train_main(
            [str(EXAMPLE / "train_deepsets.yaml"), "-o", str(model), "--no-progress", "-s", "optimizer.max_epochs=2"]
        )
        == 0
    ), capsys.readouterr().err
    spec = yaml.safe_load((model / "model.yaml").read_text())
    assert spec["architecture"]["class_path"] == "deepsets:DeepSetNet"
    assert spec["architecture"]["hyperparameters"]["hidden"] == 32
    capsys.readouterr()
    scores = {}
    for backend in ("onnxruntime", "torch"):
        out = tmp_path / f"{backend}.root"
        rc, _, err = run_cli(
            [
                str(EXAMPLE / "tag_deepsets.yaml"),
                "-o",
                str(out),
                "--no-progress",
                "-s",
                f"modules.tauDeepSets.model={model}",
                "-s",
                f"modules.tauDeepSets.backend={backend}",
            ],
            capsys,
        )
        assert rc == 0, err
        with uproot.open(out) as f:
            scores[backend] = np.concatenate(f["Events"]["Jet_tauDeepSets_tau"].array(library="np"))
    assert np.all((scores["torch"] >= 0) & (scores["torch"] <= 1))
    np.testing.assert_allclose(scores["torch"], scores["onnxruntime"], atol=1e-5)


def test_a_network_that_does_not_fit_the_product_is_refused(tmp_path, capsys, monkeypatch):
    from e2e.cli.train import main as train_main

    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.chdir(REPO)
    cases = {
        ("-s", "model.name=ResNet"): "model: ResNet reads frames, but 'jetGraphs' makes graphs",
        ("-s", "model.class_path=deepsets:Nope"): "module 'deepsets' has no class 'Nope'",
        ("-s", "model.class_path=collections:OrderedDict"): "is not a torch.nn.Module class",
    }
    for args, expected in cases.items():
        argv = [str(EXAMPLE / "train_deepsets.yaml"), "-o", str(tmp_path / "m"), *args]
        if "name" in args[1]:
            argv += ["-s", "model.class_path="]
        assert train_main(argv) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "m").exists()
