"""e2e-reexport: a trained artefact's model.onnx exported again from its unchanged weights, checked
against torch, model.yaml and the ONNX metadata updated together; bad arguments change nothing."""

from __future__ import annotations

import shutil

import onnx
import pytest
from conftest import REPO

from e2e.cli.reexport import main
from taggers import artefact as A

pytest.importorskip("onnxruntime")


@pytest.fixture
def copy(tmp_path):
    """zoo:tau_gnn_fast copied, and tau_gnn_fast.yaml pointed at the copy."""
    model = tmp_path / "model"
    shutil.copytree(REPO / "taggers" / "zoo" / "tau_gnn_fast", model)
    config = tmp_path / "job.yaml"
    text = (REPO / "process_configs" / "tau_gnn_fast.yaml").read_text()
    text = text.replace("zoo:tau_gnn_fast", str(model)).replace(
        "data/sample_tau_qcd.root", str(REPO / "data" / "sample_tau_qcd.root")
    )
    config.write_text(text)
    return model, config


def test_reexport_keeps_the_weights_and_updates_the_metadata(copy, capsys) -> None:
    model, config = copy
    weights = (model / A.WEIGHTS).read_bytes()
    assert main([str(model), "--config", str(config), "--label", "tauGNN", "--max-events", "40"]) == 0
    assert "re-exported" in capsys.readouterr().out
    assert (model / A.WEIGHTS).read_bytes() == weights
    text = (model / A.MODEL_YAML).read_text()
    proto = onnx.load(str(model / A.ONNX))
    assert {p.key: p.value for p in proto.metadata_props}[A.ONNX_METADATA_KEY] == text
    block = A.Artefact.load(str(model)).spec["onnx_export"]
    assert block["command"].startswith("e2e-reexport " + str(model)) and block["parity"]["jets_above_1e-4"] == 0
    assert block["parity"]["max_abs_logit_difference"] < 1e-4
    ops = {n.op_type for n in proto.graph.node}
    assert "ScatterElements" not in ops and "If" not in ops  # the pooling gathers per graph when exported
    assert not list(model.glob("*.partial"))


@pytest.mark.parametrize(
    ("target", "label", "message"),
    [
        (None, "nope", "no module 'nope'"),
        (None, "jetGraphs", "not a tagger"),
        ("zoo:tau_gnn", "tauGNN", "not zoo:tau_gnn"),  # the configuration runs another model
    ],
)
def test_bad_arguments_write_nothing(copy, capsys, target, label, message) -> None:
    model, config = copy
    dirs = [model, REPO / "taggers" / "zoo" / "tau_gnn"]
    before = [{p.name: p.read_bytes() for p in d.iterdir()} for d in dirs]
    assert main([target or str(model), "--config", str(config), "--label", label, "--max-events", "10"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("e2e-reexport: ") and err.count("\n") == 1
    assert [{p.name: p.read_bytes() for p in d.iterdir()} for d in dirs] == before


@pytest.mark.parametrize(
    ("config", "extra", "message"),
    [("missing.yaml", [], "missing.yaml"), (None, ["--max-events", "0"], "--max-events")],
)
def test_a_missing_configuration_or_no_events_is_one_line(copy, tmp_path, capsys, config, extra, message) -> None:
    model, job = copy
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    assert (
        main([str(model), "--config", str(tmp_path / config) if config else str(job), "--label", "tauGNN", *extra]) == 2
    )
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


def test_a_model_with_non_finite_outputs_is_not_exported(copy, capsys) -> None:
    """NaN weights make NaN logits on both sides, which compare as no difference at all: the parity counts jets with
    a non-finite logit apart and refuses them, and nothing is written (was: re-exported with 'at most 0.00e+00')."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    model, config = copy
    state = load_file(str(model / A.WEIGHTS))
    name = next(k for k, v in state.items() if v.dtype == np.float32 and v.ndim == 2)
    state[name] = np.full_like(state[name], np.nan)
    save_file(state, str(model / A.WEIGHTS))
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    assert main([str(model), "--config", str(config), "--label", "tauGNN", "--max-events", "20"]) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite logits for" in err and "nothing was written" in err and err.count("\n") == 1, err
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


def test_parity_counts_non_finite_logits_and_the_batch_sizes_compared() -> None:
    import numpy as np
    import torch

    from training.train import onnx_parity, parity_failure

    class NaNSession:
        def get_inputs(self):
            return [type("Input", (), {"name": "x"})]

        def run(self, _names, feed):
            return [np.full((len(feed["x"]), 2), np.nan, np.float32)]

    batches = [{"x": np.ones((n, 3), np.float32)} for n in (1, 7, 7)]
    result = onnx_parity(torch.nn.Linear(3, 2), NaNSession(), batches)
    assert result["jets_not_finite"] == 15 and result["batch_sizes"] == [1, 7, 7] and result["jets_compared"] == 15
    assert "NaN or infinite logits for 15 of 15 jets" in parity_failure(result)


def test_weights_of_another_kind_of_dtype_are_refused(copy, capsys) -> None:
    """Integer tensors where the architecture has float weights: one line naming the tensor (float64 is cast)."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    model, config = copy
    state = load_file(str(model / A.WEIGHTS))
    name = next(k for k, v in state.items() if v.dtype == np.float32 and v.ndim == 2)
    save_file({**state, name: state[name].astype(np.float64)}, str(model / A.WEIGHTS))
    A.Artefact.load(str(model)).build_torch()  # float64: cast to float32
    save_file({**state, name: state[name].astype(np.int32)}, str(model / A.WEIGHTS))
    with pytest.raises(Exception, match=f"tensor '{name}' is stored as I32; the architecture's is float32"):
        A.Artefact.load(str(model)).build_torch()


def test_parity_refuses_outputs_of_another_shape() -> None:
    import numpy as np
    import torch

    from training.train import onnx_parity, parity_failure

    class WrongShape:
        def get_inputs(self):
            return [type("Input", (), {"name": "x"})]

        def run(self, _names, feed):
            return [np.zeros((len(feed["x"]), 3), np.float32)]

    result = onnx_parity(torch.nn.Linear(3, 2), WrongShape(), [{"x": np.ones((4, 3), np.float32)}])
    assert parity_failure(result) == "the outputs differ in shape (ONNX Runtime [4, 3], torch [4, 2])"


def test_a_model_fed_its_own_inputs_is_not_reexported(tmp_path, capsys) -> None:
    """A model.yaml ``feed`` block names the ONNX model's own inputs: a re-export would give it e2e's own names,
    which the feed would not match (it replaced a model that ran with one that could not)."""
    import yaml

    model = tmp_path / "model"
    shutil.copytree(REPO / "taggers" / "zoo" / "tau_shapes", model)
    spec = yaml.safe_load((model / A.MODEL_YAML).read_text())
    spec["feed"] = {"inputs": {"values": "values"}}
    (model / A.MODEL_YAML).write_text(yaml.safe_dump(spec, sort_keys=False))
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    config = tmp_path / "job.yaml"
    config.write_text(
        f"source: {{files: [{REPO / 'data' / 'sample_tau_qcd.root'}]}}\n"
        f"modules:\n  jetShapes: {{type: JetShapeProducer}}\n  tag: {{type: ShapeTagger, model: {model}}}\n"
        "outputs: [{file: unused.root}]\n"
    )
    assert main([str(model), "--config", str(config), "--label", "tag"]) == 2
    err = capsys.readouterr().err
    assert "feeds model.onnx its own inputs (feed); e2e-reexport exports e2e's own inputs only" in err, err
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


def test_reexport_puts_right_a_model_yaml_that_drifted_from_its_onnx(tmp_path, capsys) -> None:
    """Outputs renamed in model.yaml (new branch names): the ONNX model embeds the old model.yaml, so the tagger
    refuses it and says to re-export; e2e-reexport (which runs only the producers) does, and the job then runs."""
    import yaml

    from e2e.cli.run import main as run_main

    model = tmp_path / "model"
    shutil.copytree(REPO / "taggers" / "zoo" / "tau_shapes", model)
    spec = yaml.safe_load((model / A.MODEL_YAML).read_text())
    spec["outputs"] = ["background", "tau"]
    (model / A.MODEL_YAML).write_text(yaml.safe_dump(spec, sort_keys=False))
    config = tmp_path / "job.yaml"
    config.write_text(
        f"source: {{files: [{REPO / 'data' / 'sample_tau_qcd.root'}], max_events: 20}}\n"
        f"modules:\n  jetShapes: {{type: JetShapeProducer}}\n  tag: {{type: ShapeTagger, model: {model}}}\n"
        f"outputs: [{{file: {tmp_path / 'out.root'}, keep: [tag]}}]\n"
    )
    assert run_main([str(config), "--no-progress"]) == 2
    assert "or re-export the ONNX model (e2e-reexport)" in capsys.readouterr().err
    assert main([str(model), "--config", str(config), "--label", "tag", "--max-events", "40"]) == 0
    capsys.readouterr()
    assert run_main([str(config), "--no-progress"]) == 0
    import uproot

    with uproot.open(tmp_path / "out.root") as f:
        assert "Jet_tag_background" in f["Events"].keys()
