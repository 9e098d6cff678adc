"""Training several output heads at once (taggers.heads): the weighted sum of their losses, and their metrics.

Classification heads: cross entropy within the head's columns, class-weighted by the training counts, over the
jets the head selects (``only`` and a target among its classes). Regression heads: the Huber loss (delta 1) of
the raw output against ``(log(target) - shift) / scale``, shift and scale the mean and standard deviation of
``log(target)`` over the head's training jets. A minibatch with no jet for a head adds nothing for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from taggers.heads import Head
from taggers.metrics import summary

#: jet pT bins (GeV) of the regression and decay-mode reports
PT_BINS = ((20.0, 30.0), (30.0, 50.0), (50.0, 100.0), (100.0, 200.0), (200.0, 500.0), (500.0, 2000.0))


class Objective:
    """The summed loss of ``heads`` on dataset jets, with per-jet targets precomputed from ``truth``."""

    def __init__(self, heads: Sequence[Head], truth: Mapping[str, np.ndarray], train: np.ndarray) -> None:
        import torch

        self.heads = list(heads)
        self.masks: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []
        self.class_weights: list[Any] = []
        for h in self.heads:
            mask = h.selected(truth)
            self.masks.append(mask)
            if h.type == "classification":
                index = h.index(truth)
                counts = np.bincount(index[train][mask[train]], minlength=len(h.classes)).astype(np.float64)
                w = counts.sum() / (len(counts) * np.maximum(counts, 1))
                self.class_weights.append(torch.as_tensor(w, dtype=torch.float32))
                self.targets.append(index)
            else:
                logt = np.log(np.where(mask, truth[h.target], 1.0).astype(np.float64))
                chosen = logt[train][mask[train]]
                if len(chosen):
                    h.shift = float(chosen.mean())
                    h.scale = float(chosen.std()) or 1.0
                self.class_weights.append(None)
                self.targets.append(((logt - h.shift) / h.scale).astype(np.float32))

    def __call__(self, raw: Any, jets: np.ndarray) -> Any:
        """Loss (a torch scalar) of the raw outputs ``raw`` [len(jets), n_outputs] of dataset jets ``jets``."""
        import torch
        from torch.nn import functional as F

        total = raw.new_zeros(())
        for h, mask, target, w in zip(self.heads, self.masks, self.targets, self.class_weights, strict=True):
            m = mask[jets]
            if not m.any():
                continue
            rows = torch.from_numpy(np.flatnonzero(m))
            out = raw[rows, h.start : h.stop]
            t = torch.from_numpy(target[jets][m])
            if h.type == "classification":
                loss = F.cross_entropy(out, t, weight=w)
            else:
                loss = F.huber_loss(out[:, 0], t, delta=1.0)
            total = total + h.weight * loss
        return total


def classification_metrics(head: Head, scores: np.ndarray, truth: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Confusion matrix (rows: true class, columns: predicted = highest score), accuracy, per-class efficiency;
    for a head with a ``tau`` class, the tau-vs-rest summary (AUC, misID at 60 %)."""
    mask = head.selected(truth)
    true = head.index(truth)[mask]
    probs = scores[mask][:, head.start : head.stop]
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    n = len(head.classes)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (true, pred), 1)
    names = list(head.classes)
    out: dict[str, Any] = {
        "classes": names,
        "confusion": confusion.tolist(),
        "accuracy": float(np.mean(pred == true)) if len(true) else float("nan"),
        "efficiency": {c: float(confusion[i, i] / max(confusion[i].sum(), 1)) for i, c in enumerate(names)},
        "jets": int(mask.sum()),
    }
    if "tau" in names:
        t = names.index("tau")
        out["tau_vs_rest"] = summary(probs[true == t, t], probs[true != t, t])
        if (true == t).any():  # every class's pass rate at the tau score that keeps 60 % of the tau jets
            cut = float(np.quantile(probs[true == t, t], 0.4))
            out["at_tau_60"] = {
                c: float(np.mean(probs[true == i, t] >= cut)) for i, c in enumerate(names) if (true == i).any()
            }
    return out


def regression_metrics(
    head: Head, predicted: np.ndarray, truth: Mapping[str, np.ndarray], baseline: np.ndarray | None = None
) -> dict[str, Any]:
    """Response (median of predicted / true) and resolution (half the interquartile range of predicted / true)
    over the head's jets and per pT bin; the same for ``baseline`` (e.g. the reconstructed jet mass) when given."""

    def stats(ratio: np.ndarray) -> dict[str, float]:
        if not len(ratio):
            return {"response": float("nan"), "resolution": float("nan"), "jets": 0}
        q25, q50, q75 = np.quantile(ratio, [0.25, 0.5, 0.75])
        return {"response": float(q50), "resolution": float(0.5 * (q75 - q25)), "jets": int(len(ratio))}

    mask = head.selected(truth)
    true = truth[head.target]
    pt = truth["pt"]
    ratio = predicted[:, head.start] / np.where(mask, true, 1.0)
    out: dict[str, Any] = {"all": stats(ratio[mask]), "pt_bins": {}}
    base = baseline / np.where(mask, true, 1.0) if baseline is not None else None
    if base is not None:
        out["baseline"] = stats(base[mask])
    for lo, hi in PT_BINS:
        m = mask & (pt >= lo) & (pt < hi)
        if m.any():
            row = {"model": stats(ratio[m])}
            if base is not None:
                row["baseline"] = stats(base[m])
            out["pt_bins"][f"{lo:g}-{hi:g}"] = row
    return out
