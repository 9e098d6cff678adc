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

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataformats.products import JaggedCollection
from e2e.errors import ConfigError
from taggers.inputs import INPUT_KINDS, InputKind, kind_of_product
from training.store import DiskStore

SPLITS = ("train", "validation", "test")
#: Jet fields a dataset needs besides what the producers read: pass to ``Process(desc, extra_fields=...)``.
TRUTH_FIELDS = {"Jet": ("pt", "label", "gen_pt")}


def _mix(run: np.ndarray, lumi: np.ndarray, event: np.ndarray, seed: int) -> np.ndarray:
    """A 64-bit mix (uint64) of event ids and ``seed``: a reproducible pseudo-random key per event."""
    with np.errstate(over="ignore"):  # 64-bit wrap-around is the point of the mix
        h = (run.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (lumi.astype(np.uint64) << np.uint64(32))
        h ^= event.astype(np.uint64) + np.uint64(seed) * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(31)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(29)
    return h


def event_split(
    run: np.ndarray, lumi: np.ndarray, event: np.ndarray, fractions: tuple[float, float, float], seed: int
) -> np.ndarray:
    """Part of every event, 0 train / 1 validation / 2 test, from a 64-bit mix of its ids and ``seed``."""
    h = _mix(run, lumi, event, seed)
    u = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    edges = np.cumsum(fractions)[:-1]
    return np.searchsorted(edges, u, side="right").astype(np.int8)


def jet_keys(ids: dict[str, np.ndarray], jets: JaggedCollection, seed: int) -> np.ndarray:
    """A reproducible pseudo-random uint64 key per jet, from its event ids, its index in the event and ``seed``:
    independent of file order and batching (the sampling order of ``max_jets``)."""
    ev, local = jets.event_and_local_index()
    h = _mix(ids["run"][ev], ids["luminosityBlock"][ev], ids["event"][ev], seed + 0x5EED)
    with np.errstate(over="ignore"):
        h ^= (local.astype(np.uint64) + np.uint64(1)) * np.uint64(0xD6E8FEB86659FD93)
        h ^= h >> np.uint64(32)
        h *= np.uint64(0xD6E8FEB86659FD93)
        h ^= h >> np.uint64(32)
    return h


def quotas(max_jets: int, n_classes: int) -> np.ndarray:
    """Jets per class for ``max_jets`` in all: equal shares, the remainder to the first classes."""
    q = np.full(n_classes, max_jets // n_classes, dtype=np.int64)
    q[: max_jets % n_classes] += 1
    return q


def sampling_limits(batches: Any, sel: Selection, max_jets: int, seed: int) -> tuple[list[int | None], np.ndarray]:
    """Per class, the largest :func:`jet_keys` key that ``max_jets`` keeps (None: the class keeps no jet), and
    the number of selected jets per class before sampling.

    ``batches`` need only the source's ``Jet`` collection (truth fields; no producer runs). A class keeps its
    :func:`quotas` share of ``max_jets``: the jets with the smallest keys, a uniform random sample without
    replacement over every file, the same whatever the file order or batching; a class with fewer jets keeps
    them all.
    """
    n_cls = len(sel.classes)
    q = quotas(max_jets, n_cls)
    smallest = [np.zeros(0, np.uint64) for _ in range(n_cls)]
    available = np.zeros(n_cls, dtype=np.int64)
    for batch in batches:
        jets: JaggedCollection = batch.get("source:Jet")
        mask, y = _select(jets, sel)
        k = jet_keys(batch.ids, jets, seed)
        for c in range(n_cls):
            kc = k[mask & (y == c)]
            available[c] += len(kc)
            smallest[c] = np.sort(np.concatenate([smallest[c], kc]))[: q[c]]
    limits = [int(sm[-1]) if len(sm) else None for sm in smallest]
    return limits, available


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
    #: Jet truth fields of the selected jets (``truth_fields`` of :func:`collect`), field -> array
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    #: where the bulky arrays are (training.store), None: in memory
    store: DiskStore | None = None

    def close(self) -> None:
        """Remove the dataset's files (a dataset on disk; in memory nothing to do)."""
        if self.store is not None:
            self.store.close()

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_kind(self) -> InputKind:
        return INPUT_KINDS[self.kind]

    def inputs(self, jets: np.ndarray) -> dict[str, np.ndarray]:
        """Model inputs (ONNX input names -> arrays) of ``jets``, collated by the input kind."""
        return self.input_kind.inputs(self.arrays, self.params, jets)

    def digest(self) -> str:
        """SHA-256 of the selected jets: classes, pT, split, truth and the per-jet arrays (not the per-node or
        per-pixel ones, gigabytes for a large sample), so that a resumed training sees whether its inputs changed."""
        h = hashlib.sha256()
        per_jet = {k: v for k, v in self.arrays.items() if k not in self.input_kind.bulky}
        for name, a in [("y", self.y), ("pt", self.pt), ("split", self.split), *sorted(self.truth.items()),
                        *sorted(per_jet.items())]:  # fmt: skip
            a = np.ascontiguousarray(a)
            h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.reshape(-1).data)  # (its buffer, not a copy)
        return h.hexdigest()

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
    limits: list[int | None] | None = None,
    truth_fields: tuple[str, ...] = (),
    on_disk: bool = False,
    dataset_dir: str | None = None,
) -> JetDataset:
    """Run the producers over ``batches`` (from Process.iter_batches) and keep the selected jets' products.

    ``limits`` (:func:`sampling_limits`): keep only the jets whose :func:`jet_keys` key is at most their class's
    limit (the ``max_jets`` sample over every file). ``max_jets`` alone stops after that many jets in file
    order (for tests and quick looks). ``truth_fields``: Jet fields kept per selected jet (``JetDataset.truth``;
    the batches must read them). ``on_disk``: the per-node and per-pixel arrays go to files (training.store, in
    ``dataset_dir`` or TMPDIR) as they are made, so memory holds one batch whatever the sample size.
    """
    parts: dict[str, list[np.ndarray]] = {}
    truth: dict[str, list[np.ndarray]] = {f: [] for f in truth_fields}
    ys, pts, splits = [], [], []
    kind: InputKind | None = None
    params: dict[str, Any] = {}
    n_kept = 0
    store: DiskStore | None = None
    for batch in batches:
        jets: JaggedCollection = batch.get("source:Jet")
        product = batch.get(product_label)
        kind = kind_of_product(product)
        if kind is None:
            known = ", ".join(k.product.__name__ for k in INPUT_KINDS.values())
            raise ConfigError(f"cannot train on '{product_label}' ({type(product).__name__}); models read {known}")
        mask, y = _select(jets, sel)
        if limits is not None:
            keys = jet_keys(batch.ids, jets, seed)
            for c, limit in enumerate(limits):
                in_class = y == c
                mask &= ~in_class | (keys <= np.uint64(limit) if limit is not None else False)
        event_part = event_split(batch.ids["run"], batch.ids["luminosityBlock"], batch.ids["event"], fractions, seed)
        idx = np.flatnonzero(mask)
        if max_jets is not None:
            idx = idx[: max(0, max_jets - n_kept)]
        params = kind.record(product)
        stored = kind.store(product, idx)
        if on_disk and kind.bulky:
            if store is None:
                try:
                    store = DiskStore(dataset_dir)
                except OSError as err:
                    raise ConfigError(
                        f"dataset_dir {dataset_dir or '(TMPDIR)'}: cannot create the dataset's files there "
                        f"({err.strerror or err}); expected a writable directory"
                    ) from None
            store.append({k: stored.pop(k) for k in kind.bulky if k in stored})
        for key, value in stored.items():
            parts.setdefault(key, []).append(value)
        ys.append(y[idx])
        pts.append(jets["pt"][idx])
        for f in truth_fields:
            truth[f].append(jets[f][idx])
        splits.append(event_part[jets.event_index()[idx]])
        n_kept += len(idx)
        if max_jets is not None and n_kept >= max_jets:
            break
    if kind is None:
        raise ConfigError("no batches: the source read no events")
    arrays: dict[str, Any] = {k: np.concatenate(v) for k, v in parts.items()}
    if store is not None:
        arrays.update(store.columns())
    arrays = kind.finish(arrays)
    kept = {f: np.concatenate(v) for f, v in truth.items()}
    ys_all, pts_all, splits_all = np.concatenate(ys), np.concatenate(pts), np.concatenate(splits)
    return JetDataset(kind.name, ys_all, pts_all, splits_all, params, arrays, kept, store)
