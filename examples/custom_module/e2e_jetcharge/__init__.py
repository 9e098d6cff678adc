"""An e2e module in its own package: the pT-weighted jet charge from tracks.

Q_jet = sum_i q_i pT_i^kappa / pT_jet^kappa over tracks with dR(track, jet) < cone and |dz| < dz_max
(Field and Feynman; CMS JME-13-006 uses kappa = 0.5-1). Columnar: one pass over (jet, track) pairs of
every event of the batch, no Python loop over events or jets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataformats.products import JaggedCollection, JetTable
from e2e.event import EventBatch
from e2e.module import Producer
from e2e.params import input_tag, param


class JetChargeProducer(Producer):
    """Per-jet pT-weighted charge ``charge`` and the number of tracks used ``n_tracks``."""

    @dataclass
    class Params:
        jets: str = input_tag("source:Jet", "jet collection", product=JaggedCollection)
        tracks: str = input_tag("source:Track", "tracks", product=JaggedCollection)
        kappa: float = param(1.0, "pT weight exponent", minimum=0.0)
        cone: float = param(0.4, "tracks within dR < cone of the jet axis", minimum=0.0)
        dz_max: float = param(0.1, "tracks from the primary vertex: |dz| < dz_max (cm)", minimum=0.0)

    def fields_needed(self) -> dict[str, tuple[str, ...]]:
        return {self.params.jets: ("pt", "eta", "phi"), self.params.tracks: ("pt", "eta", "phi", "charge", "dz")}

    def produces(self) -> dict[str, type]:
        return {"": JetTable}

    def produce(self, batch: EventBatch) -> None:
        p = self.params
        jets: JaggedCollection = batch.get(p.jets)
        trk: JaggedCollection = batch.get(p.tracks)
        n_jets, n_trk = jets.counts, trk.counts
        # all (jet, track) pairs of the same event, as flat index arrays
        pairs = n_jets * n_trk
        pair_event = np.repeat(np.arange(jets.n_events), pairs)
        first = np.cumsum(pairs) - pairs
        k = np.arange(int(pairs.sum())) - first[pair_event]
        jet = jets.offsets[pair_event] + k // np.maximum(n_trk[pair_event], 1)
        track = trk.offsets[pair_event] + k % np.maximum(n_trk[pair_event], 1)
        dphi = (trk["phi"][track] - jets["phi"][jet] + np.pi) % (2 * np.pi) - np.pi
        deta = trk["eta"][track] - jets["eta"][jet]
        use = (deta * deta + dphi * dphi < p.cone**2) & (np.abs(trk["dz"][track]) < p.dz_max)
        weight = np.where(use, trk["charge"][track] * trk["pt"][track].astype(np.float64) ** p.kappa, 0.0)
        charge = np.bincount(jet, weights=weight, minlength=len(jets)) / jets["pt"].astype(np.float64) ** p.kappa
        n_used = np.bincount(jet, weights=use, minlength=len(jets))
        values = np.stack([charge, n_used], axis=1).astype(np.float32)
        record = {"kappa": p.kappa, "cone": p.cone, "dz_max": p.dz_max}
        batch.put(
            self.label, JetTable(jets.offsets, jets.local_index(), record, values=values, names=("charge", "n_tracks"))
        )
