"""The in-memory API (e2e.api.EventTagger): the same values as e2e-run for the same events, one event at a time
or many, from an awkward record array or a mapping; bad events fail with one line."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot
from conftest import REPO, SAMPLE

from dataformats.schema import SchemaError
from e2e.api import EventTagger

pytest.importorskip("onnxruntime")
CONFIG = REPO / "process_configs" / "tau_gnn.yaml"
N = 30


@pytest.fixture(scope="module")
def tagger():
    with EventTagger(CONFIG) as t:
        yield t


@pytest.fixture(scope="module")
def events():
    with uproot.open(SAMPLE) as f:
        return f["Events"].arrays(entry_stop=N)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, events):
    from e2e.cli.run import main

    out = tmp_path_factory.mktemp("api") / "ref.root"
    assert main([str(CONFIG), "-i", str(SAMPLE), "-o", str(out), "-n", str(N), "--no-progress"]) == 0
    with uproot.open(out) as f:
        return f["Events"].arrays(library="ak")


def test_same_values_as_e2e_run(tagger, events, reference) -> None:
    out = tagger(events)
    assert {"Jet_tauGNN_tau", "Jet_tauShapes_tau", "Jet_jetShapes_width"} <= set(out)
    assert isinstance(out, dict) and ak.Array(out).fields == list(out)  # a plain dict: awkward takes it whole
    for name, values in out.items():
        assert ak.to_list(values) == ak.to_list(reference[name]), name


def test_one_event_at_a_time_and_from_a_mapping(tagger, events, reference) -> None:
    for i in range(N):  # a jet's score does not depend on the other jets of its batch (ParticleNet: bit for bit)
        one = tagger(events[i : i + 1])
        alone, in_batch = one["Jet_tauGNN_tau"][0], reference["Jet_tauGNN_tau"][i]
        np.testing.assert_array_equal(ak.to_numpy(alone), ak.to_numpy(in_batch))
        assert ak.to_list(one["Jet_tauShapes_tau"][0]) == ak.to_list(reference["Jet_tauShapes_tau"][i])
    mapping = {name: events[name] for name in events.fields}
    np.testing.assert_array_equal(
        ak.to_numpy(ak.flatten(tagger(mapping)["Jet_tauGNN_tau"])), ak.to_numpy(ak.flatten(reference["Jet_tauGNN_tau"]))
    )
    empty = tagger(events[:0])
    assert len(empty["Jet_tauGNN_tau"]) == 0


def test_record_arrays_of_other_layouts(tagger, events, reference) -> None:
    """Events whose record layout is longer underneath (fields past its length) or indexed (a selection) give the
    values of the same events as a plain record array."""
    layout = events.layout
    longer = ak.Array(ak.contents.RecordArray(layout.contents, layout.fields, length=N - 5))
    assert longer.layout.contents[0].length == N
    out = tagger(longer)["Jet_tauGNN_tau"]
    assert ak.to_list(out) == ak.to_list(reference["Jet_tauGNN_tau"][: N - 5])
    keep = np.arange(N) % 3 != 1
    selected = tagger(events[keep])["Jet_tauGNN_tau"]
    assert ak.to_list(selected) == ak.to_list(reference["Jet_tauGNN_tau"][keep])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: {k: e[k] for k in e.fields if k != "EcalHit_energy"}, "no branch 'EcalHit_energy'"),
        (lambda e: {**{k: e[k] for k in e.fields}, "Jet_pt": ak.flatten(e["Jet_pt"])[: len(e)]}, "'Jet_pt' is"),
        (lambda e: {**{k: e[k] for k in e.fields}, "event": e["event"][:-1]}, "has 29 events"),
        (lambda e: [1, 2, 3], "expected an awkward Array of records or a mapping"),
    ],
)
def test_bad_events_are_one_line(tagger, events, change, message) -> None:
    with pytest.raises(SchemaError) as err:
        tagger(change(events))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_values_are_checked(tagger, events) -> None:
    bad = {k: events[k] for k in events.fields}
    energy = ak.to_numpy(ak.flatten(bad["EcalHit_energy"])).copy()
    energy[3] = np.nan
    bad["EcalHit_energy"] = ak.unflatten(energy, ak.num(bad["EcalHit_energy"]))
    with pytest.raises(SchemaError, match="EcalHit_energy"):
        tagger(bad)


def test_e2e_run_refuses_an_array_source(tmp_path, capsys) -> None:
    config = tmp_path / "memory.yaml"
    config.write_text(CONFIG.read_text().replace("type: RootSource", "type: ArraySource").replace(
        "  files: [data/sample_tau_qcd.root]\n", "").replace("  step_size: 2000\n", ""))  # fmt: skip
    from e2e.cli.run import main

    assert main([str(config), "-o", str(tmp_path / "x.root"), "--no-progress"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    from e2e.config import load_process
    from e2e.errors import ConfigError

    source = load_process({"source": {"type": "ArraySource"}, "modules": {}, "outputs": [{"file": "x.root"}]}).source
    source.begin()
    with pytest.raises(ConfigError, match="ArraySource holds events given in memory"):
        source.plan()
