"""Multi-task models (taggers/heads.py, training/heads.py): heads parsed and checked with one-line errors, scores
per head, the summed loss, the metrics on toys with known answers, and a small multi-head training end to end
(export, parity, e2e-run branches per head)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from conftest import SAMPLE, run_cli

from e2e.errors import ConfigError
from taggers.heads import apply_heads, outputs_of, parse_heads
from training.heads import Objective, calibrate, classification_metrics, regression_metrics

HEADS = [
    {"name": "flavour", "classes": {"qcd": 0, "tau": 1}},
    {"name": "decay_mode", "target": "decay_mode", "only": {"label": [1]}, "weight": 0.5,
     "classes": {"dm0": 0, "dm1": 1, "dm2": 2, "dm10": 10, "dm11": 11}},
    {"name": "mass", "type": "regression", "target": "gen_mass", "only": {"label": [1]}, "weight": 0.5},
]  # fmt: skip


def test_heads_get_consecutive_columns_and_named_outputs() -> None:
    heads = parse_heads(HEADS, "heads")
    assert [(h.start, h.stop) for h in heads] == [(0, 2), (2, 7), (7, 8)]
    assert outputs_of(heads) == ["qcd", "tau", "dm0", "dm1", "dm2", "dm10", "dm11", "mass"]
    again = parse_heads([h.record() for h in heads], "model.yaml: heads", recorded=True)
    assert [h.record() for h in again] == [h.record() for h in heads]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "softmax"}, "type 'softmax': expected one of classification, regression"),
        ({"target": "colour"}, "target 'colour': expected a Jet truth field"),
        ({"classes": {"a": 0}}, "classes: expected at least two"),
        ({"classes": {"a": 0, "b": 0}}, "value is listed twice"),
        ({"only": {"label": 1}}, "only: expected {truth field: [values]}"),
        ({"weight": 0}, "weight: expected a positive finite loss weight"),
        ({"weight": float("inf")}, "weight: expected a positive finite loss weight"),
        ({"name": "not a name"}, "name: expected an identifier"),
        ({"colour": 1}, "unknown key 'colour'"),
        ({"classes": {"qcd": 0, "tau2": 1}}, None),
        ({"classes": {"tau": 0, "dm0": 1}}, "heads[1]: output name 'tau' is used by an earlier head"),
    ],
)
def test_bad_heads_are_one_line(change, message) -> None:
    blocks = [dict(HEADS[1], **change), HEADS[0]] if "dm0" in str(change) else [dict(HEADS[0], **change), *HEADS[1:]]
    if message is None:
        parse_heads(blocks, "heads")
        return
    with pytest.raises(ConfigError) as err:
        parse_heads(blocks, "heads")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_scores_per_head() -> None:
    heads = parse_heads(HEADS, "heads")
    heads[2].shift, heads[2].scale = 1.0, 0.5
    raw = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    out = apply_heads(raw, heads)
    np.testing.assert_allclose(out[:, 0:2].sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(out[:, 2:7].sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(out[:, 7], np.exp(1.0 + 0.5 * raw[:, 7].astype(np.float64)), rtol=1e-12)
    np.testing.assert_allclose(out[:, 2:7], torch.softmax(torch.from_numpy(raw[:, 2:7]).double(), 1).numpy())


def _truth(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    mode = np.where(label == 1, rng.choice([0, 1, 2, 10, 11], n), -1)
    mass = np.where(label == 1, rng.uniform(0.5, 2.0, n), rng.uniform(5, 20, n)).astype(np.float32)
    return {"label": label, "decay_mode": mode, "gen_mass": mass, "pt": rng.uniform(20, 100, n), "gen_pt": mass}


def test_metrics_on_toys_with_known_answers() -> None:
    heads = parse_heads(HEADS, "heads")
    t = _truth(3000)
    scores = np.zeros((3000, 8))
    scores[np.arange(3000), t["label"]] = 1.0  # perfect classification
    modes = [0, 1, 2, 10, 11]
    for i, m in enumerate(modes):
        scores[t["decay_mode"] == m, 2 + i] = 1.0
    scores[:, 7] = t["gen_mass"]  # predictions equal to the truth
    dm = classification_metrics(heads[1], scores, t)
    assert dm["accuracy"] == 1.0 and np.trace(dm["confusion"]) == dm["jets"] == int((t["label"] == 1).sum())
    assert classification_metrics(heads[0], scores, t)["tau_vs_rest"]["auc"] == 1.0
    reg = regression_metrics(heads[2], scores, t, baseline=2.0 * t["gen_mass"])
    assert reg["all"]["response"] == 1.0 and reg["all"]["resolution"] == 0.0
    assert reg["baseline"]["response"] == pytest.approx(2.0) and set(reg["pt_bins"]) == {"20-30", "30-50", "50-100"}
    # a known spread: predicted / true uniform in [0.8, 1.2] -> median 1, IQR / 2 = 0.1
    scores[:, 7] = t["gen_mass"] * np.random.default_rng(1).uniform(0.8, 1.2, 3000)
    reg = regression_metrics(heads[2], scores, t)
    assert abs(reg["all"]["response"] - 1.0) < 0.02 and abs(reg["all"]["resolution"] - 0.1) < 0.01
    n = reg["all"]["jets"]  # the median's standard error: 1.858 x resolution / sqrt(n)
    assert reg["all"]["response_error"] == pytest.approx(1.858 * reg["all"]["resolution"] / np.sqrt(n))
    assert set(reg["by_label"]) == {"tau"} and reg["by_label"]["tau"]["model"]["jets"] == n
    assert reg["by_label"]["tau"]["pt_bins"] == reg["pt_bins"]  # one kind of jet: its bins are all the bins


def test_calibration_sets_the_median_response_to_one() -> None:
    """A regression 10 % low with a spread and no pT dependence: after calibrate, exp(shift + scale * raw) / R(pT)
    has median predicted / true 1 on the jets it was calibrated on, and the resolution is unchanged."""
    heads = parse_heads([HEADS[2]], "heads")
    h = heads[0]
    h.shift, h.scale = 0.3, 0.7
    t = _truth(4001, seed=3)
    noisy = 0.9 * t["gen_mass"] * np.random.default_rng(4).lognormal(0.0, 0.2, len(t["label"]))
    raw = ((np.log(noisy) - h.shift) / h.scale)[:, None]
    before = regression_metrics(h, apply_heads(raw, heads), t)["all"]
    record = calibrate(h, apply_heads(raw, heads), t)
    after = regression_metrics(h, apply_heads(raw, heads, t["pt"]), t)["all"]
    assert record["response_before"] == pytest.approx(before["response"]) and 0.85 < before["response"] < 0.95
    assert after["response"] == pytest.approx(1.0, abs=0.01)
    assert after["resolution"] == pytest.approx(before["resolution"] / before["response"], rel=0.03)
    knots = [p for p, _ in record["pt_response"]]  # 20-100 GeV: ~2000 tau jets, the knots 20, 30, 50, 100
    assert knots == [20, 30, 50, 100] and all(abs(r - 1) < 0.04 for _, r in record["pt_response"])


def test_pt_calibration_takes_out_a_response_that_changes_with_pt() -> None:
    """Response 1.15 at 20 GeV falling to 0.85 at 100 GeV (linear in log pT), tops at 0.95 with 20 % of a far-off
    kind among them (ratio 100): after calibrate every pT bin's response is 1 within its statistical error, the
    outliers do not pull the top node, and a sparse bin is merged with its neighbour."""
    rng = np.random.default_rng(7)
    n_tau, n_top, n_odd = 20000, 3000, 600
    pt = np.concatenate([np.exp(rng.uniform(np.log(20), np.log(100), n_tau)), rng.uniform(500, 900, n_top + n_odd)])
    pt[:40] = rng.uniform(100, 200, 40)  # 40 jets in 100-200: too few for a node of their own
    label = np.r_[np.ones(n_tau, int), np.full(n_top, 4), np.ones(n_odd, int)]
    mass = np.r_[rng.uniform(0.5, 2.0, n_tau), np.full(n_top, 173.0), rng.uniform(0.5, 2.0, n_odd)]
    slope = 1.15 - 0.3 * np.log(pt / 20) / np.log(5)
    response = np.r_[slope[:n_tau], np.full(n_top, 0.95), np.full(n_odd, 100.0)]
    predicted = mass * response * rng.lognormal(0.0, 0.15, len(pt))
    t = {"label": label, "gen_mass": mass.astype(np.float32), "pt": pt, "decay_mode": np.full(len(pt), -1)}
    heads = parse_heads([dict(HEADS[2], only={"label": [1, 4]})], "heads")
    h = heads[0]
    raw = np.log(predicted)[:, None]  # shift 0, scale 1
    record = calibrate(h, apply_heads(raw, heads), t)
    bins = regression_metrics(h, apply_heads(raw, heads, pt), t)["by_label"]
    for kind in ("tau", "top"):
        for name, row in bins[kind]["pt_bins"].items():
            stats = row["model"]
            if kind == "tau" and float(name.split("-")[0]) >= 100:
                continue  # the far-off kind
            assert abs(stats["response"] - 1) < max(3 * stats["response_error"], 0.01), (kind, name, stats)
    knots = [p for p, _ in record["pt_response"]]  # 200 GeV: 40 jets between 100 and 500, too few
    assert knots == [20, 30, 50, 100, 500, 700, 900]
    again = parse_heads([h.record()], "model.yaml: heads", recorded=True)[0]
    assert again.pt_response == h.pt_response
    with pytest.raises(ValueError, match="needs the jets' pT"):
        apply_heads(raw, heads)


@pytest.mark.parametrize(
    "nodes", [[[50.0, 1.0], [20.0, 1.1]], [[20.0, -1.0]], [[20.0]], "1.0", [[20.0, float("nan")]], [[True, 1.0]]]
)
def test_bad_pt_response_is_one_line(nodes) -> None:
    block = dict(HEADS[2], shift=0.0, scale=1.0, columns=[0, 1], pt_response=nodes)
    with pytest.raises(ConfigError) as err:
        parse_heads([block], "model.yaml: heads", recorded=True)
    assert "pt_response: expected [[jet pT in GeV, response], ...]" in str(err.value) and "\n" not in str(err.value)


def test_balance_weights_classes_and_jet_kinds() -> None:
    """balance (the default): inverse-frequency class weights, and every Jet_label of a regression head the same
    total weight; balance: false: every jet alike."""
    t = _truth(1000, seed=5)
    t["label"] = np.where(np.arange(1000) < 800, 1, 4)  # 800 tau and 200 top jets
    train = np.arange(1000)
    reg = {"name": "mass", "type": "regression", "target": "gen_mass", "only": {"label": [1, 4]}}
    cls = {"name": "kind", "classes": {"tau": 1, "top": 4}}
    obj = Objective(parse_heads([cls, reg], "heads"), t, train)
    np.testing.assert_allclose(obj.weights[0].numpy(), [1000 / (2 * 800), 1000 / (2 * 200)], rtol=1e-6)
    w = obj.weights[1]
    assert w[t["label"] == 1].sum() == pytest.approx(w[t["label"] == 4].sum()) == pytest.approx(500.0)
    plain = Objective(parse_heads([{**cls, "balance": False}, {**reg, "balance": False}], "heads"), t, train)
    assert np.all(plain.weights[0].numpy() == 1.0) and np.all(plain.weights[1] == 1.0)
    record = parse_heads([{**cls, "balance": False}], "heads")[0].record()
    assert parse_heads([record], "model.yaml", recorded=True)[0].balance is False


def test_objective_masks_heads_and_learns() -> None:
    """The regression and decay-mode losses see only tau jets; a linear model on informative features lowers
    the summed loss by more than half in 200 steps."""
    heads = parse_heads(HEADS, "heads")
    t = _truth(512, seed=2)
    train = np.arange(512)
    obj = Objective(heads, t, train)
    assert heads[2].shift == pytest.approx(np.log(t["gen_mass"][t["label"] == 1]).mean(), rel=1e-6)
    assert obj.masks[1].sum() == obj.masks[2].sum() == (t["label"] == 1).sum()
    features = np.stack([t["label"], np.log(t["gen_mass"])] + [t["decay_mode"] == m for m in (0, 1, 2, 10, 11)], 1)
    x = torch.from_numpy(features.astype(np.float32))
    torch.manual_seed(0)
    model = torch.nn.Linear(7, 8)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(200):
        loss = obj(model(x), train)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    qcd_only = np.flatnonzero(t["label"] == 0)[:10]  # no tau jet: the masked heads add nothing
    with torch.no_grad():
        flavour_only = Objective(heads[:1], t, train)(model(x[qcd_only]), qcd_only)
        assert float(obj(model(x[qcd_only]), qcd_only)) == pytest.approx(float(flavour_only))


def test_multi_head_training_exports_and_runs(tmp_path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    from e2e.cli.train import main as train_main

    graphs = {"type": "HitGraphProducer", "window": 33, "k": 8}
    cfg = {
        "name": "multi",
        "product": "hitGraphs",
        "process": {"source": {"files": [str(SAMPLE)], "step_size": 50}, "modules": {"hitGraphs": graphs}},
        "output": str(tmp_path / "multi"),
        "split": [0.5, 0.25, 0.25],
        "heads": HEADS,
        "model": {"name": "ParticleNet", "hyperparameters": {"k": 4, "widths": [8], "layers": 1, "head": 8}},
        "optimizer": {"max_epochs": 1, "batch_size": 32, "budget_minutes": 1},
        "threads": 1,
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))  # the classes in their order
    assert train_main([str(path), "--no-progress"]) == 0
    spec = yaml.safe_load((tmp_path / "multi" / "model.yaml").read_text())
    assert spec["outputs"] == ["qcd", "tau", "dm0", "dm1", "dm2", "dm10", "dm11", "mass"]
    assert spec["heads"][2]["columns"] == [7, 8] and spec["heads"][2]["scale"] > 0
    assert spec["architecture"]["hyperparameters"]["n_classes"] == 8
    heads_metrics = spec["metrics"]["test"]["heads"]
    assert np.array(heads_metrics["decay_mode"]["confusion"]).shape == (5, 5)
    assert heads_metrics["mass"]["all"]["jets"] > 0 and "baseline" in heads_metrics["mass"]
    assert spec["parity"]["max_abs_logit_difference"] <= 1e-4 and "heldout" in spec["metrics"]
    run = {
        "source": {"files": [str(SAMPLE)]},
        "modules": {"hitGraphs": graphs, "tag": {"type": "GNNTagger", "graphs": "hitGraphs",
                                                 "model": str(tmp_path / "multi"), "device": "cpu"}},
        "outputs": [{"file": str(tmp_path / "tagged.root"), "keep": ["tag"]}],
    }  # fmt: skip
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    rc, _, err = run_cli([str(tmp_path / "run.yaml"), "-n", "30", "--no-progress"], capsys)
    assert rc == 0, err
    import uproot

    with uproot.open(tmp_path / "tagged.root") as f:
        events = f["Events"]
        flav = np.stack([np.concatenate(events[f"Jet_tag_{c}"].array(library="np")) for c in ("qcd", "tau")], 1)
        modes = np.stack([np.concatenate(events[f"Jet_tag_dm{m}"].array(library="np")) for m in (0, 1, 2, 10, 11)], 1)
        mass = np.concatenate(events["Jet_tag_mass"].array(library="np"))
    np.testing.assert_allclose(flav.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(modes.sum(1), 1.0, rtol=1e-5)
    assert np.all(mass > 0) and np.all(np.isfinite(mass))
    # e2e-eval: the head metrics printed, drawn and in the JSON
    from e2e.cli.eval import main as eval_main

    capsys.readouterr()
    plot, js = tmp_path / "perf.png", tmp_path / "eval.json"
    assert eval_main([str(tmp_path / "tagged.root"), "--plot", str(plot), "--json", str(js), "--bootstrap", "5"]) == 0
    said = capsys.readouterr().out
    assert "tag head decay_mode:" in said and "tag head mass: response +- its error / resolution" in said
    assert "pass rate at the 60 % tau working point" in said
    import json

    results = json.loads(js.read_text())["tag"]["heads"]
    assert np.array(results["decay_mode"]["confusion"]).shape == (5, 5) and results["mass"]["all"]["jets"] > 0
    for head in ("flavour", "decay_mode", "mass"):
        assert (tmp_path / f"perf_tag_{head}.png").stat().st_size > 0


def test_a_regression_only_model(tmp_path, capsys) -> None:
    """A mass regression alone: no tau metrics, no ROC; the head's figure and its test metrics instead."""
    pytest.importorskip("onnxruntime")
    from e2e.cli.train import main as train_main

    source = {"files": [str(SAMPLE)], "step_size": 50}
    cfg = {
        "name": "mass_only",
        "product": "shapes",
        "process": {"source": source, "modules": {"shapes": {"type": "JetShapeProducer"}}},
        "output": str(tmp_path / "mass_only"),
        "selection": {"classes": {"qcd": 0, "tau": 1}},
        "heads": [HEADS[2]],
        "optimizer": {"max_epochs": 2, "batch_size": 32, "budget_minutes": 1},
    }  # fmt: skip
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert train_main([str(path), "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "head mass: response" in said and "test AUC" not in said
    spec = yaml.safe_load((tmp_path / "mass_only" / "model.yaml").read_text())
    assert spec["outputs"] == ["mass"] and "heldout" not in spec["metrics"] and "auc" not in spec["metrics"]["test"]
    assert spec["metrics"]["test"]["heads"]["mass"]["all"]["jets"] > 0
    assert (tmp_path / "mass_only" / "mass.png").is_file() and not (tmp_path / "mass_only" / "roc.png").exists()
    calibration = spec["metrics"]["test"]["heads"]["mass"]["calibration"]  # on the validation jets
    assert calibration["jets"] > 0 and np.isfinite(calibration["shift_change"])
    # e2e-run and e2e-eval: a tagger with a regression head and no tau score gets its head metrics and figure
    run = {
        "source": {"files": [str(SAMPLE)]},
        "modules": {"shapes": {"type": "JetShapeProducer"},
                    "mass": {"type": "ShapeTagger", "shapes": "shapes", "model": str(tmp_path / "mass_only")}},
        "outputs": [{"file": str(tmp_path / "tagged.root"), "keep": ["mass"]}],
    }  # fmt: skip
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    rc, _, err = run_cli([str(tmp_path / "run.yaml"), "--no-progress"], capsys)
    assert rc == 0, err
    from e2e.cli.eval import main as eval_main

    plot = tmp_path / "perf.png"
    assert eval_main([str(tmp_path / "tagged.root"), "--plot", str(plot), "--bootstrap", "5"]) == 0
    said = capsys.readouterr().out
    assert "mass head mass: response" in said and "pT 30-50 GeV:" in said and "misID@60%" not in said
    assert not plot.exists() and (tmp_path / "perf_mass_mass.png").stat().st_size > 0
    js = tmp_path / "qcd_only.json"  # --head-labels: only QCD jets, which this head never learnt: none left
    assert eval_main([str(tmp_path / "tagged.root"), "--plot", str(plot), "--head-labels", "0", "--json", str(js)]) == 0
    import json

    assert json.loads(js.read_text())["mass"]["heads"]["mass"]["all"]["jets"] == 0
    # a pT calibration in model.yaml: the tagger reads the jets' pT and divides by the response at it
    import uproot

    model_yaml = tmp_path / "mass_only" / "model.yaml"
    spec = yaml.safe_load(model_yaml.read_text())
    spec["heads"][0]["pt_response"] = [[25.0, 1.0], [50.0, 2.0]]
    model_yaml.write_text(yaml.safe_dump(spec, sort_keys=False))
    rc, _, err = run_cli([str(tmp_path / "run.yaml"), "-o", str(tmp_path / "calibrated.root"), "--no-progress"], capsys)
    assert rc == 0, err
    with uproot.open(tmp_path / "tagged.root") as f, uproot.open(tmp_path / "calibrated.root") as g:
        plain, calibrated = (np.concatenate(x["Events"]["Jet_mass_mass"].array(library="np")) for x in (f, g))
    with uproot.open(SAMPLE) as f:
        pt = np.concatenate(f["Events"]["Jet_pt"].array(library="np")).astype(np.float64)
    response = np.interp(np.log(pt), np.log([25.0, 50.0]), [1.0, 2.0])
    assert response.min() == 1.0 and response.max() == 2.0  # both ends and the slope are exercised
    np.testing.assert_allclose(calibrated, plain / response, rtol=1e-6)
    bad = yaml.safe_load((tmp_path / "run.yaml").read_text())  # jets that are not the product's
    bad["modules"]["mass"]["jets"] = "source:Track"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    rc, _, err = run_cli([str(tmp_path / "bad.yaml"), "-o", str(tmp_path / "bad.root"), "--no-progress"], capsys)
    assert rc != 0 and "modules.mass.jets" in err and len(err.strip().splitlines()) == 1


def test_two_kinds_of_jet_get_their_own_pt_bins_and_figure(tmp_path) -> None:
    """Tau jets at 20-100 GeV and top jets at 500-1000 GeV: each kind has its own response per pT bin, and a
    mixed bin (a tau-labelled fat jet among the tops) does not hide the tops' response."""
    from taggers.plots import PlotText, response_figure

    rng = np.random.default_rng(7)
    n = 2000
    label = np.where(np.arange(n) < 1000, 1, 4)
    pt = np.where(label == 1, rng.uniform(20, 100, n), rng.uniform(500, 1000, n))
    mass = np.where(label == 1, rng.uniform(0.5, 1.5, n), rng.normal(173, 5, n))
    pt[:20] = rng.uniform(600, 700, 20)  # tau-labelled jets among the tops, predicted far off
    truth = {"label": label, "pt": pt, "gen_mass": mass, "decay_mode": np.zeros(n), "gen_pt": pt}
    predicted = (mass * np.where(label == 4, 1.1, 1.0) * np.where(np.arange(n) < 20, 100.0, 1.0))[:, None]
    head = parse_heads([{"name": "mass", "type": "regression", "target": "gen_mass", "only": {"label": [1, 4]}}], "h")
    m = regression_metrics(head[0], predicted, truth, baseline=mass * 1.3)
    assert set(m["by_label"]) == {"tau", "top"}
    assert set(m["by_label"]["top"]["pt_bins"]) == {"500-700", "700-900", "900-2000"}
    assert m["by_label"]["top"]["pt_bins"]["500-700"]["model"]["response"] == pytest.approx(1.1)
    assert m["by_label"]["tau"]["pt_bins"]["500-700"]["model"]["response"] == pytest.approx(100.0)
    path = response_figure(tmp_path / "mass.png", m, PlotText(selection=["toy"]), "toy mass")
    assert path.stat().st_size > 10_000
