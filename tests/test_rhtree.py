"""RHTreeSource (MLAnalyzer fevt/RHTree dense maps): frames equal the E2E converters' crop of the same maps.

The reference below is a slow numpy crop written from the converters' description (REFERENCE.md): seed crystal
= tower x 5 + 2, rows c-62..c+62 zero outside the grid, columns wrapping in phi, HCAL upsampled 5 x 5 at E/25.
Each jet is cropped from the event's full maps (the old converters re-cropped the first jet's crop for the
second jet of an event).
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml
from conftest import REPO, SAMPLE, read_events, run_cli, write_hits

from dataformats.geometry import ECAL_N_IETA, ECAL_N_IPHI, HCAL_N_IETA, HCAL_N_IPHI
from e2e.config import load_process
from e2e.io.rhtree import LAYER_MAPS, RHTreeMaps
from e2e.io.rhtree_writer import write_rhtree
from e2e.process import Process
from frameproducers.channels import CHANNELS

W = 125
MAPS = RHTreeMaps()
#: frame channel -> the RHTree map it crops (HCAL is upsampled)
CHANNEL_MAP = {
    "track_pt": MAPS.track_pt,
    "track_d0": MAPS.track_d0,
    "track_dz": MAPS.track_dz,
    "ecal": MAPS.ecal,
    "hcal": MAPS.hcal,
    **{name: getattr(MAPS, name) for name in LAYER_MAPS},
}


def reference_crop(maps: dict[str, np.ndarray], tower_ieta: float, tower_iphi: float, channels) -> np.ndarray:
    """[C, 125, 125] crop of one event's dense maps around a seed tower, as the E2E converters crop."""
    ci, cp = int(tower_ieta) * 5 + 2, int(tower_iphi) * 5 + 2
    h = W // 2
    out = np.zeros((len(channels), W, W), dtype=np.float32)
    for c, name in enumerate(channels):
        img = maps[CHANNEL_MAP[name]]
        if name == "hcal":
            img = np.kron(img.reshape(HCAL_N_IETA, HCAL_N_IPHI), np.ones((5, 5), dtype=np.float32)) / np.float32(25)
        img = img.reshape(ECAL_N_IETA, ECAL_N_IPHI)
        for r in range(W):
            row = ci - h + r
            if 0 <= row < ECAL_N_IETA:
                out[c, r] = img[row, [(cp - h + k) % ECAL_N_IPHI for k in range(W)]]
    return out


def _frames(source: dict, channels=CHANNELS, **producer) -> tuple[np.ndarray, np.ndarray]:
    """(frames [n_jets, C, W, W], jets per event) of every event of a source block, through JetFrameProducer."""
    desc = load_process({
        "source": source,
        "modules": {"jetFrames": {"type": "JetFrameProducer", "channels": list(channels), **producer}},
        "outputs": [{"file": "unused.root"}],
    })  # fmt: skip
    Process(desc)
    src, prod = desc.source, desc.modules["jetFrames"]
    src.begin()
    frames: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    try:
        for item in src.plan():
            batch = src.read(item)
            prod.produce(batch)
            fr = batch.get("jetFrames")
            frames.append(fr.data)
    finally:
        src.end()
    return np.concatenate(frames), counts


def _rhtree_arrays(path) -> dict[str, np.ndarray]:
    """Every map of every event as numpy [n, size], and the seeds, read with plain uproot."""
    t = uproot.open(path)["fevt/RHTree"]
    out = {}
    for name in set(CHANNEL_MAP.values()):
        a = t[name].array(library="ak")
        out[name] = ak.to_numpy(a).astype(np.float32)
    for name in ("jetSeed_ieta", "jetSeed_iphi"):
        out[name] = t[name].array(library="ak")
    return out


def _check_against_reference(frames: np.ndarray, dense: dict, channels) -> int:
    jets = 0
    multi = 0
    for e in range(len(dense["jetSeed_ieta"])):
        seeds = list(zip(dense["jetSeed_ieta"][e], dense["jetSeed_iphi"][e], strict=True))
        multi += len(seeds) > 1
        maps = {k: v[e] for k, v in dense.items() if not k.startswith("jetSeed")}
        for ti, tp in seeds:
            ref = reference_crop(maps, ti, tp, channels)
            np.testing.assert_allclose(frames[jets], ref, rtol=1e-6, atol=0, err_msg=f"event {e} seed ({ti}, {tp})")
            jets += 1
    assert jets == len(frames)
    return multi


@pytest.fixture(scope="module")
def sample_rhtree(tmp_path_factory):
    path = tmp_path_factory.mktemp("rh") / "sample_rhtree.root"
    n = write_rhtree([str(SAMPLE)], path, max_events=40, step_size=16)
    assert n == 40
    return path


def test_rhtree_frames_equal_the_reference_crop_of_the_sample(sample_rhtree):
    frames, _ = _frames({"type": "RHTreeSource", "files": [str(sample_rhtree)], "step_size": 15})
    multi = _check_against_reference(frames, _rhtree_arrays(sample_rhtree), CHANNELS)
    assert multi >= 5  # several events with two or more jets: each cropped from the full maps


def _synthetic(path, seeds: list[list[tuple[int, int]]], rng: np.random.Generator, vector: bool = False) -> None:
    """An RHTree file with random sparse maps and the given seeds (tower ieta, tower iphi) per event."""
    n = len(seeds)
    data: dict = {"runId": np.ones(n, np.uint32), "lumiId": np.ones(n, np.uint32),
                  "eventId": np.arange(1, n + 1, dtype=np.uint64)}  # fmt: skip
    for key in ("ecal", "track_pt", "track_d0", "track_dz", "track_d0sig", "track_dzsig", *LAYER_MAPS, "hcal"):
        size = HCAL_N_IETA * HCAL_N_IPHI if key == "hcal" else ECAL_N_IETA * ECAL_N_IPHI
        dense = np.zeros((n, size), dtype=np.float32)
        for e in range(n):
            cells = rng.choice(size, size // 50, replace=False)
            if key in LAYER_MAPS:
                dense[e, cells] = rng.integers(1, 4, len(cells))
            elif key.startswith("track_") and key != "track_pt":
                pt_cells = np.flatnonzero(data[MAPS.track_pt][e])
                dense[e, pt_cells] = rng.normal(0, 0.05, len(pt_cells)).astype(np.float32)
            else:
                dense[e, cells] = rng.exponential(2.0, len(cells)).astype(np.float32)
        data[getattr(MAPS, key)] = dense
    counts = np.array([len(s) for s in seeds])
    flat = [s for ev in seeds for s in ev]
    data["jetSeed_ieta"] = ak.unflatten(np.array([s[0] for s in flat], np.float32), counts)
    data["jetSeed_iphi"] = ak.unflatten(np.array([s[1] for s in flat], np.float32), counts)
    for name in ("jet_Pt", "jet_Eta", "jet_Phi", "jet_M", "jet_IsTau"):
        data[name] = ak.unflatten(np.full(len(flat), 0.5, np.float32), counts)
    _write(path, data)


def _write(path, data: dict) -> None:
    """Write branches (1-D numpy: one value per event; 2-D numpy or awkward: a vector per event) to fevt/RHTree."""
    branches = {}
    for k, v in data.items():
        if isinstance(v, np.ndarray) and v.ndim == 2:
            v = ak.unflatten(v.reshape(-1), np.full(len(v), v.shape[1]))
        branches[k] = v
    types = {
        k: (v.dtype if isinstance(v, np.ndarray) else "var * " + str(v.type.content.content))
        for k, v in branches.items()
    }
    with uproot.recreate(path) as f:
        f.mktree("fevt/RHTree", types)
        f["fevt/RHTree"].extend(branches)


def _read_back(path) -> dict:
    t = uproot.open(path)["fevt/RHTree"].arrays(library="ak")
    return {k: (ak.to_numpy(t[k]) if t[k].ndim == 1 else t[k]) for k in t.fields if not k.startswith("n")}


SEAM_AND_EDGE = [
    [(27, 0), (27, 71)],  # both sides of the phi seam in one event
    [(0, 35), (55, 10)],  # first and last tower rows: most of the window is beyond the grid
    [(1, 70), (54, 1), (12, 36)],  # near both eta edges and the seam, three jets
    [],  # no jet
    [(30, 12)],
]


def test_rhtree_frames_at_the_phi_seam_and_the_eta_edge(tmp_path):
    path = tmp_path / "seam.root"
    _synthetic(path, SEAM_AND_EDGE, np.random.default_rng(3))
    frames, _ = _frames({"type": "RHTreeSource", "files": [str(path)], "step_size": 2})
    assert len(frames) == 8
    assert _check_against_reference(frames, _rhtree_arrays(path), CHANNELS) == 3
    # the window reaches beyond the grid: those rows are zero, the others are not all zero
    assert not frames[2, :, :60].any() and frames[2, :, 62:].any()


def test_hits_and_rhtree_forms_give_the_same_frames_channel_by_channel(sample_rhtree):
    """Every E2E channel agrees between the hits form and the RHTree form of the same events (RHTree track maps
    are sums of PV tracks, the producer does not cut them again); the impact significances too."""
    for impact in ("value", "significance"):
        a, _ = _frames({"type": "RootSource", "files": [str(SAMPLE)], "max_events": 40}, impact=impact)
        b, _ = _frames({"type": "RHTreeSource", "files": [str(sample_rhtree)]}, impact=impact)
        assert a.shape == b.shape
        for c, name in enumerate(CHANNELS):
            np.testing.assert_array_equal(a[:, c], b[:, c], err_msg=f"channel {name} ({impact})")


def test_tau_cnn_scores_equal_on_both_forms(sample_rhtree, tmp_path, capsys):
    """tau_cnn.yaml with only its source block changed gives the same scores on the RHTree form."""
    scores = {}
    for form, source in (
        ("hits", {"type": "RootSource", "files": [str(SAMPLE)]}),
        ("rhtree", {"type": "RHTreeSource", "files": [str(sample_rhtree)]}),
    ):
        data = yaml.safe_load((REPO / "process_configs" / "tau_cnn.yaml").read_text())
        data["source"] = {**source, "max_events": 40}
        data["outputs"][0]["file"] = str(tmp_path / f"{form}.root")
        (tmp_path / f"{form}.yaml").write_text(yaml.safe_dump(data))
        rc, _, err = run_cli([str(tmp_path / f"{form}.yaml"), "--no-progress"], capsys)
        assert rc == 0, err
        with uproot.open(tmp_path / f"{form}.root") as f:
            scores[form] = f["Events"].arrays(["event", "Jet_pt", "Jet_tauCNN_tau"], library="np")
    for key in ("event", "Jet_pt", "Jet_tauCNN_tau"):
        np.testing.assert_array_equal(
            np.concatenate(scores["hits"][key]) if key != "event" else scores["hits"][key],
            np.concatenate(scores["rhtree"][key]) if key != "event" else scores["rhtree"][key],
        )
    from e2e.cli.eval import main as eval_main

    assert eval_main([str(tmp_path / "rhtree.root")]) == 2  # the truth is read from hits files only: said so
    err = capsys.readouterr().err.strip()
    assert "an MLAnalyzer RHTree, whose truth e2e-eval does not read" in err and "\n" not in err, err


def test_rhtree_products_match_the_hits(sample_rhtree):
    """The sparse hits made from the maps: ECAL/HCAL cells and energies, tracker hit counts, jets and truth."""
    from e2e.io.source import collection_fields

    ev = read_events(SAMPLE, 40)
    desc = load_process({"source": {"type": "RHTreeSource", "files": [str(sample_rhtree)]},
                         "modules": {}, "outputs": [{"file": "unused.root"}]})  # fmt: skip
    src = desc.source
    src.set_plan(dict.fromkeys(collection_fields(True)))
    src.begin()
    batch = src.read(src.plan()[0])
    src.end()
    ecal = batch.get("source:EcalHit")
    key = ak.to_numpy(ak.flatten(ev.EcalHit_ieta)).astype(np.int64) * 360 + ak.to_numpy(ak.flatten(ev.EcalHit_iphi))
    event = np.repeat(np.arange(40), ak.to_numpy(ak.num(ev.EcalHit_ieta)))
    assert len(ecal) == len(np.unique(event * 100_800 + key))  # one entry per hit crystal and event
    np.testing.assert_allclose(ecal["energy"].sum(), ak.sum(ev.EcalHit_energy), rtol=1e-5)
    jets = batch.get("source:Jet")
    for fld in ("pt", "eta", "phi", "mass", "seed_ieta", "seed_iphi"):
        np.testing.assert_array_equal(jets[fld], ak.to_numpy(ak.flatten(ev[f"Jet_{fld}"])))
    np.testing.assert_array_equal(jets["label"], np.where(ak.to_numpy(ak.flatten(ev.Jet_label)) == 1, 1, 0))
    assert np.array_equal(batch.ids["event"], ak.to_numpy(ev.event))
    th = batch.get("source:TrackerHit")
    assert len(th) == len(ak.flatten(ev.TrackerHit_layer))
    np.testing.assert_array_equal(
        np.bincount(th["layer"], minlength=8), np.bincount(ak.to_numpy(ak.flatten(ev.TrackerHit_layer)), minlength=8)
    )
    tracks = batch.get("source:Track")
    assert tracks.meta["pv_dz_max"] == 0.1 and (tracks["charge"] == 0).all()


def _bad(tmp_path, capsys, source_extra: dict, path, pattern: str) -> None:
    data = yaml.safe_load((REPO / "process_configs" / "tau_cnn_rhtree.yaml").read_text())
    data["source"] = {**data["source"], "files": [str(path)], **source_extra}
    data["outputs"][0]["file"] = str(tmp_path / "out.root")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    rc, _, err = run_cli([str(tmp_path / "bad.yaml"), "--no-progress"], capsys)
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and pattern in err, err
    assert "Traceback" not in err


def test_rhtree_bad_inputs_get_one_line(tmp_path, capsys, sample_rhtree):
    _bad(tmp_path, capsys, {"maps": {"ecal": "ECAL_energyy"}}, sample_rhtree,
         "no branch 'ECAL_energyy' (source.maps.ecal); set source.maps.ecal")  # fmt: skip
    _bad(tmp_path, capsys, {"jets": {"pt": "jetPt"}}, sample_rhtree, "no branch 'jetPt' (source.jets.pt)")
    _bad(
        tmp_path,
        capsys,
        {"tree": "RHTree"},
        sample_rhtree,
        "no TTree or RNTuple 'RHTree' (trees in the file: 'fevt/RHTree')",
    )
    _bad(tmp_path, capsys, {"maps": {"ecall": "x"}}, sample_rhtree, "unknown key 'ecall' (did you mean 'ecal'?)")
    _bad(tmp_path, capsys, {"pv_dz_max": 0.5}, sample_rhtree, "tighter than the cut already in the source's track sums")
    # a map of the wrong size, a seed that is not a tower index, a fractional hit count, d0 without a track
    rng = np.random.default_rng(5)
    cases = {
        "size": ("HBHE_energy", lambda a: a[:, :-1], "expected 56 x 72 = 4032"),
        "seed": ("jetSeed_iphi", lambda a: a + 0.5, "expected a whole HCAL-tower index 0..71"),
        "count": (MAPS.bpix2, lambda a: a * 0.5, "expected a whole hit count"),
        "nan": (MAPS.ecal, lambda a: a * np.nan, "has value nan, expected finite 0..14000 GeV"),
        "big map": (  # float64 beyond float32: named as read, not as the inf of a cast (nor its RuntimeWarning)
            MAPS.ecal,
            lambda a: ak.where(ak.local_index(a) == 5, 1e300, ak.values_astype(a, np.float64)),
            f"branch '{MAPS.ecal}' has a value beyond float32 (1e+300",
        ),
        "big pt": ("jet_Pt", lambda a: ak.values_astype(a, np.float64) * 1e300, "'jet_Pt' has a value beyond float32"),
    }
    for name, (branch, damage, pattern) in cases.items():
        path = tmp_path / f"{name}.root"
        _synthetic(path, [[(20, 3)], [(30, 40)]], rng)
        data = _read_back(path)
        data[branch] = damage(data[branch])
        _write(path, data)
        _bad(tmp_path, capsys, {}, path, pattern)
    path = tmp_path / "d0.root"
    _synthetic(path, [[(20, 3)]], rng)
    data = _read_back(path)
    d0 = ak.to_numpy(data[MAPS.track_d0]).copy()
    pt = ak.to_numpy(data[MAPS.track_pt])
    d0[0, np.flatnonzero(pt[0] == 0)[7]] = 0.01
    data[MAPS.track_d0] = d0
    _write(path, data)
    _bad(tmp_path, capsys, {}, path, "is non-zero where 'ECAL_tracksPt_atECALfixIP' is zero")


def test_rhtree_ids_and_decay_modes_are_checked_before_any_cast(tmp_path, capsys):
    """Float event ids are taken whole up to the uint64 range (1e19 fits), refused beyond it naming the file's
    branch; a decay mode that a 16-bit cast would wrap to a valid one (65546 -> 10) is refused as read."""
    rng = np.random.default_rng(9)
    path = tmp_path / "ids.root"
    _synthetic(path, [[(20, 3)], [(30, 40)]], rng)
    data = _read_back(path)
    data["eventId"] = np.array([1e19, 2.0])
    _write(path, data)
    data = yaml.safe_load((REPO / "process_configs" / "tau_cnn_rhtree.yaml").read_text())
    data["source"] = {**data["source"], "files": [str(path)]}
    data["outputs"][0]["file"] = str(tmp_path / "ids_tagged.root")
    (tmp_path / "ids.yaml").write_text(yaml.safe_dump(data))
    rc, _, err = run_cli([str(tmp_path / "ids.yaml"), "--no-progress"], capsys)
    assert rc == 0, err
    assert "RuntimeWarning" not in err
    assert uproot.open(tmp_path / "ids_tagged.root")["Events"]["event"].array(library="np").tolist() == [10**19, 2]
    data = _read_back(path)
    data["eventId"] = np.array([1e30, 2.0])
    _write(path, data)
    _bad(tmp_path, capsys, {}, path, "branch 'eventId' (event) entry 0 has value 1e+30, which does not fit uint64")
    data = _read_back(path)
    data["eventId"] = np.array([1, 2], np.uint64)
    data["runId"] = np.array([1, -5], np.int64)
    _write(path, data)
    _bad(tmp_path, capsys, {}, path, "branch 'runId' (run) entry 1 has value -5")
    data = _read_back(path)
    data["runId"] = np.ones(2, np.uint32)
    data["jet_DM"] = ak.Array([[0], [65546]])
    _write(path, data)
    data = yaml.safe_load((REPO / "process_configs" / "tau_cnn_rhtree.yaml").read_text())
    data["source"] = {**data["source"], "files": [str(path)]}
    data["source"]["truth"]["decay_mode"] = "jet_DM"
    data["outputs"][0].update(file=str(tmp_path / "dm_tagged.root"), copy_input=True)  # the truth is read
    (tmp_path / "dm.yaml").write_text(yaml.safe_dump(data))
    rc, _, err = run_cli([str(tmp_path / "dm.yaml"), "--no-progress"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "branch 'jet_DM' (truth.decay_mode) entry 1 has value 65546, expected one of -1, 0, 1, 2, 10, 11" in err


def test_sparse_cells_equal_numpy():
    """The numba dense -> sparse kernel against numpy, with -0.0 (zero), NaN (kept) and a buffer regrowth."""
    from dataformats.dense import sparse_cells

    rng = np.random.default_rng(11)
    for n, size, occupancy in ((3, 100_800, 0.02), (4, 4032, 0.6), (2, 37, 1.0), (0, 10, 0.5)):
        dense = np.where(rng.random(n * size) < occupancy, rng.normal(size=n * size), 0.0).astype(np.float32)
        if n:
            dense[:5] = [-0.0, np.nan, 0.0, np.inf, -1.0]
        offsets, cells, values = sparse_cells(dense, n, size)
        mask = (dense != 0) | np.isnan(dense)
        expected = np.flatnonzero(mask)
        np.testing.assert_array_equal(np.repeat(np.arange(n), np.diff(offsets)) * size + cells, expected)
        np.testing.assert_array_equal(values, dense[expected])
        assert offsets[0] == 0 and offsets[-1] == len(expected)


def test_e2e_convert_refuses_to_overwrite_its_input(tmp_path, capsys):
    from e2e.cli.convert import main

    small = write_hits(tmp_path / "small.root", read_events(SAMPLE, 3))
    assert main([str(small), "-o", str(small)]) == 2
    assert "input" in capsys.readouterr().err
    assert main([str(small), "-o", str(tmp_path / "rh.root")]) == 0
    assert uproot.open(tmp_path / "rh.root")["fevt/RHTree"].num_entries == 3
    capsys.readouterr()
    assert main([str(small), "-o", str(tmp_path / "rh9.root"), "--level", "99"]) == 2  # named, before any writing
    assert capsys.readouterr().err.strip() == "e2e-convert: error: --level 99: expected 0..9 for --compression zlib"
    assert not (tmp_path / "rh9.root").exists()
    assert main([str(small), "-o", str(tmp_path / "rh12.root"), "--level", "12", "--compression", "lz4"]) == 0


def test_e2e_convert_of_inputs_with_and_without_truth_and_bad_outputs_are_one_line(tmp_path, capsys):
    """One RHTree holds the Jet truth of every event or of none: inputs with and without are refused (the truth was
    dropped from all of them); an output in a directory that takes no file, or that is a directory, is named."""
    from e2e.cli.convert import main

    ev = read_events(SAMPLE, 3)
    with_truth = write_hits(tmp_path / "truth.root", ev)
    without = write_hits(tmp_path / "none.root", ev, truth=False)
    assert main([str(with_truth), str(without), "-o", str(tmp_path / "mix.root")]) == 2
    err = capsys.readouterr().err.strip()
    assert "none.root has no Jet truth but other inputs have" in err and "\n" not in err, err
    assert not (tmp_path / "mix.root").exists()
    (tmp_path / "out.root").mkdir()
    for out, said in ((tmp_path / "out.root", "is a directory"), ("/proc/x.root", "cannot create a file in /proc")):
        assert main([str(with_truth), "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert said in err and ".tmp" not in err and "\n" not in err, err


def test_a_damaged_tree_header_is_one_line_or_skipped(tmp_path, capsys, sample_rhtree):
    """Bytes of the tree's metadata damaged: one line naming the file (was uproot's DeserializationError as an
    internal error), and a file --skip-bad-files skips."""
    raw = bytearray(Path(sample_rhtree).read_bytes())
    i = raw.index(b"jet_IsTau[njet_IsTau]/F")  # a branch title in the (uncompressed) TTree streamer
    raw[i + 20 : i + 24] = b"\xff" * 4
    bad = tmp_path / "bad.root"
    bad.write_bytes(bytes(raw))
    _bad(tmp_path, capsys, {}, bad, "bad.root:fevt/RHTree: cannot read the tree")
    data = yaml.safe_load((tmp_path / "bad.yaml").read_text())
    data["source"]["files"] = [str(sample_rhtree), str(bad)]
    (tmp_path / "skip.yaml").write_text(yaml.safe_dump(data))
    rc, out, err = run_cli([str(tmp_path / "skip.yaml"), "--no-progress", "--skip-bad-files"], capsys)
    assert rc == 0 and "1 file(s) skipped (--skip-bad-files)" in out and "bad.root" in out, err


def test_a_boolean_truth_flag_is_read_as_the_number_flag(tmp_path, sample_rhtree):
    """``jet_IsTau`` as ``vector<bool>`` (a natural form of a flag) gives the labels of its float form."""
    from e2e.io.source import collection_fields

    data = _read_back(sample_rhtree)
    as_bool = tmp_path / "bool.root"
    _write(as_bool, {**data, "jet_IsTau": ak.values_astype(data["jet_IsTau"] != 0, bool)})
    labels = []
    for path in (sample_rhtree, as_bool):
        desc = load_process({"source": {"type": "RHTreeSource", "files": [str(path)]},
                             "modules": {}, "outputs": [{"file": "unused.root"}]})  # fmt: skip
        src = desc.source
        src.set_plan(dict.fromkeys(collection_fields(True)))
        src.begin()
        labels.append(src.read(src.plan()[0]).get("source:Jet")["label"])
        src.end()
    assert labels[0].any() and np.array_equal(*labels)


def test_every_track_selection_honours_the_source_pv_cut(sample_rhtree):
    """Jet shapes (like frames and graphs) do not cut the RHTree's summed dz again, and record the maps' cut."""
    from e2e.errors import ConfigError

    desc = load_process({"source": {"type": "RHTreeSource", "files": [str(sample_rhtree)], "max_events": 10},
                         "modules": {"s": {"type": "JetShapeProducer", "dz_max": 0.5}},
                         "outputs": [{"file": "unused.root"}]})  # fmt: skip
    Process(desc)
    desc.source.begin()
    batch = desc.source.read(desc.source.plan()[0])
    desc.modules["s"].produce(batch)
    assert batch.get("s").params["dz_max"] == 0.1
    tight = load_process({"source": {"type": "RHTreeSource", "files": [str(sample_rhtree)]},
                          "modules": {"s": {"type": "JetShapeProducer", "dz_max": 0.05}},
                          "outputs": [{"file": "unused.root"}]})  # fmt: skip
    Process(tight)
    with pytest.raises(ConfigError, match="modules.s.dz_max: 0.05 cm is tighter"):
        tight.modules["s"].produce(batch)
    desc.source.end()


def test_an_rhtree_read_as_a_hits_tree_is_named_as_such(sample_rhtree, capsys):
    from dataformats.schema import SchemaError, validate_file
    from e2e.cli.validate import main as validate_main

    path = sample_rhtree
    with pytest.raises(SchemaError, match="an MLAnalyzer RHTree .* not a hits tree: e2e-run reads it with source type"):
        validate_file(path, tree="fevt/RHTree")
    assert validate_main([str(path), "--tree", "fevt/RHTree"]) == 2
    assert "RHTreeSource" in capsys.readouterr().err
