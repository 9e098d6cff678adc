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
