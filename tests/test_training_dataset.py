"""Training datasets: made by the inference producers, event-level deterministic split, rebuilt kNN."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLE

from e2e.config import load_process
from e2e.errors import ConfigError
from e2e.process import Process
from training.dataset import TRUTH_FIELDS, Selection, _select, collect, event_split

GRAPHS = {"type": "JetGraphProducer", "window": 33, "hcal_upsample": False, "thresholds": {"ecal": 0.2}, "k": 8}


def _batches(**modules):
    data = {
        "source": {"files": [str(SAMPLE)], "step_size": 50},
        "modules": modules,
        "outputs": [{"file": "unused.root", "keep": list(modules)}],
    }
    return Process(load_process(data), extra_fields=TRUTH_FIELDS).iter_batches()


def test_event_split_is_deterministic_and_by_event():
    ev = np.arange(1, 20001, dtype=np.uint64)
    run = np.ones_like(ev, dtype=np.uint32)
    a = event_split(run, run, ev, (0.7, 0.15, 0.15), seed=1)
    assert np.array_equal(a, event_split(run, run, ev, (0.7, 0.15, 0.15), seed=1))
    frac = np.bincount(a, minlength=3) / len(a)
    np.testing.assert_allclose(frac, [0.7, 0.15, 0.15], atol=0.02)
    assert not np.array_equal(a, event_split(run, run, ev, (0.7, 0.15, 0.15), seed=2))


def test_graph_dataset_equals_producer_graphs():
    ds = collect(_batches(jetGraphs=GRAPHS), "jetGraphs", Selection(), (0.6, 0.2, 0.2), seed=3)
    assert ds.kind == "graphs" and len(ds) > 50
    assert set(np.unique(ds.y)) == {0, 1}
    assert np.all((ds.pt > 20) & (ds.pt < 100))
    # a minibatch rebuilt from the stored nodes has the producer's neighbours
    batch = next(_batches(jetGraphs=GRAPHS))
    g = batch.get("jetGraphs")
    jets = batch.get("source:Jet")
    first = int(np.flatnonzero((jets["label"] <= 1) & (jets["gen_pt"] > 0) & (jets["pt"] > 20) & (jets["pt"] < 100))[0])
    mb = ds.inputs(np.array([0]))
    a, b = g.node_offsets[first], g.node_offsets[first + 1]
    assert np.array_equal(mb["x"], g.x[a:b])
    assert np.array_equal(mb["neighbors"], g.neighbors[a:b] - a)


def test_frame_dataset_round_trip():
    frames = {"type": "JetFrameProducer", "window": 33, "channels": ["track_pt", "ecal", "hcal"]}
    ds = collect(_batches(jetFrames=frames), "jetFrames", Selection(), (0.6, 0.2, 0.2), seed=3, max_jets=10)
    assert len(ds) == 10
    batch = next(_batches(jetFrames=frames))
    f, jets = batch.get("jetFrames"), batch.get("source:Jet")
    sel = np.flatnonzero((jets["label"] <= 1) & (jets["gen_pt"] > 0) & (jets["pt"] > 20) & (jets["pt"] < 100))[:3]
    assert np.array_equal(ds.inputs(np.arange(3))["frames"], f.data[sel])


@pytest.mark.parametrize(
    ("space", "edges", "self_loops", "window"),
    [
        ("coordinates", "knn", False, 33),
        ("coordinates", "knn", True, 33),
        ("features", "knn", False, 33),
        ("features", "knn", True, 17),
        ("coordinates", "radius", False, 33),
        ("coordinates", "radius", True, 17),
        ("coordinates", "knn", False, 63),
    ],
)
def test_training_sees_the_graphs_the_producer_serves(space, edges, self_loops, window):
    """No train/inference skew: the edges a model trains on equal the producer's, for every graph option."""
    from training.train import inputs_of

    producer = {
        **GRAPHS,
        "space": space,
        "edges": edges,
        "self_loops": self_loops,
        "window": window,
        "radius": 3.0,
        "k": 6,
    }
    ds = collect(_batches(jetGraphs=producer), "jetGraphs", Selection(), (0.6, 0.2, 0.2), seed=3)
    served = []
    for batch in _batches(jetGraphs=producer):
        g, jets = batch.get("jetGraphs"), batch.get("source:Jet")
        for j in np.flatnonzero(_select(jets, Selection())[0]):
            a, b = g.node_offsets[j], g.node_offsets[j + 1]
            served.append(g.neighbors[a:b] - a)
    assert len(served) == len(ds) > 50
    jets = np.arange(len(ds))
    trained = inputs_of(ds, jets)["neighbors"]
    off = ds.arrays["node_offsets"]
    for j in jets:
        assert np.array_equal(trained[off[j] : off[j + 1]] - off[j], served[j]), j


def _two_files(tmp_path, sample_events):
    """The shipped sample split as a physicist's file list: Z->tautau events, then QCD events."""
    from conftest import write_hits

    tau = write_hits(tmp_path / "tau.root", sample_events[:75])
    qcd = write_hits(tmp_path / "qcd.root", sample_events[75:])
    return tau, qcd


def _sampled(files, max_jets, seed=3):
    from training.dataset import sampling_limits
    from training.train import _truth_batches

    process = {"source": {"files": [str(f) for f in files], "step_size": 20}, "modules": {"jetShapes": SHAPES},
               "outputs": [{"file": "unused.root", "keep": ["jetShapes"]}]}  # fmt: skip
    limits, available = sampling_limits(_truth_batches(process), Selection(), max_jets, seed)
    batches = Process(load_process(process), extra_fields=TRUTH_FIELDS).iter_batches()
    return collect(batches, "jetShapes", Selection(), (0.6, 0.2, 0.2), seed, limits=limits), available


SHAPES = {"type": "JetShapeProducer"}


def test_max_jets_samples_every_file_per_class(tmp_path, sample_events):
    tau, qcd = _two_files(tmp_path, sample_events)
    ds, available = _sampled([tau, qcd], max_jets=20)
    assert np.bincount(ds.y, minlength=2).tolist() == [10, 10]
    assert available[0] > 10 and available[1] > 10
    # QCD jets of the second file are drawn although the first file alone has enough of them (file order
    # sampling would never read it); which jets are drawn does not depend on the file order
    qcd_pts = set(read_pt(qcd))
    assert any(pt in qcd_pts for pt in ds.pt[ds.y == 0])
    assert any(pt not in qcd_pts for pt in ds.pt[ds.y == 0])
    swapped, _ = _sampled([qcd, tau], max_jets=20)
    assert sorted(swapped.pt.tolist()) == sorted(ds.pt.tolist())
    other, _ = _sampled([tau, qcd], max_jets=20, seed=4)
    assert sorted(other.pt.tolist()) != sorted(ds.pt.tolist())
    everything, _ = _sampled([tau, qcd], max_jets=100000)  # more than there are: every selected jet
    assert np.bincount(everything.y).tolist() == available.tolist()


def read_pt(path):
    import uproot

    return np.concatenate(uproot.open(path)["Events"]["Jet_pt"].array(library="np"))


@pytest.mark.parametrize("product", ["graphs", "frames"])
def test_a_dataset_on_disk_is_the_dataset_in_memory(tmp_path, product):
    """dataset: disk (the default of e2e-train): the per-node / per-pixel arrays in files, read per minibatch:
    the same minibatches and input statistics as in memory, bit for bit; the files go with close()."""
    from training.store import DiskColumn

    label, block = ("jetGraphs", GRAPHS) if product == "graphs" else (
        "jetFrames", {"type": "JetFrameProducer", "window": 33, "channels": ["track_pt", "ecal", "hcal"]})  # fmt: skip
    mem = collect(_batches(**{label: block}), label, Selection(), (0.6, 0.2, 0.2), seed=3)
    disk = collect(_batches(**{label: block}), label, Selection(), (0.6, 0.2, 0.2), seed=3, on_disk=True,
                   dataset_dir=str(tmp_path))  # fmt: skip
    bulky = disk.input_kind.bulky
    assert bulky and all(isinstance(disk.arrays[k], DiskColumn) for k in bulky)
    assert all(isinstance(mem.arrays[k], np.ndarray) for k in bulky)
    assert len(list(tmp_path.iterdir())) == 1  # one private directory
    rng = np.random.default_rng(0)
    for jets in (np.arange(len(mem)), rng.permutation(len(mem))[:37], np.array([len(mem) - 1, 0, 5])):
        a, b = mem.inputs(jets), disk.inputs(jets)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    for k in bulky:
        assert np.array_equal(np.asarray(disk.arrays[k]), mem.arrays[k])
    train = np.flatnonzero(mem.split == 0)
    for x, y in zip(mem.input_kind.statistics(mem.arrays, mem.params, train),
                    disk.input_kind.statistics(disk.arrays, disk.params, train), strict=True):  # fmt: skip
        np.testing.assert_array_equal(x, y)
    disk.close()
    assert list(tmp_path.iterdir()) == []


def test_chunked_statistics_equal_the_one_pass_ones(monkeypatch):
    """The input statistics in chunks of jets (bounded memory) equal numpy's over all nodes at once."""
    import taggers.inputs

    ds = collect(_batches(jetGraphs=GRAPHS), "jetGraphs", Selection(), (0.6, 0.2, 0.2), seed=3)
    jets = np.arange(len(ds))
    x = ds.arrays["x"].astype(np.float64)
    monkeypatch.setattr(taggers.inputs, "STAT_CHUNK", 7)
    mean, std = ds.input_kind.statistics(ds.arrays, ds.params, jets)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(std, x.std(0), rtol=1e-10, atol=1e-12)


def test_a_bad_dataset_dir_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        collect(_batches(jetGraphs=GRAPHS), "jetGraphs", Selection(), (0.6, 0.2, 0.2), seed=3, on_disk=True,
                dataset_dir=str(tmp_path / "missing"))  # fmt: skip
    assert "dataset_dir" in str(err.value) and "writable directory" in str(err.value)


def test_disk_columns_read_what_was_appended(tmp_path):
    """DiskStore / DiskColumn: rows in any order, slices, empty selections; a bad index or a changed row shape
    is refused."""
    from training.store import DiskStore

    store = DiskStore(str(tmp_path))
    rng = np.random.default_rng(1)
    parts = [rng.normal(size=(n, 3)).astype(np.float32) for n in (5, 0, 7)]
    for p in parts:
        store.append({"x": p, "k": np.arange(len(p), dtype=np.int16)})
    with pytest.raises(ValueError, match="rows of"):
        store.append({"x": np.zeros((2, 4), np.float32)})
    cols = store.columns()
    x = np.concatenate(parts)
    assert cols["x"].shape == (12, 3) and len(cols["k"]) == 12 and cols["k"].dtype == np.int16
    idx = np.array([11, 0, 1, 2, 7, 6])
    np.testing.assert_array_equal(cols["x"][idx], x[idx])
    np.testing.assert_array_equal(cols["x"][3:9], x[3:9])
    assert cols["x"][np.zeros(0, np.int64)].shape == (0, 3) and cols["x"][5:5].shape == (0, 3)
    np.testing.assert_array_equal(np.asarray(cols["x"]), x)
    with pytest.raises(IndexError):
        cols["x"][np.array([12])]
    store.close()
    assert list(tmp_path.iterdir()) == []


def test_a_dataset_directory_left_by_a_killed_training_is_removed_by_the_next(tmp_path, capsys):
    """The store's directory is named as a temporary (.e2e-train-dataset.HOST.PID.XXXX.tmp): one whose process is
    gone (SIGKILL) is removed when the next store starts there, and said; a live process's is left alone."""
    import subprocess
    import sys
    from pathlib import Path

    from e2e.paths import _HOST
    from training.store import DiskStore

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".e2e-train-dataset.{_HOST}.{int(dead.stdout)}.abc123.tmp"
    stale.mkdir()
    (stale / "x.bin").write_bytes(b"0" * 100)
    live = DiskStore(str(tmp_path))
    assert not stale.exists() and "removed 1 stale temporary file(s)" in capsys.readouterr().err
    other = DiskStore(str(tmp_path))
    assert Path(live.dir).is_dir() and Path(other.dir).is_dir() and Path(live.dir).name.startswith(".e2e-train-dataset")
