"""Hit-level graph nodes: the tracks, ECAL crystals, HCAL towers and tracker hits in each jet's window.

Window: W x W ECAL crystals, h = W // 2; crystal (ieta, iphi) is at (r, c) = (ieta - seed_ieta + h,
(iphi - seed_iphi + h) mod 360) and inside when 0 <= r, c < W (phi wraps, eta does not). Nodes of a jet, in this
order, each type ranked and capped:

- tracks whose ECAL-face crystal is inside (``ecal_ieta >= 0``), pT > track_pt_min (GeV) and |dz| < dz_max (cm;
  both compared in float64): the ``max_tracks`` of highest pT;
- ECAL crystals inside with E > ecal_threshold (GeV): the ``max_ecal`` of highest energy;
- HCAL towers whose centre crystal (5 ti + 2, 5 tp + 2) is inside with E > hcal_threshold: the ``max_hcal`` of
  highest energy;
- tracker hits inside on a layer of ``layer_mask`` (bit L: TrackerHit layer L): the ``max_tracker_hits`` nearest
  to the seed crystal ((r - h)^2 + (c - h)^2 in crystals).

Ties (equal pT, energy or distance) keep the lower hit index first. Features (:data:`HIT_FEATURES`, float32,
computed in float64 and rounded once): one-hot type; ``log_e`` = ln(pT or E / GeV) (tracker hits 0); ``e_frac`` =
pT or E over the jet pT (0 for tracker hits and jets with pT <= 0); track ``d0``, ``dz`` (cm), ``d0sig``,
``dzsig`` clipped to +-ipsig_clip, ``charge`` (0 for the other types); ``layer`` = (L + 1) / 8 for tracker hits;
``delta_eta``, ``delta_phi`` (rad) from the seed crystal centre: tracks their own (eta, phi) at the primary vertex,
delta_phi wrapped into [-pi, pi); the others their crystal's row centre (``eta_centre``) and (c - h) 2 pi / 360,
exactly as the pixel graph nodes (frameproducers.kernels.nodes).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from dataformats.geometry import CRYSTALS_PER_TOWER, ECAL_N_IETA, ECAL_N_IPHI, TRACKER_LAYER_NAMES
from frameproducers.kernels.inputs import (
    CaloHits,
    HitJets,
    NodeTracks,
    TrackerHits,
    check_jets,
    check_window,
    in_ieta_order,
    with_int64_offsets,
)
from frameproducers.kernels.jit import no_refcount
from frameproducers.kernels.knn_select import BUCKETS, select_smallest
from frameproducers.kernels.params import n_chunks, pool_for

#: Node feature columns of :func:`build_hit_nodes`.
HIT_FEATURES: tuple[str, ...] = ("is_track", "is_ecal", "is_hcal", "is_tracker_hit", "log_e", "e_frac", "d0",
                                 "d0sig", "dz", "dzsig", "charge", "layer", "delta_eta", "delta_phi")  # fmt: skip
#: Node types, in node order (the one-hot columns 0..3).
HIT_TYPES: tuple[str, ...] = ("tracks", "ecal", "hcal", "tracker_hits")

HIT_PARAM_FIELDS: tuple[tuple[str, type], ...] = (
    ("window", np.int64),  # W: window size in crystals (W x W centred on the seed, h = W // 2)
    ("track_pt_min", np.float64),  # GeV: tracks need pT above this
    ("dz_max", np.float64),  # cm: tracks need |dz| below this (inf: no cut, RHTree track sums)
    ("ecal_threshold", np.float64),  # GeV: ECAL crystals need E above this
    ("hcal_threshold", np.float64),  # GeV: HCAL towers need E above this
    ("max_tracks", np.int64),  # caps per type (0: none of that type)
    ("max_ecal", np.int64),
    ("max_hcal", np.int64),
    ("max_tracker_hits", np.int64),
    ("layer_mask", np.int64),  # bit L set: tracker hits of layer L are nodes
    ("ipsig_clip", np.float64),  # d0sig / dzsig clipped to +-ipsig_clip
)
#: The settings of :func:`build_hit_nodes` as one numpy record (``par[0].<field>``, as FRAME_PARAM_DTYPE).
HIT_PARAM_DTYPE = np.dtype(list(HIT_PARAM_FIELDS), align=True)
_NAMES = tuple(name for name, _ in HIT_PARAM_FIELDS)

_F = len(HIT_FEATURES)
_LOG_E, _E_FRAC, _D0, _D0SIG, _DZ, _DZSIG, _CHARGE, _LAYER, _DETA, _DPHI_COL = range(4, _F)
_TRACK, _ECAL, _HCAL, _TRACKER = 0, 1, 2, 3
_NPHI = ECAL_N_IPHI
_CPT = CRYSTALS_PER_TOWER
_DPHI = 2.0 * math.pi / ECAL_N_IPHI  # rad per ECAL column
_N_LAYERS = len(TRACKER_LAYER_NAMES)
_COUNT, _FILL = 0, 1


def hit_node_params(**values: float) -> np.ndarray:
    """A one-element :data:`HIT_PARAM_DTYPE` array with the given fields set (the others 0)."""
    par = np.zeros(1, HIT_PARAM_DTYPE)
    for name, value in values.items():
        if name not in _NAMES:
            raise ValueError(f"'{name}' is not a field of HIT_PARAM_DTYPE: {', '.join(_NAMES)}")
        par[name] = value
    return par


@njit(inline="always", cache=True)
def _column(iphi, col0):
    """Window column of ECAL column ``iphi`` (col0 = seed_iphi - h, in -140..359): wrapped into 0..359, without a
    branch (the selections compute it for every hit they visit)."""
    c = np.int64(iphi) - col0
    return c + _NPHI * np.int64(c < 0) - _NPHI * np.int64(c >= _NPHI)


@njit(inline="always", cache=True)
def _inside(r, c, W):
    """Whether window row r and column c (already wrapped, 0..359) are inside: a value, not a branch."""
    return (r >= 0) & (r < W) & (c < W)


@njit(cache=True, error_model="numpy")  # (select_smallest divides by a value range that may be 0: inf, checked)
def _smallest_of(cand, n, cap, kv, ki, scratch):
    """The hits ``cand[s]`` of the ``cap`` smallest ``row[s]``, ``s < n`` (``row``: the first of ``scratch``), in
    ascending order, ties to the lower s (the lower hit index: ``cand`` ascends), into ki; returns the count. By
    :func:`~frameproducers.kernels.knn_select.select_smallest`'s value buckets and ranks: the same choice and order
    as inserting each hit into a sorted top list, without its ~n mispredicted insertions (node selection 1.07x)."""
    row, hist, cv, ci, pos = scratch
    cnt = select_smallest(row, n, -1, cap, kv, pos, hist, cv, ci, np.inf)
    for s in range(cnt):
        ki[s] = cand[pos[s]]
    return cnt


@njit(inline="always", cache=True)
def _keep_top_of(cand, n, values, cap, kv, ki, scratch):
    """The ``cap`` largest ``values[q]`` over the hits ``q`` in ``cand[:n]`` (ascending), largest first, ties to the
    lower q: hit indices in ki; returns the count."""
    row = scratch[0]
    for s in range(n):
        row[s] = -np.float64(values[cand[s]])
    return _smallest_of(cand, n, cap, kv, ki, scratch)


@njit(inline="always", cache=True)
def _select_tracks(tracks, e, row0, col0, W, pt_min, dz_max, cap, kv, ki, cand, scratch):
    """The ``cap`` highest-pT selected tracks of event e in the window: hit indices in ki; returns the count.
    ``cand``: scratch for the indices that pass (at least the event's track count)."""
    if cap == 0:
        return np.int64(0)
    n = 0
    for q in range(tracks.offsets[e], tracks.offsets[e + 1]):  # the cuts without a branch, the passing hits kept
        i = np.int64(tracks.ieta[q])
        ok = (i >= 0) & _inside(i - row0, _column(tracks.iphi[q], col0), W)
        ok &= (np.float64(tracks.pt[q]) > pt_min) & (abs(np.float64(tracks.dz[q])) < dz_max)
        cand[n] = q
        n += ok
    return _keep_top_of(cand, n, tracks.pt, cap, kv, ki, scratch)


@njit(inline="always", cache=True)
def _select_calo(hits, e, mult, shift, row0, col0, W, threshold, cap, kv, ki, by_ieta, cand, scratch):
    """The ``cap`` highest-energy cells of event e above ``threshold`` whose crystal (ieta * mult + shift,
    iphi * mult + shift) is in the window: hit indices in ki; returns the count. ``by_ieta`` (the event's hits in
    ieta order): only the hits of the window's rows are visited, found by bisection (the same hits in the same
    order as the scan, so the same choice). ``cand``: scratch for the indices that pass (the event's hit count)."""
    if cap == 0:
        return np.int64(0)
    lo = hits.offsets[e]
    hi = hits.offsets[e + 1]
    if by_ieta:
        lo = _first_row_at_least(hits, lo, hi, mult, shift - row0, 0)
        hi = _first_row_at_least(hits, lo, hi, mult, shift - row0, W)
    n = 0
    for q in range(lo, hi):  # the cuts without a branch (~20 % of the hits pass, in no order), the passing kept
        r = np.int64(hits.ieta[q]) * mult + shift - row0
        c = _column(np.int64(hits.iphi[q]) * mult + shift, col0)
        cand[n] = q
        n += _inside(r, c, W) & (np.float64(hits.energy[q]) > threshold)
    return _keep_top_of(cand, n, hits.energy, cap, kv, ki, scratch)


@njit(inline="always", cache=True)
def _first_row_at_least(hits, lo, hi, mult, offset, row):
    """The first hit q in ``[lo, hi)`` (in ieta order) with ``ieta * mult + offset >= row``, else hi."""
    while lo < hi:
        m = (lo + hi) // 2
        if np.int64(hits.ieta[m]) * mult + offset < row:
            lo = m + 1
        else:
            hi = m
    return lo


#: distinct (layer, ieta, iphi) places of tracker hits: the tie-breaking part of their ranking key
_PLACES = np.int64(64 * 512 * 512)


@njit(inline="always", cache=True)
def _select_tracker(tracker, e, row0, col0, W, layer_mask, cap, kv, ki, by_layer, cand, scratch):
    """The ``cap`` tracker hits of event e on the layers of ``layer_mask`` nearest to the window centre, ties by
    (layer, ieta, iphi) whatever the hits' order in the file: hit indices in ki, nearest first; returns the count.
    ``by_layer`` (the event's hits in (layer, ieta) order, as e2e's generator writes them): only the window's rows of
    each chosen layer are visited, found by bisection (the same hits as the scan, so the same choice). ``cand``:
    scratch for the indices that pass (the event's hit count).
    """
    if cap == 0 or layer_mask == 0:
        return np.int64(0)
    h = W // 2
    lo = tracker.offsets[e]
    hi = tracker.offsets[e + 1]
    n = 0
    if by_layer:
        for layer in range(64):
            if (layer_mask >> layer) & 1:
                a = _first_at_least_in_layer(tracker, lo, hi, layer, row0)
                b = _first_at_least_in_layer(tracker, a, hi, layer, row0 + W)
                for q in range(a, b):  # in the window's rows: the column decides (without a branch)
                    cand[n] = q
                    n += _column(tracker.iphi[q], col0) < W
    else:
        for q in range(lo, hi):  # the cuts without a branch, the passing kept
            layer = np.int64(tracker.layer[q])
            on = (layer >= 0) & (layer < 64) & (((layer_mask >> (layer & 63)) & 1) == 1)
            cand[n] = q
            n += on & _inside(np.int64(tracker.ieta[q]) - row0, _column(tracker.iphi[q], col0), W)
    row = scratch[0]
    for s in range(n):
        q = cand[s]
        r = np.int64(tracker.ieta[q]) - row0
        c = _column(tracker.iphi[q], col0)
        # the squared distance in crystals, ties (common on the integer grid) by (layer, ieta, iphi), not by the
        # hits' order in the file: an integer below 2^37, exact in float64 (layer < 64, ieta and iphi < 512)
        place = (np.int64(tracker.layer[q]) * 512 + np.int64(tracker.ieta[q])) * 512 + np.int64(tracker.iphi[q])
        row[s] = np.float64(((r - h) * (r - h) + (c - h) * (c - h)) * _PLACES + place)
    return _smallest_of(cand, n, cap, kv, ki, scratch)


@njit(inline="always", cache=True)
def _first_at_least_in_layer(tracker, lo, hi, layer, row):
    """The first hit q in ``[lo, hi)`` (in (layer, ieta) order) with ``(layer[q], ieta[q]) >= (layer, row)``, else
    hi."""
    while lo < hi:
        m = (lo + hi) // 2
        lm = np.int64(tracker.layer[m])
        if lm < layer or (lm == layer and np.int64(tracker.ieta[m]) < row):
            lo = m + 1
        else:
            hi = m
    return lo


@njit(cache=True)
def _in_layer_order(tracker, e):
    """Whether the tracker hits of event e are in non-decreasing (``layer``, ``ieta``) (as e2e's generator writes
    them): one pass without a branch (vectorised), made when a chunk reaches the event's first jet."""
    downs = 0
    for q in range(tracker.offsets[e] + 1, tracker.offsets[e + 1]):
        a, b = np.int64(tracker.layer[q - 1]), np.int64(tracker.layer[q])
        downs += np.int64((b < a) | ((b == a) & (np.int64(tracker.ieta[q]) < np.int64(tracker.ieta[q - 1]))))
    return downs == 0


@njit(inline="always", cache=True)
def _start_row(x, pos, pixel, k, kind, r, c, W, deta, dphi):
    """Node k of type ``kind`` at window crystal (r, c): one-hot, zero features, (delta_eta, delta_phi), pos, pixel."""
    h = W // 2
    for f in range(_F):
        x[k, f] = 0.0
    x[k, kind] = 1.0
    x[k, _DETA] = deta
    x[k, _DPHI_COL] = dphi
    pos[k, 0] = r - h
    pos[k, 1] = c - h
    pixel[k] = r * W + c


@njit(inline="always", cache=True)
def _energy_features(x, k, value, jet_pt):
    """log_e and e_frac of node k from its pT or energy ``value`` (GeV, float64)."""
    x[k, _LOG_E] = math.log(value)
    x[k, _E_FRAC] = value / jet_pt if jet_pt > 0.0 else 0.0


@njit(inline="always", cache=True)
def _clip(v, lim):
    return min(max(v, -lim), lim)


@njit(inline="always", cache=True)
def _chosen(fill, j, t, base, chosen, n_chosen, m, ki):
    """Count pass: record the ``m`` hits chosen for jet j's node type t (ki) from column ``base``; returns m. Fill
    pass: the count recorded then (the hits are read back from ``chosen``, not selected a second time)."""
    if fill:
        return n_chosen[j, t]
    for s in range(m):
        chosen[j, base + s] = ki[s]
    n_chosen[j, t] = m
    return m


@njit(inline="always", cache=True)
def _calo_nodes(fill, k0, x, pos, pixel, kind, hits, e, mult, shift, row0, col0, W, threshold, cap, eta_centre, eta0,
                jet_pt, kv, ki, j, base, chosen, n_chosen, by_ieta, cand, scratch):  # fmt: skip
    """Select the ECAL (or HCAL: mult 5, shift 2) nodes of a jet in event e (count pass) or write the ones chosen
    then from row k0 (fill pass); returns their count."""
    m = 0 if fill else _select_calo(hits, e, mult, shift, row0, col0, W, threshold, cap, kv, ki, by_ieta, cand,
                                    scratch)  # fmt: skip
    m = _chosen(fill, j, kind, base, chosen, n_chosen, m, ki)
    if fill:
        h = W // 2
        for s in range(m):
            q = chosen[j, base + s]
            k = k0 + s
            r = np.int64(hits.ieta[q]) * mult + shift - row0
            c = _column(np.int64(hits.iphi[q]) * mult + shift, col0)
            _start_row(x, pos, pixel, k, kind, r, c, W, eta_centre[row0 + r] - eta0, (c - h) * _DPHI)
            _energy_features(x, k, np.float64(hits.energy[q]), jet_pt)
    return m


@no_refcount
def _jet_nodes(mode, j, k0, x, pos, pixel, jets, ecal, hcal, tracks, tracker, par, eta_centre, kv, ki, chosen,
               n_chosen, by_ieta, by_layer, cand, scratch):  # fmt: skip
    """Mode _COUNT: select the nodes of jet j, record them in ``chosen`` / ``n_chosen``; mode _FILL: write the
    recorded nodes from row k0. Returns the node count. ``by_layer``: the event's tracker hits are in (layer,
    ieta) order (:func:`_in_layer_order`); ``cand``, ``scratch``: the selections' scratch (count mode)."""
    p = par[0]
    W = p.window
    h = W // 2
    e = jets.event[j]
    seed_ieta = np.int64(jets.ieta[j])
    seed_iphi = np.int64(jets.iphi[j])
    row0 = seed_ieta - h
    col0 = seed_iphi - h
    eta0 = eta_centre[seed_ieta]
    phi0 = -math.pi + (np.float64(seed_iphi) + 0.5) * _DPHI
    jet_pt = np.float64(jets.pt[j])
    fill = mode == _FILL
    unit, zero, tower, centre = np.int64(1), np.int64(0), np.int64(_CPT), np.int64(_CPT // 2)
    n = np.int64(0)

    b_ecal = p.max_tracks
    b_hcal = b_ecal + p.max_ecal
    b_tracker = b_hcal + p.max_hcal
    m = 0 if fill else _select_tracks(tracks, e, row0, col0, W, p.track_pt_min, p.dz_max, p.max_tracks, kv, ki, cand,
                                      scratch)  # fmt: skip
    m = _chosen(fill, j, _TRACK, 0, chosen, n_chosen, m, ki)
    if fill:
        for s in range(m):
            q = chosen[j, s]
            k = k0 + n + s
            r = np.int64(tracks.ieta[q]) - row0
            c = _column(tracks.iphi[q], col0)
            dphi = np.float64(tracks.phi[q]) - phi0
            if dphi >= math.pi:
                dphi -= 2.0 * math.pi
            elif dphi < -math.pi:
                dphi += 2.0 * math.pi
            _start_row(x, pos, pixel, k, _TRACK, r, c, W, np.float64(tracks.eta[q]) - eta0, dphi)
            _energy_features(x, k, np.float64(tracks.pt[q]), jet_pt)
            x[k, _D0] = tracks.d0[q]
            x[k, _D0SIG] = _clip(np.float64(tracks.d0sig[q]), p.ipsig_clip)
            x[k, _DZ] = tracks.dz[q]
            x[k, _DZSIG] = _clip(np.float64(tracks.dzsig[q]), p.ipsig_clip)
            x[k, _CHARGE] = tracks.charge[q]
    n += m

    n += _calo_nodes(fill, k0 + n, x, pos, pixel, _ECAL, ecal, e, unit, zero, row0, col0, W, p.ecal_threshold,
                     p.max_ecal, eta_centre, eta0, jet_pt, kv, ki, j, b_ecal, chosen, n_chosen, by_ieta[0],
                     cand, scratch)  # fmt: skip
    n += _calo_nodes(fill, k0 + n, x, pos, pixel, _HCAL, hcal, e, tower, centre, row0, col0, W, p.hcal_threshold,
                     p.max_hcal, eta_centre, eta0, jet_pt, kv, ki, j, b_hcal, chosen, n_chosen, by_ieta[1],
                     cand, scratch)  # fmt: skip

    cap = p.max_tracker_hits
    m = 0 if fill else _select_tracker(tracker, e, row0, col0, W, p.layer_mask, cap, kv, ki, by_layer, cand,
                                       scratch)  # fmt: skip
    m = _chosen(fill, j, _TRACKER, b_tracker, chosen, n_chosen, m, ki)
    if fill:
        for s in range(m):
            q = chosen[j, b_tracker + s]
            k = k0 + n + s
            r = np.int64(tracker.ieta[q]) - row0
            c = _column(tracker.iphi[q], col0)
            _start_row(x, pos, pixel, k, _TRACKER, r, c, W, eta_centre[row0 + r] - eta0, (c - h) * _DPHI)
            x[k, _LAYER] = (np.float64(tracker.layer[q]) + 1.0) / _N_LAYERS
    return n + m


@njit(cache=True)
def _hit_nodes_of_chunk(mode, j0, j1, offs, x, pos, pixel, jets, ecal, hcal, tracks, tracker, par, eta_centre, chosen,
                        n_chosen, by_ieta, most_hits):  # fmt: skip
    """Jets j0..j1-1 of :func:`_hit_nodes` with one ranking scratch (and one of ``most_hits`` candidates)."""
    p = par[0]
    cap = max(1, p.max_tracks, p.max_ecal, p.max_hcal, p.max_tracker_hits)
    kv = np.empty(cap, np.float64)
    ki = np.empty(cap, np.int64)
    n_cand = most_hits if mode == _COUNT else 0
    cand = np.empty(n_cand, np.int64)
    scratch = (np.empty(n_cand, np.float64), np.empty(BUCKETS + 1 + n_cand, np.int64), np.empty(n_cand, np.float64),
               np.empty(n_cand, np.int64), np.empty(cap, np.int64))  # fmt: skip
    event = np.int64(-1)
    by_layer = False
    for j in range(j0, j1):
        k0 = offs[j] if mode == _FILL else np.int64(0)
        if mode == _COUNT and jets.event[j] != event and p.max_tracker_hits > 0 and p.layer_mask != 0:  # once per event
            event = jets.event[j]
            by_layer = _in_layer_order(tracker, event)
        n = _jet_nodes(mode, j, k0, x, pos, pixel, jets, ecal, hcal, tracks, tracker, par, eta_centre, kv, ki, chosen,
                       n_chosen, by_ieta, by_layer, cand, scratch)  # fmt: skip
        if mode == _COUNT:
            offs[j] = n


@njit(parallel=True, cache=True)
def _hit_nodes(mode, offs, x, pos, pixel, nch, jets, ecal, hcal, tracks, tracker, par, eta_centre, chosen, n_chosen,
               by_ieta, most_hits):  # fmt: skip
    """Every jet, parallel over ``nch`` chunks of consecutive jets (named tuples only pass through the prange
    body, numba#7135). _COUNT: select jet j's nodes (hit indices into chosen[j], counts per type into
    n_chosen[j]) and set offs[j] = their count; _FILL: write them from row offs[j]."""
    n_jets = jets.event.shape[0]
    for t in prange(nch):
        _hit_nodes_of_chunk(mode, t * n_jets // nch, (t + 1) * n_jets // nch, offs, x, pos, pixel, jets, ecal, hcal,
                            tracks, tracker, par, eta_centre, chosen, n_chosen, by_ieta, most_hits)  # fmt: skip


def build_hit_nodes(
    jets: HitJets,
    ecal: CaloHits,
    hcal: CaloHits,
    tracks: NodeTracks,
    tracker: TrackerHits,
    par: np.ndarray,
    eta_centre: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hit-level graph nodes of every jet (module docstring), parallel over chunks of jets: select and count, then
    fill (the hits chosen in the first pass are kept, int64 per node slot and jet, not selected again). Each
    selection applies its cuts without branches and ranks the hits that pass; calorimeter hits in ieta order and
    tracker hits in (layer, ieta) order (e2e's files; checked per batch and per event) are bisected to the window's
    rows instead of scanned: the same nodes either way.

    ``par``: :func:`hit_node_params` (window 1..280, caps >= 0); ``eta_centre`` float64 [280]: ECAL row centres
    (geometry.ecal_eta). Returns ``node_offsets`` int64 [n_jets + 1], ``x`` float32 [N, 14] (:data:`HIT_FEATURES`),
    ``pos`` float32 [N, 2] = (r - h, c - h) (crystals from the seed) and ``pixel`` int32 [N] = r * W + c.
    """
    par = np.asarray(par)
    if par.dtype != HIT_PARAM_DTYPE or par.shape != (1,):
        raise ValueError("par must be a one-element HIT_PARAM_DTYPE array (hit_node_params)")
    check_window(int(par[0]["window"]))
    caps = ("max_tracks", "max_ecal", "max_hcal", "max_tracker_hits")
    if min(int(par[0][c]) for c in caps) < 0:
        raise ValueError(f"{', '.join(caps)} must be >= 0")
    ecal, hcal = with_int64_offsets(ecal), with_int64_offsets(hcal)
    tracks, tracker = with_int64_offsets(tracks), with_int64_offsets(tracker)
    event = check_jets(jets.event, jets.ieta, jets.iphi, ecal.offsets, hcal.offsets, tracks.offsets, tracker.offsets)
    if len(jets.pt) != len(event):
        raise ValueError(f"jet pt must have one entry per jet ({len(event)})")
    jets = jets._replace(event=event)
    eta_centre = np.ascontiguousarray(eta_centre, dtype=np.float64)
    if eta_centre.shape != (ECAL_N_IETA,):
        raise ValueError(f"eta_centre must have {ECAL_N_IETA} entries")
    n_jets = len(event)
    nch = n_chunks(n_jets)
    counts = np.zeros(n_jets, np.int64)
    none = np.zeros((0, _F), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.int32)
    chosen = np.empty((n_jets, max(1, sum(int(par[0][c]) for c in caps))), np.int64)  # the count pass's choice
    n_chosen = np.zeros((n_jets, len(HIT_TYPES)), np.int64)
    by_ieta = (in_ieta_order(ecal), in_ieta_order(hcal))  # bisect the window's rows instead of scanning
    most = max([int(np.diff(c.offsets).max(initial=0)) for c in (ecal, hcal, tracks, tracker)])  # hits in one event
    with pool_for(n_jets):
        _hit_nodes(_COUNT, counts, *none, nch, jets, ecal, hcal, tracks, tracker, par, eta_centre, chosen, n_chosen,
                   by_ieta, most)  # fmt: skip
        node_offsets = np.zeros(n_jets + 1, np.int64)
        np.cumsum(counts, out=node_offsets[1:])
        n = int(node_offsets[-1])
        x, pos, pixel = np.empty((n, _F), np.float32), np.empty((n, 2), np.float32), np.empty(n, np.int32)
        _hit_nodes(_FILL, node_offsets, x, pos, pixel, nch, jets, ecal, hcal, tracks, tracker, par, eta_centre, chosen,
                   n_chosen, by_ieta, 0)  # fmt: skip
    return node_offsets, x, pos, pixel


__all__ = ["HIT_FEATURES", "HIT_TYPES", "HIT_PARAM_DTYPE", "hit_node_params", "build_hit_nodes"]
