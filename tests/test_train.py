"""e2e-train in reduced form: a small GNN on the shipped sample -> artefact that GNNTagger runs in e2e-run."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import uproot
import yaml
from conftest import REPO, SAMPLE, run_cli

pytest.importorskip("onnxruntime")
GRAPHS = {"type": "JetGraphProducer", "window": 33, "hcal_upsample": False, "thresholds": {"ecal": 0.2}, "k": 8}


def _small_gnn_config(
    tmp_path, name: str, *, hidden: int, layers: int, max_epochs: int, split=(0.5, 0.25, 0.25), heldout=()
):
    """A GraphNet training configuration on the shipped sample, written to tmp_path/train.yaml (its path)."""
    cfg = {
        "name": name,
        "product": "jetGraphs",
        "process": {"source": {"files": [str(SAMPLE)], "step_size": 50}, "modules": {"jetGraphs": GRAPHS}},
        "output": str(tmp_path / name),
        "split": list(split),
        **({"heldout": list(heldout)} if heldout else {}),
        "model": {"name": "GraphNet", "hyperparameters": {"kind": "sage", "hidden": hidden, "layers": layers}},
        "optimizer": {"max_epochs": max_epochs, "batch_size": 32, "budget_minutes": 1},
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_then_tag(tmp_path, capsys):
    from e2e.cli.train import main as train_main

    path = _small_gnn_config(tmp_path, "small_gnn", hidden=16, layers=2, max_epochs=2, heldout=[str(SAMPLE)])
    (tmp_path / "datasets").mkdir()  # the dataset's files (dataset: disk, the default) go there and then go
    assert train_main([str(path), "--no-progress", "-s", f"dataset_dir={tmp_path / 'datasets'}"]) == 0
    assert list((tmp_path / "datasets").iterdir()) == []
    out = capsys.readouterr().out
    assert "test AUC" in out
    spec = yaml.safe_load((tmp_path / "small_gnn" / "model.yaml").read_text())
    assert "heldout" in spec["metrics"]
    assert spec["parity"]["max_abs_logit_difference"] <= 1e-4
    assert spec["provenance"]["command"].startswith("e2e-train ")
    assert spec["input"]["k"] == 8 and spec["outputs"] == ["qcd", "tau"]
    assert (tmp_path / "small_gnn" / "roc.png").stat().st_size > 0
    metrics = json.loads((tmp_path / "small_gnn" / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["auc"] <= 1.0
    # the artefact runs in e2e-run with the same producer settings
    run_cfg = {
        "source": {"files": [str(SAMPLE)]},
        "modules": {
            "jetGraphs": GRAPHS,
            "tauGNN": {"type": "GNNTagger", "model": str(tmp_path / "small_gnn"), "device": "cpu"},
        },
        "outputs": [{"file": str(tmp_path / "tagged.root"), "keep": ["tauGNN"]}],
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run_cfg))
    rc, _, err = run_cli([str(tmp_path / "run.yaml"), "--no-progress"], capsys)
    assert rc == 0, err
    with uproot.open(tmp_path / "tagged.root") as f:
        tau = np.concatenate(f["Events"]["Jet_tauGNN_tau"].array(library="np"))
    assert np.all((tau >= 0) & (tau <= 1))
    # e2e-eval reads the truth from the input recorded in the provenance and checks the alignment
    from e2e.cli.eval import main as eval_main

    assert (
        eval_main(
            [str(tmp_path / "tagged.root"), "--plot", str(tmp_path / "roc.png"), "--json", str(tmp_path / "eval.json")]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "tauGNN" in out and "20-100" in out and (tmp_path / "roc.png").stat().st_size > 0
    # re-evaluating the artefact reproduces the held-out metrics recorded in model.yaml
    again = json.loads((tmp_path / "eval.json").read_text())["tauGNN"]["all"]
    recorded = spec["metrics"]["heldout"]
    assert again["n_signal"] == recorded["n_signal"] and again["n_background"] == recorded["n_background"]
    assert abs(again["auc"] - recorded["auc"]) < 1e-5
    assert eval_main([str(tmp_path / "tagged.root"), "--input", str(tmp_path / "tagged.root")]) == 2
    assert "no truth branch Jet_label" in capsys.readouterr().err
    assert eval_main([str(tmp_path / "tagged.root"), "--input", str(REPO / "tests/data/vector_hits.root")]) == 2
    assert "do not have the same events" in capsys.readouterr().err


@pytest.mark.parametrize(("content", "expected"), [(None, "no such file"), (b"not root", "not a ROOT file")])
def test_eval_bad_file_is_one_line(tmp_path, capsys, content, expected):
    from e2e.cli.eval import main as eval_main

    path = tmp_path / "tagged.root"
    if content is not None:
        path.write_bytes(content)
    assert eval_main([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err and str(path) in err


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, monkeypatch, capsys):
    """A training stopped after an epoch and started again with --resume ends with the weights of an
    uninterrupted one; a checkpoint of another configuration is refused in one line."""
    from safetensors.numpy import load_file

    from e2e.cli.train import main as train_main
    from training import checkpoint

    def config(out):
        cfg = {
            "name": "small_gnn",
            "product": "jetGraphs",
            "process": {"source": {"files": [str(SAMPLE)], "step_size": 50}, "modules": {"jetGraphs": GRAPHS}},
            "output": str(out),
            "split": [0.5, 0.25, 0.25],
            "heldout": [],
            "threads": 1,
            "model": {"name": "GraphNet", "hyperparameters": {"kind": "sage", "hidden": 8, "layers": 2}},
            "optimizer": {"max_epochs": 3, "patience": 10, "batch_size": 32, "budget_minutes": 10},
        }
        path = tmp_path / f"{out.name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return str(path)

    whole = config(tmp_path / "whole")
    assert train_main([whole, "--no-progress"]) == 0
    assert not checkpoint.checkpoint_dir(tmp_path / "whole").exists()  # removed with the artefact written

    parts = config(tmp_path / "parts")
    real_save, calls = checkpoint.save, []

    def save_then_stop(*args, **kwargs):
        real_save(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a killed job: after the checkpoint of epoch 1

    monkeypatch.setattr(checkpoint, "save", save_then_stop)
    assert train_main([parts, "--no-progress"]) == 130
    assert not (tmp_path / "parts").exists() and checkpoint.checkpoint_dir(tmp_path / "parts").is_dir()
    monkeypatch.setattr(checkpoint, "save", real_save)
    capsys.readouterr()
    assert train_main([parts, "--no-progress", "--resume"]) == 0
    assert "resuming at epoch 2" in capsys.readouterr().err
    a = load_file(tmp_path / "whole" / "weights.safetensors")
    b = load_file(tmp_path / "parts" / "weights.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    spec = yaml.safe_load((tmp_path / "parts" / "model.yaml").read_text())
    assert spec["provenance"]["training"]["epochs"] == 3

    # a checkpoint left by another configuration is not used
    monkeypatch.setattr(checkpoint, "save", save_then_stop)
    calls.clear()
    assert train_main([parts, "--no-progress", "-o", str(tmp_path / "third")]) == 130
    monkeypatch.setattr(checkpoint, "save", real_save)
    capsys.readouterr()
    rc = train_main([parts, "--no-progress", "--resume", "-o", str(tmp_path / "third"), "-s", "seed=2"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "checkpoint is from another training configuration" in err and "\n" not in err
    # a damaged checkpoint of this configuration is one line, not a traceback; one without its tensors is not ignored
    tensors = checkpoint.checkpoint_dir(tmp_path / "third") / "tensors.safetensors"
    original = tensors.read_bytes()
    for damage in (original[:100], b""):
        if damage:
            tensors.write_bytes(damage)
        else:
            tensors.unlink()
        rc = train_main([parts, "--no-progress", "--resume", "-o", str(tmp_path / "third")])
        err = capsys.readouterr().err.strip().splitlines()[-1]  # (after the dataset's log line)
        want = "unreadable checkpoint (SafetensorError" if damage else "incomplete checkpoint (no tensors.safetensors)"
        assert rc == 2 and want in err and err.startswith("e2e-train: error:") and "remove it" in err, err


def test_train_with_per_jet_inputs_then_tag(tmp_path, capsys):
    """A ParticleNet on hit graphs with jet_features: trained, exported with a ``jet`` input, run by e2e-run
    (both backends give the same scores), refused with one line by a producer without them; a network that
    takes no per-jet inputs is refused by e2e-train with one line."""
    from e2e.cli.train import main as train_main

    hits = {"type": "HitGraphProducer", "window": 33, "k": 8, "jet_features": ["log_pt", "eta", "isolation"]}
    cfg = {
        "name": "jet_inputs",
        "product": "hitGraphs",
        "process": {"source": {"files": [str(SAMPLE)], "step_size": 50}, "modules": {"hitGraphs": hits}},
        "output": str(tmp_path / "jet_inputs"),
        "split": [0.5, 0.25, 0.25],
        "heldout": [str(SAMPLE)],
        "model": {"name": "ParticleNet", "hyperparameters": {"k": 4, "widths": [8], "layers": 1, "head": 8}},
        "optimizer": {"max_epochs": 1, "batch_size": 32, "budget_minutes": 1},
        "threads": 1,
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert train_main([str(path), "--no-progress"]) == 0
    spec = yaml.safe_load((tmp_path / "jet_inputs" / "model.yaml").read_text())
    assert spec["architecture"]["hyperparameters"]["n_jet_features"] == 3
    assert spec["input"]["jet_features"] == ["log_pt", "eta", "isolation"]
    assert spec["parity"]["max_abs_logit_difference"] <= 1e-4

    def tag(name: str, producer: dict, backend: str) -> tuple[int, str]:
        run_cfg = {
            "source": {"files": [str(SAMPLE)]},
            "modules": {
                "hitGraphs": producer,
                "tag": {"type": "GNNTagger", "graphs": "hitGraphs", "model": str(tmp_path / "jet_inputs"),
                        "backend": backend, "device": "cpu"},
            },
            "outputs": [{"file": str(tmp_path / f"{name}.root"), "keep": ["tag"]}],
        }  # fmt: skip
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(run_cfg))
        rc, _, err = run_cli([str(tmp_path / f"{name}.yaml"), "-n", "40", "--no-progress"], capsys)
        return rc, err

    scores = {}
    for backend in ("onnxruntime", "torch"):
        rc, err = tag(backend, hits, backend)
        assert rc == 0, err
        with uproot.open(tmp_path / f"{backend}.root") as f:
            scores[backend] = np.concatenate(f["Events"]["Jet_tag_tau"].array(library="np"))
    assert len(scores["torch"]) > 20
    np.testing.assert_allclose(scores["onnxruntime"], scores["torch"], atol=1e-5)
    rc, err = tag("without", {k: v for k, v in hits.items() if k != "jet_features"}, "onnxruntime")
    assert rc == 2 and err.count("\n") == 1 and "jet_features: producer []" in err

    cfg["model"] = {"name": "GraphNet", "hyperparameters": {"kind": "sage", "hidden": 8, "layers": 1}}
    cfg["output"] = str(tmp_path / "graphnet")
    path.write_text(yaml.safe_dump(cfg))
    assert train_main([str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "GraphNet takes no per-jet inputs" in err.strip().splitlines()[-1]


@pytest.mark.parametrize("perturbed", ["one_jet", "every_jet"])
def test_export_parity_allows_a_rare_neighbour_flip_but_not_a_broken_export(tmp_path, capsys, monkeypatch, perturbed):
    """ONNX parity: a network with a feature-space kNN may differ on a rare jet (another of two equidistant
    neighbours); the artefact records it. A difference on every jet is an export bug: e2e-train fails."""
    import onnxruntime as ort

    from e2e.cli.train import main as train_main

    real = ort.InferenceSession

    class Perturbed(real):  # type: ignore[misc, valid-type]
        def run(self, output_names, feed, *args, **kwargs):  # type: ignore[no-untyped-def]
            out = super().run(output_names, feed, *args, **kwargs)
            first = out[0].copy()
            if perturbed == "one_jet" and len(first) > 64:  # the largest batch only
                first[0] += 1e-3
            elif perturbed == "every_jet":
                first += 1e-3
            return [first, *out[1:]]

    monkeypatch.setattr(ort, "InferenceSession", Perturbed)
    path = _small_gnn_config(tmp_path, "parity_gnn", hidden=8, layers=1, max_epochs=1, split=[0.4, 0.1, 0.5])
    rc = train_main([str(path), "--no-progress"])
    if perturbed == "every_jet":
        assert rc != 0 and "ONNX export differs from torch" in capsys.readouterr().err
        assert not (tmp_path / "parity_gnn").exists()
        return
    assert rc == 0
    parity = yaml.safe_load((tmp_path / "parity_gnn" / "model.yaml").read_text())["parity"]
    assert parity["jets_above_1e-4"] == 1 and 1e-4 < parity["max_abs_logit_difference"] <= 2e-3


def test_the_default_heldout_is_found_from_any_directory(tmp_path, monkeypatch, capsys) -> None:
    """Without ``heldout`` in the configuration: the shipped sample from the repository root as before (the zoo's
    recorded configurations are unchanged), this repository's copy from any other directory, and none, said on
    screen, when there is no copy; a given ``heldout`` is kept as given."""
    from e2e.cli.train import main
    from training import train as train_module
    from training.train import DEFAULT_HELDOUT, load_config

    base = yaml.safe_load((REPO / "process_configs" / "train_tau_shapes.yaml").read_text())
    assert "heldout" not in base
    monkeypatch.chdir(REPO)
    assert load_config(dict(base), "cfg").heldout == [DEFAULT_HELDOUT]
    monkeypatch.chdir(tmp_path)
    assert load_config(dict(base), "cfg").heldout == [str(REPO / DEFAULT_HELDOUT)]
    assert load_config({**base, "heldout": ["mine.root"]}, "cfg").heldout == ["mine.root"]
    assert load_config({**base, "heldout": []}, "cfg").heldout == []
    monkeypatch.setattr(train_module, "DEFAULT_HELDOUT", "data/no_such_sample.root")
    assert load_config(dict(base), "cfg").heldout == []
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(base))
    assert main([str(tmp_path / "cfg.yaml"), "--dump-config"]) == 0
    captured = capsys.readouterr()
    assert "heldout: []" in captured.out and "note: no held-out file" in captured.err


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("seed=-1", "seed: got -1, expected a value >= 0"),
        ("selection.pt_range=[20]", "selection.pt_range: got [20.0], expected [low, high] in GeV"),
        ("selection.pt_range=[100, 20]", "selection.pt_range: got [100.0, 20.0]"),
        ("selection.classes={qcd: 0, tau: 0}", "a Jet_label is listed twice"),
        ("optimizer.lr=0", "optimizer.lr: got 0.0, expected a positive learning rate"),
        ("optimizer.lr=-1", "optimizer.lr: got -1.0, expected a positive learning rate"),
        ("selection.classes={'q cd': 0, tau: 1}", "selection.classes: 'q cd' is not an output name"),
        ("max_jets=0", "max_jets: 0 keeps no jet"),
        ("name=' '", "name: expected a model name"),
        ("process.outputs=[{file: x.root}]", "process.outputs: e2e-train makes its own"),
        ("process.source.files=data/sample_tau_qcd.root", "process.source.files: got 'data/sample_tau_qcd.root'"),
        ("process.source.files=[DIR]", "a directory, not a ROOT file"),
        ("heldout=[EMPTY]", "heldout: EMPTY: no events to tag after training"),
        ("heldout=[README.md]", "heldout: README.md: not a ROOT file"),
        ("product=nope", "product: no module labelled 'nope' in process.modules"),
        ("heads=[{name: m, type: regression, target: gen_mass, weight: .inf}]", "expected a positive finite loss"),
        (
            "heads=[{name: f, classes: {qcd: 0, tau: 1}, only: {label: [7]}}]",
            "class 'qcd' of head 'f' (label 0) has no",
        ),
        (
            "heads=[{name: m, type: regression, target: gen_mass, only: {label: [7]}}]",
            "no training jets with a gen_mass",
        ),
        ("heads=[{name: f, classes: {qcd: 0, ele: 2}}]", "class 'ele' of head 'f' (label 2) has no training jets"),
    ],
)
def test_bad_training_settings_are_one_line_before_training(setting, message, tmp_path, capsys):
    """Each refused before the model trains (most before the dataset is built), in one line, no traceback."""
    from conftest import write_hits

    from e2e.cli.train import main as train_main

    (tmp_path / "dir").mkdir()
    empty = tmp_path / "empty.root"
    with uproot.open(SAMPLE) as f:
        write_hits(empty, f["Events"].arrays(entry_stop=0))
    setting = setting.replace("DIR", str(tmp_path / "dir")).replace("EMPTY", str(empty))
    setting = setting.replace("README.md", str(REPO / "README.md"))
    message = message.replace("EMPTY", str(empty)).replace("README.md", str(REPO / "README.md"))
    cfg = _small_gnn_config(tmp_path, "bad", hidden=4, layers=1, max_epochs=1)
    rc = train_main([str(cfg), "--no-progress", "-s", "max_jets=40", "-s", setting])
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if "error" in line]  # (the lines before: its progress log)
    assert rc == 2 and len(errors) == 1 and message in errors[0] and "Traceback" not in err, err
    assert not (tmp_path / "bad").exists()


def _shapes_config(tmp_path, out, **extra) -> str:
    """A LinearNet on the jet shapes of the sample (seconds): writes tmp_path/<out name>.yaml, returns its path."""
    cfg = {
        "name": "shapes",
        "product": "jetShapes",
        "process": {"source": {"files": [str(SAMPLE)]}, "modules": {"jetShapes": {"type": "JetShapeProducer"}}},
        "output": str(out),
        "model": {"name": "LinearNet"},
        "optimizer": {"max_epochs": 2, "budget_minutes": 1},
        "heldout": [],
        "threads": 1,
        **extra,
    }
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_an_artefact_directory_is_replaced_only_when_it_holds_no_input_and_nothing_else(tmp_path, capsys):
    """An earlier artefact is replaced whole: never when the configuration, or a model a module of the process
    runs, is in it (or is it), nor when it holds files training does not write (they would be deleted)."""
    import shutil

    from e2e.cli.train import main as train_main

    out = tmp_path / "m"
    assert train_main([_shapes_config(tmp_path, out), "--no-progress"]) == 0
    inside = out / "train.yaml"
    shutil.copy(_shapes_config(tmp_path, out), inside)
    assert train_main([str(inside), "--no-progress"]) == 2
    assert f"holds the input {inside}" in capsys.readouterr().err and inside.exists()
    inside.unlink()
    (out / "notes.txt").write_text("mine")
    assert train_main([_shapes_config(tmp_path, out), "--no-progress"]) == 2
    assert "also holds notes.txt, which it does not write" in capsys.readouterr().err
    (out / "notes.txt").unlink()
    (out / "my_plot.png").write_bytes(b"mine")  # (a figure training does not make: roc.png and one per head only)
    assert train_main([_shapes_config(tmp_path, out), "--no-progress"]) == 2
    assert "also holds my_plot.png, which it does not write" in capsys.readouterr().err
    (out / "my_plot.png").unlink()
    tagger = {"type": "ShapeTagger", "shapes": "jetShapes", "model": str(out)}
    modules = {"jetShapes": {"type": "JetShapeProducer"}, "tagS": tagger}
    process = {"source": {"files": [str(SAMPLE)]}, "modules": modules}
    assert train_main([_shapes_config(tmp_path, out, process=process), "--no-progress"]) == 2
    assert f"is an input of the run ({out})" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.onnx", "model.yaml", "roc.png",
                                                     "weights.safetensors"]  # fmt: skip


def test_a_diverged_training_and_a_held_out_file_trained_on_are_said(tmp_path, capsys):
    from e2e.cli.train import main as train_main

    out = tmp_path / "lr"
    assert train_main([_shapes_config(tmp_path, out), "--no-progress", "-s", "optimizer.lr=1e30"]) == 2
    err = capsys.readouterr().err
    assert "training diverged: " in err and "Traceback" not in err and not out.exists()  # (NaN loss, or huge logits)
    out = tmp_path / "same"
    assert train_main([_shapes_config(tmp_path, out, heldout=[str(SAMPLE)]), "--no-progress"]) == 0
    assert "is also a training input: its held-out metrics are not independent" in capsys.readouterr().err
    heldout = yaml.safe_load((out / "model.yaml").read_text())["metrics"]["heldout"]
    assert heldout["also_training_input"] == [str(SAMPLE)] and "auc" in heldout


def test_an_output_named_zoo_name_is_that_zoo_entry(tmp_path) -> None:
    from taggers.artefact import ZOO
    from training.train import load_config

    base = yaml.safe_load(open(_shapes_config(tmp_path, tmp_path / "x")).read())
    assert load_config({**base, "output": "zoo:my_tagger"}, "cfg").output == str(ZOO / "my_tagger")
    with pytest.raises(Exception, match="is not a zoo name"):
        load_config({**base, "output": "zoo:../x"}, "cfg")


def test_a_resume_after_a_stop_exports_and_one_of_other_inputs_is_refused(tmp_path, monkeypatch, capsys):
    """A training that stopped early (patience) and was killed before its export resumes straight to the export:
    the same epochs and weights as the uninterrupted run (it trained one more epoch); a checkpoint of other jets
    (an input file changed since) is one line, not weights of one dataset described by another's provenance."""
    import shutil

    from safetensors.numpy import load_file

    from e2e.cli.train import main as train_main
    from training import train

    stop = {"optimizer": {"max_epochs": 30, "patience": 1, "budget_minutes": 1, "lr": 0.5}}
    assert train_main([_shapes_config(tmp_path, tmp_path / "whole", **stop), "--no-progress"]) == 0
    epochs = yaml.safe_load((tmp_path / "whole" / "model.yaml").read_text())["provenance"]["training"]["epochs"]
    assert epochs < 30  # (stopped early)
    real_export = train.export_with_parity

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # after the last epoch's checkpoint, before the artefact

    monkeypatch.setattr(train, "export_with_parity", killed)
    config = _shapes_config(tmp_path, tmp_path / "parts", **stop)
    assert train_main([config, "--no-progress"]) == 130
    monkeypatch.setattr(train, "export_with_parity", real_export)
    capsys.readouterr()
    assert train_main([config, "--no-progress", "--resume"]) == 0
    assert "it had stopped: early_stopping" in capsys.readouterr().err
    spec = yaml.safe_load((tmp_path / "parts" / "model.yaml").read_text())
    assert spec["provenance"]["training"]["epochs"] == epochs and spec["provenance"]["training"]["stopped"] == (
        "early_stopping"
    )
    a, b = (load_file(tmp_path / d / "weights.safetensors") for d in ("whole", "parts"))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # the inputs change under a checkpoint
    shutil.copy(SAMPLE, tmp_path / "in.root")
    process = {"source": {"files": [str(tmp_path / "in.root")]}, "modules": {"jetShapes": {"type": "JetShapeProducer"}}}
    config = _shapes_config(tmp_path, tmp_path / "changed", process=process, **stop)
    monkeypatch.setattr(train, "export_with_parity", killed)
    assert train_main([config, "--no-progress"]) == 130
    monkeypatch.setattr(train, "export_with_parity", real_export)
    from conftest import read_events, write_hits

    write_hits(tmp_path / "in.root", read_events(SAMPLE, 120))
    capsys.readouterr()
    assert train_main([config, "--no-progress", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the checkpoint was trained on other jets than the inputs give now" in err, err
    assert not (tmp_path / "changed").exists()


def test_repeated_events_a_busy_output_and_a_checkpoint_path_that_is_a_file(tmp_path, capsys):
    """Training inputs whose events repeat (the same file twice under two names) are refused with duplicate_ids:
    error, as e2e-run does, and pass without a word by default (the zoo's recipes share ids by design); a second
    training of an output being trained and a checkpoint path that is a file are one line before any dataset is
    built."""
    import shutil

    from e2e.cli.train import main as train_main
    from e2e.errors import E2EError
    from e2e.paths import exclusive
    from training import checkpoint

    shutil.copy(SAMPLE, tmp_path / "again.root")
    files = [str(SAMPLE), str(tmp_path / "again.root")]
    process = {"source": {"files": files}, "modules": {"jetShapes": {"type": "JetShapeProducer"}}}
    out = tmp_path / "twice"
    assert train_main([_shapes_config(tmp_path, out, process=process), "--no-progress"]) == 0
    assert "repeat" not in capsys.readouterr().err
    strict = {**process, "options": {"duplicate_ids": "error"}}
    assert train_main([_shapes_config(tmp_path, tmp_path / "strict", process=strict), "--no-progress"]) == 2
    assert "duplicate event ids: run 1, luminosityBlock 1, event 1" in capsys.readouterr().err
    with exclusive(out, "this artefact (e2e-train)"):
        assert train_main([_shapes_config(tmp_path, out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"twice: another process (pid {os.getpid()}) is writing this artefact (e2e-train) now" in err, err
        with pytest.raises(E2EError, match="is writing it now"):
            with exclusive(str(out) + "/", "it"):  # (the same output by another spelling)
                pass
    checkpoint.checkpoint_dir(out).write_text("x")
    assert train_main([_shapes_config(tmp_path, out), "--no-progress"]) == 2
    assert "twice.checkpoint: not a directory; e2e-train keeps the checkpoint" in capsys.readouterr().err


def test_a_head_without_validation_jets_is_one_line(tmp_path, capsys):
    """A regression head none of whose jets fell in the validation split early-stopped on a constant 0 loss and was
    'calibrated on 0 validation jets' (NaN in model.yaml): one line before training instead."""
    from e2e.cli.train import main as train_main

    heads = [{"name": "mass", "type": "regression", "target": "gen_mass", "only": {"label": [0]}}]
    config = _shapes_config(tmp_path, tmp_path / "m", heads=heads, max_jets=12, seed=1)
    assert train_main([config, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "heads: head 'mass' has no validation jets with its only: {'label': [0]}" in err, err
