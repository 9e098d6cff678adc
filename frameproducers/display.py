"""Jet display: what a tagger saw for one jet, its image channels and its graph, as one figure.

Images (:class:`~dataformats.products.JetFrames`): one panel per channel, crystals around the seed (rows: ieta,
columns: iphi offsets), a logarithmic colour scale (signed channels: symmetric logarithmic, blue negative, red
positive). Graph (:class:`~dataformats.products.JetGraphs`): nodes at their (delta_phi, delta_eta) from the seed,
coloured by node type (hit graphs: track, ECAL crystal, HCAL tower, tracker hit) or by a feature, sized by the
energy fraction where the graph has one; each node's ``k`` neighbour edges drawn as thin lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataformats.products import JetFrames, JetGraphs

#: node types of hit graphs, in their one-hot feature order, with their colours
NODE_TYPES = (("is_track", "track", "tab:red"), ("is_ecal", "ECAL crystal", "tab:green"),
              ("is_hcal", "HCAL tower", "tab:blue"), ("is_tracker_hit", "tracker hit", "tab:purple"))  # fmt: skip
#: figure size (inches) and resolution: the PNG is FIGSIZE * DPI pixels
FIGSIZE = (18.0, 7.0)
DPI = 100


@dataclass
class JetInfo:
    """What the title says about the jet (any field may be unknown: None)."""

    run: int
    lumi: int
    event: int
    jet: int
    pt: float | None = None
    eta: float | None = None
    label: str | None = None
    decay_mode: str | None = None
    score: str | None = None

    def title(self, tex: bool = True) -> str:
        """One line; ``tex``: with matplotlib mathtext (the figure), else plain text (the terminal)."""
        pt, eta, pi0 = (r"$p_T$", r"$\eta$", r"$\pi^0$") if tex else ("pT", "eta", "pi0")
        parts = [f"event {self.run}:{self.lumi}:{self.event}, jet {self.jet}"]
        if self.pt is not None:
            parts.append(f"{pt} {self.pt:.1f} GeV")
        if self.eta is not None:
            parts.append(f"{eta} {self.eta:+.2f}")
        if self.label is not None:
            mode = (self.decay_mode or "").replace("PI0", pi0)
            parts.append(f"truth {self.label}" + (f" ({mode})" if mode else ""))
        if self.score is not None:
            parts.append(self.score)
        return ", ".join(parts)


def draw_jet(
    path: str | Path,
    info: JetInfo,
    frames: JetFrames | None,
    graphs: JetGraphs | None,
    row: int,
    node_colour: str | None = None,
) -> Path:
    """Draw jet ``row`` of ``frames`` and/or ``graphs`` (products of one batch) into ``path`` (atomic; format
    from the suffix). ``node_colour``: a node feature to colour by (default: the node type of hit graphs, else
    the first feature)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from e2e.paths import atomic_file

    fig = plt.figure(figsize=FIGSIZE, dpi=DPI)
    try:
        n_img = len(frames.channels) if frames is not None else 0
        img_cols = max(1, -(-n_img // 2))
        cols = (img_cols if n_img else 0) + (2 if graphs is not None else 0)
        grid = fig.add_gridspec(2, max(cols, 1), left=0.04, right=0.97, bottom=0.08, top=0.86, wspace=0.35, hspace=0.3)
        if frames is not None:
            for i, name in enumerate(frames.channels):
                _image(fig.add_subplot(grid[i // img_cols, i % img_cols]), frames.data[row, i], name)
        if graphs is not None:
            start = img_cols if n_img else 0
            _graph(fig.add_subplot(grid[:, start : start + 2]), graphs, row, node_colour)
        fig.suptitle(info.title(), fontsize=13)
        fig.text(0.04, 0.93, "e2e simulation", fontsize=12, fontweight="bold")
        with atomic_file(Path(path)) as out:
            fig.savefig(out.tmp, dpi=DPI, format=Path(path).suffix.lower().lstrip("."))  # checked by the caller
    finally:
        plt.close(fig)
    return Path(path)


def _image(ax: Any, image: np.ndarray, name: str) -> None:
    from matplotlib.colors import LogNorm, SymLogNorm

    h, w = image.shape
    extent = (-w / 2, w / 2, -h / 2, h / 2)
    nonzero = image[image != 0]
    ax.set_title(name, fontsize=10)
    ax.set_xlabel(r"$\Delta i\phi$ (crystals)", fontsize=8)
    ax.set_ylabel(r"$\Delta i\eta$ (crystals)", fontsize=8)
    ax.tick_params(labelsize=7)
    if not len(nonzero):
        ax.imshow(np.zeros_like(image), cmap="Greys", extent=extent, origin="lower")
        ax.text(0.5, 0.5, "empty", transform=ax.transAxes, ha="center", va="center", color="grey")
        return
    from matplotlib.colors import Normalize

    shown = np.ma.masked_equal(image, 0)  # empty crystals stay white
    top = float(np.abs(nonzero).max())
    if nonzero.min() < 0:
        small = float(max(np.abs(nonzero).min(), top * 1e-4))
        norm: Any = SymLogNorm(linthresh=small, vmin=-top, vmax=top)
        cmap = "coolwarm"
    elif nonzero.max() > nonzero.min() * 1.01:
        norm, cmap = LogNorm(vmin=float(nonzero.min()), vmax=top), "viridis"
    else:  # one value (hit counts): one colour
        norm, cmap = Normalize(vmin=0.0, vmax=top), "viridis"
    im = ax.imshow(shown, cmap=cmap, norm=norm, extent=extent, origin="lower", interpolation="nearest")
    ax.set_facecolor("white")
    bar = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    bar.ax.tick_params(labelsize=6)


def _graph(ax: Any, g: JetGraphs, row: int, colour_by: str | None) -> None:
    from matplotlib.collections import LineCollection

    a, b = int(g.node_offsets[row]), int(g.node_offsets[row + 1])
    names = list(g.feature_names)
    x = g.x[a:b]
    if "delta_eta" in names and "delta_phi" in names:
        eta, phi = x[:, names.index("delta_eta")], x[:, names.index("delta_phi")]
        unit = " (rad)"
    else:  # pixel graphs without coordinates: the crystal offsets
        eta, phi = g.pos[a:b, 0].astype(np.float64), g.pos[a:b, 1].astype(np.float64)
        unit = " (crystals)"
    ax.set_title(f"graph: {b - a} nodes, {g.neighbors.shape[1]} neighbours each", fontsize=11)
    ax.set_xlabel(r"$\Delta\phi$" + unit)
    ax.set_ylabel(r"$\Delta\eta$" + unit)
    ax.grid(alpha=0.2)
    if b == a:
        ax.text(0.5, 0.5, "no node", transform=ax.transAxes, ha="center", va="center", color="grey")
        return
    nb = g.neighbors[a:b] - a
    points = np.stack([phi, eta], -1)  # [n, 2]
    segments = np.stack([points[nb], np.broadcast_to(points[:, None, :], (*nb.shape, 2))], axis=2)  # [n, k, 2, 2]
    ax.add_collection(LineCollection(list(segments.reshape(-1, 2, 2)), colors="grey", linewidths=0.4, alpha=0.25))
    size = 12.0
    if "e_frac" in names:
        size = 10 + 400 * np.sqrt(np.clip(x[:, names.index("e_frac")], 0, 1))
    types = [t for t in NODE_TYPES if t[0] in names]
    if colour_by is None and types:
        for feature, label, colour in types:
            m = x[:, names.index(feature)] > 0
            if m.any():
                s = size[m] if isinstance(size, np.ndarray) else size
                ax.scatter(phi[m], eta[m], s=s, c=colour, label=f"{label} ({int(m.sum())})", alpha=0.8,
                           edgecolors="black", linewidths=0.3, zorder=3)  # fmt: skip
        ax.legend(fontsize=9, loc="upper right", title="node type (size: energy fraction)", title_fontsize=8)
    else:
        feature = colour_by or names[0]
        if feature not in names:
            from e2e.errors import E2EError

            raise E2EError(f"--node-colour {feature}: not a node feature (features: {', '.join(names)})")
        sc = ax.scatter(phi, eta, s=size, c=x[:, names.index(feature)], cmap="viridis", edgecolors="black",
                        linewidths=0.3, zorder=3)  # fmt: skip
        ax.figure.colorbar(sc, ax=ax, label=feature, fraction=0.046, pad=0.02)
    ax.set_aspect("equal", adjustable="datalim")
