"""Performance plots a physicist shows: misidentification vs tau efficiency with bootstrap bands, the working
point marked, the selection written on the plot, one panel per pT bin.

The curves are computed on a grid of signal efficiencies: at efficiency e the threshold is the (1 - e) quantile
of the signal scores and the misidentification probability is the fraction of background jets at or above it
(as :func:`taggers.metrics.background_efficiency_at`). Bands: the 16-84 % interval of the same curve over
bootstrap replicas of both samples (jets resampled with replacement, seeded).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from taggers.metrics import auc

#: signal-efficiency grid of the curves (below 0.2 the curves are a few background jets: not drawn)
EFFICIENCY_GRID = np.linspace(0.2, 1.0, 161)


def misid_curve(signal: np.ndarray, background: np.ndarray, efficiencies: np.ndarray) -> np.ndarray:
    """Background efficiency at each signal efficiency (threshold: the signal quantile 1 - e; jets >= it)."""
    s = np.asarray(signal, dtype=np.float64)
    b = np.sort(np.asarray(background, dtype=np.float64))
    if not len(s) or not len(b):
        return np.full(len(efficiencies), np.nan)
    cuts = np.quantile(s, 1.0 - np.asarray(efficiencies, dtype=np.float64))
    return 1.0 - np.searchsorted(b, cuts, side="left") / len(b)


def bootstrap_band(
    signal: np.ndarray,
    background: np.ndarray,
    efficiencies: np.ndarray,
    n_boot: int = 200,
    seed: int = 1,
    quantiles: tuple[float, float] = (0.16, 0.84),
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of :func:`misid_curve` over ``n_boot`` bootstrap replicas (jets resampled with replacement)."""
    s = np.asarray(signal, dtype=np.float64)
    b = np.asarray(background, dtype=np.float64)
    if not len(s) or not len(b):
        nan = np.full(len(efficiencies), np.nan)
        return nan, nan
    rng = np.random.default_rng(seed)
    curves = np.empty((n_boot, len(efficiencies)))
    for i in range(n_boot):
        curves[i] = misid_curve(s[rng.integers(0, len(s), len(s))], b[rng.integers(0, len(b), len(b))], efficiencies)
    low, high = np.quantile(curves, quantiles, axis=0)
    return low, high


@dataclass
class Panel:
    """One set of axes: a title (the selection of this panel) and the curves (name -> (signal, background))."""

    title: str
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]]


@dataclass
class PlotText:
    """What the plot says about the sample: the experiment-style label, the selection and free text lines."""

    label: str = "e2e simulation"
    selection: Sequence[str] = ()
    extra: Sequence[str] = ()
    signal: str = r"$\tau_h$"
    background: str = "jet"


def performance_figure(
    path: str | Path,
    panels: Sequence[Panel],
    text: PlotText,
    working_point: float = 0.6,
    n_boot: int = 200,
    seed: int = 1,
) -> list[dict[str, Any]]:
    """Misidentification probability vs signal efficiency, one panel per :class:`Panel`, written atomically
    (format from the suffix). Returns per panel (in order; titles may repeat) and curve name the misID at
    ``working_point`` and its bootstrap 16-84 % interval."""
    n = len(panels)
    cols = 1 if n == 1 else 2
    rows = -(-n // cols)
    numbers: list[dict[str, Any]] = []
    with _figure(path, rows, cols, figsize=(6.4 * cols, 5.2 * rows), squeeze=False) as (fig, axes):
        for ax, panel in zip(axes.ravel(), panels, strict=False):
            numbers.append(_panel(ax, panel, text, working_point, n_boot, seed))
        for ax in axes.ravel()[n:]:
            ax.set_visible(False)
        fig.tight_layout()
    return numbers


def _panel(ax: Any, panel: Panel, text: PlotText, wp: float, n_boot: int, seed: int) -> dict[str, Any]:
    grid = EFFICIENCY_GRID
    numbers: dict[str, Any] = {}
    lowest = 1.0
    for i, (name, (s, b)) in enumerate(panel.curves.items()):
        colour = f"C{i}"
        curve = misid_curve(s, b, grid)
        low, high = bootstrap_band(s, b, grid, n_boot, seed)
        at = misid_curve(s, b, np.array([wp]))[0]
        band_at = bootstrap_band(s, b, np.array([wp]), n_boot, seed)
        a, da = auc(s, b)
        numbers[name] = {
            "misid": float(at),
            "band": [float(band_at[0][0]), float(band_at[1][0])],
            "auc": a,
            "auc_error": da,
            "n_signal": int(len(s)),
            "n_background": int(len(b)),
        }
        err = 0.5 * (band_at[1][0] - band_at[0][0])
        # no background jet above the threshold: the 68 % CL upper limit 1.14 / n_B, drawn dotted
        limit = 1.14 / max(len(b), 1)
        quoted = f"{100 * at:.2f} $\\pm$ {100 * err:.2f} %" if at > 0 else f"< {100 * limit:.2f} % (68 % CL)"
        label = f"{name}: AUC {a:.3f} $\\pm$ {da:.3f}, misID {quoted}"
        ok = curve > 0
        if ok.any():
            lowest = min(lowest, float(np.min(np.where(low > 0, low, curve)[ok])))
            ax.fill_between(grid[ok], np.maximum(low[ok], curve[ok] * 0.01), high[ok], color=colour, alpha=0.25, lw=0)
            ax.plot(grid[ok], curve[ok], color=colour, lw=1.8, label=label)
        if (~ok).any() and len(b):
            lowest = min(lowest, limit)
            ax.plot(grid[~ok], np.full(int((~ok).sum()), limit), color=colour, lw=1.5, ls=":",
                    label="_" if ok.any() else label)  # fmt: skip
        if at > 0:
            ax.plot([wp], [at], marker="o", color=colour, ms=6, mec="black", mew=0.6, zorder=5)
    ax.axvline(wp, color="grey", ls="--", lw=1, label=f"{100 * wp:.0f} % {text.signal} efficiency working point")
    ax.set_yscale("log")
    ax.set_xlim(grid[0], 1.0)
    ax.set_ylim(max(lowest * 0.5, 1e-5), 1.5)
    ax.set_xlabel(f"{text.signal} efficiency", fontsize=12, loc="right")
    ax.set_ylabel(f"{text.background} $\\to$ {text.signal} misidentification probability", fontsize=12, loc="top")
    ax.grid(which="both", alpha=0.25)
    ax.set_title(text.label, loc="left", fontsize=12, fontweight="bold")
    ax.set_title(panel.title, loc="right", fontsize=10)
    lines = [*text.selection, *text.extra, f"bands: 68 % of {n_boot} bootstrap replicas",
             "dotted: no background jet passes (68 % CL limit)"]  # fmt: skip
    ax.text(0.03, 0.97, "\n".join(lines), transform=ax.transAxes, va="top", ha="left", fontsize=8.5,
            bbox={"boxstyle": "round", "fc": "white", "ec": "lightgrey", "alpha": 0.9})  # fmt: skip
    ax.legend(loc="lower right", fontsize=8.5, framealpha=0.9)
    return numbers


#: axis labels of classes: the CMS tau decay modes (class names dm<Jet_decay_mode>), tau
CLASS_LABELS = {
    "dm0": "$h^\\pm$ (0)",
    "dm1": "$h^\\pm\\pi^0$ (1)",
    "dm2": "$h^\\pm 2\\pi^0$ (2)",
    "dm10": "$3h^\\pm$ (10)",
    "dm11": "$3h^\\pm\\pi^0$ (11)",
    "tau": "$\\tau_h$",
    "qcd": "QCD",
}


def confusion_figure(
    path: str | Path, confusion: Sequence[Sequence[int]], names: Sequence[str], text: PlotText, title: str
) -> Path:
    """A confusion matrix, each true class's row normalised to 1 (the fraction of its jets in each predicted
    class, with the counts), written atomically (format from the suffix). A true class without jets is left out
    of the rows."""
    counts = np.asarray(confusion, dtype=np.float64)
    rows = [i for i in range(len(names)) if counts[i].sum() > 0] or list(range(len(names)))
    labels = [CLASS_LABELS.get(n, n) for n in names]
    frac = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    with _figure(path, figsize=(6.4, 5.6)) as (fig, ax):
        im = ax.imshow(frac[rows], cmap="Blues", vmin=0, vmax=1)
        for r, i in enumerate(rows):
            for j in range(len(names)):
                colour = "white" if frac[i, j] > 0.6 else "black"
                ax.text(j, r, f"{100 * frac[i, j]:.0f} %\n({int(counts[i, j])})", ha="center", va="center",
                        fontsize=8, color=colour)  # fmt: skip
        ax.set_xticks(range(len(names)), labels, rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), [labels[i] for i in rows])
        ax.set_xlabel("predicted (highest score)")
        ax.set_ylabel("true")
        accuracy = np.trace(counts) / max(counts.sum(), 1)
        ax.set_title(text.label, loc="left", fontsize=12, fontweight="bold")
        ax.set_title(f"{title}\n{100 * accuracy:.1f} % correct", loc="right", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="fraction of the true class")
        fig.text(0.01, 0.01, _footer(text), fontsize=7, color="dimgrey", va="bottom")
        fig.tight_layout(rect=(0, 0.06, 1, 1))
    return Path(path)


def regression_groups(metrics: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The rows a regression report shows (training.heads.regression_metrics): each kind of jet with its own pT bins
    when there are several (``by_label``), else one group, named "", of every jet."""
    by_label = dict(metrics.get("by_label") or {})
    return by_label if len(by_label) > 1 else {"": metrics}


def response_figure(
    path: str | Path, metrics: Mapping[str, Any], text: PlotText, title: str, unit: str = "mass"
) -> Path:
    """Response (median of predicted / true, with its standard error) and resolution (IQR / 2 of predicted / true)
    per pT bin, of the regression (filled) and of the baseline (open) when the metrics have one, one colour per
    kind of jet when they have several (``by_label``; training.heads.regression_metrics)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    groups = regression_groups(metrics)
    edges = sorted({tuple(float(x) for x in b.split("-")) for g in groups.values() for b in g["pt_bins"]})
    with _figure(path, 2, 1, figsize=(6.4, 6.8), sharex=True) as (fig, (top, bottom)):
        series: list[tuple[str, str, str, str]] = []
        for i, name in enumerate(groups):
            prefix = f"{CLASS_LABELS.get(name, name)}: " if name else ""
            series.append((name, "model", f"{prefix}regression", f"C{i}"))
            if "baseline" in metrics:
                series.append((name, "baseline", f"{prefix}reconstructed {unit}", f"C{i}"))
        for name, key, label, colour in series:
            group = groups[name]
            bins = list(group["pt_bins"])
            lohi = [tuple(float(x) for x in b.split("-")) for b in bins]
            centres = [0.5 * (lo + hi) for lo, hi in lohi]
            half = [0.5 * (hi - lo) for lo, hi in lohi]
            resp = [group["pt_bins"][b][key]["response"] for b in bins]
            err = [group["pt_bins"][b][key].get("response_error", 0.0) for b in bins]
            res = [group["pt_bins"][b][key]["resolution"] for b in bins]
            total = group[key] if name else (metrics["all"] if key == "model" else metrics["baseline"])
            style: dict[str, Any] = {"fmt": "o" if key == "model" else "s", "color": colour}
            if key == "baseline":
                style["mfc"] = "none"
            top.errorbar(centres, resp, xerr=half, yerr=err, label=f"{label} (all: {total['response']:.3f})", **style)
            bottom.errorbar(centres, res, xerr=half, label=f"{label} (all: {total['resolution']:.3f})", **style)
        top.axhline(1.0, color="grey", lw=1, ls="--")
        top.axhspan(0.98, 1.02, color="grey", alpha=0.15, label="within 2 %")
        top.set_ylabel(f"response: median of\npredicted / true {unit}")
        bottom.set_ylabel(f"resolution: IQR / 2 of\npredicted / true {unit}")
        bottom.set_xlabel("jet $p_T$ (GeV)")
        bottom.set_xscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")

        ticks: list[float] = []
        for x in sorted({x for e in edges for x in e}):  # labels at least a factor 1.5 apart: none overlap
            if not ticks or x >= 1.5 * ticks[-1]:
                ticks.append(x)
        bottom.set_xticks(ticks, [f"{x:g}" for x in ticks])
        bottom.xaxis.set_minor_locator(NullLocator())
        for ax, key in ((top, "response"), (bottom, "resolution")):  # a baseline far off: log scale, both seen
            values = [
                v
                for name, k, _, _ in series
                for row in groups[name]["pt_bins"].values()
                if (v := row[k][key]) > 0 and np.isfinite(v)
            ]
            if values and max(values) > 5 * min(values):
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(plain)
                ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
                ax.yaxis.set_minor_formatter(plain)
                ax.tick_params(axis="y", which="minor", labelsize=7)
        for ax in (top, bottom):
            ax.grid(alpha=0.25)
            ax.legend(fontsize=8)
        top.set_title(text.label, loc="left", fontsize=12, fontweight="bold")
        top.set_title(title, loc="right", fontsize=10)
        fig.text(0.01, 0.005, _footer(text), fontsize=7, color="dimgrey", va="bottom")
        fig.tight_layout(rect=(0, 0.05, 1, 1))
    return Path(path)


def _footer(text: PlotText) -> str:
    """The selection and label lines of a small figure, wrapped to its width."""
    import textwrap

    return "\n".join(textwrap.wrap("; ".join([*text.selection, *text.extra]), 110))


@contextmanager
def _figure(path: str | Path, nrows: int = 1, ncols: int = 1, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
    """(figure, axes) of ``plt.subplots``, saved atomically to ``path`` (format from the suffix) when the block
    ends without an error, closed in any case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from e2e.paths import atomic_file
    from taggers.metrics import plot_format

    fig, axes = plt.subplots(nrows, ncols, **kwargs)
    try:
        yield fig, axes
        with atomic_file(Path(path)) as out:
            fig.savefig(out.tmp, dpi=110, format=plot_format(path))
    finally:
        plt.close(fig)
