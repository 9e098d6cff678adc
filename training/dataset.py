"""Training datasets made by the same source and producers as inference (no training/inference skew).

:func:`collect` runs a process description (``source`` + ``modules``, exactly as ``e2e-run`` would) with
:meth:`e2e.process.Process.iter_batches`, selects jets by truth label, pT and generator match, and keeps the
product the tagger consumes in a compact form:

the input kind of the product (taggers.inputs) decides what is stored and how minibatches are collated:

- graphs: the nodes (``x``, ``pixel``) and node offsets; the edges are rebuilt per minibatch by the
  producer's own function (``frameproducers.graphs.graph_edges``, with the product's recorded rule), so
  nothing of size N x k is stored and training sees the graphs inference serves;
- frames: the non-zero pixels (``JetFrames.pixels``), densified per minibatch;
- tables (jet shapes): the values.

The split into train / validation / test is by event, deterministic: a hash of (run, luminosityBlock,
event, seed), so all jets of an event land in the same part and the split does not depend on file order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataformats.products import JaggedCollection
from e2e.errors import ConfigError
from taggers.inputs import INPUT_KINDS, InputKind, kind_of_product

SPLITS = ("train", "validation", "test")
#: Jet fields a dataset needs besides what the producers read: pass to ``Process(desc, extra_fields=...)``.
TRUTH_FIELDS = {"Jet": ("pt", "label", "gen_pt")}


def event_split(
    run: np.ndarray, lumi: np.ndarray, event: np.ndarray, fractions: tuple[float, float, float], seed: int
) -> np.ndarray:
    """Part of every event, 0 train / 1 validation / 2 test, from a 64-bit mix of its ids and ``seed``."""
    with np.errstate(over="ignore"):  # 64-bit wrap-around is the point of the mix
        h = (run.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (lumi.astype(np.uint64) << np.uint64(32))
        h ^= event.astype(np.uint64) + np.uint64(seed) * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(31)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(29)
    u = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    edges = np.cumsum(fractions)[:-1]
    return np.searchsorted(edges, u, side="right").astype(np.int8)


@dataclass
class Selection:
    """Which jets are examples, and their classes."""

    classes: dict[str, int] = field(default_factory=lambda: {"qcd": 0, "tau": 1})  # output name -> Jet_label
    pt_range: tuple[float, float] = (20.0, 100.0)
    require_gen_match: bool = True  # drop jets without a generator match (pileup jets: gen_pt = -1)


@dataclass
class JetDataset:
    """Selected jets of one product kind (taggers.inputs); ``y`` is the class index (order of Selection.classes)."""

    kind: str  # an input kind: graphs | frames | table
    y: np.ndarray
    pt: np.ndarray
    split: np.ndarray
    params: dict[str, Any]
    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_kind(self) -> InputKind:
        return INPUT_KINDS[self.kind]

    def inputs(self, jets: np.ndarray) -> dict[str, np.ndarray]:
        """Model inputs (ONNX input names -> arrays) of ``jets``, collated by the input kind."""
        return self.input_kind.inputs(self.arrays, self.params, jets)

    def counts(self) -> dict[str, list[int]]:
        """Jets per split and class."""
        n_cls = int(self.y.max()) + 1 if len(self.y) else 0
        return {s: np.bincount(self.y[self.split == i], minlength=n_cls).tolist() for i, s in enumerate(SPLITS)}


def _select(jets: JaggedCollection, sel: Selection) -> tuple[np.ndarray, np.ndarray]:
    """Mask of selected jets and their class index."""
    if "label" not in jets.columns:
        raise ConfigError("training needs the simulation truth Jet_label (a sample made by e2e-generate)")
    label = jets["label"]
    y = np.full(len(jets), -1, dtype=np.int64)
    for i, lab in enumerate(sel.classes.values()):
        y[label == lab] = i
    pt = jets["pt"]
    mask = (y >= 0) & (pt > sel.pt_range[0]) & (pt < sel.pt_range[1])
    if sel.require_gen_match:
        mask &= jets["gen_pt"] > 0
    return mask, y


def collect(
    batches: Any,
    product_label: str,
    sel: Selection,
    fractions: tuple[float, float, float],
    seed: int,
    max_jets: int | None = None,
) -> JetDataset:
    """Run the producers over ``batches`` (from Process.iter_batches) and keep the selected jets' products."""
    parts: dict[str, list[np.ndarray]] = {}
    ys, pts, splits = [], [], []
    kind: InputKind | None = None
    params: dict[str, Any] = {}
    n_kept = 0
    for batch in batches:
        jets: JaggedCollection = batch.get("source:Jet")
        product = batch.get(product_label)
        kind = kind_of_product(product)
        if kind is None:
            known = ", ".join(k.product.__name__ for k in INPUT_KINDS.values())
            raise ConfigError(f"cannot train on '{product_label}' ({type(product).__name__}); models read {known}")
        mask, y = _select(jets, sel)
        event_part = event_split(batch.ids["run"], batch.ids["luminosityBlock"], batch.ids["event"], fractions, seed)
        idx = np.flatnonzero(mask)
        if max_jets is not None:
            idx = idx[: max(0, max_jets - n_kept)]
        params = kind.record(product)
        for key, value in kind.store(product, idx).items():
            parts.setdefault(key, []).append(value)
        ys.append(y[idx])
        pts.append(jets["pt"][idx])
        splits.append(event_part[jets.event_index()[idx]])
        n_kept += len(idx)
        if max_jets is not None and n_kept >= max_jets:
            break
    if kind is None:
        raise ConfigError("no batches: the source read no events")
    arrays = kind.finish({k: np.concatenate(v) for k, v in parts.items()})
    return JetDataset(kind.name, np.concatenate(ys), np.concatenate(pts), np.concatenate(splits), params, arrays)
