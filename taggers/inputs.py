"""Input kinds: how one kind of product feeds a network, for training and for inference.

One object per product kind (graphs, frames, table) owns everything that differs between them: the product
type it reads, the tagger module that serves it, the producer parameters a model records as its input spec,
compact storage of selected jets for training datasets, collation into model inputs (the ONNX input names and
their dynamic axes), the statistics for input standardisation, the size arguments filled into an architecture
(``n_features`` / ``n_channels``) and inference micro-batches. Training (training/) and the taggers
(taggers/modules.py) both go through these objects, so the same product gives the same inputs in both.

A new kind is a subclass registered in :data:`INPUT_KINDS`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np

from dataformats.products import JetFrames, JetGraphs, JetProduct, JetTable

Arrays = dict[str, np.ndarray]
#: jets per chunk of the input statistics (bounded memory with a dataset on disk)
STAT_CHUNK = 2000


def _offsets(counts: np.ndarray) -> np.ndarray:
    off = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])
    return off


def _ranges(offsets: np.ndarray, jets: np.ndarray) -> np.ndarray:
    """Concatenated index ranges offsets[j]:offsets[j+1] of ``jets``."""
    if not len(jets):
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(offsets[j], offsets[j + 1]) for j in jets])


def jet_groups(n_jets: int, step: int, parts: int = 1) -> list[tuple[int, int]]:
    """``(first, stop)`` jets of consecutive groups of at most ``step`` jets covering ``0..n_jets``: groups of ``step``
    (the last one shorter), or, with ``parts > 1``, as many groups as the least multiple of ``parts`` that allows
    (at most one per jet), of sizes that differ by at most one, so that ``parts`` threads finish together."""
    if step < 1 or parts < 1:
        raise ValueError(f"step and parts must be >= 1, got {step} and {parts}")
    if parts == 1 or n_jets == 0:
        return [(a, min(a + step, n_jets)) for a in range(0, n_jets, step)]
    count = -(-n_jets // step)
    count = min(count + -count % parts, n_jets)
    bounds = [i * n_jets // count for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


class InputKind:
    """How products of one kind become model inputs (see the module docstring)."""

    name: ClassVar[str]
    product: ClassVar[type[JetProduct]]
    #: the module type that serves models of this kind, and the name of its input parameter
    tagger: ClassVar[str]
    tagger_param: ClassVar[str]
    #: model (ONNX) input names in call order, and their dynamic axes
    input_names: ClassVar[tuple[str, ...]]
    dynamic_axes: ClassVar[dict[str, dict[int, str]]]
    #: producer parameters recorded in a model's input spec (checked against the producer at inference)
    spec_keys: ClassVar[tuple[str, ...]]
    #: architecture arguments this kind fills in from the data
    size_args: ClassVar[tuple[str, ...]]
    #: stored arrays with a row per node or pixel (training keeps them on disk); the rest have a row per jet
    bulky: ClassVar[tuple[str, ...]] = ()
    #: model inputs that are mostly zeros: sent to a CUDA device as their non-zero elements (taggers/transfer.py)
    sparse_inputs: ClassVar[tuple[str, ...]] = ()

    def record(self, product: JetProduct) -> dict[str, Any]:
        """The product's parameters as a model records and checks them."""
        return dict(product.params)

    def store(self, product: JetProduct, jets: np.ndarray) -> Arrays:
        """Compact arrays of the selected ``jets`` of one batch (concatenated over batches by the dataset)."""
        raise NotImplementedError

    def finish(self, arrays: Arrays) -> Arrays:
        """Index arrays added once every batch is stored (offsets from counts)."""
        return arrays

    def inputs(self, arrays: Arrays, params: Mapping[str, Any], jets: np.ndarray) -> Arrays:
        """Model inputs of stored jets ``jets`` (collation), name -> array, in ``input_names`` order."""
        raise NotImplementedError

    def sizes(self, arrays: Arrays, params: Mapping[str, Any]) -> dict[str, int]:
        """The ``size_args`` of an architecture for these data."""
        raise NotImplementedError

    def statistics(self, arrays: Arrays, params: Mapping[str, Any], jets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of the inputs over ``jets``, shaped as the network's ``shift``/``scale`` buffers."""
        raise NotImplementedError

    def micro_batches(self, product: JetProduct, step: int, parts: int = 1) -> Iterator[Arrays]:
        """Model inputs of consecutive groups of at most ``step`` jets of a product (inference; :func:`jet_groups`,
        ``parts``: balanced over that many threads); by default the one input is the product's per-jet array sliced
        by jet."""
        name, rows = self.input_names[0], self.per_jet(product)
        for a, b in jet_groups(len(rows), step, parts):
            yield {name: rows[a:b]}

    def per_jet(self, product: JetProduct) -> np.ndarray:
        """The product's array with one row per jet (kinds with a single per-jet input)."""
        raise NotImplementedError

    def feature_names(self, product: JetProduct) -> tuple[str, ...]:
        """Names of the product's features (node features, channels, columns), for models fed by name."""
        raise NotImplementedError


class GraphInput(InputKind):
    """JetGraphs: node features, the fixed-k neighbour index, the graph of every node, graph offsets."""

    name = "graphs"
    product = JetGraphs
    tagger, tagger_param = "GNNTagger", "graphs"
    #: ``jet`` (float32 [n_jets, G], the product's jet_features) is fed only when the product has per-jet inputs
    input_names = ("x", "neighbors", "batch", "ptr", "jet")
    dynamic_axes = {
        "x": {0: "nodes"},
        "neighbors": {0: "nodes"},
        "batch": {0: "nodes"},
        "ptr": {0: "ptr"},
        "jet": {0: "jets"},
    }
    spec_keys = (
        "channels",
        "window",
        "k",
        "hcal_upsample",
        "thresholds",
        "scale",
        "impact",
        "dz_max",
        "coordinates",
        "edges",
        "space",
        "self_loops",
        "radius",
        # hit graphs (frameproducers.hitgraphs); a model without ``nodes`` was trained on pixel graphs
        "nodes",
        "track_pt_min",
        "max_tracks",
        "ecal_threshold",
        "max_ecal",
        "hcal_threshold",
        "max_hcal",
        "tracker_layers",
        "max_tracker_hits",
        "ipsig_clip",
        "features",
        "jet_features",
    )
    #: ``n_jet_features`` only for products with per-jet inputs
    size_args = ("n_features", "n_jet_features")
    bulky = ("x", "pixel")

    def store(self, product: JetProduct, jets: np.ndarray) -> Arrays:
        assert isinstance(product, JetGraphs)
        nodes = _ranges(product.node_offsets, jets)
        out = {"x": product.x[nodes], "pixel": product.pixel[nodes], "n_nodes": product.n_nodes[jets]}
        if product.jet_features is not None and product.jet_features.shape[1]:
            out["jet"] = product.jet_features[jets]
        return out

    def finish(self, arrays: Arrays) -> Arrays:
        return {**arrays, "node_offsets": _offsets(arrays["n_nodes"])}

    def inputs(self, arrays: Arrays, params: Mapping[str, Any], jets: np.ndarray) -> Arrays:
        """Edges are rebuilt by the producer's own rule (frameproducers.graphs.graph_edges) with the product's
        recorded parameters, so training sees the graphs inference serves."""
        from frameproducers.graphs import graph_edges

        off = arrays["node_offsets"]
        n = off[jets + 1] - off[jets]
        ptr = _offsets(n)
        nodes = _ranges(off, jets)
        pixel = np.ascontiguousarray(arrays["pixel"][nodes])
        x = np.ascontiguousarray(arrays["x"][nodes])
        neighbors, _ = graph_edges(pixel, x, ptr, params)
        out = {"x": x, "neighbors": neighbors, "batch": np.repeat(np.arange(len(jets), dtype=np.int64), n), "ptr": ptr}
        if "jet" in arrays:
            out["jet"] = np.ascontiguousarray(arrays["jet"][jets])
        return out

    def sizes(self, arrays: Arrays, params: Mapping[str, Any]) -> dict[str, int]:
        sizes = {"n_features": int(arrays["x"].shape[1])}
        if "jet" in arrays:
            sizes["n_jet_features"] = int(arrays["jet"].shape[1])
        return sizes

    def statistics(self, arrays: Arrays, params: Mapping[str, Any], jets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of every node feature, in chunks of jets (merged as Chan et al.)."""
        n, mean, m2 = 0, np.zeros(arrays["x"].shape[1]), np.zeros(arrays["x"].shape[1])
        for a in range(0, len(jets), STAT_CHUNK):
            x = np.asarray(arrays["x"][_ranges(arrays["node_offsets"], jets[a : a + STAT_CHUNK])], dtype=np.float64)
            if not len(x):
                continue
            mx = x.mean(0)
            mx2 = ((x - mx) ** 2).sum(0)
            total = n + len(x)
            delta = mx - mean
            mean = mean + delta * (len(x) / total)
            m2 = m2 + mx2 + delta**2 * (n * len(x) / total)
            n = total
        return mean, np.sqrt(m2 / max(n, 1))

    def feature_names(self, product: JetProduct) -> tuple[str, ...]:
        assert isinstance(product, JetGraphs)
        return product.feature_names

    def micro_batches(self, product: JetProduct, step: int, parts: int = 1) -> Iterator[Arrays]:
        assert isinstance(product, JetGraphs)
        batch_vector = product.batch_vector()
        jet_features = product.jet_features
        if jet_features is not None and not jet_features.shape[1]:
            jet_features = None
        for a, b in jet_groups(product.n_jets, step, parts):
            na, nb = int(product.node_offsets[a]), int(product.node_offsets[b])
            inputs = {
                "x": product.x[na:nb],
                "neighbors": product.neighbors[na:nb] - na,
                "batch": batch_vector[na:nb] - a,
                "ptr": product.node_offsets[a : b + 1] - na,
            }
            if jet_features is not None:
                inputs["jet"] = jet_features[a:b]
            yield inputs


class FrameInput(InputKind):
    """JetFrames: dense images [n_jets, C, W, W]; stored as their non-zero pixels for training."""

    name = "frames"
    product = JetFrames
    tagger, tagger_param = "CNNTagger", "frames"
    input_names = ("frames",)
    dynamic_axes = {"frames": {0: "jets"}}
    spec_keys = ("channels", "window", "hcal_upsample", "thresholds", "scale", "impact", "dz_max")
    size_args = ("n_channels",)
    bulky = ("channel", "row", "col", "value")
    sparse_inputs = ("frames",)  # ~3.6 % of tau_cnn's pixels are non-zero

    def record(self, product: JetProduct) -> dict[str, Any]:
        assert isinstance(product, JetFrames)
        return {**product.params, "frame_shape": list(product.data.shape[1:])}

    def store(self, product: JetProduct, jets: np.ndarray) -> Arrays:
        assert isinstance(product, JetFrames)
        counts, ch, r, c, v = product.pixels(jets)
        return {"n_pixels": counts, "channel": ch, "row": r, "col": c, "value": v}

    def finish(self, arrays: Arrays) -> Arrays:
        return {**arrays, "pixel_offsets": _offsets(arrays["n_pixels"])}

    def inputs(self, arrays: Arrays, params: Mapping[str, Any], jets: np.ndarray) -> Arrays:
        out = np.zeros((len(jets), *params["frame_shape"]), dtype=np.float32)
        off = arrays["pixel_offsets"]
        for i, j in enumerate(jets):  # slices: views in memory, one read each on disk; measured no slower than
            s = slice(off[j], off[j + 1])  # one scatter of the whole minibatch (filling the zeroed array dominates)
            out[i, arrays["channel"][s], arrays["row"][s], arrays["col"][s]] = arrays["value"][s]
        return {"frames": out}

    def sizes(self, arrays: Arrays, params: Mapping[str, Any]) -> dict[str, int]:
        return {"n_channels": int(params["frame_shape"][0])}

    def statistics(self, arrays: Arrays, params: Mapping[str, Any], jets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per channel over every pixel, empty pixels included; the mean is kept at 0 (scale only), so empty
        pixels stay 0 after standardisation."""
        c, h, w = params["frame_shape"]
        n_pix = len(jets) * h * w
        s1, s2 = np.zeros(c), np.zeros(c)
        for a in range(0, len(jets), STAT_CHUNK):
            sel = _ranges(arrays["pixel_offsets"], jets[a : a + STAT_CHUNK])
            ch, v = arrays["channel"][sel], arrays["value"][sel].astype(np.float64)
            s1 += np.bincount(ch, weights=v, minlength=c)
            s2 += np.bincount(ch, weights=v * v, minlength=c)
        std = np.sqrt(s2 / n_pix - (s1 / n_pix) ** 2)
        return np.zeros(c).reshape(c, 1, 1), std.reshape(c, 1, 1)

    def feature_names(self, product: JetProduct) -> tuple[str, ...]:
        assert isinstance(product, JetFrames)
        return product.channels

    def per_jet(self, product: JetProduct) -> np.ndarray:
        assert isinstance(product, JetFrames)
        return product.data


class TableInput(InputKind):
    """Per-jet tables (jet shapes): ``values`` [n_jets, n]."""

    name = "table"
    product = JetTable
    tagger, tagger_param = "ShapeTagger", "shapes"
    input_names = ("values",)
    dynamic_axes = {"values": {0: "jets"}}
    spec_keys = ("names", "cone", "core", "track_pt_min", "dz_max", "d0sig_min")
    size_args = ("n_features",)

    def record(self, product: JetProduct) -> dict[str, Any]:
        assert isinstance(product, JetTable)
        return {**product.params, "names": list(product.names)}

    def store(self, product: JetProduct, jets: np.ndarray) -> Arrays:
        assert isinstance(product, JetTable)
        return {"values": product.values[jets]}

    def inputs(self, arrays: Arrays, params: Mapping[str, Any], jets: np.ndarray) -> Arrays:
        return {"values": np.ascontiguousarray(arrays["values"][jets])}

    def sizes(self, arrays: Arrays, params: Mapping[str, Any]) -> dict[str, int]:
        return {"n_features": int(arrays["values"].shape[1])}

    def statistics(self, arrays: Arrays, params: Mapping[str, Any], jets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = arrays["values"][jets].astype(np.float64)
        return x.mean(0), x.std(0)

    def feature_names(self, product: JetProduct) -> tuple[str, ...]:
        assert isinstance(product, JetTable)
        return product.names

    def per_jet(self, product: JetProduct) -> np.ndarray:
        assert isinstance(product, JetTable)
        return product.values


#: Input kinds by name (the ``input.product`` of a model.yaml).
INPUT_KINDS: dict[str, InputKind] = {k.name: k for k in (GraphInput(), FrameInput(), TableInput())}


def kind_of_product(product: JetProduct | type) -> InputKind | None:
    """The input kind of a product (instance or type); None when no kind reads it."""
    tp = product if isinstance(product, type) else type(product)
    for kind in INPUT_KINDS.values():
        if issubclass(tp, kind.product):
            return kind
    return None


__all__ = ["InputKind", "GraphInput", "FrameInput", "TableInput", "INPUT_KINDS", "kind_of_product"]
