"""Benchmark of the frame-producer kernels (frameproducers.kernels) on the shipped sample.

Prints jets/s (best of --repeats, numba's default thread count) of
  * fill_jet_images: 5 channels (track_pt, track_d0, track_dz, ecal, hcal), W = 125, HCAL upsampled, the
    preallocated output (--batch jets) reused, against the numpy reference (tests/frame_references.py);
  * the graph build (build_graph_nodes + knn_pixels, k = 16) in three configurations
      (i)   W = 125, hcal_upsample, no threshold
      (ii)  W = 63, no upsampling, ECAL threshold 0.2 GeV
      (iii) W = 33, same thresholds
    with the mean nodes per jet, against build_graph_nodes + brute_force_knn_pixels and against the numpy
    reference (on a subset of jets where slow);
  * knn_features (k = 16) and fill_jet_shapes against their references.
Jets are replicated (with their events) to a few thousand. The goals (2 cores): images >= 40k jets/s,
graphs >= 50k jets/s (configurations (ii) and (iii); (i) is reported only).

    python benchmarks/bench_frames.py
    python benchmarks/bench_frames.py --input output/sample_tau_qcd.root --replicate 4 --repeats 9
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import awkward as ak
import numba
import numpy as np
import uproot

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))

import frame_references as ref  # noqa: E402

from dataformats import geometry as geo  # noqa: E402
from frameproducers import kernels as K  # noqa: E402
from frameproducers.channels import CHANNEL_CODE, CHANNELS  # noqa: E402

FIVE = ("track_pt", "track_d0", "track_dz", "ecal", "hcal")
ETA_CENTRE = geo.ecal_eta(np.arange(geo.ECAL_N_IETA))
SHAPE_TABLES = K.CellCentres(
    ETA_CENTRE,
    geo.ecal_phi(np.arange(geo.ECAL_N_IPHI)),
    geo.hcal_eta(np.arange(geo.HCAL_N_IETA)),
    geo.hcal_phi(np.arange(geo.HCAL_N_IPHI)),
)
DZ_MAX = 0.1
K_NN = 16


def load(path: Path, replicate: int) -> dict[str, Any]:
    """Flat arrays (on-disk dtypes) of every collection + offsets; events and their jets repeated ``replicate`` x."""
    a = uproot.open(path)["Events"].arrays(library="ak")

    def coll(prefix: str, fields: dict[str, str]) -> dict[str, np.ndarray]:
        counts = np.tile(ak.to_numpy(a["n" + prefix]).astype(np.int64), replicate)
        out = {"offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)}
        for branch, name in fields.items():
            out[name] = np.ascontiguousarray(np.tile(ak.to_numpy(ak.flatten(a[f"{prefix}_{branch}"])), replicate))
        return out

    data = {
        "ecal": coll("EcalHit", {"ieta": "ieta", "iphi": "iphi", "energy": "energy"}),
        "hcal": coll("HcalHit", {"ieta": "ieta", "iphi": "iphi", "energy": "energy"}),
        "tracks": coll(
            "Track",
            {
                "ecal_ieta": "ieta",
                "ecal_iphi": "iphi",
                "pt": "pt",
                "eta": "eta",
                "phi": "phi",
                "d0": "d0v",
                "dz": "dzv",
                "d0sig": "d0sig",
            },
        ),
        "th": coll("TrackerHit", {"layer": "layer", "ieta": "ieta", "iphi": "iphi"}),
        "jets": coll(
            "Jet", {"pt": "pt", "eta": "eta", "phi": "phi", "seed_ieta": "seed_ieta", "seed_iphi": "seed_iphi"}
        ),
    }
    data["tracks"]["dz"] = data["tracks"]["dzv"]  # the track_dz channel shows dz (cm)
    jets = data["jets"]
    jets["event"] = np.repeat(np.arange(len(jets["offsets"]) - 1), np.diff(jets["offsets"])).astype(np.int64)
    return data


def calo_hits(c: dict[str, np.ndarray]) -> K.CaloHits:
    return K.CaloHits(c["offsets"], c["ieta"], c["iphi"], c["energy"])


def window_hits(d: dict[str, Any]) -> K.WindowHits:
    t, th = d["tracks"], d["th"]
    return K.WindowHits(
        calo_hits(d["ecal"]),
        calo_hits(d["hcal"]),
        K.WindowTracks(t["offsets"], t["ieta"], t["iphi"], t["pt"], t["d0v"], t["dzv"], t["dz"]),
        K.TrackerHits(th["offsets"], th["layer"], th["ieta"], th["iphi"]),
    )


def seeds(j: dict[str, np.ndarray], lo: int = 0, hi: int | None = None) -> K.JetSeeds:
    return K.JetSeeds(j["event"][lo:hi], j["seed_ieta"][lo:hi], j["seed_iphi"][lo:hi])


def channels(names: tuple[str, ...], thresholds: dict[str, float]) -> K.ChannelMap:
    codes = np.full(len(CHANNELS), -1, np.int64)
    for i, name in enumerate(names):
        codes[CHANNEL_CODE[name]] = i
    thr = np.array([thresholds.get(n, 0.0) for n in names], np.float32)
    return K.ChannelMap(codes, np.ones(len(names), np.float32), thr)


def best(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall time (s) of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def subset(d: dict[str, Any], n: int) -> dict[str, Any]:
    """The first n jets (same events)."""
    jets = {k: v[:n] for k, v in d["jets"].items() if k != "offsets"}
    return {**d, "jets": jets}


def graph_build(
    d: dict[str, Any], W: int, upsample: bool, thr: dict[str, float], knn: Callable[..., np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    node_offsets, x, pos, pixel = K.build_graph_nodes(
        seeds(d["jets"]), window_hits(d), channels(FIVE, thr), W, DZ_MAX, upsample, True, ETA_CENTRE
    )
    nb = knn(pixel, node_offsets, W, K_NN, False)
    return node_offsets, x, pixel, nb


def graph_reference(d: dict[str, Any], W: int, upsample: bool, thr: dict[str, float]) -> np.ndarray:
    codes, scale, threshold = channels(FIVE, thr)
    j = d["jets"]
    images = ref.jet_images(
        W,
        j["event"],
        j["seed_ieta"],
        j["seed_iphi"],
        d["ecal"],
        d["hcal"],
        d["tracks"],
        d["th"],
        codes,
        scale,
        threshold,
        DZ_MAX,
        upsample,
    )
    node_offsets, _, _, pixel = ref.graph_nodes(images, j["seed_ieta"], True, ETA_CENTRE)
    return ref.knn_pixels(pixel, node_offsets, W, K_NN, False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=REPO / "data" / "sample_tau_qcd.root")
    ap.add_argument("--replicate", type=int, default=8, help="copies of the events and their jets (default 8)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement; the best is kept")
    ap.add_argument("--batch", type=int, default=256, help="jets per preallocated image batch (default 256)")
    ap.add_argument("--ref-jets", type=int, default=24, help="jets for the slow references (default 24)")
    args = ap.parse_args()

    d = load(args.input, args.replicate)
    jets = d["jets"]
    n_jets = len(jets["event"])
    n_ref = min(args.ref_jets, n_jets)
    print(
        f"{args.input.name}: {n_jets} jets ({args.replicate} x {n_jets // args.replicate}), "
        f"{len(jets['offsets']) - 1} events, numba threads {numba.get_num_threads()}, best of {args.repeats}"
    )
    rows: list[tuple[str, float, str, float, str]] = []  # (what, jets/s, baseline name, baseline jets/s, extra)

    # ---- images
    W = 125
    chans = channels(FIVE, {})
    codes, scale, thr = chans
    hits = window_hits(d)

    def images(batch: int, out: np.ndarray) -> None:
        for lo in range(0, n_jets, batch):
            hi = min(lo + batch, n_jets)
            K.fill_jet_images(out[: hi - lo], seeds(jets, lo, hi), hits, chans, DZ_MAX, True)

    def image_time(batch: int) -> float:
        out = np.empty((min(batch, n_jets), len(FIVE), W, W), np.float32)  # preallocated, reused
        return best(lambda: images(batch, out), args.repeats)

    t_img = image_time(args.batch)
    sub = subset(d, n_ref)
    sub_jets = sub["jets"]

    def reference(events: np.ndarray) -> None:
        ref.jet_images(W, events, sub_jets["seed_ieta"], sub_jets["seed_iphi"], d["ecal"], d["hcal"], d["tracks"],
                       d["th"], codes, scale, thr, DZ_MAX, True)  # fmt: skip

    reference(sub_jets["event"][:1])  # warm-up
    t0 = time.perf_counter()
    reference(sub_jets["event"])
    t_ref = time.perf_counter() - t0
    img_rate = n_jets / t_img
    rows.append((f"images 5ch W=125 (batch {args.batch})", img_rate, "numpy ref", n_ref / t_ref, ""))
    t_all = image_time(n_jets)
    rows.append((f"images 5ch W=125 (batch {n_jets})", n_jets / t_all, "numpy ref", n_ref / t_ref, ""))

    # ---- graphs
    configs = [
        ("(i)   W=125 up thr0", 125, True, {}),
        ("(ii)  W=63 ecal>0.2", 63, False, {"ecal": 0.2}),
        ("(iii) W=33 ecal>0.2", 33, False, {"ecal": 0.2}),
    ]
    graph_rates = {}
    feats = {}
    for name, Wg, up, thr_g in configs:
        node_offsets, x, pixel, nb = graph_build(d, Wg, up, thr_g, K.knn_pixels)
        mean_nodes = node_offsets[-1] / n_jets
        t_graph = best(lambda Wg=Wg, up=up, thr_g=thr_g: graph_build(d, Wg, up, thr_g, K.knn_pixels), args.repeats)
        t_knn = best(lambda po=pixel, no=node_offsets, Wg=Wg: K.knn_pixels(po, no, Wg, K_NN, False), args.repeats)
        graph_rates[name] = n_jets / t_graph
        feats[name] = (x, node_offsets)
        # baseline: the same nodes + brute-force kNN (a subset of jets when dense)
        n_bf = n_jets if mean_nodes < 1000 else min(n_jets, 8)
        sub_bf = subset(d, n_bf)
        graph_build(subset(d, 2), Wg, up, thr_g, K.brute_force_knn_pixels)  # warm-up
        t0 = time.perf_counter()
        _, _, _, nb_bf = graph_build(sub_bf, Wg, up, thr_g, K.brute_force_knn_pixels)
        t_bf = time.perf_counter() - t0
        assert np.array_equal(nb_bf, nb[: len(nb_bf)]), "knn_pixels != brute_force_knn_pixels"
        n_gr = max(2, n_ref // (8 if mean_nodes > 1000 else 1))
        sub_r = subset(d, n_gr)
        t0 = time.perf_counter()
        nb_ref = graph_reference(sub_r, Wg, up, thr_g)
        t_r = time.perf_counter() - t0
        assert np.array_equal(nb_ref, nb[: len(nb_ref)]), "knn_pixels != numpy reference"
        extra = f"{mean_nodes:7.0f} nodes/jet, kNN alone {n_jets / t_knn:8.0f} jets/s"
        rows.append((f"graph {name}", n_jets / t_graph, "nodes+brute kNN", n_bf / t_bf, extra))
        rows.append((f"graph {name}", n_jets / t_graph, "numpy ref", n_gr / t_r, ""))

    # ---- kNN in feature space (x = 5 channels + delta eta, delta phi)
    for name in ("(ii)  W=63 ecal>0.2", "(iii) W=33 ecal>0.2"):
        x, node_offsets = feats[name]
        t_f = best(lambda x=x, no=node_offsets: K.knn_features(x, no, K_NN, False), args.repeats)
        n_fr = n_ref
        t0 = time.perf_counter()
        f_ref = ref.knn_features(x[: node_offsets[n_fr]], node_offsets[: n_fr + 1], K_NN, False)
        t_fr = time.perf_counter() - t0
        assert np.array_equal(f_ref, K.knn_features(x, node_offsets, K_NN, False)[: len(f_ref)])
        rows.append((f"knn_features {name.split()[0]} k=16", n_jets / t_f, "numpy ref", n_fr / t_fr, ""))

    # ---- jet shapes
    t = d["tracks"]
    shape_jets = K.JetAxes(jets["event"], jets["pt"], jets["eta"], jets["phi"])
    shape_tracks = K.ShapeTracks(t["offsets"], t["pt"], t["eta"], t["phi"], t["dz"], t["d0sig"])
    ecal, hcal = calo_hits(d["ecal"]), calo_hits(d["hcal"])
    shapes = np.empty((n_jets, len(K.SHAPE_NAMES)), np.float32)
    t_s = best(lambda: K.fill_jet_shapes(shapes, shape_jets, ecal, hcal, shape_tracks, SHAPE_TABLES), args.repeats)
    t0 = time.perf_counter()
    s_ref = ref.jet_shapes(
        jets["event"][:n_ref], jets["pt"], jets["eta"], jets["phi"], d["ecal"], d["hcal"], t, *SHAPE_TABLES
    )
    t_sr = time.perf_counter() - t0
    np.testing.assert_allclose(shapes[:n_ref], s_ref, rtol=1e-6, atol=1e-6)
    rows.append(("jet shapes (6 columns)", n_jets / t_s, "numpy ref", n_ref / t_sr, ""))

    print(f"{'kernel':<38}{'jets/s':>11}  {'baseline':<16}{'jets/s':>10}{'ratio':>9}  notes")
    for what, rate, base, base_rate, extra in rows:
        print(f"{what:<38}{rate:>11.0f}  {base:<16}{base_rate:>10.1f}{rate / base_rate:>8.1f}x  {extra}")
    g2, g3 = graph_rates["(ii)  W=63 ecal>0.2"], graph_rates["(iii) W=33 ecal>0.2"]
    print(
        f"goals on 2 cores: images >= 40k jets/s: {img_rate:.0f} ({'met' if img_rate >= 40e3 else 'NOT met'}); "
        f"graphs (nodes + kNN k=16) >= 50k jets/s: (ii) {g2:.0f} ({'met' if g2 >= 50e3 else 'NOT met'}), "
        f"(iii) {g3:.0f} ({'met' if g3 >= 50e3 else 'NOT met'}); (i) {graph_rates['(i)   W=125 up thr0']:.0f} "
        "(reported only)"
    )


if __name__ == "__main__":
    main()
