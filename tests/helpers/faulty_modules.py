"""Test-only modules for the executor tests (imported by worker processes through PYTHONPATH)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import numpy as np

from dataformats.products import JaggedCollection, JetTable
from e2e.event import EventBatch
from e2e.module import Producer
from e2e.params import input_tag, param


class KillOnce(Producer):
    """Jet pT as a one-column table; kills its own process (SIGKILL) the first time it sees entry ``at_entry``
    of any file, once per ``marker`` file (created atomically before the kill)."""

    @dataclass
    class Params:
        jets: str = input_tag("source:Jet", "jet collection", product=JaggedCollection)
        marker: str = param("", "file created before the kill; when it exists nothing is killed")
        at_entry: int = param(-1, "kill when a batch starts at this entry (-1: never)")

    def fields_needed(self) -> dict[str, tuple[str, ...]]:
        return {self.params.jets: ("pt",)}

    def produces(self) -> dict[str, type]:
        return {"": JetTable}

    def produce(self, batch: EventBatch) -> None:
        p = self.params
        if p.marker and batch.entry_start == p.at_entry and batch.n_events:
            try:
                os.close(os.open(p.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        jets: JaggedCollection = batch.get(p.jets)
        values = jets["pt"].astype(np.float32).reshape(-1, 1)
        batch.put(self.label, JetTable(jets.offsets, jets.local_index(), {}, values=values, names=("pt",)))


class StallAt(Producer):
    """Jet pT as a one-column table; at entry ``at_entry`` writes its process id to ``pid_file`` and sleeps
    ``seconds`` (a worker busy in a long unit)."""

    @dataclass
    class Params:
        jets: str = input_tag("source:Jet", "jet collection", product=JaggedCollection)
        pid_file: str = param("", "file that receives the pid before the sleep")
        at_entry: int = param(-1, "sleep when a batch starts at this entry (-1: never)")
        seconds: float = param(60.0, "how long to sleep (s)")

    def fields_needed(self) -> dict[str, tuple[str, ...]]:
        return {self.params.jets: ("pt",)}

    def produces(self) -> dict[str, type]:
        return {"": JetTable}

    def produce(self, batch: EventBatch) -> None:
        import time

        p = self.params
        if p.pid_file and batch.entry_start == p.at_entry and batch.n_events:
            with open(p.pid_file + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(p.pid_file + ".tmp", p.pid_file)
            time.sleep(p.seconds)
        jets: JaggedCollection = batch.get(p.jets)
        values = jets["pt"].astype(np.float32).reshape(-1, 1)
        batch.put(self.label, JetTable(jets.offsets, jets.local_index(), {}, values=values, names=("pt",)))
