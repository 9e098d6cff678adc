"""Bring your own model: an ONNX file with weaver's input convention, fed from JetGraphs by a model.yaml.

The model is built in the test: a small point-cloud network taking ``pf_points [N, 2, P]``,
``pf_features [N, C, P]`` and ``pf_mask [N, 1, P]`` and ending in a softmax, as weaver's ParticleNet exports.
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
from taggers.inputs import INPUT_KINDS

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.*", "ignore:You are using the legacy")
GRAPHS = SMALL_GRAPHS
POINTS = ["delta_eta", "delta_phi"]
FEATURES = ["track_pt", "ecal", "hcal", "delta_eta", "delta_phi"]
P = 24
N_EVENTS = 30


class PointNetLike(torch.nn.Module):
    """Per-point MLP on (points, features), masked mean and max, softmax: weaver's inputs and output."""

    def __init__(self) -> None:
        super().__init__()
        self.point = torch.nn.Conv1d(len(POINTS) + len(FEATURES), 16, 1)
        self.head = torch.nn.Linear(32, 2)

    def forward(self, pf_points: torch.Tensor, pf_features: torch.Tensor, pf_mask: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.point(torch.cat([pf_points, pf_features], dim=1))) * pf_mask
        mean = h.sum(dim=2) / pf_mask.sum(dim=2).clamp(min=1)
        peak = (h - 1e9 * (1 - pf_mask)).amax(dim=2) * (pf_mask.sum(dim=2) > 0)
        return torch.softmax(self.head(torch.cat([mean, peak], dim=1)), dim=1)


def _graphs() -> list:
    data = {
        "source": {"files": [str(SAMPLE)], "max_events": N_EVENTS, "step_size": 10},
        "modules": {"jetGraphs": GRAPHS},
        "outputs": [{"file": "unused.root", "keep": ["jetGraphs"]}],
    }
    return [b.get("jetGraphs") for b in Process(load_process(data)).iter_batches()]


def _write_model(path, net: torch.nn.Module, spec_extra: dict, params: dict, dynamic: bool = True) -> None:
    """The ONNX export of ``net`` (its first axes dynamic unless not ``dynamic``: a batch of 3 then) and model.yaml."""
    path.mkdir(parents=True, exist_ok=True)
    example = (torch.zeros(3, 2, P), torch.zeros(3, len(FEATURES), P), torch.ones(3, 1, P))
    outputs = ["softmax", "extra"] if isinstance(net, TwoOutputs) else ["softmax"]
    torch.onnx.export(
        net,
        example,
        str(path / "model.onnx"),
        dynamo=False,
        opset_version=18,
        input_names=["pf_points", "pf_features", "pf_mask"],
        output_names=outputs,
        dynamic_axes={k: {0: "N"} for k in ("pf_points", "pf_features", "pf_mask", *outputs)} if dynamic else None,
    )
    spec = {
        "name": "weaver_like",
        "architecture": {"name": "external"},
        "input": {"product": "graphs", **{k: params[k] for k in INPUT_KINDS["graphs"].spec_keys if k in params}},
        "outputs": ["qcd", "tau"],
        "output": "probabilities",
        "feed": {
            "layout": "points",
            "points": P,
            "sort_by": "ecal",
            "inputs": {"pf_points": POINTS, "pf_features": FEATURES, "pf_mask": "mask"},
        },
        "provenance": {"training": "random weights (test fixture)"},
    }
    spec.update(spec_extra)
    (path / "model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def _reference_inputs(g) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The point clouds built jet by jet, independently of taggers.feed: the P nodes of largest ECAL energy."""
    names = list(g.feature_names)
    pts = np.zeros((g.n_jets, 2, P), np.float32)
    feats = np.zeros((g.n_jets, len(FEATURES), P), np.float32)
    mask = np.zeros((g.n_jets, 1, P), np.float32)
    for j in range(g.n_jets):
        x = g.x[g.node_offsets[j] : g.node_offsets[j + 1]]
        order = sorted(range(len(x)), key=lambda i: (-x[i, names.index("ecal")], i))[:P]
        for slot, i in enumerate(order):
            pts[j, :, slot] = [x[i, names.index(n)] for n in POINTS]
            feats[j, :, slot] = [x[i, names.index(n)] for n in FEATURES]
            mask[j, 0, slot] = 1.0
    return pts, feats, mask


@pytest.fixture(scope="module")
def weaver_model(tmp_path_factory):
    torch.manual_seed(3)
    net = PointNetLike().eval()
    graphs = _graphs()
    path = tmp_path_factory.mktemp("byo") / "weaver_like"
    params = {**graphs[0].params, "thresholds": [0, 0, 0, 0.2, 0]}  # written by hand, as in the README
    _write_model(path, net, {}, params)
    return path, net, graphs


def _config(tmp, model, backend="onnxruntime") -> str:
    cfg = {
        "source": {"files": [str(SAMPLE)], "max_events": N_EVENTS, "step_size": 10},
        "modules": {
            "jetGraphs": GRAPHS,
            "tauWeaver": {"type": "GNNTagger", "model": str(model), "backend": backend, "micro_batch": 7},
        },
        "outputs": [{"file": str(tmp / "weaver.root"), "keep": ["tauWeaver"]}],
    }
    path = tmp / "weaver.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_weaver_convention_model_runs_through_e2e_run(tmp_path, weaver_model, capsys):
    path, net, graphs = weaver_model
    rc, _, err = run_cli([_config(tmp_path, path), "--no-progress"], capsys)
    assert rc == 0, err
    with uproot.open(tmp_path / "weaver.root") as f:
        tagged = np.concatenate(f["Events"]["Jet_tauWeaver_tau"].array(library="np"))
    with torch.inference_mode():
        expected = np.concatenate([net(*map(torch.from_numpy, _reference_inputs(g)))[:, 1].numpy() for g in graphs])
    assert len(tagged) == len(expected) > 20
    np.testing.assert_allclose(tagged, expected, atol=1e-5)  # "probabilities": no second softmax


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"architecture": {"name": "Transformer"}}, "architecture.name 'Transformer' is not a known architecture"),
        (
            {"feed": {"layout": "points", "points": P, "inputs": {"pf_points": POINTS, "pf_features": FEATURES}}},
            "model.onnx takes inputs pf_mask; it is fed pf_points, pf_features (model.yaml feed.inputs)",
        ),
        (
            {
                "feed": {
                    "layout": "points",
                    "points": P,
                    "inputs": {"pf_points": POINTS, "pf_features": FEATURES, "pf_mask": "mask", "pf_vectors": POINTS},
                }
            },
            "model.onnx takes no input pf_vectors",
        ),
        (
            {"feed": {"inputs": {"pf_points": "x", "pf_features": "x", "pf_mask": "x"}}},
            "model.onnx input 'pf_points' has rank 3",
        ),
        ({"outputs": ["qcd", "tau", "electron"]}, "model.onnx returns shape ['N', 2]; model.yaml names 3 outputs"),
        ({"output": "softmaxed"}, "output 'softmaxed': expected one of logits, probabilities, sigmoid"),
        (
            {
                "feed": {
                    "layout": "points",
                    "points": P,
                    "inputs": {"pf_points": ["delta_r"], "pf_features": FEATURES, "pf_mask": "mask"},
                }
            },
            "feed names 'delta_r', which the product does not have",
        ),
    ],
)
def test_mistakes_in_a_brought_model_are_one_line(tmp_path, weaver_model, capsys, change, expected):
    _, net, graphs = weaver_model
    model = tmp_path / "broken"
    _write_model(model, net, change, dict(graphs[0].params))
    rc, _, err = run_cli([_config(tmp_path, model), "--no-progress"], capsys)
    assert rc == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "weaver.root").exists()


def test_an_onnx_only_model_refuses_the_torch_backend(tmp_path, weaver_model, capsys):
    path, _, _ = weaver_model
    rc, _, err = run_cli([_config(tmp_path, path, backend="torch"), "--no-progress"], capsys)
    assert rc == 2 and "use backend: onnxruntime" in err and err.count("\n") == 1, err


class RowPerPoint(PointNetLike):
    """Forgot its pooling: one row of scores per point slot, not per jet."""

    def forward(self, pf_points: torch.Tensor, pf_features: torch.Tensor, pf_mask: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.point(torch.cat([pf_points, pf_features], dim=1))) * pf_mask
        return torch.softmax(self.head(torch.cat([h, h], dim=1).transpose(1, 2).reshape(-1, 32)), dim=1)


class BoolScores(PointNetLike):
    def forward(self, pf_points: torch.Tensor, pf_features: torch.Tensor, pf_mask: torch.Tensor) -> torch.Tensor:
        return super().forward(pf_points, pf_features, pf_mask) > 0.5


class TwoOutputs(PointNetLike):
    def forward(self, pf_points: torch.Tensor, pf_features: torch.Tensor, pf_mask: torch.Tensor) -> tuple:
        p = super().forward(pf_points, pf_features, pf_mask)
        return p, p[:, :1]


class Logits(PointNetLike):
    """Declared to return probabilities (the fixture's model.yaml), returns values below 0."""

    def forward(self, pf_points: torch.Tensor, pf_features: torch.Tensor, pf_mask: torch.Tensor) -> torch.Tensor:
        return super().forward(pf_points, pf_features, pf_mask) - 2.0


@pytest.mark.parametrize(
    ("net", "expected"),
    [
        (RowPerPoint, f"model.onnx returns shape [{7 * P}, 2] for 7 jets; model.yaml names 2 outputs"),
        (BoolScores, "model.onnx returns bool values; expected numbers"),
        (TwoOutputs, "model.onnx has 2 outputs (softmax, extra); e2e reads one, [jets, 2]"),
        (Logits, "model.yaml says output: probabilities, but model.onnx returns -1."),
    ],
)
def test_a_brought_model_that_does_not_return_one_row_of_numbers_per_jet_is_one_line(
    tmp_path, weaver_model, capsys, net, expected
):
    """Its output is checked per micro-batch (micro_batch: 7) before any score is written: a row per node would
    otherwise be written against the first jets, silently."""
    _, _, graphs = weaver_model
    model = tmp_path / "wrong"
    _write_model(model, net().eval(), {}, {**graphs[0].params, "thresholds": [0, 0, 0, 0.2, 0]})
    rc, _, err = run_cli([_config(tmp_path, model), "--no-progress"], capsys)
    assert rc == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "weaver.root").exists()


@pytest.mark.parametrize("micro_batch", [3, 1])
def test_a_brought_model_exported_with_a_fixed_batch_size_is_one_line(tmp_path, weaver_model, capsys, micro_batch):
    """Exported without dynamic axes (its example's batch of 3 baked in): refused when the session is made, not left
    to ONNX Runtime's error on the first smaller micro-batch (was "a bug in e2e")."""
    _, net, graphs = weaver_model
    model = tmp_path / "fixed"
    _write_model(model, net, {}, {**graphs[0].params, "thresholds": [0, 0, 0, 0.2, 0]}, dynamic=False)
    config = yaml.safe_load(open(_config(tmp_path, model)))
    config["modules"]["tauWeaver"]["micro_batch"] = micro_batch
    (tmp_path / "fixed.yaml").write_text(yaml.safe_dump(config))
    rc, _, err = run_cli([str(tmp_path / "fixed.yaml"), "--no-progress"], capsys)
    expected = "model.onnx input 'pf_points' has a fixed first dimension 3 ([3, 2, 24]); e2e runs micro-batches"
    assert rc == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "weaver.root").exists()
