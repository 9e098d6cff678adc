"""Module base classes and the module-type registry (DESIGN.md 3).

A module type is a class with a nested ``Params`` dataclass whose fields are declared once with
:func:`e2e.params.param` (type, default, one-line help) and :func:`e2e.params.input_tag` (a product to
consume). The YAML key of a module is its *label* and the name of its product.

Types are found, in this order, by built-in name (``JetGraphProducer``), by entry point of the group
``e2e.modules`` (so other packages can ship modules), or by import path (``mypackage.taggers:MyTagger``).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
from collections.abc import Mapping
from functools import cache
from importlib.metadata import entry_points
from typing import Any, ClassVar, NamedTuple

from dataformats.products import JetProduct
from e2e.errors import ConfigError, E2EError, short
from e2e.event import EventBatch, join_tag

ENTRY_POINT_GROUP = "e2e.modules"

#: Built-in module types: name -> "module:Class" (imported on first use).
BUILTIN_MODULES: dict[str, str] = {
    "RootSource": "e2e.io.source:RootSource",
    "RHTreeSource": "e2e.io.rhtree:RHTreeSource",
    "ArraySource": "e2e.io.memory:ArraySource",
    "RootOutput": "e2e.io.output:RootOutput",
    "JetFrameProducer": "frameproducers.images:JetFrameProducer",
    "JetGraphProducer": "frameproducers.graphs:JetGraphProducer",
    "HitGraphProducer": "frameproducers.hitgraphs:HitGraphProducer",
    "JetShapeProducer": "frameproducers.shapes:JetShapeProducer",
    "GNNTagger": "taggers.modules:GNNTagger",
    "CNNTagger": "taggers.modules:CNNTagger",
    "ShapeTagger": "taggers.modules:ShapeTagger",
}


class Module:
    """Base of every module: a label, validated parameters and declared inputs.

    Subclasses define ``Params`` (a dataclass) and override :meth:`consumes` when their inputs depend
    on parameter values (the default consumes every non-empty ``input_tag`` parameter).
    """

    Params: ClassVar[type]
    #: 'producer' modules put products; 'output' modules write them; 'source' reads events.
    kind: ClassVar[str] = "producer"

    def __init__(self, label: str, params: Any) -> None:
        self.label = label
        self.params = params
        self.counters: dict[str, int] = {}
        #: the type as the configuration gave it (a built-in name or package.module:Class), for to_dict()
        self.type_name = type(self).__name__
        #: the job's ``options.threads`` (0: all cores): the thread count of a module that has no setting of its own
        self.job_threads = 0

    # ----------------------------------------------------------------------------- declarations
    def files_read(self) -> list[str]:
        """Local files this module reads besides the source's inputs (e.g. a tagger's model artefact): inputs of
        the run, which no output may overwrite."""
        return []

    def consumes(self) -> dict[str, type | None]:
        """Product tag -> expected product type (None: any), from the ``input_tag`` parameters."""
        out: dict[str, type | None] = {}
        for f in dataclasses.fields(self.params):
            if f.metadata.get("input_tag"):
                tag = getattr(self.params, f.name)
                if tag:
                    out[tag] = f.metadata.get("product")
        return out

    def fields_needed(self) -> dict[str, tuple[str, ...]]:
        """For consumed source collections: the fields actually read (tag -> fields); absent = all fields."""
        return {}

    def produces(self) -> dict[str, type]:
        """Product instance ('' = the label itself) -> product type."""
        return {}

    # ----------------------------------------------------------------------------- lifecycle
    def begin(self) -> None:
        """Called once per worker before the first batch (load models, allocate buffers)."""

    def produce(self, batch: EventBatch) -> None:
        """Read products from ``batch`` and put this module's products on it."""
        raise NotImplementedError

    def end(self) -> None:
        """Called once after the last batch."""

    def count(self, name: str, n: int) -> None:
        """Add ``n`` to a named counter reported in the run summary (e.g. empty graphs)."""
        self.counters[name] = self.counters.get(name, 0) + int(n)

    def describe(self) -> str:
        """A short one-line description for the run summary (device, backend, ...)."""
        return ""


class Producer(Module):
    """A module that consumes products and puts new ones on the batch."""

    kind = "producer"


def run_producer(module: Module, batch: EventBatch) -> None:
    """``module.produce(batch)``, then each product its ``produces()`` declares checked on the batch: put, of the
    declared type, and for jet products with bookkeeping and arrays that fit the batch
    (:meth:`~dataformats.products.JetProduct.problem`, shapes only: microseconds). A module of your own that puts
    something else is named in one line, not found later by the writer or the next module."""
    module.produce(batch)
    if module.kind != "producer":
        return
    for instance, declared in module.produces().items():
        tag = join_tag(module.label, instance)
        if tag not in batch:
            raise E2EError(
                f"modules.{module.label} ({module.type_name}) did not put '{tag}', which produces() declares"
            )
        product = batch.get(tag)
        found = "" if isinstance(product, declared) else f"a {type(product).__name__}, not a {declared.__name__}"
        if not found and isinstance(product, JetProduct):
            found = product.problem(batch.n_events)
        if found:
            raise E2EError(f"modules.{module.label} ({module.type_name}) put '{tag}': {found}")


class UnitPart(NamedTuple):
    """One work unit's part of an output (e2e.executors): the input file it came from, the part's path, the digest
    of the event ids the unit read (``e2e.eventids.ids_digest``) and the unit, for messages."""

    input: str
    path: str
    ids_digest: str
    unit: str


class OutputModule(Module):
    """A module that writes products (or event ids) of every batch somewhere: the output contract.

    :class:`e2e.process.Process` calls, in this order: ``select`` (at schedule time), ``output_paths``
    (checked before any input is read), ``set_provenance``, ``begin``, ``prepare`` (on the warm-up batch),
    ``write`` for every batch in input order, ``end``, then ``close`` after checking ``entries`` and, once every
    output of the run has closed, ``commit``; or ``abort`` on any error or interrupt (also after ``close``, before
    ``commit``). So a run that fails replaces none of its outputs, whatever their number and files.
    """

    kind = "output"
    #: entries written so far (one per event); the process checks it equals the events read
    entries: int = 0

    def select(self, available: Mapping[str, type]) -> None:
        """Choose what to write among the products modules can make (tag -> product type), before scheduling;
        ``consumes`` then returns what was chosen."""

    def set_inputs(self, inputs: list[str]) -> None:
        """The input files of the run (before ``output_paths``), for outputs named after their inputs (an output per
        input writes one for each, empty for an input that gave no events)."""

    def output_paths(self) -> list[str]:
        """The files this output writes (checked before anything is read: not an input, writable, ...)."""
        return []

    def set_provenance(self, info: Mapping[str, Any]) -> None:
        """The process configuration and input files, to record with the output."""

    def prepare(self, batch: EventBatch) -> None:
        """Build (not write) what ``batch`` would write, at warm-up: compile or load kernels before the loop."""

    def write(self, batch: EventBatch) -> None:
        """Write one batch (batches arrive in input order)."""
        raise NotImplementedError

    def produce(self, batch: EventBatch) -> None:  # outputs are written, not produced
        self.write(batch)

    def close(self) -> str:
        """Finish the output, under temporary names where it replaces files; return a one-line description."""
        return ""

    def commit(self) -> None:
        """Move what ``close`` finished into place (atomic renames; called once every output of the run closed)."""

    def abort(self) -> None:
        """Discard a partial output, or one closed but not committed, after an error."""

    def for_part(self, path: str) -> OutputModule:
        """A copy of this output that writes one work unit's part to ``path`` (parallel executors, e2e.executors);
        it gets ``begin``, ``write`` of the unit's batch, ``end``, ``close`` and ``commit``."""
        raise E2EError(f"{type(self).__name__} cannot write parts: run it with the iterative executor")

    def part_is_complete(self, path: str, entries: int) -> bool:
        """Whether ``path``, a part this output wrote for a unit of ``entries`` events, can be reused by
        ``--resume`` (readable, whole); a part that is not is run again."""
        return os.path.isfile(path)

    def assemble(self, parts: list[UnitPart]) -> str:
        """Write the final output from the parts of every unit in plan order, checking that each part holds the event
        ids its unit read, and ``close`` it (``commit`` follows once every output is assembled); return a one-line
        description as ``close`` does."""
        raise E2EError(f"{type(self).__name__} cannot assemble parts: run it with the iterative executor")


@cache
def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_types() -> list[str]:
    return sorted(set(BUILTIN_MODULES) | set(_entry_points()))


def import_object(path: str, where: str) -> Any:
    """The object named by an import path ``package.module:Name``; one-line ConfigError naming ``where``."""
    mod_name, _, attr = path.partition(":")
    if not all(part.isidentifier() for part in mod_name.split(".")) or not attr.isidentifier():
        raise ConfigError(f"{where}: type {short(path)} is not an import path package.module:Class")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as err:
        raise ConfigError(f"{where}: cannot import module '{mod_name}' for type '{path}' ({err})") from err
    except (Exception, SystemExit) as err:  # the user's module failed (or called sys.exit) while importing: one line
        raise ConfigError(
            f"{where}: importing module '{mod_name}' for type '{path}' failed ({type(err).__name__}: {short(str(err))})"
        ) from err
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise ConfigError(f"{where}: module '{mod_name}' has no class '{attr}'") from None


def resolve_type(name: str, where: str) -> type[Module]:
    """The module class for ``name``: built-in name, entry point, or ``package.module:Class``."""
    if not isinstance(name, str) or not name:
        what = "missing 'type'" if name is None or name == "" else f"type {short(name)} is not a name"
        raise ConfigError(f"{where}: {what} (a module type such as JetGraphProducer, or package.module:Class)")
    if name in BUILTIN_MODULES:
        cls = import_object(BUILTIN_MODULES[name], where)
    elif name in _entry_points():
        try:
            cls = _entry_points()[name].load()
        except (Exception, SystemExit) as err:
            raise ConfigError(f"{where}: entry point '{name}' ({ENTRY_POINT_GROUP}) failed to load: {err!r}") from err
    elif ":" in name:
        cls = import_object(name, where)
    else:
        close = difflib.get_close_matches(name, known_types(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"{where}: unknown module type {short(name)}{hint}; known: {', '.join(known_types())}; "
            "or give an import path package.module:Class"
        )
    if not (
        isinstance(cls, type) and issubclass(cls, Module) and dataclasses.is_dataclass(getattr(cls, "Params", None))
    ):
        raise ConfigError(
            f"{where}: {short(name)} is not an e2e module (a subclass of e2e.module.Module with a Params dataclass)"
        )
    return cls


def build_module(label: str, block: Mapping[str, Any], where: str) -> Module:
    """Resolve ``block['type']``, validate the remaining keys against its Params and instantiate it."""
    from e2e.params import build

    if not isinstance(block, Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'type' and parameters, got {short(block)}")
    body = dict(block)
    type_name = body.pop("type", None)
    cls = resolve_type(type_name, where)
    params = build(cls.Params, body, where)
    module = cls(label, params)
    module.type_name = str(type_name)
    return module
