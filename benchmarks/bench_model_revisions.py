"""The tau_gnn model (or another job's) alone, the tau_gnn.yaml event loop, or one event at a time through the
in-memory API, at two revisions, interleaved, outputs compared.

For a change to a code path, the baseline is the code before it: this benchmark exports ``--base`` (a git
revision) into a temporary directory with ``git archive`` and measures it and the working tree in a fresh process
each, alternating ``--repeats`` times. Each process reports its best of ``--runs`` passes.

- default: the GNNTagger of ``process_configs/tau_gnn.yaml`` (its model step only, micro-batches of 128 jets) on
  the hit graphs of the sample repeated ``--copies`` times, or of ``--file`` (``--config``: the ``tauGNN`` of
  another job, e.g. ``process_configs/tau_gnn_fast.yaml``, on its own graphs); prints min and median us/jet, the
  ratio of the medians, and whether the scores are identical bit for bit (else how many jets differ, by how much);
- ``--pipeline``: the event loop of ``tau_gnn.yaml`` (in process, after a warm-up) on the sample replicated
  ``--copies`` times; prints each stage's us/jet and the loop's jets/s, with the ratios, and compares the
  tagger scores the same way;
- ``--latency``: the sample's first 150 events one at a time through :class:`e2e.api.EventTagger` of ``--config``
  (with ``--backend``), reading each event's score, after 20 warm-up events; each process reports the pass of
  ``--runs`` with the lowest median; prints the median and p99 ms per event, the ratio of the medians, and
  compares the scores the same way.

All print the load average.

    python benchmarks/bench_model_revisions.py --base 985ad34 [--pipeline | --latency] [--threads 2] [--repeats 3]
                                               [--config process_configs/tau_gnn_fast.yaml] [--backend onnxruntime]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def measure_pipeline(code: Path, threads: int, runs: int, copies: int, scores: Path) -> None:
    """Child: the event loop of tau_gnn.yaml with the tree at ``code``, best of ``runs`` per stage; one JSON line."""
    sys.path[:0] = [str(code), str(code / "benchmarks")]
    import copy

    import torch
    from bench_pipeline import job, stage_runs
    from bench_run import replicate

    from e2e.config import load_process
    from e2e.process import Process

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hits.root"
        _, jets = replicate(path, copies)
        data = job(path, Path(tmp) / "out.root", threads)
        warm = copy.deepcopy(data)
        warm["source"]["max_events"] = 50
        Process(load_process(warm)).run(progress=False)
        results = stage_runs(data, runs)
        keep = copy.deepcopy(data)
        keep["outputs"][0]["keep"] = ["tauGNN"]
        np.save(scores, np.concatenate([b.get("tauGNN").values for b in Process(load_process(keep)).iter_batches()]))
    stages = {label: 1e6 * min(r.times[label] for r in results) / jets for label in results[0].times}
    loop = max(jets / sum(r.times.values()) for r in results)
    print(json.dumps({"stages": stages, "jets_per_s": loop, "jets": jets}))


def measure_latency(code: Path, threads: int, runs: int, config: str, scores: Path, backend: str = "") -> None:
    """Child: single-event latency through EventTagger of ``config`` with the tree at ``code``; one JSON line. (Not
    bench_pipeline's ``latency``: importing bench_pipeline puts its own tree first on the path, and a base
    revision's may take other arguments.)"""
    sys.path[:0] = [str(code)]
    import awkward as ak
    import uproot

    from e2e.api import EventTagger

    overrides = [f"options.threads={threads}"] + ([f"modules.tauGNN.backend={backend}"] if backend else [])
    tagger = EventTagger(str(code / config), overrides)
    with uproot.open(REPO / "data" / "sample_tau_qcd.root") as f:
        events = f["Events"].arrays(entry_stop=LATENCY_EVENTS)
    ones = [events[i : i + 1] for i in range(len(events))]
    for one in ones[:20]:  # warm-up
        tagger(one)
    best: list[float] = []
    for _ in range(runs):
        times = []
        for one in ones:
            t0 = time.perf_counter()
            tagger(one)["Jet_tauGNN_tau"]  # the call and reading the score, as a user does
            times.append(time.perf_counter() - t0)
        if not best or statistics.median(times) < statistics.median(best):
            best = times
    values = [ak.to_numpy(ak.flatten(tagger(one)["Jet_tauGNN_tau"])) for one in ones]
    np.save(scores, np.concatenate(values)[:, None])
    ms = 1e3 * np.asarray(best)
    print(json.dumps({"median_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)), "jets": len(ms)}))


#: events of the sample that --latency feeds one at a time
LATENCY_EVENTS = 150


def measure(
    code: Path, threads: int, runs: int, copies: int, file: str | None, config: str, scores: Path, backend: str = ""
) -> None:
    """Child: time the model of the tree at ``code``; print one JSON line, write the scores to ``scores``."""
    sys.path[:0] = [str(code), str(code / "benchmarks")]
    import torch
    import yaml
    from bench_pipeline import SAMPLE, gnn_model, products

    with tempfile.TemporaryDirectory() as tmp:
        data = yaml.safe_load((code / config).read_text())  # as bench_pipeline.job, for any job's tauGNN
        data["source"]["files"] = [str(Path(file) if file else SAMPLE)]
        data["outputs"][0]["file"] = str(Path(tmp) / "out.root")
        data.setdefault("options", {})["threads"] = threads
        data["modules"]["tauGNN"]["threads"] = threads
        if backend:
            data["modules"]["tauGNN"]["backend"] = backend
        label = data["modules"]["tauGNN"]["graphs"]
        graphs = [p[label] for p in products(data, [label])] * (1 if file else copies)
    tagger = gnn_model(data)
    torch.set_num_threads(threads)
    batches = [mb for g in graphs for mb in tagger.input_kind.micro_batches(g, tagger.params.micro_batch)]
    jets = sum(g.n_jets for g in graphs)
    np.save(scores, np.concatenate([tagger.run_model(mb) for mb in batches]))  # also the warm-up
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        for mb in batches:
            tagger.run_model(mb)
        best = min(best, time.perf_counter() - t0)
    print(json.dumps({"us_per_jet": 1e6 * best / jets, "jets": jets}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help="git revision to compare the working tree with (required)")
    ap.add_argument("--threads", type=int, default=2, help="torch and numba threads (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="processes of each, interleaved (default 3)")
    ap.add_argument("--runs", type=int, default=3, help="timed passes per process, best kept (default 3)")
    ap.add_argument("--copies", type=int, default=4, help="copies of the sample's graphs (default 4)")
    ap.add_argument("--file", help="a hits file to use instead of the sample (model only)")
    ap.add_argument("--pipeline", action="store_true", help="the whole event loop, stage by stage")
    ap.add_argument("--latency", action="store_true", help="one event at a time through EventTagger of --config")
    ap.add_argument(
        "--config",
        default="process_configs/tau_gnn.yaml",
        help="job whose tauGNN model is timed, or whose EventTagger with --latency "
        "(default process_configs/tau_gnn.yaml, e.g. process_configs/tau_gnn_fast.yaml)",
    )
    ap.add_argument("--backend", choices=("torch", "onnxruntime"), help="the tagger's backend (model, latency)")
    ap.add_argument("--child", nargs=2, metavar=("CODE", "SCORES"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pipeline and args.latency:
        ap.error("--pipeline and --latency measure different things: give one")
    if args.child:
        if args.latency:
            measure_latency(Path(args.child[0]), args.threads, args.runs, args.config, Path(args.child[1]),
                            args.backend or "")  # fmt: skip
        elif args.pipeline:
            measure_pipeline(Path(args.child[0]), args.threads, args.runs, args.copies, Path(args.child[1]))
        else:
            measure(Path(args.child[0]), args.threads, args.runs, args.copies, args.file, args.config,
                    Path(args.child[1]), args.backend or "")  # fmt: skip
        return 0
    if not args.base:
        ap.error("--base REVISION is required")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.base], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
        trees = {f"base {args.base}": base, "working tree": REPO}
        times: dict[str, list[float]] = {name: [] for name in trees}
        results: dict[str, list[dict]] = {name: [] for name in trees}
        jets = 0
        for _ in range(args.repeats):
            for i, (name, code) in enumerate(trees.items()):
                cmd = [sys.executable, __file__, "--threads", str(args.threads), "--runs", str(args.runs)]
                cmd += ["--copies", str(args.copies), "--child", str(code), str(Path(tmp) / f"scores{i}.npy")]
                cmd += ["--file", args.file] if args.file else []
                cmd += ["--config", args.config]
                cmd += ["--backend", args.backend] if args.backend else []
                cmd += ["--pipeline"] if args.pipeline else []
                cmd += ["--latency"] if args.latency else []
                line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
                result = json.loads(line)
                results[name].append(result)
                times[name].append(result.get("us_per_jet", 0.0))
                jets = result["jets"]
        a, b = np.load(Path(tmp) / "scores0.npy"), np.load(Path(tmp) / "scores1.npy")
    each = f"{args.repeats} processes each (best of {args.runs})"
    if args.latency:
        on = f", {args.backend}" if args.backend else ""
        print(f"{Path(args.config).name}{on}: one event at a time through EventTagger, {LATENCY_EVENTS} events, "
              f"{args.threads} threads, {each}; ms per event, min / median over the processes")  # fmt: skip
        for name, rs in results.items():
            med, p99 = [r["median_ms"] for r in rs], [r["p99_ms"] for r in rs]
            print(f"  {name:24s} median {min(med):.3f} / {statistics.median(med):.3f}, "
                  f"p99 {min(p99):.2f} / {statistics.median(p99):.2f}")  # fmt: skip
        old, new = (statistics.median([r["median_ms"] for r in rs]) for rs in results.values())
        print(f"  ratio of the medians (base / working tree): {old / new:.2f}")
    elif args.pipeline:
        print(f"tau_gnn.yaml event loop, {jets} jets, {args.threads} threads, {each}; us/jet min / median")
        base_r, head_r = results.values()
        for label in base_r[0]["stages"]:
            old_t = [r["stages"][label] for r in base_r]
            new_t = [r["stages"][label] for r in head_r]
            ratio = statistics.median(old_t) / statistics.median(new_t)
            print(f"  {label:12s} {min(old_t):8.1f} / {statistics.median(old_t):8.1f} -> "
                  f"{min(new_t):8.1f} / {statistics.median(new_t):8.1f}  {ratio:5.2f}x")  # fmt: skip
        old_j = [r["jets_per_s"] for r in base_r]
        new_j = [r["jets_per_s"] for r in head_r]
        ratio = statistics.median(new_j) / statistics.median(old_j)
        print(f"  event loop, jets/s (max / median): {max(old_j):,.0f} / {statistics.median(old_j):,.0f} -> "
              f"{max(new_j):,.0f} / {statistics.median(new_j):,.0f}  {ratio:.2f}x")  # fmt: skip
    else:
        on = f", {args.backend}" if args.backend else ""
        print(f"{Path(args.config).stem} model alone{on}, {jets} jets, {args.threads} threads, {each}")
        for name, ts in times.items():
            print(f"  {name:24s} {min(ts):8.1f} / {statistics.median(ts):8.1f} us/jet (min / median)")
        old, new = (statistics.median(ts) for ts in times.values())
        print(f"  ratio of the medians (base / working tree): {old / new:.2f}")
    differ = (a != b).any(axis=1)
    if not differ.any():
        print("  scores identical bit for bit")
    else:
        diff = float(np.abs(a - b).max())
        print(f"  scores differ for {int(differ.sum())} of {len(a)} jets, by at most {diff:.2g}")
    print(f"  load average (1 min): {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
