"""Shared console-script plumbing: YAML loading, KEY=VALUE overrides, one-line user errors."""

from __future__ import annotations

import argparse
import atexit
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from e2e import interrupts
from e2e.errors import ConfigError, E2EError, is_user_oserror, short
from e2e.interrupts import Terminated
from e2e.paths import remove_live_temporaries
from e2e.yamlio import load_yaml_file, load_yaml_text


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=VALUE`` (VALUE parsed as YAML) to nested mapping ``data``."""
    shown = short(assignment)  # quoted, at most MESSAGE_VALUE_CHARS
    if "=" not in assignment:
        raise ConfigError(f"override {shown}: expected KEY=VALUE, e.g. pileup.mu=0")
    key, _, raw = assignment.partition("=")
    value = load_yaml_text(raw, f"override {shown}") if raw != "" else ""
    node: Any = data
    parts = key.strip().split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not (part.isascii() and part.isdigit()) or int(part) >= len(node):
                raise ConfigError(f"override {shown}: {short(part)} is not an index of a list of {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:  # (absent, or a block whose lines are all commented out: empty)
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError(f"override {shown}: {short(parts[i - 1])} is not a mapping or list")


#: the kinds of configuration: the top-level keys only that kind has, and the command that runs it
CONFIG_KINDS: dict[str, tuple[frozenset[str], str]] = {
    "process": (frozenset({"source", "modules", "outputs"}), "e2e-run"),
    "training": (frozenset({"model", "optimizer", "product", "split", "heads", "dataset", "dataset_dir"}), "e2e-train"),
    "generation": (frozenset({"samples", "pileup", "pt_hat", "events", "detector", "pythia_settings"}), "e2e-generate"),
}


def check_config_kind(data: dict[str, Any], path: str, kind: str) -> None:
    """One-line ConfigError when ``data`` is another kind of configuration (:data:`CONFIG_KINDS`) than ``kind``:
    none of this kind's own top-level keys and some of another's, naming the command that runs it."""
    keys = set(data)
    if keys & CONFIG_KINDS[kind][0]:
        return
    for other, (own, command) in CONFIG_KINDS.items():
        if other != kind and keys & own:
            raise ConfigError(
                f"{path}: a {other} configuration (top-level keys {', '.join(sorted(keys & own))}), not a {kind} "
                f"configuration: run it with {command}"
            )


def load_config_mapping(path: str | None, overrides: list[str], what: str, kind: str | None = None) -> dict[str, Any]:
    """The YAML mapping of a configuration file with ``-s KEY=VALUE`` overrides applied (one-line errors); ``kind``
    (a key of :data:`CONFIG_KINDS`): refused in one line when the file is another kind of configuration."""
    if not path:
        raise ConfigError(f"missing CONFIG ({what})")
    data = load_yaml_file(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of parameters at the top level")
    if kind is not None:
        check_config_kind(data, path, kind)
    for kv in overrides:
        apply_override(data, kv)
    return data


class _HelpConfig(argparse.Action):
    """``--help-config``: print every parameter of a configuration class (``package.module:Class``) and exit."""

    def __init__(self, option_strings: list[str], dest: str, config_class: str = "", **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)
        self.config_class = config_class

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from e2e.module import import_object
        from e2e.params import describe

        try:
            print("\n".join(describe(import_object(self.config_class, "--help-config"))), flush=True)
        except BrokenPipeError:  # e2e-train --help-config | head
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        parser.exit()


def output_tree(f: Any, path: str, provenance: Any = None) -> str:
    """The tree of an e2e-run output open in uproot: the one its ``e2e_products`` provenance names (RootOutput's
    ``tree``; ``provenance``: that record already read, else it is read here), else ``Events``, else the file's only
    TTree; one line naming the trees found otherwise."""
    import json

    from dataformats.schema import reading

    with reading(path, "the file directory"):
        if provenance is None:
            text = str(f["e2e_products"]) if "e2e_products" in f else ""
            try:
                provenance = json.loads(text) if text else {}
            except ValueError:  # not JSON: the callers that read it say so
                provenance = {}
        named = provenance.get("tree") if isinstance(provenance, dict) else None
        if isinstance(named, str) and named in f:
            return named
        if "Events" in f and not isinstance(named, str):
            return "Events"
        trees = sorted({k.split(";")[0] for k, c in f.classnames(recursive=True).items() if c == "TTree"})
    if len(trees) == 1 and not isinstance(named, str):
        return trees[0]
    wanted = named if isinstance(named, str) else "Events"
    found = ", ".join(trees) or "none"
    raise E2EError(f"{path}: no tree {wanted} (is it an e2e-run output?); trees in the file: {found}")


def add_common_arguments(p: argparse.ArgumentParser, set_example: str, config_class: str | None = None) -> None:
    """The options every configuration-driven console script shares: -s, --dump-config, --no-progress, --debug,
    and with ``config_class`` (``package.module:Class``) --help-config."""
    if config_class is not None:
        p.add_argument(
            "--help-config",
            action=_HelpConfig,
            config_class=config_class,
            help="list every parameter with its default and help, and exit",
        )
    p.add_argument(
        "-s",
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a parameter (VALUE is YAML), e.g. {set_example}",
    )
    p.add_argument("--dump-config", action="store_true", help="print the fully expanded configuration and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


class Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (``prog: error: ... (see prog --help)``), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def nonempty(value: str | None, option: str) -> str | None:
    """``value`` of a path option, refusing an empty string (an unset shell variable) instead of ignoring it."""
    if value is not None and not value.strip():
        raise ConfigError(f"{option} '': empty path (an unset shell variable?); give a file name")
    return value


def run_main(prog: str, body: Callable[[], int], debug: bool) -> int:
    """Run ``body`` under the shared top-level handler of every console script.

    - user errors (E2EError, SchemaError) and OSErrors on a path (missing, unreadable, read-only, disk full)
      are one line on stderr, exit code 2;
    - SIGINT and SIGTERM stop the run cleanly (partial outputs removed), exit code 130 / 143, also when their
      exception was swallowed by a ``__del__`` (:mod:`e2e.interrupts`: no output is committed after the signal);
    - anything else is a bug in e2e: the traceback and a request to report it, exit code 70.
    ``--debug`` prints the traceback of user errors too.
    """
    interrupts.clear()
    previous = {}
    try:
        previous = {
            signal.SIGTERM: signal.signal(signal.SIGTERM, interrupts.on_sigterm),
            signal.SIGINT: signal.signal(signal.SIGINT, interrupts.on_sigint),
        }
    except ValueError:  # not the main thread: leave signals alone
        previous = {}
    unraisable = sys.unraisablehook
    sys.unraisablehook = interrupts.quiet_unraisable(unraisable)
    try:  # (Ctrl-C during these imports, ~0.5 s of awkward's and numba's, is the clean exit below too)
        from dataformats.schema import SchemaError
        from e2e.numba_setup import defer_blas_probe, skip_numba_extensions

        skip_numba_extensions()
        defer_blas_probe()
    except (KeyboardInterrupt, Terminated) as err:
        _restore(previous, unraisable)
        print(f"{prog}: {'terminated (SIGTERM)' if isinstance(err, Terminated) else 'interrupted'}", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    except BaseException:  # (an import that fails: the caller's handlers back, as after the body)
        _restore(previous, unraisable)
        raise
    try:
        rc = body()
        interrupts.raise_if_requested()  # its exception was swallowed (raised inside a __del__)
        return rc
    except (E2EError, SchemaError) as err:
        return _user_error(prog, str(err), debug)
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:
        if not is_user_oserror(err):
            return _internal_error(prog)
        where = f"{err.filename}: " if err.filename is not None else ""
        also = f" and {err.filename2}" if getattr(err, "filename2", None) else ""
        return _user_error(prog, f"{where}{err.strerror or err}{also}", debug)
    except MemoryError:
        hint = " (try a smaller source.step_size: fewer events per batch)" if prog == "e2e-run" else ""
        return _user_error(prog, f"out of memory{hint}", debug)
    except Terminated:
        remove_live_temporaries()
        print(f"{prog}: terminated (SIGTERM); partial outputs were removed", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        remove_live_temporaries()
        print(f"{prog}: interrupted; partial outputs were removed", file=sys.stderr)
        return 130
    except Exception:
        return _internal_error(prog)
    except SystemExit as err:  # e2e never exits inside a body: code of the user's (a module, a network) called it
        return _internal_error(prog, f"it called sys.exit({err.code!r}) during the run")
    finally:
        _restore(previous, unraisable)


def _restore(previous: dict[Any, Any], unraisable: Any) -> None:
    """After a console script's body: its signal handlers and unraisable hook put back, the interrupt state cleared
    (handled: a later call in this process, a notebook or a test, starts afresh)."""
    interrupts.clear()
    sys.unraisablehook = unraisable
    for signum, handler in previous.items():
        if handler is not None:
            signal.signal(signum, handler)


#: Longest user-error line printed (a safety net: messages quote values through e2e.errors.short).
MAX_MESSAGE_CHARS = 1000


def _user_error(prog: str, message: str, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    line = " ".join(message[: 4 * MAX_MESSAGE_CHARS].split())
    if len(line) > MAX_MESSAGE_CHARS:
        line = line[: MAX_MESSAGE_CHARS - 24] + " ... (message shortened)"
    print(f"{prog}: error: {line}", file=sys.stderr)
    return 2


def _internal_error(prog: str, what: str = "") -> int:
    traceback.print_exc()
    err = sys.exc_info()[1]
    culprit = _user_code(sys.exc_info()[2]) or _user_code_in_worker(err)
    if culprit:
        what = f"{what}; " if what else ""
        line = f"{prog}: error in code of your own ({culprit}), not in e2e: {what}see the traceback above"
        print(line, file=sys.stderr)
    else:
        print(
            f"{prog}: internal error (a bug in e2e, not in your input): please report it with the command line "
            "and the traceback above",
            file=sys.stderr,
        )
    return 70


#: e2e's own packages (a failure whose innermost own-code frame lies elsewhere is in the user's code)
_E2E_PACKAGES = ("e2e", "dataformats", "frameproducers", "taggers", "training", "simulation")


def _user_code(tb: Any) -> str:
    """``file:line`` of the innermost frame of ``tb`` outside Python's and the installed libraries' directories,
    when it is not in e2e's packages (a module, network or tagger class of the user's, named by class_path), else
    ""."""
    return _innermost_user_frame((frame.f_code.co_filename, line) for frame, line in traceback.walk_tb(tb))


#: a frame of a traceback printed as text: ``  File "PATH", line N, in NAME``
_FRAME_LINE = re.compile(r'^  File "(.+)", line (\d+), in ', re.MULTILINE)


def _user_code_in_worker(err: BaseException | None) -> str:
    """:func:`_user_code` of the traceback of a worker process that ``err`` carries as text in its cause chain (a
    process pool's ``_RemoteTraceback``, e2e's own worker traceback), else ""."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = getattr(err, "tb", None) or getattr(err, "text", None)
        if isinstance(text, str):
            found = _innermost_user_frame((m[1], int(m[2])) for m in _FRAME_LINE.finditer(text))
            if found:
                return found
        err = err.__cause__ or err.__context__
    return ""


def _innermost_user_frame(frames: Iterable[tuple[str, int]]) -> str:
    """``file:line`` of the last of ``frames`` (innermost last) that is a file outside Python's and the installed
    libraries' directories, when that file is not in e2e's packages, else ""."""
    import sysconfig

    libraries = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))  # the directory holding the e2e package
    ours = tuple(os.path.join(os.path.dirname(root), p) + os.sep for p in _E2E_PACKAGES)
    last = ""
    for name, line in frames:
        path = os.path.realpath(name)
        if not os.path.isfile(path) or any(path.startswith(lib + os.sep) for lib in libraries):
            continue  # ('<string>', or a compiled library's source name, numpy/random/bit_generator.pyx: no file)
        last = "" if path.startswith(ours) else f"{name}:{line}"
    return last


def exit_promptly(rc: int) -> NoReturn:
    """End a console script with exit code ``rc``, skipping the interpreter's teardown when nothing needs it.

    Freeing every module at exit takes 0.2-0.5 s after a run that used torch or ONNX Runtime (their libraries'
    destructors and thread pools), after the outputs are written and closed. When no other non-daemon thread is
    alive, the ``atexit`` handlers run (temporary directories, logging, coverage), the standard streams are flushed
    and the process ends with ``os._exit(rc)``; otherwise, or with ``E2E_EXIT_TEARDOWN=1``, a normal exit.
    """
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    from e2e.numba_setup import env_flag

    if others or run_exit_handlers is None or env_flag("E2E_EXIT_TEARDOWN"):
        sys.exit(rc)
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or a broken pipe: nothing more can be written
            pass
    os._exit(rc)


def console_script(main: Callable[[], int]) -> Callable[[], NoReturn]:
    """The console-script entry point of a command's ``main``: run it, then :func:`exit_promptly` with its code."""

    def cli() -> NoReturn:
        exit_promptly(main())

    cli.__doc__ = f"{main.__module__}.main, then a prompt exit (e2e.cli.common.exit_promptly)."
    return cli
