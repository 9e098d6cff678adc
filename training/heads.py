"""Training several output heads at once (taggers.heads): the weighted sum of their losses, and their metrics.

Classification heads: cross entropy within the head's columns, class-weighted by the training counts (unless
``balance: false``), over the jets the head selects (``only`` and a target among its classes). Regression heads:
the Huber loss (delta 1) of the raw output against ``(log(target) - shift) / scale``, shift and scale the mean and
standard deviation of ``log(target)`` over the head's training jets (``shift`` calibrated after training by
``calibrate``), with ``balance`` every Jet_label given the same total weight. A minibatch with no jet for a head
adds nothing for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dataformats.schema import JET_LABELS
from e2e.errors import ConfigError
from taggers.heads import Head
from taggers.metrics import summary

#: jet pT bins (GeV) of the regression reports: tau jets (20-100), boosted tops (mostly 500-1000)
PT_BINS = (
    (20.0, 30.0),
    (30.0, 50.0),
    (50.0, 100.0),
    (100.0, 200.0),
    (200.0, 500.0),
    (500.0, 700.0),
    (700.0, 900.0),
    (900.0, 2000.0),
)


class Objective:
    """The summed loss of ``heads`` on dataset jets, with per-jet targets precomputed from ``truth``."""

    def __init__(self, heads: Sequence[Head], truth: Mapping[str, np.ndarray], train: np.ndarray) -> None:
        import torch

        self.heads = list(heads)
        self.masks: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []
        #: per head: class weights (a tensor [n_classes]) of a classification head, jet weights (an array over the
        #: dataset's jets) of a regression head
        self.weights: list[Any] = []
        for h in self.heads:
            mask = h.selected(truth)
            self.masks.append(mask)
            if h.type == "classification":
                index = h.index(truth)
                counts = np.bincount(index[train][mask[train]], minlength=len(h.classes)).astype(np.float64)
                empty = [name for name, n in zip(h.classes, counts, strict=True) if n == 0]
                if empty:
                    raise ConfigError(
                        f"heads: class '{empty[0]}' of head '{h.name}' ({h.target} {h.classes[empty[0]]}) has no "
                        "training jets: give data with such jets, or leave the class out"
                    )
                w = counts.sum() / (len(counts) * np.maximum(counts, 1)) if h.balance else np.ones(len(counts))
                self.weights.append(torch.as_tensor(w, dtype=torch.float32))
                self.targets.append(index)
            else:
                if not mask[train].any():  # (a constant loss: nothing to learn or calibrate)
                    only = f" and its only: {h.only}" if h.only else ""
                    raise ConfigError(f"heads: head '{h.name}' has no training jets with a {h.target}{only}")
                logt = np.log(np.where(mask, truth[h.target], 1.0).astype(np.float64))
                chosen = logt[train][mask[train]]
                h.shift = float(chosen.mean())
                h.scale = float(chosen.std()) or 1.0
                jet_w = np.ones(len(logt), dtype=np.float32)
                if h.balance:  # every Jet_label among the head's training jets with the same total weight
                    kinds, n_kind = np.unique(truth["label"][train][mask[train]], return_counts=True)
                    for value, count in zip(kinds, n_kind, strict=True):
                        jet_w[truth["label"] == value] = len(chosen) / (len(kinds) * count)
                self.weights.append(jet_w)
                self.targets.append(((logt - h.shift) / h.scale).astype(np.float32))

    def __call__(self, raw: Any, jets: np.ndarray) -> Any:
        """Loss (a torch scalar) of the raw outputs ``raw`` [len(jets), n_outputs] of dataset jets ``jets``."""
        import torch
        from torch.nn import functional as F

        total = raw.new_zeros(())
        for h, mask, target, w in zip(self.heads, self.masks, self.targets, self.weights, strict=True):
            m = mask[jets]
            if not m.any():
                continue
            rows = torch.from_numpy(np.flatnonzero(m))
            out = raw[rows, h.start : h.stop]
            t = torch.from_numpy(target[jets][m])
            if h.type == "classification":
                loss = F.cross_entropy(out, t, weight=w)
            else:
                jw = torch.from_numpy(w[jets][m])
                loss = (F.huber_loss(out[:, 0], t, delta=1.0, reduction="none") * jw).sum() / jw.sum()
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
    """Response (median of predicted / true, with its standard error) and resolution (half the interquartile
    range of predicted / true) over the head's jets and per pT bin, also per jet label (``by_label``, each with
    its own pT bins: a bin may hold two kinds of jet); the same for ``baseline`` (e.g. the reconstructed jet mass)
    when given."""
    mask = head.selected(truth)
    true = truth[head.target]
    pt, label = truth["pt"], truth["label"]
    ratio = predicted[:, head.start] / np.where(mask, true, 1.0)
    base = baseline / np.where(mask, true, 1.0) if baseline is not None else None

    def row(m: np.ndarray) -> dict[str, Any]:
        out = {"model": response_stats(ratio[m])}
        if base is not None:
            out["baseline"] = response_stats(base[m])
        return out

    def binned(m: np.ndarray) -> dict[str, Any]:
        out = {}
        for lo, hi in PT_BINS:
            in_bin = m & (pt >= lo) & (pt < hi)
            if in_bin.any():
                out[f"{lo:g}-{hi:g}"] = row(in_bin)
        return out

    out: dict[str, Any] = {"all": response_stats(ratio[mask]), "by_label": {}, "pt_bins": binned(mask)}
    if base is not None:
        out["baseline"] = response_stats(base[mask])
    for value in np.unique(label[mask]):  # each kind of jet on its own, in its pT bins
        m = mask & (label == value)
        out["by_label"][JET_LABELS.get(int(value), str(int(value)))] = {**row(m), "pt_bins": binned(m)}
    return out


def response_stats(ratio: np.ndarray) -> dict[str, float]:
    """Median (response), its standard error (1.858 x resolution / sqrt(n): a Gaussian's, from the IQR) and half
    the interquartile range (resolution) of the ratios ``ratio``; NaN for none."""
    if not len(ratio):
        return {"response": float("nan"), "response_error": float("nan"), "resolution": float("nan"), "jets": 0}
    q25, q50, q75 = np.quantile(ratio, [0.25, 0.5, 0.75])
    resolution = 0.5 * (q75 - q25)
    return {
        "response": float(q50),
        "response_error": float(1.858 * resolution / np.sqrt(len(ratio))),
        "resolution": float(resolution),
        "jets": int(len(ratio)),
    }


#: jets a knot of the pT calibration needs between its neighbours (fewer: the knot is left out)
CALIBRATION_MIN_JETS = 100
#: the pT calibration fits the jets within this factor of its curve (iterated): a core fit, so that jets of
#: another kind far off (the τ-labelled R = 0.8 jets of a top sample, 70-200 times their visible mass) do not
#: pull it
CALIBRATION_CORE = 5.0


def pt_knots(pt: np.ndarray, min_jets: int = CALIBRATION_MIN_JETS) -> np.ndarray:
    """Knots (GeV) of the pT calibration: the PT_BINS edges with at least ``min_jets`` jets between their
    neighbouring edges."""
    edges = np.array([PT_BINS[0][0], *(hi for _, hi in PT_BINS)])
    keep = [
        k
        for i, k in enumerate(edges)
        if np.count_nonzero((pt >= edges[max(i - 1, 0)]) & (pt < edges[min(i + 1, len(edges) - 1)])) >= min_jets
    ]
    return np.array(keep, dtype=np.float64)


def fit_pt_response(
    pt: np.ndarray, ratio: np.ndarray, min_jets: int = CALIBRATION_MIN_JETS, core: float = CALIBRATION_CORE
) -> list[tuple[float, float]]:
    """The response (median of predicted / true) as a function of jet pT: a median (L1) regression of
    log(ratio), piecewise linear in log pT between :func:`pt_knots`, over the jets within a factor ``core`` of
    the curve; nodes ``(pT GeV, response)``, constant beyond the end knots (as :meth:`Head.response` reads
    them); no nodes when no knot has enough jets."""
    knots = pt_knots(pt, min_jets)
    if not len(knots):
        return []
    x, y = np.log(pt), np.log(ratio)
    eye = np.eye(len(knots))
    basis = np.stack([np.interp(x, np.log(knots), eye[j]) for j in range(len(knots))], axis=1)
    coef = np.full(len(knots), np.median(y))
    for _ in range(100):  # iteratively reweighted least squares for the absolute deviation, on the core
        resid = y - basis @ coef
        w = np.where(np.abs(resid) < np.log(core), 1.0 / np.maximum(np.abs(resid), 1e-4), 0.0)
        a = basis.T @ (basis * w[:, None]) + 1e-9 * np.eye(len(knots))
        new = np.linalg.solve(a, basis.T @ (w * y))
        if np.max(np.abs(new - coef)) < 1e-7:
            coef = new
            break
        coef = new
    return [(float(k), float(np.exp(c))) for k, c in zip(knots, coef, strict=True)]


def calibrate(head: Head, predicted: np.ndarray, truth: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Calibrate a regression head on the jets given (the validation split): move its ``shift`` so that the
    median of predicted / true is 1, then set its ``pt_response`` to the response left as a function of the jet
    pT (:func:`fit_pt_response`). ``predicted`` are the head's scores before. Returns what was done."""
    mask = head.selected(truth)
    head.pt_response = []
    if not mask.any():
        return {"jets": 0, "response_before": float("nan"), "shift_change": 0.0, "pt_response": []}
    ratio = predicted[mask, head.start] / truth[head.target][mask]
    before = response_stats(ratio)["response"]
    change = -float(np.log(before))
    head.shift += change
    head.pt_response = fit_pt_response(np.asarray(truth["pt"], dtype=np.float64)[mask], ratio / before)
    return {
        "jets": int(mask.sum()),
        "response_before": before,
        "shift_change": change,
        "pt_response": [[p, r] for p, r in head.pt_response],
    }
