"""Shared console-script plumbing: YAML loading, KEY=VALUE overrides, one-line user errors."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from e2e.errors import ConfigError, E2EError


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file with ``yaml.safe_load``; one-line errors for missing or malformed files."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: configuration file not found")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}:{where} invalid YAML: {getattr(err, 'problem', None) or err}") from err


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=VALUE`` (VALUE parsed as YAML) to nested mapping ``data``."""
    if "=" not in assignment:
        raise ConfigError(f"override '{assignment}': expected KEY=VALUE, e.g. pileup.mu=0")
    key, _, raw = assignment.partition("=")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override '{assignment}': value is not valid YAML") from err
    node: Any = data
    parts = key.strip().split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override '{assignment}': '{part}' is not an index of a list of {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"override '{assignment}': '{parts[i - 1]}' is not a mapping or list")


def load_config_mapping(path: str | None, overrides: list[str], what: str) -> dict[str, Any]:
    """The YAML mapping of a configuration file with ``-s KEY=VALUE`` overrides applied (one-line errors)."""
    if not path:
        raise ConfigError(f"missing CONFIG ({what})")
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of parameters at the top level")
    for kv in overrides:
        apply_override(data, kv)
    return data


def add_common_arguments(p: argparse.ArgumentParser, set_example: str) -> None:
    """The options every configuration-driven console script shares: -s, --dump-config, --no-progress, --debug."""
    p.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a parameter (VALUE is YAML), e.g. {set_example}")
    p.add_argument("--dump-config", action="store_true", help="print the fully expanded configuration and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def run_main(prog: str, body: Callable[[], int], debug: bool) -> int:
    """Run ``body``; user errors become one line on stderr (traceback only with --debug)."""
    from dataformats.schema import SchemaError

    try:
        return body()
    except (E2EError, SchemaError) as err:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
