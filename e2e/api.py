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

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak

from e2e.io.memory import ArraySource
from e2e.io.output import RootOutput, jagged_column
from e2e.module import run_producer


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
            data = dict(config)
            for assignment in overrides:
                apply_override(data, assignment)
        else:
            data = load_config_mapping(str(config), list(overrides), "process configuration", "process")
        block = data.get("source") or {}
        check = block.get("check_values", True) if isinstance(block, Mapping) else True
        data["source"] = {"type": "ArraySource", "check_values": check}
        self.desc = load_process(data, where=str(config) if not isinstance(config, Mapping) else "<config>")
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

    def __enter__(self) -> EventTagger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
