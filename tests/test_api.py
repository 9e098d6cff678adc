"""The in-memory API (e2e.api.EventTagger): the same values as e2e-run for the same events, one event at a time
or many, from an awkward record array or a mapping; bad events fail with one line."""

from __future__ import annotations

import re
import warnings

import awkward as ak
import numpy as np
import pytest
import uproot
from conftest import REPO, SAMPLE, need_extra

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


def test_one_record_and_a_list_of_events(tagger, events, reference) -> None:
    """One event as an awkward Record (``events[i]``, the trigger's case) is that one event; a list of events as
    mappings (``events.tolist()``, JSON) or Records gives the values of the same events, in the list's order."""
    for i in (0, 7, N - 1):
        one = tagger(events[i])["Jet_tauGNN_tau"]
        assert len(one) == 1 and ak.to_list(one[0]) == ak.to_list(reference["Jet_tauGNN_tau"][i])
    assert ak.to_list(tagger(events[3:][2])["Jet_tauGNN_tau"]) == ak.to_list(reference["Jet_tauGNN_tau"][5:6])
    order = [4, 0, 2]
    want = [ak.to_list(reference["Jet_tauGNN_tau"][i]) for i in order]
    assert ak.to_list(tagger([events[i].to_list() for i in order])["Jet_tauGNN_tau"]) == want
    assert ak.to_list(tagger(tuple(events[i] for i in order))["Jet_tauGNN_tau"]) == want
    padded = {
        **{k: events[k] for k in events.fields},
        "Jet_pt": ak.mask(events["Jet_pt"], events["Jet_pt"] >= 0),
    }  # ?float32, no None
    assert ak.to_list(tagger(padded)["Jet_tauGNN_tau"]) == ak.to_list(reference["Jet_tauGNN_tau"])


def test_one_event_as_a_mapping_uint64_ids_and_big_endian_arrays(tagger, events, reference) -> None:
    """One event as a mapping of its values (``events.tolist()[i]``) is that event; event ids from 2**63 (uint64) in
    plain Python lists, as JSON gives them, and big-endian numpy arrays (ROOT's byte order) are read as their values;
    an integer that fits no branch is one line."""
    rows = events.to_list()
    for i in (0, 5):
        one = tagger(rows[i])["Jet_tauGNN_tau"]
        assert len(one) == 1 and ak.to_list(one[0]) == ak.to_list(reference["Jet_tauGNN_tau"][i])
    want = ak.to_list(reference["Jet_tauGNN_tau"][:3])
    big = [dict(r) for r in rows[:3]]
    big[0]["event"], big[2]["event"] = 2**63, 2**64 - 1
    assert ak.to_list(tagger(big)["Jet_tauGNN_tau"]) == want
    lists = {k: [r[k] for r in big] for k in big[0]}
    assert ak.to_list(tagger(lists)["Jet_tauGNN_tau"]) == want
    swapped = {k: events[:3][k] for k in events.fields}
    swapped["run"] = ak.to_numpy(events["run"][:3]).astype(">u4")
    swapped["event"] = ak.to_numpy(events["event"][:3]).astype(">u8")
    assert ak.to_list(tagger(swapped)["Jet_tauGNN_tau"]) == want
    reordered = [big[0], dict(reversed(list(big[1].items()))), big[2]]  # (JSON keys in any order)
    assert ak.to_list(tagger(reordered)["Jet_tauGNN_tau"]) == want
    for bad in ([{**rows[0], "run": 2**70}], {**lists, "run": [2**70, 1, 1]}):
        with pytest.raises(SchemaError, match=r"an integer beyond int64") as err:
            tagger(bad)
        assert "\n" not in str(err.value)
    with pytest.raises(SchemaError, match=r"branch 'run' \(int\)"):  # a stray number among arrays: named
        tagger({**{k: events[:3][k] for k in events.fields}, "run": 1})


def test_overrides_given_as_one_string(events) -> None:
    with EventTagger(REPO / "process_configs" / "hit_graphs.yaml", "modules.hitGraphs.k=8") as t:
        assert t.desc.modules["hitGraphs"].params.k == 8


def test_empty_lists_in_json_and_plain_lists(tagger, events, reference) -> None:
    """An event with no jet, or with no hit of a kind, given as JSON or as a mapping of plain lists: awkward reads
    its empty lists as float64 (or unknown) lists, which every number type takes (they were refused as 'dtype
    float64, expected int16'); an empty list of events is one line."""
    import json

    no_jets = json.loads(json.dumps(events[0].to_list()))
    for name in [k for k in no_jets if k.startswith("Jet_")]:
        no_jets[name] = []
    no_jets["nJet"] = 0
    assert ak.to_list(tagger([no_jets])["Jet_tauGNN_tau"]) == [[]]
    assert ak.to_list(tagger({k: [v] for k, v in no_jets.items()})["Jet_tauGNN_tau"]) == [[]]
    no_ecal = json.loads(json.dumps(events[1].to_list()))
    for name in [k for k in no_ecal if k.startswith("EcalHit_")]:
        no_ecal[name] = []
    no_ecal["nEcalHit"] = 0
    as_awkward = {k: events[1:2][k] for k in events.fields}
    as_awkward.update(
        {k: ak.Array([np.zeros(0, np.asarray(events[k][1]).dtype)]) for k in no_ecal if k[:7] == "EcalHit"}
    )
    as_awkward["nEcalHit"] = ak.Array(np.zeros(1, np.asarray(events["nEcalHit"]).dtype))
    assert ak.to_list(tagger([no_ecal])["Jet_tauGNN_tau"]) == ak.to_list(tagger(as_awkward)["Jet_tauGNN_tau"])
    with pytest.raises(SchemaError, match="an empty list of events: nothing to tag"):
        tagger([])


def test_numpy_arrays_as_uproot_gives_them(tagger, reference) -> None:
    """uproot's ``library="np"`` (jagged branches as object arrays of numpy arrays; none for zero events) and plain
    Python lists give the values of the same events as awkward arrays."""
    with uproot.open(SAMPLE) as f:
        as_numpy = f["Events"].arrays(entry_stop=N, library="np")
        none = f["Events"].arrays(entry_stop=0, library="np")
    assert as_numpy["EcalHit_energy"].dtype == object
    assert ak.to_list(tagger(as_numpy)["Jet_tauGNN_tau"]) == ak.to_list(reference["Jet_tauGNN_tau"])
    lists = {name: values.tolist() for name, values in as_numpy.items()}
    assert ak.to_list(tagger(lists)["Jet_tauGNN_tau"]) == ak.to_list(reference["Jet_tauGNN_tau"])
    assert len(tagger(none)["Jet_tauGNN_tau"]) == 0


def test_calls_from_threads_get_their_own_events(events, reference, monkeypatch) -> None:
    """Two threads calling one tagger at once each get the values of their own events: the source keeps a call's
    events between load() and read(), here held open 50 ms, while the other thread calls."""
    import threading
    import time

    with EventTagger(CONFIG) as tagger:
        read = tagger.source.read

        def slow_read(item):
            time.sleep(0.05)
            return read(item)

        monkeypatch.setattr(tagger.source, "read", slow_read)
        parts = {"first": slice(0, 10), "second": slice(10, 25)}
        got: dict[str, list] = {}

        def call(name: str) -> None:
            got[name] = ak.to_list(tagger(events[parts[name]])["Jet_tauGNN_tau"])

        threads = [threading.Thread(target=call, args=(name,)) for name in parts]
        for t in threads:
            t.start()
            time.sleep(0.01)  # the second call starts while the first one waits in read()
        for t in threads:
            t.join()
    for name, where in parts.items():
        assert got[name] == ak.to_list(reference["Jet_tauGNN_tau"][where]), name


def _zipped(events: ak.Array) -> ak.Array:
    """The events with each collection's branches zipped into a list of records per event, as coffea's NanoAODSchema
    gives them (``events.Jet.pt`` instead of ``Jet_pt``; counters kept)."""
    collections: dict[str, dict[str, ak.Array]] = {}
    flat = {}
    for name in events.fields:
        if events[name].ndim == 2:
            collection, field = name.split("_", 1)
            collections.setdefault(collection, {})[field] = events[name]
        else:
            flat[name] = events[name]
    return ak.zip({**flat, **{c: ak.zip(fields) for c, fields in collections.items()}}, depth_limit=1)


def test_collections_zipped_as_coffea_gives_them(tagger, events, reference) -> None:
    """Collections zipped into records (``events.Jet.pt``) are read under their branch names (``Jet_pt``): from a
    record array, a selection of it (an indexed layout), and a mapping of collections."""
    zipped = _zipped(events)
    assert "Jet_pt" not in zipped.fields and "pt" in zipped.Jet.fields
    out = tagger(zipped)
    assert "Jet_tauGNN_tau" in out
    for name, values in out.items():
        assert ak.to_list(values) == ak.to_list(reference[name]), name
    keep = np.arange(N) % 3 != 1
    selected = tagger(zipped[keep])["Jet_tauGNN_tau"]
    assert ak.to_list(selected) == ak.to_list(reference["Jet_tauGNN_tau"][keep])
    mapping = {name: zipped[name] for name in zipped.fields}
    assert ak.to_list(tagger(mapping)["Jet_tauGNN_tau"]) == ak.to_list(reference["Jet_tauGNN_tau"])


def test_coffea_nanoevents(tagger, reference) -> None:
    """Events of coffea's NanoEventsFactory, NanoAODSchema (collections) or BaseSchema (branches), as a coffea
    processor holds them: the values e2e-run writes."""
    need_extra("coffea", "coffea")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from coffea.nanoevents import BaseSchema, NanoAODSchema, NanoEventsFactory

        for schema in (NanoAODSchema, BaseSchema):
            events = NanoEventsFactory.from_root(
                {str(SAMPLE): "Events"}, schemaclass=schema, mode="eager", entry_stop=N
            ).events()
            out = tagger(events)
            assert ak.to_list(out["Jet_tauGNN_tau"]) == ak.to_list(reference["Jet_tauGNN_tau"]), schema.__name__
            assert ak.to_list(out["Jet_tauShapes_tau"]) == ak.to_list(reference["Jet_tauShapes_tau"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: {k: e[k] for k in e.fields if k != "EcalHit_energy"}, "no branch 'EcalHit_energy'"),
        (lambda e: _zipped(e)[[f for f in _zipped(e).fields if f != "EcalHit"]], "no branch 'EcalHit_"),
        (
            lambda e: {**{k: e[k] for k in e.fields}, "Jet_pt": np.array([object()] * len(e), dtype=object)},
            "branch 'Jet_pt' (ndarray) is not numbers or lists of numbers",
        ),
        (lambda e: {**{k: e[k] for k in e.fields}, "Jet_pt": ak.flatten(e["Jet_pt"])[: len(e)]}, "'Jet_pt' is"),
        (lambda e: {**{k: e[k] for k in e.fields}, "event": e["event"][:-1]}, "has 29 events"),
        (lambda e: [1, 2, 3], "expected an awkward Array of records (or one Record), a mapping"),
        (
            lambda e: {**{k: e[k] for k in e.fields}, "Jet_pt": ak.Array([[1.0, "x"]] * len(e))},
            "branch 'Jet_pt' is 30 * var * union[float64, string], expected a list of numbers per event",
        ),
        (lambda e: [{"Jet_pt": [1.0]}, {"Jet_pt": object()}], "cannot read as records"),
        (lambda e: [e[0], {"run": 1}], "branch 'luminosityBlock' has missing values (None) in entry 1"),
        (lambda e: ak.Array([e[0], None]), "branch 'run' has missing values (None) in entry 1"),
        (
            lambda e: {**{k: e[k] for k in e.fields}, "Jet_pt": ak.pad_none(e["Jet_pt"], 6)},
            "branch 'Jet_pt' has missing values (None) in entry 0",
        ),
        (
            lambda e: ak.zip(
                {
                    **{k: e[k] for k in e.fields},
                    "EcalHit_energy": ak.mask(e["EcalHit_energy"], ak.local_index(e["EcalHit_energy"]) != 2),
                },
                depth_limit=1,
            ),
            "branch 'EcalHit_energy' has missing values (None) in entry 0",
        ),
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


# ------------------------------------------------------------------------------ the plain path of ArraySource


def _array_source(check_values: bool = True):
    from e2e.config import load_process

    block = {"type": "ArraySource", "check_values": check_values}
    source = load_process({"source": block, "modules": {}, "outputs": [{"file": "x.root"}]}).source
    source.set_plan(dict.fromkeys(("Jet", "EcalHit", "HcalHit", "Track", "TrackerHit")))  # every field, truth too
    source.begin()
    return source


def _read(source, events, plain: bool, monkeypatch):
    """(events loaded, the batch, whether the plain path made it) of ``events`` through the plain path, or the
    general one (plain path off)."""
    with monkeypatch.context() as m:
        if not plain:
            m.setattr(type(source), "_plain_batch", lambda self, arrays, truth: None)
        n = source.load(events)
        made = source._ready is not None
        batch = source.read(source.plan()[0]) if n else None
    return n, batch, made


def _same_batch(a, b) -> None:
    assert a.ids.keys() == b.ids.keys() and a.tags == b.tags
    for name in a.ids:
        assert a.ids[name].dtype == b.ids[name].dtype
        np.testing.assert_array_equal(a.ids[name], b.ids[name])
    for tag in a.tags:
        ca, cb = a.get(tag), b.get(tag)
        np.testing.assert_array_equal(ca.offsets, cb.offsets)
        assert ca.offsets.dtype == cb.offsets.dtype == np.int64 and ca.columns.keys() == cb.columns.keys()
        for f in ca.columns:
            assert ca[f].dtype == cb[f].dtype, f
            np.testing.assert_array_equal(ca[f], cb[f])


@pytest.mark.parametrize("check_values", [True, False])
def test_plain_path_makes_the_batch_of_the_general_path(events, monkeypatch, check_values) -> None:
    """Plain awkward events (a record array, one event or many, or a dict of arrays, with truth and counters) are
    read in one pass; the batch equals the general path's, array for array."""
    source = _array_source(check_values)
    mapping = {name: events[name] for name in events.fields}
    for given in [events, events[3:4], events[7:12], mapping, events[N - 1 :]]:
        n, plain, made = _read(source, given, True, monkeypatch)
        assert made and source.files[0].layout.counters == {"Jet", "EcalHit", "HcalHit", "Track", "TrackerHit"}
        _, general, _ = _read(source, given, False, monkeypatch)
        assert n == plain.n_events == len(given[next(iter(given))] if isinstance(given, dict) else given)
        assert {"label", "decay_mode"} <= set(plain.get("source:Jet").columns)
        _same_batch(plain, general)
    assert _read(source, events[:0], True, monkeypatch)[::2] == (0, False)  # no events: the general path


def test_plain_path_accepts_what_the_general_path_accepts_at_a_bound(events, monkeypatch) -> None:
    """A float32 value at a bound that only its rounding to float32 accepts (numpy compares float32 values with
    the bounds in float32) passes on the plain path too: the same batch, made by the plain path."""
    from dataformats.schema import field_of

    hi = field_of("Track_phi").bounds[1]
    edge = np.float32(hi)
    assert float(edge) > hi  # rounded up: accepted by numpy's comparison, not by a float64 one
    given = _damaged(events, "Track_phi", lambda v: np.where(np.arange(len(v)) == 3, edge, v))
    source = _array_source()
    _, plain, made = _read(source, given, True, monkeypatch)
    _, general, _ = _read(source, given, False, monkeypatch)
    assert made and plain.get("source:Track")["phi"][3] == edge
    _same_batch(plain, general)


def _damaged(events, branch: str, change):
    """A dict of the events' branches with the flat values of ``branch`` changed by ``change``."""
    out = {k: events[k] for k in events.fields}
    flat = ak.to_numpy(ak.flatten(out[branch])).copy()
    out[branch] = ak.unflatten(change(flat), ak.num(out[branch]))
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: _damaged(e, "EcalHit_energy", lambda v: np.where(np.arange(len(v)) == 40, np.nan, v)), "value nan"),
        (lambda e: _damaged(e, "Jet_decay_mode", lambda v: np.where(np.arange(len(v)) == 5, 3, v)), "decay_mode"),
        (lambda e: _damaged(e, "HcalHit_ieta", lambda v: np.where(np.arange(len(v)) == 9, 400, v)), "HcalHit_ieta"),
        (lambda e: {**{k: e[k] for k in e.fields}, "nJet": e["nJet"] + 1}, "nJet"),
        (lambda e: {**{k: e[k] for k in e.fields}, "Track_dz": e["Track_pt"][::-1]}, "Track_dz"),
    ],
)
def test_plain_path_leaves_bad_events_to_the_general_path(events, monkeypatch, change, message) -> None:
    """Events that fail a check raise the general path's one line, word for word."""
    source = _array_source()
    bad = change(events)
    with pytest.raises(SchemaError) as plain:
        _read(source, bad, True, monkeypatch)
    with pytest.raises(SchemaError) as general:
        _read(source, bad, False, monkeypatch)
    assert str(plain.value) == str(general.value) and message in str(plain.value)


def _int32_offsets(array: ak.Array) -> ak.Array:
    layout = array.layout
    return ak.Array(ak.contents.ListOffsetArray(ak.index.Index32(layout.offsets.data.astype(np.int32)), layout.content))


@pytest.mark.parametrize(
    "change",
    [
        {"EcalHit_energy": lambda a: ak.values_astype(a, np.float64)},  # another number type: cast
        {"Jet_pt": _int32_offsets},  # int32 offsets
        {"event": lambda a: ak.values_astype(a, np.int64)},
        {"Track_pt": lambda a: ak.Array(ak.contents.ListArray(a.layout.starts, a.layout.stops, a.layout.content))},
    ],
)
def test_plain_path_falls_back_for_other_forms(events, monkeypatch, change) -> None:
    """Branches of another number type (cast), int32 offsets, list arrays take the general path: the same batch,
    in the schema's types."""
    source = _array_source()
    given = {k: change[k](events[k]) if k in change else events[k] for k in events.fields}
    _, plain, made = _read(source, given, True, monkeypatch)
    _, general, _ = _read(source, given, False, monkeypatch)
    assert not made
    _same_batch(plain, general)
    assert plain.get("source:EcalHit")["energy"].dtype == np.float32 and plain.ids["event"].dtype == np.uint64


def _damage(events, rng):
    """The events as a dict of branches (or a record array of them) with one branch damaged at random: a NaN, inf or
    out-of-range value, another number type, lists moved between events, one event less, or the branch left out."""
    given = {k: events[k] for k in events.fields}
    name = events.fields[int(rng.integers(len(events.fields)))]
    arr, kind = given[name], int(rng.integers(0, 8))
    if arr.ndim == 2 and len(ak.flatten(arr)):
        flat, counts = ak.to_numpy(ak.flatten(arr)).copy(), ak.to_numpy(ak.num(arr)).copy()
        i = int(rng.integers(len(flat)))
        if kind in (0, 2) and flat.dtype.kind == "f":
            flat[i] = np.nan if kind == 0 else np.inf
        elif kind == 1:
            flat[i] = np.array(rng.choice([-1, 7, 300, 1e6, -1e6])).astype(flat.dtype)
        elif kind == 3:
            flat = flat.astype(rng.choice([np.float64, np.int64, np.int32, np.float32]))
        elif kind == 4 and len(counts) > 1 and counts.sum():
            j = int(np.argmax(counts > 0))
            counts[j], counts[-1] = counts[j] - 1, counts[-1] + 1
        given[name] = ak.unflatten(flat, counts)
    elif arr.ndim == 1:
        values = ak.to_numpy(arr).copy()
        if kind == 3:
            values = values.astype(np.int64) - (2**40 if rng.random() < 0.5 else 0)  # a cast; negative: it fails
        given[name] = ak.Array(values)
    if kind == 5:
        given[name] = given[name][:-1]
    if kind == 6:
        given.pop(name)
    if kind == 7 and len({len(v) for v in given.values()}) == 1:
        return ak.zip(given, depth_limit=1)
    return given


@pytest.mark.parametrize("seed", range(3))
def test_plain_and_general_paths_agree_on_damaged_events(events, monkeypatch, seed) -> None:
    """Randomly damaged events: the plain path gives the general path's batch, or its error word for word."""
    rng = np.random.default_rng(seed)
    made = failed = 0
    for _ in range(100):
        given = _damage(events[int(rng.integers(0, 10)) : int(rng.integers(10, N + 1))], rng)
        for check_values in (True, False):
            source = _array_source(check_values)
            outcomes = []
            for plain in (True, False):
                try:
                    outcomes.append(_read(source, given, plain, monkeypatch))
                except SchemaError as err:
                    outcomes.append(str(err))
            first, second = outcomes
            if isinstance(first, str) or isinstance(second, str):
                assert first == second
                failed += 1
            else:
                assert first[0] == second[0]
                if first[0]:
                    _same_batch(first[1], second[1])
                made += first[2]
    assert made > 50 and failed > 50  # both kinds of outcome were exercised


def test_a_closed_tagger_refuses_calls(events) -> None:
    tagger = EventTagger(CONFIG, ["modules.tauGNN.backend=onnxruntime"])
    assert len(tagger(events[:2])["Jet_tauGNN_tau"]) == 2
    tagger.close()
    tagger.close()  # a second close does nothing
    with pytest.raises(ValueError, match="EventTagger is closed"):
        tagger(events[:2])


def test_lazy_malformed_and_wrapping_inputs() -> None:
    """Virtual (lazy) awkward buffers, as coffea's virtual mode gives them, are read (were an AttributeError);
    hand-built layouts whose offsets decrease or run past their content, and a counter off by 2**32 (equal after an
    int32 cast), are one line each."""
    ev = uproot.open(REPO / "data" / "sample_tau_qcd.root")["Events"].arrays(entry_stop=3)
    tagger = EventTagger(str(REPO / "process_configs" / "tau_gnn_fast.yaml"))
    ref = tagger(ev)["Jet_tauGNN_tau"]
    form, length, buffers = ak.to_buffers(ev)
    lazy = ak.from_buffers(form, length, {k: (lambda b=b: b) for k, b in buffers.items()})
    assert ak.all(tagger(lazy)["Jet_tauGNN_tau"] == ref) and ak.all(tagger(lazy[1:2])["Jet_tauGNN_tau"] == ref[1:2])
    layout = ev["EcalHit_energy"].layout
    swapped = layout.offsets.data.copy()
    swapped[1], swapped[2] = swapped[2], swapped[1]
    beyond = layout.offsets.data.copy()
    beyond[-1] += 1000
    for offsets, why in ((swapped, "start[i] > stop[i] at i=1"), (beyond, "stop[i] > len(content) at i=2")):
        bad = {k: ev[k] for k in ev.fields}
        bad["EcalHit_energy"] = ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), layout.content))
        with pytest.raises(
            SchemaError, match=re.escape(f"branch 'EcalHit_energy' is not a valid awkward array ({why})")
        ):
            tagger(bad)
    wrapped = {k: ev[k] for k in ev.fields}
    wrapped["nJet"] = ak.num(ev.Jet_pt).to_numpy().astype(np.int64) + 2**32
    with pytest.raises(SchemaError, match="has 4 values in entry 0 but nJet = 4294967300"):
        tagger(wrapped)


def test_the_configuration_is_checked_as_e2e_run_checks_it_and_never_changed(events) -> None:
    """The source block is validated before it is replaced by the in-memory source; settings of what is read from
    files and options of file runs are refused, not silently dropped; a mapping given is not modified."""
    import copy

    import yaml

    from e2e.errors import ConfigError

    fast = REPO / "process_configs" / "tau_gnn_fast.yaml"
    data = yaml.safe_load(fast.read_text())
    before = copy.deepcopy(data)
    EventTagger(data, ["modules.tauGNN.backend=onnxruntime", "modules.tauGNN.micro_batch=7"]).close()
    assert data == before
    for override, message in [
        ("source.bogus=1", "source: unknown key 'bogus'"),
        ("source.step_size=-5", "source.step_size: got -5, expected a value >= 1"),
        ("source.max_events=2", "source.max_events = 2: a setting of what is read from files"),
        ("source.units={Jet_pt: 0.001}", "source.units = {'Jet_pt': 0.001}: a setting of what is read from files"),
        ("options.executor=dask", "options.executor = 'dask': a setting of runs over files"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            EventTagger(fast, [override])
    with pytest.raises(ConfigError, match="'RHTreeSource' reads its own files"):
        EventTagger(REPO / "process_configs" / "tau_cnn_rhtree.yaml")
    # the settings of files and batches do not apply to events given in memory; check_values carries over
    with EventTagger(fast, ["source.files=[/nowhere.root]", "source.step_size=7", "source.check_values=false"]) as t:
        assert t.source.params.check_values is False
        assert len(t(events[:3])["Jet_tauGNN_tau"]) == 3


def test_duplicate_ids_error_checks_each_call(events) -> None:
    with EventTagger(REPO / "process_configs" / "hit_graphs.yaml", ["options.duplicate_ids=error"]) as t:
        with pytest.raises(SchemaError, match=r"duplicate event ids: .* <memory>:Events entry 0 and .* entry 3"):
            t(ak.concatenate([events[:3], events[:3]]))
        t(events[:3])
        t(events[:3])  # calls are independent: the same events again are not a repeat


def _scores_in_a_new_process(payload: bytes) -> list:
    import pickle

    tagger, events = pickle.loads(payload)
    again = pickle.loads(pickle.dumps(tagger))
    assert again is tagger  # built once per process
    return ak.to_list(tagger(events)["Jet_tauGNN_tau"])


def test_a_tagger_is_pickled_as_its_configuration(events) -> None:
    """coffea's executors pickle the processor, and a tagger in it: it travels as its configuration and is built
    once in the process that unpickles it (never its sessions); in the same process the copy is the tagger."""
    import multiprocessing
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    fast = REPO / "process_configs" / "tau_gnn_fast.yaml"
    with EventTagger(fast, ["modules.tauGNN.backend=onnxruntime"]) as tagger:
        assert len(pickle.dumps(tagger)) < 20_000 and pickle.loads(pickle.dumps(tagger)) is tagger
        payload = pickle.dumps((tagger, events[:5]))
        expected = ak.to_list(tagger(events[:5])["Jet_tauGNN_tau"])
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            assert pool.submit(_scores_in_a_new_process, payload).result(timeout=300) == expected


def test_a_pickled_tagger_finds_its_model_from_another_directory(events, tmp_path, monkeypatch) -> None:
    """A model given by a relative path travels as the directory it named where the tagger was built: a process that
    runs elsewhere (a dask worker) found none, or another of that name."""
    import multiprocessing
    import pickle
    import shutil
    from concurrent.futures import ProcessPoolExecutor

    (tmp_path / "here").mkdir()
    (tmp_path / "elsewhere").mkdir()
    shutil.copytree(REPO / "taggers" / "zoo" / "tau_gnn_fast", tmp_path / "here" / "mymodel")
    monkeypatch.chdir(tmp_path / "here")
    fast = REPO / "process_configs" / "tau_gnn_fast.yaml"
    with EventTagger(fast, ["modules.tauGNN.model=mymodel", "modules.tauGNN.backend=onnxruntime"]) as tagger:
        payload = pickle.dumps((tagger, events[:5]))
        expected = ak.to_list(tagger(events[:5])["Jet_tauGNN_tau"])
        monkeypatch.chdir(tmp_path / "elsewhere")
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            assert pool.submit(_scores_in_a_new_process, payload).result(timeout=300) == expected


def test_a_row_of_numpy_arrays_and_a_counter_of_the_wrong_form(tagger, events) -> None:
    """One event as uproot's library="np" gives it (numpy numbers and arrays) is one event; a counter given as a list
    per event, or with a None, is one line (an awkward error, and a count hidden under the None, before)."""
    with uproot.open(SAMPLE) as f:
        rows = f["Events"].arrays(entry_stop=3, library="np")
    row = {k: v[2] for k, v in rows.items()}
    assert ak.to_list(tagger(row)) == ak.to_list(tagger(events[2:3]))
    flat = {k: events[:4][k] for k in events.fields}
    with pytest.raises(SchemaError, match=r"counter 'nJet' is 4 \* var \* float32, expected one integer per event"):
        tagger({**flat, "nJet": events[:4].Jet_pt})
    masked = ak.mask(events[:4].nJet + 100, np.array([True, False, True, True]))
    with_none = ak.where(np.array([False, True, False, False]), masked, events[:4].nJet)
    with pytest.raises(SchemaError, match=r"branch 'nJet' has missing values \(None\) in entry 1"):
        tagger({**flat, "nJet": with_none})
