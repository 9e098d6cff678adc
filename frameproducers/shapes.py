"""JetShapeProducer: classical per-jet observables from hits (analysis and the baseline of tagger comparisons)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dataformats import geometry as geo
from dataformats.products import JaggedCollection, JetShapes
from e2e.event import EventBatch
from e2e.module import Producer
from e2e.params import param
from frameproducers import kernels
from frameproducers.pixels import HitInputs, pv_dz_cut

#: eta / phi of the ECAL and HCAL cell centres, for the shape kernel
CELL_CENTRES = kernels.CellCentres(
    *(
        np.ascontiguousarray(a, dtype=np.float64)
        for a in (
            geo.ecal_eta(np.arange(geo.ECAL_N_IETA)),
            geo.ecal_phi(np.arange(geo.ECAL_N_IPHI)),
            geo.hcal_eta(np.arange(geo.HCAL_N_IETA)),
            geo.hcal_phi(np.arange(geo.HCAL_N_IPHI)),
        )
    )
)


class JetShapeProducer(Producer):
    """Per jet (frameproducers.kernels.fill_jet_shapes): ``width`` (ET-weighted dR of calorimeter hits within
    the cone), ``core_fraction`` (ET within dR < core over ET within the cone), ``leading_track_fraction``,
    ``charged_multiplicity`` (primary-vertex tracks in the cone), ``isolation`` (GeV: PV-track pT + ECAL ET
    in core <= dR < cone) and ``n_displaced_tracks`` (PV tracks in the cone with |d0sig| above d0sig_min).

    Product ``<label>``: :class:`~dataformats.products.JetShapes`, float32 ``[n_jets, 6]``.
    """

    @dataclass
    class Params(HitInputs):
        cone: float = param(0.4, "jet cone radius dR", minimum=0.0)
        core: float = param(0.1, "core radius dR (core fraction; inner edge of the isolation annulus)", minimum=0.0)
        track_pt_min: float = param(1.0, "tracks counted need pT above this (GeV)", minimum=0.0)
        dz_max: float = param(0.1, "tracks counted need |dz| below this (cm): from the primary vertex", minimum=0.0)
        d0sig_min: float = param(3.0, "displaced tracks: |d0 / sigma(d0)| above this", minimum=0.0)

    def __init__(self, label: str, params: Any) -> None:
        super().__init__(label, params)
        if params.core > params.cone:
            from e2e.errors import ConfigError

            raise ConfigError(f"modules.{label}.core: {params.core} is larger than cone {params.cone}")

    def fields_needed(self) -> dict[str, tuple[str, ...]]:
        p = self.params
        return {
            p.jets: ("pt", "eta", "phi"),
            p.ecal_hits: ("ieta", "iphi", "energy"),
            p.hcal_hits: ("ieta", "iphi", "energy"),
            p.tracks: ("pt", "eta", "phi", "dz", "d0sig"),
        }

    def produces(self) -> dict[str, type]:
        return {"": JetShapes}

    def produce(self, batch: EventBatch) -> None:
        p = self.params
        jets: JaggedCollection = batch.get(p.jets)
        ecal: JaggedCollection = batch.get(p.ecal_hits)
        hcal: JaggedCollection = batch.get(p.hcal_hits)
        trk: JaggedCollection = batch.get(p.tracks)
        jet_event, jet_index = jets.event_and_local_index()
        out = np.empty((len(jets), len(kernels.SHAPE_NAMES)), dtype=np.float32)
        cut, dz_max = pv_dz_cut(trk, float(p.dz_max), f"modules.{self.label}.dz_max")
        kernels.fill_jet_shapes(
            out,
            kernels.JetAxes(jet_event, jets["pt"], jets["eta"], jets["phi"]),
            kernels.CaloHits(ecal.offsets, ecal["ieta"], ecal["iphi"], ecal["energy"]),
            kernels.CaloHits(hcal.offsets, hcal["ieta"], hcal["iphi"], hcal["energy"]),
            kernels.ShapeTracks(trk.offsets, trk["pt"], trk["eta"], trk["phi"], trk["dz"], trk["d0sig"]),
            CELL_CENTRES,
            float(p.cone),
            float(p.core),
            float(p.track_pt_min),
            cut,
            float(p.d0sig_min),
        )
        record = {
            "cone": p.cone,
            "core": p.core,
            "track_pt_min": p.track_pt_min,
            "dz_max": dz_max,
            "d0sig_min": p.d0sig_min,
        }
        batch.put(self.label, JetShapes(jets.offsets, jet_index, record, values=out, names=kernels.SHAPE_NAMES))
