"""How a model's inputs are fed from a product, and what its output already is (bring your own model).

Models trained by e2e-train take the input kind's own inputs (``x, neighbors, batch, ptr`` for graphs,
``frames``, ``values``) and return logits. A model trained elsewhere declares in its ``model.yaml``:

.. code-block:: yaml

    architecture: {name: external}          # ONNX only (onnxruntime backend)
    input: {product: graphs, ...}           # the producer settings it expects (checked as for any model)
    outputs: [qcd, tau]
    output: probabilities                   # logits (softmax applied, the default) | probabilities | sigmoid
    feed:
      layout: points                        # graphs as point clouds [N, C, P], padded to P with a mask (weaver)
      points: 64                            # P
      sort_by: ecal                         # optional: keep the P nodes with the largest value of a feature
      inputs:
        pf_points: [delta_eta, delta_phi]   # node features by name, in this order -> [N, 2, P]
        pf_features: [track_pt, ecal, hcal, delta_eta, delta_phi]
        pf_mask: mask                       # [N, 1, P]: 1 for a point, 0 for padding

``layout: native`` (the default) feeds the kind's inputs under other names (``inputs: {images: frames}``) or,
for tables, chosen columns (``inputs: {features: [width, core_fraction]}``). Every mistake is one line naming
the model and what is expected: :func:`parse_feed` checks the block, :meth:`Feed.check_session` the ONNX inputs
(names and ranks) and :meth:`Feed.check_outputs` the output's shape and type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from e2e.errors import ConfigError, short
from taggers.heads import Head, apply_heads, outputs_of, parse_heads
from taggers.inputs import InputKind

#: What a model's first output is: logits get a softmax; probabilities are used as they are; sigmoid per output.
OUTPUT_TYPES = ("logits", "probabilities", "sigmoid")
LAYOUTS = ("native", "points")
#: how far outside [0, 1] the values of a model whose output is probabilities may lie (rounding, float16 included)
PROBABILITY_SLACK = 1e-3
#: Rank of every native input of each kind (for the ONNX input check).
NATIVE_RANKS = {"x": 2, "neighbors": 2, "batch": 1, "ptr": 1, "jet": 2, "frames": 4, "values": 2}


@dataclass
class Feed:
    """The inputs of a model: ONNX input name -> what feeds it (a native input name, feature names or 'mask')."""

    kind: InputKind
    layout: str = "native"
    inputs: dict[str, Any] = field(default_factory=dict)
    points: int = 0
    sort_by: str | None = None
    output: str = "logits"
    where: str = "model"
    #: e2e's own inputs, all of them optional to the model (an input it does not use is pruned from the ONNX)
    default: bool = True
    #: the output heads (taggers.heads) of a multi-task model; None: one softmax (or ``output``) over all outputs
    heads: list[Head] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.inputs)

    def check_session(self, session: Any, n_outputs: int, micro_batch: int) -> list[str]:
        """The ONNX inputs must be the declared ones (native: a subset of the kind's), with the right rank and a
        first axis that takes any number of jets (or nodes) up to ``micro_batch`` jets, and one output [jets,
        n_outputs] where its shape is known; returns the input names to feed."""
        got = {i.name: i for i in session.get_inputs()}
        expected = self.names
        missing = [n for n in expected if n not in got] if not self.default else []
        extra = [n for n in got if n not in expected]
        if missing or extra:
            what = "takes no input " + ", ".join(missing) if missing else "takes inputs " + ", ".join(extra)
            by = f"e2e inputs of {self.kind.name}" if self.default else "model.yaml feed.inputs"
            raise ConfigError(f"{self.where}: model.onnx {what}; it is fed {', '.join(expected)} ({by})")
        outs = session.get_outputs()
        if len(outs) != 1:
            raise ConfigError(
                f"{self.where}: model.onnx has {len(outs)} outputs ({', '.join(o.name for o in outs)}); e2e reads "
                f"one, [jets, {n_outputs}] (model.yaml outputs): export the others' values as columns of it"
            )
        for what, meta in [*((f"input '{n}'", m) for n, m in got.items()), ("output", outs[0])]:
            shape = getattr(meta, "shape", None)
            first = shape[0] if isinstance(shape, list | tuple) and shape else None
            source = self.inputs.get(meta.name)
            per_jet = (
                what == "output"
                or self.layout == "points"
                or (isinstance(source, str) and self.kind.dynamic_axes.get(source, {}).get(0) == "jets")
            )
            if isinstance(first, int) and first > 0 and not (first == 1 and micro_batch == 1 and per_jet):
                raise ConfigError(
                    f"{self.where}: model.onnx {what} has a fixed first dimension {first} ({shape}); e2e "
                    f"runs micro-batches of up to micro_batch = {micro_batch} jets, the last of a batch smaller: "
                    "export it with a dynamic first axis (torch.onnx.export(..., dynamic_axes={name: {0: 'jets'}}))"
                )
        shape = getattr(outs[0], "shape", None)
        if isinstance(shape, list | tuple) and (len(shape) != 2 or isinstance(shape[1], int) and shape[1] != n_outputs):
            raise ConfigError(
                f"{self.where}: model.onnx returns shape {shape}; model.yaml names {n_outputs} "
                f"outputs, expected [jets, {n_outputs}]"
            )
        for name, meta in got.items():
            want = self.rank(name)
            shape = getattr(meta, "shape", None)
            if isinstance(shape, list | tuple) and len(shape) != want:
                raise ConfigError(
                    f"{self.where}: model.onnx input '{name}' has rank {len(shape)} ({shape}); "
                    f"the feed gives rank {want}"
                )
        return list(got)

    def rank(self, name: str) -> int:
        if self.layout == "points":
            return 3
        source = self.inputs[name]
        return NATIVE_RANKS["values"] if isinstance(source, list) else NATIVE_RANKS[source]

    def check_outputs(self, values: np.ndarray, n_outputs: int, n_jets: int, what: str = "model.onnx") -> None:
        """One micro-batch's output: numbers of shape [n_jets, n_outputs], else one line naming ``what`` made it
        (a model that forgot its pooling returns a row per node: not one score per jet)."""
        if values.ndim != 2 or values.shape != (n_jets, n_outputs):
            raise ConfigError(
                f"{self.where}: {what} returns shape {list(values.shape)} for {n_jets} jets; model.yaml names "
                f"{n_outputs} outputs, expected [jets, {n_outputs}]: one row per jet"
            )
        if values.dtype.kind not in "fiu":
            raise ConfigError(
                f"{self.where}: {what} returns {values.dtype} values; expected numbers (float, or int cast to float)"
            )
        if self.output == "probabilities" and self.heads is None and values.size:
            with np.errstate(invalid="ignore"):  # (NaN is neither: counted with the run's non-finite scores)
                outside = values[(values < -PROBABILITY_SLACK) | (values > 1 + PROBABILITY_SLACK)]
            if outside.size:
                raise ConfigError(
                    f"{self.where}: model.yaml says output: probabilities, but {what} returns {outside[0]:.4g} "
                    "(outside [0, 1]): declare output: logits (e2e applies a softmax) or sigmoid (one per output)"
                )

    @property
    def needs_pt(self) -> bool:
        """Whether :meth:`scores` needs the jets' pT (a regression head with a pT calibration)."""
        return any(h.needs_pt for h in self.heads or [])

    def scores(self, values: np.ndarray, pt: np.ndarray | None = None) -> np.ndarray:
        """Class scores from the model's output (softmax of logits, sigmoid, or as given; per head for a
        multi-task model, ``pt`` the jets' pT in GeV where :attr:`needs_pt`)."""
        if self.heads is not None:
            return apply_heads(values, self.heads, pt)
        if self.output == "logits":
            z = values - values.max(axis=1, keepdims=True)
            e = np.exp(z)
            return e / e.sum(axis=1, keepdims=True)
        if self.output == "sigmoid":
            return 1.0 / (1.0 + np.exp(-values))
        return values

    def build(
        self, native: Mapping[str, np.ndarray], feature_names: tuple[str, ...], wanted: list[str]
    ) -> dict[str, np.ndarray]:
        """The ONNX inputs ``wanted`` of one micro-batch from the kind's native inputs."""
        if self.layout == "points":
            return self._points(native, feature_names, wanted)
        out = {}
        for name in wanted:
            source = self.inputs[name]
            if isinstance(source, list):
                cols = [self._column(c, feature_names) for c in source]
                out[name] = np.ascontiguousarray(native["values"][:, cols])
            else:
                out[name] = native[source]
        return out

    def _column(self, name: str, names: tuple[str, ...]) -> int:
        if name not in names:
            raise ConfigError(
                f"{self.where}: feed names '{name}', which the product does not have (it has: {', '.join(names)})"
            )
        return names.index(name)

    def _points(
        self, native: Mapping[str, np.ndarray], names: tuple[str, ...], wanted: list[str]
    ) -> dict[str, np.ndarray]:
        x, ptr = native["x"], native["ptr"]
        n_jets, n_nodes = len(ptr) - 1, len(x)
        jet = np.repeat(np.arange(n_jets), np.diff(ptr))
        if self.sort_by is not None:  # nodes of each jet by descending value of one feature
            order = np.lexsort((-x[:, self._column(self.sort_by, names)], jet))
        else:
            order = np.arange(n_nodes)
        local = np.arange(n_nodes) - ptr[jet[order]]
        keep = local < self.points
        nodes, jet_k, local_k = order[keep], jet[order][keep], local[keep]
        out = {}
        for name in wanted:
            source = self.inputs[name]
            if source == "mask":
                arr = np.zeros((n_jets, 1, self.points), dtype=np.float32)
                arr[jet_k, 0, local_k] = 1.0
            else:
                cols = [self._column(c, names) for c in source]
                arr = np.zeros((n_jets, len(cols), self.points), dtype=np.float32)
                arr[jet_k, :, local_k] = x[nodes][:, cols]
            out[name] = arr
        return out


def parse_feed(spec: Mapping[str, Any], kind: InputKind, yml: Path) -> Feed:
    """The Feed of a model.yaml (``feed`` and ``output``); one-line ConfigError naming the file and the key."""
    output = spec.get("output", "logits")
    if output not in OUTPUT_TYPES:
        raise ConfigError(f"{yml}: output {short(output)}: expected one of {', '.join(OUTPUT_TYPES)}")
    heads = None
    if "heads" in spec:
        heads = parse_heads(spec["heads"], f"{yml}: heads", recorded=True)
        if outputs_of(heads) != list(spec.get("outputs", [])):
            raise ConfigError(
                f"{yml}: outputs {short(spec.get('outputs'))} are not the heads' outputs {outputs_of(heads)}"
            )
        if output != "logits":
            raise ConfigError(f"{yml}: a model with heads returns raw outputs (output: logits), not {output}")
    block = spec.get("feed")
    if block is None:
        return Feed(kind, inputs={n: n for n in kind.input_names}, output=output, where=str(yml), heads=heads)
    if not isinstance(block, dict):
        raise ConfigError(f"{yml}: feed: expected a mapping with layout and inputs")
    unknown = [k for k in block if k not in ("layout", "inputs", "points", "sort_by")]
    if unknown:
        raise ConfigError(f"{yml}: feed: unknown key {short(unknown[0])}; allowed: layout, inputs, points, sort_by")
    layout = block.get("layout", "native")
    if layout not in LAYOUTS:
        raise ConfigError(f"{yml}: feed.layout {short(layout)}: expected one of {', '.join(LAYOUTS)}")
    inputs = block.get("inputs")
    if not isinstance(inputs, dict) or not inputs or not all(isinstance(k, str) for k in inputs):
        raise ConfigError(f"{yml}: feed.inputs: expected a mapping of ONNX input name -> what feeds it")
    feed = Feed(kind, layout, dict(inputs), output=output, where=str(yml), default=False, heads=heads)
    if layout == "points":
        if kind.name != "graphs":
            raise ConfigError(f"{yml}: feed.layout points reads graphs; this model reads {kind.name}")
        points = block.get("points")
        if not isinstance(points, int) or isinstance(points, bool) or points < 1:
            raise ConfigError(f"{yml}: feed.points: expected the number of points per jet (an integer >= 1)")
        feed.points = points
        sort_by = block.get("sort_by")
        if sort_by is not None and not isinstance(sort_by, str):
            raise ConfigError(f"{yml}: feed.sort_by: expected a feature name")
        feed.sort_by = sort_by
        for name, source in inputs.items():
            if source != "mask" and not (
                isinstance(source, list) and source and all(isinstance(c, str) for c in source)
            ):
                raise ConfigError(f"{yml}: feed.inputs.{name}: expected a list of feature names or 'mask'")
        return feed
    for name, source in inputs.items():
        if isinstance(source, list):
            if kind.name != "table" or not all(isinstance(c, str) for c in source):
                raise ConfigError(f"{yml}: feed.inputs.{name}: a list of column names feeds tables only")
        elif source not in kind.input_names:
            raise ConfigError(
                f"{yml}: feed.inputs.{name}: {short(source)} is not an input of {kind.name} "
                f"({', '.join(kind.input_names)})"
            )
    return feed
