"""A new tagger in one class: a cut-based tau identification on the JetShapeProducer observables.

Taggers are Producers that put :class:`dataformats.products.TagScores` under their label; RootOutput writes
every output name as ``Jet_<label>_<name>`` and e2e-eval picks them up, with no framework change. This one
needs no model: tau-like jets are narrow, isolated and have one or three prongs, so the score falls with the
isolation sum and the width and is zero above a charged multiplicity of ``max_tracks``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataformats.products import JetShapes, TagScores
from e2e.event import EventBatch
from e2e.module import Producer
from e2e.params import input_tag, param


class IsolationTauTagger(Producer):
    """score tau = exp(-isolation / iso_scale - width / width_scale), 0 with more than max_tracks PV tracks."""

    @dataclass
    class Params:
        shapes: str = input_tag("jetShapes", "jet shapes (JetShapeProducer)", product=JetShapes)
        iso_scale: float = param(5.0, "isolation sum scale (GeV)", minimum=1e-6)
        width_scale: float = param(0.05, "width scale (dR)", minimum=1e-6)
        max_tracks: int = param(3, "tau candidates have at most this many charged tracks", minimum=1)

    def produces(self) -> dict[str, type]:
        return {"": TagScores}

    def produce(self, batch: EventBatch) -> None:
        p = self.params
        shapes: JetShapes = batch.get(p.shapes)
        tau = np.exp(-shapes.column("isolation") / p.iso_scale - shapes.column("width") / p.width_scale)
        tau = np.where(shapes.column("charged_multiplicity") <= p.max_tracks, tau, 0.0).astype(np.float32)
        values = np.stack([1.0 - tau, tau], axis=1)
        batch.put(
            self.label,
            TagScores(
                shapes.event_offsets, shapes.jet_index, {"iso_scale": p.iso_scale}, values=values, names=("qcd", "tau")
            ),
        )
