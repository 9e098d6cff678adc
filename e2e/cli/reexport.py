"""e2e-reexport: export a trained artefact's model.onnx again from its unchanged weights (training.reexport).

e2e-reexport MODEL --config JOB --label TAGGER [--max-events N]

MODEL is zoo:NAME or an artefact directory; JOB a process configuration whose tagger module TAGGER runs MODEL on
its input files: the new ONNX model is checked against torch on those jets with e2e-train's parity rule, and
model.onnx and model.yaml (its ``onnx_export`` block) are written only if it passes.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from e2e.cli.common import Parser, console_script, load_config_mapping, run_main

PROG = "e2e-reexport"


def parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="the artefact: zoo:NAME or its directory")
    p.add_argument("--config", required=True, help="a process configuration that runs the model on its inputs")
    p.add_argument("--label", required=True, help="the configuration's tagger module that runs the model")
    p.add_argument("--max-events", type=int, default=150, help="events of the configuration's input (default 150)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = shlex.join([PROG, *(sys.argv[1:] if argv is None else argv)])

    def body() -> int:
        from e2e.errors import ConfigError
        from training.reexport import reexport

        if args.max_events < 1:
            raise ConfigError(f"--max-events must be >= 1, got {args.max_events}")
        data = load_config_mapping(args.config, [], "process configuration", "process")
        result = reexport(args.model, args.config, data, args.label, args.max_events, command)
        print(
            f"{PROG}: {args.model}: model.onnx re-exported; torch against ONNX Runtime on {result['jets_compared']} "
            f"jets: at most {result['max_abs_logit_difference']:.2e}, {result['jets_above_1e-4']} above 1e-4"
        )
        return 0

    return run_main(PROG, body, args.debug)


cli = console_script(main)


if __name__ == "__main__":
    cli()
