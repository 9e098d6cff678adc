"""Hits-tree schema: declaration, and the validator on good and bad arrays and ROOT files."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot

from dataformats import schema as s
from dataformats.schema import SchemaError, branch_dtypes, validate_arrays, validate_file

N_EVENTS = 4
# per-event multiplicities; event 1 is empty (no hits, no tracks, no jets)
COUNTS = {
    "EcalHit": [3, 0, 2, 1],
    "HcalHit": [2, 0, 1, 1],
    "Track": [2, 0, 1, 3],
    "TrackerHit": [3, 0, 1, 2],
    "Jet": [2, 0, 1, 1],
}
VALUES: dict[str, dict[str, list[Any]]] = {
    "EcalHit": {
        "ieta": [0, 140, 279, 55, 60, 224],
        "iphi": [0, 359, 180, 1, 2, 3],
        "energy": [0.0, 1.5, 13999.0, 2, 3, 4],
    },
    "HcalHit": {"ieta": [0, 55, 20, 30], "iphi": [0, 71, 5, 6], "energy": [0.0, 10.0, 1.0, 2.0]},
    "Track": {
        "pt": [1.0, 25.0, 3.0, 4.0, 5.0, 6.0],
        "eta": [-3.0, 3.0, 0.0, 1.0, -1.0, 2.4],
        "phi": [float(np.float32(np.pi)), float(np.float32(-np.pi)), 0.0, 1.0, 2.0, -2.0],
        "charge": [1, -1, 1, -1, 1, 0],
        "d0": [0.01, -0.02, 0.0, 129.9, -1.0, 0.5],
        "dz": [0.1, -0.2, 0.0, 699.0, -1.0, 0.5],
        "d0sig": [1.0, -2.0, 0.0, 3.0, 4.0, 5.0],
        "dzsig": [1.0, -2.0, 0.0, 3.0, 4.0, 5.0],
        "ecal_ieta": [10, -1, 279, 5, 6, 7],
        "ecal_iphi": [20, -1, 359, 5, 6, 7],
    },
    "TrackerHit": {"layer": [0, 3, 7, 4, 5, 6], "ieta": [1, 2, 3, 4, 5, 6], "iphi": [1, 2, 3, 4, 5, 6]},
    "Jet": {
        "pt": [50.0, 30.0, 40.0, 20.0],
        "eta": [0.5, -2.5, 1.0, 0.0],
        "phi": [0.1, -3.1, 2.0, 1.0],
        "mass": [1.0, 5.0, 170.0, 0.1],
        "seed_ieta": [150, 30, 200, 140],
        "seed_iphi": [185, 2, 300, 357],
        "label": [1, 0, 4, 2],
        "gen_pt": [48.0, -1.0, 41.0, 20.5],
        "gen_mass": [1.2, -1.0, 172.0, 0.0],
        "decay_mode": [1, -1, -1, -1],
    },
}


def make_events(truth: bool = True, override: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """Valid events as a dict: ids (numpy) and one ak.zip record per collection (nested form)."""
    override = override or {}
    dtypes = branch_dtypes(truth=True)
    out: dict[str, Any] = {
        "run": np.full(N_EVENTS, 1, np.uint32),
        "luminosityBlock": np.array([1, 1, 2, 2], np.uint32),
        "event": np.array([10, 11, 12, 2**63 + 5], np.uint64),
    }
    for coll in s.collections(truth):
        if coll.truth:
            continue
        fields = {}
        for f in coll.fields + (s.JET_TRUTH.fields if truth and coll.name == "Jet" else ()):
            flat = override.get(coll.name, {}).get(f.name)
            if flat is None:
                flat = np.asarray(VALUES[coll.name][f.name], dtype=dtypes[coll.branch(f)])
            fields[f.name] = ak.unflatten(flat, np.asarray(COUNTS[coll.name]))
        out[coll.name] = ak.zip(fields)
    return out


def write(path: Path, events: dict[str, Any]) -> Path:
    types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in events.items()}
    with uproot.recreate(path, compression=uproot.LZ4(1)) as f:
        f.mktree("Events", types)
        f["Events"].extend(events)
    return path


def read_flat(path: Path) -> ak.Array:
    with uproot.open(path) as f:
        return f["Events"].arrays()


def flat_dict(events: dict[str, Any]) -> dict[str, Any]:
    """Flat branch dict with counters, as uproot's arrays() names them."""
    out: dict[str, Any] = {}
    for k, v in events.items():
        if isinstance(v, ak.Array) and v.fields:
            out[f"n{k}"] = ak.to_numpy(ak.num(v, axis=1)).astype(np.int32)
            for f in v.fields:
                out[f"{k}_{f}"] = v[f]
        else:
            out[k] = v
    return out


def raises(branch: str, fn: Any, *args: Any, **kwargs: Any) -> str:
    """Call fn, expect a one-line SchemaError naming ``branch``; return the message."""
    with pytest.raises(SchemaError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    assert branch in msg
    return msg


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    return write(tmp_path / "good.root", make_events())


# ---------------------------------------------------------------------------- the declaration


def test_branch_dtypes_order_and_content() -> None:
    d = branch_dtypes()
    keys = list(d)
    assert keys[:6] == ["run", "luminosityBlock", "event", "nEcalHit", "EcalHit_ieta", "EcalHit_iphi"]
    assert keys[6:10] == ["EcalHit_energy", "nHcalHit", "HcalHit_ieta", "HcalHit_iphi"]
    assert len(d) == 3 + 5 + 3 + 3 + 10 + 3 + 6 + 4
    assert keys[-11:] == [
        "nJet", "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_seed_ieta", "Jet_seed_iphi",
        "Jet_label", "Jet_gen_pt", "Jet_gen_mass", "Jet_decay_mode",
    ]  # fmt: skip
    assert d["run"] == np.uint32 and d["luminosityBlock"] == np.uint32 and d["event"] == np.uint64
    assert all(d[f"n{c.name}"] == np.int32 for c in s.COLLECTIONS)
    assert d["EcalHit_energy"] == np.float32 and d["EcalHit_ieta"] == np.int16
    # no 8-bit integers: ROOT reads Char_t / UChar_t arrays as strings
    assert d["Track_charge"] == np.int16 and d["TrackerHit_layer"] == np.int16
    assert all(dt.itemsize > 1 for dt in d.values())
    assert d["Jet_decay_mode"] == np.int16 and d["Jet_label"] == np.int16
    assert all(isinstance(v, np.dtype) for v in d.values())
    reco = branch_dtypes(truth=False)
    assert list(reco) == keys[:-4]


def test_collections() -> None:
    assert [c.name for c in s.COLLECTIONS] == ["EcalHit", "HcalHit", "Track", "TrackerHit", "Jet"]
    assert [c.name for c in s.collections(True)] == ["EcalHit", "HcalHit", "Track", "TrackerHit", "Jet", "Jet"]
    assert s.collections(True)[-1] is s.JET_TRUTH and s.JET_TRUTH.truth and not s.JET.truth
    assert s.TRACK.field_names == ("pt", "eta", "phi", "charge", "d0", "dz", "d0sig", "dzsig", "ecal_ieta", "ecal_iphi")
    assert s.JET_TRUTH.counter == "nJet" and s.JET_TRUTH.branch("label") == "Jet_label"
    assert s.ECAL_HIT.branch(s.ECAL_HIT.fields[2]) == "EcalHit_energy"
    assert s.JET_LABELS == {0: "qcd", 1: "tau", 2: "electron", 3: "photon", 4: "top"}
    dm = s.JET_TRUTH.fields[-1]
    assert dm.name == "decay_mode" and dm.allowed == (-1, 0, 1, 2, 10, 11)
    ieta = s.ECAL_HIT.fields[0]
    assert (ieta.lo, ieta.hi) == (0, 279)
    assert (s.HCAL_HIT.fields[0].hi, s.HCAL_HIT.fields[1].hi) == (55, 71)
    assert s.TRACKER_HIT.fields[0].hi == 7
    assert s.TRACK.fields[2].unit == "rad" and s.TRACK.fields[4].unit == "cm" and s.TRACK.fields[0].unit == "GeV"
    assert all(f.help and "\n" not in f.help for c in s.collections() for f in c.fields)
    with pytest.raises(AttributeError):
        s.ECAL_HIT.name = "x"  # type: ignore[misc]


# ---------------------------------------------------------------------------- valid inputs


def test_valid_file(good_file: Path) -> None:
    assert validate_file(good_file) == N_EVENTS
    assert validate_file(str(good_file), step_size=1) == N_EVENTS
    assert validate_file(good_file, check_values=False) == N_EVENTS
    assert validate_file(good_file, truth=True) == N_EVENTS
    assert validate_file(good_file, truth=False) == N_EVENTS


def test_written_branches_match_schema_order(good_file: Path) -> None:
    with uproot.open(good_file) as f:
        assert list(f["Events"].keys()) == list(branch_dtypes())


def test_valid_arrays_all_forms(good_file: Path) -> None:
    events = make_events()
    assert validate_arrays(read_flat(good_file)) == N_EVENTS  # flat names from uproot
    assert validate_arrays(events) == N_EVENTS  # dict, nested collections
    assert validate_arrays(ak.zip(events, depth_limit=1)) == N_EVENTS  # record array, nested collections
    assert validate_arrays(flat_dict(events)) == N_EVENTS  # dict, flat names
    extra = read_flat(good_file)
    extra["something_else"] = np.arange(N_EVENTS) * 1.0
    assert validate_arrays(extra) == N_EVENTS  # extra branches are ignored
    assert validate_arrays(events, check_values=False) == N_EVENTS


def test_zero_events(tmp_path: Path) -> None:
    events = {k: v[:0] for k, v in make_events().items()}
    assert validate_arrays(events) == 0
    assert validate_file(write(tmp_path / "empty.root", events)) == 0


def test_float32_pi_accepted_but_not_beyond() -> None:
    track = {f.name: np.asarray(VALUES["Track"][f.name], f.dtype) for f in s.TRACK.fields}
    track["phi"][0] = np.float32(np.pi)
    assert validate_arrays(make_events(override={"Track": track})) == N_EVENTS
    track["phi"][0] = np.float32(3.1416)  # 2.3e-6 relative beyond pi
    msg = raises("Track_phi", validate_arrays, make_events(override={"Track": track}))
    assert "entry 0 has value 3.1416, expected finite -3.14159..3.14159 rad" in msg


# ---------------------------------------------------------------------------- errors


def test_missing_branch(tmp_path: Path) -> None:
    events = make_events()
    events["Track"] = ak.zip({f: events["Track"][f] for f in events["Track"].fields if f != "d0sig"})
    path = write(tmp_path / "x.root", events)
    msg = raises("Track_d0sig", validate_file, path)
    assert msg == (
        f"{path}:Events: missing branch 'Track_d0sig' "
        "(Track needs pt, eta, phi, charge, d0, dz, d0sig, dzsig, ecal_ieta, ecal_iphi)"
    )
    msg = raises("Track_d0sig", validate_arrays, read_flat(path), source="mine")
    assert msg.startswith("mine: missing branch 'Track_d0sig'")
    events = make_events()
    del events["run"]
    raises("'run'", validate_arrays, events)


def test_a_collection_under_other_names_is_named_as_a_whole(tmp_path: Path) -> None:
    """No branch of a collection at all (a file naming it EcalHits_*): one line naming the collection, its branches
    and the prefixes option, not a 'missing counter' (which std::vector collections need not have)."""
    flat = {k.replace("EcalHit", "EcalHits"): v for k, v in flat_dict(make_events()).items()}
    msg = raises("EcalHit", validate_arrays, flat, require_counters=False)
    assert "no branch of the collection EcalHit (EcalHit_ieta, EcalHit_iphi, EcalHit_energy, counter nEcalHit" in msg
    assert "prefixes: {EcalHit: <its prefix>}" in msg


def test_missing_counter() -> None:
    flat = flat_dict(make_events())
    del flat["nHcalHit"]
    msg = raises("nHcalHit", validate_arrays, flat)
    assert "missing branch 'nHcalHit'" in msg
    # arrays read from ROOT std::vector branches have no counters
    assert validate_arrays(flat, require_counters=False) == N_EVENTS


def test_compatible_dtypes_are_read_and_reported(tmp_path: Path) -> None:
    """Integers of any width/signedness and floats of any width are accepted, cast, and reported."""
    energy = np.asarray(VALUES["EcalHit"]["energy"], np.float64)
    ieta = np.asarray(VALUES["EcalHit"]["ieta"], np.int64)
    path = write(tmp_path / "x.root", make_events(override={"EcalHit": {"energy": energy, "ieta": ieta}}))
    assert validate_file(path) == N_EVENTS
    casts = s.inspect_file(path).casts
    assert casts["EcalHit_energy"] == (np.dtype(np.float64), np.dtype(np.float32))
    assert casts["EcalHit_ieta"] == (np.dtype(np.int64), np.dtype(np.int16)) and len(casts) == 2
    flat = flat_dict(make_events())
    flat["nJet"] = flat["nJet"].astype(np.int64)
    flat["event"] = flat["event"].astype(np.float64)  # floats do not feed integer fields
    assert "'event' has dtype float64, expected an integer (read as uint64)" in raises("'event'", validate_arrays, flat)


def test_a_value_that_does_not_fit_the_schema_type(tmp_path: Path) -> None:
    ieta = np.asarray(VALUES["EcalHit"]["ieta"], np.int32)
    ieta[2] = 40_000  # beyond int16: would wrap around in a plain cast
    path = write(tmp_path / "x.root", make_events(override={"EcalHit": {"ieta": ieta}}))
    entry = int(np.searchsorted(np.cumsum(COUNTS["EcalHit"]), 2, side="right"))
    msg = raises("EcalHit_ieta", validate_file, path)
    assert msg == (
        f"{path}:Events: branch 'EcalHit_ieta' entry {entry} has value 40000, which does not fit int16 "
        "(accepted: 0..279)"
    )
    assert s.cast_to_schema("run", np.array([3, 4], np.int64)).dtype == np.uint32
    with pytest.raises(SchemaError, match="entry 1 has value -1, which does not fit uint32"):
        s.cast_to_schema("run", np.array([3, -1], np.int64))


def test_not_jagged() -> None:
    flat = flat_dict(make_events())
    flat["EcalHit_ieta"] = np.zeros(N_EVENTS, np.int16)
    msg = raises("EcalHit_ieta", validate_arrays, flat)
    assert "is not jagged" in msg
    flat = flat_dict(make_events())
    flat["EcalHit_ieta"] = np.zeros((N_EVENTS, 3), np.int16)
    assert "not a jagged list" in raises("EcalHit_ieta", validate_arrays, flat)
    flat = flat_dict(make_events())
    flat["run"] = ak.unflatten(np.ones(N_EVENTS, np.uint32), np.ones(N_EVENTS, np.int64))
    assert "is jagged" in raises("'run'", validate_arrays, flat)


def test_out_of_range_value_with_global_entry(tmp_path: Path) -> None:
    ieta = np.asarray(VALUES["EcalHit"]["ieta"], np.int16)
    ieta[4] = 300  # flat index 4 is the second hit of event 2
    path = write(tmp_path / "x.root", make_events(override={"EcalHit": {"ieta": ieta}}))
    expected = f"{path}:Events: branch 'EcalHit_ieta' entry 2 has value 300, expected 0..279"
    for step in (50_000, 1, 2, 3):
        assert raises("EcalHit_ieta", validate_file, path, step_size=step) == expected
    assert validate_file(path, check_values=False) == N_EVENTS
    msg = raises("EcalHit_ieta", validate_arrays, read_flat(path), source="a")
    assert msg == "a: branch 'EcalHit_ieta' entry 2 has value 300, expected 0..279"


def test_out_of_range_in_last_event_and_negative() -> None:
    layer = np.asarray(VALUES["TrackerHit"]["layer"], np.int16)
    layer[-1] = 8
    assert "entry 3 has value 8, expected 0..7" in raises(
        "TrackerHit_layer", validate_arrays, make_events(override={"TrackerHit": {"layer": layer}})
    )
    ecal_ieta = np.asarray(VALUES["Track"]["ecal_ieta"], np.int16)
    ecal_ieta[0] = -2
    assert "entry 0 has value -2, expected -1..279" in raises(
        "Track_ecal_ieta", validate_arrays, make_events(override={"Track": {"ecal_ieta": ecal_ieta}})
    )
    energy = np.asarray(VALUES["HcalHit"]["energy"], np.float32)
    energy[2] = -0.5
    assert "entry 2 has value -0.5, expected finite 0..14000 GeV" in raises(
        "HcalHit_energy", validate_arrays, make_events(override={"HcalHit": {"energy": energy}})
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf(tmp_path: Path, bad: float) -> None:
    pt = np.asarray(VALUES["Track"]["pt"], np.float32)
    pt[3] = bad  # flat index 3 is in event 3 (counts 2, 0, 1, 3)
    path = write(tmp_path / "x.root", make_events(override={"Track": {"pt": pt}}))
    msg = raises("Track_pt", validate_file, path)
    assert msg == f"{path}:Events: branch 'Track_pt' entry 3 has value {bad}, expected finite 0..14000 GeV"


def test_decay_mode_not_allowed() -> None:
    dm = np.asarray(VALUES["Jet"]["decay_mode"], np.int16)
    dm[3] = 5
    msg = raises("Jet_decay_mode", validate_arrays, make_events(override={"Jet": {"decay_mode": dm}}), source="s")
    assert msg == "s: branch 'Jet_decay_mode' entry 3 has value 5, expected one of -1, 0, 1, 2, 10, 11"
    assert validate_arrays(make_events(override={"Jet": {"decay_mode": dm}}), truth=False) == N_EVENTS


def test_counter_length_mismatch() -> None:
    flat = flat_dict(make_events())
    flat["nEcalHit"] = np.array([3, 0, 2, 2], np.int32)
    msg = raises("EcalHit_ieta", validate_arrays, flat, source="s")
    assert msg == "s: branch 'EcalHit_ieta' has 1 values in entry 3 but nEcalHit = 2"
    flat = flat_dict(make_events())
    flat["EcalHit_energy"] = ak.unflatten(np.ones(7, np.float32), [3, 0, 2, 2])
    flat["nEcalHit"] = np.array([3, 0, 2, 1], np.int32)
    msg = raises("EcalHit_energy", validate_arrays, flat, source="s")
    assert msg == "s: branch 'EcalHit_energy' has 2 values in entry 3 but nEcalHit = 1"


def test_jagged_lengths_differ_without_counter() -> None:
    flat = flat_dict(make_events())
    del flat["nJet"]
    flat["Jet_gen_pt"] = ak.unflatten(np.ones(4, np.float32), [2, 1, 0, 1])
    msg = raises("Jet_gen_pt", validate_arrays, flat, require_counters=False)
    assert "has 1 values in entry 1 but 'Jet_pt' has 0" in msg


def test_branch_length_mismatch() -> None:
    flat = flat_dict(make_events())
    flat["luminosityBlock"] = flat["luminosityBlock"][:3]
    assert "has 3 entries, expected 4" in raises("luminosityBlock", validate_arrays, flat)


def test_not_events() -> None:
    with pytest.raises(SchemaError, match="expected an awkward record array"):
        validate_arrays(ak.Array([1, 2, 3]))
    with pytest.raises(SchemaError, match="expected an awkward record array"):
        validate_arrays([1, 2])


# ---------------------------------------------------------------------------- truth handling


def test_truth_none_partial_is_error() -> None:
    events = make_events()
    events["Jet"] = ak.zip({f: events["Jet"][f] for f in events["Jet"].fields if f != "gen_mass"})
    msg = raises("Jet_gen_mass", validate_arrays, events)
    assert "missing branch 'Jet_gen_mass' (Jet truth needs label, gen_pt, gen_mass, decay_mode)" in msg
    assert validate_arrays(events, truth=False) == N_EVENTS


def test_truth_absent(tmp_path: Path) -> None:
    events = make_events(truth=False)
    assert validate_arrays(events) == N_EVENTS
    assert validate_arrays(events, truth=False) == N_EVENTS
    raises("Jet_label", validate_arrays, events, truth=True)
    path = write(tmp_path / "reco.root", events)
    assert validate_file(path) == N_EVENTS
    raises("Jet_label", validate_file, path, truth=True)


# ---------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.root"
    msg = raises(str(path), validate_file, path)
    assert "no such file" in msg


def test_not_root(tmp_path: Path) -> None:
    path = tmp_path / "text.root"
    path.write_text("this is not a ROOT file\nsecond line\n")
    msg = raises(str(path), validate_file, path)
    assert "not a ROOT file: it starts with bytes 74 68 69 73" in msg


def test_truncated(tmp_path: Path, good_file: Path) -> None:
    data = good_file.read_bytes()
    path = tmp_path / "cut.root"
    path.write_bytes(data[: len(data) // 2])
    msg = raises(str(path), validate_file, path)
    assert "truncated" in msg


def test_missing_tree(good_file: Path) -> None:
    msg = raises("Nope", validate_file, good_file, tree="Nope")
    assert msg == f"{good_file}: no TTree or RNTuple 'Nope' (trees in the file: 'Events')"


def test_directory(tmp_path: Path) -> None:
    raises(str(tmp_path), validate_file, tmp_path)


# ---------------------------------------------------------------------------- ROOT std::vector branches


def test_interpretations_map_to_dtypes() -> None:
    from uproot.containers import AsVector
    from uproot.interpretation.jagged import AsJagged
    from uproot.interpretation.numerical import AsDtype
    from uproot.interpretation.objects import AsObjects

    def desc(interp: Any, typename: str) -> Any:
        return s._describe_interpretation(SimpleNamespace(interpretation=interp, typename=typename))

    d = desc(AsObjects(AsVector(True, np.dtype(">f4"))), "std::vector<float>")
    assert (d.kind, d.dtype, d.vector) == ("jagged", np.dtype(np.float32), True)
    d = desc(AsJagged(AsDtype(">i2"), header_bytes=10), "std::vector<short>")
    assert (d.kind, d.dtype, d.vector) == ("jagged", np.dtype(np.int16), True)
    d = desc(AsJagged(AsDtype(">f4")), "float[]")
    assert (d.kind, d.dtype, d.vector) == ("jagged", np.dtype(np.float32), False)
    d = desc(AsDtype(">u8"), "uint64_t")
    assert (d.kind, d.dtype) == ("scalar", np.dtype(np.uint64))
    d = desc(AsDtype(np.dtype((">f4", (3,)))), "float[3]")
    assert d.kind == "other"


def test_event_ids_full_range_accepted() -> None:
    flat = flat_dict(make_events())
    flat["event"] = np.array([0, 1, 2, 2**64 - 1], np.uint64)
    flat["run"] = np.array([0, 1, 2, 2**32 - 1], np.uint32)
    assert validate_arrays(flat) == N_EVENTS
    assert math.isclose(s.EVENT_FIELDS[2].hi, 2**64 - 1)
