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
from typing import Any, NamedTuple

import awkward as ak
import numpy as np
from numba import njit

from dataformats.products import JaggedCollection
from dataformats.schema import (
    FileLayout,
    SchemaError,
    branch_dtypes,
    check_branch_values,
    compatible,
    exc_line,
    field_of,
)
from e2e.event import EventBatch
from e2e.io.source import ID_FIELDS, ColumnPlan, RootSource, _FileInfo
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
        self._arrays: Mapping[str, Any] = {}
        self._loaded: tuple[str, ...] = ()
        self._memory: _FileInfo | None = None
        self._ready: EventBatch | None = None  # the batch of the loaded events, when the plain path made it
        self._plain_plans: dict[bool, _PlainPlan] = {}

    def begin(self) -> None:
        """No files; the plain path's value checks are compiled (or loaded from numba's cache) for the number types
        of the plan's branches now, so that the first events given do not wait for them."""
        self.files, self._by_path = [], {}
        for truth in (False, True):
            plan = self._plain_plan(truth)
            checks = [(dtype, check) for _, dtype, check in plan.ids]
            checks += [(dtype, check) for _, fields in plan.collections for _, _, dtype, check in fields]
            for dtype, check in checks:
                if check is not None and dtype.itemsize <= 4:
                    _all_within(np.zeros(0, dtype), *check)

    def set_plan(self, columns: ColumnPlan) -> None:
        super().set_plan(columns)
        self._plain_plans = {}

    def load(self, events: Any) -> int:
        """Take ``events`` for the next :meth:`read`: check the branches the plan needs; returns the number of
        events. One-line SchemaError naming a missing or malformed branch."""
        arrays = _as_arrays(events)
        truth = "Jet_label" in arrays  # simulated events: their Jet truth is read as a file's would be
        ready = self._plain_batch(arrays, truth)
        n, casts = (ready.n_events, {}) if ready is not None else self._check_branches(arrays, truth)
        counters = frozenset(c for c in self._branches(truth) if f"n{c}" in arrays)
        if ready is None:
            for c in counters:
                _check_counter_branch(f"n{c}", arrays[f"n{c}"])
        names = (*self._plain_plan(truth).wanted, *(f"n{c}" for c in counters))
        self._arrays, self._loaded, self._ready = arrays, names, ready
        self._memory = _FileInfo(MEMORY, FileLayout(n, truth, counters, casts, {b: b for b in names}, False))
        self.files, self._by_path = [self._memory], {MEMORY: self._memory}
        return n

    def _check_branches(self, arrays: Mapping[str, Any], truth: bool) -> tuple[int, dict[str, _Cast]]:
        """(events, casts) of the branches a batch needs: present, numbers or lists of numbers as each is, of a
        number type that converts to the schema's, all of one length (one-line SchemaError otherwise)."""
        wanted = self._plain_plan(truth).wanted
        dtypes = branch_dtypes(True)
        casts = {}
        n = None
        for name in wanted:
            if name not in arrays:
                given = ", ".join(sorted(arrays)[:8]) + (", ..." if len(arrays) > 8 else "")
                raise SchemaError(f"{MEMORY}: no branch '{name}' among the events' fields ({given})")
            arr = arrays[name]
            scalar = name in ID_FIELDS
            layout = getattr(arr, "layout", None)
            invalid = ak.validity_error(layout) if isinstance(layout, ak.contents.Content) else ""
            if invalid:  # hand-built layouts: offsets that decrease or run past their content
                why = invalid.splitlines()[0].split(" (in compiled code")[0].rsplit("): ", 1)[-1]
                raise SchemaError(f"{MEMORY}: branch '{name}' is not a valid awkward array ({why})")
            depth, dtype = _depth_and_dtype(arr)
            want = "one number per event" if scalar else "a list of numbers per event"
            if depth != (1 if scalar else 2):
                raise SchemaError(f"{MEMORY}: branch '{name}' is {arr.type}, expected {want}")
            if dtype is None:  # another form (options, unions): flattened to find out
                whole = ak.Array(arr.layout)
                _no_missing_values(name, whole, scalar)
                try:
                    dtype = np.asarray(whole if scalar else ak.flatten(whole, axis=1)).dtype
                except (TypeError, ValueError):  # unions of numbers and strings, ...
                    raise SchemaError(f"{MEMORY}: branch '{name}' is {arr.type}, expected {want}") from None
            field = field_of(name)
            if not compatible(dtype, field) and not _no_values(arr, scalar):  # (empty lists: float64, for awkward)
                raise SchemaError(f"{MEMORY}: branch '{name}' has dtype {dtype}, expected {field.dtype}")
            if dtype != dtypes[name]:
                casts[name] = (dtype, dtypes[name])
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise SchemaError(f"{MEMORY}: branch '{name}' has {len(arr)} events, '{wanted[0]}' has {n}")
        return n or 0, casts

    def _plain_plan(self, truth: bool) -> _PlainPlan:
        """The branches a batch needs and how the plain path checks each (made once per plan and truth)."""
        made = self._plain_plans.get(truth)
        if made is None:
            made = self._plain_plans[truth] = _PlainPlan.of(self._branches(truth), self.params.check_values)
        return made

    def _plain_batch(self, arrays: Mapping[str, Any], truth: bool) -> EventBatch | None:
        """The batch of ``arrays`` in one pass when every branch is a plain awkward layout (numbers, or lists of
        numbers with int64 offsets) of its schema number type, the lists of a collection agree, a counter given
        equals the list lengths, and every checked branch's minimum and maximum lie in its range; otherwise None,
        and the general path (:meth:`load` then :meth:`read`) checks the events with its one-line messages. The
        same arrays and the same checks as the general path, without its per-branch wrappers: ~0.12 ms instead of
        ~0.24 ms to take and read one event of ``tau_gnn_fast.yaml`` in the single-event loop (its budget is ~1 ms)."""
        if isinstance(arrays, _RecordFields):
            layout_of, n = arrays.raw_layout_of, arrays.length
        elif isinstance(arrays, dict):
            layout_of, n = _dict_layout_of(arrays), -1
        else:
            return None
        plan = self._plain_plan(truth)
        ids: dict[str, np.ndarray] = {}
        for name, dtype, check in plan.ids:
            values = _plain_numbers(layout_of(name), dtype)
            if values is None or (n >= 0 and len(values) != n):
                return None  # (a record's field may be longer than the record: the general path cuts it)
            n = len(values)
            if check is not None and not _plain_check(name, values, check, None):
                return None
            ids[name] = values
        if n <= 0:
            return None
        batch = EventBatch(MEMORY, self.params.tree, 0, n, ids, 0)
        for coll, fields in plan.collections:
            first: np.ndarray | None = None
            offsets = np.zeros(0, np.int64)
            columns: dict[str, np.ndarray] = {}
            for fld, branch, dtype, check in fields:
                layout = layout_of(branch)
                if not isinstance(layout, ak.contents.ListOffsetArray):
                    return None
                inner = layout.content
                raw = layout.offsets.data
                if type(inner) is not ak.contents.NumpyArray or raw.dtype != np.int64:
                    return None
                raw = _materialized(raw)
                if first is None:
                    if len(raw) != n + 1:
                        return None
                    if raw[-1] > len(inner) or not (raw[1:] >= raw[:-1]).all():  # (valid for awkward: the general
                        return None  # path names the branch)
                    first, offsets = raw, (raw - raw[0]) if raw[0] else raw
                elif raw is not first and raw.tobytes() != first.tobytes():
                    if (raw - raw[0]).tobytes() != offsets.tobytes() or raw[-1] > len(inner):
                        return None
                values = _materialized(inner.data)[raw[0] : raw[-1]]
                if values.dtype != dtype or values.ndim != 1:
                    return None
                if check is not None and not _plain_check(branch, values, check, offsets):
                    return None
                columns[fld] = values
            counter = layout_of(f"n{coll}")
            if counter is not None:
                counts = _plain_numbers(counter, None)
                if counts is None or counts.dtype.kind not in "iu" or len(counts) != n:
                    return None
                if not (counts == offsets[1:] - offsets[:-1]).all():
                    return None
            batch.put(self.label, JaggedCollection(coll, offsets, columns), coll)
        return batch

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
        whole = not item.entry_start and item.entry_stop == info.entries
        if whole and self._ready is not None:
            batch, self._ready = self._ready, None  # (a batch is read once: modules put their products on it)
            return batch
        if not whole:
            arrays = {k: arrays[k][item.entry_start : item.entry_stop] for k in self._loaded}
        return self._batch(arrays, self._branches(info.truth), info, MEMORY, item.entry_start, item.entry_stop, 0)

    def end(self) -> None:
        self._arrays, self._loaded, self._memory, self._ready = {}, (), None, None


#: a branch's number type and the schema's, when they differ
_Cast = tuple[np.dtype, np.dtype]
#: how the plain path checks a branch's values: None (not checked), the (low, high) of the min/max test
_Check = tuple[float, float] | None


class _PlainPlan(NamedTuple):
    """The branches of a batch with their schema number type and check: the ids, then per collection
    (field, branch, ...); ``wanted``: every branch name, ids first."""

    ids: tuple[tuple[str, np.dtype, _Check], ...]
    collections: tuple[tuple[str, tuple[tuple[str, str, np.dtype, _Check], ...]], ...]
    wanted: tuple[str, ...]

    @classmethod
    def of(cls, branches: Mapping[str, Mapping[str, str]], check_values: bool) -> _PlainPlan:
        dtypes = branch_dtypes(True)

        def check(name: str, checked: bool) -> _Check:
            field = field_of(name)
            if not checked:
                return None
            return (float("nan"), float("nan")) if field.allowed is not None else field.bounds

        ids = tuple((name, dtypes[name], check(name, check_values)) for name in ID_FIELDS)
        colls = tuple(
            (coll, tuple((f, b, dtypes[b], check(b, check_values or field_of(b).index)) for f, b in fields.items()))
            for coll, fields in branches.items()
        )
        wanted = tuple(dict.fromkeys([*ID_FIELDS, *(b for fields in branches.values() for b in fields.values())]))
        return cls(ids, colls, wanted)


def _plain_numbers(layout: Any, dtype: np.dtype | None) -> np.ndarray | None:
    """The numbers of a plain one-number-per-event layout (of ``dtype`` unless None), else None."""
    if type(layout) is not ak.contents.NumpyArray:
        return None
    values = _materialized(layout.data)
    if values.ndim != 1 or (dtype is not None and values.dtype != dtype):
        return None
    return values


def _materialized(data: Any) -> np.ndarray:
    """A layout's buffer as numpy: as it is, or read now from a virtual (lazy) buffer, as coffea's virtual mode and
    ``ak.from_buffers`` with callables give them."""
    if type(data) is np.ndarray:
        return data
    materialize = getattr(data, "materialize", None)
    return np.asarray(materialize() if callable(materialize) else data)


#: arrays of fewer values than this are range-checked by one loop (numba), larger ones by numpy's min and max
_LOOP_BELOW = 4096


@njit(cache=True, nogil=True)
def _all_within(values, lo, hi):
    """Whether every value lies in [lo, hi] (NaN does not): ~0.3 us per call on a few values, against ~1.4 us for
    numpy's two reductions (the in-memory API checks ~20 branches per call). float32 values are compared in float64,
    at least as strictly as numpy compares them with the bounds rounded to float32: a value at a bound that only
    the rounding accepts takes the general check (:func:`_plain_check`), which accepts it as the general path does."""
    for x in values:
        if not (x >= lo and x <= hi):
            return False
    return True


def _plain_check(name: str, values: np.ndarray, bounds: tuple[float, float], offsets: np.ndarray | None) -> bool:
    """Whether ``values`` pass the value checks: for a few values of at most 4 bytes the range loop (NaN fails it),
    else, or when that fails, the general check (whose fast path is numpy's min/max test; allowed-value fields, whose
    bounds are NaN, always take it; ``offsets``: the event offsets of a jagged branch). False for a bad value: the
    general path then reports it, in its order."""
    if not values.size:
        return True
    if values.itemsize <= 4 and values.size <= _LOOP_BELOW and _all_within(values, *bounds):
        return True  # (such values are exact in float64 against the bounds)
    try:
        check_branch_values(name, values, counts=None if offsets is None else np.diff(offsets), source=MEMORY)
    except SchemaError:
        return False
    return True


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
    hits tree has ~60 fields; a configuration reads a third of them). A field that holds a list of records per
    event (a collection, as coffea's NanoAODSchema zips ``Jet_pt``, ``Jet_eta``, ... into ``events.Jet``) also
    gives its fields under their branch names, ``Jet_pt`` and so on (a flat field of that name comes first)."""

    def __init__(self, events: ak.Array) -> None:
        self._layout = events.layout
        self._fields = list(events.fields)
        self._index = {name: i for i, name in enumerate(self._fields)}  # (RecordArray.content: ~3 us per name)
        self._collections: dict[str, tuple[int, str]] | None = None  # looked for at the first name not in _index
        self._made: dict[str, _Field] = {}

    @property
    def _nested(self) -> dict[str, tuple[int, str]]:
        """Branch name -> (index, field) of the fields of the record's collections."""
        if self._collections is None:
            self._collections = {}
            for i, content in enumerate(self._layout.contents):
                for sub in _collection_fields(content):
                    flat = f"{self._fields[i]}_{sub}"
                    if flat not in self._index:
                        self._collections[flat] = (i, sub)
        return self._collections

    def __getitem__(self, name: str) -> _Field:
        arr = self._made.get(name)
        if arr is None:
            content = self.raw_layout_of(name)
            if content is None:
                raise KeyError(name)
            if content.length != self._layout.length:  # a record array's fields may be longer than it
                content = content[: self._layout.length]
            arr = self._made[name] = _Field(content)
        return arr

    @property
    def length(self) -> int:
        """The number of records."""
        return int(self._layout.length)

    def raw_layout_of(self, name: str) -> ak.contents.Content | None:
        """The layout of field ``name`` as the record holds it (None when there is none): it may be longer than
        the record. A collection's field: its lists of that field's values (the collection's offsets)."""
        i = self._index.get(name)
        if i is not None:
            return self._layout.contents[i]
        nested = self._nested.get(name)
        if nested is None:
            return None
        lists = self._layout.contents[nested[0]]
        if isinstance(lists, _LISTS) and isinstance(lists.content, ak.contents.RecordArray):
            return lists.copy(content=lists.content.content(nested[1]), parameters=None)
        return ak.Array(lists)[nested[1]].layout  # another form (a selection's indexed lists)

    def __contains__(self, name: object) -> bool:
        return name in self._index or name in self._nested

    def __iter__(self) -> Iterator[str]:
        return iter([*self._fields, *self._nested])

    def __len__(self) -> int:
        return len(self._fields) + len(self._nested)


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


def _check_counter_branch(name: str, arr: Any) -> None:
    """A counter given with the events (``nJet``, optional) is one number per event, none of them missing (a list per
    event failed inside awkward; a None hid the count under it); its values are checked against the lists as read."""
    depth, dtype = _depth_and_dtype(arr)
    if depth != 1:
        raise SchemaError(f"{MEMORY}: counter '{name}' is {getattr(arr, 'type', type(arr).__name__)}, expected one "
                          "integer per event (or leave it out)")  # fmt: skip
    if dtype is None:
        _no_missing_values(name, ak.Array(arr.layout), True)


def _no_missing_values(name: str, arr: ak.Array, scalar: bool) -> None:
    """One-line SchemaError when a branch of an option type (``?float32``: from JSON nulls, ``ak.mask``,
    ``ak.pad_none``) holds None for an event or a value; option types without a None are read as their values."""
    if "?" not in str(arr.type):
        return
    missing = ak.to_numpy(ak.is_none(arr, axis=0))
    if not scalar:
        missing = missing | ak.to_numpy(ak.fill_none(ak.any(ak.is_none(arr, axis=1), axis=1), False))
    if missing.any():
        raise SchemaError(
            f"{MEMORY}: branch '{name}' has missing values (None) in entry {int(np.flatnonzero(missing)[0])}; "
            "expected numbers (drop or fill them first: ak.drop_none, ak.fill_none)"
        )


def _dict_layout_of(arrays: dict[str, Any]) -> Any:
    def layout_of(name: str) -> ak.contents.Content | None:
        arr = arrays.get(name)
        return arr.layout if isinstance(arr, ak.Array) else None

    return layout_of


def _is_number(value: Any) -> bool:
    """Whether ``value`` is one number (a branch's value for one event), not an array or list of them."""
    return isinstance(value, (int, float, np.number, np.bool_)) or (isinstance(value, np.ndarray) and value.ndim == 0)


def _one_event(events: Mapping[str, Any]) -> bool:
    """Whether a mapping is one event's values (``events.tolist()[i]``: its ``run`` a number), not branch -> array (a
    mapping with arrays and a stray number is the latter, and its number is named as the branch at fault). One look
    at ``run`` on the common path (arrays), which every configuration reads."""
    if not _is_number(events.get("run")):
        return False
    if any(isinstance(v, (ak.Array, _Field)) for v in events.values()):
        return False
    # a row of uproot's library="np" arrays: its ids numpy numbers, its lists numpy arrays
    return all(_is_number(events[k]) for k in ID_FIELDS if k in events) or not any(
        isinstance(v, np.ndarray) and v.ndim > 0 for v in events.values()
    )


def _why(err: Exception) -> str:
    """An awkward error in one line; pybind11's cast error of an integer beyond 64 bits in words."""
    if isinstance(err, RuntimeError) and "Unable to cast Python instance of type <class 'int'>" in str(err):
        return "an integer beyond int64 (only event ids go further, to 2**64 - 1, as uint64)"
    return exc_line(err)


def _branch_array(name: str, values: Any) -> ak.Array:
    """One branch of a mapping as an awkward array: numbers, lists of numbers, or a numpy object array of numpy
    arrays (uproot's ``library="np"`` for a jagged branch; empty: lists of the branch's schema type), joined
    without a Python loop over their values. One-line SchemaError for what awkward cannot read."""
    try:
        if isinstance(values, np.ndarray) and values.dtype == object:
            parts = list(values)
            if not parts:
                dtype = branch_dtypes(True).get(name, np.dtype(np.float64))
                return ak.unflatten(np.zeros(0, dtype), np.zeros(0, np.int64))
            if all(isinstance(p, np.ndarray) and p.ndim == 1 and p.dtype != object for p in parts):
                counts = np.fromiter((len(p) for p in parts), np.int64, len(parts))
                return ak.unflatten(np.concatenate(parts), counts)
            return ak.from_iter(parts)
        if isinstance(values, np.ndarray) and not values.dtype.isnative:  # (e.g. '>u4', as ROOT stores it)
            values = values.astype(values.dtype.newbyteorder("="))
        try:
            return ak.Array(values)
        except RuntimeError:  # a list of integers beyond int64 (event ids from 2**63): as uint64, if they all are
            if not (isinstance(values, (list, tuple)) and all(type(v) is int and 0 <= v < 2**64 for v in values)):
                raise
            return ak.Array(np.array(values, dtype=np.uint64))
    except (TypeError, ValueError, RuntimeError) as err:
        raise SchemaError(
            f"{MEMORY}: branch '{name}' ({type(values).__name__}) is not numbers or lists of numbers that awkward "
            f"can read ({_why(err)})"
        ) from None


#: the list layouts of a collection (a list of records per event)
_LISTS = (ak.contents.ListOffsetArray, ak.contents.ListArray)


def _collection_fields(layout: ak.contents.Content) -> list[str]:
    """The fields of a collection (a list of records per event, e.g. coffea's ``events.Jet``), whose branch names
    are ``Jet_<field>``; [] for anything else (at once for numbers and their lists, whose fields are [])."""
    return list(layout.fields) if layout.fields and layout.purelist_depth == 2 else []


def _with_collection_fields(arrays: dict[str, Any]) -> dict[str, Any]:
    """``arrays`` with the fields of every collection added under their branch names (``Jet_pt``, ...), unless a
    branch of that name is there."""
    out = dict(arrays)
    for name, values in arrays.items():
        for sub in _collection_fields(values.layout) if isinstance(values, ak.Array) else ():
            out.setdefault(f"{name}_{sub}", values[sub])
    return out


def _no_values(arr: Any, scalar: bool) -> bool:
    """Whether a branch holds no value at all (0 events, or only empty lists: awkward reads ``[]`` of JSON as
    float64 or of unknown type, which any number type takes)."""
    if len(arr) == 0:
        return True
    return not scalar and int(ak.sum(ak.num(ak.Array(arr.layout), axis=1))) == 0


def _as_arrays(events: Any) -> Mapping[str, Any]:
    """Branch name -> awkward (or numpy) array, from an awkward record array or a mapping; the fields of a
    collection (``events.Jet.pt``, as coffea's NanoAODSchema gives them) also under their branch names (``Jet_pt``).
    One event as an awkward Record (``events[i]``) is an array of that one event; a list of events as mappings
    (``events.tolist()``, JSON) is read by awkward."""
    if isinstance(events, (list, tuple)) and not events:
        raise SchemaError(f"{MEMORY}: an empty list of events: nothing to tag (give at least one event)")
    if isinstance(events, ak.Record):
        record = events.layout
        events = ak.Array(record.array[record.at : record.at + 1])
    elif isinstance(events, (list, tuple)) and events and all(isinstance(e, (Mapping, ak.Record)) for e in events):
        rows = [e.to_list() if isinstance(e, ak.Record) else e for e in events]
        try:
            events = ak.Array(rows)
        except RuntimeError as err:  # an integer beyond int64 (pybind11): branch by branch, which reads uint64 ids
            keys = list(rows[0])
            if any(e.keys() != rows[0].keys() for e in rows):
                raise SchemaError(
                    f"{MEMORY}: a list of {len(rows)} events that awkward cannot read ({_why(err)})"
                ) from None
            return _as_arrays({k: [e[k] for e in rows] for k in keys})
        except (TypeError, ValueError) as err:
            raise SchemaError(
                f"{MEMORY}: a list of {len(events)} events that awkward cannot read as records ({_why(err)})"
            ) from None
    if isinstance(events, ak.Array):
        if not events.fields:
            raise SchemaError(f"{MEMORY}: the events are {events.type}, expected records with the hits-tree branches")
        if isinstance(events.layout, ak.contents.RecordArray):
            return _RecordFields(events)
        return _with_collection_fields({f: events[f] for f in events.fields})
    if isinstance(events, Mapping) and _one_event(events):
        return _as_arrays([events])  # one event (a value per scalar branch), as ak.to_list(events)[i] gives it
    if isinstance(events, Mapping):
        arrays = {str(k): v if isinstance(v, ak.Array) else _branch_array(str(k), v) for k, v in events.items()}
        return _with_collection_fields(arrays)
    raise SchemaError(
        f"{MEMORY}: events of type {type(events).__name__}; expected an awkward Array of records (or one Record), a "
        "mapping of branch name -> array, or a list of events as mappings"
    )
