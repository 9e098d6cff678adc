"""RootSource: hits-tree ROOT files in, EventBatches of consecutive events out (DESIGN.md 4.1, 6).

Every file is checked against the dataformats schema (branches, types, layout) before the first
event is processed; the values read are checked chunk by chunk (NaN/inf, ranges) unless
``check_values: false``. Jagged branches written by uproot (counter ``nX`` + arrays) and by ROOT
(``std::vector<T>``) are both read; only the collections and fields that scheduled modules consume
are read (column projection, as coffea).

Products: ``source:<Collection>`` (``source:Jet``, ``source:EcalHit``, ...) as
:class:`dataformats.products.JaggedCollection`; the event ids go on the batch itself.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from dataformats.products import JaggedCollection
from dataformats.rntuple_pages import PageChecksums
from dataformats.schema import (
    COUNTER_DTYPE,
    EVENT_FIELDS,
    FileLayout,
    SchemaError,
    branch_dtypes,
    cast_to_schema,
    check_branch_values,
    collections,
    field_of,
    inspect_file,
    read_chunk,
)
from e2e.errors import ConfigError, E2EError, short
from e2e.event import EventBatch
from e2e.params import MAX_THREADS, param
from e2e.paths import file_identity
from e2e.source import ColumnPlan, Source, WorkItem, plan_entries

ID_FIELDS: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS)


def collection_fields(truth: bool) -> dict[str, tuple[str, ...]]:
    """Collection name -> its fields in on-disk order (Jet truth fields appended when ``truth``)."""
    out: dict[str, tuple[str, ...]] = {}
    for coll in collections(truth):
        out[coll.name] = out.get(coll.name, ()) + coll.field_names
    return out


def expand_files(patterns: list[str], where: str) -> list[str]:
    """Files and glob patterns -> file list, in the given order (each glob sorted); remote URLs kept. A name that
    exists is that file, even with glob characters in it (``run[1].root`` is not ``run1.root``)."""
    files: list[str] = []
    for pattern in patterns:
        if not pattern.strip():
            raise ConfigError(f"{where}: an empty file name {short(pattern)}; expected a path or a glob pattern")
        if "://" not in pattern and glob.has_magic(pattern) and not os.path.exists(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise ConfigError(f"{where}: pattern '{pattern}' matches no file")
            files += matches
        else:
            files.append(pattern)
    if not files:
        raise ConfigError(f"{where}: no input files (give source.files in the config or -i FILES)")
    seen: dict[tuple[int, int], str] = {}
    for path in files:
        ident = file_identity(path) if "://" not in path else None
        if ident is None:
            continue
        if ident in seen:
            same = (
                "twice"
                if os.path.abspath(seen[ident]) == os.path.abspath(path)
                else f"twice ('{seen[ident]}' and '{path}' are the same file)"
            )
            raise ConfigError(
                f"{where}: '{path}' is given {same}; each input file is read once "
                "(its events would appear twice in the output)"
            )
        seen[ident] = path
    return files


def _flat(arr: Any, branch: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64 [n+1] starting at 0, flat numpy content) of a jagged array (an ``ak.Array``, or anything with
    its ``layout``), without copies when possible."""
    layout = arr.layout
    if isinstance(layout, ak.contents.ListOffsetArray) and isinstance(layout.content, ak.contents.NumpyArray):
        offsets = np.asarray(layout.offsets.data, dtype=np.int64)
        content = np.asarray(layout.content.data)[offsets[0] : offsets[-1]]
        return (offsets - offsets[0]) if offsets[0] else offsets, content
    arr = ak.Array(layout)
    if layout.purelist_depth != 2:
        raise SchemaError(f"{source}: branch '{branch}' is not a jagged array of numbers ({arr.type})")
    counts = ak.to_numpy(ak.num(arr, axis=1)).astype(np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets, ak.to_numpy(ak.flatten(arr, axis=1))


def _numbers(arr: Any) -> np.ndarray:
    """One number per event as numpy, from an ``ak.Array`` (or anything with its ``layout``): the buffer itself when
    the layout is a plain array (``ak.to_numpy`` costs ~0.1 ms per call, the in-memory API's budget is ~1 ms)."""
    layout = arr.layout
    if isinstance(layout, ak.contents.NumpyArray) and layout.data.ndim == 1:
        return np.asarray(layout.data)
    return ak.to_numpy(ak.Array(layout))


def file_branch_names(
    branches: Mapping[str, str], prefixes: Mapping[str, str], units: Mapping[str, float], label: str = "source"
) -> dict[str, str]:
    """Schema branch -> branch name in the files, from explicit names and collection prefixes (validated: one
    line naming the key and the closest schema name); unit factors are checked to apply to float branches."""
    import difflib

    schema = list(branch_dtypes(True))
    coll_names = list(collection_fields(True))

    def unknown(key: str, options: list[str], what: str) -> ConfigError:
        close = difflib.get_close_matches(key, options, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        kind = "collection" if what == "prefixes" else "schema branch"
        return ConfigError(
            f"{label}.{what}: {short(key)} is not a {kind}{hint}; the schema is in README 'The hits tree'"
        )

    for key in branches:
        if key not in schema:
            raise unknown(key, schema, "branches")
    for key in prefixes:
        if key not in coll_names:
            raise unknown(key, coll_names, "prefixes")
    for key, factor in units.items():
        if key not in schema:
            raise unknown(key, schema, "units")
        if field_of(key).dtype.kind != "f":
            raise ConfigError(
                f"{label}.units.{key}: a unit factor applies to float branches; {key} is "
                f"{field_of(key).dtype} (an index or a count)"
            )
        if not (factor > 0 and np.isfinite(factor)):
            raise ConfigError(f"{label}.units.{key}: got {factor}, expected a positive finite factor")
    names: dict[str, str] = {}
    for name in schema:
        coll, _, fld = name.partition("_")
        if name in branches:
            names[name] = branches[name]
        elif fld and coll in prefixes:
            names[name] = prefixes[coll] + fld
        elif name.startswith("n") and name[1:] in prefixes:
            names[name] = "n" + prefixes[name[1:]].rstrip("_")
    read_by: dict[str, str] = {}
    for name in schema:  # one file branch for two schema branches: a slip (Jet_phi read from Jet_eta)
        if name in ID_FIELDS:  # (an id a file lacks may stand in for another: luminosityBlock read from run)
            continue
        other = read_by.setdefault(names.get(name, name), name)
        if other != name:
            given = sorted({"branches" if n in branches else "prefixes" for n in (other, name) if n in names})
            raise ConfigError(
                f"{label}.{' and '.join(given)}: {other} and {name} would both be read from the files' branch "
                f"'{names.get(name, name)}'; give each schema branch a branch of its own"
            )
    return names


@dataclass
class _FileInfo:
    path: str
    layout: FileLayout

    @property
    def entries(self) -> int:
        return self.layout.entries

    @property
    def truth(self) -> bool:
        return self.layout.truth

    @property
    def counters(self) -> frozenset[str]:
        """Collections with a counter branch nX (std::vector and RNTuple collections may have none)."""
        return self.layout.counters


@dataclass
class FileSourceParams:
    """The parameters every file source has (a subclass may change a default)."""

    files: list[str] = param([], "input ROOT files or glob patterns, read in this order")
    tree: str = param("Events", "name (path) of the tree in the files")
    step_size: int = param(2000, "events per batch (chunk)", minimum=1)
    max_events: int = param(-1, "stop after this many events in total (-1: all)", minimum=-1)
    check_values: bool = param(True, "check every value read against the schema (NaN/inf, ranges)")
    read_threads: int = param(
        2, "threads for decompression and interpretation (0: none)", minimum=0, maximum=MAX_THREADS
    )


class HitsFileSource(Source):
    """Base of the sources that read files of events into the hits products (``RootSource``, ``RHTreeSource``):
    the file list, the column plan and work items of ``step_size`` entries. Subclasses fill ``self.files``
    (objects with ``path`` and ``entries``) in ``begin()``; their Params have files, tree, step_size and
    max_events."""

    def __init__(self, label: str, params: Any) -> None:
        super().__init__(label, params)
        self.columns: dict[str, tuple[str, ...] | None] = {}
        self.files: list[Any] = []
        self._by_path: dict[str, Any] = {}
        #: a worker's source (e2e.executors) inspects a file when its first unit arrives, not every file in begin()
        self.lazy = False
        #: --skip-bad-files (set by the driver): a file that fails its inspection in begin() is left out and
        #: recorded in ``unreadable`` (path, one-line error) instead of failing the run
        self.skip_unreadable = False
        self.unreadable: list[tuple[str, str]] = []
        #: decompression threads (``read_threads``), from begin() to end()
        self._executor: ThreadPoolExecutor | None = None

    def begin(self) -> None:
        """Inspect every input file (metadata only: layout, entries) before the first plan or read, and start the
        decompression threads."""
        self.files, self._by_path, self.unreadable = [], {}, []
        if not self.lazy:
            for path in self.input_paths():
                try:
                    self._add(path)
                except SchemaError as err:
                    if not self.skip_unreadable:
                        raise
                    self.unreadable.append((path, str(err)))
            if self.unreadable and not self.files:
                raise SchemaError(
                    f"{self.label}: none of the {len(self.unreadable)} input file(s) can be read (--skip-bad-files); "
                    f"the first: {self.unreadable[0][1]}"
                )
        if self.params.read_threads:
            self._executor = ThreadPoolExecutor(self.params.read_threads)

    def end(self) -> None:
        """Stop the decompression threads (subclasses close their files first); idempotent."""
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None

    def inspect(self, path: str) -> Any:
        """Check one file's layout for this source; an object with ``path`` and ``entries``."""
        raise NotImplementedError

    def _add(self, path: str) -> Any:
        info = self.inspect(path)
        self.files.append(info)
        self._by_path[path] = info
        return info

    def file_info(self, path: str) -> Any:
        """What ``inspect`` found for ``path`` (inspected now in a lazy source)."""
        info = self._by_path.get(path)
        if info is None:
            if not self.lazy:
                raise E2EError(f"{self.label}: {path} is not an input of this source (call begin() first)")
            info = self._add(path)
        return info

    def produces(self) -> dict[str, type]:
        return {name: JaggedCollection for name in collection_fields(True)}

    def empty_inputs(self) -> list[str]:
        return [f.path for f in self.files if f.entries == 0]

    def input_paths(self) -> list[str]:
        return expand_files(list(self.params.files), f"{self.label}.files")

    def set_plan(self, columns: ColumnPlan) -> None:
        """Which collections (and fields; None = all) to read, from what the scheduled modules consume."""
        self.columns = dict(columns)

    def empty_fields(self) -> dict[str, tuple[str, ...]]:
        """Collection -> the fields a batch of this source holds (for ``empty_batch``)."""
        raise NotImplementedError

    def empty_batch(self) -> EventBatch:
        """A batch of zero events with empty collections (so outputs of an empty input still get their branches)."""
        dtypes = branch_dtypes(True)
        ids = {name: np.zeros(0, dtype=dtypes[name]) for name in ID_FIELDS}
        path = self.files[0].path if self.files else ""
        batch = EventBatch(path, self.params.tree, 0, 0, ids, 0)
        for coll, fields in self.empty_fields().items():
            columns = {fld: np.zeros(0, dtype=dtypes[f"{coll}_{fld}"]) for fld in fields}
            batch.put(self.label, JaggedCollection(coll, np.zeros(1, dtype=np.int64), columns), coll)
        return batch

    def plan(self) -> list[WorkItem]:
        """Items of at most ``step_size`` entries, in file and entry order, up to ``max_events`` in total."""
        p = self.params
        return plan_entries([(f.path, f.entries) for f in self.files], p.tree, p.step_size, p.max_events)


class RootSource(HitsFileSource):
    """Read hits trees chunk by chunk; put ``source:<Collection>`` products and the event ids.

    Checks while reading: every collection's list lengths against its counter ``nX`` (when the file has
    one); index fields (calorimeter and tracker cells, jet seeds: the kernels address grids with them)
    always, the other values (NaN/inf, ranges) unless ``check_values: false``. (Event ids are checked for
    duplicates by the process, for every source.)
    """

    @dataclass
    class Params(FileSourceParams):
        branches: dict[str, str] = param(
            {}, "your branch names: schema branch -> branch in the file (e.g. {Jet_pt: jetPt, nJet: nJets, event: evt})"
        )
        prefixes: dict[str, str] = param(
            {},
            "your collection prefixes: collection -> prefix of its branches "
            "(e.g. {EcalHit: ecalRecHit_}: ecalRecHit_energy; counter "
            "n + prefix without its trailing '_')",
        )
        units: dict[str, float] = param(
            {},
            "factors to the schema's units for float branches (file value x "
            "factor; e.g. {Jet_pt: 0.001} for MeV, {Track_d0: 0.1} for mm)",
        )

    def __init__(self, label: str, params: Any) -> None:
        super().__init__(label, params)
        self.file_names = file_branch_names(params.branches, params.prefixes, params.units, label)
        self._branches_made: dict[bool, dict[str, dict[str, str]]] = {}
        self.files: list[_FileInfo] = []
        self._reader: _Reader | None = None

    def inspect(self, path: str) -> _FileInfo:
        """Check a file's branches against the schema (and the truth the plan needs)."""
        layout = inspect_file(path, self.params.tree, names=self.file_names)
        for coll, fields in self.columns.items():
            for fld in fields or ():
                if f"{coll}_{fld}" not in layout.names and fld in collection_fields(True)[coll]:
                    raise SchemaError(
                        f"{path}:{self.params.tree}: branch '{coll}_{fld}' is needed "
                        "but missing (it holds simulation truth: use a simulated sample)"
                    )
        return _FileInfo(path, layout)

    def set_plan(self, columns: ColumnPlan) -> None:
        super().set_plan(columns)
        self._branches_made = {}

    def end(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        super().end()

    def describe(self) -> str:
        notes = []
        if not self.params.check_values:
            notes.append(
                "value checks are OFF (check_values: false): NaN/inf hit values are not detected "
                "(index fields are still checked)"
            )
        return "; ".join(notes)

    def empty_fields(self) -> dict[str, tuple[str, ...]]:
        return {coll: tuple(fields) for coll, fields in self._branches(any(f.truth for f in self.files)).items()}

    def _branches(self, truth: bool) -> dict[str, dict[str, str]]:
        """Collection -> {field: schema branch} to read from files with (or without) Jet truth (made once per plan:
        the in-memory API asks for it on every call; the caller must not change it)."""
        made = self._branches_made.get(truth)
        if made is None:
            made = self._branches_made[truth] = self._branches_of(truth)
        return made

    def _branches_of(self, truth: bool) -> dict[str, dict[str, str]]:
        available = collection_fields(truth)
        out: dict[str, dict[str, str]] = {}
        for coll, fields in self.columns.items():
            chosen = available[coll] if fields is None else tuple(f for f in available[coll] if f in fields)
            chosen = chosen or available[coll][:1]  # the counts alone still need one branch
            out[coll] = {f: f"{coll}_{f}" for f in chosen}
        return out

    def read(self, item: WorkItem) -> EventBatch:
        """The EventBatch of ``item`` (checked as described in the class docstring).

        Consecutive items of one file are read through one ``TTree.iterate``, so a basket that spans several
        items is decompressed once; any other item starts a new iteration at its first entry.
        """
        info = self._info(item.file)
        source = f"{info.path}:{self.params.tree}"
        reader = self._reader
        if reader is None or not reader.continues(item):
            if reader is not None:
                reader.close()
            self._reader = reader = _Reader(info, item, self.params.tree, self._names(info), self._executor)
        try:
            arrays = reader.next()
        except Exception as err:
            self._reader = None
            reader.close()
            if isinstance(err, SchemaError):  # (a damaged RNTuple page: already one line)
                raise
            raise SchemaError(
                f"{source}: cannot read entries {item.entry_start}-{item.entry_stop - 1} ({type(err).__name__}: {err})"
            ) from err
        arrays = read_chunk(arrays, info.layout, self.params.units)
        n = len(arrays[ID_FIELDS[0]])
        if n != item.n_events:
            raise SchemaError(f"{source}: read {n} entries at {item.entry_start}, expected {item.n_events}")
        return self._batch(
            arrays, self._branches(info.truth), info, source, item.entry_start, item.entry_stop, item.index
        )

    def _info(self, path: str) -> _FileInfo:
        info: _FileInfo = self.file_info(path)
        return info

    def _names(self, info: _FileInfo) -> list[str]:
        """Branches to read from this file (its own names): ids, the counters of the planned collections, their
        fields."""
        wanted = self._branches(info.truth)
        schema = (
            list(ID_FIELDS)
            + [f"n{c}" for c in wanted if c in info.counters]
            + [b for fields in wanted.values() for b in fields.values()]
        )
        return [info.layout.names[b] for b in schema]

    def _batch(
        self,
        arrays: Mapping[str, Any],
        wanted: dict[str, dict[str, str]],
        info: _FileInfo,
        source: str,
        start: int,
        stop: int,
        index: int,
    ) -> EventBatch:
        check = self.params.check_values
        casts = info.layout.casts
        ids = {}
        for name in ID_FIELDS:
            values = _numbers(arrays[name])
            if name in casts:
                values = cast_to_schema(name, values, source=source, entry_offset=start)
            if check:
                check_branch_values(name, values, source=source, entry_offset=start)
            ids[name] = values
        batch = EventBatch(info.path, self.params.tree, start, stop, ids, index)
        for coll, fields in wanted.items():
            offsets = None
            columns: dict[str, np.ndarray] = {}
            first = ""
            counts = np.zeros(0, dtype=np.int64)
            for fld, branch in fields.items():
                offs, values = _flat(arrays[branch], branch, source)
                if offsets is None:
                    offsets, first, counts = offs, branch, np.diff(offs)
                elif offs is not offsets and offs.tobytes() != offsets.tobytes():  # both int64 (np.array_equal: ~3 us)
                    bad = int(np.argmax(np.diff(offs) != counts))
                    raise SchemaError(
                        f"{source}: branch '{branch}' has {offs[bad + 1] - offs[bad]} values in "
                        f"entry {start + bad} but '{first}' has {offsets[bad + 1] - offsets[bad]}"
                    )
                if branch in casts:
                    values = cast_to_schema(branch, values, counts=counts, source=source, entry_offset=start)
                if check or field_of(branch).index:
                    check_branch_values(branch, values, counts=counts, source=source, entry_offset=start)
                columns[fld] = values
            if offsets is None:
                offsets, counts = np.zeros(stop - start + 1, dtype=np.int64), np.zeros(stop - start, dtype=np.int64)
            if coll in info.counters:
                _check_counter(f"n{coll}", _numbers(arrays[f"n{coll}"]), counts, first, source, start)
            batch.put(self.label, JaggedCollection(coll, offsets, columns), coll)
        return batch


def _check_counter(counter: str, values: np.ndarray, counts: np.ndarray, branch: str, source: str, start: int) -> None:
    """The counter ``nX`` must equal ``counts``, the list lengths of the collection's branches (as e2e-validate
    checks)."""
    if values.dtype.kind not in "iu" or values.shape != counts.shape:
        raise SchemaError(f"{source}: counter '{counter}' is not one integer per event")
    big = values > np.iinfo(COUNTER_DTYPE).max  # compared as read: a cast would wrap 2**32 + n to n
    bad = big | (np.where(big, 0, values).astype(np.int64, copy=False) != counts)
    if bad.any():
        e = int(np.argmax(bad))
        raise SchemaError(
            f"{source}: branch '{branch}' has {counts[e]} values in entry {start + e} but {counter} = {values[e]}"
        )


class _Reader:
    """An open file iterating from one work item on: ``next()`` returns the arrays of the next item."""

    def __init__(
        self, info: _FileInfo, item: WorkItem, tree: str, names: list[str], executor: ThreadPoolExecutor | None
    ) -> None:
        import uproot

        self.file_path = info.path
        self.position = item.entry_start
        self.step = item.n_events
        self._file = uproot.open(info.path)
        # RNTuple pages carry checksums that uproot does not verify: checked here, cluster by cluster
        self._pages = PageChecksums(self._file[tree], names, f"{info.path}:{tree}") if info.layout.rntuple else None
        self._chunks = self._file[tree].iterate(
            names,
            entry_start=item.entry_start,
            entry_stop=info.entries,
            step_size=self.step,
            library="ak",
            decompression_executor=executor,
            interpretation_executor=executor,
            how=dict,
        )

    def continues(self, item: WorkItem) -> bool:
        """True when ``item`` is the next step of this iteration (a shorter tail starts a new one)."""
        return item.file == self.file_path and item.entry_start == self.position and item.n_events == self.step

    def next(self) -> dict[str, Any]:
        if self._pages is not None:  # before uproot decompresses them
            self._pages.check(self.position, self.position + self.step)
        arrays = next(self._chunks)
        self.position += len(next(iter(arrays.values())))
        return arrays

    def close(self) -> None:
        self._file.close()
