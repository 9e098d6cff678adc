"""Products put on an EventBatch (DESIGN.md 4.3): hit collections, JetFrames, JetGraphs and per-jet tables.

All products are columnar: flat numpy arrays plus offsets, never Python objects per jet or per event.
Jet products carry the jet bookkeeping (``event_offsets``: jets of event ``e`` of the batch are rows
``event_offsets[e]:event_offsets[e+1]``; ``jet_index``: the jet's index in its event's ``Jet``
collection) so that results map back to ``Jet`` of each event, and ``params``: the producer
parameters that made them (channels, window, k, scaling), which a tagger compares with its model.

Products are immutable once put: the dataclasses are frozen, and their arrays must not be modified in
place. The arrays are not flagged read-only, on purpose: numba types read-only arrays separately, so
every mix of read-only and writable inputs would compile (and cache) another specialisation of each
kernel; :func:`freeze` is there for callers that want the flag anyway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from dataformats.columns import Columns, event_offsets_of, jet_rows, per_jet

__all__ = [
    "COLUMN_NAME",
    "JaggedCollection",
    "JetProduct",
    "JetFrames",
    "JetGraphs",
    "JetTable",
    "JetShapes",
    "TagScores",
    "freeze",
]


#: a column name of a per-jet table, the end of its branch name ``Jet_<label>_<name>``
COLUMN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


#: the node columns JetGraphs.columns writes besides its features (a feature of the same name would replace them)
_NODE_COLUMNS = ("jet", "row", "col")


def _rows(name: str, a: Any, n: int, of: str) -> str:
    """'' if ``a`` is an array of ``n`` rows, else what it is instead (for :meth:`JetProduct.problem`; ``of``: what
    the rows are, for the message)."""
    if not isinstance(a, np.ndarray) or a.ndim == 0:
        return f"{name} is a {type(a).__name__}, not an array"
    return "" if len(a) == n else f"{name} has {len(a)} rows for {n} {of}"


def _array() -> Any:
    """A required array field of a frozen product dataclass (declared after the bookkeeping fields)."""
    return field(default=None)


def freeze(*arrays: np.ndarray | None) -> None:
    """Mark arrays read-only (e.g. in tests that check that nothing writes to a product)."""
    for a in arrays:
        if a is not None:
            a.flags.writeable = False


@dataclass(frozen=True)
class JaggedCollection:
    """One collection of the hits tree for a batch of events: ``offsets`` [n_events+1] and flat columns.

    Entries of event ``e`` are ``columns[f][offsets[e]:offsets[e+1]]``; dtypes as on disk
    (dataformats.schema).
    """

    name: str
    offsets: np.ndarray
    columns: Mapping[str, np.ndarray]
    #: what the source knows about the values beyond the schema; key ``pv_dz_max`` (cm): the entries are
    #: per-crystal sums whose d0/dz already hold only tracks with |dz| below it (RHTree track maps)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, field_name: str) -> np.ndarray:
        try:
            return self.columns[field_name]
        except KeyError:
            raise KeyError(
                f"collection {self.name} has no field '{field_name}' (read: {', '.join(self.columns)})"
            ) from None

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def event_and_local_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(event within the batch int64, index within its event int32) of every entry, in one pass."""
        from dataformats.indexing import event_and_local_index

        return event_and_local_index(self.offsets)

    def event_index(self) -> np.ndarray:
        """Event (within the batch) of every entry, int64."""
        return self.event_and_local_index()[0]

    def local_index(self) -> np.ndarray:
        """Index of every entry within its event (e.g. the jet's index in ``Jet``), int32."""
        return self.event_and_local_index()[1]


@dataclass(frozen=True)
class JetProduct:
    """Jet bookkeeping shared by every per-jet product."""

    event_offsets: np.ndarray
    jet_index: np.ndarray
    params: Mapping[str, Any]

    @property
    def n_jets(self) -> int:
        return len(self.jet_index)

    @property
    def n_events(self) -> int:
        return len(self.event_offsets) - 1

    def jet_event(self) -> np.ndarray:
        """Event (within the batch) of every jet, int64."""
        return np.repeat(np.arange(self.n_events, dtype=np.int64), np.diff(self.event_offsets))

    #: whether :meth:`columns` is implemented (writers refuse other products with one line)
    writable: ClassVar[bool] = False

    def problem(self, n_events: int) -> str:
        """'' if the bookkeeping fits a batch of ``n_events`` and the arrays the jets (O(1): shapes, not values),
        else what is wrong, for the one line that names the module that put it (e2e.process)."""
        offsets, jets = self.event_offsets, self.jet_index
        if not isinstance(offsets, np.ndarray) or offsets.shape != (n_events + 1,):
            return f"event_offsets must be an array of {n_events + 1} (the batch's events + 1)"
        if not isinstance(jets, np.ndarray) or jets.ndim != 1:
            return "jet_index must be a 1-d array"
        if offsets[0] != 0 or offsets[-1] != len(jets):
            return (
                f"event_offsets must run from 0 to the {len(jets)} jets of jet_index (got {offsets[0]}..{offsets[-1]})"
            )
        return ""

    def columns(self, name: str, jet_offsets: np.ndarray, options: Mapping[str, Any]) -> Columns:
        """The branches of this product for a tree aligned with the batch's ``Jet`` (offsets ``jet_offsets``).

        ``name``: the branch prefix (the module label); ``options``: writer options (``graph_edges``).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be written as columns")


@dataclass(frozen=True)
class JetFrames(JetProduct):
    """E2E jet images: ``data`` float32 [n_jets, C, H, W] (C-contiguous) with channel names.

    Pixel (r, c) of a jet is ECAL row ``seed_ieta - H//2 + r`` and column ``(seed_iphi - W//2 + c) mod 360``;
    phi wraps around, rows beyond the ECAL grid in eta are zero.
    """

    data: np.ndarray = _array()
    channels: tuple[str, ...] = ()

    def problem(self, n_events: int) -> str:
        found = super().problem(n_events) or _rows("data", self.data, self.n_jets, "jets")
        if not found and (self.data.ndim != 4 or self.data.shape[1] != len(self.channels)):
            found = f"data has shape {list(self.data.shape)} for {len(self.channels)} channels: expected [jets, "
            found += f"{len(self.channels)}, H, W]"
        return found

    @property
    def window(self) -> int:
        return int(self.data.shape[-1])

    def pixels(self, jets: np.ndarray | None = None) -> Any:
        """The non-zero pixels of every frame (or of ``jets``) as :class:`dataformats.sparse.FramePixels`."""
        from dataformats.sparse import frame_pixels

        return frame_pixels(self.data if jets is None else self.data[jets])

    writable = True

    def columns(self, name: str, jet_offsets: np.ndarray, options: Mapping[str, Any]) -> Columns:
        """Non-zero pixels as the collection ``<name>Pixel`` (jet, channel, row, col, value) and
        ``<name>_nPixels`` per jet (-1 for jets without a frame)."""
        per_jet_count, ch, r, c, value = self.pixels()
        offsets = event_offsets_of(per_jet_count, self.event_offsets)
        jet = np.repeat(self.jet_index.astype(np.int16), per_jet_count)
        rows = jet_rows(self.event_offsets, self.jet_index, jet_offsets)
        return Columns(
            {f"{name}_nPixels": per_jet(per_jet_count.astype(np.int32), rows, int(jet_offsets[-1]), -1)},
            {f"{name}Pixel": (offsets, {"jet": jet, "channel": ch, "row": r, "col": c, "value": value})},
        )


@dataclass(frozen=True)
class JetGraphs(JetProduct):
    """A batch of jet graphs in one flat layout (PyG-style batching).

    - ``x`` float32 [N, F]: node features named ``feature_names`` (channels, then optional
      ``delta_eta``/``delta_phi``); ``pos`` float32 [N, 2]: (row, column) pixel offset from the seed;
      ``pixel`` int32 [N]: pixel index ``row * window + column`` in the jet window.
    - ``node_offsets`` int64 [n_jets+1]: nodes of jet ``j`` are rows ``node_offsets[j]:node_offsets[j+1]``.
    - ``edge_index`` int64 [2, E]: (source, target) global node indices, PyG convention; made from
      ``neighbors`` on first use (taggers use ``neighbors`` directly and never pay for it).
    - ``neighbors`` int64 [N, k]: the fixed-k neighbour index of every node (global indices), for the
      gather + reduce form of the graph layers; ``num_neighbors`` int32 [N] or None. For kNN graphs
      (``num_neighbors`` None) ``edge_index`` is exactly the flattened ``neighbors`` (padding included,
      see frameproducers.kernels.knn_pixels), so both forms see the same edges. For radius graphs the
      unused slots of ``neighbors`` hold the node itself and ``edge_index`` holds only real edges.
    - ``jet_features`` float32 [n_jets, G] named ``jet_feature_names``: per-jet inputs that a model joins after
      pooling (G = 0 when the producer makes none).
    """

    x: np.ndarray = _array()
    pos: np.ndarray = _array()
    pixel: np.ndarray = _array()
    node_offsets: np.ndarray = _array()
    neighbors: np.ndarray = _array()
    num_neighbors: np.ndarray | None = None
    feature_names: tuple[str, ...] = ()
    jet_features: np.ndarray | None = None
    jet_feature_names: tuple[str, ...] = ()

    def problem(self, n_events: int) -> str:
        found = super().problem(n_events) or _rows("node_offsets", self.node_offsets, self.n_jets + 1, "jets + 1")
        if found:
            return found
        if self.node_offsets.ndim != 1 or self.node_offsets[0] != 0:
            return "node_offsets must be 1-d, from 0"
        n = int(self.node_offsets[-1])
        arrays = [("x", self.x), ("pos", self.pos), ("pixel", self.pixel), ("neighbors", self.neighbors)]
        found = next((p for p in (_rows(name, a, n, "nodes") for name, a in arrays) if p), "")
        if not found and (self.x.ndim != 2 or self.x.shape[1] != len(self.feature_names)):
            found = f"x has shape {list(self.x.shape)} for {len(self.feature_names)} feature names"
        if not found and self.jet_features is not None:
            found = _rows("jet_features", self.jet_features, self.n_jets, "jets")
            if not found and (self.jet_features.ndim != 2 or self.jet_features.shape[1] != len(self.jet_feature_names)):
                found = f"jet_features have shape {list(self.jet_features.shape)} for "
                found += f"{len(self.jet_feature_names)} jet feature names"
        if not found:
            bad = [f for f in (*self.feature_names, *self.jet_feature_names) if not COLUMN_NAME.fullmatch(str(f))]
            found = f"feature names {bad} are not branch names (a letter, then letters, digits, _)" if bad else ""
        for names, taken in ((self.feature_names, _NODE_COLUMNS), (self.jet_feature_names, ("nNodes",))):
            if not found and (len(set(names)) != len(names) or set(names) & set(taken)):
                found = f"feature names {list(names)} repeat a name or use one of {list(taken)} (the writer's own)"
        return found

    @cached_property
    def edge_index(self) -> np.ndarray:
        """COO edges [2, E]: edge (neighbors[i, s] -> i), ordered by target then slot (real slots only for radius)."""
        n, k = self.neighbors.shape
        if self.num_neighbors is None:
            return np.stack([self.neighbors.reshape(-1), np.repeat(np.arange(n, dtype=np.int64), k)])
        real = np.arange(k)[None, :] < self.num_neighbors[:, None]
        return np.stack([self.neighbors[real], np.repeat(np.arange(n, dtype=np.int64), self.num_neighbors)])

    @property
    def n_nodes(self) -> np.ndarray:
        """Nodes per jet, int64 [n_jets]."""
        return np.diff(self.node_offsets)

    @property
    def n_empty(self) -> int:
        """Jets whose window held no hit (graphs without nodes)."""
        return int(np.count_nonzero(self.n_nodes == 0))

    def batch_vector(self) -> np.ndarray:
        """Graph index of every node, int64 [N] (PyG ``batch``)."""
        return np.repeat(np.arange(self.n_jets, dtype=np.int64), self.n_nodes)

    writable = True

    def columns(self, name: str, jet_offsets: np.ndarray, options: Mapping[str, Any]) -> Columns:
        """Nodes as ``<name>Node`` (jet, row, col, one field per feature), edges as ``<name>Edge`` (src, dst:
        event-local node indices; left out with ``graph_edges: false``) and ``<name>_nNodes`` per jet."""
        n_nodes = self.n_nodes
        node_offsets = event_offsets_of(n_nodes, self.event_offsets)  # per event, batch-global node indices
        w = int(self.params["window"])
        nodes = {
            "jet": np.repeat(self.jet_index.astype(np.int16), n_nodes),
            "row": (self.pixel // w).astype(np.int16),
            "col": (self.pixel % w).astype(np.int16),
        }
        for i, feature in enumerate(self.feature_names):
            nodes[feature] = self.x[:, i]
        rows = jet_rows(self.event_offsets, self.jet_index, jet_offsets)
        n_all = int(jet_offsets[-1])
        per_jet_columns = {f"{name}_nNodes": per_jet(n_nodes.astype(np.int32), rows, n_all, -1)}
        if self.jet_features is not None:
            for i, feature in enumerate(self.jet_feature_names):
                per_jet_columns[f"{name}_{feature}"] = per_jet(
                    np.ascontiguousarray(self.jet_features[:, i]), rows, n_all, np.nan
                )
        out = Columns(per_jet_columns, {f"{name}Node": (node_offsets, nodes)})
        if options.get("graph_edges", True):
            src, dst = self.edge_index
            # edges are ordered by target node, so each event's edges are one contiguous range
            edge_offsets = np.searchsorted(dst, node_offsets, side="left").astype(np.int64)
            first = np.repeat(node_offsets[:-1], np.diff(edge_offsets))
            out.collections[f"{name}Edge"] = (
                edge_offsets,
                {"src": (src - first).astype(np.int32), "dst": (dst - first).astype(np.int32)},
            )
        return out

    def to_pyg(self) -> Any:
        """A torch_geometric ``Batch`` sharing memory with this product (no copy of x, pos or edges)."""
        import torch
        from torch_geometric.data import Batch

        t = torch.from_numpy
        return Batch(
            x=t(self.x),
            pos=t(self.pos),
            edge_index=t(self.edge_index),
            batch=t(self.batch_vector()),
            ptr=t(self.node_offsets),
        )


@dataclass(frozen=True)
class JetTable(JetProduct):
    """Per-jet values: ``values`` float32 [n_jets, n] with column ``names`` (jet shapes, tagger scores)."""

    values: np.ndarray = _array()
    names: tuple[str, ...] = ()

    def problem(self, n_events: int) -> str:
        found = super().problem(n_events) or _rows("values", self.values, self.n_jets, "jets")
        if found:
            return found
        names = self.names
        if self.values.ndim != 2 or self.values.shape[1] != len(names):
            return f"values have shape {list(self.values.shape)} for {len(names)} names: expected [jets, {len(names)}]"
        bad = [n for n in names if not isinstance(n, str) or not COLUMN_NAME.fullmatch(n)]
        if bad:
            return f"column names {bad} are not branch names (a letter, then letters, digits, _)"
        if len(set(names)) != len(names):
            return f"column names {list(names)} repeat a name (each is a branch of its own)"
        if self.values.dtype.kind not in "biuf" or self.values.dtype == np.float16:
            return f"values are {self.values.dtype}: expected numbers (float32 or 64, integers, bool; no float16)"
        return ""

    def column(self, name: str) -> np.ndarray:
        try:
            return self.values[:, self.names.index(name)]
        except ValueError:
            raise KeyError(f"no column '{name}' (columns: {', '.join(self.names)})") from None

    writable = True

    def columns(self, name: str, jet_offsets: np.ndarray, options: Mapping[str, Any]) -> Columns:
        """One branch ``<name>_<column>`` per column, one value per jet (NaN for jets the table does not cover)."""
        rows = jet_rows(self.event_offsets, self.jet_index, jet_offsets)
        n = int(jet_offsets[-1])
        return Columns(
            {f"{name}_{col}": per_jet(self.values[:, i], rows, n, np.nan) for i, col in enumerate(self.names)}
        )


@dataclass(frozen=True)
class JetShapes(JetTable):
    """Classical per-jet observables (frameproducers.shapes.JetShapeProducer)."""


@dataclass(frozen=True)
class TagScores(JetTable):
    """Tagger outputs per jet: class probabilities (or regressed values) named by the model's outputs."""
