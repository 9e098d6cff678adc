"""Numba kernels of the frame producers: jet images, jet graphs (nodes, kNN / radius edges) and jet shapes.

Data layout (every kernel takes plain numpy arrays): a batch of events, each hit collection as flat arrays
plus ``offsets`` int64 [n_events + 1] (the hits of event e are ``offsets[e]:offsets[e + 1]``, in any order);
jets as ``jet_event`` int64 [n_jets] (event index) and ``seed_ieta``, ``seed_iphi`` (ECAL crystal of the
frame centre, any integer dtype; int16 as on disk). The hit arrays are read in their on-disk dtypes
(ieta/iphi int16, energies/momenta float32, layer uint8): no copies.

Channel configuration: ``channel_of_code`` int64 [13]: output channel of each channel code of
:mod:`frameproducers.channels` (-1: not requested; any subset in any order), ``scale`` float32 [C] and
``threshold`` float32 [C] (unscaled units: GeV, cm, counts).

Window: W x W crystals, h = W // 2. Pixel (r, c) is ECAL row ``seed_ieta - h + r`` and column
``(seed_iphi - h + c) mod 360``: phi wraps, rows outside 0..279 stay empty.
Contributions: ECAL hit -> ``ecal`` += E (GeV); HCAL tower (ti, tp) -> ``hcal``: E/25 to each crystal
(5 ti + a, 5 tp + b), a, b in 0..4 when ``hcal_upsample``, else all of E to crystal (5 ti + 2, 5 tp + 2);
track with ``track_ieta >= 0`` -> ``track_pt`` += pT and, when |dz| < dz_max (cm, compared in float64),
``track_d0`` += d0v, ``track_dz`` += dzv; tracker hit of layer L -> channel code 5 + L += 1.
Each contribution is multiplied by ``scale[c]`` and summed in float32 in input order (ECAL, HCAL, tracks,
tracker hits; hits in collection order); then a pixel with |value| <= threshold[c] * |scale[c]| (float32)
is set to 0.

Graph nodes are the window pixels where at least one channel is non-zero (ascending pixel index
p = r * W + c); edges come from kNN / radius searches on the pixel coordinates or on the node features.
No fastmath anywhere: the kernels reproduce the slow references of tests/frame_references.py.

The public functions are thin Python wrappers: they check shapes, the channel configuration and the jets
(events and seeds in range) and call the parallel ``@njit`` kernels. Hit indices must be on their grids
(dataformats.schema validates them on reading); the kernels do no bounds checks.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import get_num_threads, njit, prange

from dataformats.geometry import CRYSTALS_PER_TOWER, ECAL_N_IETA, ECAL_N_IPHI
from frameproducers.channels import CHANNEL_CODE, FIRST_LAYER_CODE, N_CHANNEL_CODES

__all__ = [
    "SHAPE_NAMES",
    "fill_jet_images",
    "build_graph_nodes",
    "knn_pixels",
    "knn_features",
    "radius_pixels",
    "edge_index_from_neighbors",
    "brute_force_knn_pixels",
    "fill_jet_shapes",
]

#: Columns of :func:`fill_jet_shapes`.
SHAPE_NAMES: tuple[str, ...] = (
    "width",
    "core_fraction",
    "leading_track_fraction",
    "charged_multiplicity",
    "isolation",
    "n_displaced_tracks",
)

_NPHI = ECAL_N_IPHI
_CPT = CRYSTALS_PER_TOWER
_CODE_TRACK_PT = CHANNEL_CODE["track_pt"]
_CODE_TRACK_D0 = CHANNEL_CODE["track_d0"]
_CODE_TRACK_DZ = CHANNEL_CODE["track_dz"]
_CODE_ECAL = CHANNEL_CODE["ecal"]
_CODE_HCAL = CHANNEL_CODE["hcal"]
_FIRST_LAYER = FIRST_LAYER_CODE
_N_LAYERS = N_CHANNEL_CODES - FIRST_LAYER_CODE
_DPHI = 2.0 * math.pi / ECAL_N_IPHI  # rad per ECAL column
#: kNN / radius keys: (squared distance << _SHIFT) | local node index; local index < W*W <= 2**17.
_SHIFT = 32
_LOCAL_MASK = (1 << _SHIFT) - 1
#: kNN strategy per graph: at most _SMALL_GRAPH nodes: all pairs; occupancy (nodes / W^2) >= _DENSE_OCCUPANCY:
#: distance-ordered offsets on a dense grid; otherwise tiles and blocks (see _knn_sparse_graph).
_SMALL_GRAPH = 24
_DENSE_OCCUPANCY = 0.16
#: Sparse graphs: a 3S x 3S block around an S x S tile holds ~_BLOCK_NODES * k nodes on average.
_BLOCK_NODES = 5.0
#: Sparse graphs: the candidates kept for the final sort exceed k by at most this (fewer bisection steps).
_SELECT_SLACK = 2


def _n_chunks(n: int) -> int:
    """Number of work chunks for ``n`` items: a few per numba thread (load balance), each reusing its scratch."""
    return max(1, min(n, 8 * get_num_threads()))


@njit(cache=True)
def _mask_cells(ieta, iphi, mult, shift, row0, col0, W, mask, pix):
    """Vectorisable: mask[q] = 1 when crystal (ieta * mult + shift, iphi * mult + shift) lies in the window
    (rows row0.., columns col0.. modulo 360, W x W) and ieta >= 0; pix[q] = its pixel r * W + c."""
    w = np.uint32(W)
    w32 = np.int32(W)
    m32 = np.int32(mult)
    r0 = np.int32(row0) - np.int32(shift)
    c0 = np.int32(col0) - np.int32(shift)
    for q in range(ieta.shape[0]):
        i = np.int32(ieta[q])
        r = i * m32 - r0
        c = np.int32(iphi[q]) * m32 - c0
        c = c + np.int32(_NPHI) if c < 0 else c
        c = c - np.int32(_NPHI) if c >= np.int32(_NPHI) else c
        mask[q] = (i >= 0) & (np.uint32(r) < w) & (np.uint32(c) < w)
        pix[q] = r * w32 + c


@njit(cache=True)
def _mask_towers(ieta, iphi, row0, col0, W, mask, pix):
    """Vectorisable: mask[q] = 1 when any crystal of HCAL tower (ieta, iphi) lies in the window;
    pix[q] = top-left crystal (rt, ct) packed as rt * 512 + ct, ct wrapped into [0, 360)."""
    w = np.uint32(W + _CPT - 1)
    r0 = np.int32(row0)
    c0 = np.int32(col0)
    for q in range(ieta.shape[0]):
        rt = np.int32(ieta[q]) * np.int32(_CPT) - r0
        ct = np.int32(iphi[q]) * np.int32(_CPT) - c0
        ct = ct + np.int32(_NPHI) if ct < 0 else ct
        ct = ct - np.int32(_NPHI) if ct >= np.int32(_NPHI) else ct
        mask[q] = (np.uint32(rt + np.int32(_CPT - 1)) < w) & ((ct < np.int32(W)) | (ct > np.int32(_NPHI - _CPT)))
        pix[q] = rt * np.int32(512) + ct


@njit(cache=True)
def _accumulate_window(buf, flag, touched, mask, pix, e, seed_ieta, seed_iphi, W,
                       ecal_offsets, ecal_ieta, ecal_iphi, ecal_energy,
                       hcal_offsets, hcal_ieta, hcal_iphi, hcal_energy,
                       track_offsets, track_ieta, track_iphi, track_pt, track_d0v, track_dzv, track_dz,
                       th_offsets, th_layer, th_ieta, th_iphi,
                       channel_of_code, scale, dz_max, hcal_upsample):
    """Add the hits of event ``e`` that fall in the W x W window of seed (seed_ieta, seed_iphi) to ``buf``
    [C, W*W] (float32, scaled, in input order). When ``flag`` is non-empty, each newly touched pixel is
    appended to ``touched`` (``flag[p]`` = 1 marks it); returns the touched count. Each collection is first
    filtered by a vectorised window test into ``mask`` / ``pix`` (scratch of at least the largest collection
    of an event, rounded up to 8 bytes), then only the 8-hit words with a hit in the window are visited.
    """
    h = W // 2
    row0 = np.int32(seed_ieta) - np.int32(h)
    col0 = np.int32(seed_iphi) - np.int32(h)
    record = flag.shape[0] > 0
    m64 = mask.view(np.uint64)
    n_t = np.int64(0)
    # crystal = tower * mult + shift: (1, 0) for ECAL-grid hits, (5, 2) for HCAL towers (non-literal: one compile)
    unit, zero, tower, centre = np.int64(1), np.int64(0), np.int64(_CPT), np.int64(_CPT // 2)

    # ECAL: one crystal per hit
    ch = channel_of_code[_CODE_ECAL]
    lo = ecal_offsets[e]
    n = ecal_offsets[e + 1] - lo
    if ch >= 0 and n > 0:
        s = scale[ch]
        m64[(n - 1) >> 3] = 0  # mask bytes beyond n read as 0 by the word scan
        _mask_cells(ecal_ieta[lo:lo + n], ecal_iphi[lo:lo + n], unit, zero, row0, col0, W, mask[:n], pix[:n])
        for wq in range((n + 7) >> 3):
            if m64[wq] == 0:
                continue
            for q in range(wq << 3, min((wq << 3) + 8, n)):
                if mask[q]:
                    p = np.int64(pix[q])
                    buf[ch, p] += ecal_energy[lo + q] * s
                    if record and flag[p] == 0:  # first touch (written out: a call costs more than this)
                        flag[p] = 1
                        touched[n_t] = p
                        n_t += 1

    # HCAL: a tower covers 5 x 5 crystals
    ch = channel_of_code[_CODE_HCAL]
    lo = hcal_offsets[e]
    n = hcal_offsets[e + 1] - lo
    if ch >= 0 and n > 0:
        s = scale[ch]
        m64[(n - 1) >> 3] = 0  # mask bytes beyond n read as 0 by the word scan
        if hcal_upsample:
            _mask_towers(hcal_ieta[lo:lo + n], hcal_iphi[lo:lo + n], row0, col0, W, mask[:n], pix[:n])
        else:
            _mask_cells(hcal_ieta[lo:lo + n], hcal_iphi[lo:lo + n], tower, centre, row0, col0, W, mask[:n],
                        pix[:n])
        for wq in range((n + 7) >> 3):
            if m64[wq] == 0:
                continue
            for q in range(wq << 3, min((wq << 3) + 8, n)):
                if not mask[q]:
                    continue
                if not hcal_upsample:
                    p = np.int64(pix[q])
                    buf[ch, p] += hcal_energy[lo + q] * s
                    if record and flag[p] == 0:  # first touch (written out: a call costs more than this)
                        flag[p] = 1
                        touched[n_t] = p
                        n_t += 1
                    continue
                packed = np.int64(pix[q])
                rt = (packed + 8 * 512) // 512 - 8  # floor division of the packed (rt, ct), rt >= -4
                ct = packed - rt * 512
                v = hcal_energy[lo + q] / np.float32(_CPT * _CPT) * s
                for a in range(_CPT):
                    r = rt + a
                    if r < 0 or r >= W:
                        continue
                    for b in range(_CPT):
                        c = ct + b
                        if c >= _NPHI:
                            c -= _NPHI
                        if c >= W:
                            continue
                        p = r * W + c
                        buf[ch, p] += v
                        if record and flag[p] == 0:  # first touch (written out: a call costs more than this)
                            flag[p] = 1
                            touched[n_t] = p
                            n_t += 1

    # tracks at their ECAL-face crystal (track_ieta = -1: does not reach the ECAL)
    cpt = channel_of_code[_CODE_TRACK_PT]
    cd0 = channel_of_code[_CODE_TRACK_D0]
    cdz = channel_of_code[_CODE_TRACK_DZ]
    lo = track_offsets[e]
    n = track_offsets[e + 1] - lo
    if (cpt >= 0 or cd0 >= 0 or cdz >= 0) and n > 0:
        m64[(n - 1) >> 3] = 0  # mask bytes beyond n read as 0 by the word scan
        _mask_cells(track_ieta[lo:lo + n], track_iphi[lo:lo + n], unit, zero, row0, col0, W, mask[:n], pix[:n])
        for wq in range((n + 7) >> 3):
            if m64[wq] == 0:
                continue
            for q in range(wq << 3, min((wq << 3) + 8, n)):
                if not mask[q]:
                    continue
                p = np.int64(pix[q])
                pv = (cd0 >= 0 or cdz >= 0) and abs(np.float64(track_dz[lo + q])) < dz_max
                if cpt >= 0:
                    buf[cpt, p] += track_pt[lo + q] * scale[cpt]
                if pv:
                    if cd0 >= 0:
                        buf[cd0, p] += track_d0v[lo + q] * scale[cd0]
                    if cdz >= 0:
                        buf[cdz, p] += track_dzv[lo + q] * scale[cdz]
                if record and (cpt >= 0 or pv) and flag[p] == 0:
                    flag[p] = 1
                    touched[n_t] = p
                    n_t += 1

    # tracker hits: +1 per hit in the channel of its layer
    any_layer = False
    for L in range(_N_LAYERS):
        if channel_of_code[_FIRST_LAYER + L] >= 0:
            any_layer = True
    lo = th_offsets[e]
    n = th_offsets[e + 1] - lo
    if any_layer and n > 0:
        m64[(n - 1) >> 3] = 0  # mask bytes beyond n read as 0 by the word scan
        _mask_cells(th_ieta[lo:lo + n], th_iphi[lo:lo + n], unit, zero, row0, col0, W, mask[:n], pix[:n])
        for wq in range((n + 7) >> 3):
            if m64[wq] == 0:
                continue
            for q in range(wq << 3, min((wq << 3) + 8, n)):
                if not mask[q]:
                    continue
                L = np.int64(th_layer[lo + q])
                if L >= _N_LAYERS:
                    continue
                ch = channel_of_code[_FIRST_LAYER + L]
                if ch < 0:
                    continue
                p = np.int64(pix[q])
                buf[ch, p] += scale[ch]
                if record and flag[p] == 0:  # first touch (written out: a call costs more than this)
                    flag[p] = 1
                    touched[n_t] = p
                    n_t += 1
    return n_t


@njit(cache=True)
def _threshold_touched(buf, flag, touched, n_t, thr):
    """Zero |buf[c, p]| <= thr[c] at the touched pixels (channels with thr > 0) and clear their flags."""
    for c in range(buf.shape[0]):
        t = thr[c]
        if t > 0:
            for q in range(n_t):
                p = touched[q]
                if abs(buf[c, p]) <= t:
                    buf[c, p] = 0.0
    for q in range(n_t):
        flag[touched[q]] = 0


@njit(cache=True)
def _max_hits(ecal_offsets, hcal_offsets, track_offsets, th_offsets):
    """Scratch length of the window masks: the largest collection of any event, rounded up to 8, plus 8."""
    m = 0
    for off in (ecal_offsets, hcal_offsets, track_offsets, th_offsets):
        for e in range(off.shape[0] - 1):
            m = max(m, off[e + 1] - off[e])
    return (m + 7) // 8 * 8 + 8


@njit(cache=True)
def _effective_thresholds(scale, threshold):
    """threshold[c] * |scale[c]| in float32 (the cut on the scaled pixel value)."""
    out = np.empty(scale.shape[0], np.float32)
    for c in range(scale.shape[0]):
        out[c] = threshold[c] * abs(scale[c])
    return out


@njit(parallel=True, cache=True)
def _fill_jet_images(out, nch, jet_event, seed_ieta, seed_iphi,
                     ecal_offsets, ecal_ieta, ecal_iphi, ecal_energy,
                     hcal_offsets, hcal_ieta, hcal_iphi, hcal_energy,
                     track_offsets, track_ieta, track_iphi, track_pt, track_d0v, track_dzv, track_dz,
                     th_offsets, th_layer, th_ieta, th_iphi,
                     channel_of_code, scale, threshold, dz_max, hcal_upsample):
    n_jets = out.shape[0]
    C = out.shape[1]
    W = out.shape[2]
    thr = _effective_thresholds(scale, threshold)
    any_thr = False
    for c in range(C):
        if thr[c] > 0:
            any_thr = True
    n_mask = _max_hits(ecal_offsets, hcal_offsets, track_offsets, th_offsets)
    n_flag = W * W if any_thr else 0  # touched pixels are recorded only to apply the thresholds
    for t in prange(nch):
        mask = np.zeros(n_mask, np.uint8)
        pix = np.zeros(n_mask, np.int32)
        flag = np.zeros(n_flag, np.uint8)
        touched = np.empty(n_flag, np.int32)
        for j in range(t * n_jets // nch, (t + 1) * n_jets // nch):
            img = out[j].reshape((C, W * W))
            img[:] = 0.0
            n_t = _accumulate_window(img, flag, touched, mask, pix, jet_event[j], seed_ieta[j], seed_iphi[j], W,
                                     ecal_offsets, ecal_ieta, ecal_iphi, ecal_energy,
                                     hcal_offsets, hcal_ieta, hcal_iphi, hcal_energy,
                                     track_offsets, track_ieta, track_iphi, track_pt, track_d0v, track_dzv, track_dz,
                                     th_offsets, th_layer, th_ieta, th_iphi,
                                     channel_of_code, scale, dz_max, hcal_upsample)
            if any_thr:
                _threshold_touched(img, flag, touched, n_t, thr)


def fill_jet_images(out: np.ndarray, jet_event: np.ndarray, seed_ieta: np.ndarray, seed_iphi: np.ndarray,
                    ecal_offsets: np.ndarray, ecal_ieta: np.ndarray, ecal_iphi: np.ndarray,
                    ecal_energy: np.ndarray,
                    hcal_offsets: np.ndarray, hcal_ieta: np.ndarray, hcal_iphi: np.ndarray,
                    hcal_energy: np.ndarray,
                    track_offsets: np.ndarray, track_ieta: np.ndarray, track_iphi: np.ndarray,
                    track_pt: np.ndarray, track_d0v: np.ndarray, track_dzv: np.ndarray, track_dz: np.ndarray,
                    trackerhit_offsets: np.ndarray, trackerhit_layer: np.ndarray, trackerhit_ieta: np.ndarray,
                    trackerhit_iphi: np.ndarray,
                    channel_of_code: np.ndarray, scale: np.ndarray, threshold: np.ndarray,
                    dz_max: float, hcal_upsample: bool) -> np.ndarray:
    """Fill ``out`` float32 [n_jets, C, W, W] (C-contiguous, any content: each jet's slab is zeroed here)
    with the jet images; returns ``out``. Parallel over jets.

    Units: ecal/hcal GeV, track_pt GeV, track_d0/track_dz the caller's d0v/dzv (cm or significance),
    tracker layers hit counts, all times ``scale``; ``dz_max`` cm. Thresholds are applied (only when some
    threshold > 0) to the pixels the hits touched, recorded on the way, never by a pass over the whole image.
    """
    if out.ndim != 4 or out.dtype != np.float32 or not out.flags.c_contiguous or out.shape[2] != out.shape[3]:
        raise ValueError(f"out must be a C-contiguous float32 [n_jets, C, W, W] array, got {out.dtype} {out.shape}")
    n_jets, C, W, _ = out.shape
    if not 1 <= W <= ECAL_N_IETA:
        raise ValueError(f"window size W={W} outside 1..{ECAL_N_IETA}")
    if len(jet_event) != n_jets:
        raise ValueError("jet_event must have n_jets = out.shape[0] entries")
    jet_event = _check_jets(jet_event, seed_ieta, seed_iphi, ecal_offsets, hcal_offsets, track_offsets,
                            trackerhit_offsets)
    codes, scale, threshold = _channel_config(channel_of_code, scale, threshold, C)
    _fill_jet_images(out, _n_chunks(n_jets), jet_event, seed_ieta, seed_iphi,
                     _i64(ecal_offsets), ecal_ieta, ecal_iphi, ecal_energy,
                     _i64(hcal_offsets), hcal_ieta, hcal_iphi, hcal_energy,
                     _i64(track_offsets), track_ieta, track_iphi, track_pt, track_d0v, track_dzv, track_dz,
                     _i64(trackerhit_offsets), trackerhit_layer, trackerhit_ieta, trackerhit_iphi,
                     codes, scale, threshold, float(dz_max), bool(hcal_upsample))
    return out


def _i64(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def _check_jets(jet_event: np.ndarray, seed_ieta: np.ndarray | None, seed_iphi: np.ndarray | None,
                *offsets: np.ndarray) -> np.ndarray:
    """jet_event as int64; every jet's event inside every collection and its seed on the ECAL grid."""
    jet_event = _i64(jet_event)
    n = len(jet_event)
    if n == 0:
        return jet_event
    n_events = min(len(o) for o in offsets) - 1
    if jet_event.min() < 0 or jet_event.max() >= n_events:
        raise ValueError(f"jet_event must lie in 0..{n_events - 1} (the events of the hit offsets)")
    for name, seed, hi in (("seed_ieta", seed_ieta, ECAL_N_IETA), ("seed_iphi", seed_iphi, ECAL_N_IPHI)):
        if seed is None:
            continue
        if len(seed) != n:
            raise ValueError(f"{name} must have one entry per jet ({n})")
        if seed.min() < 0 or seed.max() >= hi:
            raise ValueError(f"{name} must lie in 0..{hi - 1}")
    return jet_event


def _channel_config(channel_of_code: np.ndarray, scale: np.ndarray, threshold: np.ndarray,
                    C: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    codes = _i64(channel_of_code)
    scale = np.ascontiguousarray(scale, dtype=np.float32)
    threshold = np.ascontiguousarray(threshold, dtype=np.float32)
    if codes.shape != (N_CHANNEL_CODES,):
        raise ValueError(f"channel_of_code must have {N_CHANNEL_CODES} entries, got {codes.shape}")
    used = np.sort(codes[codes >= 0])
    if not np.array_equal(used, np.arange(C)):
        raise ValueError(f"channel_of_code must map the requested codes onto 0..{C - 1} once each, got {codes}")
    if scale.shape != (C,) or threshold.shape != (C,):
        raise ValueError(f"scale and threshold must have C={C} entries")
    return codes, scale, threshold


# ------------------------------------------------------------------------------------------------ graph nodes


#: Graph-node pass modes: count only; write at given offsets; write speculatively into per-chunk regions.
_COUNT, _FILL, _SPECULATE = 0, 1, 2


@njit(parallel=True, cache=True)
def _graph_nodes(mode, offs, region, done, x, pos, pixel, nch, jet_event, seed_ieta, seed_iphi,
                 ecal_offsets, ecal_ieta, ecal_iphi, ecal_energy,
                 hcal_offsets, hcal_ieta, hcal_iphi, hcal_energy,
                 track_offsets, track_ieta, track_iphi, track_pt, track_d0v, track_dzv, track_dz,
                 th_offsets, th_layer, th_ieta, th_iphi,
                 W, channel_of_code, scale, threshold, dz_max, hcal_upsample, coordinates, eta_centre):
    """The graph nodes of every jet, parallel over ``nch`` chunks of consecutive jets, each with its scratch
    (a [C, W*W] window, its touched flags and list) reused across jets.

    mode _COUNT: offs[j] = node count. _FILL: write jet j's nodes from row offs[j] of x / pos / pixel.
    _SPECULATE: offs[j] = node count; chunk t writes its jets one after the other from row region[t] while
    they fit below region[t + 1]; done[2 t] = jets written (a prefix of the chunk), done[2 t + 1] = rows.
    """
    n_jets = jet_event.shape[0]
    C = scale.shape[0]
    h = W // 2
    WW = W * W
    thr = _effective_thresholds(scale, threshold)
    n_mask = _max_hits(ecal_offsets, hcal_offsets, track_offsets, th_offsets)
    for t in prange(nch):
        mask = np.zeros(n_mask, np.uint8)
        pix = np.zeros(n_mask, np.int32)
        buf = np.zeros((C, WW), np.float32)  # the window as an image: one compiled _accumulate_window for both
        flag = np.zeros(WW, np.uint8)
        touched = np.empty(WW, np.int32)
        row_count = np.empty(W + 1, np.int64)
        tmp = np.empty(WW, np.int32)
        j0 = t * n_jets // nch
        write = mode != _COUNT
        row = region[t] if mode == _SPECULATE else 0
        for j in range(j0, (t + 1) * n_jets // nch):
            n_t = _accumulate_window(buf, flag, touched, mask, pix, jet_event[j], seed_ieta[j], seed_iphi[j], W,
                                     ecal_offsets, ecal_ieta, ecal_iphi, ecal_energy,
                                     hcal_offsets, hcal_ieta, hcal_iphi, hcal_energy,
                                     track_offsets, track_ieta, track_iphi, track_pt, track_d0v, track_dzv, track_dz,
                                     th_offsets, th_layer, th_ieta, th_iphi,
                                     channel_of_code, scale, dz_max, hcal_upsample)
            if write and n_t > 1:
                _sort_pixels(touched, n_t, flag, W, row_count, tmp)
            k0 = offs[j] if mode == _FILL else row
            k = k0
            for q in range(n_t):
                p = touched[q]
                flag[p] = 0
                nonzero = False
                for ch in range(C):
                    v = buf[ch, p]
                    if abs(v) <= thr[ch]:
                        buf[ch, p] = 0.0
                    elif v != 0.0:
                        nonzero = True
                if nonzero:
                    if mode == _SPECULATE and k >= region[t + 1]:
                        write = False  # the region is full: this jet and the rest of the chunk are only counted
                    if write:
                        for ch in range(C):
                            x[k, ch] = buf[ch, p]
                        r = p // W
                        c = p - r * W
                        if coordinates:
                            x[k, C] = eta_centre[seed_ieta[j] - h + r] - eta_centre[seed_ieta[j]]
                            x[k, C + 1] = (c - h) * _DPHI
                        pos[k, 0] = r - h
                        pos[k, 1] = c - h
                        pixel[k] = p
                    k += 1
                for ch in range(C):
                    buf[ch, p] = 0.0
            if mode != _FILL:
                offs[j] = k - k0
            if mode == _SPECULATE and write:
                row = k
                done[2 * t] = j + 1 - j0
                done[2 * t + 1] = row - region[t]


@njit(cache=True)
def _sort_pixels(touched, n, flag, W, row_count, tmp):
    """Sort the distinct pixels ``touched[:n]`` ascending: a scan of the flagged bounding box when it is small
    for n, else a counting sort by row (``row_count`` [W + 1], ``tmp`` [n] scratch) and an insertion sort of
    the few columns of each row."""
    rmin = W
    rmax = -1
    cmin = W
    cmax = -1
    for q in range(n):
        p = touched[q]
        r = p // W
        c = p - r * W
        rmin = min(rmin, r)
        rmax = max(rmax, r)
        cmin = min(cmin, c)
        cmax = max(cmax, c)
    if (rmax - rmin + 1) * (cmax - cmin + 1) <= 16 * n:
        m = np.int64(0)
        for r in range(rmin, rmax + 1):
            for c in range(cmin, cmax + 1):
                if flag[r * W + c]:
                    touched[m] = r * W + c
                    m += 1
        return
    for r in range(rmin, rmax + 2):
        row_count[r] = 0
    for q in range(n):
        row_count[touched[q] // W + 1] += 1
    for r in range(rmin, rmax + 1):
        row_count[r + 1] += row_count[r]
    for q in range(n):
        p = touched[q]
        r = p // W
        tmp[row_count[r]] = p
        row_count[r] += 1
    # row_count[r] is now the end of row r (= the start of row r + 1); rows before rmin are empty
    start = np.int64(0)
    for r in range(rmin, rmax + 1):
        end = row_count[r]
        for i in range(start, end):
            p = tmp[i]
            j = i
            while j > start and touched[j - 1] > p:
                touched[j] = touched[j - 1]
                j -= 1
            touched[j] = p
        start = end


def build_graph_nodes(jet_event: np.ndarray, seed_ieta: np.ndarray, seed_iphi: np.ndarray,
                      ecal_offsets: np.ndarray, ecal_ieta: np.ndarray, ecal_iphi: np.ndarray,
                      ecal_energy: np.ndarray,
                      hcal_offsets: np.ndarray, hcal_ieta: np.ndarray, hcal_iphi: np.ndarray,
                      hcal_energy: np.ndarray,
                      track_offsets: np.ndarray, track_ieta: np.ndarray, track_iphi: np.ndarray,
                      track_pt: np.ndarray, track_d0v: np.ndarray, track_dzv: np.ndarray, track_dz: np.ndarray,
                      trackerhit_offsets: np.ndarray, trackerhit_layer: np.ndarray, trackerhit_ieta: np.ndarray,
                      trackerhit_iphi: np.ndarray,
                      W: int, channel_of_code: np.ndarray, scale: np.ndarray, threshold: np.ndarray,
                      dz_max: float, hcal_upsample: bool, coordinates: bool,
                      eta_centre: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Graph nodes of every jet straight from the hits, parallel over chunks of jets.

    Nodes = window pixels with at least one non-zero channel after thresholding, in ascending
    p = r * W + c; a jet without hits in its window has 0 nodes. Returns
    ``node_offsets`` int64 [n_jets + 1], ``x`` float32 [N, C (+ 2)]: the image values (same units as
    :func:`fill_jet_images`), then with ``coordinates`` (delta_eta, delta_phi [rad]) of the crystal centre
    from the seed crystal centre (``eta_centre`` float64 [280]: ECAL row centres, geometry.ecal_eta),
    ``pos`` float32 [N, 2] = (r - h, c - h) (crystals from the seed) and ``pixel`` int32 [N] = r * W + c.
    """
    n_jets = len(jet_event)
    C = int(np.count_nonzero(np.asarray(channel_of_code) >= 0))
    codes, scale, threshold = _channel_config(channel_of_code, scale, threshold, C)
    W = int(W)
    if not 1 <= W <= ECAL_N_IETA:
        raise ValueError(f"window size W={W} outside 1..{ECAL_N_IETA}")
    jet_event = _check_jets(jet_event, seed_ieta, seed_iphi, ecal_offsets, hcal_offsets, track_offsets,
                            trackerhit_offsets)
    eta_centre = np.ascontiguousarray(eta_centre, dtype=np.float64)
    if eta_centre.shape != (ECAL_N_IETA,):
        raise ValueError(f"eta_centre must have {ECAL_N_IETA} entries")
    F = C + (2 if coordinates else 0)
    hits = (_i64(ecal_offsets), ecal_ieta, ecal_iphi, ecal_energy,
            _i64(hcal_offsets), hcal_ieta, hcal_iphi, hcal_energy,
            _i64(track_offsets), track_ieta, track_iphi, track_pt, track_d0v, track_dzv, track_dz,
            _i64(trackerhit_offsets), trackerhit_layer, trackerhit_ieta, trackerhit_iphi)
    cfg = (W, codes, scale, threshold, float(dz_max), bool(hcal_upsample), bool(coordinates), eta_centre)
    nch = _n_chunks(n_jets)

    def run(mode, offs, region, done, x, pos, pixel, jets, n_chunks):
        _graph_nodes(mode, offs, region, done, x, pos, pixel, n_chunks, *jets, *hits, *cfg)

    none_f = np.empty((0, F), np.float32)
    none_p = np.empty((0, 2), np.float32)
    none_i = np.empty(0, np.int32)
    jets = (jet_event, seed_ieta, seed_iphi)
    counts = np.empty(n_jets, np.int64)
    n_sample = _NODE_SAMPLE_PER_CHUNK * nch
    if n_jets <= 2 * n_sample:
        # small batch: count, then fill
        run(_COUNT, counts, _NO_I64, _NO_I64, none_f, none_p, none_i, jets, nch)
        node_offsets = _offsets_of(counts)
        x, pos, pixel = _node_arrays(int(node_offsets[-1]), F)
        run(_FILL, node_offsets, _NO_I64, _NO_I64, x, pos, pixel, jets, nch)
        return node_offsets, x, pos, pixel
    # one pass: chunks write into regions sized from the mean count of a sample of jets; the jets that do not
    # fit (rare) are filled afterwards at their final offsets
    sample = np.linspace(0, n_jets - 1, n_sample).astype(np.int64)
    sample_counts = np.empty(n_sample, np.int64)
    run(_COUNT, sample_counts, _NO_I64, _NO_I64, none_f, none_p, none_i, tuple(a[sample] for a in jets), nch)
    per_jet = min(W * W, int(_NODE_CAPACITY_MARGIN * sample_counts.mean()) + 16)
    bounds = np.arange(nch + 1, dtype=np.int64) * n_jets // nch
    region = np.concatenate([[0], np.cumsum(np.diff(bounds) * per_jet)]).astype(np.int64)
    done = np.zeros(2 * nch, np.int64)
    x_buf, pos_buf, pixel_buf = _node_arrays(int(region[-1]), F)
    run(_SPECULATE, counts, region, done, x_buf, pos_buf, pixel_buf, jets, nch)
    node_offsets = _offsets_of(counts)
    x, pos, pixel = _node_arrays(int(node_offsets[-1]), F)
    spilled = []
    for t in range(nch):
        j_ok = bounds[t] + done[2 * t]
        dst = slice(node_offsets[bounds[t]], node_offsets[j_ok])
        src = slice(region[t], region[t] + done[2 * t + 1])
        x[dst], pos[dst], pixel[dst] = x_buf[src], pos_buf[src], pixel_buf[src]
        spilled.append(np.arange(j_ok, bounds[t + 1]))
    spill = np.concatenate(spilled)
    if len(spill):
        run(_FILL, node_offsets[spill], _NO_I64, _NO_I64, x, pos, pixel, tuple(a[spill] for a in jets),
            _n_chunks(len(spill)))
    return node_offsets, x, pos, pixel


_NO_I64 = np.zeros(0, np.int64)
#: One-pass node build: jets sampled per chunk to size the write regions, and the margin over their mean.
_NODE_SAMPLE_PER_CHUNK = 4
_NODE_CAPACITY_MARGIN = 1.5


def _offsets_of(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _node_arrays(n: int, F: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.empty((n, F), np.float32), np.empty((n, 2), np.float32), np.empty(n, np.int32)


# ------------------------------------------------------------------------------------------------ kNN


@njit(cache=True)
def _insert(keys, cnt, k, key):
    """Insert ``key`` into the ascending ``keys[:cnt]`` kept at most ``k`` long; returns the new count."""
    if cnt == k:
        if key >= keys[k - 1]:
            return cnt
        i = k - 1
    else:
        i = cnt
        cnt += 1
    while i > 0 and keys[i - 1] > key:
        keys[i] = keys[i - 1]
        i -= 1
    keys[i] = key
    return cnt


@njit(cache=True)
def _isqrt(v):
    """floor(sqrt(v)) for an integer v >= 0."""
    s = np.int64(math.sqrt(v))
    while s * s > v:
        s -= 1
    while (s + 1) * (s + 1) <= v:
        s += 1
    return s


@njit(cache=True)
def _graph_coordinates(pixel, a, n, W, r_of, c_of, row_start):
    """Row and column of the n nodes of the graph at ``a``; row_start[r]: first node of row r (pixels ascend)."""
    for r in range(W + 1):
        row_start[r] = 0
    for li in range(n):
        p = np.int64(pixel[a + li])
        r = p // W
        r_of[li] = r
        c_of[li] = p - r * W
        row_start[r + 1] += 1
    for r in range(W):
        row_start[r + 1] += row_start[r]


@njit(cache=True)
def _knn_small_graph(a, n, k, self_loops, out, r_of, c_of, sel):
    """kNN of a small graph: all candidates of each node, sorted (O(n^2)).

    (Here and below the helpers with array arguments are written out in the per-node loops: a call costs
    tens of ns when numba does not inline it.)"""
    for li in range(n):
        cnt = np.int64(0)
        for m in range(n):
            if m != li or self_loops:
                dr = r_of[m] - r_of[li]
                dc = c_of[m] - c_of[li]
                key = ((dr * dr + dc * dc) << _SHIFT) | m
                j = cnt  # insertion sort
                while j > 0 and sel[j - 1] > key:
                    sel[j] = sel[j - 1]
                    j -= 1
                sel[j] = key
                cnt += 1
        row = a + li
        if cnt == 0:
            for s in range(k):
                out[row, s] = row
        else:
            for s in range(min(cnt, k)):
                out[row, s] = a + (sel[s] & _LOCAL_MASK)
            for s in range(cnt, k):
                out[row, s] = out[row, s - cnt]


@njit(cache=True)
def _merge_sort(a, n, tmp):
    """Bottom-up merge sort of a[:n] (tmp: scratch of n)."""
    src, dst = a, tmp
    in_a = True
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i, j = lo, mid
            for o in range(lo, hi):
                if j >= hi or (i < mid and src[i] <= src[j]):
                    dst[o] = src[i]
                    i += 1
                else:
                    dst[o] = src[j]
                    j += 1
        src, dst = dst, src
        in_a = not in_a
        width *= 2
    if not in_a:
        a[:n] = src[:n]


@njit(cache=True)
def _knn_brute_graph(a, n, k, self_loops, out, r_of, c_of, keys, tmp):
    """kNN by brute force (the benchmark baseline): the keys of all candidates of each node, fully sorted."""
    for li in range(n):
        cnt = np.int64(0)
        for m in range(n):
            if m != li or self_loops:
                dr = r_of[m] - r_of[li]
                dc = c_of[m] - c_of[li]
                keys[cnt] = ((dr * dr + dc * dc) << _SHIFT) | m
                cnt += 1
        _merge_sort(keys, cnt, tmp)
        row = a + li
        if cnt == 0:
            for s in range(k):
                out[row, s] = row
        else:
            for s in range(min(cnt, k)):
                out[row, s] = a + (keys[s] & _LOCAL_MASK)
            for s in range(cnt, k):
                out[row, s] = out[row, s - cnt]


@njit(cache=True)
def _knn_dense_graph(a, n, W, k, self_loops, out, r_of, c_of, grid, tdr, tdc, td2, sel):
    """kNN of a dense graph: the nodes are put on a dense W x W ``grid`` of local ids (-1: empty) and each
    node visits the pixel offsets in order of squared distance (table tdr, tdc, td2) until the last offset
    at the distance of its k-th neighbour, so every candidate tied with it is seen; the found keys are
    already ordered by distance, the ties are put in index order by a final (nearly sorted) insertion sort.
    Cost per node ~ pixels within the k-th neighbour distance."""
    big = np.int64(1) << 62
    for li in range(n):
        grid[r_of[li] * W + c_of[li]] = li
    for li in range(n):
        r = r_of[li]
        c = c_of[li]
        excl = -1 if self_loops else li
        limit = big
        cnt = np.int64(0)
        for t in range(td2.shape[0]):
            d2 = td2[t]
            if d2 > limit:
                break
            rr = r + tdr[t]
            cc = c + tdc[t]
            if rr < 0 or rr >= W or cc < 0 or cc >= W:
                continue
            m = grid[rr * W + cc]
            sel[cnt] = (np.int64(d2) << _SHIFT) | m
            cnt += (m >= 0) & (m != excl)
            if cnt == k and limit == big:
                limit = d2
        for i in range(1, cnt):  # insertion sort (only ties are out of order)
            key = sel[i]
            j = i
            while j > 0 and sel[j - 1] > key:
                sel[j] = sel[j - 1]
                j -= 1
            sel[j] = key
        row = a + li
        if cnt == 0:
            for s in range(k):
                out[row, s] = row
        else:
            for s in range(min(cnt, k)):
                out[row, s] = a + (sel[s] & _LOCAL_MASK)
            for s in range(cnt, k):
                out[row, s] = out[row, s - cnt]
    for li in range(n):
        grid[r_of[li] * W + c_of[li]] = -1


@njit(cache=True)
def _knn_sparse_graph(a, n, W, k, self_loops, out, r_of, c_of, row_start, col_start, tile_start, tile_nodes,
                      br, bc, bid, dist, sel):
    """kNN of a sparse graph. The window is cut into S x S tiles (S from the node density, so that a 3S x 3S
    block holds ~_BLOCK_NODES * k nodes); the nodes of the block around a tile (tile +- S) are gathered once
    per tile, in node order, from a per-row column index (col_start[r, c]: first node of row r at column
    >= c). For each node of the tile: squared distances to the block nodes (vectorised), then a T with
    k <= count(d <= T) <= k + slack by bisection on counts. The result is exact when T is below the squared
    distance to the nearest pixel outside the block (sides at the window edge excepted); otherwise the node
    is redone in a block twice as wide. The candidates with d <= T are ranked by (distance, index) without
    branches. Cost per node ~ block size, plus W^2 per graph for the column index."""
    W1 = W + 1
    for r in range(W):
        q = row_start[r]
        end = row_start[r + 1]
        for cc in range(W1):
            while q < end and c_of[q] < cc:
                q += 1
            col_start[r * W1 + cc] = q
    S = max(1, min(W, int(math.sqrt(_BLOCK_NODES * k * W * W / (9.0 * n)) + 0.5)))
    nt = (W + S - 1) // S
    big = np.int32(2**31 - 1)
    for tr in range(nt):
        r_lo = tr * S
        r_hi = min(r_lo + S, W) - 1
        b0 = row_start[r_lo]
        b1 = row_start[r_hi + 1]
        if b0 == b1:
            continue
        # nodes of the band bucketed by tile column, ascending index within a tile
        for tc in range(nt + 1):
            tile_start[tc] = 0
        for s in range(b0, b1):
            tile_start[c_of[s] // S + 1] += 1
        for tc in range(nt):
            tile_start[tc + 1] += tile_start[tc]
        for s in range(b0, b1):
            tc = c_of[s] // S
            tile_nodes[tile_start[tc]] = s
            tile_start[tc] += 1
        for tc in range(nt, 0, -1):
            tile_start[tc] = tile_start[tc - 1]
        tile_start[0] = 0
        for tc in range(nt):
            if tile_start[tc] == tile_start[tc + 1]:
                continue
            c_lo = tc * S
            c_hi = min(c_lo + S, W) - 1
            e = 0  # block half-margin; 0: not gathered yet
            for u in range(tile_start[tc], tile_start[tc + 1]):
                li = tile_nodes[u]
                r = r_of[li]
                c = c_of[li]
                excl = -1 if self_loops else li
                e_node = S
                while True:
                    if e != e_node:  # gather the block: the tile +- e_node, in node order
                        e = e_node
                        R0 = max(r_lo - e, 0)
                        R1 = min(r_hi + e, W - 1)
                        C0 = max(c_lo - e, 0)
                        C1 = min(c_hi + e, W - 1)
                        mb = np.int64(0)
                        for rr in range(R0, R1 + 1):
                            for s in range(col_start[rr * W1 + C0], col_start[rr * W1 + C1 + 1]):
                                br[mb] = rr
                                bc[mb] = c_of[s]
                                bid[mb] = s
                                mb += 1
                    gap = 2 * W
                    if R0 > 0:
                        gap = min(gap, r - R0 + 1)
                    if R1 < W - 1:
                        gap = min(gap, R1 - r + 1)
                    if C0 > 0:
                        gap = min(gap, c - C0 + 1)
                    if C1 < W - 1:
                        gap = min(gap, C1 - c + 1)
                    closed = gap == 2 * W  # the block is the whole window
                    dmax = np.int32(0)
                    for q in range(mb):
                        dr = np.int32(br[q] - r)
                        dc = np.int32(bc[q] - c)
                        dd = dr * dr + dc * dc
                        dist[q] = dd if bid[q] != excl else big
                        dmax = max(dmax, dd)
                    hi = np.int64(dmax) if closed else min(np.int64(gap * gap - 1), np.int64(dmax))
                    n_hi = np.int64(0)
                    for q in range(mb):
                        n_hi += dist[q] <= hi
                    if n_hi >= k or closed:
                        break
                    e_node = 2 * e  # the k-th neighbour may lie outside: a block twice as wide
                if n_hi >= k:  # bisection for a T with k <= count(d <= T) <= k + _SELECT_SLACK
                    lo = np.int64(0)
                    while lo < hi and n_hi > k + _SELECT_SLACK:
                        mid = (lo + hi) >> 1
                        n_mid = np.int64(0)
                        for q in range(mb):
                            n_mid += dist[q] <= mid
                        if n_mid >= k:
                            hi = mid
                            n_hi = n_mid
                        else:
                            lo = mid + 1
                cnt = np.int64(0)
                for q in range(mb):  # branch-free compaction of the keys with d <= T
                    sel[cnt] = (np.int64(dist[q]) << _SHIFT) | bid[q]
                    cnt += dist[q] <= hi
                row = a + li
                for i in range(cnt):  # rank (keys are unique): its slot in the sorted row
                    key = sel[i]
                    rank = np.int64(0)
                    for jj in range(cnt):
                        rank += sel[jj] < key
                    if rank < k:
                        out[row, rank] = a + (key & _LOCAL_MASK)
                if cnt == 0:
                    for s in range(k):
                        out[row, s] = row
                for s in range(cnt, k):
                    out[row, s] = out[row, s - cnt]


@njit(parallel=True, cache=True)
def _knn_pixels(pixel, node_offsets, W, k, self_loops, out, nch, tdr, tdc, td2, brute):
    """kNN of every graph (see knn_pixels); ``brute``: all pairs and a full sort per node, whatever the graph."""
    n_graphs = node_offsets.shape[0] - 1
    WW = W * W
    for t in prange(nch):
        grid = np.full(WW, -1, np.int32)
        r_of = np.empty(WW, np.int64)
        c_of = np.empty(WW, np.int64)
        row_start = np.empty(W + 1, np.int64)
        col_start = np.empty(W * (W + 1), np.int64)
        tile_start = np.empty(W + 2, np.int64)
        tile_nodes = np.empty(WW, np.int64)
        br = np.empty(WW, np.int64)
        bc = np.empty(WW, np.int64)
        bid = np.empty(WW, np.int64)
        dist = np.empty(WW, np.int32)
        sel = np.empty(WW + 1, np.int64)
        for g in range(t * n_graphs // nch, (t + 1) * n_graphs // nch):
            a = node_offsets[g]
            n = node_offsets[g + 1] - a
            if n == 0:
                continue
            _graph_coordinates(pixel, a, n, W, r_of, c_of, row_start)
            if brute:
                _knn_brute_graph(a, n, k, self_loops, out, r_of, c_of, sel, br)
            elif n <= _SMALL_GRAPH:
                _knn_small_graph(a, n, k, self_loops, out, r_of, c_of, sel)
            elif n >= _DENSE_OCCUPANCY * WW:
                _knn_dense_graph(a, n, W, k, self_loops, out, r_of, c_of, grid, tdr, tdc, td2, sel)
            else:
                _knn_sparse_graph(a, n, W, k, self_loops, out, r_of, c_of, row_start, col_start, tile_start,
                                  tile_nodes, br, bc, bid, dist, sel)


@functools.lru_cache(maxsize=16)
def _offset_table(W: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pixel offsets (dr, dc) of a W x W window, |dr|, |dc| < W, sorted by squared distance d2: int32 arrays."""
    d = np.arange(-(W - 1), W, dtype=np.int32)
    dr, dc = (a.ravel() for a in np.meshgrid(d, d, indexing="ij"))
    d2 = dr * dr + dc * dc
    order = np.argsort(d2, kind="stable")
    return dr[order], dc[order], d2[order]


def _check_graph(pixel: np.ndarray, node_offsets: np.ndarray, W: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate a graph batch: pixels in 0..W*W-1, strictly ascending within each graph (as built)."""
    pixel = np.ascontiguousarray(pixel, dtype=np.int32)
    node_offsets = _i64(node_offsets)
    W = int(W)
    if not 1 <= W <= ECAL_N_IETA:
        raise ValueError(f"window size W={W} outside 1..{ECAL_N_IETA}")
    if node_offsets.ndim != 1 or len(node_offsets) < 1 or node_offsets[0] != 0 or node_offsets[-1] != len(pixel):
        raise ValueError("node_offsets must start at 0 and end at the number of nodes")
    if np.any(np.diff(node_offsets) < 0):
        raise ValueError("node_offsets must be non-decreasing")
    if len(pixel):
        if pixel.min() < 0 or pixel.max() >= W * W:
            raise ValueError(f"pixel indices must lie in 0..W*W-1 = {W * W - 1}")
        ascending = np.diff(pixel) > 0
        starts = node_offsets[1:-1]
        ascending[starts[(starts > 0) & (starts < len(pixel))] - 1] = True  # graph boundaries
        if not ascending.all():
            raise ValueError("pixel must be strictly ascending within each graph (as build_graph_nodes makes it)")
    return pixel, node_offsets, W


def knn_pixels(pixel: np.ndarray, node_offsets: np.ndarray, W: int, k: int, self_loops: bool) -> np.ndarray:
    """k nearest neighbours of every node in pixel space: ``neighbors`` int64 [N, k] (global node indices).

    Distance: squared Euclidean distance between the (r, c) = divmod(pixel, W) of two nodes (integers, exact).
    Candidates of node i: the other nodes of its graph, plus i itself (distance 0) when ``self_loops``;
    sorted by (distance, global index), the first k kept. Padding rule: with m candidates, 1 <= m < k,
    the row is the m sorted candidates repeated cyclically (c0, c1, ..., c_{m-1}, c0, c1, ...) to length k;
    with m = 0 (a single-node graph without self loops) the row is k copies of i.

    ``pixel`` int32 [N] (any integer dtype) must be strictly ascending within each graph, as
    :func:`build_graph_nodes` returns it; ``node_offsets`` int64 [n_graphs + 1]. Parallel over graphs, with
    per-thread scratch reused across graphs. Method per graph (all exact): up to 24 nodes, all pairs;
    occupancy n / W^2 >= 0.16 (dense), a walk over the pixel offsets in increasing distance on a dense
    W x W grid of node ids, stopping after the distance of the k-th neighbour (cost per node ~ the pixels
    within it); otherwise (sparse) S x S tiles whose 3S x 3S blocks hold ~5k nodes on average: the k-th
    distance by bisection on counts over the block, proven by the distance to the block border, else the
    block is widened (cost per node ~ the nodes of its block).
    """
    pixel, node_offsets, W = _check_graph(pixel, node_offsets, W)
    if k < 1:
        raise ValueError("k must be >= 1")
    out = np.empty((len(pixel), int(k)), np.int64)
    _knn_pixels(pixel, node_offsets, W, int(k), bool(self_loops), out, _n_chunks(len(node_offsets) - 1),
                *_offset_table(W), False)
    return out


def brute_force_knn_pixels(pixel: np.ndarray, node_offsets: np.ndarray, W: int, k: int,
                           self_loops: bool) -> np.ndarray:
    """Same result as :func:`knn_pixels` by brute force: all O(n^2) candidate distances of a graph and a full
    sort per node (the benchmark baseline; same parallel driver over graphs). Returns int64 [N, k] global node
    indices, same padding rule."""
    pixel, node_offsets, W = _check_graph(pixel, node_offsets, W)
    if k < 1:
        raise ValueError("k must be >= 1")
    out = np.empty((len(pixel), int(k)), np.int64)
    _knn_pixels(pixel, node_offsets, W, int(k), bool(self_loops), out, _n_chunks(len(node_offsets) - 1),
                *_offset_table(W), True)
    return out


@njit(parallel=True, cache=True)
def _knn_features(x, node_offsets, k, self_loops, out, nch):
    n_graphs = node_offsets.shape[0] - 1
    F = x.shape[1]
    n_max = 0
    for g in range(n_graphs):
        n_max = max(n_max, node_offsets[g + 1] - node_offsets[g])
    for t in prange(nch):
        xt = np.empty((F, n_max), np.float64)  # the graph's features, transposed: the distance loop vectorises
        d = np.empty(n_max, np.float64)
        kd = np.empty(k, np.float64)
        ki = np.empty(k, np.int64)
        for g in range(t * n_graphs // nch, (t + 1) * n_graphs // nch):
            a = node_offsets[g]
            n = node_offsets[g + 1] - a
            for m in range(n):
                for f in range(F):
                    xt[f, m] = x[a + m, f]
            for li in range(n):
                d[:n] = 0.0
                for f in range(F):  # column order, as the reference
                    xf = xt[f]
                    xi = xf[li]
                    for m in range(n):
                        u = xf[m] - xi
                        d[m] += u * u
                cnt = np.int64(0)
                for m in range(n):
                    if m == li and not self_loops:
                        continue
                    dm = d[m]
                    if cnt == k:
                        if not dm < kd[k - 1]:
                            continue
                        s = k - 1
                    else:
                        s = cnt
                        cnt += 1
                    while s > 0 and kd[s - 1] > dm:  # m ascends: ties keep the lower index first
                        kd[s] = kd[s - 1]
                        ki[s] = ki[s - 1]
                        s -= 1
                    kd[s] = dm
                    ki[s] = m
                i = a + li
                if cnt == 0:
                    for s in range(k):
                        out[i, s] = i
                else:
                    for s in range(min(cnt, k)):
                        out[i, s] = a + ki[s]
                    for s in range(cnt, k):
                        out[i, s] = out[i, s - cnt]


def knn_features(x: np.ndarray, node_offsets: np.ndarray, k: int, self_loops: bool) -> np.ndarray:
    """k nearest neighbours of every node in feature space: int64 [N, k] global node indices.

    Distance: squared Euclidean distance over all columns of ``x`` [N, F], accumulated in float64 in column
    order (each squared difference rounded, then added). Same tie rule (distance, then global index) and
    padding rule as :func:`knn_pixels`. Brute force, O(n^2 F) per graph of n nodes (vectorised distances,
    top-k by insertion); parallel over graphs.
    """
    x = np.ascontiguousarray(x)
    if x.ndim != 2:
        raise ValueError("x must be [N, F]")
    node_offsets = _i64(node_offsets)
    if node_offsets[0] != 0 or node_offsets[-1] != x.shape[0]:
        raise ValueError("node_offsets must start at 0 and end at the number of nodes")
    if k < 1:
        raise ValueError("k must be >= 1")
    if np.any(np.diff(node_offsets) < 0):
        raise ValueError("node_offsets must be non-decreasing")
    out = np.empty((x.shape[0], int(k)), np.int64)
    _knn_features(x, node_offsets, int(k), bool(self_loops), out, _n_chunks(len(node_offsets) - 1))
    return out


@njit(parallel=True, cache=True)
def _radius_pixels(pixel, node_offsets, W, r2, max_neighbors, self_loops, out, num, nch):
    n_graphs = node_offsets.shape[0] - 1
    R = _isqrt(r2)
    for t in prange(nch):
        grid = np.full(W * W, -1, np.int32)
        keys = np.empty(max_neighbors, np.int64)
        for g in range(t * n_graphs // nch, (t + 1) * n_graphs // nch):
            a = node_offsets[g]
            n = node_offsets[g + 1] - a
            use_grid = n * n > (2 * R + 1) * (2 * R + 1) * 2
            if use_grid:
                for li in range(n):
                    grid[pixel[a + li]] = li
            for li in range(n):
                p = np.int64(pixel[a + li])
                r = p // W
                c = p - r * W
                cnt = np.int64(0)
                if use_grid:  # the disc on the grid
                    for rr in range(max(r - R, 0), min(r + R, W - 1) + 1):
                        dr = rr - r
                        w = _isqrt(r2 - dr * dr)
                        for cc in range(max(c - w, 0), min(c + w, W - 1) + 1):
                            m = np.int64(grid[rr * W + cc])
                            if m >= 0 and (m != li or self_loops):
                                dc = cc - c
                                cnt = _insert(keys, cnt, max_neighbors, ((dr * dr + dc * dc) << _SHIFT) | m)
                else:  # all nodes of a small graph
                    for m in range(n):
                        if m == li and not self_loops:
                            continue
                        q = np.int64(pixel[a + m])
                        rq = q // W
                        dr = rq - r
                        dc = q - rq * W - c
                        d2 = dr * dr + dc * dc
                        if d2 <= r2:
                            cnt = _insert(keys, cnt, max_neighbors, (d2 << _SHIFT) | m)
                i = a + li
                num[i] = cnt
                for s in range(cnt):
                    out[i, s] = a + (keys[s] & _LOCAL_MASK)
                for s in range(cnt, max_neighbors):
                    out[i, s] = i
            if use_grid:
                for li in range(n):
                    grid[pixel[a + li]] = -1


def radius_pixels(pixel: np.ndarray, node_offsets: np.ndarray, W: int, radius: float, max_neighbors: int,
                  self_loops: bool) -> tuple[np.ndarray, np.ndarray]:
    """Radius graph in pixel space: ``neighbors`` int64 [N, max_neighbors] and ``num_neighbors`` int32 [N].

    Candidates of node i: nodes of its graph with squared pixel distance <= radius^2 (radius in crystals),
    plus i itself when ``self_loops``; sorted by (distance, global index), the first ``max_neighbors`` kept
    in slots 0..num_neighbors[i]-1. Padding rule: the unused slots hold i itself.
    """
    pixel, node_offsets, W = _check_graph(pixel, node_offsets, W)
    if max_neighbors < 1:
        raise ValueError("max_neighbors must be >= 1")
    if not radius >= 0:
        raise ValueError("radius must be >= 0")
    r2 = int(math.floor(min(float(radius), 2.0 * ECAL_N_IETA) ** 2))  # integer distances: d2 <= radius^2
    out = np.empty((len(pixel), int(max_neighbors)), np.int64)
    num = np.empty(len(pixel), np.int32)
    _radius_pixels(pixel, node_offsets, W, r2, int(max_neighbors), bool(self_loops), out, num,
                   _n_chunks(len(node_offsets) - 1))
    return out, num


def edge_index_from_neighbors(neighbors: np.ndarray, num_neighbors: np.ndarray | None = None) -> np.ndarray:
    """PyG ``edge_index`` int64 [2, E] from a neighbour table [N, k]: edge (source j = neighbour, target i),
    ordered by target, then slot. Without ``num_neighbors`` (kNN) every slot is an edge, padding included
    (E = N k, row 0 = ``neighbors.ravel()``); with it only the first num_neighbors[i] slots of row i."""
    neighbors = np.asarray(neighbors)
    n, k = neighbors.shape
    if num_neighbors is None:
        src = neighbors.reshape(-1).astype(np.int64)
        dst = np.repeat(np.arange(n, dtype=np.int64), k)
    else:
        num = np.asarray(num_neighbors, dtype=np.int64)
        mask = np.arange(k)[None, :] < num[:, None]
        src = neighbors[mask].astype(np.int64)
        dst = np.repeat(np.arange(n, dtype=np.int64), np.minimum(num, k))
    return np.stack([src, dst])


# ------------------------------------------------------------------------------------------------ shapes


@njit(cache=True)
def _delta_r(eta1, phi1, eta2, phi2):
    """dR with dphi wrapped into [-pi, pi) (as simulation.validation._dr)."""
    dphi = (phi1 - phi2 + math.pi) % (2.0 * math.pi) - math.pi
    deta = eta1 - eta2
    return math.sqrt(deta * deta + dphi * dphi)


@njit(parallel=True, cache=True)
def _fill_jet_shapes(out, jet_event, jet_pt, jet_eta, jet_phi,
                     ecal_offsets, ecal_ieta, ecal_iphi, ecal_energy,
                     hcal_offsets, hcal_ieta, hcal_iphi, hcal_energy,
                     track_offsets, track_pt, track_eta, track_phi, track_dz, track_d0sig,
                     ecal_eta_centre, ecal_phi_centre, hcal_eta_centre, hcal_phi_centre,
                     cone, core, track_pt_min, dz_max, d0sig_min):
    far = cone + 1e-9  # |delta eta| beyond this: dR >= cone whatever the rounding (skips the phi arithmetic)
    for j in prange(jet_event.shape[0]):
        e = jet_event[j]
        jeta = np.float64(jet_eta[j])
        jphi = np.float64(jet_phi[j])
        sum_et = 0.0
        sum_etdr = 0.0
        sum_core = 0.0
        iso = 0.0
        for q in range(ecal_offsets[e], ecal_offsets[e + 1]):
            eta = ecal_eta_centre[ecal_ieta[q]]
            if abs(eta - jeta) > far:
                continue
            dr = _delta_r(eta, ecal_phi_centre[ecal_iphi[q]], jeta, jphi)
            if dr < cone:
                et = np.float64(ecal_energy[q]) / math.cosh(eta)
                sum_et += et
                sum_etdr += et * dr
                if dr < core:
                    sum_core += et
                else:
                    iso += et
        for q in range(hcal_offsets[e], hcal_offsets[e + 1]):
            eta = hcal_eta_centre[hcal_ieta[q]]
            if abs(eta - jeta) > far:
                continue
            dr = _delta_r(eta, hcal_phi_centre[hcal_iphi[q]], jeta, jphi)
            if dr < cone:
                et = np.float64(hcal_energy[q]) / math.cosh(eta)
                sum_et += et
                sum_etdr += et * dr
                if dr < core:
                    sum_core += et
        lead = 0.0
        mult = 0
        ndisp = 0
        for q in range(track_offsets[e], track_offsets[e + 1]):
            pt = np.float64(track_pt[q])
            if not (pt > track_pt_min and abs(np.float64(track_dz[q])) < dz_max):
                continue
            teta = np.float64(track_eta[q])
            if abs(teta - jeta) > far:
                continue
            dr = _delta_r(teta, np.float64(track_phi[q]), jeta, jphi)
            if dr < cone:
                mult += 1
                lead = max(lead, pt)
                if abs(np.float64(track_d0sig[q])) > d0sig_min:
                    ndisp += 1
                if dr >= core:
                    iso += pt
        jpt = np.float64(jet_pt[j])
        out[j, 0] = sum_etdr / sum_et if sum_et > 0.0 else 0.0
        out[j, 1] = sum_core / sum_et if sum_et > 0.0 else 0.0
        out[j, 2] = lead / jpt if jpt > 0.0 else 0.0
        out[j, 3] = mult
        out[j, 4] = iso
        out[j, 5] = ndisp


def fill_jet_shapes(out: np.ndarray, jet_event: np.ndarray, jet_pt: np.ndarray, jet_eta: np.ndarray,
                    jet_phi: np.ndarray,
                    ecal_offsets: np.ndarray, ecal_ieta: np.ndarray, ecal_iphi: np.ndarray, ecal_energy: np.ndarray,
                    hcal_offsets: np.ndarray, hcal_ieta: np.ndarray, hcal_iphi: np.ndarray, hcal_energy: np.ndarray,
                    track_offsets: np.ndarray, track_pt: np.ndarray, track_eta: np.ndarray, track_phi: np.ndarray,
                    track_dz: np.ndarray, track_d0sig: np.ndarray,
                    ecal_eta_centre: np.ndarray, ecal_phi_centre: np.ndarray,
                    hcal_eta_centre: np.ndarray, hcal_phi_centre: np.ndarray,
                    cone: float = 0.4, core: float = 0.1, track_pt_min: float = 1.0, dz_max: float = 0.1,
                    d0sig_min: float = 3.0) -> np.ndarray:
    """Classical jet shapes into ``out`` float32 [n_jets, 6], columns :data:`SHAPE_NAMES`; returns ``out``.

    dR to the jet axis (jet eta/phi) with dphi wrapped into [-pi, pi); hits at their cell centre
    (``*_centre`` float64 tables: geometry.ecal_eta(arange(280)), ecal_phi(arange(360)), hcal_eta(arange(56)),
    hcal_phi(arange(72))), ET = E / cosh(eta_centre) (GeV); PV tracks: pT > track_pt_min (GeV) and
    |dz| < dz_max (cm), direction = Track eta/phi.
    width = sum(ET dR) / sum(ET) over ECAL + HCAL cells with dR < cone (0 without ET);
    core_fraction = sum ET(dR < core) / sum ET(dR < cone) (0 without ET);
    leading_track_fraction = max pT of PV tracks in the cone / jet pT (0 without);
    charged_multiplicity = PV tracks in the cone; isolation (GeV) = sum pT of PV tracks + sum ET of ECAL
    hits, both in the annulus core <= dR < cone; n_displaced_tracks = PV tracks in the cone with
    |d0sig| > d0sig_min. Parallel over jets.
    """
    if out.ndim != 2 or out.shape != (len(jet_event), len(SHAPE_NAMES)) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 [n_jets, {len(SHAPE_NAMES)}], got {out.dtype} {out.shape}")
    jet_event = _check_jets(jet_event, None, None, ecal_offsets, hcal_offsets, track_offsets)
    tables = [np.ascontiguousarray(a, dtype=np.float64)
              for a in (ecal_eta_centre, ecal_phi_centre, hcal_eta_centre, hcal_phi_centre)]
    _fill_jet_shapes(out, jet_event, jet_pt, jet_eta, jet_phi,
                     _i64(ecal_offsets), ecal_ieta, ecal_iphi, ecal_energy,
                     _i64(hcal_offsets), hcal_ieta, hcal_iphi, hcal_energy,
                     _i64(track_offsets), track_pt, track_eta, track_phi, track_dz, track_d0sig,
                     *tables, float(cone), float(core), float(track_pt_min), float(dz_max), float(d0sig_min))
    return out
