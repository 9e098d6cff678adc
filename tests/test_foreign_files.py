"""Files e2e did not write: other integer/float widths, own branch names and units, a tree in a TDirectory,
RNTuple. Each runs through tau_gnn_fast.yaml with only the source block changed and gives the same scores."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml
from conftest import REPO, SAMPLE, read_events, run_cli

from dataformats import schema

CONFIG = REPO / "process_configs" / "tau_gnn_fast.yaml"
N = 40


def _tag(tmp, capsys, source: dict, name: str) -> np.ndarray:
    data = yaml.safe_load(CONFIG.read_text())
    data["source"] = {**source, "max_events": N}
    data["outputs"][0]["file"] = str(tmp / f"{name}_tagged.root")
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(data))
    rc, _, err = run_cli([str(cfg), "--no-progress"], capsys)
    assert rc == 0, err
    with uproot.open(tmp / f"{name}_tagged.root") as f:
        return np.concatenate(f["Events"]["Jet_tauGNN_tau"].array(library="np"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")

    data = yaml.safe_load(CONFIG.read_text())
    data["source"] = {"files": [str(SAMPLE)], "max_events": N}
    data["outputs"][0]["file"] = str(tmp / "ref.root")
    from e2e.config import load_process
    from e2e.process import Process

    Process(load_process(data)).run(progress=False)
    with uproot.open(tmp / "ref.root") as f:
        return np.concatenate(f["Events"]["Jet_tauGNN_tau"].array(library="np"))


def _foreign_columns(ev: ak.Array) -> dict:
    """The sample with other types, names and units: ids int64 renamed, EcalHit as ecalRecHit_* (int32 cells,
    energies in MeV as float64, int64 counter), Jet_pt in MeV (float64), Track_charge int32."""
    out: dict = {
        "runId": ak.to_numpy(ev.run).astype(np.int64),
        "lumiId": ak.to_numpy(ev.luminosityBlock).astype(np.int64),
        "eventId": ak.to_numpy(ev.event).astype(np.int64),
    }
    for coll in ("EcalHit", "HcalHit", "Track", "TrackerHit", "Jet"):
        fields = {}
        for f in ev.fields:
            if f.startswith(coll + "_"):
                fields[f[len(coll) + 1 :]] = ev[f]
        if coll == "EcalHit":
            fields = {
                "ieta": ak.values_astype(fields["ieta"], np.int32),
                "iphi": ak.values_astype(fields["iphi"], np.int32),
                "energy": ak.values_astype(fields["energy"], np.float64) * 1000.0,
            }
            out["ecalRecHit"] = ak.zip(fields)
            continue
        if coll == "Jet":
            fields["pt"] = ak.values_astype(fields["pt"], np.float64) * 1000.0
        if coll == "Track":
            fields["charge"] = ak.values_astype(fields["charge"], np.int32)
        out[coll] = ak.zip(fields)
    return out


def test_other_types_names_units_and_a_directory(tmp_path, capsys, reference):
    ev = read_events(SAMPLE, N)
    path = tmp_path / "foreign.root"
    cols = _foreign_columns(ev)
    with uproot.recreate(path) as f:
        f.mkdir("ntuples")
        f["ntuples"].mktree(
            "Events",
            {k: (v.dtype if isinstance(v, np.ndarray) else v.type.content) for k, v in cols.items()},
            counter_name=lambda c: f"n{c}",
        )
        f["ntuples/Events"].extend(cols)
    source = {
        "files": [str(path)],
        "tree": "ntuples/Events",
        "branches": {"run": "runId", "luminosityBlock": "lumiId", "event": "eventId"},
        "prefixes": {"EcalHit": "ecalRecHit_"},
        "units": {"EcalHit_energy": 0.001, "Jet_pt": 0.001},
    }
    scores = _tag(tmp_path, capsys, source, "foreign")
    np.testing.assert_array_equal(scores, reference)
    # e2e-eval reads the truth as the job read it: its tree, names and units (Jet_pt in MeV here)
    from e2e.cli.eval import main as eval_main

    _tag(tmp_path, capsys, {"files": [str(SAMPLE)]}, "native")
    tables = []
    for name in ("foreign", "native"):
        out = tmp_path / f"{name}.json"
        assert eval_main([str(tmp_path / f"{name}_tagged.root"), "--json", str(out), "--plot", str(out) + ".png"]) == 0
        tables.append(json.loads(out.read_text()))
    capsys.readouterr()
    assert tables[0] == tables[1]
    # a value that does not fit the schema type: one line naming file, branch, entry, value and the range
    hits = cols["ecalRecHit"]
    big = ak.where(ak.local_index(hits.ieta) == 0, np.int32(70000), hits.ieta)
    cols["ecalRecHit"] = ak.zip({"ieta": ak.values_astype(big, np.int32), "iphi": hits.iphi, "energy": hits.energy})
    bad = tmp_path / "bad.root"
    with uproot.recreate(bad) as f:
        f.mkdir("ntuples")
        f["ntuples"].mktree(
            "Events", {k: (v.dtype if isinstance(v, np.ndarray) else v.type.content) for k, v in cols.items()}
        )
        f["ntuples/Events"].extend(cols)
    data = yaml.safe_load(CONFIG.read_text())
    data["source"] = {**source, "files": [str(bad)]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    rc, _, err = run_cli([str(tmp_path / "bad.yaml"), "-o", str(tmp_path / "x.root")], capsys)
    assert rc == 2 and err.count("\n") == 1, err
    assert "bad.root:ntuples/Events: branch 'EcalHit_ieta' entry 0 has value 70000, which does not fit int16" in err
    assert "(accepted: 0..279)" in err


def test_mapping_mistakes_are_one_line(tmp_path, capsys):
    for source, expected in [
        ({"branches": {"Jet_ptt": "x"}}, "source.branches: 'Jet_ptt' is not a schema branch (did you mean 'Jet_pt'?)"),
        ({"prefixes": {"Ecal": "e_"}}, "source.prefixes: 'Ecal' is not a collection"),
        ({"units": {"EcalHit_ieta": 2.0}}, "a unit factor applies to float branches"),
        ({"units": {"Jet_pt": -1.0}}, "expected a positive finite factor"),
        (
            {"branches": {"Jet_phi": "Jet_eta"}},
            "source.branches: Jet_eta and Jet_phi would both be read from the files' branch 'Jet_eta'",
        ),
        ({"branches": {"Jet_pt": "x", "Jet_eta": "x"}}, "Jet_pt and Jet_eta would both be read from the files' branch"),
    ]:
        data = yaml.safe_load(CONFIG.read_text())
        data["source"].update(source)
        (tmp_path / "m.yaml").write_text(yaml.safe_dump(data))
        rc, _, err = run_cli([str(tmp_path / "m.yaml"), "--dump-config"], capsys)
        assert rc == 2 and expected in err and err.count("\n") == 1, err
    data = yaml.safe_load(CONFIG.read_text())
    data["source"]["branches"] = {"Jet_phi": "Jet_eta", "Jet_eta": "Jet_phi"}  # (swapped: each its own)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(data))
    assert run_cli([str(tmp_path / "m.yaml"), "--dump-config"], capsys)[0] == 0
    data = yaml.safe_load(CONFIG.read_text())
    data["source"]["prefixes"] = {"EcalHit": "ecalRecHit_"}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(data))
    rc, out, _ = run_cli([str(tmp_path / "m.yaml"), "--dump-config"], capsys)
    assert rc == 0 and "ecalRecHit_" in out


def test_rntuple_input(tmp_path, capsys, reference):
    ev = read_events(SAMPLE, N)
    path = tmp_path / "rntuple.root"
    with uproot.recreate(path) as f:
        f["Events"] = {k: ev[k] for k in ev.fields}  # uproot 5.7 writes a dict as an RNTuple
    with uproot.open(path) as f:
        assert f.classnames()["Events;1"].endswith("RNTuple")
    assert schema.validate_file(path) == N
    scores = _tag(tmp_path, capsys, {"files": [str(path)]}, "rntuple")
    np.testing.assert_array_equal(scores, reference)


def test_an_rntuple_of_zipped_collections(tmp_path, capsys, reference):
    """uproot writes ak.zip'ed collections as RNTuple records (``EcalHit.ieta``, no counter): read by their record
    fields, the same scores as the flat file; a file with one field missing names it."""
    ev = read_events(SAMPLE, N)
    zipped = {k: ev[k] for k in ("run", "luminosityBlock", "event")}
    for coll in ("EcalHit", "HcalHit", "Track", "TrackerHit", "Jet"):
        zipped[coll] = ak.zip({k[len(coll) + 1 :]: ev[k] for k in ev.fields if k.startswith(coll + "_")})
    path = tmp_path / "zipped.root"
    with uproot.recreate(path) as f:
        f["Events"] = zipped
    with uproot.open(path) as f:
        assert "EcalHit.ieta" in f["Events"].keys() and "nEcalHit" not in f["Events"].keys()
    assert schema.validate_file(path) == N
    np.testing.assert_array_equal(_tag(tmp_path, capsys, {"files": [str(path)]}, "zipped"), reference)
    # its truth (Jet.label, Jet.gen_pt) read by e2e-eval and e2e-display --label as the job's source read it
    from e2e.cli.display import main as display_main
    from e2e.cli.eval import main as eval_main

    tagged = str(tmp_path / "zipped_tagged.root")
    assert eval_main([tagged, "--plot", str(tmp_path / "roc.png"), "--pt", "10", "200"]) == 0
    assert "tauGNN" in capsys.readouterr().out
    argv = [str(path), "--tagged", tagged, "--score", "Jet_tauGNN_tau", "--label", "tau", "-o", str(tmp_path / "d.png")]
    assert display_main(argv) == 0, capsys.readouterr().err
    assert (tmp_path / "d.png").stat().st_size > 0
    zipped["HcalHit"] = ak.zip({k[8:]: ev[k] for k in ev.fields if k.startswith("HcalHit_") and k != "HcalHit_iphi"})
    with uproot.recreate(path) as f:
        f["Events"] = zipped
    with pytest.raises(schema.SchemaError, match="HcalHit_iphi") as err:
        schema.inspect_file(path)
    assert "\n" not in str(err.value)


def test_old_files_with_8_bit_integers_are_read(tmp_path, capsys, reference):
    from conftest import write_hits

    ev = read_events(SAMPLE, N)
    old = {"Track_charge": np.int8, "TrackerHit_layer": np.uint8, "Jet_label": np.int8, "Jet_decay_mode": np.int8}
    path = write_hits(tmp_path / "old.root", {k: ev[k] for k in ev.fields}, dtypes=old)
    with uproot.open(path) as f:
        assert f["Events"]["Jet_label"].array().type.content.content.primitive == "int8"
    assert set(schema.inspect_file(path).casts) == set(old)
    np.testing.assert_array_equal(_tag(tmp_path, capsys, {"files": [str(path)]}, "old"), reference)


def test_remote_files_say_what_to_install(tmp_path, capsys, monkeypatch):
    """root:// needs fsspec-xrootd (an extra): without it, one line saying what to install; no network is used."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fsspec_xrootd" else real(name, *a)
    )
    url = "root://eospublic.cern.ch//eos/opendata/cms/hits.root"
    with pytest.raises(
        schema.SchemaError, match=r"reading root:// files needs fsspec-xrootd: pip install 'e2e\[xrootd\]'"
    ):
        schema.validate_file(url)
    data = yaml.safe_load(CONFIG.read_text())
    data["source"]["files"] = [url]
    (tmp_path / "remote.yaml").write_text(yaml.safe_dump(data))
    rc, _, err = run_cli([str(tmp_path / "remote.yaml"), "-o", str(tmp_path / "out.root")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "pip install 'e2e[xrootd]'" in err, err


def test_a_bool_truth_flag_is_read_as_0_and_1(tmp_path, capsys, reference):
    """``Jet_label`` stored as booleans (a ``vector<bool>`` is_tau flag, as many ntuples keep it): read as 0/1."""
    from conftest import write_hits

    ev = read_events(SAMPLE, N)
    path = write_hits(tmp_path / "flag.root", {k: ev[k] for k in ev.fields}, dtypes={"Jet_label": np.bool_})
    with uproot.open(path) as f:
        assert f["Events"]["Jet_label"].array().type.content.content.primitive == "bool"
    assert schema.inspect_file(path).casts == {"Jet_label": (np.dtype(np.bool_), np.dtype(np.int16))}
    np.testing.assert_array_equal(_tag(tmp_path, capsys, {"files": [str(path)]}, "flag"), reference)


def test_a_file_name_with_glob_characters_is_that_file(tmp_path, capsys, reference):
    """``run[1].root`` names that file, not the files the glob ``run[1].root`` matches (``run1.root``)."""
    import shutil

    from conftest import write_hits

    shutil.copy(SAMPLE, tmp_path / "run[1].root")
    ev = read_events(SAMPLE, N + 5)[5:]  # other events under the name the glob would match
    write_hits(tmp_path / "run1.root", {k: ev[k] for k in ev.fields})
    np.testing.assert_array_equal(_tag(tmp_path, capsys, {"files": [str(tmp_path / "run[1].root")]}, "lit"), reference)
    # a pattern that names no file is still a pattern
    scores = _tag(tmp_path, capsys, {"files": [str(tmp_path / "run[0-9].root")]}, "glob")
    assert len(scores) and not np.array_equal(scores[: len(reference)], reference)
