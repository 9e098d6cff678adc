"""e2e-train CONFIG: build the dataset with the inference producers, train, export the model artefact."""

from __future__ import annotations

import argparse
import shlex
import sys

import yaml

from e2e.cli.common import Parser, add_common_arguments, console_script, load_config_mapping, nonempty, run_main


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="e2e-train", description=__doc__)
    p.add_argument("config", nargs="?", help="training configuration, e.g. process_configs/train_tau_gnn.yaml")
    p.add_argument("-o", "--output", help="artefact directory (replaces `output`)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted training from its checkpoint (<output>.checkpoint, written after every epoch)",
    )
    add_common_arguments(p, "-s optimizer.budget_minutes=5 -s max_jets=20000", "training.train:TrainConfig")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from e2e.params import to_plain
        from training.train import DEFAULT_HELDOUT, load_config, train

        data = load_config_mapping(
            args.config, args.set, "a training configuration such as process_configs/train_tau_gnn.yaml", "training"
        )
        if nonempty(args.output, "-o") is not None:
            data["output"] = args.output
        cfg = load_config(data, str(args.config))
        if "heldout" not in data and not cfg.heldout:
            print(
                f"e2e-train: note: no held-out file (the default {DEFAULT_HELDOUT} is not found here or in the "
                "repository): give heldout: [files] for held-out metrics",
                file=sys.stderr,
            )
        text = yaml.safe_dump(to_plain(cfg), sort_keys=False)
        if args.dump_config:
            print(text, end="")
            return 0
        command = "e2e-train " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        m = train(
            cfg,
            command,
            text,
            progress=not args.no_progress and sys.stderr.isatty(),
            resume=args.resume,
            config_file=str(args.config) if args.config else None,
        )
        if "auc" in m:
            sig, bkg = m["signal"], " + ".join(m["background"])
            jets = f"{m['n_signal']} {sig} / {m['n_background']} {bkg} test jets"
            if m["n_signal"] and m["n_background"]:
                print(
                    f"e2e-train: {cfg.name}: test AUC {m['auc']:.4f} +- {m['auc_error']:.4f}, misID at 60 % {sig} "
                    f"efficiency {m['misid_at_0.6']:.4f}, rejection at 0.6 {m['rejection_at_0.6']:.1f} ({jets}); "
                    f"artefact {cfg.output}"
                )
            else:  # (recorded as NaN)
                print(
                    f"e2e-train: {cfg.name}: no test AUC: {jets}, the test split needs both (more events, or another "
                    f"split); artefact {cfg.output}"
                )
        for name, h in m.get("heads", {}).items():
            if "accuracy" in h:
                print(
                    f"e2e-train: {cfg.name}: head {name}: {100 * h['accuracy']:.1f} % of {h['jets']} test jets "
                    "in the right class"
                )
            else:
                a, c = h["all"], h.get("calibration", {})
                curve = ", ".join(f"{r:.3f} at {p:g}" for p, r in c.get("pt_response", []))
                print(f"e2e-train: {cfg.name}: head {name}: response {a['response']:.3f}, resolution "
                      f"{a['resolution']:.3f} ({a['jets']} test jets); calibrated on {c.get('jets', 0)} validation "
                      f"jets: x{1 / c.get('response_before', 1.0):.3f}, then the pT response "
                      f"({curve or 'no pT bin with enough jets'}) divided out")  # fmt: skip
        return 0

    return run_main("e2e-train", body, args.debug)


cli = console_script(main)


if __name__ == "__main__":
    cli()
