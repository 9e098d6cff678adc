"""e2e-validate: check hits-tree ROOT files against the schema (DESIGN §4.1), or the generator's physics.

e2e-validate FILE [FILE ...] [--tree Events]   schema-validate each file
e2e-validate --physics [--events N] [--seed S] measured values vs REFERENCE.md (exit 1 if a check fails)
"""

from __future__ import annotations

import argparse
import sys
import time

from e2e.cli.common import Parser, console_script, run_main

PROG = "e2e-validate"


def parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", metavar="FILE", help="hits-tree ROOT file(s) to validate")
    p.add_argument("--tree", default="Events", help="TTree name (default: Events)")
    p.add_argument(
        "--physics", action="store_true", help="generate small samples and compare with the reference physics numbers"
    )
    p.add_argument("--events", type=int, default=400, help="Z -> tautau events for the tau checks (default 400)")
    p.add_argument("--pileup-events", type=int, default=40, help="events at mu = 40 for the pileup checks (default 40)")
    p.add_argument("--ecal-particles", type=int, default=2000, help="particles of the ECAL gun (default 2000)")
    p.add_argument(
        "--auc-events",
        type=int,
        default=300,
        help="events of each of ztautau and qcd per pileup point for the AUC report (default 300)",
    )
    p.add_argument("--seed", type=int, default=1, help="base seed; the checks use seed, seed+1, ... (default 1)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _progress(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def _physics(args: argparse.Namespace) -> int:
    from simulation import validation as v

    for name in ("events", "pileup_events", "ecal_particles", "auc_events"):
        if getattr(args, name) < 1:
            from e2e.errors import ConfigError

            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    t_all = time.perf_counter()
    checks: list[v.Check] = []
    sections = []
    steps = [
        (f"tau decay modes and d0 ({args.events} Z -> tautau events, mu = 0)",
         lambda: v.tau_checks(args.events, seed=args.seed)),
        (f"ECAL closure ({args.ecal_particles} photons + electrons)",
         lambda: v.ecal_closure_checks(args.ecal_particles, seed=args.seed + 1)),
        (f"pileup ({args.pileup_events} events, mu = 40)",
         lambda: v.pileup_checks(args.pileup_events, mu=40, seed=args.seed + 2)),
    ]  # fmt: skip
    for title, run in steps:
        _progress(f"{title} ...")
        t0 = time.perf_counter()
        result = run()
        _progress(f"{title}: done in {time.perf_counter() - t0:.1f} s")
        checks += result
        sections.append((title, result))
    reports = []
    for mu in (0.0, 40.0):
        n = args.auc_events
        title = f"single-variable AUC, tau vs QCD jets, 20 < pT < 100 GeV ({n} + {n} events, mu = {mu:g})"
        _progress(f"{title} ...")
        t0 = time.perf_counter()
        reports.append((title, v.single_variable_auc_report(args.auc_events, mu, seed=args.seed + 3)))
        _progress(f"done in {time.perf_counter() - t0:.1f} s")
    out: list[str] = []
    for title, result in sections:
        out += [f"== {title}", *v.format_checks(result), ""]
    out.append("== Single-variable separation (how hard the task is, not a target)")
    for title, rep in reports:
        out += [*v.format_auc_report(rep, title=title), ""]
    n_fail = sum(not c.passed for c in checks)
    out.append(
        f"{len(checks) - n_fail}/{len(checks)} checks passed"
        + (f"; FAILED: {', '.join(c.name for c in checks if not c.passed)}" if n_fail else "")
        + f" ({time.perf_counter() - t_all:.0f} s)"
    )
    print("\n".join(out))
    return 1 if n_fail else 0


def _repeated_ids(path: str, tree: str) -> str:
    """A note when events of the file share (run, luminosityBlock, event), as e2e-run warns (its option
    ``duplicate_ids: error`` refuses them), else ""."""
    import numpy as np

    from dataformats.schema import open_root_file

    with open_root_file(path) as file:
        ids = file[tree].arrays(["run", "luminosityBlock", "event"], library="np")
    keys = np.stack([ids[k].astype(np.uint64) for k in ("run", "luminosityBlock", "event")], axis=1)
    repeated = len(keys) - len(np.unique(keys, axis=0)) if len(keys) else 0
    if not repeated:
        return ""
    return f"; WARNING: {repeated} event(s) repeat the (run, luminosityBlock, event) of an earlier one"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from dataformats.schema import validate_file
        from e2e.errors import ConfigError

        if not args.files and not args.physics:
            raise ConfigError("nothing to do: give FILE(s) to validate or --physics")
        from dataformats.schema import inspect_file
        from e2e.io.source import expand_files

        for f in expand_files(list(args.files), "FILE") if args.files else []:  # globs and repeats as e2e-run
            n = validate_file(f, tree=args.tree)
            casts = inspect_file(f, args.tree).casts
            read = (
                "; read with casts (every value checked to fit): "
                + ", ".join(f"{b} {a}->{t}" for b, (a, t) in casts.items())
                if casts
                else ""
            )
            print(f"OK {f}: {n} events (schema DESIGN §4.1){read}{_repeated_ids(f, args.tree)}")
        return _physics(args) if args.physics else 0

    return run_main(PROG, body, args.debug)


cli = console_script(main)


if __name__ == "__main__":
    cli()
