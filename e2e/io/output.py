"""RootOutput: products written back to ROOT, aligned event by event with the input (DESIGN.md 4.4).

The tree (``Events`` by default) has one entry per input event, in input order, with the event ids
``run``, ``luminosityBlock``, ``event``; by default it is a *friend* of the input tree (same entries,
same order), with ``copy_input: true`` it also holds every input branch. Per kept product:

- per-jet tables (jet shapes, tagger scores): ``Jet_<label>_<name>`` jagged branches sharing the counter
  ``nJet`` of the input, one value per jet (NaN for a jet the product does not cover), and by default the jet
  four-vector ``Jet_pt``, ``Jet_eta``, ``Jet_phi``, ``Jet_mass`` (``jet_kinematics``), so coffea's NanoAODSchema
  reads the friend alone with the scores as ``events.Jet`` fields;
- ``JetFrames``: the non-zero pixels as a collection ``<label>Pixel`` (``_jet`` event-local jet index,
  ``_channel``, ``_row``, ``_col``, ``_value``) and ``Jet_<label>_nPixels``;
- ``JetGraphs``: nodes ``<label>Node`` (``_jet``, ``_row``, ``_col`` in the window as for frames, and one
  branch per feature) and
  edges ``<label>Edge`` (``_src``, ``_dst``: event-local node indices, PyG direction source -> target),
  with ``Jet_<label>_nNodes``.

The file is written incrementally (mktree/extend, LZ4 by default) under a temporary name and renamed
when complete; a TObjString ``e2e_products`` holds the producer parameters of every kept product as JSON.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from dataformats.columns import Columns
from dataformats.products import JaggedCollection, JetProduct
from dataformats.schema import COUNTER_DTYPE
from e2e.errors import ConfigError, E2EError, short
from e2e.event import EventBatch, split_tag
from e2e.eventids import ids_digest
from e2e.io.source import ID_FIELDS, collection_fields
from e2e.io.treewriter import COMPRESSION, AtomicTreeWriter
from e2e.module import OutputModule, UnitPart
from e2e.params import param
from e2e.paths import describe_removed

SOURCE_LABEL = "source"
#: Jet fields written beside the products by default (the four-vector coffea's NanoAODSchema needs for Jet).
JET_KINEMATICS = ("pt", "eta", "phi", "mass")


def _add(chunk: Columns, owners: dict[str, str], cols: Columns, who: str, where: str) -> None:
    """``chunk`` += ``cols`` (written by ``who``), unless one of their branches (``Jet_<key>``, or a collection's
    name) is taken, as ``owners`` (branch -> why) says: one line (a module labelled ``gen`` with a ``mass`` column
    would replace the input's ``Jet_gen_mass`` without a word)."""
    for name in [*(f"Jet_{key}" for key in cols.jet), *cols.collections]:
        if name in owners:
            raise ConfigError(
                f"{where}: branch {name} of {who} {owners[name]}: rename the module (its label names its branches) "
                "or leave it out of keep"
            )
        owners[name] = f"is also written by {who}"
    chunk.update(cols)


def _name(tag: str) -> str:
    label, instance = split_tag(tag)
    return f"{label}_{instance}" if instance else label


def _jagged(offsets: np.ndarray, columns: dict[str, np.ndarray]) -> ak.Array:
    """A jagged record array (one list per event) built on the flat columns without copying them."""
    contents = [ak.contents.NumpyArray(np.ascontiguousarray(v)) for v in columns.values()]
    return _lists(offsets, ak.contents.RecordArray(contents, list(columns), length=int(offsets[-1])))


def jagged_column(offsets: np.ndarray, values: np.ndarray) -> ak.Array:
    """One flat column split by ``offsets`` (int64 [n+1] from 0) into lists, built from its layout without copying
    (``ak.unflatten`` costs ~0.5 ms per call: the in-memory API's single-event budget is ~1 ms)."""
    return _lists(offsets, ak.contents.NumpyArray(np.ascontiguousarray(values)))


def _lists(offsets: np.ndarray, content: Any) -> ak.Array:
    return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(np.asarray(offsets, dtype=np.int64)), content))


def _type_string(columns: dict[str, np.ndarray]) -> str:
    return "var * {" + ", ".join(f"{k}: {np.dtype(v.dtype).name}" for k, v in columns.items()) + "}"


def _other_branches(label: str, before: dict[str, Any], now: dict[str, Any], input_file: str, copying: bool) -> str:
    """The one-line error of a batch (of ``input_file``) whose branches differ from the earlier batches' of one
    output file: those it lacks and those it adds, by name."""

    def branches(types: dict[str, Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, tp in types.items():
            fields = re.findall(r"(\w+): (\w+)", tp) if isinstance(tp, str) else []
            out.update({f"{key}_{f}": t for f, t in fields} if fields else {key: str(tp)})
        return out

    old, new = branches(before), branches(now)
    lacks = [b for b in old if b not in new]
    adds = [b for b in new if b not in old]
    retyped = [f"{b} ({old[b]} -> {new[b]})" for b in new if b in old and old[b] != new[b]]
    what = "; ".join(
        f"{word} {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}"
        for word, names in (("without", lacks), ("with", adds), ("retyped", retyped))
        if names
    )
    hint = (
        ": this output copies each input's branches (copy_input), Jet truth included where a file has it; give "
        "inputs that all have the same branches, or per_file: true (an output file per input)"
        if copying
        else ""
    )
    return f"{label}: {input_file} gives other branches than the earlier inputs of its output file ({what}){hint}"


def _writable(tp: type) -> bool:
    return issubclass(tp, JetProduct) and tp.writable


class RootOutput(OutputModule):
    """Write the event ids and the kept products; a friend tree of the input by default."""

    @dataclass
    class Params:
        file: str = param("output/e2e_output.root", "output ROOT file (written atomically)")
        tree: str = param("Events", "name of the output tree")
        keep: list[str] = param(["*"], "module labels (or label:instance; glob patterns) whose products are written")
        copy_input: bool = param(False, "also copy every input branch (default: a friend tree with the ids only)")
        compression: str = param("lz4", "compression algorithm", choices=tuple(COMPRESSION))
        compression_level: int = param(1, "compression level", minimum=1, maximum=9)
        graph_edges: bool = param(
            True,
            "write the edges of kept JetGraphs (false: nodes only; kNN edges are "
            "rebuilt from the nodes by the same kernel)",
        )
        per_file: bool = param(
            False,
            "one friend file per input file, named by `file` with {stem} (the input's name without its "
            "extension), e.g. output/{stem}_tagged.root",
        )
        jet_kinematics: bool = param(
            True,
            "also write Jet_pt, Jet_eta, Jet_phi, Jet_mass, so the friend alone is a "
            "NanoAOD-style file: coffea's NanoAODSchema makes events.Jet four-vectors "
            "with the scores as fields",
        )

    def __init__(self, label: str, params: Any) -> None:
        super().__init__(label, params)
        self.kept: dict[str, type] = {}
        self.skipped: list[str] = []
        self._writer: AtomicTreeWriter | None = None
        self._types: dict[str, Any] | None = None
        self._provenance: dict[str, Any] = {}
        self.entries = 0
        self._inputs: list[str] = []  # the run's inputs: per_file writes an output for each, empty if it gave no events
        self._current: tuple[str, str] | None = None  # (output path, input file) of the open writer
        self._done: list[tuple[str, int, str]] = []  # (path, entries, removed temporaries) of finished files
        self._pending: list[AtomicTreeWriter] = []  # finished files under their temporary names, until commit()
        if not params.per_file and "{stem}" in params.file:
            raise ConfigError(
                f"{label}.file: '{params.file}' names {{stem}} (the input file's name), which only per_file: true fills"
            )
        if not params.tree.strip("/ "):
            raise ConfigError(f"{label}.tree: an empty name; give the output tree's name (default Events)")
        parts = params.tree.split("/")
        if ";" in params.tree or any(p != p.strip() or not p for p in parts) or params.tree == "e2e_products":
            raise ConfigError(
                f"{label}.tree: {short(params.tree)} is not a name ROOT and uproot read back: expected a name, or "
                "directories and a name joined by single '/' (e.g. Events, friends/Tagged), without ';' (a key's "
                "cycle), spaces around the parts, or e2e_products (the provenance's key)"
            )
        if params.per_file and "{stem}" not in params.file:
            raise ConfigError(
                f"{label}.file: with per_file: true the name must contain {{stem}} (the input file's name), "
                f"e.g. output/{{stem}}_tagged.root; got '{params.file}'"
            )

    def select(self, available: Mapping[str, type]) -> None:
        """Resolve ``keep`` against the products modules can make (tag -> product type)."""
        self.kept, self.skipped = {}, []
        for pattern in self.params.keep:
            matched = [
                t
                for t in available
                if fnmatch.fnmatchcase(t, pattern)
                or fnmatch.fnmatchcase(split_tag(t)[0], pattern)
                and ":" not in pattern
            ]
            if not matched:
                raise ConfigError(
                    f"{self.label}.keep: '{pattern}' matches no module product "
                    f"(products: {', '.join(available) or 'none'})"
                )
            for tag in matched:
                tp = available[tag]
                if _writable(tp):
                    self.kept[tag] = tp
                elif not glob_like(pattern):
                    raise ConfigError(
                        f"{self.label}.keep: product '{tag}' is a {tp.__name__}, which RootOutput "
                        "cannot write (writable: jet products with columns(), e.g. JetTable, "
                        "JetFrames, JetGraphs)"
                    )
                elif tag not in self.skipped:
                    self.skipped.append(tag)

    def consumes(self) -> dict[str, type | None]:
        out: dict[str, type | None] = dict(self.kept)
        out[f"{SOURCE_LABEL}:Jet"] = JaggedCollection  # nJet of every event, to align per-jet branches
        if self.params.copy_input:
            for coll in collection_fields(True):
                out[f"{SOURCE_LABEL}:{coll}"] = JaggedCollection
        return out

    def fields_needed(self) -> dict[str, tuple[str, ...]]:
        if self.params.copy_input:
            return {}
        return {f"{SOURCE_LABEL}:Jet": JET_KINEMATICS if self.params.jet_kinematics else ("pt",)}

    def set_inputs(self, inputs: list[str]) -> None:
        self._inputs = list(inputs)

    def target(self, input_file: str) -> str:
        """The output file that the events of ``input_file`` go to."""
        if not self.params.per_file:
            return self.params.file
        stem = os.path.splitext(os.path.basename(input_file.split("?", 1)[0]))[0]
        return self.params.file.replace("{stem}", stem)

    def output_paths(self) -> list[str]:
        if not self.params.per_file:
            return [self.params.file]
        seen: dict[str, str] = {}
        for path in self._inputs:
            out = self.target(path)
            if out in seen:
                raise ConfigError(
                    f"{self.label}.file: inputs '{seen[out]}' and '{path}' would both write {out} (per_file: the "
                    "output is named by the input file's name)"
                )
            seen[out] = path
        return list(seen)

    def set_provenance(self, info: Mapping[str, Any]) -> None:
        """Provenance written as ``e2e_products``; input paths are also recorded relative to the output's
        directory, so e2e-eval finds them when the input and the output are moved together (with per_file, each
        file records its own input only)."""
        self._provenance = dict(info)

    def _file_provenance(self, out_path: str, input_file: str) -> dict[str, Any]:
        info = {**self._provenance, "tree": self.params.tree}  # (e2e-eval and e2e-display find the tree by it)
        if self.params.per_file:
            mine = os.path.abspath(input_file)
            info["inputs"] = [p for p in info.get("inputs", []) if os.path.abspath(p) == mine]
            if "skipped_entries" in info:  # this input's only
                info["skipped_entries"] = [e for e in info["skipped_entries"] if os.path.abspath(e["file"]) == mine]
                info["skipped_units"] = [u for u in info.get("skipped_units", []) if u.startswith(f"{mine}:")]
        out_dir = os.path.dirname(os.path.abspath(out_path))
        info["inputs_relative_to_output"] = [
            p if "://" in p else os.path.relpath(p, out_dir) for p in info.get("inputs", [])
        ]
        return info

    def _columns(self, batch: EventBatch) -> dict[str, Any]:
        jets: JaggedCollection = batch.get(f"{SOURCE_LABEL}:Jet")
        inputs: dict[str, Any] = {}
        if self.params.copy_input:
            inputs = dict(jets.columns)
        elif self.params.jet_kinematics:
            inputs = {k: jets[k] for k in JET_KINEMATICS}
        # the branches this output writes besides the products: the ids, the input's copy or the jet four-vector
        owners = dict.fromkeys(ID_FIELDS, "is an event id")
        if self.params.copy_input:
            copied = [*(f"Jet_{f}" for f in jets.columns), *(c for c in collection_fields(True) if c != "Jet")]
            owners.update(dict.fromkeys(copied, "is a branch of the input, which this output copies (copy_input)"))
        else:
            owners.update(dict.fromkeys([f"Jet_{f}" for f in inputs], "is the jet four-vector (jet_kinematics)"))
        chunk = self.product_columns(batch, owners)
        chunk.jet = {**inputs, **chunk.jet}
        data: dict[str, Any] = {k: batch.ids[k] for k in ID_FIELDS}
        for coll in collection_fields(True):
            if coll == "Jet":
                if chunk.jet:
                    data["Jet"] = (jets.offsets, chunk.jet)
                else:
                    data["nJet"] = jets.counts.astype(COUNTER_DTYPE)
            elif self.params.copy_input:
                c: JaggedCollection = batch.get(f"{SOURCE_LABEL}:{coll}")
                data[coll] = (c.offsets, dict(c.columns))
        data.update(chunk.collections)
        return data

    def product_columns(self, batch: EventBatch, owners: dict[str, str] | None = None) -> Columns:
        """The columns of the kept products of ``batch``, as this output writes them (its options applied); a branch
        that two of them (or one of them and ``owners``: branch -> what writes it) would write is one line."""
        jets: JaggedCollection = batch.get(f"{SOURCE_LABEL}:Jet")
        options = {"graph_edges": self.params.graph_edges}
        chunk = Columns()
        owners = {} if owners is None else owners
        for tag in self.kept:
            _add(chunk, owners, batch.get(tag).columns(_name(tag), jets.offsets, options), f"'{tag}'", self.label)
        return chunk

    def prepare(self, batch: EventBatch) -> None:
        """Build (not write) the columns of a batch once, so the kernels they use are compiled before the loop."""
        self._columns(batch)

    def write(self, batch: EventBatch) -> None:
        if self._types is None:
            self.record_products(batch)
        self._append(self._columns(batch), batch.n_events, batch.file)

    def _append(self, data: dict[str, Any], n: int, input_file: str) -> None:
        """Write ``n`` entries (columns as ``_columns`` builds them) of ``input_file`` to its output file."""
        types = {k: (_type_string(v[1]) if isinstance(v, tuple) else v.dtype) for k, v in data.items()}
        out = self.target(input_file)
        new_file = self._current is None or self._current[0] != out
        if self._types is None or (self.params.per_file and new_file):  # per_file: each file has its own branches
            self._types = types
        elif types != self._types:
            raise E2EError(_other_branches(self.label, self._types, types, input_file, self.params.copy_input))
        if self._writer is not None and self._current is not None and self._current[0] != out:
            self._finish()
        writer = self._writer if self._writer is not None else self._open(out, input_file)
        if n:
            writer.extend({k: (_jagged(*v) if isinstance(v, tuple) else v) for k, v in data.items()})
            self.entries += n
            self._file_entries += n

    def _open(self, out: str, input_file: str) -> AtomicTreeWriter:
        """Start the output file ``out`` of ``input_file`` (atomic, with the branch types of the first batch)."""
        assert self._types is not None
        self._writer = AtomicTreeWriter(
            out, self._types, self.params.tree, self.params.compression, self.params.compression_level
        )
        self._current, self._file_entries = (out, input_file), 0
        return self._writer

    def _finish(self) -> None:
        """Close the open file (provenance, rename into place)."""
        assert self._writer is not None and self._current is not None
        out, input_file = self._current
        info = self._file_provenance(out, input_file)
        self._writer.write_string("e2e_products", json.dumps(info, sort_keys=True, default=str))
        removed = f"; {describe_removed(self._writer.removed)}" if self._writer.removed else ""
        path = self._writer.close(commit=False)  # renamed into place by commit(), once the whole run has succeeded
        self._pending.append(self._writer)
        self._writer, self._current = None, None
        self._done.append((str(path), self._file_entries, removed))

    def _write_empty_files(self) -> None:
        """per_file: the output of each input of the run that gave no events (none in the file, cut off by
        ``max_events``, skipped by --skip-bad-files: 0 entries, every branch), as a single output of an empty input is
        written, so that no earlier file of the same name is left in place; the branch types are those of the files
        written (or of the empty batch)."""
        if not self.params.per_file or self._types is None:
            return
        done = {os.path.abspath(path) for path, _, _ in self._done}
        for input_file in self._inputs:
            out = self.target(input_file)
            if os.path.abspath(out) in done:
                continue
            self._open(out, input_file)
            self._finish()
            done.add(os.path.abspath(out))

    def record_products(self, batch: EventBatch) -> None:
        """Remember the producer parameters of the kept products (written as ``e2e_products``)."""
        for tag in self.kept:
            product = batch.get(tag)
            self._provenance.setdefault("products", {})[tag] = {
                "type": type(product).__name__,
                **dict(getattr(product, "params", {})),
            }

    def close(self) -> str:
        if self._writer is not None:
            self._finish()
        self._write_empty_files()
        if not self._done:
            return f"{self.params.file}: nothing written"
        lacking = bool(self._provenance.get("skipped_entries"))  # (--skip-bad-files skipped some)
        kind = {
            (False, False): "friend of the input",
            (True, False): "with a copy of the input",
            (False, True): "not a friend of the input: the entries skipped are missing",
            (True, True): "with a copy of the input less the entries skipped",
        }[(self.params.copy_input, lacking)]
        if lacking and self.params.per_file:  # each file lacks only its own input's skipped entries, if any
            kind = "each a friend of its input less the entries skipped there: see skipped_entries in its provenance"
        skipped = f"; not writable, skipped: {', '.join(self.skipped)}" if self.skipped else ""
        done, self._done = self._done, []
        if not self.params.per_file:
            path, entries, removed = done[0]
            return f"{path}: tree {self.params.tree}, {entries} entries ({kind}){skipped}{removed}"
        removed = "".join(dict.fromkeys(r for _, _, r in done if r))  # (each starts with "; ")
        return (
            f"{len(done)} files {self.params.file} (per_file), tree {self.params.tree}, {self.entries} entries "
            f"({kind}){skipped}{removed}"
        )

    def commit(self) -> None:
        pending, self._pending = self._pending, []
        for i, writer in enumerate(pending):
            try:
                writer.commit()
            except BaseException:
                for rest in pending[i:]:  # the one that failed too: no temporary is left behind
                    rest.abort()
                raise

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        pending, self._pending = self._pending, []
        for writer in pending:  # closed, not committed: their temporaries go
            writer.abort()

    def for_part(self, path: str) -> RootOutput:
        part = RootOutput(self.label, dataclasses.replace(self.params, file=path, per_file=False))
        part.kept, part.skipped = dict(self.kept), list(self.skipped)
        return part

    def part_is_complete(self, path: str, entries: int) -> bool:
        """The part opens, is as long as its header says (not truncated), and its tree has ``entries`` entries in
        every branch's baskets."""
        import uproot

        try:
            with uproot.open(path) as f:
                if os.path.getsize(path) < f.file.fEND:
                    return False
                tree = f[self.params.tree]
                return bool(
                    tree.num_entries == entries
                    and all(b.entry_offsets[-1] == entries for b in tree.branches)
                    and "e2e_products" in f
                )
        except Exception:  # whatever uproot raises for a damaged file: the unit is run again
            return False

    def assemble(self, parts: list[UnitPart]) -> str:
        """Concatenate the parts' trees in plan order into the final file(s) (the same branches and types as an
        iterative run; with per_file one file per input), each part checked to hold the event ids its unit read;
        the products recorded by the first part join this run's provenance."""
        import uproot

        self.entries = 0
        try:
            for part in parts:
                try:
                    with uproot.open(part.path) as f:
                        data = read_part(f[self.params.tree])
                        if self._types is None:
                            products = json.loads(str(f["e2e_products"])).get("products", {})
                            if products:
                                self._provenance["products"] = products
                except (E2EError, KeyboardInterrupt):
                    raise
                except Exception as err:  # damaged after it was written: one line naming it
                    why = " ".join(str(err).split())[:200] or type(err).__name__
                    with contextlib.suppress(OSError):  # so that --resume runs that unit again
                        os.remove(part.path)
                    raise E2EError(
                        f"{part.unit}: its part {part.path} cannot be read ({why}); run again with --resume to "
                        "redo that unit"
                    ) from None
                if ids_digest({k: data[k] for k in ID_FIELDS}) != part.ids_digest:
                    raise E2EError(
                        f"exactly-once check: {part.unit}: its part {part.path} holds other event ids than it read"
                    )
                self._append(data, len(data[ID_FIELDS[0]]), part.input)
            return self.close()
        except BaseException:
            self.abort()
            raise


def read_part(tree: Any) -> dict[str, Any]:
    """A RootOutput tree read back in the form ``_columns`` builds: scalars, and per collection (counter ``nX``
    and branches ``X_field``) the offsets and flat columns."""
    arrays = tree.arrays(library="ak", how=dict)
    names = list(arrays)
    counters = {k[1:] for k in names if k.startswith("n") and any(b.startswith(k[1:] + "_") for b in names)}
    data: dict[str, Any] = {}
    for name in names:
        if name.startswith("n") and name[1:] in counters:
            coll = name[1:]
            offsets = np.zeros(len(arrays[name]) + 1, dtype=np.int64)
            np.cumsum(ak.to_numpy(arrays[name]), out=offsets[1:])
            columns = {
                b[len(coll) + 1 :]: ak.to_numpy(ak.flatten(arrays[b]))
                for b in names
                if b.startswith(coll + "_") and max((c for c in counters if b.startswith(c + "_")), key=len) == coll
            }
            data[coll] = (offsets, columns)
        elif not any(name.startswith(c + "_") for c in counters):
            data[name] = ak.to_numpy(arrays[name])
    return data


def glob_like(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")
