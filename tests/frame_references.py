"""Slow, obviously-correct numpy references of frameproducers.kernels (tests and benchmark only).

Images: whole-event 280 x 360 maps per channel filled with ``np.add.at`` (sequential, in input order, float32),
thresholded, then cropped to each jet's window with wrapped columns. Graph nodes: the non-zero pixels of
those images. kNN / radius: full distance matrices and a stable sort. Shapes: per-jet vectorised numpy.
"""

from __future__ import annotations

import numpy as np

from dataformats.geometry import CRYSTALS_PER_TOWER, ECAL_N_IETA, ECAL_N_IPHI
from frameproducers.channels import CHANNEL_CODE, FIRST_LAYER_CODE, N_CHANNEL_CODES


def event_images(e, ecal, hcal, tracks, tracker_hits, channel_of_code, scale, threshold, dz_max, hcal_upsample):
    """Channel maps float32 [C, 280, 360] of event ``e``; collections are dicts of flat arrays + ``offsets``."""
    scale = np.asarray(scale, np.float32)
    threshold = np.asarray(threshold, np.float32)
    C = len(scale)
    img = np.zeros((C, ECAL_N_IETA, ECAL_N_IPHI), np.float32)

    def add(code, rows, cols, values):
        ch = channel_of_code[code]
        if ch >= 0 and len(rows):
            np.add.at(
                img[ch],
                (np.asarray(rows, np.int64), np.asarray(cols, np.int64)),
                np.asarray(values, np.float32) * scale[ch],
            )

    sl = slice(ecal["offsets"][e], ecal["offsets"][e + 1])
    add(CHANNEL_CODE["ecal"], ecal["ieta"][sl], ecal["iphi"][sl], ecal["energy"][sl])

    sl = slice(hcal["offsets"][e], hcal["offsets"][e + 1])
    ti = hcal["ieta"][sl].astype(np.int64)
    tp = hcal["iphi"][sl].astype(np.int64)
    energy = hcal["energy"][sl].astype(np.float32)
    n = CRYSTALS_PER_TOWER
    if hcal_upsample:
        # each tower's 25 crystals are distinct pixels: the order within a tower does not matter
        a, b = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        rows = (ti[:, None] * n + a.ravel()[None, :]).ravel()
        cols = (tp[:, None] * n + b.ravel()[None, :]).ravel()
        add(CHANNEL_CODE["hcal"], rows, cols, np.repeat(energy / np.float32(n * n), n * n))
    else:
        add(CHANNEL_CODE["hcal"], ti * n + n // 2, tp * n + n // 2, energy)

    sl = slice(tracks["offsets"][e], tracks["offsets"][e + 1])
    reach = tracks["ieta"][sl] >= 0
    rows, cols = tracks["ieta"][sl][reach], tracks["iphi"][sl][reach]
    add(CHANNEL_CODE["track_pt"], rows, cols, tracks["pt"][sl][reach])
    pv = np.abs(tracks["dz"][sl][reach].astype(np.float64)) < dz_max
    add(CHANNEL_CODE["track_d0"], rows[pv], cols[pv], tracks["d0v"][sl][reach][pv])
    add(CHANNEL_CODE["track_dz"], rows[pv], cols[pv], tracks["dzv"][sl][reach][pv])

    sl = slice(tracker_hits["offsets"][e], tracker_hits["offsets"][e + 1])
    layer = tracker_hits["layer"][sl].astype(np.int64)
    for L in range(N_CHANNEL_CODES - FIRST_LAYER_CODE):
        sel = layer == L
        add(FIRST_LAYER_CODE + L, tracker_hits["ieta"][sl][sel], tracker_hits["iphi"][sl][sel], np.ones(sel.sum()))

    cut = threshold * np.abs(scale)  # float32
    for ch in range(C):
        img[ch][np.abs(img[ch]) <= cut[ch]] = 0.0
    return img


def crop(img, seed_ieta, seed_iphi, W):
    """Window [C, W, W] of an event map: rows seed_ieta - h + r (zero outside the grid), columns wrapped."""
    h = W // 2
    rows = int(seed_ieta) - h + np.arange(W)
    cols = (int(seed_iphi) - h + np.arange(W)) % ECAL_N_IPHI
    out = np.zeros((img.shape[0], W, W), np.float32)
    ok = (rows >= 0) & (rows < ECAL_N_IETA)
    out[:, ok, :] = img[:, rows[ok], :][:, :, cols]
    return out


def jet_images(
    W,
    jet_event,
    seed_ieta,
    seed_iphi,
    ecal,
    hcal,
    tracks,
    tracker_hits,
    channel_of_code,
    scale,
    threshold,
    dz_max,
    hcal_upsample,
):
    """Reference of fill_jet_images: float32 [n_jets, C, W, W]."""
    out = np.zeros((len(jet_event), len(scale), W, W), np.float32)
    for e in np.unique(jet_event):
        img = event_images(
            e, ecal, hcal, tracks, tracker_hits, channel_of_code, scale, threshold, dz_max, hcal_upsample
        )
        for j in np.flatnonzero(jet_event == e):
            out[j] = crop(img, seed_ieta[j], seed_iphi[j], W)
    return out


def graph_nodes(images, seed_ieta, coordinates, eta_centre):
    """Reference of build_graph_nodes from reference images [n_jets, C, W, W]: (node_offsets, x, pos, pixel)."""
    n_jets, C, W, _ = images.shape
    h = W // 2
    xs, poss, pixels, counts = [], [], [], []
    for j in range(n_jets):
        img = images[j]
        rows, cols = np.nonzero(np.any(img != 0, axis=0))  # row-major order
        feats = [img[:, rows, cols].T]
        if coordinates:
            deta = eta_centre[int(seed_ieta[j]) - h + rows] - eta_centre[int(seed_ieta[j])]
            dphi = (cols - h) * (2.0 * np.pi / ECAL_N_IPHI)
            feats.append(np.stack([deta, dphi], axis=1).astype(np.float32))
        xs.append(np.concatenate(feats, axis=1).astype(np.float32))
        poss.append(np.stack([rows - h, cols - h], axis=1).astype(np.float32))
        pixels.append((rows * W + cols).astype(np.int32))
        counts.append(len(rows))
    node_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    F = C + (2 if coordinates else 0)
    x = np.concatenate(xs) if xs else np.zeros((0, F), np.float32)
    pos = np.concatenate(poss) if poss else np.zeros((0, 2), np.float32)
    pixel = np.concatenate(pixels) if pixels else np.zeros(0, np.int32)
    return node_offsets, x.reshape(-1, F), pos.reshape(-1, 2), pixel


def _select(dist, a, i, k, self_loops, limit=None):
    """Sorted candidates (distance, global index) of node i among nodes a..a+n-1; cyclic padding to k."""
    idx = a + np.arange(len(dist))
    keep = np.ones(len(dist), bool)
    if not self_loops:
        keep[i - a] = False
    if limit is not None:
        keep &= dist <= limit
    keep &= dist < np.inf  # +inf and NaN: never a neighbour
    cand = idx[keep][np.lexsort((idx[keep], dist[keep]))]
    return cand


def _pad_cyclic(cand, k, i):
    if len(cand) == 0:
        return np.full(k, i, np.int64)
    return np.resize(cand[:k], k)  # np.resize repeats cyclically


def knn_pixels(pixel, node_offsets, W, k, self_loops):
    """Reference kNN in pixel space: full distance vectors and lexsort per node."""
    out = np.empty((len(pixel), k), np.int64)
    r, c = np.divmod(np.asarray(pixel, np.int64), W)
    for g in range(len(node_offsets) - 1):
        a, b = node_offsets[g], node_offsets[g + 1]
        for i in range(a, b):
            dist = (r[a:b] - r[i]) ** 2 + (c[a:b] - c[i]) ** 2
            out[i] = _pad_cyclic(_select(dist, a, i, k, self_loops), k, i)
    return out


def knn_features(x, node_offsets, k, self_loops):
    """Reference kNN in feature space: float64 squared distances summed column by column."""
    x = np.asarray(x, np.float64)
    out = np.empty((len(x), k), np.int64)
    for g in range(len(node_offsets) - 1):
        a, b = node_offsets[g], node_offsets[g + 1]
        for i in range(a, b):
            dist = np.zeros(b - a)
            for f in range(x.shape[1]):
                u = x[a:b, f] - x[i, f]
                dist += u * u
            out[i] = _pad_cyclic(_select(dist, a, i, k, self_loops), k, i)
    return out


def smallest_per_row(d, counts, k):
    """Reference selection on padded distances ``d [B, n, n]``: per node, the others below +inf by (distance,
    index), the first k; missing slots the node itself. Flat indices, graph after graph."""
    out = []
    a = 0
    for b, c in enumerate(counts):
        for i in range(c):
            row = np.asarray(d[b, i, :c], np.float64)
            idx = np.arange(c)
            keep = (idx != i) & (row < np.inf)  # NaN and +inf: never a neighbour
            cand = idx[keep][np.lexsort((idx[keep], row[keep]))][:k]
            out.append(np.concatenate([a + cand, np.full(k - len(cand), a + i)]))
        a += c
    return np.array(out, np.int64).reshape(-1, k)


def radius_pixels(pixel, node_offsets, W, radius, max_neighbors, self_loops):
    """Reference radius graph: (neighbors [N, max_neighbors] padded with i, num_neighbors [N])."""
    out = np.empty((len(pixel), max_neighbors), np.int64)
    num = np.empty(len(pixel), np.int32)
    r, c = np.divmod(np.asarray(pixel, np.int64), W)
    for g in range(len(node_offsets) - 1):
        a, b = node_offsets[g], node_offsets[g + 1]
        for i in range(a, b):
            dist = (r[a:b] - r[i]) ** 2 + (c[a:b] - c[i]) ** 2
            cand = _select(dist, a, i, max_neighbors, self_loops, limit=radius * radius)[:max_neighbors]
            num[i] = len(cand)
            out[i] = i
            out[i, : len(cand)] = cand
    return out, num


def edge_index(neighbors, num_neighbors=None):
    """Reference edge_index by explicit loops: (source = neighbour, target = i)."""
    src, dst = [], []
    for i in range(neighbors.shape[0]):
        n = neighbors.shape[1] if num_neighbors is None else num_neighbors[i]
        for s in range(n):
            src.append(neighbors[i, s])
            dst.append(i)
    return np.array([src, dst], np.int64).reshape(2, -1)


def _dr(eta1, phi1, eta2, phi2):
    dphi = (phi1 - phi2 + np.pi) % (2.0 * np.pi) - np.pi
    deta = eta1 - eta2
    return np.sqrt(deta * deta + dphi * dphi)


def jet_shapes(
    jet_event,
    jet_pt,
    jet_eta,
    jet_phi,
    ecal,
    hcal,
    tracks,
    ecal_eta_centre,
    ecal_phi_centre,
    hcal_eta_centre,
    hcal_phi_centre,
    cone=0.4,
    core=0.1,
    track_pt_min=1.0,
    dz_max=0.1,
    d0sig_min=3.0,
):
    """Reference of fill_jet_shapes: float32 [n_jets, 6]."""
    out = np.zeros((len(jet_event), 6), np.float32)
    for j, e in enumerate(jet_event):
        jeta, jphi = float(jet_eta[j]), float(jet_phi[j])
        ets, drs, is_ecal = [], [], []
        for coll, eta_c, phi_c, flag in (
            (ecal, ecal_eta_centre, ecal_phi_centre, True),
            (hcal, hcal_eta_centre, hcal_phi_centre, False),
        ):
            sl = slice(coll["offsets"][e], coll["offsets"][e + 1])
            eta = eta_c[coll["ieta"][sl].astype(np.int64)]
            phi = phi_c[coll["iphi"][sl].astype(np.int64)]
            ets.append(coll["energy"][sl].astype(np.float64) / np.cosh(eta))
            drs.append(_dr(eta, phi, jeta, jphi))
            is_ecal.append(np.full(len(eta), flag))
        et, dr, is_e = np.concatenate(ets), np.concatenate(drs), np.concatenate(is_ecal)
        cone_sel = dr < cone
        sum_et = et[cone_sel].sum()
        width = (et * dr)[cone_sel].sum() / sum_et if sum_et > 0 else 0.0
        core_fraction = et[dr < core].sum() / sum_et if sum_et > 0 else 0.0
        iso = et[is_e & (dr >= core) & cone_sel].sum()

        sl = slice(tracks["offsets"][e], tracks["offsets"][e + 1])
        pt = tracks["pt"][sl].astype(np.float64)
        pv = (pt > track_pt_min) & (np.abs(tracks["dz"][sl].astype(np.float64)) < dz_max)
        tdr = _dr(tracks["eta"][sl].astype(np.float64), tracks["phi"][sl].astype(np.float64), jeta, jphi)
        sel = pv & (tdr < cone)
        lead = pt[sel].max() if sel.any() else 0.0
        iso += pt[sel & (tdr >= core)].sum()
        jpt = float(jet_pt[j])
        out[j] = (
            width,
            core_fraction,
            lead / jpt if jpt > 0 else 0.0,
            sel.sum(),
            iso,
            (sel & (np.abs(tracks["d0sig"][sl].astype(np.float64)) > d0sig_min)).sum(),
        )
    return out


def notebook_event_image(one, px, dz_max: float, hcal_upsample: bool, impact: str = "") -> np.ndarray:
    """The full-grid image of one event the notebook way (benchmark baselines): the event's hits pulled out of an
    awkward array ``one`` (one entry, flat branch names) per collection, then :func:`event_images` with the
    channel map of ``px`` (a PixelMap); ``impact``: "sig" for the d0/dz significances."""
    import awkward as ak

    def coll(name: str, fields: dict) -> dict:
        c = {f: ak.to_numpy(ak.flatten(one[f"{name}_{src}"])) for f, src in fields.items()}
        c["offsets"] = np.array([0, len(next(iter(c.values())))])
        return c

    ecal = coll("EcalHit", {"ieta": "ieta", "iphi": "iphi", "energy": "energy"})
    hcal = coll("HcalHit", {"ieta": "ieta", "iphi": "iphi", "energy": "energy"})
    fields = {"ieta": "ecal_ieta", "iphi": "ecal_iphi", "pt": "pt", "d0v": f"d0{impact}", "dzv": f"dz{impact}"}
    trk = coll("Track", {**fields, "dz": "dz"})
    thit = coll("TrackerHit", {"layer": "layer", "ieta": "ieta", "iphi": "iphi"})
    return event_images(0, ecal, hcal, trk, thit, px.channel_of_code, px.scale, px.threshold, dz_max, hcal_upsample)
