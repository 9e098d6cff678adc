"""YAML process configuration -> validated process description (DESIGN.md 3).

A process configuration has a ``process`` name, one ``source``, labelled ``modules`` and a list of
``outputs``, plus optional ``options``. Every block is validated against the parameters its module
type declares; errors name the file, the module label, the key, what is allowed and the closest match.
``describe`` gives the fully expanded configuration (every default filled in), as ``edmConfigDump``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from e2e.errors import ConfigError, short
from e2e.event import split_tag
from e2e.module import Module, OutputModule, build_module
from e2e.params import MAX_THREADS, build, param, to_plain, unknown_key_message
from e2e.source import Source

TOP_LEVEL_KEYS = ("process", "source", "modules", "outputs", "options")
LABEL_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # (matched whole: fullmatch, no trailing newline)
SOURCE_LABEL = "source"


@dataclass
class Options:
    """Process-wide options (the ``options`` block)."""

    progress: bool | None = param(None, "progress bar: true, false or null (only when stderr is a terminal)")
    threads: int = param(
        0,
        "threads of the whole job: numba's kernels and every tagger whose own `threads` is 0 (torch / ONNX "
        "Runtime); 0: all cores",
        minimum=0,
        maximum=MAX_THREADS,
    )
    duplicate_ids: str = param(
        "warn",
        "events with the same (run, luminosityBlock, event) in the run: 'warn' "
        "(counted in the summary; the output stays aligned entry by entry) "
        "or 'error'",
        choices=("warn", "error"),
    )
    executor: str = param(
        "iterative",
        "how units run: 'iterative' (this process), 'futures' (local process pool) or 'dask' (dask.distributed)",
        choices=("iterative", "futures", "dask"),
    )
    workers: int = param(
        0, "worker processes of futures / a dask LocalCluster (0: one per core)", minimum=0, maximum=MAX_THREADS
    )
    scheduler: str | None = param(None, "dask: address of a running scheduler (tcp://host:8786); null: LocalCluster")
    retries: int = param(2, "times a unit is re-run after its worker died", minimum=0)
    prefetch: bool = param(True, "iterative: read the next batch in a background thread while one is processed")
    skip_bad_files: bool = param(False, "skip (and report) units whose input cannot be read, instead of failing")


@dataclass
class ProcessDescription:
    """A validated process: the source, modules by label (YAML order) and outputs."""

    name: str
    source: Source
    modules: dict[str, Module]
    outputs: list[OutputModule]
    options: Options = field(default_factory=Options)
    where: str = "<config>"
    #: the configuration's own file, when it was read from one (an input of the run: never an output)
    config_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fully expanded configuration as plain data (for --dump-config and provenance)."""

        def block(m: Module) -> dict[str, Any]:
            return {"type": m.type_name, **to_plain(m.params)}

        return {
            "process": self.name,
            "source": block(self.source),
            "modules": {label: block(m) for label, m in self.modules.items()},
            "outputs": [block(o) for o in self.outputs],
            "options": to_plain(self.options),
        }


def _type_name(block: Any) -> Any:
    return block.get("type") if isinstance(block, Mapping) else None


def with_inputs(chosen: dict[str, Any], modules: dict[str, Any]) -> dict[str, Any]:
    """``chosen`` (label -> YAML block) plus, transitively, the blocks of ``modules`` whose labels the chosen blocks
    name in a string parameter (an input tag ``label`` or ``label:instance``): what a partial configuration must
    also run, e.g. the JetShapeProducer whose shapes a HitGraphProducer reads (``shapes: jetShapes``)."""
    out = dict(chosen)
    todo = list(chosen.values())
    while todo:
        for value in todo.pop().values():
            label = split_tag(value)[0] if isinstance(value, str) else None
            if label in modules and label not in out and isinstance(modules[label], dict):
                out[label] = modules[label]
                todo.append(modules[label])
    return out


#: the longest module label (it names branches, and every message about the module)
MAX_LABEL_CHARS = 64


def load_process(data: Any, where: str = "<config>", config_file: str | None = None) -> ProcessDescription:
    """Validate a parsed YAML process configuration and build its modules (not yet scheduled); ``config_file``:
    the file it was read from."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping with keys {', '.join(TOP_LEVEL_KEYS)}")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(unknown_key_message(str(key), list(TOP_LEVEL_KEYS), where))
    name = data.get("process", "e2e")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: process: expected a name (a string), got {short(name)}")

    src_block = data.get("source")
    if src_block is None:
        raise ConfigError(f"{where}: missing 'source' (e.g. source: {{type: RootSource, files: [data/x.root]}})")
    if isinstance(src_block, Mapping) and "type" not in src_block:
        src_block = {"type": "RootSource", **src_block}
    source = build_module(SOURCE_LABEL, src_block, f"{where}: source")
    if not isinstance(source, Source):
        raise ConfigError(f"{where}: source: '{_type_name(src_block)}' is not a source module (e.g. RootSource)")

    raw_modules = data.get("modules") or {}
    if not isinstance(raw_modules, Mapping):
        raise ConfigError(f"{where}: modules: expected a mapping of label -> module block")
    modules: dict[str, Module] = {}
    for label, block in raw_modules.items():
        if not isinstance(label, str) or not LABEL_RE.fullmatch(label) or len(label) > MAX_LABEL_CHARS:
            raise ConfigError(
                f"{where}: modules: label {short(label)} must start with a letter and contain only "
                f"letters, digits and '_', at most {MAX_LABEL_CHARS} (it names the product and output branches)"
            )
        if label == SOURCE_LABEL:
            raise ConfigError(f"{where}: modules: the label 'source' is reserved for the source")
        module = build_module(label, block, f"{where}: modules.{label}")
        if module.kind != "producer":
            raise ConfigError(
                f"{where}: modules.{label}: '{_type_name(block)}' is a {module.kind} module; "
                "sources go under 'source', outputs under 'outputs'"
            )
        modules[label] = module

    raw_outputs = data.get("outputs") or []
    if isinstance(raw_outputs, Mapping):
        raw_outputs = [raw_outputs]
    if not isinstance(raw_outputs, list) or not raw_outputs:
        raise ConfigError(
            f"{where}: outputs: expected a list of output blocks (e.g. - type: RootOutput); "
            "without an output nothing would run"
        )
    outputs: list[OutputModule] = []
    for i, block in enumerate(raw_outputs):
        if isinstance(block, Mapping) and "type" not in block:
            block = {"type": "RootOutput", **block}
        label = "output" if len(raw_outputs) == 1 else f"output{i}"
        module = build_module(label, block, f"{where}: outputs.{i}")
        if not isinstance(module, OutputModule):
            raise ConfigError(f"{where}: outputs.{i}: '{_type_name(block)}' is not an output module (e.g. RootOutput)")
        outputs.append(module)

    options = build(Options, data.get("options") or {}, f"{where}: options")
    if options.scheduler is not None and options.executor != "dask":
        raise ConfigError(
            f"{where}: options.scheduler (--scheduler) is the address of a dask scheduler, but the executor is "
            f"'{options.executor}': use executor dask (--executor dask), or no scheduler"
        )
    if options.workers and options.executor == "iterative":
        raise ConfigError(
            f"{where}: options.workers (--workers) is the number of worker processes of the futures and dask "
            f"executors, but the executor is 'iterative' (this process): use --executor futures or dask, or no workers"
        )
    for module in modules.values():
        module.job_threads = options.threads
    return ProcessDescription(name, source, modules, outputs, options, where, config_file)
