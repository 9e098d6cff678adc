"""ParticleNet's in-model kNN on CPU: jets grouped by size (each group padded to its own largest jet) against the
whole micro-batch padded to its largest jet, in one run, interleaved.

The tau_gnn model (``zoo:tau_gnn``, the GNNTagger of ``process_configs/tau_gnn.yaml``) on the hit graphs of the shipped
sample repeated ``--copies`` times, micro-batches of 128 jets, ``--threads`` torch threads; the baseline sets
``taggers.models.graph_layers.KNN_GROUP`` above the micro-batch size (one group: the micro-batch padded to its largest
jet, as the ONNX export pads it). Prints min and median microseconds per jet over ``--repeats`` interleaved runs of
each, the ratio of the medians, whether the scores are identical bit for bit, and the load average.

    python benchmarks/bench_knn_groups.py [--copies 4] [--threads 2] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline import SAMPLE, gnn_model, job, products  # noqa: E402

from taggers.models import graph_layers  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=4, help="copies of the sample's graphs (default 4)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved runs of each way (default 7)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = job(SAMPLE, Path(tmp) / "out.root", args.threads)
        graphs = [p["hitGraphs"] for p in products(data, ["hitGraphs"])] * args.copies
    tagger = gnn_model(data)
    batches = [mb for g in graphs for mb in tagger.input_kind.micro_batches(g, tagger.params.micro_batch)]
    jets = sum(g.n_jets for g in graphs)
    default = graph_layers.KNN_GROUP
    ways = {"padded to the micro-batch's largest jet": 10**9, f"grouped by size ({default})": default}
    times: dict[str, list[float]] = {name: [] for name in ways}
    scores: dict[str, np.ndarray] = {}
    for _ in range(args.repeats + 1):  # the first round warms up and is not counted
        for name, group in ways.items():
            graph_layers.KNN_GROUP = group
            t0 = time.perf_counter()
            scores[name] = np.concatenate([tagger.run_model(mb) for mb in batches])
            times[name].append(time.perf_counter() - t0)
    graph_layers.KNN_GROUP = default
    print(f"tau_gnn model alone, {jets} jets, micro-batches of {tagger.params.micro_batch}, {args.threads} threads")
    for name, ts in times.items():
        ts = ts[1:]
        print(f"  {name:42s} {1e6 * min(ts) / jets:8.1f} / {1e6 * statistics.median(ts) / jets:8.1f} us/jet")
    base, new = (statistics.median(ts[1:]) for ts in times.values())
    same = np.array_equal(*scores.values())
    print(f"  ratio of the medians (padded / grouped): {base / new:.2f}; scores identical bit for bit: {same}")
    print(f"  load average (1 min): {os.getloadavg()[0]:.2f}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
