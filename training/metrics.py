"""Tagger performance: ROC curve, AUC with its uncertainty, background rejection and misID at fixed efficiency."""

from __future__ import annotations

from typing import Any

import numpy as np

from simulation.validation import auc

#: Signal efficiencies at which the background rejection 1/eps_B is reported.
EFFICIENCIES = (0.3, 0.5, 0.6, 0.7)


def roc_curve(signal: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eps_S, eps_B) for every threshold, from the highest score down; both start at 0 and end at 1."""
    s = np.sort(np.asarray(signal, dtype=np.float64))[::-1]
    b = np.asarray(background, dtype=np.float64)
    thresholds = np.unique(np.concatenate([s, b]))[::-1]
    eff_s = np.searchsorted(-s, -thresholds, side="right") / max(len(s), 1)
    b_sorted = np.sort(b)[::-1]
    eff_b = np.searchsorted(-b_sorted, -thresholds, side="right") / max(len(b), 1)
    return np.concatenate([[0.0], eff_s]), np.concatenate([[0.0], eff_b])


def background_efficiency_at(signal: np.ndarray, background: np.ndarray, eff: float) -> tuple[float, float]:
    """eps_B (with its binomial uncertainty) at the score threshold that keeps a fraction ``eff`` of the signal."""
    s = np.asarray(signal, dtype=np.float64)
    b = np.asarray(background, dtype=np.float64)
    if len(s) == 0 or len(b) == 0:
        return float("nan"), float("nan")
    cut = np.quantile(s, 1.0 - eff)
    e = float(np.mean(b >= cut))
    return e, float(np.sqrt(max(e * (1 - e), 1.0 / len(b)) / len(b)))


def summary(signal: np.ndarray, background: np.ndarray) -> dict[str, Any]:
    """AUC +- error, misID at 60 % efficiency, rejection 1/eps_B at EFFICIENCIES, and the counts."""
    a, da = auc(signal, background)
    out: dict[str, Any] = {"auc": a, "auc_error": da, "n_signal": int(len(signal)),
                           "n_background": int(len(background))}
    for eff in EFFICIENCIES:
        e, de = background_efficiency_at(signal, background, eff)
        out[f"rejection_at_{eff:.1f}"] = (1.0 / e) if e > 0 else float("inf")
        if eff == 0.6:
            out["misid_at_0.6"], out["misid_at_0.6_error"] = e, de
    return out
