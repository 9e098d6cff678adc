"""Duplicate event ids over a run: (run, luminosityBlock, event) is unique per file (DESIGN.md 4.1).

Repeats are a warning counted in the run summary by default, not an error: the output is a friend tree
aligned entry by entry with the input, so a repeated id misaligns no score (CMSSW's PoolSource also only
warns by default). ``options.duplicate_ids: error`` makes them fatal.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping

import numpy as np

from dataformats.schema import SchemaError
from e2e.event import EventBatch


class EventIdRegister:
    """Event ids seen in a run. Each batch is checked against itself at once (``fatal`` fails there); the whole
    run is checked by :meth:`finish` with one sort of 16 bytes per event."""

    def __init__(self, fatal: bool) -> None:
        self.fatal = fatal
        self.keys: list[tuple[np.ndarray, np.ndarray]] = []
        self.where: list[tuple[str, int]] = []  # ('file:tree', first entry) of each batch
        #: the first repeat in input order, in words (after finish)
        self.first: str | None = None

    @staticmethod
    def _duplicates(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """[n, 2] positions of (earlier, later) events with equal ids, neighbours in sort order."""
        order = np.lexsort((lo, hi))
        same = (hi[order][1:] == hi[order][:-1]) & (lo[order][1:] == lo[order][:-1])
        return np.sort(np.stack([order[:-1][same], order[1:][same]], axis=1), axis=1)

    @staticmethod
    def _name(hi: np.ndarray, lo: np.ndarray, pair: np.ndarray, locate: Callable[[int], str]) -> str:
        a, b = (int(i) for i in pair)
        run, lumi = int(hi[a]) >> 32, int(hi[a]) & 0xFFFFFFFF
        return f"run {run}, luminosityBlock {lumi}, event {int(lo[a])} at {locate(a)} and {locate(b)}"

    def add(self, batch: EventBatch) -> None:
        """Remember the ids of ``batch`` (batches in input order)."""
        self.add_keys(*id_keys(batch.ids), f"{batch.file}:{batch.tree}", batch.entry_start)

    def add_keys(self, hi: np.ndarray, lo: np.ndarray, where: str, entry_start: int) -> None:
        """Remember the ids (:func:`id_keys`) of the entries from ``entry_start`` of ``where`` ('file:tree'), in input
        order (a batch of the iterative run, or a unit of a parallel one)."""
        self.keys.append((hi, lo))
        self.where.append((where, entry_start))
        if self.fatal and len(hi) > 1:
            dup = self._duplicates(hi, lo)
            if len(dup):
                name = self._name(hi, lo, dup[0], lambda i: f"{where} entry {entry_start + i}")
                raise SchemaError(f"duplicate event ids: {name} (options.duplicate_ids: error)")

    def finish(self) -> int:
        """Number of events whose ids repeat an earlier event's in the run (raises when ``fatal``)."""
        if not self.keys:
            return 0
        hi = np.concatenate([k[0] for k in self.keys])
        lo = np.concatenate([k[1] for k in self.keys])
        starts = np.cumsum([0] + [len(k[0]) for k in self.keys])
        where = self.where
        self.keys, self.where = [], []
        dup = self._duplicates(hi, lo)
        if not len(dup):
            return 0

        def locate(i: int) -> str:
            b = int(np.searchsorted(starts, i, side="right")) - 1
            return f"{where[b][0]} entry {where[b][1] + i - int(starts[b])}"

        first = dup[np.argmin(dup[:, 1])]  # the earliest repeat in input order
        self.first = self._name(hi, lo, first, locate)
        if self.fatal:
            raise SchemaError(f"duplicate event ids: {self.first} (options.duplicate_ids: error)")
        return len(dup)


def id_keys(ids: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Event ids as two uint64 keys per event: (run << 32 | luminosityBlock, event)."""
    run = np.asarray(ids["run"]).astype(np.uint64)
    lumi = np.asarray(ids["luminosityBlock"]).astype(np.uint64)
    return (run << np.uint64(32)) | lumi, np.asarray(ids["event"]).astype(np.uint64)


def pack_ids(ids: Mapping[str, np.ndarray]) -> str:
    """Event ids as text (a work unit's record, e2e.executors.UnitResult): base64 of :func:`id_keys`, 16 bytes per
    event."""
    hi, lo = id_keys(ids)
    return base64.b64encode(np.stack([hi, lo], axis=1).astype("<u8").tobytes()).decode("ascii")


def unpack_ids(text: str) -> dict[str, np.ndarray]:
    """The ``run``, ``luminosityBlock`` and ``event`` arrays (uint64) of :func:`pack_ids`' text."""
    keys = np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), "<u8").reshape(-1, 2)
    hi, lo = keys[:, 0].astype(np.uint64), keys[:, 1].astype(np.uint64)
    return {"run": hi >> np.uint64(32), "luminosityBlock": hi & np.uint64(0xFFFFFFFF), "event": lo}


def ids_digest(ids: Mapping[str, np.ndarray]) -> str:
    """A digest of event ids (``run``, ``luminosityBlock``, ``event`` arrays, in order): a work unit records the ids
    it read, and its parts are checked against them when they are assembled (e2e.executors)."""
    h = hashlib.sha256()
    for name in ("run", "luminosityBlock", "event"):
        h.update(np.ascontiguousarray(ids[name], dtype=np.uint64).tobytes())
    return h.hexdigest()[:20]
