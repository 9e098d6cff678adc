"""RootOutput: products written back to ROOT, aligned event by event with the input (DESIGN.md 4.4).

The tree (``Events`` by default) has one entry per input event, in input order, with the event ids
``run``, ``luminosityBlock``, ``event``; by default it is a *friend* of the input tree (same entries,
same order), with ``copy_input: true`` it also holds every input branch. Per kept product:

- per-jet tables (jet shapes, tagger scores): ``Jet_<label>_<name>`` jagged branches sharing the counter
  ``nJet`` of the input, one value per jet (NaN for a jet the product does not cover);
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

import fnmatch
import json
import os
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from dataformats.products import JaggedCollection, JetFrames, JetGraphs, JetProduct, JetTable
from dataformats.schema import COUNTER_DTYPE
from e2e.errors import ConfigError, E2EError
from e2e.event import EventBatch, split_tag
from e2e.io.source import ID_FIELDS, collection_fields
from e2e.io.treewriter import COMPRESSION, AtomicTreeWriter
from e2e.module import OutputModule
from e2e.params import param
from e2e.paths import describe_removed

WRITABLE: tuple[type, ...] = (JetTable, JetFrames, JetGraphs)
SOURCE_LABEL = "source"


def _name(tag: str) -> str:
    label, instance = split_tag(tag)
    return f"{label}_{instance}" if instance else label


def _jagged(offsets: np.ndarray, columns: dict[str, np.ndarray]) -> ak.Array:
    """A jagged record array (one list per event) built on the flat columns without copying them."""
    contents = [ak.contents.NumpyArray(np.ascontiguousarray(v)) for v in columns.values()]
    record = ak.contents.RecordArray(contents, list(columns), length=int(offsets[-1]))
    return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(np.asarray(offsets, dtype=np.int64)), record))


def _type_string(columns: dict[str, np.ndarray]) -> str:
    return "var * {" + ", ".join(f"{k}: {np.dtype(v.dtype).name}" for k, v in columns.items()) + "}"


def _jet_rows(product: JetProduct, jet_offsets: np.ndarray) -> np.ndarray | None:
    """Rows of the batch's Jet collection for the product's jets; None when they are all jets in order."""
    if product.n_jets == int(jet_offsets[-1]) and np.array_equal(product.event_offsets, jet_offsets):
        return None
    rows = jet_offsets[product.jet_event()] + product.jet_index
    if np.any(product.jet_index >= np.diff(jet_offsets)[product.jet_event()]):
        raise E2EError("a jet product refers to jets beyond nJet of its event")
    return rows


def _per_jet(values: np.ndarray, rows: np.ndarray | None, n_jets: int, fill: Any) -> np.ndarray:
    if rows is None:
        return values
    out = np.full(n_jets, fill, dtype=values.dtype)
    out[rows] = values
    return out


@dataclass
class _Chunk:
    """What one batch contributes: per-jet fields and extra per-event collections."""

    jet: dict[str, np.ndarray]
    extra: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]


def _event_offsets_of(item_counts_per_jet: np.ndarray, event_offsets: np.ndarray) -> np.ndarray:
    """Per-event offsets of items given per-jet item counts and the jets' event offsets."""
    jet_cum = np.zeros(len(item_counts_per_jet) + 1, dtype=np.int64)
    np.cumsum(item_counts_per_jet, out=jet_cum[1:])
    return jet_cum[event_offsets]


def frame_columns(name: str, frames: JetFrames, chunk: _Chunk, rows: np.ndarray | None, n_jets: int) -> None:
    """Non-zero pixels of every frame as the collection ``<name>Pixel``."""
    per_jet, ch, r, c, value = frames.pixels()
    offsets = _event_offsets_of(per_jet, frames.event_offsets)
    jet = np.repeat(frames.jet_index.astype(np.int16), per_jet)
    chunk.extra[f"{name}Pixel"] = (offsets, {"jet": jet, "channel": ch, "row": r, "col": c, "value": value})
    chunk.jet[f"{name}_nPixels"] = _per_jet(per_jet.astype(np.int32), rows, n_jets, -1)


def graph_columns(name: str, graphs: JetGraphs, chunk: _Chunk, rows: np.ndarray | None, n_jets: int,
                  edges: bool = True) -> None:
    """Nodes (and edges) of every graph as the collections ``<name>Node`` and ``<name>Edge``."""
    n_nodes = graphs.n_nodes
    node_offsets = _event_offsets_of(n_nodes, graphs.event_offsets)  # per event, batch-global node indices
    w = int(graphs.params["window"])
    nodes = {"jet": np.repeat(graphs.jet_index.astype(np.int16), n_nodes),
             "row": (graphs.pixel // w).astype(np.int16), "col": (graphs.pixel % w).astype(np.int16)}
    for i, feature in enumerate(graphs.feature_names):
        nodes[feature] = graphs.x[:, i]
    chunk.extra[f"{name}Node"] = (node_offsets, nodes)
    if edges:
        src, dst = graphs.edge_index
        # edges are ordered by target node, so each event's edges are one contiguous range
        edge_offsets = np.searchsorted(dst, node_offsets, side="left").astype(np.int64)
        first = np.repeat(node_offsets[:-1], np.diff(edge_offsets))
        chunk.extra[f"{name}Edge"] = (edge_offsets, {"src": (src - first).astype(np.int32),
                                                     "dst": (dst - first).astype(np.int32)})
    chunk.jet[f"{name}_nNodes"] = _per_jet(n_nodes.astype(np.int32), rows, n_jets, -1)


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
        graph_edges: bool = param(True, "write the edges of kept JetGraphs (false: nodes only; kNN edges are "
                                        "rebuilt from the nodes by the same kernel)")

    def __init__(self, label: str, params: Any) -> None:
        super().__init__(label, params)
        self.kept: dict[str, type] = {}
        self.skipped: list[str] = []
        self._writer: AtomicTreeWriter | None = None
        self._types: dict[str, str] | None = None
        self._provenance: dict[str, Any] = {}
        self.entries = 0

    def select(self, available: dict[str, type]) -> None:
        """Resolve ``keep`` against the products modules can make (tag -> product type)."""
        self.kept, self.skipped = {}, []
        for pattern in self.params.keep:
            matched = [t for t in available if fnmatch.fnmatchcase(t, pattern) or
                       fnmatch.fnmatchcase(split_tag(t)[0], pattern) and ":" not in pattern]
            if not matched:
                raise ConfigError(f"{self.label}.keep: '{pattern}' matches no module product "
                                  f"(products: {', '.join(available) or 'none'})")
            for tag in matched:
                tp = available[tag]
                if issubclass(tp, WRITABLE):
                    self.kept[tag] = tp
                elif not glob_like(pattern):
                    raise ConfigError(f"{self.label}.keep: product '{tag}' is a {tp.__name__}, which RootOutput "
                                      f"cannot write (writable: {', '.join(t.__name__ for t in WRITABLE)})")
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
        return {} if self.params.copy_input else {f"{SOURCE_LABEL}:Jet": ("pt",)}

    def output_paths(self) -> list[str]:
        return [self.params.file]

    def set_provenance(self, info: dict[str, Any]) -> None:
        """Provenance written as ``e2e_products``; input paths are also recorded relative to the output's
        directory, so e2e-eval finds them when the input and the output are moved together."""
        self._provenance = dict(info)
        out_dir = os.path.dirname(os.path.abspath(self.params.file))
        self._provenance["inputs_relative_to_output"] = [p if "://" in p else os.path.relpath(p, out_dir)
                                                         for p in info.get("inputs", [])]

    def _columns(self, batch: EventBatch) -> dict[str, Any]:
        jets: JaggedCollection = batch.get(f"{SOURCE_LABEL}:Jet")
        n_jets = len(jets)
        chunk = _Chunk({}, {})
        if self.params.copy_input:
            chunk.jet.update(jets.columns)
        for tag in self.kept:
            product = batch.get(tag)
            name = _name(tag)
            rows = _jet_rows(product, jets.offsets)
            if isinstance(product, JetTable):
                for i, col in enumerate(product.names):
                    chunk.jet[f"{name}_{col}"] = _per_jet(product.values[:, i], rows, n_jets, np.nan)
            elif isinstance(product, JetFrames):
                frame_columns(name, product, chunk, rows, n_jets)
            elif isinstance(product, JetGraphs):
                graph_columns(name, product, chunk, rows, n_jets, self.params.graph_edges)
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
        data.update(chunk.extra)
        return data

    def prepare(self, batch: EventBatch) -> None:
        """Build (not write) the columns of a batch once, so the kernels they use are compiled before the loop."""
        self._columns(batch)

    def write(self, batch: EventBatch) -> None:
        data = self._columns(batch)
        types = {k: (_type_string(v[1]) if isinstance(v, tuple) else v.dtype) for k, v in data.items()}
        if self._writer is None:
            self.record_products(batch)
            self._types = types
            self._writer = AtomicTreeWriter(self.params.file, types, self.params.tree, self.params.compression,
                                            self.params.compression_level)
        elif types != self._types:
            changed = [k for k in types if types[k] != self._types.get(k)]
            raise E2EError(f"{self.label}: the branches of {', '.join(changed)} changed between batches")
        if batch.n_events:
            self._writer.extend({k: (_jagged(*v) if isinstance(v, tuple) else v) for k, v in data.items()})
            self.entries += batch.n_events

    def record_products(self, batch: EventBatch) -> None:
        """Remember the producer parameters of the kept products (written as ``e2e_products``)."""
        for tag in self.kept:
            product = batch.get(tag)
            self._provenance.setdefault("products", {})[tag] = {"type": type(product).__name__,
                                                                **dict(getattr(product, "params", {}))}

    def close(self) -> str:
        if self._writer is None:
            return f"{self.params.file}: nothing written"
        self._writer.write_string("e2e_products", json.dumps(self._provenance, sort_keys=True, default=str))
        removed = f"; {describe_removed(self._writer.removed)}" if self._writer.removed else ""
        path = self._writer.close()
        self._writer = None
        kind = "with a copy of the input" if self.params.copy_input else "friend of the input"
        skipped = f"; not writable, skipped: {', '.join(self.skipped)}" if self.skipped else ""
        return f"{path}: tree {self.params.tree}, {self.entries} entries ({kind}){skipped}{removed}"

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


def glob_like(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")
