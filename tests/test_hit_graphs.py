"""HitGraphProducer: hit-level jet graphs (frameproducers.kernels.hitnodes) against the slow numpy reference of
tests/hit_graph_references.py, kNN in (delta_eta, delta_phi), training = inference edges, ROOT output, bad
parameters and the GNNTagger's refusal of models trained on the other kind of graph.

Synthetic events in the on-disk dtypes: jets at the phi seam and the eta edges, an event without hits, a jet whose
window holds none, a jet with pT 0, overlapping jets, more hits than the caps, and exact ties in pT, energy and
distance.
"""

from __future__ import annotations

import math

import awkward as ak
import hit_graph_references as ref
import numpy as np
import pytest
import uproot
import yaml
from conftest import REPO, SAMPLE, run_cli

from dataformats import geometry as geo
from e2e.config import load_process
from e2e.errors import ConfigError
from e2e.process import Process
from frameproducers import kernels as K
from frameproducers.graphs import ECAL_ETA_CENTRES, graph_edges
from taggers.inputs import GraphInput

HIT_GRAPHS = REPO / "process_configs" / "hit_graphs.yaml"
# jets: (event, seed_ieta, seed_iphi, pt); event 3 has no hits, event 4 hits only far from its jet
JETS = [(0, 140, 0, 50.0), (0, 140, 359, 30.0), (0, 2, 180, 40.0), (0, 277, 3, 25.0), (1, 100, 100, 60.0),
        (2, 150, 90, 0.0), (3, 100, 100, 20.0), (4, 140, 180, 20.0), (5, 30, 300, 35.0),
        (5, 31, 301, 35.0)]  # fmt: skip
DEFAULTS = {
    "window": 63,
    "track_pt_min": 0.5,
    "dz_max": 0.2,
    "ecal_threshold": 0.2,
    "hcal_threshold": 0.0,
    "max_tracks": 32,
    "max_ecal": 64,
    "max_hcal": 16,
    "max_tracker_hits": 32,
    "layers": (0, 1, 2, 3),
    "ipsig_clip": 50.0,
}
SETTINGS = [  # defaults; small caps (ties at the cut) on a large window; an even window without tracks or tracker
    # hits and no dz cut (RHTree track sums); a one-crystal window
    DEFAULTS,
    {**DEFAULTS, "window": 125, "max_tracks": 3, "max_ecal": 5, "max_hcal": 2, "max_tracker_hits": 4,
     "layers": (0, 5, 7), "ecal_threshold": 0.5, "hcal_threshold": 1.0, "ipsig_clip": 5.0},
    {**DEFAULTS, "window": 32, "max_tracks": 0, "layers": (), "dz_max": math.inf},
    {**DEFAULTS, "window": 1, "track_pt_min": 0.0, "ecal_threshold": 0.0},
]  # fmt: skip


def _offsets(counts):
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _wrap_phi(phi):
    return (phi + np.pi) % (2 * np.pi) - np.pi


def make_events(seed: int = 0):
    """Random events around the jet seeds (on-disk dtypes) with planted ties; returns (jets, ecal, hcal, tracks,
    tracker) as dicts of flat arrays + ``offsets``."""
    rng = np.random.default_rng(seed)
    ecal_e, hcal_e, trk_e, th_e = [], [], [], []
    for e in range(6):
        seeds = [(i, p) for ev, i, p, _ in JETS if ev == e]
        if e == 3:
            ecal_e.append(np.zeros((0, 3)))
            hcal_e.append(np.zeros((0, 3)))
            trk_e.append(np.zeros((0, 10)))
            th_e.append(np.zeros((0, 3)))
            continue
        n = 600 if e == 1 else 150  # event 1: far more hits than the caps
        if e == 4:
            rows, cols = rng.integers(0, 20, 40), rng.integers(0, 40, 40)
        else:
            rows = np.concatenate([np.clip(np.round(rng.normal(i, 10, n)), 0, 279) for i, _ in seeds])
            cols = np.concatenate([np.round(rng.normal(p, 10, n)) % 360 for _, p in seeds])
            rows = np.concatenate([rows, rng.integers(0, 280, 100)]).astype(np.int64)
            cols = np.concatenate([cols, rng.integers(0, 360, 100)]).astype(np.int64)
        energy = rng.exponential(1.0, len(rows))
        if e == 1:  # equal energies around the cap
            energy[:20] = 3.25
        ecal_e.append(np.stack([rows, cols, energy], 1))
        towers = np.unique(np.stack([rows // 5, cols // 5], 1), axis=0)
        t_energy = rng.exponential(2.0, len(towers))
        t_energy[: len(towers) // 10] = 0.0  # empty towers: not nodes (E > 0)
        if e == 1:
            t_energy[-8:] = 4.5
        hcal_e.append(np.concatenate([rng.permutation(towers), t_energy[:, None]], 1))
        m = len(rows) // 2
        reach = rng.random(m) < 0.85
        ti, tp = np.where(reach, rows[:m], -1), np.where(reach, cols[:m], -1)
        pt = rng.exponential(2.0, m)
        if e == 1:
            pt[:10] = 7.5  # equal pT around the cap
        eta = geo.ecal_eta(np.clip(rows[:m], 0, 279)) + rng.normal(0, 0.02, m)
        phi = _wrap_phi(geo.ecal_phi(cols[:m]) + rng.normal(0, 0.05, m))
        if e == 0:
            phi[:4] = [np.pi, -np.pi, 3.14159274, -3.1415]  # at the seam, float32(pi) > pi included
        trk_e.append(
            np.stack(
                [
                    ti,
                    tp,
                    pt,
                    np.clip(eta, -3, 3),
                    phi,
                    rng.choice([-1, 1], m),
                    rng.normal(0, 0.05, m),
                    rng.normal(0, 0.15, m),  # dz: some beyond 0.2 cm
                    rng.normal(0, 40, m),  # d0sig: some beyond the clip
                    rng.normal(0, 40, m),
                ],
                1,
            )
        )
        k = len(rows)
        pick = rng.integers(0, len(rows), k)
        th = np.stack([rng.integers(0, 8, k), rows[pick], cols[pick]], 1)
        if e == 1:  # hits at equal distances from the seed (100, 100)
            ring = [(0, 100, 103), (1, 103, 100), (2, 97, 100), (3, 100, 97), (0, 102, 102), (1, 98, 98)]
            th = np.concatenate([th, np.array(ring)])
        th_e.append(th)

    def flat(parts, names_dtypes):
        arr = np.concatenate(parts)
        out = {"offsets": _offsets([len(p) for p in parts])}
        for j, (name, dt) in enumerate(names_dtypes):
            out[name] = np.ascontiguousarray(arr[:, j].astype(dt))
        return out

    calo = [("ieta", np.int16), ("iphi", np.int16), ("energy", np.float32)]
    f32 = np.float32
    tracks = flat(trk_e, [("ieta", np.int16), ("iphi", np.int16), ("pt", f32), ("eta", f32), ("phi", f32),
                          ("charge", np.int16), ("d0", f32), ("dz", f32), ("d0sig", f32), ("dzsig", f32)])  # fmt: skip
    jets = {
        "event": np.array([j[0] for j in JETS], np.int64),
        "ieta": np.array([j[1] for j in JETS], np.int16),
        "iphi": np.array([j[2] for j in JETS], np.int16),
        "pt": np.array([j[3] for j in JETS], np.float32),
    }
    tracker = flat(th_e, [("layer", np.int16), ("ieta", np.int16), ("iphi", np.int16)])
    return jets, flat(ecal_e, calo), flat(hcal_e, calo), tracks, tracker


EVENTS = make_events()
TRACK_FIELDS = ("ieta", "iphi", "pt", "eta", "phi", "charge", "d0", "dz", "d0sig", "dzsig")


def kernel_nodes(jets, ecal, hcal, tracks, tracker, s):
    par = K.hit_node_params(
        **{k: v for k, v in s.items() if k != "layers"}, layer_mask=sum(1 << L for L in s["layers"])
    )
    return K.build_hit_nodes(
        K.HitJets(jets["event"], jets["ieta"], jets["iphi"], jets["pt"]),
        *(K.CaloHits(c["offsets"], c["ieta"], c["iphi"], c["energy"]) for c in (ecal, hcal)),
        K.NodeTracks(tracks["offsets"], *(tracks[f] for f in TRACK_FIELDS)),
        K.TrackerHits(tracker["offsets"], tracker["layer"], tracker["ieta"], tracker["iphi"]),
        par,
        ECAL_ETA_CENTRES,
    )


def assert_same_nodes(got, expected) -> None:
    for a, b, name in zip(got, expected, ("node_offsets", "x", "pos", "pixel"), strict=True):
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)


def _by_ieta(c: dict) -> dict:
    """The hits of every event sorted by ieta (stable), as e2e's generator writes them."""
    event = np.repeat(np.arange(len(c["offsets"]) - 1), np.diff(c["offsets"]))
    order = np.lexsort((np.arange(len(event)), c["ieta"], event))
    return {k: (v if k == "offsets" else v[order]) for k, v in c.items()}


@pytest.mark.parametrize("s", SETTINGS, ids=["defaults", "caps", "no_tracks", "window1"])
def test_kernel_bisects_the_window_rows_of_hits_in_ieta_order(monkeypatch, s) -> None:
    """ECAL and HCAL hits in ieta order within each event: each jet visits only its window's rows (bisection),
    with the reference's nodes, the same as a full scan's bit for bit."""
    from frameproducers.kernels import hitnodes

    jets, ecal, hcal, tracks, tracker = EVENTS
    ecal, hcal = _by_ieta(ecal), _by_ieta(hcal)
    assert all(K.in_ieta_order(K.CaloHits(c["offsets"], c["ieta"], c["iphi"], c["energy"])) for c in (ecal, hcal))
    assert not K.in_ieta_order(
        K.CaloHits(EVENTS[1]["offsets"], EVENTS[1]["ieta"], EVENTS[1]["iphi"], EVENTS[1]["energy"])
    )
    got = kernel_nodes(jets, ecal, hcal, tracks, tracker, s)
    assert_same_nodes(got, ref.hit_nodes(jets, ecal, hcal, tracks, tracker, s))
    monkeypatch.setattr(hitnodes, "in_ieta_order", lambda hits: False)
    assert_same_nodes(got, kernel_nodes(jets, ecal, hcal, tracks, tracker, s))


def _by_layer_ieta(th: dict) -> dict:
    """The tracker hits of every event sorted by (layer, ieta) (stable), as e2e's generator writes them."""
    event = np.repeat(np.arange(len(th["offsets"]) - 1), np.diff(th["offsets"]))
    order = np.lexsort((np.arange(len(event)), th["ieta"], th["layer"], event))
    return {k: (v if k == "offsets" else v[order]) for k, v in th.items()}


@pytest.mark.parametrize("s", SETTINGS, ids=["defaults", "caps", "no_tracks", "window1"])
def test_kernel_bisects_the_window_rows_of_tracker_hits_in_layer_order(s) -> None:
    """Tracker hits in (layer, ieta) order within each event: each jet visits only its window's rows of the chosen
    layers (bisection; checked per event in the kernel), with the reference's nodes; one event out of order is
    scanned (its nodes the reference's too), and the others are still bisected."""
    from frameproducers.kernels.hitnodes import _in_layer_order

    jets, ecal, hcal, tracks, tracker = EVENTS
    ordered = _by_layer_ieta(tracker)
    hits = K.TrackerHits(ordered["offsets"], ordered["layer"], ordered["ieta"], ordered["iphi"])
    assert all(_in_layer_order(hits, e) for e in range(len(ordered["offsets"]) - 1))
    assert_same_nodes(
        kernel_nodes(jets, ecal, hcal, tracks, ordered, s), ref.hit_nodes(jets, ecal, hcal, tracks, ordered, s)
    )
    mixed = {k: v.copy() for k, v in ordered.items()}  # event 1 (the one over every cap) back in its own order
    a, b = tracker["offsets"][1], tracker["offsets"][2]
    for name in ("layer", "ieta", "iphi"):
        mixed[name][a:b] = tracker[name][a:b]
    hits = K.TrackerHits(mixed["offsets"], mixed["layer"], mixed["ieta"], mixed["iphi"])
    assert [_in_layer_order(hits, e) for e in range(6)] == [True, False, True, True, True, True]
    assert_same_nodes(
        kernel_nodes(jets, ecal, hcal, tracks, mixed, s), ref.hit_nodes(jets, ecal, hcal, tracks, mixed, s)
    )


def test_kernel_keeps_hits_of_layers_beyond_the_mask_out() -> None:
    """Layer numbers outside 0..63 (never on disk: the schema allows 0..7) select no node, in either path."""
    jets, ecal, hcal, tracks, tracker = EVENTS
    odd = {k: v.copy() for k, v in tracker.items()}
    odd["layer"] = odd["layer"].astype(np.int64)
    odd["layer"][::3] = 64
    odd["layer"][1::7] = -1
    s = {**DEFAULTS, "max_tracks": 0, "max_ecal": 0, "max_hcal": 0}
    for hits in (odd, _by_layer_ieta(odd)):
        got = kernel_nodes(jets, ecal, hcal, tracks, hits, s)
        good = (hits["layer"] >= 0) & (hits["layer"] < 8)
        event = np.repeat(np.arange(len(hits["offsets"]) - 1), np.diff(hits["offsets"]))
        kept = {k: v[good] for k, v in hits.items() if k != "offsets"}
        kept["offsets"] = _offsets(np.bincount(event[good], minlength=6))
        assert_same_nodes(got, kernel_nodes(jets, ecal, hcal, tracks, kept, s))
        assert np.all(got[1][:, 3] == 1) and len(got[1]) > 0


@pytest.mark.parametrize("s", SETTINGS, ids=["defaults", "caps", "no_tracks", "window1"])
def test_kernel_equals_reference_on_synthetic_events(s) -> None:
    got = kernel_nodes(*EVENTS, s)
    assert_same_nodes(got, ref.hit_nodes(*EVENTS, s))
    node_offsets, x, pos, pixel = got
    counts = np.diff(node_offsets)
    assert counts[6] == 0 and counts[7] == 0  # no hits; hits, but none in the window
    assert x.shape == (node_offsets[-1], len(K.HIT_FEATURES)) and np.all(x[:, :4].sum(1) == 1)
    if s["window"] == 1:
        return
    kinds = [np.argmax(x[node_offsets[j] : node_offsets[j + 1], :4], 1) for j in range(len(counts))]
    assert all(np.all(np.diff(k) >= 0) for k in kinds)  # tracks, ECAL, HCAL, tracker hits
    heavy = np.bincount(kinds[4], minlength=4)  # event 1: every cap reached
    caps = (s["max_tracks"], s["max_ecal"], s["max_hcal"], s["max_tracker_hits"] if s["layers"] else 0)
    assert heavy.tolist() == list(caps)
    assert np.all(np.abs(x[:, 7]) <= s["ipsig_clip"]) and np.all(np.abs(x[:, 9]) <= s["ipsig_clip"])
    assert np.all((x[:, 13] >= -np.pi) & (x[:, 13] < np.pi))
    assert np.all(x[node_offsets[5] : node_offsets[6], 5] == 0)  # jet pT 0: e_frac 0
    assert np.all(np.abs(pos) <= s["window"] // 2) and np.all(pixel >= 0) and np.all(pixel < s["window"] ** 2)
    if s["max_tracks"]:  # jets at the phi seam see tracks on both sides of it
        for j in (0, 1):
            sl = slice(node_offsets[j], node_offsets[j + 1])
            trk = x[sl][x[sl, 0] == 1]
            assert np.any(trk[:, 13] > 0) and np.any(trk[:, 13] < 0)


def _event(rows, dtypes):
    arr = np.array(rows, np.float64).reshape(len(rows), len(dtypes))
    return {"offsets": np.array([0, len(rows)], np.int64),
            **{n: arr[:, i].astype(dt) for i, (n, dt) in enumerate(dtypes)}}  # fmt: skip


def test_ranking_ties_and_caps_on_a_handmade_event() -> None:
    """Equal pT / energy / distance at a cap: the earlier hit wins; each type ranked, types in order."""
    f32, i16 = np.float32, np.int16
    jets = {"event": np.zeros(1, np.int64), "ieta": np.array([100], i16), "iphi": np.array([100], i16),
            "pt": np.array([40.0], f32)}  # fmt: skip
    track_dtypes = [("ieta", i16), ("iphi", i16), ("pt", f32), ("eta", f32), ("phi", f32), ("charge", i16),
                    ("d0", f32), ("dz", f32), ("d0sig", f32), ("dzsig", f32)]  # fmt: skip
    rows = [(100, 100, 5.0, 0.0), (101, 100, 7.0, 0.0), (102, 100, 5.0, 0.0), (103, 100, 5.0, 0.0),
            (-1, -1, 9.0, 0.0), (100, 101, 8.0, 0.5), (100, 102, 0.4, 0.0), (100, 140, 6.0, 0.0)]  # fmt: skip
    # (ieta, iphi, pt, eta, phi, charge, d0, dz, d0sig, dzsig): track 1 negative, the others positive
    tracks = _event([(i, p, pt, 0, 0, 1 - 2 * (q == 1), 0, dz, 0, 0) for q, (i, p, pt, dz) in enumerate(rows)],
                    track_dtypes)  # fmt: skip
    calo = [("ieta", i16), ("iphi", i16), ("energy", f32)]
    ecal = _event([(100, 100, 1.0), (100, 101, 2.0), (100, 102, 1.0), (100, 103, 0.1), (100, 104, 2.0)], calo)
    hcal = _event([(20, 20, 3.0), (20, 21, 3.0), (20, 19, 0.0), (25, 20, 5.0), (27, 20, 5.0)], calo)
    tracker = _event([(0, 100, 103), (1, 103, 100), (4, 100, 100), (2, 100, 101), (3, 98, 98)],
                     [("layer", i16), ("ieta", i16), ("iphi", i16)])  # fmt: skip
    s = {**DEFAULTS, "max_tracks": 3, "max_ecal": 3, "max_hcal": 2, "max_tracker_hits": 3}
    got = kernel_nodes(jets, ecal, hcal, tracks, tracker, s)
    assert_same_nodes(got, ref.hit_nodes(jets, ecal, hcal, tracks, tracker, s))
    node_offsets, x, pos, pixel = got
    cells = [
        (32, 31),
        (31, 31),
        (33, 31),
        (31, 32),
        (31, 35),
        (31, 31),
        (58, 33),
        (33, 33),
        (31, 32),
        (29, 29),
        (31, 34),
    ]
    assert pixel.tolist() == [r * 63 + c for r, c in cells]  # tracks 1 0 2, ECAL 1 4 0, HCAL 3 0, tracker 3 4 0
    assert np.argmax(x[:, :4], 1).tolist() == [0] * 3 + [1] * 3 + [2] * 2 + [3] * 3
    np.testing.assert_array_equal(x[:3, 4], np.log([7.0, 5.0, 5.0]).astype(f32))
    np.testing.assert_array_equal(x[:3, 10], [-1, 1, 1])
    np.testing.assert_array_equal(x[8:, 11], [3 / 8, 4 / 8, 1 / 8])
    np.testing.assert_array_equal(x[3:8, 5], (np.array([2, 2, 1, 5, 3]) / 40).astype(f32))
    np.testing.assert_array_equal(pos[0], [1, 0])


@pytest.mark.parametrize("cap", [1, 2, 5])
def test_many_equal_candidates_beyond_the_cap_keep_the_earliest(cap) -> None:
    """More than twice the cap of hits with one equal pT, energy or distance (the ranking's value range is 0): the
    first ``cap`` hits in index order, in that order, as the reference and a full scan choose them."""
    f32, i16 = np.float32, np.int16
    jets = {"event": np.zeros(1, np.int64), "ieta": np.array([100], i16), "iphi": np.array([100], i16),
            "pt": np.array([40.0], f32)}  # fmt: skip
    track_dtypes = [("ieta", i16), ("iphi", i16), ("pt", f32), ("eta", f32), ("phi", f32), ("charge", i16),
                    ("d0", f32), ("dz", f32), ("d0sig", f32), ("dzsig", f32)]  # fmt: skip
    ring = [(100 + dr, 100 + dc) for dr, dc in ((0, 3), (3, 0), (0, -3), (-3, 0))]  # equal distances (9 crystals²)
    cells = [(100 + r, 90 + c) for r in range(4) for c in range(4)]
    tracks = _event([(i, p, 5.0, 0, 0, 1, 0, 0, 0, 0) for i, p in cells], track_dtypes)
    calo = [("ieta", i16), ("iphi", i16), ("energy", f32)]
    ecal = _event([(i, p, 2.0) for i, p in cells], calo)
    hcal = _event([(20, 18 + t, 3.0) for t in range(5)], calo)
    tracker = _event([(0, i, p) for i, p in ring] + [(1, i, p) for i, p in ring],
                     [("layer", i16), ("ieta", i16), ("iphi", i16)])  # fmt: skip
    s = {**DEFAULTS, "max_tracks": cap, "max_ecal": cap, "max_hcal": cap, "max_tracker_hits": cap}
    got = kernel_nodes(jets, ecal, hcal, tracks, tracker, s)
    assert_same_nodes(got, ref.hit_nodes(jets, ecal, hcal, tracks, tracker, s))
    node_offsets, x, pos, pixel = got
    assert node_offsets.tolist() == [0, 4 * cap]
    first = [(r - 100 + 31) * 63 + (c - 100 + 31) for r, c in cells[:cap]]
    assert pixel[:cap].tolist() == first and pixel[cap : 2 * cap].tolist() == first  # tracks, then ECAL


@pytest.mark.parametrize("self_loops", [False, True])
def test_knn_in_delta_space_equals_brute_force(self_loops) -> None:
    node_offsets, x, pos, pixel = kernel_nodes(*EVENTS, DEFAULTS)
    x = x.copy()
    x[node_offsets[0] + 1, -2:] = x[node_offsets[0] + 2, -2:]  # an exact tie
    record = {"edges": "knn", "space": "delta", "k": 5, "self_loops": self_loops, "window": 63,
              "features": list(K.HIT_FEATURES)}  # fmt: skip
    for k in (5, 16, 200):  # 200 > nodes of most jets: cyclic padding
        neighbors, num = graph_edges(pixel, x, node_offsets, {**record, "k": k})
        assert num is None and neighbors.shape == (len(x), k)
        np.testing.assert_array_equal(neighbors, ref.knn_delta(x, node_offsets, k, self_loops))
    with pytest.raises(ValueError, match="delta_eta and delta_phi"):
        graph_edges(pixel, x, node_offsets, {**record, "features": ["a", "b"]})


def _sample_batches(n_events: int, **params):
    data = yaml.safe_load(HIT_GRAPHS.read_text())
    data["source"].update(files=[str(SAMPLE)], max_events=n_events, step_size=25)
    data["modules"]["hitGraphs"].update(params)
    return list(Process(load_process(data)).iter_batches())


def _collections(batch):
    def coll(tag, fields, rename=None):
        c = batch.get(tag)
        out = {(rename or {}).get(f, f): c[f] for f in fields}
        out["offsets"] = c.offsets
        return out

    jets = batch.get("source:Jet")
    js = {"event": jets.event_index(), "ieta": jets["seed_ieta"], "iphi": jets["seed_iphi"], "pt": jets["pt"]}
    calo = ("ieta", "iphi", "energy")
    fields = ("ecal_ieta", "ecal_iphi", "pt", "eta", "phi", "charge", "d0", "dz", "d0sig", "dzsig")
    tracks = coll("source:Track", fields, {"ecal_ieta": "ieta", "ecal_iphi": "iphi"})
    return js, coll("source:EcalHit", calo), coll("source:HcalHit", calo), tracks, batch


@pytest.mark.parametrize(
    ("params", "settings"),
    [({}, DEFAULTS), ({"window": 125, "max_ecal": 8, "tracker_layers": ["TIB1", "BPIX2"]},
                      {**DEFAULTS, "window": 125, "max_ecal": 8, "layers": (1, 4)})],
)  # fmt: skip
def test_producer_equals_reference_on_the_sample(params, settings) -> None:
    batches = _sample_batches(50, **params)
    assert len(batches) == 2
    for batch in batches:
        jets, ecal, hcal, tracks, _ = _collections(batch)
        th = batch.get("source:TrackerHit")
        tracker = {"offsets": th.offsets, "layer": th["layer"], "ieta": th["ieta"], "iphi": th["iphi"]}
        g = batch.get("hitGraphs")
        assert_same_nodes(
            (g.node_offsets, g.x, g.pos, g.pixel), ref.hit_nodes(jets, ecal, hcal, tracks, tracker, settings)
        )
        assert g.feature_names == K.HIT_FEATURES and g.n_jets == len(jets["event"]) and g.x.shape[0] > 0
        assert g.params["nodes"] == "hits" and g.params["space"] == "delta"
        np.testing.assert_array_equal(g.neighbors, ref.knn_delta(g.x, g.node_offsets, 16, False))


def test_training_rebuilds_the_producers_edges() -> None:
    """GraphInput (training datasets) stores x and pixel and rebuilds edges from the record: the same graph."""
    g = _sample_batches(25, k=8)[0].get("hitGraphs")
    kind = GraphInput()
    arrays = kind.finish(kind.store(g, np.arange(g.n_jets)))
    params = kind.record(g)
    jets = np.arange(3, g.n_jets, 2)
    inputs = kind.inputs(arrays, params, jets)
    for i, j in enumerate(jets):
        a, b = g.node_offsets[j], g.node_offsets[j + 1]
        p = inputs["ptr"][i]
        np.testing.assert_array_equal(inputs["x"][p : p + b - a], g.x[a:b])
        np.testing.assert_array_equal(inputs["neighbors"][p : p + b - a] - p, g.neighbors[a:b] - a)
    spec = {k: params[k] for k in kind.spec_keys if k in params}  # what e2e-train records
    assert spec["nodes"] == "hits" and spec["max_ecal"] == 64 and spec["tracker_layers"][0] == "BPIX1"


def test_hit_graphs_config_writes_the_graphs(tmp_path, capsys) -> None:
    out = tmp_path / "hits.root"
    rc, stdout, err = run_cli([str(HIT_GRAPHS), "-n", "30", "-o", str(out), "--no-progress"], capsys)
    assert rc == 0, err
    assert "nodes: tracks" in stdout and "nodes: tracker hits" in stdout
    g = _sample_batches(30)
    n_nodes = np.concatenate([b.get("hitGraphs").n_nodes for b in g])
    with uproot.open(out) as f:
        t = f["Events"].arrays(library="np")
    np.testing.assert_array_equal(np.concatenate(t["Jet_hitGraphs_nNodes"]), n_nodes)
    for name in K.HIT_FEATURES:
        assert f"hitGraphsNode_{name}" in t
    x = np.concatenate([b.get("hitGraphs").x for b in g])
    np.testing.assert_array_equal(np.concatenate(t["hitGraphsNode_log_e"]), x[:, 4])
    assert sum(len(e) for e in t["hitGraphsEdge_src"]) == 16 * len(x)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"tracker_layers": ["bpix1"]}, "unknown layer 'bpix1' (did you mean 'BPIX1'?)"),
        ({"tracker_layers": ["TOB1", "TOB1"]}, "a layer is listed twice"),
        ({"max_ecal": -1}, "max_ecal: got -1, expected a value >= 0"),
        ({"window": 281}, "window: got 281, expected a value <= 280"),
        ({"kk": 8}, "unknown key 'kk' (did you mean 'k'?)"),
        ({"dz_max": "small"}, "dz_max: got 'small', expected a number"),
    ],
)
def test_bad_parameters_are_one_line(override, message) -> None:
    data = yaml.safe_load(HIT_GRAPHS.read_text())
    data["modules"]["hitGraphs"].update(override)
    with pytest.raises(ConfigError) as err:
        load_process(data)
    assert message in str(err.value) and "\n" not in str(err.value) and "modules.hitGraphs" in str(err.value)


def test_no_tracker_layers_reads_no_tracker_hits() -> None:
    data = yaml.safe_load(HIT_GRAPHS.read_text())
    data["modules"]["hitGraphs"]["tracker_layers"] = []
    module = load_process(data).modules["hitGraphs"]
    assert "source:TrackerHit" not in module.consumes() and "source:TrackerHit" not in module.fields_needed()
    assert module.fields_needed()["source:Jet"] == ("pt", "seed_ieta", "seed_iphi")


def _hit_model(tmp_path, record) -> str:
    """A GraphNet artefact (random weights, torch only) whose input spec is a hit-graph record."""
    import torch
    from safetensors.torch import save_file

    from taggers.models.networks import GraphNet

    torch.manual_seed(0)
    hyper = {"n_features": len(K.HIT_FEATURES), "n_classes": 2, "kind": "sage", "hidden": 8, "layers": 1}
    path = tmp_path / "hit_gnn"
    path.mkdir()
    save_file(GraphNet(**hyper).state_dict(), str(path / "weights.safetensors"))
    spec = {
        "name": "hit_gnn",
        "architecture": {"name": "GraphNet", "hyperparameters": hyper},
        "input": {"product": "graphs", **{k: record[k] for k in GraphInput.spec_keys if k in record}},
        "outputs": ["qcd", "tau"],
    }
    (path / "model.yaml").write_text(yaml.safe_dump(spec))
    return str(path)


def test_taggers_serve_hit_graphs_and_refuse_the_other_kind(tmp_path, capsys) -> None:
    record = _sample_batches(2)[0].get("hitGraphs").params
    model = _hit_model(tmp_path, record)
    data = yaml.safe_load(HIT_GRAPHS.read_text())
    data["source"]["files"] = [str(SAMPLE)]
    tagger = {"type": "GNNTagger", "graphs": "hitGraphs", "model": model, "backend": "torch", "device": "cpu"}
    data["modules"]["tag"] = tagger
    data["outputs"][0].update(file=str(tmp_path / "tag.root"), keep=["tag"])

    def run(name: str, config: dict) -> tuple[int, str]:
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump(config))
        rc, _, err = run_cli([str(cfg), "-n", "6", "--no-progress"], capsys)
        return rc, err

    rc, err = run("ok", data)
    assert rc == 0, err
    with uproot.open(tmp_path / "tag.root") as f:
        tau = np.concatenate(f["Events"]["Jet_tag_tau"].array(library="np"))
    assert len(tau) > 0 and np.all((tau >= 0) & (tau <= 1))

    other = {**data, "modules": {**data["modules"], "hitGraphs": {**data["modules"]["hitGraphs"], "max_ecal": 8}}}
    rc, err = run("mismatch", other)
    assert rc == 2 and err.count("\n") == 1 and "max_ecal: producer 8, model 64" in err

    pixels = {**data, "modules": {"jetGraphs": {"type": "JetGraphProducer", "window": 63},
                                  "tag": {**tagger, "graphs": "jetGraphs"}}}  # fmt: skip
    rc, err = run("pixels", pixels)
    assert (
        rc == 2 and err.count("\n") == 1 and "nodes are hits, the producer makes graphs whose nodes are pixels" in err
    )

    zoo = {**data, "modules": {**data["modules"], "tag": {**tagger, "model": "zoo:tau_gnn_fast"}}}
    rc, err = run("zoo", zoo)
    assert (
        rc == 2 and err.count("\n") == 1 and "nodes are pixels, the producer makes graphs whose nodes are hits" in err
    )


def test_rhtree_track_sums_are_not_cut_again(tmp_path) -> None:
    """Track nodes from RHTree maps (per-crystal PV-track sums) keep every crystal: dz_max is not applied again."""
    from e2e.io.rhtree_writer import write_rhtree

    path = tmp_path / "rh.root"
    write_rhtree([str(SAMPLE)], path, max_events=6, step_size=6)
    data = yaml.safe_load(HIT_GRAPHS.read_text())
    data["source"] = {"type": "RHTreeSource", "files": [str(path)]}
    data["modules"]["hitGraphs"]["dz_max"] = 0.1
    (batch,) = Process(load_process(data)).iter_batches()
    g = batch.get("hitGraphs")
    assert g.params["dz_max"] == 0.1
    jets, ecal, hcal, tracks, _ = _collections(batch)
    th = batch.get("source:TrackerHit")
    tracker = {"offsets": th.offsets, "layer": th["layer"], "ieta": th["ieta"], "iphi": th["iphi"]}
    expected = ref.hit_nodes(jets, ecal, hcal, tracks, tracker, {**DEFAULTS, "dz_max": math.inf})
    assert_same_nodes((g.node_offsets, g.x, g.pos, g.pixel), expected)
    assert np.count_nonzero(g.x[:, 0]) > 0


JET_FEATURES = ["log_pt", "eta", *K.SHAPE_NAMES]


def test_jet_features_are_the_jets_and_their_shapes() -> None:
    """jet_features: log(pT), eta of the Jet collection and JetShapeProducer's shapes at its default settings,
    per jet in the graphs' jet order; the training dataset stores them and feeds them as input ``jet``."""
    data = yaml.safe_load(HIT_GRAPHS.read_text())
    data["source"].update(files=[str(SAMPLE)], max_events=40, step_size=20)
    data["modules"]["hitGraphs"]["jet_features"] = JET_FEATURES
    data["modules"]["shapes"] = {"type": "JetShapeProducer"}
    data["outputs"][0]["keep"] = ["hitGraphs", "shapes"]  # a module nothing keeps is not run
    batches = list(Process(load_process(data)).iter_batches())
    assert len(batches) == 2
    for batch in batches:
        g, shapes, jets = batch.get("hitGraphs"), batch.get("shapes"), batch.get("source:Jet")
        assert g.jet_feature_names == tuple(JET_FEATURES) and g.params["jet_features"] == JET_FEATURES
        assert g.jet_features is not None and g.jet_features.shape == (g.n_jets, len(JET_FEATURES))
        np.testing.assert_allclose(g.jet_features[:, 0], np.log(jets["pt"]), rtol=1e-6)
        np.testing.assert_array_equal(g.jet_features[:, 1], jets["eta"].astype(np.float32))
        np.testing.assert_array_equal(g.jet_features[:, 2:], shapes.values)
    kind = GraphInput()
    arrays = kind.finish(kind.store(g, np.arange(g.n_jets)))
    assert kind.sizes(arrays, kind.record(g)) == {"n_features": len(K.HIT_FEATURES), "n_jet_features": 8}
    jets_ = np.array([4, 1, 7])
    np.testing.assert_array_equal(kind.inputs(arrays, kind.record(g), jets_)["jet"], g.jet_features[jets_])
    chunks = list(kind.micro_batches(g, 5))
    np.testing.assert_array_equal(np.concatenate([c["jet"] for c in chunks]), g.jet_features)
    # without jet features nothing is stored or fed, and architectures get no n_jet_features
    plain = _sample_batches(20)[0].get("hitGraphs")
    assert plain.jet_features is None and plain.params["jet_features"] == []
    arrays = kind.finish(kind.store(plain, np.arange(plain.n_jets)))
    assert "jet" not in kind.inputs(arrays, kind.record(plain), np.arange(3))
    assert "jet" not in next(kind.micro_batches(plain, 4)) and "n_jet_features" not in kind.sizes(arrays, {})


def test_jet_features_are_written_per_jet(tmp_path, capsys) -> None:
    cfg = yaml.safe_load(HIT_GRAPHS.read_text())
    cfg["modules"]["hitGraphs"]["jet_features"] = ["log_pt", "isolation"]
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out.root"
    rc, _, err = run_cli([str(path), "-n", "20", "-o", str(out), "--no-progress"], capsys)
    assert rc == 0, err
    with uproot.open(out) as f:
        events = f["Events"]
        log_pt = events["Jet_hitGraphs_log_pt"].array(library="np")
        iso = events["Jet_hitGraphs_isolation"].array(library="np")
        n_jet = events["nJet"].array(library="np")
    with uproot.open(SAMPLE) as f:
        pt = f["Events"]["Jet_pt"].array(entry_stop=20)
    assert len(log_pt) == len(iso) == 20 and [len(a) for a in log_pt] == list(n_jet)
    np.testing.assert_allclose(np.concatenate(log_pt), np.log(np.concatenate(list(pt))), rtol=1e-6)
    assert np.all(np.concatenate(iso) >= 0)


@pytest.mark.parametrize(
    ("value", "message"),
    [(["log_pt", "mass"], "unknown jet feature 'mass'"), (["eta", "eta"], "listed twice"),
     (["widht"], "did you mean 'width'")],
)  # fmt: skip
def test_bad_jet_features_are_one_line(value, message) -> None:
    data = yaml.safe_load(HIT_GRAPHS.read_text())
    data["source"]["files"] = [str(SAMPLE)]
    data["modules"]["hitGraphs"]["jet_features"] = value
    with pytest.raises(ConfigError, match=message) as err:
        load_process(data)
    assert "\n" not in str(err.value) and "modules.hitGraphs.jet_features" in str(err.value)


def test_jet_shapes_read_from_a_shape_producer_equal_their_own() -> None:
    """``shapes: <JetShapeProducer label>`` reads the shape inputs instead of computing them twice: the same
    values bit for bit; a shape producer at other settings, or run on other jets, is refused in one line."""
    data = yaml.safe_load(HIT_GRAPHS.read_text())
    data["source"].update(files=[str(SAMPLE)], max_events=40, step_size=20)
    data["modules"]["hitGraphs"]["jet_features"] = JET_FEATURES
    data["modules"]["shapes"] = {"type": "JetShapeProducer"}
    data["outputs"][0]["keep"] = ["hitGraphs"]
    own = [b.get("hitGraphs").jet_features for b in Process(load_process(data)).iter_batches()]
    data["modules"]["hitGraphs"]["shapes"] = "shapes"  # the shape producer now runs first: it is consumed
    read = [b.get("hitGraphs").jet_features for b in Process(load_process(data)).iter_batches()]
    assert len(own) == len(read) == 2
    for a, b in zip(own, read, strict=True):
        np.testing.assert_array_equal(a, b)
    data["modules"]["shapes"]["cone"] = 0.3
    with pytest.raises(ConfigError, match="modules.hitGraphs.shapes: 'shapes' was made with") as err:
        list(Process(load_process(data)).iter_batches())
    assert "\n" not in str(err.value) and "'cone': 0.3" in str(err.value)
    data["modules"]["hitGraphs"].update(jet_features=[], shapes="nobody")  # named, though no jet feature needs it
    with pytest.raises(ConfigError, match="modules.hitGraphs consumes 'nobody' but no module is labelled 'nobody'"):
        Process(load_process(data))


@pytest.mark.parametrize("config", ["tau_gnn.yaml", "tau_multiclass.yaml"])
def test_scores_do_not_depend_on_the_order_of_the_hits_in_the_file(config) -> None:
    """Every collection's hits shuffled within each event (the README: hits in any order, the same results): the
    same nodes in the same order, so the same scores bit for bit. Tracker hits lie on an integer grid, so distance
    ties are common: they go by (layer, ieta, iphi), not by the position in the file (which changed up to 0.004)."""
    from conftest import read_events

    from e2e.api import EventTagger

    events = read_events(n=25)
    rng = np.random.default_rng(11)
    shuffled = {name: events[name] for name in events.fields}
    for coll in ("EcalHit", "HcalHit", "Track", "TrackerHit"):
        counts = ak.to_numpy(events[f"n{coll}"])
        perm = ak.argsort(ak.unflatten(rng.random(int(counts.sum())), counts), axis=1)
        for name in events.fields:
            if name.startswith(f"{coll}_"):
                shuffled[name] = events[name][perm]
    assert not ak.all(shuffled["TrackerHit_iphi"] == events["TrackerHit_iphi"])
    with EventTagger(REPO / "process_configs" / config) as tagger:
        ours, theirs = tagger(events), tagger(shuffled)
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert ak.all(ours[name] == theirs[name]), name
