"""Benchmark: peak memory of building a training dataset and training on it, dataset in memory against on disk.

Runs e2e-train on CONFIG (default: the jet-mass CNN, 125 x 125 images of 8 channels, the largest dataset the
project trains) for one epoch, with ``dataset: memory`` and ``dataset: disk`` and for each of the --jets sample
sizes, each in a fresh process; prints the peak resident memory (ru_maxrss of the e2e-train process) and the
wall time. The models go to a temporary directory; the training samples must exist (see the config's header).

    python benchmarks/bench_train_memory.py [--config process_configs/train_jet_mass.yaml] [--jets 10000 40000] \\
        [--datasets memory disk]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: runs e2e-train as a child and prints the child's peak RSS (kB on Linux)
WRAPPER = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
)


def one(config: str, where: str, jets: int, out: Path, threads: int) -> tuple[float, float]:
    """(peak RSS in GB, wall seconds) of one e2e-train run."""
    cmd = [sys.executable, "-m", "e2e.cli.train", config, "-o", str(out), "--no-progress"]
    cmd += ["-s", f"dataset={where}", "-s", f"max_jets={jets}", "-s", "optimizer.max_epochs=1", "-s", "heldout=[]"]
    cmd += ["-s", f"threads={threads}"]
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-c", WRAPPER, *cmd],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return int(r.stdout.strip().splitlines()[-1]) / 1024**2, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="process_configs/train_jet_mass.yaml")
    ap.add_argument("--jets", type=int, nargs="+", default=[10000, 40000], help="max_jets of each run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--datasets", nargs="+", default=["memory", "disk"], choices=["memory", "disk"])
    args = ap.parse_args()
    print(f"{args.config}, one epoch, {args.threads} torch thread(s); load average {os.getloadavg()[0]:.2f}")
    print(f"{'max_jets':>9} {'dataset':>8} {'peak RSS (GB)':>14} {'wall (s)':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for jets in args.jets:
            for where in args.datasets:
                peak, wall = one(args.config, where, jets, Path(tmp) / f"{where}-{jets}", args.threads)
                print(f"{jets:>9} {where:>8} {peak:>14.2f} {wall:>9.0f}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
