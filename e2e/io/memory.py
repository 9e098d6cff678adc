"""ArraySource: events already in memory (no file), checked as RootSource checks a file's events.

The events are the hits tree's branches by their schema names (``run``, ``luminosityBlock``, ``event``,
``Jet_pt``, ``EcalHit_energy``, ...): an awkward Array of records (e.g. ``uproot``'s ``tree.arrays()``), or a
mapping of branch name -> array (awkward, or a list of lists / numpy arrays per event). Only the branches of the
collections the scheduled modules consume are needed; counters (``nJet``) are optional. The in-memory API
(:class:`e2e.api.EventTagger`) feeds one such set of events per call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from dataformats.schema import FileLayout, SchemaError, branch_dtypes, compatible, field_of
from e2e.event import EventBatch
from e2e.io.source import ID_FIELDS, RootSource, _FileInfo
from e2e.params import param
from e2e.source import WorkItem

#: the file name a batch of in-memory events reports
MEMORY = "<memory>"


class ArraySource(RootSource):
    """Events given by :meth:`load` (see the module docstring); one work item per load."""

    @dataclass
    class Params:
        tree: str = param("Events", "the tree name the batches report (no file is read)")
        check_values: bool = param(True, "check every value against the schema (NaN/inf, ranges)")

    def __init__(self, label: str, params: Any) -> None:
        full = RootSource.Params(tree=params.tree, check_values=params.check_values, read_threads=0)
        super().__init__(label, full)
        self._arrays: dict[str, Any] = {}
        self._memory: _FileInfo | None = None

    def begin(self) -> None:
        self.files, self._by_path = [], {}

    def load(self, events: Any) -> int:
        """Take ``events`` for the next :meth:`read`: check the branches the plan needs; returns the number of
        events. One-line SchemaError naming a missing or malformed branch."""
        arrays = _as_arrays(events)
        truth = "Jet_label" in arrays  # simulated events: their Jet truth is read as a file's would be
        branches = (b for fields in self._branches(truth).values() for b in fields.values())
        wanted = tuple(dict.fromkeys([*ID_FIELDS, *branches]))
        dtypes = branch_dtypes(True)
        casts = {}
        n = None
        for name in wanted:
            if name not in arrays:
                given = ", ".join(sorted(arrays)[:8]) + (", ..." if len(arrays) > 8 else "")
                raise SchemaError(f"{MEMORY}: no branch '{name}' among the events' fields ({given})")
            arr = arrays[name]
            scalar = name in ID_FIELDS
            depth, dtype = _depth_and_dtype(arr)
            if depth != (1 if scalar else 2):
                want = "one number per event" if scalar else "a list of numbers per event"
                raise SchemaError(f"{MEMORY}: branch '{name}' is {arr.type}, expected {want}")
            if dtype is None:  # another form (options, unions): flattened to find out
                whole = ak.Array(arr.layout)
                dtype = np.asarray(whole if scalar else ak.flatten(whole, axis=1)).dtype
            field = field_of(name)
            if not compatible(dtype, field):
                raise SchemaError(f"{MEMORY}: branch '{name}' has dtype {dtype}, expected {field.dtype}")
            if dtype != dtypes[name]:
                casts[name] = (dtype, dtypes[name])
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise SchemaError(f"{MEMORY}: branch '{name}' has {len(arr)} events, '{wanted[0]}' has {n}")
        n = n or 0
        counters = frozenset(c for c in self._branches(truth) if f"n{c}" in arrays)
        names = {b: b for b in [*wanted, *(f"n{c}" for c in counters)]}
        layout = FileLayout(n, truth, counters, casts, names, False)
        self._arrays = {b: arrays[b] for b in names}
        self._memory = _FileInfo(MEMORY, layout)
        self.files, self._by_path = [self._memory], {MEMORY: self._memory}
        return n

    def plan(self) -> list[WorkItem]:
        if self._memory is None:
            from e2e.errors import ConfigError

            raise ConfigError(
                f"{self.label}: ArraySource holds events given in memory (e2e.api.EventTagger), none were given; "
                "to read files use RootSource"
            )
        n = self._memory.entries
        return [WorkItem(MEMORY, self.params.tree, 0, n, 0)] if n else []

    def read(self, item: WorkItem) -> EventBatch:
        if self._memory is None:
            raise SchemaError(f"{self.label}: no events loaded (ArraySource.load)")
        info = self._memory
        arrays = self._arrays
        if item.entry_start or item.entry_stop != info.entries:
            arrays = {k: v[item.entry_start : item.entry_stop] for k, v in arrays.items()}
        return self._batch(arrays, self._branches(info.truth), info, MEMORY, item.entry_start, item.entry_stop, 0)

    def end(self) -> None:
        self._arrays, self._memory = {}, None


class _Field:
    """One field of an awkward record array, as the source reads it (``layout``, ``len``, ``type``, slices): its
    layout without an ``ak.Array`` around it (~20 us to build each, for ~30 fields per call of the in-memory API)."""

    __slots__ = ("layout",)

    def __init__(self, layout: ak.contents.Content) -> None:
        self.layout = layout

    def __len__(self) -> int:
        return self.layout.length

    def __getitem__(self, where: slice) -> _Field:
        return _Field(self.layout[where])

    @property
    def type(self) -> ak.types.Type:
        return ak.Array(self.layout).type


class _RecordFields(Mapping[str, _Field]):
    """The fields of an awkward record array as a mapping, each made when first asked for (an event of the
    hits tree has ~60 fields; a configuration reads a third of them)."""

    def __init__(self, events: ak.Array) -> None:
        self._layout = events.layout
        self._fields = events.fields
        self._index = {name: i for i, name in enumerate(self._fields)}  # (RecordArray.content: ~3 us per name)
        self._made: dict[str, _Field] = {}

    def __getitem__(self, name: str) -> _Field:
        arr = self._made.get(name)
        if arr is None:
            content = self._layout.contents[self._index[name]]
            if content.length != self._layout.length:  # a record array's fields may be longer than it
                content = content[: self._layout.length]
            arr = self._made[name] = _Field(content)
        return arr

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


def _depth_and_dtype(arr: Any) -> tuple[int, np.dtype | None]:
    """(list depth, number type) of a branch: depth 1 for a number per event, 2 for a list of numbers per event, 0
    for what is not an awkward array. Read from the layout's classes for the plain forms (awkward's
    ``purelist_depth`` costs ~1.5 us per branch, flattening far more); the type is None for the other forms."""
    if not isinstance(arr, (ak.Array, _Field)):
        return 0, None
    layout = arr.layout
    if isinstance(layout, ak.contents.NumpyArray) and layout.data.ndim == 1:
        return 1, layout.data.dtype
    if isinstance(layout, (ak.contents.ListOffsetArray, ak.contents.ListArray)):
        inner = layout.content
        if isinstance(inner, ak.contents.NumpyArray) and inner.data.ndim == 1:
            return 2, inner.data.dtype
    return int(layout.purelist_depth), None


def _as_arrays(events: Any) -> Mapping[str, Any]:
    """Branch name -> awkward (or numpy) array, from an awkward record array or a mapping."""
    if isinstance(events, ak.Array):
        if not events.fields:
            raise SchemaError(f"{MEMORY}: the events are {events.type}, expected records with the hits-tree branches")
        if isinstance(events.layout, ak.contents.RecordArray):
            return _RecordFields(events)
        return {f: events[f] for f in events.fields}
    if isinstance(events, Mapping):
        return {str(k): v if isinstance(v, ak.Array) else ak.Array(v) for k, v in events.items()}
    raise SchemaError(
        f"{MEMORY}: events of type {type(events).__name__}; expected an awkward Array of records or a mapping of "
        "branch name -> array"
    )
