"""Classical jet shapes from hits: calorimeter width and core fraction, PV-track observables, isolation."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from frameproducers.kernels.inputs import (
    CaloHits,
    CellCentres,
    JetAxes,
    ShapeTracks,
    check_jets,
    in_ieta_order,
    with_int64_offsets,
)
from frameproducers.kernels.params import frame_params, pool_for

#: Columns of :func:`fill_jet_shapes`.
SHAPE_NAMES: tuple[str, ...] = ("width", "core_fraction", "leading_track_fraction", "charged_multiplicity",
                                 "isolation", "n_displaced_tracks")  # fmt: skip


@njit(cache=True)
def _delta_r(eta1, phi1, eta2, phi2):
    """dR with dphi wrapped into [-pi, pi) (as simulation.validation._dr)."""
    dphi = _mod_two_pi(phi1 - phi2 + math.pi) - math.pi
    deta = eta1 - eta2
    return math.sqrt(deta * deta + dphi * dphi)


_TWO_PI = 2.0 * math.pi


@njit(inline="always", cache=True)
def _mod_two_pi(x):
    """``x % (2 pi)`` (Python's modulo, as numba computes it: fmod, then + 2 pi below 0; +0.0 for a zero) without
    the division for ``-2 pi <= x < 4 pi``, every difference of two angles in [-pi, pi] plus pi: there the modulo is
    x - 2 pi (exact), x + 2 pi (the same rounding) or x. Other values (NaN, inf, far angles) take the ``%``."""
    if (x >= -_TWO_PI) & (x < 2.0 * _TWO_PI):
        return x - _TWO_PI if x >= _TWO_PI else (x + _TWO_PI if x < 0.0 else x + 0.0)
    return x % _TWO_PI


@njit(inline="always", cache=True)
def _eta_band(hits, eta_centre, e, jeta, far, by_eta):
    """The hits ``[lo, hi)`` of event e that can have ``|eta - jeta| <= far``: all of them, or, when the event's
    hits are in ``ieta`` order (``by_eta``; the cell centres rise with ieta), the range between the two bisections
    of ``eta - jeta`` against ``-far`` and ``far`` (the same comparison as the loop's, so the same hits, in the
    same order; a NaN axis gives an empty range, as every hit would fail ``dR < cone``)."""
    lo = hits.offsets[e]
    hi = hits.offsets[e + 1]
    if not by_eta:
        return lo, hi
    first = _first_beyond(hits, eta_centre, lo, hi, jeta, -far, False)  # first with not (eta - jeta < -far)
    return first, _first_beyond(hits, eta_centre, first, hi, jeta, far, True)  # first with not (... <= far)


@njit(inline="always", cache=True)
def _first_beyond(hits, eta_centre, lo, hi, jeta, bound, inclusive):
    """The first hit m in ``[lo, hi)`` (eta rising) for which ``eta - jeta < bound`` (``<=`` when ``inclusive``)
    fails, else hi."""
    while lo < hi:
        m = (lo + hi) // 2
        d = eta_centre[hits.ieta[m]] - jeta
        if d < bound or (inclusive and d == bound):
            lo = m + 1
        else:
            hi = m
    return lo


@njit(inline="always", cache=True)
def _add_calo_cone(hits, eta_centre, phi_centre, e, jeta, jphi, cone, core, sums, annulus_is_isolation, by_eta):
    """Add the ET (GeV) of the cells of event e within dR < cone of the jet axis to ``sums`` = (sum ET,
    sum ET dR, sum ET in the core, isolation), the annulus core <= dR < cone to the isolation when
    ``annulus_is_isolation``; returns the new sums. ``by_eta``: see :func:`_eta_band`."""
    sum_et, sum_etdr, sum_core, iso = sums
    far = cone + 1e-9  # |delta eta| beyond this: dR >= cone whatever the rounding (skips the phi arithmetic)
    lo, hi = _eta_band(hits, eta_centre, e, jeta, far, by_eta)
    for q in range(lo, hi):
        eta = eta_centre[hits.ieta[q]]
        if abs(eta - jeta) > far:
            continue
        dr = _delta_r(eta, phi_centre[hits.iphi[q]], jeta, jphi)
        if dr < cone:
            et = np.float64(hits.energy[q]) / math.cosh(eta)
            sum_et += et
            sum_etdr += et * dr
            if dr < core:
                sum_core += et
            elif annulus_is_isolation:
                iso += et
    return sum_et, sum_etdr, sum_core, iso


@njit(parallel=True, cache=True)
def _fill_jet_shapes(out, jets, ecal, hcal, tracks, centres, par, ecal_by_eta, hcal_by_eta):
    """Shapes of every jet into ``out`` [n_jets, 6], parallel over jets."""
    cone = par[0].cone
    core = par[0].core
    track_pt_min = par[0].track_pt_min
    dz_max = par[0].dz_max
    d0sig_min = par[0].d0sig_min
    far = cone + 1e-9  # |delta eta| beyond this: dR >= cone whatever the rounding (skips the phi arithmetic)
    for j in prange(jets.event.shape[0]):
        e = jets.event[j]
        jeta = np.float64(jets.eta[j])
        jphi = np.float64(jets.phi[j])
        sums = (0.0, 0.0, 0.0, 0.0)
        sums = _add_calo_cone(
            ecal, centres.ecal_eta, centres.ecal_phi, e, jeta, jphi, cone, core, sums, True, ecal_by_eta
        )
        sums = _add_calo_cone(
            hcal, centres.hcal_eta, centres.hcal_phi, e, jeta, jphi, cone, core, sums, False, hcal_by_eta
        )
        sum_et, sum_etdr, sum_core, iso = sums
        lead = 0.0
        mult = 0
        ndisp = 0
        for q in range(tracks.offsets[e], tracks.offsets[e + 1]):
            pt = np.float64(tracks.pt[q])
            if not (pt > track_pt_min and abs(np.float64(tracks.dz[q])) < dz_max):
                continue
            teta = np.float64(tracks.eta[q])
            if abs(teta - jeta) > far:
                continue
            dr = _delta_r(teta, np.float64(tracks.phi[q]), jeta, jphi)
            if dr < cone:
                mult += 1
                lead = max(lead, pt)
                if abs(np.float64(tracks.d0sig[q])) > d0sig_min:
                    ndisp += 1
                if dr >= core:
                    iso += pt
        jpt = np.float64(jets.pt[j])
        out[j, 0] = sum_etdr / sum_et if sum_et > 0.0 else 0.0
        out[j, 1] = sum_core / sum_et if sum_et > 0.0 else 0.0
        out[j, 2] = lead / jpt if jpt > 0.0 else 0.0
        out[j, 3] = mult
        out[j, 4] = iso
        out[j, 5] = ndisp


def fill_jet_shapes(
    out: np.ndarray,
    jets: JetAxes,
    ecal: CaloHits,
    hcal: CaloHits,
    tracks: ShapeTracks,
    centres: CellCentres,
    cone: float = 0.4,
    core: float = 0.1,
    track_pt_min: float = 1.0,
    dz_max: float = 0.1,
    d0sig_min: float = 3.0,
) -> np.ndarray:
    """Classical jet shapes into ``out`` float32 [n_jets, 6], columns :data:`SHAPE_NAMES`; returns ``out``.

    dR to the jet axis (jet eta/phi) with dphi wrapped into [-pi, pi); hits at their cell centre
    (``centres``), ET = E / cosh(eta_centre) (GeV); PV tracks: pT > track_pt_min (GeV) and
    |dz| < dz_max (cm), direction = Track eta/phi.
    width = sum(ET dR) / sum(ET) over ECAL + HCAL cells with dR < cone (0 without ET);
    core_fraction = sum ET(dR < core) / sum ET(dR < cone) (0 without ET);
    leading_track_fraction = max pT of PV tracks in the cone / jet pT (0 without);
    charged_multiplicity = PV tracks in the cone; isolation (GeV) = sum pT of PV tracks + sum ET of ECAL
    hits, both in the annulus core <= dR < cone; n_displaced_tracks = PV tracks in the cone with
    |d0sig| > d0sig_min. Parallel over jets. Calorimeter hits in ieta order within each event (:func:`in_eta_order`,
    checked per call) are not scanned: each jet bisects the band of rows within the cone's eta (the same sums).
    """
    if out.ndim != 2 or out.shape != (len(jets.event), len(SHAPE_NAMES)) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 [n_jets, {len(SHAPE_NAMES)}], got {out.dtype} {out.shape}")
    event = check_jets(jets.event, None, None, ecal.offsets, hcal.offsets, tracks.offsets)
    centres = CellCentres(*(np.ascontiguousarray(a, dtype=np.float64) for a in centres))
    par = frame_params(
        cone=float(cone),
        core=float(core),
        track_pt_min=float(track_pt_min),
        dz_max=float(dz_max),
        d0sig_min=float(d0sig_min),
    )
    ecal, hcal = with_int64_offsets(ecal), with_int64_offsets(hcal)
    with pool_for(len(event)):
        _fill_jet_shapes(
            out,
            jets._replace(event=event),
            ecal,
            hcal,
            with_int64_offsets(tracks),
            centres,
            par,
            in_eta_order(ecal, centres.ecal_eta),
            in_eta_order(hcal, centres.hcal_eta),
        )
    return out


def in_eta_order(hits: CaloHits, eta_centre: np.ndarray) -> bool:
    """:func:`~frameproducers.kernels.inputs.in_ieta_order`, with every ieta a cell whose centre rises with ieta:
    a jet's shapes then bisect the band of hits near its eta instead of scanning the event's hits."""
    ieta = np.asarray(hits.ieta)
    if len(ieta) and (ieta.min() < 0 or ieta.max() >= len(eta_centre) or not np.all(np.diff(eta_centre) > 0)):
        return False
    return in_ieta_order(hits)
