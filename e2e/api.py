"""The in-memory API: tag events that are already in memory (trigger, online, notebooks), no files.

.. code-block:: python

    from e2e.api import EventTagger

    tagger = EventTagger("process_configs/tau_gnn.yaml")      # modules, numba kernels, inference sessions: once
    out = tagger(events)                                     # an awkward record array of hits-tree branches
    out["Jet_tauGNN_tau"]                                    # one score per jet, as the friend tree's branch

``events`` holds the hits tree's branches by their schema names (``run``, ``luminosityBlock``, ``event``, ``Jet_pt``,
``EcalHit_energy``, ...; see :mod:`e2e.io.memory`): uproot's ``tree.arrays(entry_stop=...)`` (awkward, or
``library="np"``), one event as an awkward Record (``events[0]``) or as a mapping of its values
(``events.tolist()[0]``), a list of events as mappings (JSON), or a mapping
of branch name -> array (awkward, numpy, or lists); collections zipped into records, as
coffea's NanoAODSchema gives them (``events.Jet.pt``), are read under their branch names. The configuration's source is
replaced by an in-memory source with the same value checks; its outputs' ``keep`` lists choose what is returned: every
per-jet branch the friend tree would get (``Jet_<label>_<name>``, jagged by event, one value per input jet) and the
per-event collections (``<label>Node_<field>``, ...). The values are the ones e2e-run writes for the same events.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak

from e2e.errors import ConfigError, short
from e2e.eventids import EventIdRegister
from e2e.io.memory import ArraySource
from e2e.io.output import RootOutput, jagged_column
from e2e.io.source import RootSource
from e2e.module import run_producer

#: source settings that describe files and batches, with nothing to do for events given in memory
_FILE_ONLY = ("files", "step_size", "read_threads")


def in_memory_source(block: Any, where: str) -> dict[str, Any]:
    """The in-memory source block that replaces a configuration's ``source``: that block is validated as its type's
    parameters first (an unknown key or a bad value is one line, as in e2e-run); its ``check_values`` and ``tree``
    carry over, the settings of files and batches (``files``, ``step_size``, ``read_threads``) do not apply, and any
    other setting (which events are read, your branch names or units, another source type) is refused: the events
    given are tagged as they are, under the hits tree's branch names."""
    from e2e.module import resolve_type
    from e2e.params import build

    block = {} if block is None else block
    if not isinstance(block, Mapping):
        raise ConfigError(f"{where}: source: expected a mapping, got {short(block)}")
    body = dict(block)
    type_name = body.pop("type", "RootSource")
    cls = resolve_type(type_name, f"{where}: source")
    if cls.kind != "source":
        raise ConfigError(f"{where}: source: '{short(type_name)}' is not a source module (e.g. RootSource)")
    params = build(cls.Params, body, f"{where}: source")
    if cls is ArraySource:
        return {"type": "ArraySource", **body}
    if not issubclass(cls, RootSource):
        raise ConfigError(
            f"{where}: source: {short(type_name)} reads its own files; EventTagger tags events given as the hits "
            "tree's branches (a RootSource configuration, or no source block)"
        )
    default = cls.Params()
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if f.name not in (*_FILE_ONLY, "check_values", "tree") and value != getattr(default, f.name):
            raise ConfigError(
                f"{where}: source.{f.name} = {short(value)}: a setting of what is read from files; EventTagger tags "
                "the events it is given, under the hits tree's branch names: remove it"
            )
    return {"type": "ArraySource", "check_values": params.check_values, "tree": params.tree}


def _refuse_file_options(options: Any, where: str) -> None:
    """Options of runs over files (executors, workers, bad files) have no meaning in memory: one line if set."""
    from e2e.config import Options

    default = Options()
    for name in ("executor", "workers", "scheduler", "retries", "skip_bad_files"):
        if getattr(options, name) != getattr(default, name):
            raise ConfigError(
                f"{where}: options.{name} = {short(getattr(options, name))}: a setting of runs over files; "
                "EventTagger runs in the calling process: remove it (options.threads sets its threads)"
            )


class EventTagger:
    """The modules of a process configuration, built once, run on events given in memory (see the module doc).

    Calls from several threads are run one at a time (the modules and the in-memory source hold the call's events
    between its steps); for parallel tagging use one EventTagger per thread or process."""

    def __init__(self, config: str | os.PathLike[str] | Mapping[str, Any], overrides: Sequence[str] = ()) -> None:
        from e2e.cli.common import apply_override, load_config_mapping
        from e2e.config import load_process
        from e2e.process import Process

        if isinstance(overrides, str):  # one override, not its characters
            overrides = [overrides]
        if isinstance(config, Mapping):
            data = copy.deepcopy(dict(config))  # the overrides go into this copy, never into the caller's mapping
            for assignment in overrides:
                apply_override(data, assignment)
        else:
            data = load_config_mapping(str(config), list(overrides), "process configuration", "process")
        where = str(config) if not isinstance(config, Mapping) else "<config>"
        data["source"] = in_memory_source(data.get("source"), where)
        self._data = _with_absolute_models(data)  # what a pickled tagger is rebuilt from (__reduce__)
        self.desc = load_process(data, where=where)
        _refuse_file_options(self.desc.options, where)
        self.process = Process(self.desc)
        self.modules = [self.desc.modules[label] for label in self.process.schedule.order]
        self.outputs = [out for out in self.desc.outputs if isinstance(out, RootOutput)]
        self.source = self.desc.source
        self.source.begin()
        for m in self.modules:
            m.begin()
        self.process._warm_up(self.modules)  # numba compile / cache load and inference sessions, now
        self._lock = threading.Lock()
        self._closed = False

    def __call__(self, events: Any) -> dict[str, ak.Array]:
        """Branch name -> awkward array (per-jet branches jagged by event, collections jagged by event)."""
        source = self.source
        assert isinstance(source, ArraySource)
        with self._lock:  # load() keeps the events in the source until read(): one call at a time
            if self._closed:
                raise ValueError("EventTagger is closed (its modules were ended): make a new one")
            n = source.load(events)
            batch = source.read(source.plan()[0]) if n else source.empty_batch()
            if self.desc.options.duplicate_ids == "error":  # repeats within the call (calls are independent)
                EventIdRegister(True).add(batch)
            for m in self.modules:
                run_producer(m, batch)
        jet_offsets = batch.get("source:Jet").offsets
        out: dict[str, ak.Array] = {}
        for output in self.outputs:
            cols = output.product_columns(batch)
            for key, values in cols.jet.items():
                out[f"Jet_{key}"] = jagged_column(jet_offsets, values)
            for coll, (offsets, fields) in cols.collections.items():
                for name, values in fields.items():
                    out[f"{coll}_{name}"] = jagged_column(offsets, values)
        return out

    def close(self) -> None:
        """End the modules and the source (sessions are released with the object); calls after it are refused, a
        second close does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for m in self.modules:
                m.end()
            self.source.end()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as its configuration, never its modules or sessions: unpickled, it is built in that process
        once (:func:`_rebuilt`), and every later copy there is that tagger (coffea's executors pickle a processor,
        and the tagger in it, for every chunk they send)."""
        with _REBUILT_LOCK:  # unpickled in this process: this tagger (unless one of the same is open there)
            key = _config_key(self._data)
            if not self._closed and (key not in _REBUILT or _REBUILT[key]._closed):
                _REBUILT[key] = self
        return _rebuilt, (self._data,)

    def __enter__(self) -> EventTagger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: the taggers unpickled in this process, by configuration (:meth:`EventTagger.__reduce__`)
_REBUILT: dict[str, EventTagger] = {}
_REBUILT_LOCK = threading.Lock()


def _with_absolute_models(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with the model directories its modules name (``model: mymodel``) made absolute: a tagger
    unpickled in a process that runs elsewhere (a dask worker's directory) finds the same model, not none or
    another of that name."""
    out = copy.deepcopy(dict(data))
    blocks = out.get("modules")
    for block in blocks.values() if isinstance(blocks, dict) else []:
        model = block.get("model") if isinstance(block, dict) else None
        if not isinstance(model, str) or not model or model.startswith("zoo:") or os.path.isabs(model):
            continue
        if os.path.exists(model):  # (a path here: a module's own model name is left as it is)
            block["model"] = os.path.abspath(model)
    return out


def _config_key(data: Mapping[str, Any]) -> str:
    import json

    return json.dumps(data, sort_keys=True, default=str)


def _rebuilt(data: Mapping[str, Any]) -> EventTagger:
    """The tagger of ``data`` in this process: built on first use, then the same one (unless closed)."""
    key = _config_key(data)
    with _REBUILT_LOCK:
        tagger = _REBUILT.get(key)
        if tagger is None or tagger._closed:
            tagger = _REBUILT[key] = EventTagger(data)
        return tagger
