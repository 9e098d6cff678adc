"""e2e-generate CONFIG: Pythia 8 + fast detector simulation -> ROOT hits tree (DESIGN §4.1)."""

from __future__ import annotations

import argparse

import yaml

from e2e.cli.common import Parser, add_common_arguments, console_script, load_config_mapping, nonempty, run_main
from e2e.errors import ConfigError


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="e2e-generate", description=__doc__)
    p.add_argument("config", nargs="?", help="YAML configuration (process_configs/generate_*.yaml)")
    p.add_argument("-o", "--output", help="output ROOT file (overrides `output`)")
    p.add_argument("-n", "--events", type=int, help="number of events (overrides `events`; single-process configs)")
    p.add_argument("-j", "--jobs", type=int, help="parallel jobs (overrides `jobs`)")
    add_common_arguments(p, "-s pileup.mu=0 -s seed=7", "simulation.generate:GenerateConfig")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from simulation.generate import config_to_dict, generate, load_config, summary_lines

        data = load_config_mapping(
            args.config, args.set, "a YAML file such as process_configs/generate_sample.yaml", "generation"
        )
        if nonempty(args.output, "-o") is not None:
            data["output"] = args.output
        if args.events is not None:
            if data.get("samples"):
                raise ConfigError(
                    f"-n {args.events}: {args.config} is a mixture of samples, each with its own events; -n sets the "
                    "events of a single-process configuration (change each sample's events with -s samples=...)"
                )
            data["events"] = args.events
        if args.jobs is not None:
            data["jobs"] = args.jobs
        cfg = load_config(data, where=str(args.config))
        if args.dump_config:
            print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
            return 0
        out, stats, wall = generate(cfg, progress_bar=False if args.no_progress else None, inputs=[str(args.config)])
        print("\n".join(summary_lines(cfg, out, stats, wall)))
        return 0

    return run_main("e2e-generate", body, args.debug)


cli = console_script(main)


if __name__ == "__main__":
    cli()
