"""Slow, obviously-correct numpy reference of frameproducers.kernels.build_hit_nodes (tests only).

Per jet: each collection's hits of the jet's event placed on the window with wrapped columns, selected with
boolean masks, ranked with ``np.lexsort`` (value, then hit index), capped, and their features computed in float64
(``math.log`` per value, as the kernel's libm) and rounded to float32 once.
"""

from __future__ import annotations

import math

import numpy as np

from dataformats import geometry as geo

ETA_CENTRE = geo.ecal_eta(np.arange(geo.ECAL_N_IETA))
N_FEATURES = 14


def _place(rows, cols, seed_ieta, seed_iphi, W):
    """Window (r, c) of crystals (rows, cols) and whether they lie inside."""
    h = W // 2
    r = np.asarray(rows, np.int64) - int(seed_ieta) + h
    c = (np.asarray(cols, np.int64) - int(seed_iphi) + h) % geo.ECAL_N_IPHI
    return r, c, (r >= 0) & (r < W) & (c < W)


def _ranked(values, cap, descending=True):
    """Indices into ``values`` of the ``cap`` best (largest, or smallest), ties by index."""
    idx = np.arange(len(values))
    key = -np.asarray(values, np.float64) if descending else np.asarray(values, np.float64)
    return np.lexsort((idx, key))[:cap]


def _rows(n, kind, r, c, W, deta, dphi):
    x = np.zeros((n, N_FEATURES), np.float64)
    x[:, kind] = 1.0
    x[:, 12] = deta
    x[:, 13] = dphi
    h = W // 2
    return x, np.stack([r - h, c - h], 1), r * W + c


def _energy(x, values, jet_pt):
    x[:, 4] = [math.log(float(v)) for v in values]
    x[:, 5] = values / jet_pt if jet_pt > 0 else 0.0


def jet_hit_nodes(j, jets, ecal, hcal, tracks, tracker, s):
    """(x float32 [n, 14], pos float32 [n, 2], pixel int32 [n]) of jet j; collections are dicts of flat arrays +
    ``offsets``; ``s``: the settings (dict with the fields of HIT_PARAM_DTYPE, ``layers`` instead of a mask)."""
    W = int(s["window"])
    h = W // 2
    e, si, sp = int(jets["event"][j]), int(jets["ieta"][j]), int(jets["iphi"][j])
    jet_pt = float(jets["pt"][j])
    eta0 = ETA_CENTRE[si]
    phi0 = float(geo.ecal_phi(sp))
    parts = []

    def sl(coll):
        return slice(int(coll["offsets"][e]), int(coll["offsets"][e + 1]))

    t = {k: v[sl(tracks)] for k, v in tracks.items() if k != "offsets"}
    r, c, inside = _place(t["ieta"], t["iphi"], si, sp, W)
    pt = t["pt"].astype(np.float64)
    sel = np.flatnonzero(
        (t["ieta"] >= 0) & inside & (pt > s["track_pt_min"]) & (np.abs(t["dz"].astype(np.float64)) < s["dz_max"])
    )
    sel = sel[_ranked(pt[sel], s["max_tracks"])]
    dphi = t["phi"][sel].astype(np.float64) - phi0
    dphi = np.where(dphi >= np.pi, dphi - 2 * np.pi, np.where(dphi < -np.pi, dphi + 2 * np.pi, dphi))
    x, pos, pix = _rows(len(sel), 0, r[sel], c[sel], W, t["eta"][sel].astype(np.float64) - eta0, dphi)
    _energy(x, pt[sel], jet_pt)
    clip = s["ipsig_clip"]
    x[:, 6] = t["d0"][sel]
    x[:, 7] = np.clip(t["d0sig"][sel].astype(np.float64), -clip, clip)
    x[:, 8] = t["dz"][sel]
    x[:, 9] = np.clip(t["dzsig"][sel].astype(np.float64), -clip, clip)
    x[:, 10] = t["charge"][sel]
    parts.append((x, pos, pix))

    for kind, coll, mult, shift, thr, cap in (
        (1, ecal, 1, 0, s["ecal_threshold"], s["max_ecal"]),
        (2, hcal, 5, 2, s["hcal_threshold"], s["max_hcal"]),
    ):
        q = sl(coll)
        rows = coll["ieta"][q].astype(np.int64) * mult + shift
        cols = coll["iphi"][q].astype(np.int64) * mult + shift
        r, c, inside = _place(rows, cols, si, sp, W)
        energy = coll["energy"][q].astype(np.float64)
        sel = np.flatnonzero(inside & (energy > thr))
        sel = sel[_ranked(energy[sel], cap)]
        deta = ETA_CENTRE[rows[sel]] - eta0
        x, pos, pix = _rows(len(sel), kind, r[sel], c[sel], W, deta, (c[sel] - h) * (2.0 * math.pi / geo.ECAL_N_IPHI))
        _energy(x, energy[sel], jet_pt)
        parts.append((x, pos, pix))

    q = sl(tracker)
    layer = tracker["layer"][q].astype(np.int64)
    r, c, inside = _place(tracker["ieta"][q], tracker["iphi"][q], si, sp, W)
    sel = np.flatnonzero(inside & np.isin(layer, list(s["layers"])))
    d2 = (r[sel] - h) ** 2 + (c[sel] - h) ** 2
    ieta, iphi = (tracker[f][q][sel].astype(np.int64) for f in ("ieta", "iphi"))
    # nearest first, ties by (layer, ieta, iphi) (then by index: identical hits), not by the order in the file
    sel = sel[np.lexsort((np.arange(len(sel)), iphi, ieta, layer[sel], d2))[: s["max_tracker_hits"]]]
    deta = ETA_CENTRE[tracker["ieta"][q][sel].astype(np.int64)] - eta0
    x, pos, pix = _rows(len(sel), 3, r[sel], c[sel], W, deta, (c[sel] - h) * (2.0 * math.pi / geo.ECAL_N_IPHI))
    x[:, 11] = (layer[sel] + 1.0) / len(geo.TRACKER_LAYER_NAMES)
    parts.append((x, pos, pix))

    x = np.concatenate([p[0] for p in parts]).astype(np.float32)
    pos = np.concatenate([p[1] for p in parts]).astype(np.float32).reshape(-1, 2)
    pixel = np.concatenate([p[2] for p in parts]).astype(np.int32)
    return x, pos, pixel


def hit_nodes(jets, ecal, hcal, tracks, tracker, settings):
    """Reference of build_hit_nodes: (node_offsets, x, pos, pixel) of every jet."""
    out = [jet_hit_nodes(j, jets, ecal, hcal, tracks, tracker, settings) for j in range(len(jets["event"]))]
    counts = [len(o[2]) for o in out]
    node_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if not out:
        return node_offsets, np.zeros((0, N_FEATURES), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.int32)
    return node_offsets, *(np.concatenate([o[i] for o in out]) for i in range(3))


def knn_delta(x, node_offsets, k, self_loops):
    """Brute-force kNN in (delta_eta, delta_phi) = the last two columns: full float64 squared distances, a stable
    sort by (distance, index), the m < k candidates repeated cyclically, a lone node padded with itself."""
    d = np.asarray(x[:, -2:], np.float64)
    out = np.empty((len(x), k), np.int64)
    for g in range(len(node_offsets) - 1):
        a, b = int(node_offsets[g]), int(node_offsets[g + 1])
        for i in range(a, b):
            dist = (d[a:b, 0] - d[i, 0]) ** 2 + (d[a:b, 1] - d[i, 1]) ** 2
            idx = np.arange(a, b)
            keep = np.ones(b - a, bool) if self_loops else idx != i
            cand = idx[keep][np.lexsort((idx[keep], dist[keep]))][:k]
            out[i] = np.full(k, i) if len(cand) == 0 else np.resize(cand, k)
    return out
