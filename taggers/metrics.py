"""Tagger performance: ROC curve, AUC with its uncertainty, background rejection and misID at fixed efficiency."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

#: Signal efficiencies at which the background rejection 1/eps_B is reported.
EFFICIENCIES = (0.3, 0.5, 0.6, 0.7)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x`` with ties given their average rank (midranks)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    new = np.concatenate([[True], xs[1:] != xs[:-1]])
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(xs))
    avg = 0.5 * (starts + 1 + ends)  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x))
    ranks[order] = avg[group]
    return ranks


def auc_error_floor(n_signal: int, n_background: int) -> float:
    """Smallest AUC uncertainty quoted: 1 / (2 (n + 1)), n = the smaller class.

    The Wilson score interval (68 %) of a proportion measured at 1 in n trials has this half width. DeLong's
    (and Hanley-McNeil's) variance is zero for perfectly separated samples, which a finite sample cannot
    prove: the floor keeps the quoted error from vanishing there and is far below DeLong elsewhere.
    """
    return 1.0 / (2.0 * (min(n_signal, n_background) + 1))


def auc(signal: np.ndarray, background: np.ndarray) -> tuple[float, float]:
    """Area under the ROC curve of score ``signal`` vs ``background`` (higher = more signal-like), with its error.

    Rank-based (Mann-Whitney U / (n_s n_b), ties count 1/2). Error: DeLong et al. (1988), from the
    structural components of both samples, floored by :func:`auc_error_floor`. NaN for an empty input.
    """
    s = np.asarray(signal, dtype=np.float64).ravel()
    b = np.asarray(background, dtype=np.float64).ravel()
    n1, n0 = len(s), len(b)
    if n1 == 0 or n0 == 0:
        return math.nan, math.nan
    ranks = average_ranks(np.concatenate([s, b]))
    a = float((np.sum(ranks[:n1]) - n1 * (n1 + 1) / 2.0) / (n1 * n0))
    v10 = (ranks[:n1] - average_ranks(s)) / n0  # per signal jet: fraction of background below it
    v01 = 1.0 - (ranks[n1:] - average_ranks(b)) / n1  # per background jet: fraction of signal above it
    var = (np.var(v10, ddof=1) / n1 if n1 > 1 else 0.0) + (np.var(v01, ddof=1) / n0 if n0 > 1 else 0.0)
    return a, max(math.sqrt(max(float(var), 0.0)), auc_error_floor(n1, n0))


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
    """AUC +- error (DeLong with a floor), misID at 60 % efficiency, rejection 1/eps_B at EFFICIENCIES, counts."""
    a, da = auc(signal, background)
    out: dict[str, Any] = {
        "auc": a,
        "auc_error": da,
        "auc_error_method": "DeLong, floor 1/(2(n_min+1))",
        "n_signal": int(len(signal)),
        "n_background": int(len(background)),
    }
    for eff in EFFICIENCIES:
        e, de = background_efficiency_at(signal, background, eff)
        out[f"rejection_at_{eff:.1f}"] = (1.0 / e) if e > 0 else float("inf")
        if eff == 0.6:
            out["misid_at_0.6"], out["misid_at_0.6_error"] = e, de
    return out


def json_finite(value: Any) -> Any:
    """``value`` with every non-finite float as None (JSON null: a figure undefined in a bin without jets of a
    class, or unbounded: the rejection where no background jet passes), as standard JSON has no NaN or Infinity."""
    if isinstance(value, dict):
        return {k: json_finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def roc_plot(path: str | Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "") -> Path:
    """One panel of :func:`taggers.plots.performance_figure` (misID vs signal efficiency with bootstrap bands and
    the 60 % point), written atomically to ``path`` (format from the suffix)."""
    from taggers.plots import Panel, PlotText, performance_figure

    performance_figure(path, [Panel(title, curves)], PlotText(selection=["Pythia 8 + e2e fast detector simulation"]))
    return Path(path)


def plot_format(path: str | Path) -> str:
    """The matplotlib format of a plot path from its suffix; E2EError naming the formats accepted."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backend_bases import FigureCanvasBase

    from e2e.errors import E2EError

    suffix = Path(path).suffix.lower().lstrip(".")
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix not in formats:
        raise E2EError(f"{path}: unknown plot format '{suffix}' (accepted: {', '.join(sorted(formats))})")
    return suffix
