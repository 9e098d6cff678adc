"""Hits on the pixels of a jet window: the accumulation shared by jet images and graph nodes.

Window: W x W crystals, h = W // 2. Pixel (r, c) is ECAL row ``seed_ieta - h + r`` and column
``(seed_iphi - h + c) mod 360``: phi wraps, rows outside 0..279 stay empty.
Contributions: ECAL hit -> ``ecal`` += E (GeV); HCAL tower (ti, tp) -> ``hcal``: E/25 to each crystal
(5 ti + a, 5 tp + b), a, b in 0..4 when ``hcal_upsample``, else all of E to crystal (5 ti + 2, 5 tp + 2);
track with ``track_ieta >= 0`` -> ``track_pt`` += pT and, when |dz| < dz_max (cm, compared in float64),
``track_d0`` += d0v, ``track_dz`` += dzv; tracker hit of layer L -> channel code 5 + L += 1.
Each contribution is multiplied by ``scale[c]`` and summed in float32 in input order (ECAL, HCAL, tracks,
tracker hits; hits in collection order); then a pixel with |value| <= threshold[c] * |scale[c]| (float32)
is set to 0.

Each collection of an event is first filtered by a vectorised window test (a mask byte and a pixel per hit),
then only the 8-hit words of the mask with a hit in the window are visited (:func:`_hits_in_window`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from dataformats.geometry import CRYSTALS_PER_TOWER, ECAL_N_IPHI
from frameproducers.channels import CHANNEL_CODE, FIRST_LAYER_CODE, N_CHANNEL_CODES
from frameproducers.kernels.jit import no_refcount

_NPHI = ECAL_N_IPHI
_CPT = CRYSTALS_PER_TOWER
_CODE_TRACK_PT = CHANNEL_CODE["track_pt"]
_CODE_TRACK_D0 = CHANNEL_CODE["track_d0"]
_CODE_TRACK_DZ = CHANNEL_CODE["track_dz"]
_CODE_ECAL = CHANNEL_CODE["ecal"]
_CODE_HCAL = CHANNEL_CODE["hcal"]
_N_LAYERS = N_CHANNEL_CODES - FIRST_LAYER_CODE


class WindowScratch(NamedTuple):
    """Scratch of :func:`accumulate_window`, one per thread, reused across jets."""

    mask: np.ndarray  # uint8 [n_mask]: hit q lies in the window
    words: np.ndarray  # uint64 [n_mask / 8]: the mask read by 8-hit words (a view of it)
    pix: np.ndarray  # int32 [n_mask]: its pixel r * W + c (HCAL towers: top-left crystal, packed)
    hit: np.ndarray  # int32 [n_mask]: the hits in the window, ascending
    flag: np.ndarray  # uint8 [W * W] or [0]: pixel touched (empty: touched pixels are not recorded)
    touched: np.ndarray  # int32 [W * W] or [0]: the touched pixels, in first-touch order


@njit(cache=True)
def window_scratch(n_mask, n_flag):
    """New scratch: masks of ``n_mask`` (:func:`scratch_length`) hits, touched flags of ``n_flag`` pixels."""
    mask = np.zeros(n_mask, np.uint8)
    return WindowScratch(
        mask,
        mask.view(np.uint64),
        np.zeros(n_mask, np.int32),
        np.empty(n_mask, np.int32),
        np.zeros(n_flag, np.uint8),
        np.empty(n_flag, np.int32),
    )


@njit(cache=True)
def scratch_length(ecal, hcal, tracks, tracker):
    """Scratch length of the window masks: the largest collection of any event, rounded up to 8, plus 8."""
    m = 0
    for off in (ecal.offsets, hcal.offsets, tracks.offsets, tracker.offsets):
        for e in range(off.shape[0] - 1):
            m = max(m, off[e + 1] - off[e])
    return (m + 7) // 8 * 8 + 8


@njit(cache=True)
def effective_thresholds(channels):
    """threshold[c] * |scale[c]| in float32 (the cut on the scaled pixel value)."""
    scale, threshold = channels.scale, channels.threshold
    out = np.empty(scale.shape[0], np.float32)
    for c in range(scale.shape[0]):
        out[c] = threshold[c] * abs(scale[c])
    return out


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


@njit(inline="always", cache=True)
def _hits_in_window(hits, e, towers, mult, shift, row0, col0, W, sc):
    """The hits of event e that fall in the window: returns (lo, m), their indices q (hit lo + q), ascending, in
    ``sc.hit[:m]`` and their pixels in ``sc.pix[q]`` (crystals ieta * mult + shift, or HCAL towers with
    ``towers``). The mask is tested by 8-hit words: a word without a hit in the window costs one compare."""
    lo = hits.offsets[e]
    n = hits.offsets[e + 1] - lo
    if n == 0:
        return lo, np.int64(0)
    ieta = hits.ieta[lo : lo + n]
    iphi = hits.iphi[lo : lo + n]
    mask = sc.mask
    m64 = sc.words
    m64[(n - 1) >> 3] = 0  # mask bytes beyond n read as 0 by the word scan
    if towers:
        _mask_towers(ieta, iphi, row0, col0, W, mask[:n], sc.pix[:n])
    else:
        _mask_cells(ieta, iphi, mult, shift, row0, col0, W, mask[:n], sc.pix[:n])
    hit = sc.hit
    m = np.int64(0)
    for wq in range((n + 7) >> 3):
        if m64[wq] == 0:
            continue
        for q in range(wq << 3, min((wq << 3) + 8, n)):
            hit[m] = q
            m += mask[q]
    return lo, m


@njit(inline="always", cache=True)
def _touch(sc, n_t, p):
    """When touched pixels are recorded (``sc.flag`` non-empty), record pixel p at its first touch (flag it,
    append it to ``sc.touched``); returns the touched count."""
    if sc.flag.shape[0] > 0 and sc.flag[p] == 0:
        sc.flag[p] = 1
        sc.touched[n_t] = p
        n_t += 1
    return n_t


@njit(inline="always", cache=True)
def _add_cells(buf, ch, s, hits, e, mult, shift, row0, col0, W, sc, n_t):
    """Energy * s of each hit of event e in the window onto its crystal ieta * mult + shift (ECAL hits; HCAL
    towers at their centre crystal); returns the touched count."""
    lo, m = _hits_in_window(hits, e, False, mult, shift, row0, col0, W, sc)
    for i in range(m):
        q = sc.hit[i]
        p = np.int64(sc.pix[q])
        buf[ch, p] += hits.energy[lo + q] * s
        n_t = _touch(sc, n_t, p)
    return n_t


@njit(inline="always", cache=True)
def _add_towers(buf, ch, s, hcal, e, row0, col0, W, sc, n_t):
    """Energy / 25 * s of each HCAL tower of event e onto each of its 5 x 5 crystals in the window."""
    lo, m = _hits_in_window(hcal, e, True, np.int64(1), np.int64(0), row0, col0, W, sc)
    for i in range(m):
        q = sc.hit[i]
        packed = np.int64(sc.pix[q])
        rt = (packed + 8 * 512) // 512 - 8  # floor division of the packed (rt, ct), rt >= -4
        ct = packed - rt * 512
        v = hcal.energy[lo + q] / np.float32(_CPT * _CPT) * s
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
                n_t = _touch(sc, n_t, p)
    return n_t


@njit(inline="always", cache=True)
def _add_tracks(buf, channels, tracks, e, dz_max, row0, col0, W, sc, n_t):
    """pT of each track of event e at its ECAL-face crystal in the window; d0v and dzv of the PV tracks."""
    cpt = channels.of_code[_CODE_TRACK_PT]
    cd0 = channels.of_code[_CODE_TRACK_D0]
    cdz = channels.of_code[_CODE_TRACK_DZ]
    if not (cpt >= 0 or cd0 >= 0 or cdz >= 0):
        return n_t
    scale = channels.scale
    lo, m = _hits_in_window(tracks, e, False, np.int64(1), np.int64(0), row0, col0, W, sc)
    for i in range(m):
        q = sc.hit[i]
        p = np.int64(sc.pix[q])
        pv = (cd0 >= 0 or cdz >= 0) and abs(np.float64(tracks.dz[lo + q])) < dz_max
        if cpt >= 0:
            buf[cpt, p] += tracks.pt[lo + q] * scale[cpt]
        if pv:
            if cd0 >= 0:
                buf[cd0, p] += tracks.d0v[lo + q] * scale[cd0]
            if cdz >= 0:
                buf[cdz, p] += tracks.dzv[lo + q] * scale[cdz]
        if cpt >= 0 or pv:
            n_t = _touch(sc, n_t, p)
    return n_t


@njit(inline="always", cache=True)
def _add_tracker_hits(buf, channels, tracker, e, row0, col0, W, sc, n_t):
    """+1 * scale per tracker hit of event e in the window, in the channel of its layer."""
    any_layer = False
    for L in range(_N_LAYERS):
        if channels.of_code[FIRST_LAYER_CODE + L] >= 0:
            any_layer = True
    if not any_layer:
        return n_t
    lo, m = _hits_in_window(tracker, e, False, np.int64(1), np.int64(0), row0, col0, W, sc)
    for i in range(m):
        q = sc.hit[i]
        L = np.int64(tracker.layer[lo + q])
        if L >= _N_LAYERS:
            continue
        ch = channels.of_code[FIRST_LAYER_CODE + L]
        if ch < 0:
            continue
        p = np.int64(sc.pix[q])
        buf[ch, p] += channels.scale[ch]
        n_t = _touch(sc, n_t, p)
    return n_t


@no_refcount
def accumulate_window(buf, sc, e, seed_ieta, seed_iphi, ecal, hcal, tracks, tracker, channels, par):
    """Add the hits of event ``e`` that fall in the W x W window of seed (seed_ieta, seed_iphi) to ``buf``
    [C, W*W] (float32, scaled, in input order); W, dz_max and hcal_upsample from ``par[0]``. When
    ``sc.flag`` is non-empty, each newly touched pixel is appended to ``sc.touched`` (``sc.flag[p]`` = 1
    marks it); returns the touched count."""
    p = par[0]
    W = p.window
    h = W // 2
    row0 = np.int32(seed_ieta) - np.int32(h)
    col0 = np.int32(seed_iphi) - np.int32(h)
    n_t = np.int64(0)
    # crystal = tower * mult + shift: (1, 0) for ECAL-grid hits, (5, 2) for HCAL towers (non-literal: one compile)
    unit, zero, tower, centre = np.int64(1), np.int64(0), np.int64(_CPT), np.int64(_CPT // 2)
    ch = channels.of_code[_CODE_ECAL]
    if ch >= 0:
        n_t = _add_cells(buf, ch, channels.scale[ch], ecal, e, unit, zero, row0, col0, W, sc, n_t)
    ch = channels.of_code[_CODE_HCAL]
    if ch >= 0:
        if p.hcal_upsample:
            n_t = _add_towers(buf, ch, channels.scale[ch], hcal, e, row0, col0, W, sc, n_t)
        else:
            n_t = _add_cells(buf, ch, channels.scale[ch], hcal, e, tower, centre, row0, col0, W, sc, n_t)
    n_t = _add_tracks(buf, channels, tracks, e, p.dz_max, row0, col0, W, sc, n_t)
    return _add_tracker_hits(buf, channels, tracker, e, row0, col0, W, sc, n_t)


@njit(cache=True)
def threshold_touched(buf, sc, n_t, thr):
    """Zero |buf[c, p]| <= thr[c] at the touched pixels (channels with thr > 0) and clear their flags."""
    flag, touched = sc.flag, sc.touched
    for c in range(buf.shape[0]):
        t = thr[c]
        if t > 0:
            for q in range(n_t):
                p = touched[q]
                if abs(buf[c, p]) <= t:
                    buf[c, p] = 0.0
    for q in range(n_t):
        flag[touched[q]] = 0
