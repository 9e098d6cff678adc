"""What the frame kernels read: hit collections, jets and the channel map as small named tuples of arrays.

A hit collection of a batch of events is flat arrays plus ``offsets`` int64 [n_events + 1] (the hits of
event e are ``offsets[e]:offsets[e + 1]``, in any order), read in their on-disk dtypes (ieta/iphi int16,
energies/momenta float32, layer uint8): no copies. Numba takes a flat named tuple of arrays as one argument
(one compile per combination of dtypes), also inside ``prange`` loops; a tuple of tuples it does not take
there, so the kernels get :class:`WindowHits` unpacked.

The checks here run in Python before a kernel: hit indices must be on their grids (dataformats.schema
validates them on reading); the kernels do no bounds checks.
"""

from __future__ import annotations

from typing import NamedTuple, TypeVar

import numpy as np
from numba import njit

from dataformats.geometry import ECAL_N_IETA, ECAL_N_IPHI
from frameproducers.channels import N_CHANNEL_CODES


class CaloHits(NamedTuple):
    """ECAL crystals or HCAL towers: (ieta, iphi) on the detector's grid, energy in GeV."""

    offsets: np.ndarray  # int64 [n_events + 1]
    ieta: np.ndarray  # int16 [n]
    iphi: np.ndarray  # int16 [n]
    energy: np.ndarray  # float32 [n], GeV


class WindowTracks(NamedTuple):
    """Tracks as the pixel channels see them: the ECAL-face crystal (ieta = -1: does not reach the ECAL), pT and
    the values the track_d0 / track_dz channels add (cm, or significances), and dz (cm) to select PV tracks."""

    offsets: np.ndarray  # int64 [n_events + 1]
    ieta: np.ndarray  # int16 [n]
    iphi: np.ndarray  # int16 [n]
    pt: np.ndarray  # float32 [n], GeV
    d0v: np.ndarray  # float32 [n], track_d0 channel value
    dzv: np.ndarray  # float32 [n], track_dz channel value
    dz: np.ndarray  # float32 [n], cm


class TrackerHits(NamedTuple):
    """Pixel / strip hits: barrel layer L (fills channel code FIRST_LAYER_CODE + L), ECAL crystal seen from the PV."""

    offsets: np.ndarray  # int64 [n_events + 1]
    layer: np.ndarray  # uint8 [n]
    ieta: np.ndarray  # int16 [n]
    iphi: np.ndarray  # int16 [n]


class WindowHits(NamedTuple):
    """Every collection that fills the pixels of a jet window (empty arrays for a collection not read)."""

    ecal: CaloHits
    hcal: CaloHits
    tracks: WindowTracks
    tracker: TrackerHits


class JetSeeds(NamedTuple):
    """The jets of window kernels: event index and the ECAL crystal of the window centre (any integer dtype)."""

    event: np.ndarray  # int64 [n_jets]
    ieta: np.ndarray  # [n_jets], 0..279
    iphi: np.ndarray  # [n_jets], 0..359


class HitJets(NamedTuple):
    """The jets of hit graphs: event index, the ECAL crystal of the window centre and pT (GeV, for e_frac)."""

    event: np.ndarray  # int64 [n_jets]
    ieta: np.ndarray  # [n_jets], 0..279
    iphi: np.ndarray  # [n_jets], 0..359
    pt: np.ndarray  # float32 [n_jets], GeV


class NodeTracks(NamedTuple):
    """Tracks as hit-graph nodes: the ECAL-face crystal (ieta = -1: does not reach the ECAL), pT, direction at
    the primary vertex, charge and impact parameters (cm) with their significances."""

    offsets: np.ndarray  # int64 [n_events + 1]
    ieta: np.ndarray  # int16 [n]
    iphi: np.ndarray  # int16 [n]
    pt: np.ndarray  # float32 [n], GeV
    eta: np.ndarray  # float32 [n]
    phi: np.ndarray  # float32 [n], rad
    charge: np.ndarray  # int16 [n]
    d0: np.ndarray  # float32 [n], cm
    dz: np.ndarray  # float32 [n], cm
    d0sig: np.ndarray  # float32 [n]
    dzsig: np.ndarray  # float32 [n]


class ChannelMap(NamedTuple):
    """Which channel each channel code fills and how (frameproducers.channels)."""

    of_code: np.ndarray  # int64 [13]: output channel of each code, -1: not requested (any subset, any order)
    scale: np.ndarray  # float32 [C]: factor on every contribution
    threshold: np.ndarray  # float32 [C]: pixels with |value| <= threshold * |scale| are 0 (unscaled units)


class JetAxes(NamedTuple):
    """The jets of jet shapes: event index, pT (GeV) and the axis (eta, phi [rad])."""

    event: np.ndarray  # int64 [n_jets]
    pt: np.ndarray  # float32 [n_jets]
    eta: np.ndarray  # float32 [n_jets]
    phi: np.ndarray  # float32 [n_jets]


class ShapeTracks(NamedTuple):
    """Tracks as jet shapes see them: pT (GeV), direction, dz (cm) and d0 significance."""

    offsets: np.ndarray  # int64 [n_events + 1]
    pt: np.ndarray  # float32 [n]
    eta: np.ndarray  # float32 [n]
    phi: np.ndarray  # float32 [n], rad
    dz: np.ndarray  # float32 [n], cm
    d0sig: np.ndarray  # float32 [n]


class CellCentres(NamedTuple):
    """Cell centres of the calorimeter grids (float64): geometry.ecal_eta(arange(280)), ecal_phi(arange(360)),
    hcal_eta(arange(56)), hcal_phi(arange(72))."""

    ecal_eta: np.ndarray
    ecal_phi: np.ndarray
    hcal_eta: np.ndarray
    hcal_phi: np.ndarray


_Collection = TypeVar("_Collection", CaloHits, WindowTracks, TrackerHits, ShapeTracks, NodeTracks)


def as_int64(a: np.ndarray) -> np.ndarray:
    """``a`` as a contiguous int64 array (itself when it is one)."""
    return np.ascontiguousarray(a, dtype=np.int64)


def with_int64_offsets(c: _Collection) -> _Collection:
    """``c`` with int64 contiguous offsets (itself when it has them)."""
    off = c.offsets
    if off.dtype == np.int64 and off.flags.c_contiguous:
        return c
    return c._replace(offsets=as_int64(off))


def window_hits(hits: WindowHits) -> WindowHits:
    """``hits`` with int64 offsets in every collection."""
    return WindowHits(
        with_int64_offsets(hits.ecal),
        with_int64_offsets(hits.hcal),
        with_int64_offsets(hits.tracks),
        with_int64_offsets(hits.tracker),
    )


@njit(cache=True, nogil=True)
def count_eta_edge(seed_ieta, W):
    """Jets whose W x W window reaches beyond the ECAL grid in eta (seed row - W // 2 < 0, or past the last row)."""
    h = W // 2
    n = 0
    for s in seed_ieta:
        n += (s - h < 0) | (s - h + W > ECAL_N_IETA)
    return n


#: an absent seed array (check_jets with None): the range checks skip empty arrays
_NO_SEED = np.zeros(0, dtype=np.int64)


@njit(cache=True, nogil=True)
def _jets_problem(jet_event, n_events, seed_ieta, seed_iphi):
    """0 when every jet's event lies in 0..n_events-1 and its seed on the ECAL grid; else the first problem: 1 an
    event out of range, 2 a seed_ieta, 3 a seed_iphi (one pass, instead of ~8 numpy reductions of a few values)."""
    for e in jet_event:
        if e < 0 or e >= n_events:
            return 1
    for v in seed_ieta:
        if v < 0 or v >= ECAL_N_IETA:
            return 2
    for v in seed_iphi:
        if v < 0 or v >= ECAL_N_IPHI:
            return 3
    return 0


def check_jets(
    jet_event: np.ndarray, seed_ieta: np.ndarray | None, seed_iphi: np.ndarray | None, *offsets: np.ndarray
) -> np.ndarray:
    """jet_event as int64; every jet's event inside every collection and its seed on the ECAL grid."""
    jet_event = as_int64(jet_event)
    n = len(jet_event)
    n_events = min(len(o) for o in offsets) - 1
    ieta = _NO_SEED if seed_ieta is None else np.asarray(seed_ieta)
    iphi = _NO_SEED if seed_iphi is None else np.asarray(seed_iphi)
    problem = _jets_problem(jet_event, n_events, ieta, iphi)
    if problem == 1:
        raise ValueError(f"jet_event must lie in 0..{n_events - 1} (the events of the hit offsets)")
    for code, name, seed, hi in ((2, "seed_ieta", seed_ieta, ECAL_N_IETA), (3, "seed_iphi", seed_iphi, ECAL_N_IPHI)):
        if seed is None:
            continue
        if len(seed) != n:
            raise ValueError(f"{name} must have one entry per jet ({n})")
        if problem == code:
            raise ValueError(f"{name} must lie in 0..{hi - 1}")
    return jet_event


def check_seeds(seeds: JetSeeds, hits: WindowHits) -> JetSeeds:
    """``seeds`` with int64 events, checked against the events of ``hits`` and the ECAL grid."""
    event = check_jets(
        seeds.event,
        seeds.ieta,
        seeds.iphi,
        hits.ecal.offsets,
        hits.hcal.offsets,
        hits.tracks.offsets,
        hits.tracker.offsets,
    )
    return seeds._replace(event=event)


@njit(cache=True, nogil=True)
def _codes_map_onto(codes, C):
    """Whether the non-negative ``codes`` are 0..C-1, each once (as sorting them would show)."""
    seen = np.zeros(max(C, 0), np.bool_)
    used = 0
    for c in codes:
        if c < 0:
            continue
        if c >= C or seen[c]:
            return False
        seen[c] = True
        used += 1
    return used == C


def check_channels(channels: ChannelMap, C: int) -> ChannelMap:
    """The channel map as the kernels take it (int64 codes, float32 scale and threshold), checked for C channels."""
    codes = as_int64(channels.of_code)
    scale = np.ascontiguousarray(channels.scale, dtype=np.float32)
    threshold = np.ascontiguousarray(channels.threshold, dtype=np.float32)
    if codes.shape != (N_CHANNEL_CODES,):
        raise ValueError(f"channel_of_code must have {N_CHANNEL_CODES} entries, got {codes.shape}")
    if not _codes_map_onto(codes, C):
        raise ValueError(f"channel_of_code must map the requested codes onto 0..{C - 1} once each, got {codes}")
    if scale.shape != (C,) or threshold.shape != (C,):
        raise ValueError(f"scale and threshold must have C={C} entries")
    return ChannelMap(codes, scale, threshold)


def check_window(W: int) -> int:
    """The window size W (crystals) as an int in 1..280."""
    W = int(W)
    if not 1 <= W <= ECAL_N_IETA:
        raise ValueError(f"window size W={W} outside 1..{ECAL_N_IETA}")
    return W


def in_ieta_order(hits: CaloHits) -> bool:
    """Whether every event's hits are in non-decreasing ``ieta`` (as e2e's generator and CMSSW's collections write
    them): then a jet's kernels bisect the rows of hits near it instead of scanning the event (one check per
    batch, ~1 ns per hit)."""
    ieta = np.asarray(hits.ieta)
    if len(ieta) < 2:
        return True
    rising = np.diff(ieta) >= 0
    steps = np.asarray(hits.offsets[1:-1], dtype=np.int64) - 1  # from one event to the next does not count
    rising[steps[(steps >= 0) & (steps < len(rising))]] = True
    return bool(rising.all())
