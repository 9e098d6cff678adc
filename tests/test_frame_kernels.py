"""Frame-producer kernels (frameproducers.kernels) against the slow references of tests/frame_references.py.

Small random events in the on-disk dtypes (one numba signature per kernel), with jets at the phi seam and
at the eta edges, an empty event, a jet with an empty window, duplicate hits (summation order) and
cancelling track d0/dz.
"""

from __future__ import annotations

from pathlib import Path

import frame_references as ref
import numpy as np
import pytest

from dataformats import geometry as geo
from frameproducers import kernels as K
from frameproducers.channels import CHANNEL_CODE, CHANNELS
from frameproducers.kernels import nodes as kernel_nodes

ETA_CENTRE = geo.ecal_eta(np.arange(geo.ECAL_N_IETA))
FIVE = ("track_pt", "track_d0", "track_dz", "ecal", "hcal")
SUBSET = ("ecal", "tob2", "track_dz", "hcal", "bpix1", "track_pt")  # non-canonical order
DZ_MAX = 0.1

# jets: (event, seed_ieta, seed_iphi); event 3 has no hits at all, event 4 only hits far from its jet
JETS = [(0, 140, 0), (0, 140, 359), (0, 2, 180), (0, 277, 3), (1, 0, 358), (1, 279, 1), (1, 60, 200), (2, 150, 90),
        (2, 151, 92), (3, 100, 100), (4, 140, 180), (5, 30, 300)]  # fmt: skip


def _offsets(counts):
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def make_batch(seed: int = 0):
    """Random events: hits clustered around the jet seeds plus uniform hits; on-disk dtypes."""
    rng = np.random.default_rng(seed)
    n_events = 6
    ecal_e, hcal_e, trk_e, th_e = [], [], [], []
    for e in range(n_events):
        seeds = [(i, p) for ev, i, p in JETS if ev == e and e != 4]
        if e == 3:
            ecal_e.append(np.zeros((0, 3)))
            hcal_e.append(np.zeros((0, 3)))
            trk_e.append(np.zeros((0, 7)))
            th_e.append(np.zeros((0, 3)))
            continue
        if e == 4:  # hits only in rows 0..20 and columns 0..40: far from the jet at (140, 180)
            rows = rng.integers(0, 20, 40)
            cols = rng.integers(0, 40, 40)
        else:
            rows = np.concatenate(
                [np.clip(np.round(rng.normal(i, 12, 120)), 0, 279) for i, _ in seeds] + [rng.integers(0, 280, 150)]
            )
            cols = np.concatenate(
                [np.round(rng.normal(p, 12, 120)) % 360 for _, p in seeds] + [rng.integers(0, 360, 150)]
            )
        n = len(rows)
        dup = rng.integers(0, n, n // 10)  # duplicate crystals: the summation order matters
        rows, cols = np.concatenate([rows, rows[dup]]), np.concatenate([cols, cols[dup]])
        ecal_e.append(np.stack([rows, cols, rng.exponential(1.0, len(rows))], 1))
        t = rng.permutation(np.stack([rows // 5, cols // 5], 1))[: max(1, len(rows) // 3)]
        hcal_e.append(np.concatenate([t, rng.exponential(2.0, (len(t), 1))], 1))
        m = len(rows) // 4
        reach = rng.random(m) < 0.85
        ti = np.where(reach, rows[:m], -1)
        tp = np.where(reach, cols[:m], -1)
        dz = rng.normal(0, 0.12, m)
        d0v = rng.normal(0, 0.05, m)
        dzv = rng.normal(0, 0.05, m)
        if m > 3:  # two tracks in one crystal whose d0 / dz cancel exactly
            ti[1], tp[1], dz[1], d0v[1], dzv[1] = ti[0], tp[0], dz[0], -d0v[0], -dzv[0]
        trk_e.append(np.stack([ti, tp, rng.exponential(3.0, m), d0v, dzv, dz, rng.normal(0, 5, m)], 1))
        k = len(rows) * 2
        pick = rng.integers(0, len(rows), k)
        th_e.append(np.stack([rng.integers(0, 8, k), rows[pick], cols[pick]], 1))

    def flat(parts, cols_dtypes):
        arr = np.concatenate(parts)
        out = {"offsets": _offsets([len(p) for p in parts])}
        for j, (name, dt) in enumerate(cols_dtypes):
            out[name] = np.ascontiguousarray(arr[:, j].astype(dt))
        return out

    ecal = flat(ecal_e, [("ieta", np.int16), ("iphi", np.int16), ("energy", np.float32)])
    hcal = flat(hcal_e, [("ieta", np.int16), ("iphi", np.int16), ("energy", np.float32)])
    tracks = flat(
        trk_e,
        [
            ("ieta", np.int16),
            ("iphi", np.int16),
            ("pt", np.float32),
            ("d0v", np.float32),
            ("dzv", np.float32),
            ("dz", np.float32),
            ("d0sig", np.float32),
        ],
    )
    th = flat(th_e, [("layer", np.uint8), ("ieta", np.int16), ("iphi", np.int16)])
    jet_event = np.array([j[0] for j in JETS], np.int64)
    seed_ieta = np.array([j[1] for j in JETS], np.int16)
    seed_iphi = np.array([j[2] for j in JETS], np.int16)
    return jet_event, seed_ieta, seed_iphi, ecal, hcal, tracks, th


BATCH = make_batch()


def calo_hits(c):
    return K.CaloHits(c["offsets"], c["ieta"], c["iphi"], c["energy"])


def window_hits(ecal, hcal, tracks, th):
    return K.WindowHits(
        calo_hits(ecal),
        calo_hits(hcal),
        K.WindowTracks(
            tracks["offsets"], tracks["ieta"], tracks["iphi"], tracks["pt"], tracks["d0v"], tracks["dzv"], tracks["dz"]
        ),
        K.TrackerHits(th["offsets"], th["layer"], th["ieta"], th["iphi"]),
    )


def channel_config(names, scaled: bool, thresholds: bool):
    codes = np.full(len(CHANNELS), -1, np.int64)
    for i, name in enumerate(names):
        codes[CHANNEL_CODE[name]] = i
    rng = np.random.default_rng(len(names))
    scale = rng.uniform(0.5, 2.0, len(names)).astype(np.float32) if scaled else np.ones(len(names), np.float32)
    if scaled:
        scale[-1] *= -1  # a negative scale: the threshold uses |scale|
    thr = np.zeros(len(names), np.float32)
    if thresholds:
        base = {"ecal": 0.8, "hcal": 0.3, "track_pt": 2.0, "track_d0": 0.02, "track_dz": 0.02}
        thr = np.array([base.get(n, 1.0) for n in names], np.float32)
    return codes, scale, thr


# (W, hcal_upsample, channels, scaled, thresholds)
CONFIGS = [
    (125, True, FIVE, False, False),
    (125, False, CHANNELS, True, True),
    (33, True, SUBSET, True, False),
    (32, False, SUBSET, False, True),  # even window
    (63, True, CHANNELS, False, True),
    (1, False, FIVE, True, True),
]


def reference_images(W, upsample, codes, scale, thr):
    jet_event, seed_ieta, seed_iphi, ecal, hcal, tracks, th = BATCH
    return ref.jet_images(
        W, jet_event, seed_ieta, seed_iphi, ecal, hcal, tracks, th, codes, scale, thr, DZ_MAX, upsample
    )


def kernel_images(W, upsample, codes, scale, thr):
    jet_event, seed_ieta, seed_iphi, ecal, hcal, tracks, th = BATCH
    out = np.full((len(jet_event), len(scale), W, W), np.nan, np.float32)  # the kernel must zero it
    K.fill_jet_images(
        out,
        K.JetSeeds(jet_event, seed_ieta, seed_iphi),
        window_hits(ecal, hcal, tracks, th),
        K.ChannelMap(codes, scale, thr),
        DZ_MAX,
        upsample,
    )
    return out


def kernel_graphs(W, upsample, codes, scale, thr, coordinates=True):
    jet_event, seed_ieta, seed_iphi, ecal, hcal, tracks, th = BATCH
    return K.build_graph_nodes(
        K.JetSeeds(jet_event, seed_ieta, seed_iphi),
        window_hits(ecal, hcal, tracks, th),
        K.ChannelMap(codes, scale, thr),
        W,
        DZ_MAX,
        upsample,
        coordinates,
        ETA_CENTRE,
    )


@pytest.mark.parametrize(("W", "upsample", "names", "scaled", "thresholds"), CONFIGS)
def test_images_match_reference(W, upsample, names, scaled, thresholds) -> None:
    codes, scale, thr = channel_config(names, scaled, thresholds)
    img = kernel_images(W, upsample, codes, scale, thr)
    expected = reference_images(W, upsample, codes, scale, thr)
    np.testing.assert_allclose(img, expected, rtol=1e-6, atol=1e-6)
    assert np.count_nonzero(img) > 0
    if W == 125:
        h = W // 2
        assert not np.any(img[BATCH[0] == 3])  # the event without hits
        assert not np.any(img[3, :, 280 - 277 + h :]) and np.any(img[3, :, : 280 - 277 + h])  # rows beyond 279
        assert not np.any(img[5, :, 280 - 279 + h :]) and np.any(img[5, :, : 280 - 279 + h])
        assert not np.any(img[2, :, : h - 2]) and not np.any(img[4, :, :h])  # rows before 0
        assert np.any(img[0, :, :, :h]) and np.any(img[0, :, :, h + 1 :])  # both sides of the phi seam
        assert np.any(img[5, :, :, :h]) and np.any(img[4, :, :, h + 2 :])
    if thresholds:
        cut = thr * np.abs(scale)
        nz = img != 0
        assert np.all(np.abs(img)[nz] > np.broadcast_to(cut[None, :, None, None], img.shape)[nz])


@pytest.mark.parametrize(("W", "upsample", "names", "scaled", "thresholds"), CONFIGS)
def test_graph_nodes_are_the_nonzero_pixels_of_the_image(W, upsample, names, scaled, thresholds) -> None:
    codes, scale, thr = channel_config(names, scaled, thresholds)
    img = kernel_images(W, upsample, codes, scale, thr)
    node_offsets, x, pos, pixel = kernel_graphs(W, upsample, codes, scale, thr)
    C = len(names)
    h = W // 2
    assert node_offsets[0] == 0 and len(node_offsets) == len(BATCH[0]) + 1
    assert x.dtype == np.float32 and pos.dtype == np.float32 and pixel.dtype == np.int32
    assert x.shape == (node_offsets[-1], C + 2) and pos.shape == (node_offsets[-1], 2)
    for j in range(len(BATCH[0])):
        sl = slice(node_offsets[j], node_offsets[j + 1])
        rows, cols = np.nonzero(np.any(img[j] != 0, axis=0))  # row-major
        np.testing.assert_array_equal(pixel[sl], rows * W + cols)
        np.testing.assert_array_equal(x[sl, :C], img[j][:, rows, cols].T)
        np.testing.assert_array_equal(pos[sl], np.stack([rows - h, cols - h], 1))
    # and both agree with the reference built from the reference images
    r_offsets, r_x, r_pos, r_pixel = ref.graph_nodes(
        reference_images(W, upsample, codes, scale, thr), BATCH[1], True, ETA_CENTRE
    )
    np.testing.assert_array_equal(node_offsets, r_offsets)
    np.testing.assert_array_equal(pixel, r_pixel)
    np.testing.assert_array_equal(pos, r_pos)
    np.testing.assert_allclose(x, r_x, rtol=1e-6, atol=1e-6)


def test_graph_coordinates_and_empty_graphs() -> None:
    codes, scale, thr = channel_config(FIVE, False, False)
    node_offsets, x, pos, pixel = kernel_graphs(33, True, codes, scale, thr)
    counts = np.diff(node_offsets)
    assert counts[BATCH[0] == 3].tolist() == [0]  # event without hits
    assert counts[BATCH[0] == 4].tolist() == [0]  # hits, but none in the window
    assert np.all(counts[BATCH[0] < 3] > 0)
    j = 0  # at the phi seam: delta_phi from the pixel column, delta_eta from the row centres
    sl = slice(node_offsets[j], node_offsets[j + 1])
    r, c = np.divmod(pixel[sl], 33)
    np.testing.assert_allclose(x[sl, -1], (c - 16) * 2 * np.pi / 360, rtol=1e-6)
    np.testing.assert_allclose(x[sl, -2], ETA_CENTRE[140 - 16 + r] - ETA_CENTRE[140], rtol=1e-6, atol=1e-7)
    nc_offsets, nc_x, _, nc_pixel = kernel_graphs(33, True, codes, scale, thr, coordinates=False)
    np.testing.assert_array_equal(nc_offsets, node_offsets)
    np.testing.assert_array_equal(nc_x, x[:, :5])
    # the cancelling d0/dz pair: a crystal with only those two tracks has track_pt but zero d0 / dz
    assert np.any((x[:, 0] != 0) & (x[:, 1] == 0) & (x[:, 2] == 0))


@pytest.mark.parametrize("seed", range(6))
def test_jet_bookkeeping_kernels_equal_numpy(seed) -> None:
    """The collections' event and local index, count_eta_edge and the channel-code check against the numpy they
    replace."""
    from dataformats.indexing import event_and_local_index as jet_event_index
    from frameproducers.kernels.inputs import _codes_map_onto, count_eta_edge

    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4, rng.integers(0, 9))
    offsets = _offsets(counts)
    event, local = jet_event_index(offsets)
    np.testing.assert_array_equal(event, np.repeat(np.arange(len(counts)), counts))
    np.testing.assert_array_equal(local, np.arange(offsets[-1]) - offsets[event])
    assert event.dtype == np.int64 and local.dtype == np.int32
    shifted = jet_event_index(offsets + 5)  # offsets from another start: the same events and indices
    np.testing.assert_array_equal(shifted[0], event)
    np.testing.assert_array_equal(shifted[1], local)
    with pytest.raises(ValueError, match="non-decreasing"):
        jet_event_index(np.array([0, 3, 2, 4]))
    ieta = rng.integers(0, geo.ECAL_N_IETA, 50).astype(np.int16)
    ieta[:4] = [0, 16, 263, geo.ECAL_N_IETA - 1]
    for W in (1, 32, 33, 125):
        h = W // 2
        assert count_eta_edge(ieta, W) == np.count_nonzero((ieta - h < 0) | (ieta - h + W > geo.ECAL_N_IETA))
    for _ in range(20):
        codes = np.full(len(CHANNEL_CODE) + 3, -1, np.int64)
        C = int(rng.integers(0, 5))
        codes[rng.choice(len(codes), C + int(rng.integers(0, 2)), replace=False)] = rng.integers(-1, C + 1, 1)[0]
        codes[rng.choice(len(codes), C, replace=False)] = rng.permutation(C)
        used = np.sort(codes[codes >= 0])
        assert _codes_map_onto(codes, C) == np.array_equal(used, np.arange(C))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"event": [0, 2]}, "jet_event must lie in 0..1"),
        ({"event": [-1, 0]}, "jet_event must lie in 0..1"),
        ({"ieta": [0, 280]}, "seed_ieta must lie in 0..279"),
        ({"iphi": [360, 0]}, "seed_iphi must lie in 0..359"),
        ({"ieta": [0]}, "seed_ieta must have one entry per jet"),
        ({"event": [0, 9], "ieta": [0]}, "jet_event must lie"),  # the first rule broken is named
        ({"ieta": [-1, 0], "iphi": [0]}, "seed_ieta must lie"),
        ({"ieta": [0, 1], "iphi": [0]}, "seed_iphi must have one entry"),
    ],
)
def test_jet_checks(change, message) -> None:
    """check_jets names the first broken rule: events inside the hit offsets, then each seed's length and grid."""
    from frameproducers.kernels.inputs import check_jets

    jets = {"event": [0, 1], "ieta": [10, 20], "iphi": [30, 40], **change}
    event, ieta, iphi = (np.array(jets[k], np.int16) for k in ("event", "ieta", "iphi"))
    offsets = np.array([0, 1, 2], np.int64)
    with pytest.raises(ValueError, match=message):
        check_jets(event, ieta, iphi, offsets, offsets[:3])
    assert check_jets(np.array([1, 0]), np.array([0, 279]), None, offsets).dtype == np.int64


def test_channel_config_is_validated() -> None:
    codes, scale, thr = channel_config(FIVE, False, False)
    out = np.empty((len(BATCH[0]), 5, 9, 9), np.float32)
    bad = codes.copy()
    bad[CHANNEL_CODE["ecal"]] = 0  # two codes on channel 0
    with pytest.raises(ValueError, match="channel_of_code"):
        K.fill_jet_images(
            out, K.JetSeeds(*BATCH[:3]), window_hits(*BATCH[3:]), K.ChannelMap(bad, scale, thr), DZ_MAX, True
        )
    with pytest.raises(ValueError, match="out must be"):
        K.fill_jet_images(
            out.astype(np.float64),
            K.JetSeeds(*BATCH[:3]),
            window_hits(*BATCH[3:]),
            K.ChannelMap(codes, scale, thr),
            DZ_MAX,
            True,
        )


# ----------------------------------------------------------------------------------------------- kNN / radius


def random_graphs(seed: int, W: int, sizes, cluster: bool = False):
    """Graphs of the given node counts: distinct random pixels (optionally a dense cluster + far outliers)."""
    rng = np.random.default_rng(seed)
    parts = []
    for n in sizes:
        if cluster and n > 10:
            h = W // 2
            r = np.clip(np.round(rng.normal(h, W / 12, 4 * n)), 0, W - 1).astype(np.int64)
            c = np.clip(np.round(rng.normal(h, W / 12, 4 * n)), 0, W - 1).astype(np.int64)
            core = np.unique(r * W + c)[: n - 3]
            corners = np.array([0, W - 1, W * W - 1])  # isolated nodes: far k-th neighbours
            parts.append(np.unique(np.concatenate([core, corners])))
        else:
            parts.append(np.sort(rng.choice(W * W, n, replace=False)))
    pixel = np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)
    return pixel, _offsets([len(p) for p in parts])


GRAPH_CASES = [  # (W, sizes, cluster): empty, tiny, padding (< k + 1 nodes), sparse, dense, clustered
    (33, [0, 1, 2, 5, 16, 17, 0, 40, 120, 700], False),
    (63, [150, 60, 230, 30], False),
    (63, [200, 400, 900], True),
    (125, [1200, 300], True),
    (8, [64, 10, 3], False),  # a full window
]


@pytest.mark.parametrize(("W", "sizes", "cluster"), GRAPH_CASES)
@pytest.mark.parametrize("self_loops", [False, True])
def test_knn_pixels_matches_reference_and_brute_force(W, sizes, cluster, self_loops) -> None:
    pixel, node_offsets = random_graphs(W + len(sizes), W, sizes, cluster)
    for k in (16, 5):
        got = K.knn_pixels(pixel, node_offsets, W, k, self_loops)
        assert got.dtype == np.int64 and got.shape == (len(pixel), k)
        np.testing.assert_array_equal(got, ref.knn_pixels(pixel, node_offsets, W, k, self_loops))
        np.testing.assert_array_equal(got, K.brute_force_knn_pixels(pixel, node_offsets, W, k, self_loops))


@pytest.mark.parametrize(("W", "sizes", "cluster"), GRAPH_CASES)
def test_knn_of_a_few_graphs_in_the_calling_thread_equals_the_parallel_driver(W, sizes, cluster) -> None:
    """Below SERIAL_BELOW graphs knn_pixels runs _knn_graphs in the calling thread; the parallel driver over
    chunks of graphs gives the same table."""
    from frameproducers.kernels import knn as kernel_knn
    from frameproducers.kernels.params import SERIAL_BELOW, frame_params

    pixel, node_offsets = random_graphs(W + 1, W, sizes, cluster)
    assert len(sizes) < SERIAL_BELOW
    par = frame_params(window=W, k=16, self_loops=False, brute_force=False)
    serial = K.knn_pixels(pixel, node_offsets, W, 16, False)
    for nch in (1, 3):
        parallel = np.full_like(serial, -7)
        kernel_knn._knn_pixels(pixel, node_offsets, par, parallel, nch, kernel_knn._offset_table(W))
        np.testing.assert_array_equal(parallel, serial)


def test_knn_padding_rule() -> None:
    pixel = np.array([5, 0, 3, 12], np.int32)  # graphs: [5], [0, 3, 12] in a 4 x 4 window
    node_offsets = np.array([0, 1, 4], np.int64)
    nb = K.knn_pixels(pixel, node_offsets, 4, 5, False)
    assert nb[0].tolist() == [0] * 5  # a single node without self loops: itself
    assert nb[1].tolist() == [2, 3, 2, 3, 2]  # node 1 = (0, 0): 2 = (0, 3) d2 9, 3 = (3, 0) d2 9 (tie: index)
    nb = K.knn_pixels(pixel, node_offsets, 4, 5, True)
    assert nb[0].tolist() == [0] * 5
    assert nb[1].tolist() == [1, 2, 3, 1, 2]
    ei = K.edge_index_from_neighbors(nb)
    assert ei.shape == (2, 20) and ei[0].tolist() == nb.ravel().tolist() and ei[1, :5].tolist() == [0] * 5


def test_knn_pixels_rejects_unsorted_pixels() -> None:
    with pytest.raises(ValueError, match="ascending"):
        K.knn_pixels(np.array([3, 1], np.int32), np.array([0, 2]), 4, 2, False)


@pytest.mark.parametrize("self_loops", [False, True])
def test_knn_features_matches_reference(self_loops) -> None:
    rng = np.random.default_rng(3)
    pixel, node_offsets = random_graphs(4, 33, [0, 1, 3, 40, 150])
    x = rng.normal(0, 1, (len(pixel), 7)).astype(np.float32)
    x[10] = x[11] = x[12]  # exact ties: ordered by index
    x[50:60, :3] = 0.0
    for k in (16, 4):
        got = K.knn_features(x, node_offsets, k, self_loops)
        np.testing.assert_array_equal(got, ref.knn_features(x, node_offsets, k, self_loops))


@pytest.mark.parametrize("self_loops", [False, True])
@pytest.mark.parametrize("grid", [False, True])
def test_knn_features_in_two_dimensions_equals_reference(self_loops, grid) -> None:
    """Two columns (hit graphs' delta_eta, delta_phi), graphs of 0 to 300 nodes: the reference's neighbours,
    with coincident nodes and ties on a grid (``grid``) ordered by index."""
    rng = np.random.default_rng(7)
    sizes = [0, 1, 5, 17, 64, 65, 150, 300]
    node_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(node_offsets[-1])
    x = (rng.integers(-6, 7, (n, 2)) * 0.0174 if grid else rng.normal(0, 0.2, (n, 2))).astype(np.float32)
    x[40:44] = x[39]  # coincident nodes
    for k in (16, 4, 1):
        got = K.knn_features(x, node_offsets, k, self_loops)
        np.testing.assert_array_equal(got, ref.knn_features(x, node_offsets, k, self_loops))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_smallest_per_row_matches_reference(dtype) -> None:
    """The selection step of the in-model kNN: the reference's neighbours for graphs of 0 to 140 nodes (over and
    under k, in and out of the pool's threshold), exact ties ordered by index, +inf and NaN never chosen, the
    padding never read."""
    rng = np.random.default_rng(11)
    for n_graphs in (3, 40):
        counts = rng.integers(0, 60, n_graphs)
        counts[:3] = [0, 1, 140] if n_graphs > 3 else [140, 0, 2]
        n = int(counts.max())
        d = rng.integers(0, 20, (n_graphs, n, n)).astype(dtype)  # many exact ties
        d[1::2] = rng.normal(0.0, 1.0, d[1::2].shape)  # negative values too (rounding of |a|^2 + |b|^2 - 2ab)
        d[0, 3, 5:9] = np.inf
        d[0, 4, 1:60] = np.nan
        for b, c in enumerate(counts):
            d[b, c:] = d[b, :, c:] = -1e30  # padding: would be chosen first if it were read
        for k in (16, 4, 1):
            got = K.smallest_per_row(d, counts, k)
            np.testing.assert_array_equal(got, ref.smallest_per_row(d, counts, k))


def _selected(row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """select_smallest on ``row`` (every entry a candidate, no bound), its hist scratch followed by 8 guard words that
    must stay 0; returns (indices, guard)."""
    from numba import njit

    from frameproducers.kernels.knn_select import BUCKETS, select_smallest

    @njit
    def run(row, k, hist, cv, ci, kd, ki):
        return select_smallest(row, len(row), -1, k, kd, ki, hist, cv, ci, np.inf)

    n = len(row)
    buf = np.zeros(BUCKETS + 1 + n + 8, np.int64)
    kd, ki = np.empty(k, row.dtype), np.empty(k, np.int64)
    cnt = run(row, k, buf[: BUCKETS + 1 + n], np.empty(n, row.dtype), np.empty(n, np.int64), kd, ki)
    return ki[:cnt], buf[BUCKETS + 1 + n :]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_selection_of_values_spanning_more_than_the_float_range(dtype) -> None:
    """Candidates from -0.9 to +0.9 of the largest float: their span overflowed to inf, every bucket index became NaN
    and then INT64_MIN, and the count was written one word past the scratch (the result was right). Now no bucket
    pass, and the ranks as the reference gives them."""
    big = np.finfo(dtype).max
    row = np.array([0, -0.9 * big, 0.9 * big, 0.5 * big, 1, 2, 3], dtype)
    for k in (1, 3):
        got, guard = _selected(row, k)
        assert guard.tolist() == [0] * 8
        np.testing.assert_array_equal(got, np.argsort(row, kind="stable")[:k])


def test_the_selection_of_rows_that_no_bucket_pass_narrows() -> None:
    """One outlier puts every other value in one bucket, and equal values give no range at all: the candidates left
    are ranked with a heap (ties by index), not by counting ranks (O(c^2): 100k ECAL hits with one of 1e6 GeV
    took seconds), the same choice as the reference's."""
    rng = np.random.default_rng(3)
    outlier = -rng.exponential(1.0, 20_000)
    outlier[7] = -1e6
    for row in (outlier, np.full(5_000, -1.0), np.repeat(-rng.exponential(1.0, 50), 100)):
        got, guard = _selected(row, 64)
        assert guard.tolist() == [0] * 8
        np.testing.assert_array_equal(got, np.argsort(row, kind="stable")[:64])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_smallest_per_row_from_a_gram_matrix(dtype) -> None:
    """Given the squared norms, the kernel forms ``(sq_i + sq_j) - 2 g_ij`` itself: the neighbours of the full
    distance matrix formed as torch does (numpy, same dtype), ties and padding included."""
    rng = np.random.default_rng(12)
    counts = np.array([0, 1, 17, 60, 5, 33])
    n = int(counts.max())
    p = rng.normal(0.0, 1.0, (len(counts), n, 9)).astype(dtype)
    p[3, 10] = p[3, 20]  # an exact tie
    sq = np.square(p).sum(-1).astype(dtype)
    gram = (p @ p.transpose(0, 2, 1)).astype(dtype)
    d = (sq[:, :, None] + sq[:, None, :]) - (gram + gram)
    for b, c in enumerate(counts):
        gram[b, c:] = gram[b, :, c:] = 1e30  # padding: would be chosen first if it were read
    for k in (16, 4):
        np.testing.assert_array_equal(K.smallest_per_row(gram, counts, k, sq=sq), ref.smallest_per_row(d, counts, k))
    with pytest.raises(ValueError, match="sq must be"):
        K.smallest_per_row(gram, counts, 4, sq=sq[:, :-1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_knn_rows_cut_at_a_neighbours_bound_are_checked(dtype) -> None:
    """Each row is first cut at a bound from its nearest earlier node's neighbours; where that cut keeps fewer than
    k candidates (here: the row is NaN at most of them) all candidates are selected from, so the result is the
    reference's. Points on a line (every distance a small integer: ties), k 4 and 16, with and without the Gram
    form, and the hit graphs' kNN on the same points (two columns)."""
    rng = np.random.default_rng(13)
    counts = np.array([40, 7, 90])
    n = int(counts.max())
    pts = rng.permutation(n).astype(dtype)[None, :].repeat(len(counts), 0)
    d = np.square(pts[:, :, None] - pts[:, None, :])
    for b, c in enumerate(counts):
        for i in range(1, c, 3):  # NaN towards the nodes near the nearest earlier node: its bound is too small
            j = int(np.argmin(d[b, i, :i]))
            near = np.argsort(d[b, j, :c], kind="stable")[1:18]
            d[b, i, near[near != i]] = np.nan
        d[b, c:] = d[b, :, c:] = -1.0  # padding: would be chosen first if it were read
    for k in (16, 4):
        np.testing.assert_array_equal(K.smallest_per_row(d, counts, k), ref.smallest_per_row(d, counts, k))
    sq = np.square(pts)
    gram = pts[:, :, None] * pts[:, None, :]
    gram[0, 5, :30] = np.nan  # a NaN product: never a neighbour, nor part of a bound
    dg = (sq[:, :, None] + sq[:, None, :]) - (gram + gram)
    for k in (16, 4):
        np.testing.assert_array_equal(K.smallest_per_row(gram, counts, k, sq=sq), ref.smallest_per_row(dg, counts, k))
    x = np.zeros((int(counts.sum()), 2), np.float32)
    x[:, 0] = np.concatenate([pts[b, :c] for b, c in enumerate(counts)])
    x[::5, 1] = np.nan  # nodes at NaN distance from every other: never a neighbour
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    for k in (16, 4):
        np.testing.assert_array_equal(K.knn_features(x, offsets, k, False), ref.knn_features(x, offsets, k, False))


@pytest.mark.parametrize("group", [1, 3, 32])
@pytest.mark.parametrize("seed", [0, 1])
def test_group_layout_rows_equal_their_numpy_reference(group: int, seed: int) -> None:
    """The padded rows of group_layout (a kernel) are the numpy formula's: each sorted graph's nodes, then its last
    node repeated to its group's size (node 0 for empty graphs), for batches with empty graphs, all empty, or none."""
    from frameproducers.kernels.knn_select import group_layout

    rng = np.random.default_rng(seed)
    for counts in (rng.integers(0, 50, 37), np.zeros(5, np.int64), np.zeros(0, np.int64), np.array([3])):
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        layout = group_layout(ptr, group)
        padded = np.repeat(layout.sizes, np.minimum(group, len(counts) - np.arange(0, len(counts), group)))
        local = np.arange(int(layout.row_start[-1])) - np.repeat(np.cumsum(padded) - padded, padded)
        last = np.maximum(np.repeat(counts[layout.order], padded) - 1, 0)
        want = np.minimum(np.repeat(ptr[layout.order], padded) + np.minimum(local, last), max(int(ptr[-1]) - 1, 0))
        np.testing.assert_array_equal(layout.rows, want)


@pytest.mark.parametrize("group", [1, 3, 32])
def test_smallest_in_groups_is_smallest_per_row_graph_by_graph(group: int) -> None:
    """The in-model kNN's selection over padded groups of graphs sorted by size (flat buffers, group_layout): the
    neighbours smallest_per_row gives each graph alone, as global indices, from distances and from a Gram matrix
    (ties, empty and one-node graphs, graphs of up to 140 nodes, in no order), a group at a time or all at once."""
    from frameproducers.kernels.knn_select import group_layout, smallest_in_groups

    rng = np.random.default_rng(14)
    counts = rng.integers(0, 60, 40)
    counts[:4] = [0, 1, 140, 2]
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    x = rng.integers(-4, 5, (int(ptr[-1]), 3)).astype(np.float32)  # small integers: many exact ties
    layout = group_layout(ptr, group)
    order, sizes, row_start, d_start, rows = layout.order, layout.sizes, layout.row_start, layout.d_start, layout.rows
    assert (
        layout.group == group
        and sorted(order.tolist()) == list(range(len(counts)))
        and len(sizes) == -(-len(counts) // group)
    )
    p = x[rows]
    sq = np.square(p).sum(-1)
    dist, gram = np.empty(int(d_start[-1]), np.float32), np.empty(int(d_start[-1]), np.float32)
    for g, n in enumerate(sizes):
        if n == 0:  # a group of empty graphs: no rows, no distances
            assert row_start[g] == row_start[g + 1] and d_start[g] == d_start[g + 1]
            continue
        pg = p[row_start[g] : row_start[g + 1]].reshape(-1, n, 3)
        dist[d_start[g] : d_start[g + 1]] = np.square(pg[:, :, None] - pg[:, None]).sum(-1).ravel()
        gram[d_start[g] : d_start[g + 1]] = (pg @ pg.transpose(0, 2, 1)).ravel()
    for k in (16, 4):
        want = np.concatenate(
            [K.smallest_per_row(np.square(x[a:b, None] - x[None, a:b]).sum(-1)[None], np.array([b - a]), k) + a
             for a, b in zip(ptr[:-1], ptr[1:], strict=True)]
        )  # fmt: skip
        np.testing.assert_array_equal(smallest_in_groups(dist, ptr, k, layout), want)
        np.testing.assert_array_equal(smallest_in_groups(gram, ptr, k, layout, sq=sq), want)  # integers: exact
        out = np.full((int(ptr[-1]), k), -1, np.int64)
        for g in range(len(sizes)):
            smallest_in_groups(gram, ptr, k, layout, sq, (g, g + 1), out)
        np.testing.assert_array_equal(out, want)
    with pytest.raises(ValueError, match="flat"):
        smallest_in_groups(dist[:-1], ptr, 4, layout)
    with pytest.raises(ValueError, match="groups must be"):
        smallest_in_groups(dist, ptr, 4, layout, groups=(0, len(sizes) + 1))
    with pytest.raises(ValueError, match="out must be"):
        smallest_in_groups(dist, ptr, 4, layout, out=np.empty((3, 4), np.int64))


def test_smallest_per_row_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\[B, n, n\]"):
        K.smallest_per_row(np.zeros((2, 3, 4), np.float32), np.array([1, 2]), 2)
    with pytest.raises(ValueError, match="counts"):
        K.smallest_per_row(np.zeros((2, 3, 3), np.float32), np.array([1, 4]), 2)
    with pytest.raises(ValueError, match="k must be"):
        K.smallest_per_row(np.zeros((2, 3, 3), np.float32), np.array([1, 2]), 0)


@pytest.mark.parametrize("self_loops", [False, True])
def test_radius_pixels_and_edge_index(self_loops) -> None:
    for W, sizes, cluster in GRAPH_CASES[:3]:
        pixel, node_offsets = random_graphs(W, W, sizes, cluster)
        for radius, max_nb in ((3.0, 8), (5.5, 32), (0.5, 4)):
            nb, num = K.radius_pixels(pixel, node_offsets, W, radius, max_nb, self_loops)
            r_nb, r_num = ref.radius_pixels(pixel, node_offsets, W, radius, max_nb, self_loops)
            np.testing.assert_array_equal(num, r_num)
            np.testing.assert_array_equal(nb, r_nb)
            assert num.dtype == np.int32 and nb.dtype == np.int64
            np.testing.assert_array_equal(K.edge_index_from_neighbors(nb, num), ref.edge_index(nb, num))
            unused = np.arange(max_nb)[None, :] >= num[:, None]
            assert np.all(nb[unused] == np.broadcast_to(np.arange(len(pixel))[:, None], nb.shape)[unused])


# ----------------------------------------------------------------------------------------------- shapes


def test_jet_shapes_match_reference() -> None:
    jet_event, seed_ieta, _, ecal, hcal, tracks, _ = BATCH
    rng = np.random.default_rng(5)
    tracks = dict(tracks)
    m = len(tracks["pt"])
    tracks["eta"] = rng.uniform(-2.5, 2.5, m).astype(np.float32)
    tracks["phi"] = rng.uniform(-np.pi, np.pi, m).astype(np.float32)
    tracks["dz"] = rng.normal(0, 0.1, m).astype(np.float32)
    # jets along the hit clusters, two at the phi seam (+-pi), one with zero pT
    jet_eta = geo.ecal_eta(seed_ieta).astype(np.float32)
    jet_phi = geo.ecal_phi(BATCH[2]).astype(np.float32)
    jet_phi[0], jet_phi[1] = np.float32(-3.13), np.float32(3.135)
    jet_pt = rng.uniform(20, 100, len(jet_event)).astype(np.float32)
    jet_pt[5] = 0.0
    tables = (ETA_CENTRE, geo.ecal_phi(np.arange(360)), geo.hcal_eta(np.arange(56)), geo.hcal_phi(np.arange(72)))
    for cone, core, pt_min, dz_max, d0sig_min in ((0.4, 0.1, 1.0, 0.1, 3.0), (0.3, 0.05, 0.5, 0.2, 1.0)):
        out = np.full((len(jet_event), len(K.SHAPE_NAMES)), np.nan, np.float32)
        K.fill_jet_shapes(
            out,
            K.JetAxes(jet_event, jet_pt, jet_eta, jet_phi),
            calo_hits(ecal),
            calo_hits(hcal),
            K.ShapeTracks(tracks["offsets"], tracks["pt"], tracks["eta"], tracks["phi"], tracks["dz"], tracks["d0sig"]),
            K.CellCentres(*tables),
            cone,
            core,
            pt_min,
            dz_max,
            d0sig_min,
        )
        expected = ref.jet_shapes(
            jet_event, jet_pt, jet_eta, jet_phi, ecal, hcal, tracks, *tables, cone, core, pt_min, dz_max, d0sig_min
        )
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
        assert np.all(out[jet_event == 3] == 0)  # no hits, no tracks
        assert np.all(out[:, 0] >= 0) and np.all(out[:, 0] < cone) and np.all((out[:, 1] >= 0) & (out[:, 1] <= 1))
        assert out[5, 2] == 0 and np.any(out[:, 3] > 0) and np.any(out[:, 5] > 0)
    names = "width core_fraction leading_track_fraction charged_multiplicity isolation n_displaced_tracks"
    assert names.split() == list(K.SHAPE_NAMES)


def test_mod_two_pi_is_the_modulo_bit_for_bit() -> None:
    """The jet shapes' angle wrap without a division: the same float64 as numba's ``x % (2 pi)`` (Python's modulo)
    for every value: inside its range (angle differences plus pi, the ends and their neighbours, +-0) and outside
    it (far angles, +-inf, NaN), so the shapes do not change."""
    from numba import njit

    from frameproducers.kernels.shapes import _mod_two_pi

    two_pi = 2.0 * np.pi
    modulo = njit(lambda x: x % two_pi)
    wrapped = njit(lambda x: _mod_two_pi(x))
    rng = np.random.default_rng(3)
    ends = np.array([-two_pi, 0.0, -0.0, two_pi, 2 * two_pi, np.pi, -np.pi, 3 * np.pi])
    x = np.concatenate(
        [
            ends,
            np.nextafter(ends, np.inf),
            np.nextafter(ends, -np.inf),
            rng.uniform(-np.pi, np.pi, 20_000) - rng.uniform(-np.pi, np.pi, 20_000) + np.pi,  # as _delta_r forms it
            np.float32(rng.uniform(-np.pi, np.pi, 2000)).astype(np.float64) + np.pi,
            rng.uniform(-1e3, 1e3, 2000),
            [np.inf, -np.inf, np.nan, 1e300, -1e300, 5e-324, -5e-324],
        ]
    )
    got = np.array([wrapped(v) for v in x])
    expected = np.array([modulo(v) for v in x])
    assert np.array_equal(got.view(np.int64), expected.view(np.int64))  # NaN bits included, and the sign of 0
    assert np.array_equal(expected[np.isfinite(x)], np.array([v % two_pi for v in x[np.isfinite(x)]]))


def _in_ieta_order(c: dict) -> dict:
    """The hits of every event sorted by ieta (stable), as e2e's generator writes them."""
    event = np.repeat(np.arange(len(c["offsets"]) - 1), np.diff(c["offsets"]))
    order = np.lexsort((np.arange(len(event)), c["ieta"], event))
    return {k: (v if k == "offsets" else v[order]) for k, v in c.items()}


def test_jet_shapes_bisect_the_eta_band_of_hits_in_ieta_order(monkeypatch) -> None:
    """Hits in ieta order within each event: each jet bisects the band of hits near its eta instead of scanning
    the event; the same shapes bit for bit as the scan (a NaN axis too), and the order is checked per batch."""
    from frameproducers.kernels import shapes as kernel_shapes

    jet_event, seed_ieta, seed_iphi, ecal, hcal, tracks, _ = BATCH
    ecal, hcal = _in_ieta_order(ecal), _in_ieta_order(hcal)
    assert kernel_shapes.in_eta_order(calo_hits(ecal), ETA_CENTRE)
    assert not kernel_shapes.in_eta_order(calo_hits(BATCH[3]), ETA_CENTRE)  # the batch as made: random order
    assert not kernel_shapes.in_eta_order(calo_hits(ecal), ETA_CENTRE[::-1])  # centres must rise with ieta
    jet_eta = geo.ecal_eta(seed_ieta).astype(np.float32)
    jet_eta[2] += np.float32(0.4)  # the band's edges away from cell centres
    jet_eta[4] = np.nan
    jets = K.JetAxes(
        jet_event, np.full(len(jet_event), 50.0, np.float32), jet_eta, geo.ecal_phi(seed_iphi).astype(np.float32)
    )
    tables = K.CellCentres(
        ETA_CENTRE, geo.ecal_phi(np.arange(360)), geo.hcal_eta(np.arange(56)), geo.hcal_phi(np.arange(72))
    )
    shape_tracks = K.ShapeTracks(
        tracks["offsets"],
        tracks["pt"],
        geo.ecal_eta(np.maximum(tracks["ieta"], 0)).astype(np.float32),
        geo.ecal_phi(np.maximum(tracks["iphi"], 0)).astype(np.float32),
        tracks["dz"],
        tracks["d0sig"],
    )

    def shapes() -> np.ndarray:
        out = np.full((len(jet_event), len(K.SHAPE_NAMES)), np.nan, np.float32)
        return K.fill_jet_shapes(out, jets, calo_hits(ecal), calo_hits(hcal), shape_tracks, tables)

    bisected = shapes()
    monkeypatch.setattr(kernel_shapes, "in_eta_order", lambda hits, centres: False)
    np.testing.assert_array_equal(bisected, shapes())
    assert np.all(bisected[4, :2] == 0) and np.any(bisected[:, 0] > 0)


@pytest.mark.parametrize("margin", [1.5, 0.2])  # 0.2: most chunks overflow their regions (the spill path)
def test_graph_nodes_one_pass_build_of_a_large_batch(monkeypatch, margin) -> None:
    monkeypatch.setattr(kernel_nodes, "n_chunks", lambda n: max(1, min(n, 5)))
    monkeypatch.setattr(kernel_nodes, "_NODE_CAPACITY_MARGIN", margin)
    jet_event, seed_ieta, seed_iphi, ecal, hcal, tracks, th = BATCH
    reps = 12  # 144 jets: sampled, then written in one pass
    codes, scale, thr = channel_config(SUBSET, True, True)
    big = K.build_graph_nodes(
        K.JetSeeds(np.tile(jet_event, reps), np.tile(seed_ieta, reps), np.tile(seed_iphi, reps)),
        window_hits(ecal, hcal, tracks, th),
        K.ChannelMap(codes, scale, thr),
        33,
        DZ_MAX,
        True,
        True,
        ETA_CENTRE,
    )
    small = kernel_graphs(33, True, codes, scale, thr)  # 12 jets: one pass into room for whole windows
    np.testing.assert_array_equal(np.diff(big[0]), np.tile(np.diff(small[0]), reps))
    for got, one in zip(big[1:], small[1:], strict=True):
        np.testing.assert_array_equal(got, np.concatenate([one] * reps))


def test_graph_nodes_of_a_few_jets_equal_those_counted_then_filled() -> None:
    """A batch below SERIAL_BELOW jets (one event) is built in one pass; from 16 jets on, a small batch is counted,
    then filled: the same nodes, jet by jet."""
    jet_event, seed_ieta, seed_iphi, ecal, hcal, tracks, th = BATCH
    codes, scale, thr = channel_config(SUBSET, True, True)

    def build(reps: int) -> tuple[np.ndarray, ...]:
        seeds = K.JetSeeds(np.tile(jet_event, reps), np.tile(seed_ieta, reps), np.tile(seed_iphi, reps))
        hits = window_hits(ecal, hcal, tracks, th)
        return K.build_graph_nodes(seeds, hits, K.ChannelMap(codes, scale, thr), 33, DZ_MAX, True, True, ETA_CENTRE)

    assert len(jet_event) < kernel_nodes.SERIAL_BELOW <= 2 * len(jet_event)
    few, counted = build(1), build(2)
    assert few[0][-1] > 0
    np.testing.assert_array_equal(np.diff(counted[0]), np.tile(np.diff(few[0]), 2))
    for got, one in zip(counted[1:], few[1:], strict=True):
        assert got.flags.c_contiguous and one.flags.c_contiguous and one.base is None
        np.testing.assert_array_equal(got, np.concatenate([one] * 2))


def test_empty_batches() -> None:
    _, _, _, ecal, hcal, tracks, th = BATCH
    none = np.zeros(0, np.int64)
    seeds = np.zeros(0, np.int16)
    codes, scale, thr = channel_config(FIVE, False, True)
    out = np.empty((0, 5, 33, 33), np.float32)
    jets = K.JetSeeds(none, seeds, seeds)
    hits = window_hits(ecal, hcal, tracks, th)
    channels = K.ChannelMap(codes, scale, thr)
    assert K.fill_jet_images(out, jets, hits, channels, DZ_MAX, True).shape == (0, 5, 33, 33)
    node_offsets, x, pos, pixel = K.build_graph_nodes(jets, hits, channels, 33, DZ_MAX, True, True, ETA_CENTRE)
    assert node_offsets.tolist() == [0] and x.shape == (0, 7) and pos.shape == (0, 2) and pixel.shape == (0,)
    assert K.knn_pixels(pixel, node_offsets, 33, 16, False).shape == (0, 16)
    assert K.knn_features(x, node_offsets, 16, False).shape == (0, 16)
    nb, num = K.radius_pixels(pixel, node_offsets, 33, 2.0, 8, True)
    assert nb.shape == (0, 8) and num.shape == (0,)
    assert K.edge_index_from_neighbors(nb, num).shape == (2, 0)


def test_frame_pixels_equal_nonzero():
    rng = np.random.default_rng(7)
    data = np.zeros((5, 3, 9, 9), np.float32)
    mask = rng.random(data.shape) < 0.1
    data[mask] = rng.normal(size=mask.sum()).astype(np.float32)
    data[2] = 0.0  # a frame without any pixel
    from dataformats.sparse import frame_pixels

    counts, ch, r, c, v = frame_pixels(data)
    jet, ch_ref, r_ref, c_ref = np.nonzero(data)
    assert np.array_equal(counts, np.bincount(jet, minlength=5))
    assert np.array_equal(ch, ch_ref) and np.array_equal(r, r_ref) and np.array_equal(c, c_ref)
    assert np.array_equal(v, data[jet, ch_ref, r_ref, c_ref])


def test_product_edge_index_equals_kernel():
    from dataformats.products import JetGraphs

    rng = np.random.default_rng(11)
    pixel = np.sort(rng.choice(100, size=30, replace=False)).astype(np.int32)
    off = np.array([0, 12, 12, 30], dtype=np.int64)
    for nb, num in ((K.knn_pixels(pixel, off, 10, 5, False), None), K.radius_pixels(pixel, off, 10, 2.5, 6, False)):
        g = JetGraphs(
            np.array([0, 3]),
            np.arange(3, dtype=np.int32),
            {},
            x=np.zeros((30, 1), np.float32),
            pos=np.zeros((30, 2), np.float32),
            pixel=pixel,
            node_offsets=off,
            neighbors=nb,
            num_neighbors=num,
        )
        assert np.array_equal(g.edge_index, K.edge_index_from_neighbors(nb, num))


def test_kernel_cache_entries_are_stamped_with_every_kernel_source() -> None:
    """numba stamps a function's cache entries with its own file only, but images.py and nodes.py compile in
    window.py: the kernels' entries carry the stamp of every kernel source, so an edit of one recompiles all."""
    from frameproducers.kernels import cache, images, nodes

    for kernel in (images._fill_jet_images, nodes._graph_nodes):
        locator = kernel._cache._impl.locator
        assert isinstance(locator, cache.PackageSourceLocator)
        assert locator.get_source_stamp()[1] == cache.sources_stamp()
    window = (Path(cache.__file__).parent / "window.py").read_bytes()
    assert len(cache.sources_stamp()) == 64 and window  # sha256 over the package sources, window.py among them


@pytest.mark.parametrize(
    ("pixel", "offsets", "message"),
    [
        ([3, 7, 1, 5], [0, 2, 4], None),  # each graph ascends; the second starts lower: fine
        ([3, 7, 1, 5], [0, 4], "strictly ascending"),
        ([3, 3], [0, 2], "strictly ascending"),
        ([3, 7, 1, 5], [0, 3, 2, 4], "non-decreasing"),
        ([3, 7, 1, 5], [0, 2, 3], "end at the number of nodes"),
        ([3, 9], [0, 2], "0..W*W-1 = 8"),
        ([-1, 2], [0, 2], "0..W*W-1 = 8"),
        ([], [0, 0, 0], None),
    ],
)
def test_graph_checks(pixel, offsets, message) -> None:
    """knn_pixels' checks of a graph batch: pixels on the W x W window and ascending within each graph, offsets
    from 0, non-decreasing, to the number of nodes (one ValueError naming the rule)."""
    pixel, offsets = np.array(pixel, np.int32), np.array(offsets, np.int64)
    if message is None:
        assert K.knn_pixels(pixel, offsets, 3, 2, False).shape == (len(pixel), 2)
        return
    with pytest.raises(ValueError, match=message.replace("*", r"\*").replace(".", r"\.")):
        K.knn_pixels(pixel, offsets, 3, 2, False)
