"""Parameters and hit arrays shared by the producers that put hits on the jet window's pixels.

JetFrameProducer and JetGraphProducer read the same hits with the same parameters, so a graph's nodes
are exactly the non-zero pixels of the frame made with the same settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataformats.geometry import ECAL_N_IETA
from dataformats.products import JaggedCollection
from dataformats.schema import branch_dtypes
from e2e.errors import ConfigError
from e2e.event import EventBatch
from e2e.module import Producer
from e2e.params import input_tag, param
from frameproducers.channels import CHANNEL_CODE, CHANNEL_COLLECTION, CHANNELS, N_CHANNEL_CODES
from frameproducers.kernels import CaloHits, ChannelMap, JetSeeds, TrackerHits, WindowHits, WindowTracks
from frameproducers.kernels.inputs import count_eta_edge

DEFAULT_CHANNELS = ["track_pt", "track_d0", "track_dz", "ecal", "hcal"]


@dataclass
class HitInputs:
    """The jet and hit collections a producer reads (shared by every frame producer)."""

    jets: str = input_tag("source:Jet", "jet collection", product=JaggedCollection)
    ecal_hits: str = input_tag("source:EcalHit", "ECAL hits", product=JaggedCollection)
    hcal_hits: str = input_tag("source:HcalHit", "HCAL towers", product=JaggedCollection)
    tracks: str = input_tag("source:Track", "tracks", product=JaggedCollection)


@dataclass
class PixelParams(HitInputs):
    """Which hits fill which channel of the jet window (shared by frames and graphs)."""

    tracker_hits: str = input_tag("source:TrackerHit", "pixel/strip hits", product=JaggedCollection)
    channels: list[str] = param(DEFAULT_CHANNELS, "channels in output order: " + ", ".join(CHANNELS))
    window: int = param(125, "window size in crystals (H = W), centred on the jet seed", minimum=1, maximum=ECAL_N_IETA)
    dz_max: float = param(0.1, "track d0/dz channels use tracks with |dz| < dz_max (cm; E2E: 0.1)", minimum=0.0)
    impact: str = param(
        "value",
        "track_d0/track_dz channels: 'value' (cm) or 'significance' (d0/sigma)",
        choices=("value", "significance"),
    )
    hcal_upsample: bool = param(
        True, "HCAL tower -> its 5x5 crystals at E/25 (E2E); false: full E at the tower's centre crystal"
    )
    scale: dict[str, float] = param({}, "per-channel factor applied to every contribution (default 1)")
    thresholds: dict[str, float] = param(
        {}, "per-channel zero suppression: pixels with |value| <= threshold (unscaled units) are zero (default 0)"
    )


def _check_channel_keys(label: str, key: str, mapping: dict[str, float], channels: list[str]) -> None:
    import difflib

    for name in mapping:
        if name not in channels:
            close = difflib.get_close_matches(name, channels, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"modules.{label}.{key}: '{name}' is not one of the channels{hint}; channels: {', '.join(channels)}"
            )


def pv_dz_cut(tracks: JaggedCollection, dz_max: float, where: str) -> tuple[float, float]:
    """(cut to apply to each track's |dz|, the primary-vertex cut the result then has), in cm.

    Tracks that are per-crystal sums of primary-vertex tracks (``meta['pv_dz_max']``, RHTree maps) are not cut
    again (a sum's dz means nothing): the result has the source's cut, which ``dz_max`` may not tighten. Every
    producer that selects tracks by |dz| goes through here.
    """
    pre = tracks.meta.get("pv_dz_max")
    if pre is None:
        return dz_max, dz_max
    if dz_max < pre:
        raise ConfigError(
            f"{where}: {dz_max} cm is tighter than the cut already in the source's track sums "
            f"(|dz| < {pre} cm, RHTree maps); expected dz_max >= {pre}"
        )
    return math.inf, float(pre)


class PixelMap:
    """The validated channel configuration as the arrays the kernels take."""

    def __init__(self, label: str, p: PixelParams) -> None:
        self.label = label
        if not p.channels:
            raise ConfigError(f"modules.{label}.channels: expected at least one of {', '.join(CHANNELS)}")
        for name in p.channels:
            if name not in CHANNEL_CODE:
                import difflib

                close = difflib.get_close_matches(name, CHANNELS, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(
                    f"modules.{label}.channels: unknown channel '{name}'{hint}; allowed: {', '.join(CHANNELS)}"
                )
        if len(set(p.channels)) != len(p.channels):
            raise ConfigError(f"modules.{label}.channels: a channel is listed twice: {p.channels}")
        _check_channel_keys(label, "scale", p.scale, p.channels)
        _check_channel_keys(label, "thresholds", p.thresholds, p.channels)
        if any(v < 0 for v in p.thresholds.values()):
            raise ConfigError(f"modules.{label}.thresholds: thresholds must be >= 0, got {p.thresholds}")
        self.channels = tuple(p.channels)
        self.channel_of_code = np.full(N_CHANNEL_CODES, -1, dtype=np.int64)
        for i, name in enumerate(p.channels):
            self.channel_of_code[CHANNEL_CODE[name]] = i
        self.scale = np.array([p.scale.get(c, 1.0) for c in p.channels], dtype=np.float32)
        self.threshold = np.array([p.thresholds.get(c, 0.0) for c in p.channels], dtype=np.float32)
        self.channel_map = ChannelMap(self.channel_of_code, self.scale, self.threshold)
        self.collections = {CHANNEL_COLLECTION[c] for c in p.channels}
        self.params = p

    def consumes(self) -> dict[str, type | None]:
        p = self.params
        tags = {
            "Jet": p.jets,
            "EcalHit": p.ecal_hits,
            "HcalHit": p.hcal_hits,
            "Track": p.tracks,
            "TrackerHit": p.tracker_hits,
        }
        return {tags[c]: JaggedCollection for c in ("Jet", *sorted(self.collections))}

    def fields_needed(self) -> dict[str, tuple[str, ...]]:
        p = self.params
        impact = ("d0sig", "dzsig") if p.impact == "significance" else ()
        return {
            p.jets: ("seed_ieta", "seed_iphi"),
            p.ecal_hits: ("ieta", "iphi", "energy"),
            p.hcal_hits: ("ieta", "iphi", "energy"),
            p.tracks: ("ecal_ieta", "ecal_iphi", "pt", "d0", "dz", *impact),
            p.tracker_hits: ("layer", "ieta", "iphi"),
        }

    def track_dz_cut(self, batch: EventBatch) -> tuple[float, float]:
        """(cut the kernels apply to each track's |dz|, the cut the pixels then have), in cm (:func:`pv_dz_cut`)."""
        p = self.params
        if "Track" not in self.collections:
            return float(p.dz_max), float(p.dz_max)
        return pv_dz_cut(batch.get(p.tracks), float(p.dz_max), f"modules.{self.label}.dz_max")

    def record(self, dz_max: float | None = None) -> dict[str, Any]:
        """The parameters that define the pixels (recorded on the product for taggers to check); ``dz_max``:
        the track cut the pixels have (:meth:`track_dz_cut`), default the parameter."""
        p = self.params
        return {
            "channels": list(self.channels),
            "window": p.window,
            "dz_max": p.dz_max if dz_max is None else dz_max,
            "impact": p.impact,
            "hcal_upsample": p.hcal_upsample,
            "scale": [float(s) for s in self.scale],
            "thresholds": [float(t) for t in self.threshold],
        }

    def jets(self, batch: EventBatch) -> tuple[JaggedCollection, JetSeeds, np.ndarray]:
        """The jet collection, the window seeds (event int64 and seed crystal of each jet) and each jet's
        event-local index (int32)."""
        jets: JaggedCollection = batch.get(self.params.jets)
        jet_event, jet_index = jets.event_and_local_index()
        return jets, JetSeeds(jet_event, jets["seed_ieta"], jets["seed_iphi"]), jet_index

    def window_hits(self, batch: EventBatch) -> WindowHits:
        """The hit collections as the window kernels read them (empty arrays for collections not read)."""
        p = self.params
        n_events = batch.n_events
        dtypes = branch_dtypes(True)

        def coll(name: str, tag: str, fields: tuple[str, ...]) -> list[np.ndarray]:
            if name in self.collections:
                c: JaggedCollection = batch.get(tag)
                return [c.offsets, *(c[f] for f in fields)]
            return [np.zeros(n_events + 1, dtype=np.int64), *(np.zeros(0, dtype=dtypes[f"{name}_{f}"]) for f in fields)]

        d0, dz = ("d0sig", "dzsig") if p.impact == "significance" else ("d0", "dz")
        return WindowHits(
            CaloHits(*coll("EcalHit", p.ecal_hits, ("ieta", "iphi", "energy"))),
            CaloHits(*coll("HcalHit", p.hcal_hits, ("ieta", "iphi", "energy"))),
            WindowTracks(*coll("Track", p.tracks, ("ecal_ieta", "ecal_iphi", "pt", d0, dz, "dz"))),
            TrackerHits(*coll("TrackerHit", p.tracker_hits, ("layer", "ieta", "iphi"))),
        )

    def eta_edge_jets(self, seed_ieta: np.ndarray) -> int:
        """Jets whose window reaches beyond the ECAL grid in eta (those rows are zero)."""
        return int(count_eta_edge(seed_ieta, self.params.window))


class PixelProducer(Producer):
    """Base of the producers that put hits on the jet window's pixels (frames, graphs)."""

    def __init__(self, label: str, params: Any) -> None:
        super().__init__(label, params)
        self.pixels = PixelMap(label, params)

    def consumes(self) -> dict[str, type | None]:
        return self.pixels.consumes()

    def fields_needed(self) -> dict[str, tuple[str, ...]]:
        return self.pixels.fields_needed()
