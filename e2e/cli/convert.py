"""e2e-convert: write the RHTree form (MLAnalyzer ``fevt/RHTree``, dense maps) of hits-tree files.

e2e-convert INPUT [INPUT ...] -o OUTPUT.root [--to rhtree] [-n N] [--tree Events] [--compression lz4]

For tests, demos and benchmarks of RHTreeSource on the project's own events (see e2e/io/rhtree_writer.py for
how each map is filled). The output is written atomically and never replaces an input.
"""

from __future__ import annotations

import argparse
import time

from e2e.cli.common import Parser, console_script, nonempty, run_main

PROG = "e2e-convert"


def parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="hits-tree ROOT file(s), read in this order")
    p.add_argument("-o", "--output", required=True, help="output ROOT file")
    p.add_argument("--to", choices=("rhtree",), default="rhtree", help="output format (default: rhtree)")
    p.add_argument("-n", "--max-events", type=int, default=-1, help="convert at most N events (default: all)")
    p.add_argument("--tree", default="Events", help="hits tree name in the inputs (default: Events)")
    p.add_argument("--step-size", type=int, default=20, help="events converted and written at a time (default 20)")
    p.add_argument(
        "--compression",
        choices=("lz4", "zlib", "zstd", "lzma"),
        default="zlib",
        help="output compression (default zlib level 1, as ROOT writes)",
    )
    p.add_argument("--level", type=int, default=1, help="compression level (default 1; 0..9, lz4 0..12, zstd 0..22)")
    p.add_argument(
        "--basket-events", type=int, default=1, help="entries per basket (default 1, as ROOT writes such large entries)"
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


#: the compression levels uproot writes, per algorithm (as ROOT: 0 none, higher smaller and slower)
LEVELS = {"zlib": 9, "lzma": 9, "lz4": 12, "zstd": 22}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from e2e.errors import ConfigError
        from e2e.io.rhtree_writer import write_rhtree
        from e2e.io.source import expand_files
        from e2e.paths import check_output_file

        if args.step_size < 1:
            raise ConfigError(f"--step-size {args.step_size}: expected a number of events >= 1")
        if args.basket_events < 1:
            raise ConfigError(f"--basket-events {args.basket_events}: expected a number of entries >= 1")
        top = LEVELS[args.compression]
        if not 0 <= args.level <= top:
            raise ConfigError(f"--level {args.level}: expected 0..{top} for --compression {args.compression}")
        if args.max_events < -1:
            raise ConfigError(f"-n {args.max_events}: expected a number of events >= 0 (or -1: all)")
        inputs = expand_files(list(args.inputs), "inputs")
        out = check_output_file(nonempty(args.output, "-o"), inputs)
        t0 = time.perf_counter()
        n = write_rhtree(
            inputs, out, tree=args.tree, max_events=args.max_events, step_size=args.step_size,
            compression=args.compression, compression_level=args.level, basket_events=args.basket_events,
        )  # fmt: skip
        size = out.stat().st_size / 1e6
        print(f"{PROG}: wrote {n} events to {out} (fevt/RHTree, {size:.1f} MB) in {time.perf_counter() - t0:.1f} s")
        return 0

    return run_main(PROG, body, args.debug)


cli = console_script(main)


if __name__ == "__main__":
    cli()
