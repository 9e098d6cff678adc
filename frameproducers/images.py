"""JetFrameProducer: E2E jet images [n_jets, C, W, W] centred on each jet's seed crystal (DESIGN.md 4.3)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dataformats.products import JetFrames
from e2e.event import EventBatch
from frameproducers import kernels
from frameproducers.pixels import PixelParams, PixelProducer


class JetFrameProducer(PixelProducer):
    """E2E jet images from hits: any subset/order of the E2E channels, phi wrapping, eta zero-padding.

    Product ``<label>``: :class:`~dataformats.products.JetFrames`, float32 ``[n_jets, C, window, window]``,
    one frame per jet of the jet collection, in jet order.
    """

    @dataclass
    class Params(PixelParams):
        pass

    def produces(self) -> dict[str, type]:
        return {"": JetFrames}

    def produce(self, batch: EventBatch) -> None:
        px = self.pixels
        jets, seeds, jet_index = px.jets(batch)
        w = self.params.window
        out = np.empty((len(jets), len(px.channels), w, w), dtype=np.float32)
        cut, dz_max = px.track_dz_cut(batch)
        if cut == math.inf:
            self.count("jets whose track pixels are the source's PV-track sums (dz_max not applied again)", len(jets))
        kernels.fill_jet_images(
            out,
            seeds,
            px.window_hits(batch),
            px.channel_map,
            cut,
            bool(self.params.hcal_upsample),
        )
        self.count("jets at the eta edge (rows beyond the grid are zero)", px.eta_edge_jets(seeds.ieta))
        record = px.record(dz_max)
        batch.put(self.label, JetFrames(jets.offsets, jet_index, record, data=out, channels=px.channels))
