"""Compatibility with the tools physicists use: files written by ROOT itself run through tau_gnn.yaml; the outputs
are read by ROOT (RDataFrame with the input as a friend, TTree::Draw with a numeric selection) and by coffea
(NanoEventsFactory with NanoAODSchema). `make test` installs the `root` and `coffea` extras, so these run in CI.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml
from conftest import REPO, SAMPLE, need_extra, read_events, run_cli

N = 12
CONFIG = REPO / "process_configs" / "tau_gnn.yaml"


@pytest.fixture(scope="module")
def ROOT():  # noqa: N802 - the module's name
    return need_extra("ROOT", "root")


def _tag(tmp, capsys, source: dict, name: str, n: int = N) -> dict:
    data = yaml.safe_load(CONFIG.read_text())
    data["source"] = {**source, "max_events": n}
    data["outputs"][0]["file"] = str(tmp / f"{name}_tagged.root")
    (tmp / f"{name}.yaml").write_text(yaml.safe_dump(data))
    rc, _, err = run_cli([str(tmp / f"{name}.yaml"), "--no-progress"], capsys)
    assert rc == 0, err
    with uproot.open(tmp / f"{name}_tagged.root") as f:
        return {k: np.concatenate(f["Events"][k].array(library="np")) for k in ("Jet_tauGNN_tau", "Jet_tauShapes_tau")}


def _write_with_root(ROOT, path) -> None:  # noqa: N803
    """N events of the sample written by PyROOT in the shapes ROOT users write: std::vector<int>/<float>/<double>,
    C arrays with an int counter, a long counter beside vectors, ids of other integer types, all inside a
    TDirectory."""
    ev = uproot.open(SAMPLE)["Events"].arrays(entry_stop=N, library="np")
    f = ROOT.TFile(str(path), "RECREATE")
    d = f.mkdir("ntuples")
    d.cd()
    tree = ROOT.TTree("Events", "hits written by ROOT")
    run, lumi, event = np.zeros(1, np.int32), np.zeros(1, np.int64), np.zeros(1, np.uint64)
    tree.Branch("run", run, "run/I")
    tree.Branch("luminosityBlock", lumi, "luminosityBlock/L")
    tree.Branch("event", event, "event/l")
    vectors = {}  # std::vector<int> cells, std::vector<double> ECAL energies, std::vector<float> the rest
    for name in (
        "EcalHit_ieta",
        "EcalHit_iphi",
        "EcalHit_energy",
        "Track_pt",
        "Track_eta",
        "Track_phi",
        "Track_charge",
        "Track_d0",
        "Track_dz",
        "Track_d0sig",
        "Track_dzsig",
        "Track_ecal_ieta",
        "Track_ecal_iphi",
        "TrackerHit_layer",
        "TrackerHit_ieta",
        "TrackerHit_iphi",
        "Jet_pt",
        "Jet_eta",
        "Jet_phi",
        "Jet_mass",
        "Jet_seed_ieta",
        "Jet_seed_iphi",
        "Jet_label",
        "Jet_gen_pt",
        "Jet_gen_mass",
        "Jet_decay_mode",
    ):
        kind = "int" if ev[name][0].dtype.kind in "iu" else ("double" if name == "EcalHit_energy" else "float")
        vectors[name] = ROOT.std.vector(kind)()
        tree.Branch(name, vectors[name])
    n_track_hits = np.zeros(1, np.int64)  # a long counter beside the tracker-hit vectors
    tree.Branch("nTrackerHit", n_track_hits, "nTrackerHit/L")
    most = max(len(x) for x in ev["HcalHit_ieta"])  # HCAL as C arrays with an int counter
    n_hcal = np.zeros(1, np.int32)
    hcal = {"ieta": np.zeros(most, np.int32), "iphi": np.zeros(most, np.int32), "energy": np.zeros(most, np.float32)}
    tree.Branch("nHcalHit", n_hcal, "nHcalHit/I")
    for fld, code in (("ieta", "I"), ("iphi", "I"), ("energy", "F")):
        tree.Branch(f"HcalHit_{fld}", hcal[fld], f"HcalHit_{fld}[nHcalHit]/{code}")
    for i in range(N):
        run[0], lumi[0], event[0] = ev["run"][i], ev["luminosityBlock"][i], ev["event"][i]
        for name, vec in vectors.items():
            vec.clear()
            cast = int if ev[name][i].dtype.kind in "iu" else float
            for value in ev[name][i]:
                vec.push_back(cast(value))
        n_track_hits[0] = len(ev["TrackerHit_layer"][i])
        n_hcal[0] = len(ev["HcalHit_ieta"][i])
        for fld in hcal:
            hcal[fld][: n_hcal[0]] = ev[f"HcalHit_{fld}"][i]
        tree.Fill()
    tree.Write()
    f.Close()


def test_files_written_by_root_run_through_tau_gnn(ROOT, tmp_path, capsys):  # noqa: N803
    path = tmp_path / "root_written.root"
    _write_with_root(ROOT, path)
    with uproot.open(path) as f:
        t = f["ntuples/Events"]
        assert t["EcalHit_ieta"].typename == "std::vector<int32_t>" and "double" in t["EcalHit_energy"].typename
        assert t["HcalHit_ieta"].typename == "int32_t[]" and t["nTrackerHit"].typename == "int64_t"
    ours = _tag(tmp_path, capsys, {"files": [str(SAMPLE)]}, "ours")
    theirs = _tag(tmp_path, capsys, {"files": [str(path)], "tree": "ntuples/Events"}, "theirs")
    for key in ours:
        np.testing.assert_array_equal(theirs[key], ours[key])


def test_root_reads_input_and_friend(ROOT, tmp_path, capsys):  # noqa: N803
    _tag(tmp_path, capsys, {"files": [str(SAMPLE)]}, "friend", n=-1)
    f = ROOT.TFile.Open(str(SAMPLE))
    tree = f.Get("Events")
    tree.AddFriend("Events", str(tmp_path / "friend_tagged.root"))
    inp = read_events(SAMPLE)
    n_tau = int(ak.sum(inp.Jet_label == 1))
    # numeric selections on small integers work (int16: ROOT reads int8 arrays as strings)
    assert tree.Draw("Jet_pt", "Jet_label==1", "goff") == n_tau
    with uproot.open(tmp_path / "friend_tagged.root") as out:
        scores = np.concatenate(out["Events"]["Jet_tauGNN_tau"].array(library="np"))
    assert tree.Draw("Jet_pt", "Events.Jet_tauGNN_tau>0.5", "goff") == int(np.sum(scores > 0.5))
    df = ROOT.RDataFrame(tree)
    selected = df.Define("tau", "Jet_pt[Jet_label == 1 && Events.Jet_tauGNN_tau > 0.5]").Define("n", "int(tau.size())")
    truth = ak.to_numpy(ak.flatten(inp.Jet_label)) == 1
    assert selected.Sum("n").GetValue() == int(np.sum(truth & (scores > 0.5)))


def test_coffea_nanoaod_schema_reads_the_friend(tmp_path, capsys):
    need_extra("coffea", "coffea")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

        _tag(tmp_path, capsys, {"files": [str(SAMPLE)]}, "coffea", n=-1)
        events = NanoEventsFactory.from_root(
            {str(tmp_path / "coffea_tagged.root"): "Events"}, schemaclass=NanoAODSchema, mode="eager"
        ).events()
        jets = events.Jet
        inp = read_events(SAMPLE)
        assert ak.all(ak.num(jets) == inp.nJet)
        assert ak.all(jets.pt == inp.Jet_pt) and ak.all(jets.eta == inp.Jet_eta)
        with uproot.open(tmp_path / "coffea_tagged.root") as f:
            assert ak.all(jets.tauGNN_tau == f["Events"]["Jet_tauGNN_tau"].array())
        # four-vector behaviour: the jets are Lorentz vectors (coffea's JetArray)
        assert ak.all(abs(jets.phi - inp.Jet_phi) < 1e-6) and ak.all(jets.mass >= 0)


@pytest.mark.parametrize("ecal", ["vector", "2d"])
def test_rhtree_written_by_root_with_std_vectors(ROOT, tmp_path, capsys, ecal):  # noqa: N803
    """An MLAnalyzer-style ntuple as CMSSW writes it (fevt/RHTree, std::vector<float> maps and jets, unsigned
    ids; or the ECAL map as a fixed 2D array, ECAL_energy[280][360]/F, its rows in order): RHTreeSource reads it
    and tau_cnn.yaml gives the same scores as on the hits of the same events."""
    from e2e.io.rhtree_writer import write_rhtree

    n = 4
    rh = tmp_path / "uproot_rhtree.root"
    write_rhtree([str(SAMPLE)], rh, max_events=n)
    arrays = uproot.open(rh)["fevt/RHTree"].arrays(library="ak")
    f = ROOT.TFile(str(tmp_path / "root_rhtree.root"), "RECREATE")
    f.mkdir("fevt").cd()
    tree = ROOT.TTree("RHTree", "RecHitAnalyzer-like")
    run, lumi, event = np.zeros(1, np.uint32), np.zeros(1, np.uint32), np.zeros(1, np.uint64)
    tree.Branch("runId", run, "runId/i")
    tree.Branch("lumiId", lumi, "lumiId/i")
    tree.Branch("eventId", event, "eventId/l")
    vectors = {}
    grid = np.zeros((280, 360), np.float32)
    for name in arrays.fields:
        if name.startswith("n") or name in ("runId", "lumiId", "eventId"):
            continue
        if ecal == "2d" and name == "ECAL_energy":
            tree.Branch(name, grid, f"{name}[280][360]/F")
            continue
        vectors[name] = ROOT.std.vector("float")()
        tree.Branch(name, vectors[name])
    for i in range(n):
        run[0], lumi[0], event[0] = arrays.runId[i], arrays.lumiId[i], arrays.eventId[i]
        grid[...] = ak.to_numpy(arrays["ECAL_energy"][i]).reshape(grid.shape)
        for name, vec in vectors.items():
            values = ak.to_numpy(arrays[name][i]).astype(np.float32)
            vec.resize(len(values))
            if len(values):
                np.frombuffer(vec.data(), dtype=np.float32, count=len(values))[:] = values
        tree.Fill()
    f.Write()
    f.Close()
    with uproot.open(tmp_path / "root_rhtree.root") as g:
        assert ("std::vector<float>" if ecal == "vector" else "[280][360]") in g["fevt/RHTree"]["ECAL_energy"].typename
    data = yaml.safe_load((REPO / "process_configs" / "tau_cnn.yaml").read_text())
    data["source"] = {"type": "RHTreeSource", "files": [str(tmp_path / "root_rhtree.root")]}
    data["outputs"][0]["file"] = str(tmp_path / "rh_tagged.root")
    (tmp_path / "rh.yaml").write_text(yaml.safe_dump(data))
    rc, _, err = run_cli([str(tmp_path / "rh.yaml"), "--no-progress"], capsys)
    assert rc == 0, err
    data["source"] = {"type": "RootSource", "files": [str(SAMPLE)], "max_events": n}
    data["outputs"][0]["file"] = str(tmp_path / "hits_cnn.root")
    (tmp_path / "hits_cnn.yaml").write_text(yaml.safe_dump(data))
    rc, _, err = run_cli([str(tmp_path / "hits_cnn.yaml"), "--no-progress"], capsys)
    assert rc == 0, err
    with uproot.open(tmp_path / "rh_tagged.root") as a, uproot.open(tmp_path / "hits_cnn.root") as b:
        x = np.concatenate(a["Events"]["Jet_tauCNN_tau"].array(library="np"))
        y = np.concatenate(b["Events"]["Jet_tauCNN_tau"].array(library="np"))
    assert len(x) == len(y) > 0 and np.array_equal(x, y)


def _damaged_page(path: Path, tree: str, field: str, out: Path) -> Path:
    """A copy of the RNTuple file ``path`` (written by ROOT) with a byte flipped in the middle of the first page of
    the last column of ``field`` in the tree ``tree`` (a page with a checksum)."""
    with uproot.open(path) as f:
        ntuple = f[tree]
        records = ntuple.field_records
        columns = [i for i, c in enumerate(ntuple.column_records) if records[c.field_id].parent_field_id != c.field_id
                   and records[records[c.field_id].parent_field_id].field_name == field]  # fmt: skip
        page = ntuple.page_link_list[0][columns[-1]].pages[0]
        assert page.has_checksum
        offset = int(page.locator.offset) + int(page.locator.num_bytes) // 2
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    out.write_bytes(bytes(data))
    return out


def test_a_damaged_page_of_an_rntuple_rhtree_is_refused_by_its_checksum(ROOT, tmp_path, capsys):  # noqa: N803
    """An RHTree written by ROOT as an RNTuple: read as its TTree form is, and a byte flipped inside a page of a map
    it reads is one line naming the field (RHTreeSource did not check the checksums: 5 of 20 scores changed)."""
    from e2e.io.rhtree_writer import write_rhtree

    rh = tmp_path / "rhtree.root"
    write_rhtree([str(SAMPLE)], rh, max_events=6)
    options = ROOT.RDF.RSnapshotOptions()
    options.fOutputFormat = ROOT.RDF.ESnapshotOutputFormat.kRNTuple
    frame = ROOT.RDataFrame("fevt/RHTree", str(rh))
    frame.Snapshot("RHTree", str(tmp_path / "rntuple.root"), [str(c) for c in frame.GetColumnNames()], options)
    _damaged_page(tmp_path / "rntuple.root", "RHTree", "ECAL_energy", tmp_path / "damaged.root")
    config = yaml.safe_load((REPO / "process_configs" / "tau_cnn.yaml").read_text())
    scores = {}
    for name, tree in (("rhtree", "fevt/RHTree"), ("rntuple", "RHTree"), ("damaged", "RHTree")):
        config["source"] = {"type": "RHTreeSource", "files": [str(tmp_path / f"{name}.root")], "tree": tree}
        config["outputs"][0]["file"] = str(tmp_path / f"{name}_tagged.root")
        (tmp_path / "rh.yaml").write_text(yaml.safe_dump(config))
        rc, _, err = run_cli([str(tmp_path / "rh.yaml"), "--no-progress"], capsys)
        if name == "damaged":
            assert rc == 2 and err.count("\n") == 1, err
            assert "damaged RNTuple page of field 'ECAL_energy' (its checksum does not match" in err, err
            assert not (tmp_path / "damaged_tagged.root").exists()
            continue
        assert rc == 0, err
        with uproot.open(tmp_path / f"{name}_tagged.root") as f:
            scores[name] = np.concatenate(f["Events"]["Jet_tauCNN_tau"].array(library="np"))
    assert len(scores["rhtree"]) > 0 and np.array_equal(scores["rhtree"], scores["rntuple"])


def _refused(tmp, capsys, path, tree: str = "Events") -> str:
    """e2e-run's and e2e-validate's one-line errors (rc 2) on ``path``; no output left."""
    from e2e.cli import validate

    data = yaml.safe_load(CONFIG.read_text())
    data["source"] = {"files": [str(path)], "tree": tree}
    data["outputs"][0]["file"] = str(tmp / "refused.root")
    (tmp / "refused.yaml").write_text(yaml.safe_dump(data))
    rc, _, err = run_cli([str(tmp / "refused.yaml"), "--no-progress"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp / "refused.root").exists()
    assert validate.main([str(path), "--tree", tree]) == 2
    v_err = capsys.readouterr().err
    assert len(v_err.strip().splitlines()) == 1, v_err
    return err + v_err


def test_a_branch_with_fewer_entries_than_its_tree_is_refused(ROOT, tmp_path, capsys):  # noqa: N803
    """ROOT lets a branch be filled on its own (TBranch::Fill): a Jet_pt with fewer entries than the tree is
    refused at the file's inspection, naming the branch and both counts (it crashed reading, and a short
    'event' only failed in the output writer)."""
    ev = uproot.open(SAMPLE)["Events"].arrays(entry_stop=N, library="np")
    path = tmp_path / "short_branch.root"
    f = ROOT.TFile(str(path), "RECREATE")
    tree = ROOT.TTree("Events", "a branch filled on its own")
    ids = {k: np.zeros(1, ev[k].dtype) for k in ("run", "luminosityBlock", "event")}
    for k, code in zip(ids, ("i", "i", "l"), strict=True):
        tree.Branch(k, ids[k], f"{k}/{code}")
    vectors = {k: ROOT.std.vector("float" if ev[k][0].dtype.kind == "f" else "int")() for k in ev if k not in ids}
    for k, vec in vectors.items():
        if k != "Jet_pt":
            tree.Branch(k, vec)
    for i in range(N):
        for k in ids:
            ids[k][0] = ev[k][i]
        for k, vec in vectors.items():
            vec.clear()
            for x in np.atleast_1d(ev[k][i]).tolist():
                vec.push_back(x)
        tree.Fill()
    branch = tree.Branch("Jet_pt", vectors["Jet_pt"])
    for i in range(N - 4):
        vectors["Jet_pt"].clear()
        for x in ev["Jet_pt"][i].tolist():
            vectors["Jet_pt"].push_back(x)
        branch.Fill()
    tree.Write()
    f.Close()
    err = _refused(tmp_path, capsys, path)
    assert f"branch 'Jet_pt' has {N - 4} entries but the tree has {N}" in err


def _ecal_only(ROOT, path, leaf: str, dtype) -> None:  # noqa: N803
    """The sample's first events as ids and ECAL hits only, the energy written with the leaf type ``leaf`` (ROOT's
    leaflist code, e.g. ``f`` or ``d[0,100,12]``) from a ``dtype`` buffer (the layout checks stop at that branch)."""
    ev = uproot.open(SAMPLE)["Events"].arrays(entry_stop=N, library="np")
    f = ROOT.TFile(str(path), "RECREATE")
    tree = ROOT.TTree("Events", "ECAL energies")
    buffers = {}
    for k in ("run", "luminosityBlock", "event", "nEcalHit"):
        buffers[k] = np.zeros(1, np.int64)
        tree.Branch(k, buffers[k], f"{k}/L")
    cells = {k: np.zeros(20000, np.int32) for k in ("EcalHit_ieta", "EcalHit_iphi")}
    for k, values in cells.items():
        tree.Branch(k, values, f"{k}[nEcalHit]/I")
    energy = np.zeros(20000, dtype)
    tree.Branch("EcalHit_energy", energy, f"EcalHit_energy[nEcalHit]/{leaf}")
    for i in range(3):
        for k in ("run", "luminosityBlock", "event"):
            buffers[k][0] = ev[k][i]
        n = buffers["nEcalHit"][0] = len(ev["EcalHit_energy"][i])
        for k, values in cells.items():
            values[:n] = ev[k][i]
        energy[:n] = ev["EcalHit_energy"][i]
        tree.Fill()
    tree.Write()
    f.Close()


def test_float16_branches_are_named_with_their_type(ROOT, tmp_path, capsys):  # noqa: N803
    """Float16_t without a range in its title, which uproot 5 cannot interpret: one line naming the branch and
    its ROOT type, not uproot's internal error alone."""
    path = tmp_path / "float16.root"
    _ecal_only(ROOT, path, "f", np.float32)
    err = _refused(tmp_path, capsys, path)
    assert "branch 'EcalHit_energy' is not a jagged list of numbers (Float16_t, which uproot cannot read" in err


@pytest.mark.parametrize(("leaf", "dtype", "name"), [("d[0,100,12]", np.float64, "Double32_t"),
                                                      ("d[0,0,14]", np.float64, "Double32_t"),
                                                      ("f[0,100,12]", np.float32, "Float16_t")])  # fmt: skip
def test_packed_double32_and_float16_are_refused_by_name(ROOT, tmp_path, capsys, leaf, dtype, name):  # noqa: N803
    """Double32_t / Float16_t with a range or bit count are stored as packed integers, which uproot read as float32
    bit patterns (Double32_t: 1e-44 for 0.4 GeV, every score wrong, no error): refused in one line naming the type."""
    path = tmp_path / "packed.root"
    _ecal_only(ROOT, path, leaf, dtype)
    err = _refused(tmp_path, capsys, path)
    expected = f"branch 'EcalHit_energy' is not a jagged list of numbers ({name} with a range or bit count ('/{leaf}')"
    assert expected in err


def test_the_highest_cycle_is_the_one_checked_and_read(ROOT, tmp_path, capsys):  # noqa: N803
    """Two cycles of 'Events' of different classes: the highest is the one read (as ROOT's Get and uproot read it),
    so its class is the one checked: a histogram first and the tree second runs; the other way round is one line
    naming the histogram and its cycle (was an internal error, or a valid file refused)."""
    tree_second, tree_first = tmp_path / "tree_second.root", tmp_path / "tree_first.root"
    for path, first in ((tree_second, "hist"), (tree_first, "tree")):
        src = ROOT.TFile(str(SAMPLE))
        f = ROOT.TFile(str(path), "RECREATE")
        hist = ROOT.TH1F("Events", "a histogram of the same name", 10, 0, 1)
        tree = src.Get("Events").CopyTree("", "", N)
        for obj in (hist, tree) if first == "hist" else (tree, hist):
            f.cd()
            obj.Write("Events")
        f.Close()
        src.Close()
    ours = _tag(tmp_path, capsys, {"files": [str(SAMPLE)]}, "ours")
    theirs = _tag(tmp_path, capsys, {"files": [str(tree_second)]}, "tree_second")
    for key in ours:
        np.testing.assert_array_equal(theirs[key], ours[key])
    err = _refused(tmp_path, capsys, tree_first)
    assert "'Events' is a TH1F (cycle 2, the one read), not a TTree or RNTuple" in err


def test_a_damaged_rntuple_page_is_refused_by_its_checksum(ROOT, tmp_path, capsys):  # noqa: N803
    """ROOT's RNTuple pages carry xxhash3 checksums, which uproot does not verify: a byte flipped inside a page of
    a branch the job reads is refused before it is decompressed, with one line naming the field, by e2e-run and
    e2e-validate; the intact file runs and gives the scores of the sample."""
    path = tmp_path / "rntuple.root"
    options = ROOT.RDF.RSnapshotOptions()
    options.fOutputFormat = ROOT.RDF.ESnapshotOutputFormat.kRNTuple
    ROOT.RDataFrame("Events", str(SAMPLE)).Range(N).Snapshot("Events", str(path), "", options)
    ours = _tag(tmp_path, capsys, {"files": [str(SAMPLE)]}, "ours")
    theirs = _tag(tmp_path, capsys, {"files": [str(path)]}, "rntuple")
    for key in ours:
        np.testing.assert_array_equal(theirs[key], ours[key])
    damaged = _damaged_page(path, "Events", "EcalHit_iphi", tmp_path / "damaged_rntuple.root")
    err = _refused(tmp_path, capsys, damaged)
    assert err.count("damaged RNTuple page of field 'EcalHit_iphi' (its checksum does not match") == 2, err


def test_roots_old_compression_algorithm_is_named(ROOT, tmp_path, capsys):  # noqa: N803
    """ROOT still writes its old algorithm (setting 3xx) on request; uproot cannot read it: one line saying so and
    how to rewrite the file."""
    path = tmp_path / "old_algorithm.root"
    src = ROOT.TFile(str(SAMPLE))
    f = ROOT.TFile(str(path), "RECREATE", "", 301)
    src.Get("Events").CopyTree("", "", N).Write()
    f.Close()
    src.Close()
    err = _refused(tmp_path, capsys, path)
    assert "ROOT's old compression algorithm (compression setting 3xx)" in err and "hadd -f505" in err


def test_a_cycle_can_be_named(ROOT, tmp_path, capsys):  # noqa: N803
    """Two cycles of the tree: the highest is read by default, 'Events;1' names the other (e2e-run, e2e-validate
    and e2e-eval, which reads the truth from the job's source.tree)."""
    from e2e.cli import validate
    from e2e.cli.eval import main as eval_main

    path = tmp_path / "cycles.root"
    src = ROOT.TFile(str(SAMPLE))
    f = ROOT.TFile(str(path), "RECREATE")
    for n in (N, N // 2):
        f.cd()
        src.Get("Events").CopyTree("", "", n).Write("Events")
    f.Close()
    src.Close()
    assert validate.main([str(path), "--tree", "Events;1"]) == 0 and f"{N} events" in capsys.readouterr().out
    ours = _tag(tmp_path, capsys, {"files": [str(SAMPLE)]}, "ours")
    first = _tag(tmp_path, capsys, {"files": [str(path)], "tree": "Events;1"}, "first")
    for key in ours:
        np.testing.assert_array_equal(first[key], ours[key])
    assert eval_main([str(tmp_path / "first_tagged.root"), "--plot", str(tmp_path / "roc.png")]) == 0
