"""HitGraphProducer: jet graphs whose nodes are the detector objects (tracks, ECAL crystals, HCAL towers, tracker
hits) in the jet window, not pixels."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataformats.geometry import ECAL_N_IETA, TRACKER_LAYER_NAMES
from dataformats.products import JaggedCollection, JetGraphs, JetShapes
from e2e.errors import ConfigError
from e2e.event import EventBatch
from e2e.module import Producer
from e2e.params import MAX_NEIGHBOURS, input_tag, param
from frameproducers import kernels
from frameproducers.graphs import ECAL_ETA_CENTRES, graph_edges
from frameproducers.pixels import HitInputs, pv_dz_cut
from frameproducers.shapes import CELL_CENTRES, JetShapeProducer

#: The record's ``nodes``: what a graph's nodes are (JetGraphProducer's graphs, which do not record it: pixels).
NODES = "hits"
_TRACK_FIELDS = ("ecal_ieta", "ecal_iphi", "pt", "eta", "phi", "charge", "d0", "dz", "d0sig", "dzsig")
#: Per-jet inputs a HitGraphProducer can attach (``jet_features``): log(pT / GeV), eta of the jet, and the jet
#: shapes of frameproducers.kernels.fill_jet_shapes with JetShapeProducer's default settings (:data:`SHAPE_SETTINGS`).
JET_FEATURES: tuple[str, ...] = ("log_pt", "eta", *kernels.SHAPE_NAMES)
#: JetShapeProducer's default cone, core (dR), track pT min (GeV), track |dz| max (cm) and displaced-track d0sig
SHAPE_SETTINGS: dict[str, float] = {
    k: float(getattr(JetShapeProducer.Params(), k)) for k in ("cone", "core", "track_pt_min", "dz_max", "d0sig_min")
}


#: the most nodes of one kind (tracks, ECAL, HCAL, tracker hits) a jet may keep (its 125 x 125 window has 15,625 cells)
MAX_NODES_PER_KIND = 100_000


class HitGraphProducer(Producer):
    """Jet graphs whose nodes are the tracks, ECAL crystals, HCAL towers and tracker hits around each jet seed.

    One node per object in the ``window`` x ``window`` crystals around the seed (frameproducers.kernels.hitnodes:
    selection, ranking, caps, node order), features :data:`~frameproducers.kernels.HIT_FEATURES`, edges the ``k``
    nearest neighbours in (delta_eta, delta_phi) (frameproducers.graphs.graph_edges, ``space: delta``: training
    rebuilds the same).

    Product ``<label>``: :class:`~dataformats.products.JetGraphs` (``pos``: crystal offset from the seed, ``pixel``:
    r * window + c of the node's crystal; several nodes may share a crystal); record ``nodes: hits`` and every
    selection parameter, so a GNNTagger refuses a model trained on other graphs with one line.
    """

    @dataclass
    class Params(HitInputs):
        tracker_hits: str = input_tag("source:TrackerHit", "pixel/strip hits", product=JaggedCollection)
        window: int = param(
            63, "window size in crystals (H = W), centred on the jet seed", minimum=1, maximum=ECAL_N_IETA
        )
        track_pt_min: float = param(0.5, "track nodes need pT above this (GeV)", minimum=0.0)
        dz_max: float = param(0.2, "track nodes need |dz| below this (cm): from the primary vertex", minimum=0.0)
        max_tracks: int = param(
            32, "at most this many track nodes per jet, by decreasing pT", minimum=0, maximum=MAX_NODES_PER_KIND
        )
        ecal_threshold: float = param(0.2, "ECAL crystal nodes need energy above this (GeV)", minimum=0.0)
        max_ecal: int = param(
            64, "at most this many ECAL nodes per jet, by decreasing energy", minimum=0, maximum=MAX_NODES_PER_KIND
        )
        hcal_threshold: float = param(0.0, "HCAL tower nodes need energy above this (GeV)", minimum=0.0)
        max_hcal: int = param(
            16, "at most this many HCAL nodes per jet, by decreasing energy", minimum=0, maximum=MAX_NODES_PER_KIND
        )
        tracker_layers: list[str] = param(
            list(TRACKER_LAYER_NAMES[:4]), "tracker layers whose hits are nodes: " + ", ".join(TRACKER_LAYER_NAMES)
        )
        max_tracker_hits: int = param(
            32, "at most this many tracker-hit nodes per jet, nearest the seed", minimum=0, maximum=MAX_NODES_PER_KIND
        )
        ipsig_clip: float = param(50.0, "track d0sig / dzsig features clipped to +-this", minimum=0.0)
        k: int = param(16, "neighbours per node (kNN in delta_eta, delta_phi)", minimum=1, maximum=MAX_NEIGHBOURS)
        self_loops: bool = param(False, "count each node as one of its own neighbours")
        jet_features: list[str] = param(
            [], "per-jet inputs that a model joins after pooling: " + ", ".join(JET_FEATURES)
        )
        shapes: str = param(
            "",
            "a JetShapeProducer run at its default settings whose product gives the jet-shape jet_features (read, "
            "not computed twice); empty: computed here",
        )

    def __init__(self, label: str, params: Any) -> None:
        super().__init__(label, params)
        self.layers = _layer_indices(label, params.tracker_layers)
        self.feature_names = kernels.HIT_FEATURES
        self.jet_feature_names = _jet_features(label, params.jet_features)

    def consumes(self) -> dict[str, type | None]:
        p = self.params
        tags = [p.jets, p.ecal_hits, p.hcal_hits, p.tracks] + ([p.tracker_hits] if self.layers else [])
        out: dict[str, type | None] = {tag: JaggedCollection for tag in tags}
        if p.shapes:  # (also when no jet feature needs it: a label that names nothing is refused, not ignored)
            out[p.shapes] = JetShapes
        return out

    def _needs_shapes(self) -> bool:
        return any(name in kernels.SHAPE_NAMES for name in self.jet_feature_names)

    def fields_needed(self) -> dict[str, tuple[str, ...]]:
        p = self.params
        out = {
            p.jets: ("pt", "seed_ieta", "seed_iphi"),
            p.ecal_hits: ("ieta", "iphi", "energy"),
            p.hcal_hits: ("ieta", "iphi", "energy"),
            p.tracks: _TRACK_FIELDS,
        }
        if self.layers:
            out[p.tracker_hits] = ("layer", "ieta", "iphi")
        if self.jet_feature_names:
            out[p.jets] = ("pt", "eta", "phi", "seed_ieta", "seed_iphi")
        return out

    def produces(self) -> dict[str, type]:
        return {"": JetGraphs}

    def record(self, dz_max: float) -> dict[str, Any]:
        """The parameters that define the graphs (recorded on the product; a model records and checks them);
        ``dz_max``: the track cut the nodes have (:func:`~frameproducers.pixels.pv_dz_cut`)."""
        p = self.params
        return {
            "nodes": NODES,
            "window": p.window,
            "track_pt_min": p.track_pt_min,
            "dz_max": dz_max,
            "max_tracks": p.max_tracks,
            "ecal_threshold": p.ecal_threshold,
            "max_ecal": p.max_ecal,
            "hcal_threshold": p.hcal_threshold,
            "max_hcal": p.max_hcal,
            "tracker_layers": [TRACKER_LAYER_NAMES[i] for i in self.layers],
            "max_tracker_hits": p.max_tracker_hits,
            "ipsig_clip": p.ipsig_clip,
            "coordinates": True,
            "edges": "knn",
            "space": "delta",
            "k": p.k,
            "self_loops": p.self_loops,
            "features": list(self.feature_names),
            "jet_features": list(self.jet_feature_names),
        }

    def produce(self, batch: EventBatch) -> None:
        p = self.params
        jets: JaggedCollection = batch.get(p.jets)
        trk: JaggedCollection = batch.get(p.tracks)
        cut, dz_max = pv_dz_cut(trk, float(p.dz_max), f"modules.{self.label}.dz_max")
        jet_event, jet_index = jets.event_and_local_index()
        if cut == math.inf:
            self.count("jets whose track nodes are the source's PV-track sums (dz_max not applied again)", len(jets))
        par = kernels.hit_node_params(
            window=p.window,
            track_pt_min=p.track_pt_min,
            dz_max=cut,
            ecal_threshold=p.ecal_threshold,
            hcal_threshold=p.hcal_threshold,
            max_tracks=p.max_tracks,
            max_ecal=p.max_ecal,
            max_hcal=p.max_hcal,
            max_tracker_hits=p.max_tracker_hits if self.layers else 0,
            layer_mask=sum(1 << i for i in self.layers),
            ipsig_clip=p.ipsig_clip,
        )
        node_offsets, x, pos, pixel = kernels.build_hit_nodes(
            kernels.HitJets(jet_event, jets["seed_ieta"], jets["seed_iphi"], jets["pt"]),
            _calo(batch.get(p.ecal_hits)),
            _calo(batch.get(p.hcal_hits)),
            kernels.NodeTracks(trk.offsets, *(trk[f] for f in _TRACK_FIELDS)),
            self._tracker_hits(batch),
            par,
            ECAL_ETA_CENTRES,
        )
        record = self.record(dz_max)
        neighbors, num_neighbors = graph_edges(pixel, x, node_offsets, record)
        n_nodes = np.diff(node_offsets)
        self.count("empty graphs (no hit in the window)", int(np.count_nonzero(n_nodes == 0)))
        for i, kind in enumerate(kernels.HIT_TYPES):
            self.count(f"nodes: {kind.replace('_', ' ')}", int(np.count_nonzero(x[:, i])))
        batch.put(
            self.label,
            JetGraphs(
                jets.offsets,
                jet_index,
                record,
                x=x,
                pos=pos,
                pixel=pixel,
                node_offsets=node_offsets,
                neighbors=neighbors,
                num_neighbors=num_neighbors,
                feature_names=self.feature_names,
                jet_features=self._jet_features(batch, jet_event) if self.jet_feature_names else None,
                jet_feature_names=self.jet_feature_names,
            ),
        )

    def _jet_features(self, batch: EventBatch, jet_event: np.ndarray) -> np.ndarray:
        """float32 [n_jets, len(jet_features)]: the chosen :data:`JET_FEATURES` of every jet."""
        p = self.params
        jets: JaggedCollection = batch.get(p.jets)
        trk: JaggedCollection = batch.get(p.tracks)
        values = {"log_pt": np.log(np.maximum(jets["pt"], 1e-3)), "eta": jets["eta"]}
        if self._needs_shapes() and p.shapes:
            values.update(self._shapes_product(batch, jets, trk))
        elif self._needs_shapes():
            s = SHAPE_SETTINGS
            shapes = np.empty((len(jets), len(kernels.SHAPE_NAMES)), dtype=np.float32)
            cut, _ = pv_dz_cut(trk, s["dz_max"], f"modules.{self.label}.jet_features")
            ecal, hcal = batch.get(p.ecal_hits), batch.get(p.hcal_hits)
            kernels.fill_jet_shapes(
                shapes,
                kernels.JetAxes(jet_event, jets["pt"], jets["eta"], jets["phi"]),
                _calo(ecal),
                _calo(hcal),
                kernels.ShapeTracks(trk.offsets, trk["pt"], trk["eta"], trk["phi"], trk["dz"], trk["d0sig"]),
                CELL_CENTRES,
                s["cone"],
                s["core"],
                s["track_pt_min"],
                cut,
                s["d0sig_min"],
            )
            values.update(zip(kernels.SHAPE_NAMES, shapes.T, strict=True))
        return np.stack([np.asarray(values[n], dtype=np.float32) for n in self.jet_feature_names], axis=1)

    def _shapes_product(
        self, batch: EventBatch, jets: JaggedCollection, trk: JaggedCollection
    ) -> dict[str, np.ndarray]:
        """The jet shapes of the ``shapes`` product, refused in one line unless it was made at the settings the
        jet inputs are defined with (JetShapeProducer's defaults) for these jets."""
        where = f"modules.{self.label}.shapes"
        table: JetShapes = batch.get(self.params.shapes)
        _, dz_max = pv_dz_cut(trk, SHAPE_SETTINGS["dz_max"], where)
        wanted = {**SHAPE_SETTINGS, "dz_max": dz_max}
        differ = {k: table.params.get(k) for k, v in wanted.items() if table.params.get(k) != v}
        if differ:
            raise ConfigError(
                f"{where}: '{self.params.shapes}' was made with {differ}; the jet inputs are the shapes at "
                f"JetShapeProducer's default settings {wanted}: run it at its defaults or leave shapes empty"
            )
        same_jets = table.n_jets == len(jets) and np.array_equal(table.event_offsets, jets.offsets)
        if not same_jets or tuple(table.names) != kernels.SHAPE_NAMES:
            raise ConfigError(
                f"{where}: '{self.params.shapes}' has {table.n_jets} jets with {list(table.names)}; expected the "
                f"{len(jets)} jets of {self.params.jets} with {list(kernels.SHAPE_NAMES)}"
            )
        return {name: table.values[:, i] for i, name in enumerate(table.names)}

    def _tracker_hits(self, batch: EventBatch) -> kernels.TrackerHits:
        """The tracker hits (empty arrays when no layer is selected: the collection is not read)."""
        if self.layers:
            th: JaggedCollection = batch.get(self.params.tracker_hits)
            return kernels.TrackerHits(th.offsets, th["layer"], th["ieta"], th["iphi"])
        empty = np.zeros(0, np.int16)
        return kernels.TrackerHits(np.zeros(batch.n_events + 1, np.int64), empty, empty, empty)


def _calo(c: JaggedCollection) -> kernels.CaloHits:
    return kernels.CaloHits(c.offsets, c["ieta"], c["iphi"], c["energy"])


def _jet_features(label: str, names: list[str]) -> tuple[str, ...]:
    """The chosen per-jet inputs, checked against :data:`JET_FEATURES` (one-line ConfigError)."""
    where = f"modules.{label}.jet_features"
    for name in names:
        if name not in JET_FEATURES:
            close = difflib.get_close_matches(name, JET_FEATURES, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: unknown jet feature '{name}'{hint}; allowed: {', '.join(JET_FEATURES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: a feature is listed twice: {names}")
    return tuple(names)


def _layer_indices(label: str, names: list[str]) -> tuple[int, ...]:
    """The TrackerHit layers of ``names`` (geometry.TRACKER_LAYER_NAMES), ascending; one-line ConfigError."""
    where = f"modules.{label}.tracker_layers"
    for name in names:
        if name not in TRACKER_LAYER_NAMES:
            close = difflib.get_close_matches(name.upper(), TRACKER_LAYER_NAMES, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: unknown layer '{name}'{hint}; allowed: {', '.join(TRACKER_LAYER_NAMES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: a layer is listed twice: {names}")
    return tuple(sorted(TRACKER_LAYER_NAMES.index(n) for n in names))
