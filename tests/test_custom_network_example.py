"""examples/custom_network: a network outside the package (class_path), trained briefly, run through e2e-run."""

from __future__ import annotations

import numpy as np
import pytest
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


BROKEN_NETWORKS = """
import torch
from deepsets import DeepSetNet


class ThreeLogits(DeepSetNet):
    def forward(self, x, neighbors, batch, ptr):
        out = super().forward(x, neighbors, batch, ptr)
        return torch.cat([out, out[:, :1]], 1)


class RowPerNode(DeepSetNet):
    def forward(self, x, neighbors, batch, ptr):
        return self.rho(torch.cat([self.phi(x), self.phi(x)], 1))


class Float64(DeepSetNet):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.double()


class NotFinite(DeepSetNet):
    def forward(self, x, neighbors, batch, ptr):
        return super().forward(x, neighbors, batch, ptr) / 0.0
"""


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        (
            "ThreeLogits",
            "model: ThreeLogits returns shape [32, 3] for a minibatch of 32 jets; expected a tensor [jets, 2]",
        ),
        ("RowPerNode", "model: RowPerNode returns shape ["),
        ("Float64", "model: Float64 has float64 parameters (phi."),
        ("NotFinite", "model: NotFinite returns NaN or infinite values on the first minibatch, before any training"),
    ],
)
def test_a_network_whose_output_is_not_one_row_of_logits_per_jet_is_one_line(
    tmp_path, capsys, monkeypatch, network, expected
):
    """Checked on the first minibatch: the loss failed inside torch ("a bug in e2e") or called the training
    diverged (lower the learning rate) for a network that returned a row per node, another width, float64 or NaN."""
    from e2e.cli.train import main as train_main

    (tmp_path / "broken_networks.py").write_text(BROKEN_NETWORKS)
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(REPO)
    argv = [str(EXAMPLE / "train_deepsets.yaml"), "-o", str(tmp_path / "m"), "--no-progress",
            "-s", f"model.class_path=broken_networks:{network}", "-s", "optimizer.batch_size=32"]  # fmt: skip
    assert train_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert expected in err, err
    assert not (tmp_path / "m").exists()
