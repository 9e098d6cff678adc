"""Do replicas of one generator configuration agree on the number of pileup jets within statistics?

Each replica is the same sample (Z -> tau tau at a fixed mu) generated with another seed. A pileup jet is a
reconstructed jet with 20 < pT < 100 GeV and no generator-jet match (Jet_gen_pt = -1). Printed per library
setting: the count of every replica, their mean and standard deviation, and the statistical error of one count
from its own events (sqrt(n_events x the variance of the per-event count): pileup jets come several per event, so
the count is not Poisson); sd / expected near 1 and the chi2 / ndf of the counts with that error say whether
replicas agree within statistics. The library settings compared (``--settings``, pileup keys of the generator
configuration): a fixed library sampled with replacement (``reuse=0``, as before issue 13), the refreshed one
(``refresh=0.5``) and a distinct minimum-bias event for every interaction (``reuse=1``, the shipped configurations).

    python benchmarks/pileup_replicas.py [--replicas 6] [--events 600] [--mu 40] [--library 1000] [--jobs 2]
                                         [--settings reuse=0 refresh=0.5 reuse=1]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import uproot
import yaml

REPO = Path(__file__).resolve().parents[1]


def pileup_jets(path: Path) -> tuple[int, float]:
    """(pileup jets in the file, the statistical error of that count: sqrt(n_events x variance of the count per
    event), which allows for events with several pileup jets)."""
    with uproot.open(path) as f:
        t = f["Events"]
        pt = t["Jet_pt"].array(library="np")
        gen = t["Jet_gen_pt"].array(library="np")
    per_event = np.array([np.count_nonzero((g <= 0) & (p > 20) & (p < 100)) for p, g in zip(pt, gen, strict=True)])
    return int(per_event.sum()), float(np.sqrt(len(per_event) * per_event.var(ddof=1)))


def parse_setting(text: str) -> dict[str, float]:
    """``reuse=1`` -> {"reuse": 1}: a pileup key of the generator configuration and its value."""
    key, sep, value = text.partition("=")
    if not sep or key not in ("reuse", "refresh", "library_size"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected reuse=N, refresh=X or library_size=N")
    return {key: float(value) if key == "refresh" else int(value)}


def replica(d: Path, seed: int, setting: dict[str, float], args: argparse.Namespace) -> tuple[int, float]:
    tag = "_".join(f"{k}{v:g}" for k, v in setting.items())
    cfg = {
        "samples": [{"process": "ztautau", "events": args.events}],
        "seed": seed,
        "pileup": {"mu": args.mu, "sigma_z_cm": 4.0, "library_size": args.library, **setting},
        "output": str(d / f"replica_{seed}_{tag}.root"),
        "jobs": args.jobs,
        "chunk_size": 100,
    }
    path = d / f"replica_{seed}_{tag}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "e2e.cli.generate", str(path), "--no-progress"], capture_output=True,
                       text=True, env=env)  # fmt: skip
    if r.returncode:
        raise SystemExit(f"e2e-generate {path} failed:\n{r.stderr[-2000:]}")
    return pileup_jets(Path(cfg["output"]))


def chi2_sf(x: float, ndf: int) -> float:
    """P(chi2 > x) for ``ndf`` degrees of freedom: 1 - the regularised lower incomplete gamma P(ndf/2, x/2)."""
    a, z = ndf / 2.0, x / 2.0
    if z <= 0:
        return 1.0
    term = total = 1.0 / a
    n = 1
    while term > 1e-15 * total and n < 10000:
        term *= z / (a + n)
        total += term
        n += 1
    return max(0.0, 1.0 - math.exp(a * math.log(z) - z - math.lgamma(a)) * total)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=6)
    p.add_argument("--events", type=int, default=600, help="Z -> tau tau events per replica")
    p.add_argument("--mu", type=float, default=40.0)
    p.add_argument("--library", type=int, default=1000, help="minimum-bias library size per job")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--settings", type=parse_setting, nargs="+", default=[{"reuse": 0}, {"refresh": 0.5}, {"reuse": 1}],
                   help="library settings to compare (reuse=N, refresh=X, library_size=N)")  # fmt: skip
    args = p.parse_args()
    print(f"{args.replicas} replicas x {args.events} Z -> tau tau events, mu = {args.mu:g}, library {args.library} "
          f"min-bias events per job, {args.jobs} jobs; pileup jets: 20 < pT < 100 GeV, Jet_gen_pt = -1")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings:
            results = [replica(Path(tmp), 7001 + i, setting, args) for i in range(args.replicas)]
            counts = [c for c, _ in results]
            expected = float(np.sqrt(np.mean([e**2 for _, e in results])))  # per-replica error from its own events
            mean, sd = statistics.mean(counts), statistics.stdev(counts)
            chi2 = sum((c - mean) ** 2 for c in counts) / expected**2
            ndf = len(counts) - 1
            label = ", ".join(f"{k} {v:g}" for k, v in setting.items())
            print(f"{label}: counts {counts}; mean {mean:.0f}, sd {sd:.1f}; expected from the events' own "
                  f"fluctuations {expected:.1f} (Poisson would be {mean**0.5:.1f}); sd / expected {sd / expected:.2f}; "
                  f"chi2/ndf {chi2:.1f}/{ndf}, p = {chi2_sf(chi2, ndf):.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
