"""Benchmark of e2e-generate: events/s per process and pileup, and the cost of the detector simulation.

Prints, for each (process, mu), events/s and the time split, and the ratio

    (detector simulation + jet clustering) / Pythia

against two baselines measured in the same run:
  * sim/hard: Pythia for the hard scatter only (generation + record extraction),
    the strictest baseline: the pileup library is not counted at all;
  * sim/full: Pythia for the whole event at that mu: hard scatter + mu
    minimum-bias events, each at the per-event minimum-bias cost measured here
    (what the event costs without the reusable library).
The goal of the foundation issue is ratio <= 25 % at mu = 40.

    python benchmarks/bench_generate.py                       # ztautau at mu = 40, 300 events
    python benchmarks/bench_generate.py --processes ztautau qcd zqq zprime_tautau zprime_ttbar --mu 0 40
"""

from __future__ import annotations

import argparse
import time

from simulation.generate import TIMERS, ChunkGenerator, JobStats, build_library, load_config
from simulation.processes import PROCESSES
from simulation.pythia import PythiaGenerator


def minbias_ms(n: int = 300, seed: int = 11) -> float:
    """Steady-state Pythia cost of one minimum-bias event with extraction (ms), initialisation excluded."""
    gen = PythiaGenerator(PROCESSES["minbias"], seed)
    gen.next_raw()
    t0 = time.perf_counter()
    for _ in range(n):
        gen.next_raw()
        gen.extract(with_truth=False)
    return 1e3 * (time.perf_counter() - t0) / n


def run(process: str, mu: float, events: int, library_size: int, seed: int) -> dict[str, float]:
    """Generate ``events`` events in memory (no file) and return timings (s) and counts."""
    cfg = load_config(
        {
            "process": process,
            "events": events,
            "seed": seed,
            "chunk_size": 100,
            "pileup": {"mu": mu, "library_size": library_size},
            "pt_hat": [20, 120],
        }
    )
    stats = JobStats()
    library = build_library(cfg, 0, stats)
    gen = ChunkGenerator(cfg, 0, 0, stats, library)
    # warm-up chunk: numba cache loading and Pythia's first events are not part of the steady state
    next(gen.chunks(1, min(10, events), lumi=1))
    warm = JobStats()
    gen.stats = warm
    t0 = time.perf_counter()
    for _ in gen.chunks(1, events, lumi=1):
        pass
    wall = time.perf_counter() - t0
    out = dict(warm.seconds)
    out["wall"] = wall
    out["events"] = events
    out["jets"] = sum(warm.jets_per_label.values())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", nargs="+", default=["ztautau"])
    ap.add_argument("--mu", nargs="+", type=float, default=[40.0])
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--library-size", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    mb = minbias_ms()
    print(f"minimum-bias event (Pythia + extraction): {mb:.2f} ms")
    print(
        f"{'process':<14}{'mu':>5}{'ev/s':>8}{'jets/ev':>8}  "
        + "".join(f"{k[:10]:>11}" for k in TIMERS)
        + f"{'sim/hard':>10}{'sim/full':>10}"
    )
    print(f"{'':<35}" + "".join(f"{'ms/ev':>11}" for _ in TIMERS))
    for process in args.processes:
        for mu in args.mu:
            r = run(process, mu, args.events, args.library_size, args.seed)
            n = r["events"]
            sim = r["detector"] + r["clustering"]
            hard = r["pythia"] + r["extraction"]
            full = hard + n * mu * mb / 1e3
            ms = "".join(f"{1e3 * r[k] / n:>11.2f}" for k in TIMERS)
            print(
                f"{process:<14}{mu:>5g}{n / r['wall']:>8.1f}{r['jets'] / n:>8.2f}  {ms}"
                f"{100 * sim / hard:>9.0f}%{100 * sim / full:>9.0f}%"
            )
    print(
        "sim = detector + clustering; hard = Pythia hard scatter + extraction; full = hard + mu minimum-bias "
        "events. The library (built once per job) is excluded from the steady state."
    )


if __name__ == "__main__":
    main()
