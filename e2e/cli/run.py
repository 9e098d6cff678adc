"""e2e-run CONFIG: run a process configuration over ROOT files of hits and write the products to ROOT."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from e2e.cli.common import Parser, add_common_arguments, console_script, load_config_mapping, nonempty, run_main
from e2e.errors import ConfigError, short


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="e2e-run",
        description=__doc__,
        epilog="examples:  e2e-run process_configs/jet_frames.yaml -n 100\n"
        "           e2e-run process_configs/jet_frames.yaml -i 'data/*.root' -o out.root "
        "-s modules.jetGraphs.k=8\n"
        "           e2e-run --help-module JetGraphProducer",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", help="process configuration (YAML), e.g. process_configs/jet_frames.yaml")
    p.add_argument("-i", "--input", nargs="+", metavar="FILE", help="input files or globs (replace source.files)")
    p.add_argument("-o", "--output", metavar="OUT", help="output file (replaces the file of the first output)")
    p.add_argument("-n", "--max-events", type=int, metavar="N", help="process at most N events")
    p.add_argument("--list-modules", action="store_true", help="list the known module types and exit")
    p.add_argument("--help-module", metavar="TYPE", help="list the parameters of a module type and exit")
    p.add_argument("--executor", choices=("iterative", "futures", "dask"), help="replaces options.executor")
    p.add_argument("--workers", type=int, metavar="N", help="worker processes (replaces options.workers)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask scheduler address (replaces options.scheduler)")
    p.add_argument("--resume", action="store_true", help="reuse the finished units of an interrupted run")
    p.add_argument("--skip-bad-files", action="store_true", help="skip and report units that cannot be read")
    add_common_arguments(p, "-s modules.jetGraphs.k=8")
    return p


def early_executor(data: dict, where: str) -> Any:
    """For ``options.executor`` futures or dask: the executor, its workers started now and importing what the
    configuration's modules need while this process loads the configuration and plans the units (about a
    second of each worker's start-up overlapped); None otherwise, or when the options are invalid (the full
    load then reports them)."""
    from e2e.config import Options
    from e2e.params import build

    try:
        opts = build(Options, data.get("options") or {}, f"{where}: options")
    except ConfigError:
        return None
    if opts.executor not in ("futures", "dask"):
        return None
    from e2e.executors import preload_modules

    executor = executor_for(opts)
    executor.start(preload_modules(data))
    return executor


def executor_for(opts: Any) -> Any:
    """The executor that ``options`` (e2e.config.Options) name, with one worker per core unless set."""
    from e2e.executors import make_executor, usable_cores

    return make_executor(opts.executor, opts.workers or usable_cores(), opts.retries, opts.scheduler)


def _block(data: dict[str, Any], key: str, config: str) -> dict[str, Any]:
    """The configuration's ``key`` block, to set a command-line value in: made when absent or empty (a block whose
    lines are all commented out reads as null), else it must be a mapping."""
    block = data.get(key)
    if block is None:
        block = data[key] = {}
    if not isinstance(block, dict):
        raise ConfigError(f"{config}: {key}: expected a mapping, got {short(block)}")
    return block


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from e2e.config import load_process
        from e2e.module import known_types, resolve_type
        from e2e.params import describe

        if args.list_modules:
            print("\n".join(known_types()))
            return 0
        if args.help_module:
            cls = resolve_type(args.help_module, "--help-module")
            print(f"{args.help_module}: {(cls.__doc__ or '').strip().splitlines()[0] if cls.__doc__ else ''}")
            print("\n".join("  " + line for line in describe(cls.Params)))
            return 0
        data = load_config_mapping(
            args.config, args.set, "a process configuration such as process_configs/jet_frames.yaml", "process"
        )
        for f in args.input or ():
            nonempty(f, "-i")
        if args.input:
            _block(data, "source", args.config)["files"] = list(args.input)
        if args.max_events is not None:
            if args.max_events < 0:
                raise ConfigError(f"-n {args.max_events}: expected a number of events >= 0")
            _block(data, "source", args.config)["max_events"] = args.max_events
        if nonempty(args.output, "-o") is not None:
            outputs = data.get("outputs")
            if not outputs:
                raise ConfigError(f"-o {args.output}: the configuration has no outputs")
            first = outputs[0] if isinstance(outputs, list) else outputs
            if not isinstance(first, dict):
                raise ConfigError(f"{args.config}: outputs: expected a list of output blocks")
            first["file"] = args.output
        options = _block(data, "options", args.config)
        for name in ("executor", "workers", "scheduler"):
            if getattr(args, name) is not None:
                options[name] = getattr(args, name)
        if args.skip_bad_files:
            options["skip_bad_files"] = True
        executor = None if args.dump_config else early_executor(data, str(args.config))
        try:
            desc = load_process(data, where=str(args.config), config_file=str(args.config))
            if args.dump_config:
                from e2e.process import build_schedule

                build_schedule(desc)  # (a job that cannot run, a cycle or a product no module makes, is not printed)
                print(yaml.safe_dump(desc.to_dict(), sort_keys=False), end="")
                return 0
            from e2e.process import Process

            process = Process(desc)
            progress = False if args.no_progress else None
            opts = desc.options
            if opts.executor == "iterative" and not args.resume and not opts.skip_bad_files:
                summary = process.run(progress=progress)
            else:
                from e2e.process import run_units

                executor = executor or executor_for(opts)
                summary = run_units(process, executor, args.resume, opts.skip_bad_files, progress)
        finally:
            if executor is not None:
                executor.close()
        print("\n".join(summary.lines()))
        return 0

    return run_main("e2e-run", body, args.debug)


cli = console_script(main)


if __name__ == "__main__":
    cli()
