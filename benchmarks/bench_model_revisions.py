"""The tau_gnn model alone at two revisions of this repository, interleaved, with their scores compared.

For a change to the model's code path (layers, kNN, gathers), the baseline is the code before it: this
benchmark exports ``--base`` (a git revision) into a temporary directory with ``git archive`` and times the
GNNTagger of ``process_configs/tau_gnn.yaml`` (model step only, micro-batches of 128 jets, on the hit graphs of
the sample repeated ``--copies`` times, or of ``--file``) in a fresh process per measurement, alternating the base
and the working tree ``--repeats`` times. Each process reports its best of ``--runs`` passes. Prints min and
median microseconds per jet for each, the ratio of the medians, whether the scores are identical bit for bit
(else how many jets differ and by how much), and the load average.

    python benchmarks/bench_model_revisions.py --base 985ad34 [--threads 2] [--repeats 3] [--file F.root]
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


def measure(code: Path, threads: int, runs: int, copies: int, file: str | None, scores: Path) -> None:
    """Child: time the model of the tree at ``code``; print one JSON line, write the scores to ``scores``."""
    sys.path[:0] = [str(code), str(code / "benchmarks")]
    import torch
    from bench_pipeline import SAMPLE, gnn_model, job, products

    with tempfile.TemporaryDirectory() as tmp:
        data = job(Path(file) if file else SAMPLE, Path(tmp) / "out.root", threads)
        graphs = [p["hitGraphs"] for p in products(data, ["hitGraphs"])] * (1 if file else copies)
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
    ap.add_argument("--file", help="a hits file to use instead of the sample")
    ap.add_argument("--child", nargs=2, metavar=("CODE", "SCORES"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        measure(Path(args.child[0]), args.threads, args.runs, args.copies, args.file, Path(args.child[1]))
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
        jets = 0
        for _ in range(args.repeats):
            for i, (name, code) in enumerate(trees.items()):
                cmd = [sys.executable, __file__, "--threads", str(args.threads), "--runs", str(args.runs)]
                cmd += ["--copies", str(args.copies), "--child", str(code), str(Path(tmp) / f"scores{i}.npy")]
                cmd += ["--file", args.file] if args.file else []
                line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
                result = json.loads(line)
                times[name].append(result["us_per_jet"])
                jets = result["jets"]
        a, b = np.load(Path(tmp) / "scores0.npy"), np.load(Path(tmp) / "scores1.npy")
    each = f"{args.repeats} processes each (best of {args.runs})"
    print(f"tau_gnn model alone, {jets} jets, {args.threads} threads, {each}")
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
