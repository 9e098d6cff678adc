"""e2e-run end to end: output aligned with the input, bad inputs, empty files, zero-jet events, ROOT vectors."""

from __future__ import annotations

import os
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml
from conftest import REPO, SAMPLE, need_extra, read_events, run_cli, write_hits

from e2e.config import load_process
from e2e.process import Process

JET_FRAMES = REPO / "process_configs" / "jet_frames.yaml"
VECTOR_HITS = REPO / "tests" / "data" / "vector_hits.root"
N = 24  # events of the sample used by most tests


def small_config(tmp: Path, **over) -> dict:
    """jet_frames.yaml with smaller frames (fast) and every product kept."""
    data = yaml.safe_load(JET_FRAMES.read_text())
    data["modules"]["jetFrames"]["window"] = 33
    data["source"]["files"] = [str(SAMPLE)]
    data["outputs"][0]["file"] = str(tmp / "out.root")
    for k, v in over.items():
        data[k] = v
    return data


def run(tmp: Path, data: dict, *extra: str, capsys) -> tuple[int, str, str]:
    cfg = tmp / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(data))
    return run_cli([str(cfg), "--no-progress", *extra], capsys)


def products(data: dict, files: list[str], n: int | None = None) -> list:
    """The products of every batch, made in memory by the same process (no output written)."""
    d = {**data, "source": {**data["source"], "files": files, "max_events": -1 if n is None else n}}
    return list(Process(load_process(d)).iter_batches())


def no_leftovers(directory: Path) -> None:
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")], "temporary files left behind"


def test_output_is_aligned_friend_of_input(tmp_path, capsys):
    data = small_config(tmp_path)
    rc, out, err = run(tmp_path, data, "-n", str(N), "-s", "source.step_size=10", capsys=capsys)
    assert rc == 0, err
    assert err == ""  # no progress bar when stderr is not a terminal
    assert "24 events" in out and "jets/s" in out
    inp = read_events(SAMPLE, N)
    with uproot.open(tmp_path / "out.root") as f:
        tree = f["Events"]
        assert tree.num_entries == N
        o = tree.arrays()
    for key in ("run", "luminosityBlock", "event", "nJet"):
        assert np.array_equal(ak.to_numpy(o[key]), ak.to_numpy(inp[key])), key
    for name in ("Jet_jetShapes_width", "Jet_jetShapes_isolation", "Jet_jetGraphs_nNodes", "Jet_jetFrames_nPixels"):
        assert np.array_equal(ak.to_numpy(ak.num(o[name])), ak.to_numpy(inp.nJet)), name
    # friend: read side by side entry by entry (as uproot/coffea/ROOT would with AddFriend)
    both = ak.zip({"pt": inp.Jet_pt, "width": o.Jet_jetShapes_width})
    assert len(ak.flatten(both)) == ak.sum(inp.nJet)
    # products written == products made in memory (frames densified back from the sparse pixels)
    batches = products(data, [str(SAMPLE)], N)
    frames = np.concatenate([b.get("jetFrames").data for b in batches])
    dense = np.zeros_like(frames)
    jet_offsets = np.concatenate([[0], np.cumsum(inp.nJet)])
    ev = np.repeat(np.arange(N), ak.num(o.jetFramesPixel_jet))
    rows = jet_offsets[ev] + ak.to_numpy(ak.flatten(o.jetFramesPixel_jet))
    dense[
        rows,
        ak.to_numpy(ak.flatten(o.jetFramesPixel_channel)),
        ak.to_numpy(ak.flatten(o.jetFramesPixel_row)),
        ak.to_numpy(ak.flatten(o.jetFramesPixel_col)),
    ] = ak.to_numpy(ak.flatten(o.jetFramesPixel_value))
    assert np.array_equal(dense, frames)
    shapes = np.concatenate([b.get("jetShapes").values for b in batches])
    assert np.array_equal(ak.to_numpy(ak.flatten(o.Jet_jetShapes_width)), shapes[:, 0])
    graphs = [b.get("jetGraphs") for b in batches]
    x = np.concatenate([g.x for g in graphs])
    assert np.array_equal(ak.to_numpy(ak.flatten(o.jetGraphsNode_ecal)), x[:, graphs[0].feature_names.index("ecal")])
    n_edges = sum(g.edge_index.shape[1] for g in graphs)
    assert ak.sum(o.njetGraphsEdge) == n_edges
    # the file records the producer parameters
    with uproot.open(tmp_path / "out.root") as f:
        assert '"k": 16' in str(f["e2e_products"])
    no_leftovers(tmp_path)


def test_copy_input_and_several_files_in_order(tmp_path, capsys):
    second = write_hits(tmp_path / "second.root", read_events(SAMPLE, 5))
    data = small_config(tmp_path)
    data["outputs"][0]["copy_input"] = True
    data["outputs"][0]["keep"] = ["jetShapes"]
    rc, out, err = run(tmp_path, data, "-i", str(second), str(SAMPLE), "-n", "12", capsys=capsys)
    assert rc == 0, err
    inp = ak.concatenate([read_events(second), read_events(SAMPLE, 7)])
    with uproot.open(tmp_path / "out.root") as f:
        o = f["Events"].arrays()
    assert len(o) == 12
    for key in inp.fields:
        assert ak.all(o[key] == inp[key]), key
    assert "from 2 file(s)" in out


def test_empty_input_file(tmp_path, capsys):
    empty = write_hits(tmp_path / "empty.root", read_events(SAMPLE, 0))
    data = small_config(tmp_path)
    rc, out, err = run(tmp_path, data, "-i", str(empty), capsys=capsys)
    assert rc == 0, err
    assert "0 events, 0 jets from 1 file(s)" in out  # the empty file counts as read
    with uproot.open(tmp_path / "out.root") as f:
        tree = f["Events"]
        assert tree.num_entries == 0
        assert "Jet_jetShapes_width" in tree.keys() and "jetGraphsEdge_src" in tree.keys()
    # an empty file among others contributes nothing and breaks nothing
    rc, out, err = run(tmp_path, data, "-i", str(empty), str(SAMPLE), "-n", "3", capsys=capsys)
    assert rc == 0, err
    with uproot.open(tmp_path / "out.root") as f:
        assert np.array_equal(f["Events"]["event"].array(library="np"), ak.to_numpy(read_events(SAMPLE, 3).event))


def test_events_with_zero_jets(tmp_path, capsys):
    ev = read_events(SAMPLE, 10)
    keep = np.arange(10) % 2 == 1  # even events lose all their jets
    cols = {f: ev[f] for f in ev.fields}
    for f in ev.fields:
        if f.startswith("Jet_"):
            cols[f] = ak.where(keep, ev[f], ev[f][:, :0])
    cols["nJet"] = ak.num(cols["Jet_pt"])
    path = write_hits(tmp_path / "zero_jets.root", cols)
    data = small_config(tmp_path)
    rc, _, err = run(tmp_path, data, "-i", str(path), capsys=capsys)
    assert rc == 0, err
    with uproot.open(tmp_path / "out.root") as f:
        o = f["Events"].arrays()
    assert np.array_equal(ak.to_numpy(o.nJet), ak.to_numpy(cols["nJet"])) and np.all(o.nJet[~keep] == 0)
    assert np.all(ak.num(o.jetGraphsNode_jet)[~keep] == 0) and np.all(ak.num(o.jetFramesPixel_jet)[~keep] == 0)
    # jets of the other events are unchanged by their neighbours losing theirs
    full = products(data, [str(SAMPLE)], 10)[0].get("jetShapes").values
    jet_event = np.repeat(np.arange(10), ev.nJet)
    assert np.array_equal(ak.to_numpy(ak.flatten(o.Jet_jetShapes_width)), full[keep[jet_event], 0])


def test_root_vector_branches_give_the_same_products(tmp_path):
    data = small_config(tmp_path)
    a = products(data, [str(VECTOR_HITS)])[0]
    b = products(data, [str(SAMPLE)], 6)[0]
    for label in ("jetFrames", "jetGraphs", "jetShapes"):
        pa, pb = a.get(label), b.get(label)
        for name in ("data", "x", "edge_index", "values"):
            if hasattr(pa, name):
                assert np.array_equal(getattr(pa, name), getattr(pb, name)), (label, name)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("nan", "branch 'EcalHit_energy' entry 2 has value nan"),
        ("inf", "branch 'Track_pt' entry 1 has value inf"),
        ("negative_energy", "branch 'HcalHit_energy' entry 0 has value -5.0"),
    ],
)
def test_bad_values_are_rejected_with_one_line(tmp_path, capsys, case, expected):
    ev = read_events(SAMPLE, 4)

    def poke(branch: str, entry: int, value: float) -> ak.Array:
        flat = ak.to_numpy(ak.flatten(ev[branch])).copy()
        start = int(np.sum(ak.num(ev[branch])[:entry]))
        flat[start] = value
        return ak.unflatten(flat, ak.num(ev[branch]))

    cols = {f: ev[f] for f in ev.fields}
    if case == "nan":
        cols["EcalHit_energy"] = poke("EcalHit_energy", 2, np.nan)
    elif case == "inf":
        cols["Track_pt"] = poke("Track_pt", 1, np.inf)
    else:
        cols["HcalHit_energy"] = poke("HcalHit_energy", 0, -5.0)
    path = write_hits(tmp_path / f"{case}.root", cols)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    data = small_config(out_dir)
    rc, _, err = run(tmp_path, data, "-i", str(path), capsys=capsys)
    assert rc == 2 and err.count("\n") == 1 and expected in err, err
    assert not (out_dir / "out.root").exists()
    no_leftovers(out_dir)


def test_bad_files_and_branches_are_one_line_errors(tmp_path, capsys):
    data = small_config(tmp_path)
    ev = read_events(SAMPLE, 3)
    # a missing branch
    missing = tmp_path / "missing_branch.root"
    with uproot.recreate(missing) as f:
        ids = ["run", "luminosityBlock", "event"]
        f.mktree("Events", {k: ak.to_numpy(ev[k]).dtype for k in ids})
        f["Events"].extend({k: ak.to_numpy(ev[k]) for k in ids})
    cases = {
        str(tmp_path / "nope.root"): "no such file",
        str(missing): "missing",
        str(REPO / "README.md"): "not a ROOT file",
        str(tmp_path / "*.nothing"): "matches no file",
    }
    for path, expected in cases.items():
        rc, _, err = run(tmp_path, data, "-i", path, capsys=capsys)
        assert rc == 2 and err.count("\n") == 1 and expected in err, (path, err)
        assert "Traceback" not in err
    wrong = write_hits(tmp_path / "wrong_type.root", {f: ev[f] for f in ev.fields}, dtypes={"Track_charge": np.float32})
    rc, _, err = run(tmp_path, data, "-i", str(wrong), capsys=capsys)
    assert rc == 2 and err.count("\n") == 1 and "'Track_charge' has dtype float32, expected an integer" in err, err
    truncated = tmp_path / "truncated.root"
    truncated.write_bytes(SAMPLE.read_bytes()[: os.path.getsize(SAMPLE) // 2])
    rc, _, err = run(tmp_path, data, "-i", str(truncated), capsys=capsys)
    assert rc == 2 and "truncated" in err and err.count("\n") == 1
    rc, _, err = run(tmp_path, data, "-s", "source.tree=Other", capsys=capsys)
    assert rc == 2 and err.count("\n") == 1 and "no TTree or RNTuple 'Other'" in err, err
    no_leftovers(tmp_path)


def test_debug_shows_traceback(tmp_path, capsys):
    data = small_config(tmp_path)
    rc, _, err = run(tmp_path, data, "-i", str(tmp_path / "nope.root"), "--debug", capsys=capsys)
    assert rc == 2 and "Traceback" in err


@pytest.mark.root
def test_rdataframe_reads_output_as_friend(tmp_path, capsys):
    ROOT = need_extra("ROOT", "root")
    data = small_config(tmp_path)
    data["outputs"][0]["keep"] = ["jetShapes"]
    rc, _, err = run(tmp_path, data, capsys=capsys)  # every event: a friend has the entries of its parent
    assert rc == 0, err
    f = ROOT.TFile.Open(str(SAMPLE))
    tree = f.Get("Events")
    tree.AddFriend("Events", str(tmp_path / "out.root"))
    df = ROOT.RDataFrame(tree)
    n_jets = df.Sum("nJet").GetValue()
    n_width = df.Define("nw", "int(Events.Jet_jetShapes_width.size())").Sum("nw").GetValue()
    same = df.Filter("Events.event == event").Count().GetValue()
    inp = read_events(SAMPLE)
    assert n_jets == n_width == int(ak.sum(inp.nJet))
    assert same == len(inp)


def test_first_run_says_it_compiles_the_kernels(tmp_path) -> None:
    """With an empty numba cache e2e-run says it compiles the kernels; the next run (cache warm) does not."""
    import subprocess
    import sys

    config = tmp_path / "shapes.yaml"
    config.write_text(
        f"source: {{files: [{SAMPLE}]}}\nmodules:\n  shapes: {{type: JetShapeProducer}}\n"
        f"outputs: [{{file: {tmp_path / 'out.root'}, keep: [shapes]}}]\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba_cache"), "PYTHONPATH": str(REPO)}
    said = []
    for i in range(2):
        cmd = [
            sys.executable,
            "-m",
            "e2e.cli.run",
            str(config),
            "-n",
            "3",
            "--no-progress",
            "-o",
            str(tmp_path / f"{i}.root"),
        ]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        said.append("first run in this environment: compiling the numba kernels" in r.stderr)
    assert said == [True, False]
