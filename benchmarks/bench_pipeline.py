"""The main job stage by stage against each stage's floor, end to end, a weaver-style baseline, start, latency, memory.

One run prints everything (the issue "Speed: every stage within 2x of its floor"); every figure is measured here,
in this run, on this machine:

- per stage of ``process_configs/tau_gnn.yaml`` (ROOT -> hit graphs + shapes -> GNN + shape taggers -> ROOT) on
  the shipped sample replicated ``--replicas`` times: us/jet (min and median over ``--repeats`` runs, in-process
  after a whole warm-up run), next to its floor:
  - read: uproot alone reading the same branches in the same chunks (jagged -> flat numpy);
  - graphs: writing the product once (allocating the node features, neighbour index and jet inputs of the same
    size and copying them from a finished product: the memory traffic any producer must pay); and, for the kNN
    step alone, a tuned reference: scipy's cKDTree built and queried per jet on the same points (one thread);
  - GNN: the matrix-product FLOPs the model executes (torch's FlopCounterMode on the same jets) divided by the
    rate of one large dense product (2048^3 float32) with the same threads; and the GNN stage again with the
    opt-in ``precision: bf16`` (bfloat16 edge-MLP products) against the same floor and against the FLOPs at the
    rate of a 2048^3 bfloat16 product, with its largest and mean score change against float32;
- the other shipped graph model, ``tau_gnn_fast.yaml`` (GraphNet on pixel graphs) on the same file: its GNN stage
  against its dense-product FLOP floor, as above, and its event loop's jets/s;
- end to end: jets/s of the whole event loop, and of the run as e2e-run reports it;
- weaver-style: the same network fed as weaver feeds it, from a padded per-jet table (features, points, mask) in
  batches of 32 jets, unpadded and the kNN in (delta_eta, delta_phi) built inside the step with e2e's own kNN
  kernel (so that the scores must agree; the table is made beforehand and not timed); the ratio e2e / weaver-style;
- loaded machine: the event loop again while a busy process takes one core, with ``--threads`` and with one;
- start: wall time of ``e2e-run process_configs/tau_gnn.yaml -n 1`` in a subprocess (caches warm), and of
  ``tau_cnn.yaml``, a job that runs on ONNX Runtime alone (no torch import);
- latency: one event at a time through :class:`e2e.api.EventTagger` (median and p99 per event), for tau_gnn.yaml (and
  with ``precision: bf16``) and for the latency option tau_gnn_fast.yaml on torch and on ONNX Runtime; and
  tau_gnn.yaml again while a busy process takes one core, with ``--threads`` and with one;
- memory: peak RSS of ``e2e-run`` on ``--rss-file`` (default settings), as its summary prints it.

    python benchmarks/bench_pipeline.py [--replicas 10] [--repeats 3] [--threads 2] [--latency-events 150]
                                        [--rss-file output/heldout/mixed_mu40.root]
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_run import read_floor, replicate  # noqa: E402

from e2e.config import load_process  # noqa: E402
from e2e.process import Process  # noqa: E402

CONFIG = REPO / "process_configs" / "tau_gnn.yaml"
CNN_CONFIG = REPO / "process_configs" / "tau_cnn.yaml"
FAST_CONFIG = REPO / "process_configs" / "tau_gnn_fast.yaml"
SAMPLE = REPO / "data" / "sample_tau_qcd.root"


def job(path: Path, out: Path, threads: int, config: Path = CONFIG) -> dict[str, Any]:
    """tau_gnn.yaml (or ``config``) on ``path``, written to ``out``, with ``threads`` for every module and the options
    block."""
    data = yaml.safe_load(config.read_text())
    data["source"]["files"] = [str(path)]
    data["outputs"][0]["file"] = str(out)
    data.setdefault("options", {})["threads"] = threads
    for block in data["modules"].values():
        if block["type"] in ("GNNTagger", "ShapeTagger"):
            block["threads"] = threads
    return data


def stage_runs(data: dict[str, Any], repeats: int) -> list[Any]:
    """RunSummary of ``repeats`` in-process runs (the first run of the process warmed every cache)."""
    out = []
    for _ in range(repeats):
        target = Path(data["outputs"][0]["file"])
        target.unlink(missing_ok=True)
        out.append(Process(load_process(copy.deepcopy(data))).run(progress=False))
    return out


def products(data: dict[str, Any], labels: list[str]) -> list[dict[str, Any]]:
    """The products ``labels`` of every batch of the job (kept in memory)."""
    data = copy.deepcopy(data)
    data["outputs"][0]["keep"] = labels
    return [{label: b.get(label) for label in labels} for b in Process(load_process(data)).iter_batches()]


def graphs_floor(prods: list[Any], repeats: int) -> float:
    """Seconds to allocate and write once every array a hit-graph product holds (best of ``repeats``)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p in prods:
            for a in (p.x, p.neighbors, p.node_offsets, p.pos, p.pixel, p.jet_features):
                if a is not None:
                    np.copyto(np.empty_like(a), a)
        best = min(best, time.perf_counter() - t0)
    return best


def knn_reference(prods: list[Any], k: int, repeats: int) -> tuple[float, float] | None:
    """Seconds for the hit graphs' kNN alone (best of ``repeats``, one thread each): e2e's kernel
    (``knn_features`` on delta_eta, delta_phi) and scipy's cKDTree (a tuned C++ k-d tree) built and queried per jet
    on the same points; None without scipy."""
    try:
        from scipy.spatial import cKDTree
    except ImportError:
        return None
    import numba

    from frameproducers import kernels

    names = list(prods[0].feature_names)
    points = [(np.ascontiguousarray(p.x[:, [names.index("delta_eta"), names.index("delta_phi")]]), p.node_offsets)
              for p in prods]  # fmt: skip

    def tree(x: np.ndarray, offsets: np.ndarray) -> None:
        for a, b in zip(offsets[:-1], offsets[1:], strict=True):
            if b - a > 1:
                cKDTree(x[a:b]).query(x[a:b], k=min(k + 1, b - a))

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        best = [float("inf"), float("inf")]
        for _ in range(repeats):
            for i, f in enumerate((lambda x, o: kernels.knn_features(x, o, k, False), tree)):
                t0 = time.perf_counter()
                for x, offsets in points:
                    f(x, offsets)
                best[i] = min(best[i], time.perf_counter() - t0)
    finally:
        numba.set_num_threads(threads)
    return best[0], best[1]


def gnn_model(config: dict[str, Any], label: str = "tauGNN", **overrides: Any) -> Any:
    """The tagger module ``label`` of the job (built, session created), its parameters updated by ``overrides``
    (the GNN by default; bench_gpu.py takes the CNN and other backends and devices too)."""
    from e2e.module import resolve_type
    from e2e.params import build
    from taggers.inputs import INPUT_KINDS

    block = {**config["modules"][label], **overrides}
    cls: Any = resolve_type(block.pop("type"), "bench")
    block.pop(INPUT_KINDS[cls.kind_name].tagger_param)
    tagger: Any = cls(label, build(cls.Params, block, "bench"))
    tagger.session()
    return tagger


def gnn_flops_and_time(
    tagger: Any, prods: list[Any], repeats: int, count: bool = True
) -> tuple[float, float, np.ndarray]:
    """(matmul FLOPs the model executes on these jets, best seconds of the model alone, scores). Dense products
    only: a GraphNet's neighbour sums (a CSR product on CPU, which the counter would count as a dense ``[N, N]``
    one) are counted in their gather form, which has no product; ParticleNet's edge MLP, whose products its one-call
    kernel makes through BLAS directly (unseen by torch's counter), runs them through torch in the counting pass
    (the same products). ``count=False``: no counting pass (FLOPs 0)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from taggers.models import graph_layers, particlenet

    def gathered(x: Any, neighbors: Any, weight: float = 1.0) -> Any:
        return x[neighbors].sum(dim=1) * weight

    batches = [mb for p in prods for mb in tagger.input_kind.micro_batches(p, tagger.params.micro_batch)]
    flops = 0.0
    if count:
        exact_sum, blas = graph_layers.neighbor_sum, particlenet._torch_sgemm
        graph_layers.neighbor_sum = gathered
        particlenet._torch_sgemm = lambda width, threads: 0  # the edge MLP's products through torch, so counted
        try:
            with FlopCounterMode(display=False) as counter:
                for mb in batches:
                    tagger.run_model(mb)
        finally:
            graph_layers.neighbor_sum, particlenet._torch_sgemm = exact_sum, blas
        flops = float(counter.get_total_flops())
    elif batches:
        tagger.run_model(batches[0])  # a warm-up, as the counting pass is
    best = float("inf")
    scores = np.zeros(0)
    for _ in range(repeats):
        t0 = time.perf_counter()
        scores = np.concatenate([tagger.run_model(mb) for mb in batches])
        best = min(best, time.perf_counter() - t0)
    del torch
    return flops, best, scores


def matmul_rate(threads: int, repeats: int, dtype: str = "float32") -> float:
    """FLOP/s of a 2048^3 product (float32, or ``dtype``) with ``threads`` torch threads (best of ``repeats``)."""
    import torch

    torch.set_num_threads(threads)
    a, b = (torch.rand(2048, 2048).to(getattr(torch, dtype)) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(max(3, repeats)):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * 2048**3 / best


def padded_table(prods: list[Any]) -> dict[str, Any]:
    """The jets as weaver reads them: features [J, F, P], points [J, 2, P] (delta_eta, delta_phi), mask [J, 1, P],
    jet inputs [J, G]; P = the largest jet."""
    xs = [p.x[p.node_offsets[j] : p.node_offsets[j + 1]] for p in prods for j in range(p.n_jets)]
    names = prods[0].feature_names
    coords = [names.index("delta_eta"), names.index("delta_phi")]
    n_max = max(len(x) for x in xs)
    n_feat = xs[0].shape[1]
    features = np.zeros((len(xs), n_feat, n_max), np.float32)
    mask = np.zeros((len(xs), 1, n_max), np.float32)
    for j, x in enumerate(xs):
        features[j, :, : len(x)] = x.T
        mask[j, 0, : len(x)] = 1.0
    jet = np.concatenate([p.jet_features for p in prods]) if prods[0].jet_features is not None else None
    return {"features": features, "points": features[:, coords], "mask": mask, "jet": jet, "coords": coords}


def weaver_style(tagger: Any, table: dict[str, Any], batch: int, repeats: int) -> tuple[float, np.ndarray]:
    """Best seconds (and scores) of the model fed weaver's way: padded batches of ``batch`` jets -> tensors ->
    unpadded nodes -> kNN on the points inside the step (e2e's kernel, the producer's tie rules) -> the network."""
    import torch

    from frameproducers import kernels

    net = tagger.session()
    k = int(tagger.artefact.spec["input"]["k"])
    n_jets = len(table["features"])
    best, scores = float("inf"), np.zeros(0)
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = []
        with torch.inference_mode():
            for s in range(0, n_jets, batch):
                feats = torch.from_numpy(table["features"][s : s + batch])
                mask = torch.from_numpy(table["mask"][s : s + batch])[:, 0] > 0
                counts = mask.sum(1)
                x = feats.transpose(1, 2)[mask]  # [N, F], jet by jet
                ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
                b = torch.repeat_interleave(torch.arange(len(counts)), counts)
                coords = np.ascontiguousarray(x[:, table["coords"]].numpy())
                nb = torch.from_numpy(kernels.knn_features(coords, ptr.numpy(), k, False))
                args = [x, nb, b, ptr]
                if table["jet"] is not None:
                    args.append(torch.from_numpy(table["jet"][s : s + batch]))
                out.append(net(*args).float().numpy())
        best = min(best, time.perf_counter() - t0)
        scores = np.concatenate(out)
    return best, scores


def busy() -> subprocess.Popen:
    """A process that keeps one core busy until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def start_time(config: Path, repeats: int) -> list[float]:
    """Wall seconds of ``e2e-run CONFIG -n 1`` on the shipped sample, in a fresh interpreter."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats + 1):
            target = Path(tmp) / f"start{i}.root"
            t0 = time.perf_counter()
            r = subprocess.run(
                [sys.executable, "-m", "e2e.cli.run", str(config), "-n", "1", "-o", str(target)],
                capture_output=True,
                text=True,
                cwd=REPO,
            )
            wall = time.perf_counter() - t0
            if r.returncode:
                raise SystemExit(f"e2e-run -n 1 failed:\n{r.stderr[-2000:]}")
            if i:  # the first run warms the page cache and numba's cache
                out.append(wall)
    return out


def latency(
    n_events: int, threads: int, config: Path = CONFIG, overrides: tuple[str, ...] = ()
) -> tuple[list[float], list[int]]:
    """Seconds per single event through EventTagger of ``config`` (the shipped sample's first ``n_events``); jets
    of each. ``threads``: the job's one thread setting (``options.threads``), which its taggers take."""
    import uproot

    from e2e.api import EventTagger

    tagger = EventTagger(config, [f"options.threads={threads}", *overrides])
    events = uproot.open(SAMPLE)["Events"].arrays(entry_stop=n_events)
    for i in range(min(20, len(events))):  # warm-up
        tagger(events[i : i + 1])
    times, jets = [], []
    for i in range(len(events)):
        one = events[i : i + 1]
        t0 = time.perf_counter()
        tagger(one)["Jet_tauGNN_tau"]  # the call and reading the score, as a user does
        times.append(time.perf_counter() - t0)
        jets.append(int(len(one["Jet_pt"][0])))
    tagger.close()
    return times, jets


def peak_rss(path: Path, tmp: Path) -> str:
    """Peak RSS that e2e-run's summary prints for tau_gnn.yaml on ``path`` (default settings)."""
    r = subprocess.run(
        [sys.executable, "-m", "e2e.cli.run", str(CONFIG), "-i", str(path), "-o", str(tmp / "rss.root")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    m = re.search(r"peak memory \(RSS\): ([^\n]+)", r.stdout + r.stderr)
    return m.group(1) if m else f"(not found; rc {r.returncode})"


def fmt(values: list[float], scale: float = 1.0, spec: str = ".1f") -> str:
    return f"{min(values) * scale:{spec}} / {statistics.median(values) * scale:{spec}}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", type=int, default=10, help="copies of the 150-event sample (default 10)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per measurement (min and median are printed)")
    ap.add_argument("--threads", type=int, default=2, help="threads of every stage (default 2)")
    ap.add_argument("--latency-events", type=int, default=150, help="single events for the latency (default 150)")
    ap.add_argument("--weaver-batch", type=int, default=32, help="jets per batch of the weaver-style baseline")
    ap.add_argument("--rss-file", type=Path, default=SAMPLE, help="hits file of the peak-RSS run (default: the sample)")
    args = ap.parse_args(argv)
    # first, while this process is small: Linux reports a child's peak RSS as at least this process's RSS at the
    # fork (ru_maxrss survives exec), so measured later it would count the benchmark's own memory
    with tempfile.TemporaryDirectory() as tmp:
        rss = peak_rss(args.rss_file, Path(tmp))
    import torch

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        path = tmpd / "hits.root"
        n_events, n_jets = replicate(path, args.replicas)
        data = job(path, tmpd / "out.root", args.threads)
        stage_runs(data, 1)  # warm-up: imports, numba cache, sessions, the allocator's arenas (a whole run)

        runs = stage_runs(data, args.repeats)
        read_s = [read_floor(data, 1) for _ in range(args.repeats)]
        prods = products(data, ["hitGraphs"])
        graphs = [p["hitGraphs"] for p in prods]
        floor_graphs = graphs_floor(graphs, args.repeats)
        knn_ref = knn_reference(graphs, int(data["modules"]["hitGraphs"]["k"]), args.repeats)
        tagger = gnn_model(data)
        flops, model_s, scores = gnn_flops_and_time(tagger, graphs, args.repeats)
        rate = matmul_rate(args.threads, args.repeats)
        table = padded_table(graphs)
        weaver_s, weaver_scores = weaver_style(tagger, table, args.weaver_batch, args.repeats)
        bf16 = copy.deepcopy(data)
        bf16["modules"]["tauGNN"]["precision"] = "bf16"
        stage_runs(bf16, 1)  # warm-up
        bf16_runs = stage_runs(bf16, args.repeats)
        _, bf16_model_s, bf16_scores = gnn_flops_and_time(gnn_model(bf16), graphs, args.repeats, count=False)
        bf16_rate = matmul_rate(args.threads, args.repeats, "bfloat16")
        fast = job(path, tmpd / "fast.root", args.threads, FAST_CONFIG)
        stage_runs(fast, 1)  # warm-up: its first two runs were up to 3x slower than the next (allocation)
        fast_runs = stage_runs(fast, args.repeats)
        fast_label = fast["modules"]["tauGNN"]["graphs"]
        fast_graphs = [p[fast_label] for p in products(fast, [fast_label])]
        fast_flops, fast_model_s, _ = gnn_flops_and_time(gnn_model(fast), fast_graphs, args.repeats)
        hog = busy()
        try:
            loaded = stage_runs(data, args.repeats)
            loaded_1 = stage_runs(job(path, tmpd / "out1.root", 1), args.repeats) if args.threads > 1 else []
        finally:
            hog.kill()
            hog.wait()
    starts = start_time(CONFIG, args.repeats)
    starts_ort = start_time(CNN_CONFIG, args.repeats)
    lat, lat_jets = latency(args.latency_events, args.threads)
    lat_bf16 = latency(args.latency_events, args.threads, overrides=("modules.tauGNN.precision=bf16",))[0]
    fast_lat = {
        backend: latency(args.latency_events, args.threads, FAST_CONFIG, (f"modules.tauGNN.backend={backend}",))[0]
        for backend in ("torch", "onnxruntime")
    }
    hog = busy()  # a trigger node or a shared machine: another process on a core
    try:
        lat_loaded = {threads: latency(args.latency_events, threads)[0] for threads in sorted({args.threads, 1})}
    finally:
        hog.kill()
        hog.wait()
    load1 = os.getloadavg()[0]

    per_jet = lambda s: 1e6 * s / n_jets  # noqa: E731
    stage = {label: [r.times[label] for r in runs] for label in runs[0].times}
    loops = [sum(r.times.values()) for r in runs]
    print(
        f"input: {n_events} events, {n_jets} jets ({args.replicas} x the shipped sample), tau_gnn.yaml, "
        f"{args.threads} thread(s); {args.repeats} repeats (min / median); load average (1 min) {load0:.2f} at the "
        f"start, {load1:.2f} at the end"
    )
    print(f"{'stage':<34} {'us/jet (min / median)':>22} {'floor us/jet':>13} {'ratio (min / median)':>21}")
    floors = {
        "source": (statistics.median(read_s), "uproot alone, same branches"),
        "hitGraphs": (floor_graphs, "write the product once"),
        "tauGNN": (flops / rate, f"{flops / n_jets / 1e6:.1f} MFLOP/jet at {rate / 1e9:.0f} GFLOP/s"),
    }
    for label, ts in stage.items():
        floor = floors.get(label)
        if floor is None:
            print(f"{label:<34} {fmt(ts, 1e6 / n_jets):>22}")
            continue
        ratio = f"{fmt(ts, 1 / floor[0], '.2f')}x"
        print(f"{label:<34} {fmt(ts, 1e6 / n_jets):>22} {per_jet(floor[0]):13.1f} {ratio:>21}   ({floor[1]})")
    print(f"  read floor repeats (us/jet): {fmt(read_s, 1e6 / n_jets)}")
    if knn_ref:
        print(
            f"  hit-graph kNN alone, one thread: e2e's kernel {per_jet(knn_ref[0]):.1f} us/jet; scipy cKDTree per jet "
            f"(a tuned k-d tree, same points and k) {per_jet(knn_ref[1]):.1f} us/jet: {knn_ref[0] / knn_ref[1]:.2f}x"
        )
    print(f"{'GNN model alone (same batches)':<34} {per_jet(model_s):22.1f}")
    bf16_gnn = [r.times["tauGNN"] for r in bf16_runs]
    change = np.abs(bf16_scores - scores)
    gnn_floor = floors["tauGNN"][0]
    print(
        f"{'tauGNN, precision: bf16 (opt-in)':<34} {fmt(bf16_gnn, 1e6 / n_jets):>22} {per_jet(gnn_floor):13.1f} "
        f"{fmt(bf16_gnn, 1 / gnn_floor, '.2f') + 'x':>21}   (the float32 floor; "
        f"{fmt(bf16_gnn, bf16_rate / flops if flops else 0.0, '.1f')}x the bf16 floor, 2048^3 bfloat16 at "
        f"{bf16_rate / 1e9:,.0f} GFLOP/s; model alone {per_jet(bf16_model_s):.1f} us/jet; event loop "
        f"{fmt([n_jets / sum(r.times.values()) for r in bf16_runs], 1, ',.0f')} jets/s; scores against float32: "
        f"largest change {change.max():.1e}, mean {change.mean():.1e})"
    )
    fast_gnn = [r.times["tauGNN"] for r in fast_runs]
    fast_floor = fast_flops / rate
    print(
        f"{'tau_gnn_fast.yaml: tauGNN':<34} {fmt(fast_gnn, 1e6 / n_jets):>22} {per_jet(fast_floor):13.1f} "
        f"{fmt(fast_gnn, 1 / fast_floor, '.2f') + 'x':>21}   (GraphNet on 33 x 33 pixel graphs: "
        f"{fast_flops / n_jets / 1e6:.2f} MFLOP/jet of dense products; model alone {per_jet(fast_model_s):.1f} us/jet; "
        f"its event loop {fmt([n_jets / sum(r.times.values()) for r in fast_runs], 1, ',.0f')} jets/s)"
    )
    e2e_rate = [n_jets / t for t in loops]
    print(
        f"end to end, event loop: {fmt(e2e_rate, 1, ',.0f')} jets/s (min / median); with start-up, as e2e-run "
        f"reports: {fmt([n_jets / r.wall_s for r in runs], 1, ',.0f')} jets/s"
    )
    for threads, runs_ in ((args.threads, loaded), (1, loaded_1)):
        if runs_:
            rate_ = [n_jets / sum(r.times.values()) for r in runs_]
            print(
                f"loaded machine (a busy process on one core), {threads} thread(s): {fmt(rate_, 1, ',.0f')} jets/s; "
                f"GNN {fmt([r.times['tauGNN'] for r in runs_], 1e6 / n_jets)} us/jet"
            )
    diff = float(np.abs(weaver_scores - scores).max()) if len(scores) else float("nan")
    print(
        f"weaver-style (padded table, batches of {args.weaver_batch}, kNN in the step): {per_jet(weaver_s):.1f} us/jet "
        f"= {n_jets / weaver_s:,.0f} jets/s; e2e's model step {per_jet(model_s):.1f} us/jet: "
        f"{weaver_s / model_s:.1f}x; e2e end to end / weaver-style model alone: "
        f"{statistics.median(e2e_rate) / (n_jets / weaver_s):.2f}x; largest score difference {diff:.1e}"
    )
    print(f"start: e2e-run tau_gnn.yaml -n 1: {fmt(starts, 1, '.2f')} s wall (min / median of {len(starts)})")
    print(
        f"start of an ONNX Runtime job (no torch): e2e-run tau_cnn.yaml -n 1: {fmt(starts_ort, 1, '.2f')} s wall "
        f"(min / median of {len(starts_ort)})"
    )
    ms, nj = np.array(lat) * 1e3, np.array(lat_jets)
    few = ms[(nj >= 2) & (nj <= 4)]  # the "single event of ~3 jets"
    of_few = f"median {np.median(few):.2f} ms, p99 {np.percentile(few, 99):.2f} ms" if len(few) else "none"
    print(
        f"latency, one event at a time through EventTagger ({len(lat)} events, {nj.mean():.1f} jets/event, up to "
        f"{nj.max()}): median {np.median(ms):.2f} ms, p90 {np.percentile(ms, 90):.2f} ms, p99 "
        f"{np.percentile(ms, 99):.2f} ms; the {len(few)} events of 2-4 jets: {of_few}"
    )
    ms_ = np.array(lat_bf16) * 1e3
    print(
        f"latency, the same with precision: bf16: median {np.median(ms_):.2f} ms, p90 {np.percentile(ms_, 90):.2f} ms, "
        f"p99 {np.percentile(ms_, 99):.2f} ms"
    )
    for backend, times in fast_lat.items():
        ms_ = np.array(times) * 1e3
        print(
            f"latency of the latency option, tau_gnn_fast.yaml, backend {backend}: median {np.median(ms_):.2f} ms, "
            f"p90 {np.percentile(ms_, 90):.2f} ms, p99 {np.percentile(ms_, 99):.2f} ms (same events)"
        )
    for threads, times in lat_loaded.items():
        ms_ = np.array(times) * 1e3
        print(
            f"latency with a busy process on one core, tau_gnn.yaml, options.threads {threads}: median "
            f"{np.median(ms_):.2f} ms, p90 {np.percentile(ms_, 90):.2f} ms, p99 {np.percentile(ms_, 99):.2f} ms"
        )
    print(f"peak memory: e2e-run tau_gnn.yaml on {args.rss_file}: {rss}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
