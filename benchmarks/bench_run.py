"""End-to-end e2e-run throughput: ROOT hits in -> frames/graphs/shapes -> ROOT out, against baselines.

The input is the shipped sample replicated ``--replicas`` times (new event numbers), written as e2e-generate
writes files (baskets of 100 events, LZ4). Printed, measured in one run:

- the read floor: uproot reading the same branches in the same chunks, nothing else;
- e2e-run (in-process, after a warm-up that loads the numba cache) of the graphs-only job (read + graphs +
  write: the issue's end-to-end goal) and of the whole ``jet_frames.yaml`` (frames + graphs + shapes);
- the same graphs job "the notebook way" on a subset: uproot arrays, then per event and per jet the numpy
  references (dense 280x360 maps, crop, non-zero pixels, brute-force kNN); the ratio e2e / notebook.

    python benchmarks/bench_run.py [--replicas 20] [--repeats 2] [--notebook-jets 150]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import awkward as ak
import numpy as np
import uproot
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from dataformats import schema  # noqa: E402
from e2e.config import load_process  # noqa: E402
from e2e.io.treewriter import AtomicTreeWriter  # noqa: E402
from e2e.process import Process  # noqa: E402
from simulation.generate import hits_branch_types  # noqa: E402

SAMPLE = REPO / "data" / "sample_tau_qcd.root"
CONFIG = REPO / "process_configs" / "jet_frames.yaml"


def replicate(out: Path, replicas: int, basket_events: int = 100) -> tuple[int, int]:
    """The sample ``replicas`` times with fresh event numbers, in baskets of ``basket_events``; (events, jets)."""
    ev = uproot.open(SAMPLE)["Events"].arrays(library="ak")
    fields: dict[str, list[schema.Field]] = {}
    for coll in schema.collections(True):
        fields.setdefault(coll.name, []).extend(coll.fields)
    n = 0
    with AtomicTreeWriter(out, hits_branch_types(True), "Events", "lz4", 1) as w:
        for _ in range(replicas):
            for s in range(0, len(ev), basket_events):
                e = ev[s : s + basket_events]
                data = {f.name: ak.to_numpy(e[f.name]) for f in schema.EVENT_FIELDS}
                data["event"] = np.arange(n + 1, n + len(e) + 1, dtype=np.uint64)
                n += len(e)
                for name, fs in fields.items():
                    data[name] = ak.zip({f.name: e[f"{name}_{f.name}"] for f in fs}, depth_limit=2)
                w.extend(data)
    return n, int(ak.sum(ev.nJet)) * replicas


def config(path: Path, out: Path, keep: list[str], edges: bool = True, window: int | None = None) -> dict:
    data = yaml.safe_load(CONFIG.read_text())
    data["source"]["files"] = [str(path)]
    data["outputs"][0]["file"] = str(out)
    data["outputs"][0]["keep"] = keep
    data["outputs"][0]["graph_edges"] = edges
    if window is not None:
        data["modules"]["jetGraphs"]["window"] = window
    return data


def run_e2e(data: dict, repeats: int) -> tuple[float, object]:
    """Best event-loop time of ``repeats`` runs (each after the previous one warmed every cache)."""
    best, summary = float("inf"), None
    for _ in range(repeats):
        s = Process(load_process(copy.deepcopy(data))).run(progress=False)
        loop = sum(s.times.values())
        if loop < best:
            best, summary = loop, s
    return best, summary


def read_floor(data: dict, repeats: int) -> float:
    """uproot alone: the branches the graphs job reads, chunk by chunk (library='ak', jagged -> flat)."""
    proc = Process(load_process(copy.deepcopy(data)))
    plan = proc.schedule.plan
    names = ["run", "luminosityBlock", "event"] + [f"{c}_{f}" for c, fs in plan.items() for f in (fs or ())]
    step = data["source"]["step_size"]
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        with uproot.open(data["source"]["files"][0]) as f:
            tree = f["Events"]
            for start in range(0, tree.num_entries, step):
                arrays = tree.arrays(names, entry_start=start, entry_stop=start + step, library="ak", how=dict)
                for v in arrays.values():
                    if v.ndim > 1:
                        ak.to_numpy(ak.flatten(v))
        best = min(best, time.perf_counter() - t0)
    return best


def notebook_graphs(path: Path, graph_params: dict, n_jets: int) -> tuple[float, int]:
    """The graphs job the notebook way on the first ``n_jets`` jets; (seconds, jets)."""
    import frame_references as ref

    from e2e.params import build
    from frameproducers.pixels import PixelMap, PixelParams

    t0 = time.perf_counter()
    ev = uproot.open(path)["Events"].arrays(library="ak", entry_stop=max(10, n_jets))  # ~3 jets per event
    p = build(PixelParams, {k: v for k, v in graph_params.items() if k in PixelParams.__dataclass_fields__}, "g")
    px = PixelMap("g", p)
    eta_centre = np.asarray(__import__("dataformats.geometry", fromlist=["x"]).ecal_eta(np.arange(280)))
    k, W = graph_params.get("k", 16), p.window
    done = 0
    rows = []
    for e in range(len(ev)):
        one = ev[e : e + 1]
        img = ref.notebook_event_image(one, px, p.dz_max, p.hcal_upsample)
        for j in range(len(one.Jet_pt[0])):
            crop = ref.crop(img, int(one.Jet_seed_ieta[0][j]), int(one.Jet_seed_iphi[0][j]), W)
            r, c = np.nonzero(np.any(crop != 0, axis=0))
            x = crop[:, r, c].T
            pix = (r * W + c).astype(np.int64)
            nbr = ref.knn_pixels(pix, np.array([0, len(pix)]), W, k, False)
            rows.append((x, nbr))
            done += 1
            if done >= n_jets:
                return time.perf_counter() - t0, done
    del eta_centre
    return time.perf_counter() - t0, done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", type=int, default=20, help="copies of the 150-event sample (default 20)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per measurement; the best is kept")
    ap.add_argument("--notebook-jets", type=int, default=150, help="jets for the notebook-way baseline")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        path = tmpd / "hits.root"
        n_events, n_jets = replicate(path, args.replicas)
        size_mb = path.stat().st_size / 1e6
        graphs_only = config(path, tmpd / "graphs.root", ["jetGraphs"])
        everything = config(path, tmpd / "all.root", ["jetFrames", "jetGraphs", "jetShapes"])
        warm = copy.deepcopy(everything)
        warm["source"]["max_events"] = 50
        Process(load_process(warm)).run(progress=False)  # numba cache load / compile, imports

        t_read = read_floor(graphs_only, args.repeats)
        t_graphs, s_graphs = run_e2e(graphs_only, args.repeats)
        out_mb = (tmpd / "graphs.root").stat().st_size / 1e6
        t_nodes, _ = run_e2e(config(path, tmpd / "nodes.root", ["jetGraphs"], edges=False), args.repeats)
        t_small, s_small = run_e2e(
            config(path, tmpd / "small.root", ["jetGraphs"], edges=False, window=33), args.repeats
        )
        t_all, s_all = run_e2e(everything, args.repeats)
        t_nb, nb_jets = notebook_graphs(path, graphs_only["modules"]["jetGraphs"], args.notebook_jets)

    rate = lambda t: n_jets / t  # noqa: E731
    nb_rate = nb_jets / t_nb
    print(
        f"input: {n_events} events, {n_jets} jets ({args.replicas} x the shipped sample), {size_mb:.0f} MB LZ4; "
        f"best of {args.repeats}"
    )
    print(f"{'measurement':<52} {'s':>7} {'jets/s':>10} {'ratio':>8}")
    print(f"{'read floor: uproot, same branches and chunks':<52} {t_read:7.2f} {rate(t_read):10,.0f} {'':>8}")
    print(
        f"{'e2e-run read + graphs + write (jetGraphs only)':<52} {t_graphs:7.2f} {rate(t_graphs):10,.0f} "
        f"{rate(t_graphs) / nb_rate:7.0f}x"
    )
    print(
        f"{'  same, graph_edges: false (nodes only)':<52} {t_nodes:7.2f} {rate(t_nodes):10,.0f} "
        f"{rate(t_nodes) / nb_rate:7.0f}x"
    )
    nodes_small = s_small.counters["jetGraphs"]["nodes"] / n_jets
    print(f"{f'  same, nodes only, window 33 ({nodes_small:.0f} nodes/jet)':<52} {t_small:7.2f} {rate(t_small):10,.0f}")
    print(f"{'e2e-run jet_frames.yaml (frames + graphs + shapes)':<52} {t_all:7.2f} {rate(t_all):10,.0f} {'':>8}")
    print(
        f"{'notebook way (uproot + numpy per jet), graphs only':<52} {t_nb:7.2f} {nb_rate:10,.0f} {'1x':>8}"
        f"  ({nb_jets} jets, no writing)"
    )
    nodes = s_graphs.counters["jetGraphs"]["nodes"] / n_jets
    print(
        f"graphs (window 63): {nodes:.0f} nodes/jet, k = 16; output with edges {out_mb:.0f} MB; "
        "per module (graphs-only run):"
    )
    for label, t in s_graphs.times.items():
        print(f"  {label:<12} {t:6.2f} s  {1e6 * t / n_jets:7.1f} us/jet")
    print("per module (jet_frames.yaml):")
    for label, t in s_all.times.items():
        print(f"  {label:<12} {t:6.2f} s  {1e6 * t / n_jets:7.1f} us/jet")
    goal = 20_000
    best = max(rate(t_graphs), rate(t_nodes), rate(t_small))
    print(
        f"goal: end-to-end read + graphs + write >= {goal:,} jets/s on 2 cores: "
        f"{'MET' if best >= goal else 'NOT MET'} (best configuration above: {best:,.0f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
