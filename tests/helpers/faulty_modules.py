"""Test-only modules for the executor tests (imported by worker processes through PYTHONPATH)."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass

import numpy as np

from dataformats.products import JaggedCollection, JetTable
from e2e.event import EventBatch
from e2e.module import Producer
from e2e.params import input_tag, param


class _PtTable(Producer):
    """Jet pT as a one-column table, after :meth:`act` (what the test module does to its process)."""

    def fields_needed(self) -> dict[str, tuple[str, ...]]:
        return {self.params.jets: ("pt",)}

    def produces(self) -> dict[str, type]:
        return {"": JetTable}

    def act(self, batch: EventBatch) -> None:
        raise NotImplementedError

    def produce(self, batch: EventBatch) -> None:
        if batch.n_events and batch.entry_start == self.params.at_entry:
            self.act(batch)
        jets: JaggedCollection = batch.get(self.params.jets)
        values = jets["pt"].astype(np.float32).reshape(-1, 1)
        batch.put(self.label, JetTable(jets.offsets, jets.local_index(), {}, values=values, names=("pt",)))


class KillOnce(_PtTable):
    """Kills its own process (SIGKILL) the first time it sees entry ``at_entry`` of any file, once per ``marker``
    file (created atomically before the kill)."""

    @dataclass
    class Params:
        jets: str = input_tag("source:Jet", "jet collection", product=JaggedCollection)
        marker: str = param("", "file created before the kill; when it exists nothing is killed")
        at_entry: int = param(-1, "kill when a batch starts at this entry (-1: never)")

    def act(self, batch: EventBatch) -> None:
        if not self.params.marker:
            return
        try:
            os.close(os.open(self.params.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)


class StallAt(_PtTable):
    """At entry ``at_entry`` writes its process id to ``pid_file`` and sleeps ``seconds`` (a worker busy in a
    long unit)."""

    @dataclass
    class Params:
        jets: str = input_tag("source:Jet", "jet collection", product=JaggedCollection)
        pid_file: str = param("", "file that receives the pid before the sleep")
        at_entry: int = param(-1, "sleep when a batch starts at this entry (-1: never)")
        seconds: float = param(60.0, "how long to sleep (s)")

    def act(self, batch: EventBatch) -> None:
        import time

        if not self.params.pid_file:
            return
        with open(self.params.pid_file + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(self.params.pid_file + ".tmp", self.params.pid_file)
        time.sleep(self.params.seconds)


class RaiseAt(_PtTable):
    """Raises a plain RuntimeError at entry ``at_entry`` (a bug in a module of the user's own), or calls
    ``sys.exit(0)`` there (``exits``)."""

    @dataclass
    class Params:
        jets: str = input_tag("source:Jet", "jet collection", product=JaggedCollection)
        at_entry: int = param(0, "raise when a batch starts at this entry")
        exits: bool = param(False, "call sys.exit(0) instead")

    def act(self, batch: EventBatch) -> None:
        if self.params.exits:
            sys.exit(0)
        raise RuntimeError("a bug in the user's module")


class PutsWrong(_PtTable):
    """Puts a table that breaks the product contract in the way ``fault`` names, from entry ``at_entry`` (-1: on
    every batch, the empty warm-up batch too): what e2e.module.run_producer refuses in one line."""

    @dataclass
    class Params:
        jets: str = input_tag("source:Jet", "jet collection", product=JaggedCollection)
        fault: str = param("repeat", "repeat | space | rows | type | nothing | half")
        at_entry: int = param(-1, "misbehave from the batch that starts at this entry (-1: every batch)")

    def produce(self, batch: EventBatch) -> None:
        if self.params.at_entry >= 0 and batch.entry_start < self.params.at_entry:
            return super().produce(batch)
        jets: JaggedCollection = batch.get(self.params.jets)
        fault = self.params.fault
        values = np.zeros((len(jets) + (fault == "rows"), 2), np.float16 if fault == "half" else np.float32)
        names = {"repeat": ("a", "a"), "space": ("a b", "c")}.get(fault, ("a", "b"))
        table = JetTable(jets.offsets, jets.local_index(), {}, values=values, names=names)
        if fault != "nothing":
            batch.put(self.label, {"values": values} if fault == "type" else table)


class DeclaresJunk(_PtTable):
    """``produces()`` that is not {instance: product class}."""

    @dataclass
    class Params:
        jets: str = input_tag("source:Jet", "jet collection", product=JaggedCollection)

    def produces(self) -> dict[str, type]:
        return {"": 42}  # type: ignore[dict-item]
