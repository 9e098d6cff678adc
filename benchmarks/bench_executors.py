"""Benchmark: e2e-run tau_gnn.yaml on several files under each executor, side by side.

The input is --files files, each --copies copies of the shipped sample's 150 events (476 jets) one after another.
Each way runs e2e-run in a subprocess, --repeats times, interleaved; wall time includes the start of the
interpreter and every worker's setup (imports, numba cache load, inference sessions), as a user sees it.
Printed: jets/s (min and median over repeats) and the ratio to iterative with one thread; every output is checked
identical to that run's (all branches, bit for bit); dask with 8 workers on the 2 cores runs once, for correctness.
Then the resume check, --repeats times: a futures run killed (SIGKILL of the driver) when half of the units are
done, resumed with --resume; its time (min and median) against a full run's (median).

    python benchmarks/bench_executors.py [--files 8] [--copies 32] [--repeats 2] [--step 400]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import awkward as ak
import uproot
import yaml

REPO = Path(__file__).resolve().parents[1]
ONE_THREAD = ["-s", "options.threads=1", "-s", "modules.tauGNN.threads=1", "-s", "modules.tauShapes.threads=1"]
WAYS: dict[str, list[str]] = {
    "iterative, 1 thread, no prefetch": [*ONE_THREAD, "-s", "options.prefetch=false"],
    "iterative, 1 thread": ONE_THREAD,
    "iterative, 2 threads": [],
    "futures, 2 workers": ["--executor", "futures", "--workers", "2"],
    "dask LocalCluster, 2 workers": ["--executor", "dask", "--workers", "2"],
}
#: run once, for correctness on an oversubscribed machine
OVERSUBSCRIBED = ["--executor", "dask", "--workers", "8"]


def branches(path: Path) -> dict[str, bytes]:
    with uproot.open(path) as f:
        t = f["Events"]
        return {k: ak.to_numpy(ak.flatten(t[k].array(library="ak"), axis=None)).tobytes() for k in t.keys()}


#: the last parallel run's account of its time, per way (e2e-run's summary: work, busy share, first result)
ACCOUNTS: dict[str, str] = {}


def run(config: Path, out: Path, args: list[str]) -> tuple[float, int]:
    """(wall seconds, jets) of one e2e-run."""
    cmd = [sys.executable, "-m", "e2e.cli.run", str(config), "-o", str(out), "--no-progress", *args]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    first = r.stdout.splitlines()[0]  # "e2e-run: process X: N events, M jets from ..."
    account = [part for line in r.stdout.splitlines() for part in line.split("; ") if "% busy" in part]
    if account:
        ACCOUNTS[" ".join(args)] = account[0].strip()
    return wall, int(first.split(" events, ")[1].split(" jets")[0])


def fmt_pair(values: list[float]) -> str:
    return f"{min(values):.1f} / {statistics.median(values):.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=8, help="input files (default 8)")
    ap.add_argument("--copies", type=int, default=32, help="copies of the 150-event sample per file (default 32)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each way (default 2)")
    ap.add_argument("--step", type=int, default=400, help="events per unit (source.step_size, default 400)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        sys.path.insert(0, str(REPO / "tests"))
        from conftest import read_events, write_hits

        sample = read_events(REPO / "data" / "sample_tau_qcd.root")
        many = ak.concatenate([sample] * args.copies)
        # baskets of 100 events, as e2e-generate writes them (a unit then decompresses only its own entries)
        files = [write_hits(d / f"hits_{i:03d}.root", many, basket_events=100) for i in range(args.files)]
        events_per_file = len(many)
        data = yaml.safe_load((REPO / "process_configs" / "tau_gnn.yaml").read_text())
        data["source"].update(files=[str(f) for f in files], step_size=args.step)
        data.setdefault("options", {})["duplicate_ids"] = "warn"  # the copies repeat the sample's ids
        config = d / "tau_gnn_many.yaml"
        config.write_text(yaml.safe_dump(data))
        times: dict[str, list[float]] = {name: [] for name in WAYS}
        jets = 0
        reference: dict[str, bytes] | None = None
        for _ in range(args.repeats):
            for k, (name, extra) in enumerate(WAYS.items()):
                out = d / f"out_{k}.root"
                wall, jets = run(config, out, extra)
                times[name].append(wall)
                got = branches(out)
                if reference is None:
                    reference = got
                elif got != reference:
                    raise SystemExit(f"{name}: output differs from the iterative run")
        load = os.getloadavg()[0]
        base = statistics.median(times["iterative, 1 thread"])
        print(
            f"{args.files} files x {events_per_file} events, {jets} jets, units of {args.step} events; "
            f"{os.cpu_count()} cores, "
            f"load average (1 min) {load:.2f}; wall time per run includes interpreter and worker start-up"
        )
        print(f"{'way':42s} {'jets/s min':>11s} {'median':>8s} {'x iterative 1 thread':>21s}")
        for name, ts in times.items():
            rates = [jets / t for t in ts]
            ratio = base / statistics.median(ts)
            print(f"{name:42s} {min(rates):11.0f} {statistics.median(rates):8.0f} {ratio:21.2f}")
        for name, extra in WAYS.items():
            if " ".join(extra) in ACCOUNTS:
                print(f"  {name}, last run: {ACCOUNTS[' '.join(extra)]}")
        wall8, _ = run(config, d / "out_8.root", OVERSUBSCRIBED)
        if branches(d / "out_8.root") != reference:
            raise SystemExit("dask with 8 workers: output differs from the iterative run")
        print(f"{'dask LocalCluster, 8 workers (2 cores, once)':42s} {jets / wall8:11.0f}")
        print("every output identical to the first run's (all branches, bit for bit)")

        # resume: kill the driver of a futures run at half of the units, then --resume (--repeats times)
        full = statistics.median(times["futures, 2 workers"])
        out = d / "resume.root"
        cmd = [sys.executable, "-m", "e2e.cli.run", str(config), "-o", str(out), "--no-progress", "--resume",
               "--executor", "futures", "--workers", "2"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        parts = d / ".resume.root.parts"
        n_units = args.files * -(-events_per_file // args.step)
        resumed: list[float] = []
        for _ in range(args.repeats):
            out.unlink(missing_ok=True)
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while proc.poll() is None and len(list(parts.glob("*.json"))) < n_units // 2:
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_after = time.perf_counter() - t0
            done = len(list(parts.glob("*.json")))
            time.sleep(1.0)  # the workers die with their driver (PR_SET_PDEATHSIG); their exit is not timed
            t0 = time.perf_counter()
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            resumed.append(time.perf_counter() - t0)
            if r.returncode or branches(out) != reference:
                raise SystemExit(f"resume failed or differs:\n{r.stderr[-2000:]}")
            account = [line.strip() for line in r.stdout.splitlines() if "reused" in line]
            print(
                f"resume (futures, 2 workers): killed after {killed_after:.1f} s with {done}/{n_units} units done; "
                f"--resume took {resumed[-1]:.1f} s; output identical; {account[0] if account else ''}"
            )
        print(
            f"resume: {fmt_pair(resumed)} s (min / median) = {100 * min(resumed) / full:.0f} / "
            f"{100 * statistics.median(resumed) / full:.0f} % of a full futures run ({full:.1f} s, median); "
            f"load average (1 min) {os.getloadavg()[0]:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
