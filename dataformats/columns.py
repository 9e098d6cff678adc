"""How products become NanoAOD-style columns of a tree aligned with the input's ``Jet`` collection.

Each writable product implements ``columns(name, jet_offsets, options) -> Columns``: per-jet branches
(``Jet_<name>_<column>``, one value per input jet, a fill value for jets the product does not cover) and
extra per-event collections (``<name>Pixel``, ``<name>Node``, ...). Writers (RootOutput) only merge them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Columns:
    """What products contribute to one batch of an output tree.

    ``jet``: branch suffix -> one value per jet of the batch's ``Jet`` collection (written as ``Jet_<key>``);
    ``collections``: collection name -> (per-event offsets [n_events+1], field -> flat values).
    """

    jet: dict[str, np.ndarray] = field(default_factory=dict)
    collections: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = field(default_factory=dict)

    def update(self, other: Columns) -> None:
        self.jet.update(other.jet)
        self.collections.update(other.collections)


def jet_rows(event_offsets: np.ndarray, jet_index: np.ndarray, jet_offsets: np.ndarray) -> np.ndarray | None:
    """Rows of the batch's Jet collection for a product's jets; None when they are all jets in order."""
    if len(jet_index) == int(jet_offsets[-1]) and np.array_equal(event_offsets, jet_offsets):
        return None
    jet_event = np.repeat(np.arange(len(event_offsets) - 1, dtype=np.int64), np.diff(event_offsets))
    if np.any(jet_index >= np.diff(jet_offsets)[jet_event]):
        raise ValueError("a jet product refers to jets beyond nJet of its event")
    return jet_offsets[jet_event] + jet_index


def per_jet(values: np.ndarray, rows: np.ndarray | None, n_jets: int, fill: Any) -> np.ndarray:
    """``values`` of the product's jets spread onto every jet of the batch (``fill`` for the others)."""
    if rows is None:
        return values
    out = np.full(n_jets, fill, dtype=values.dtype)
    out[rows] = values
    return out


def event_offsets_of(item_counts_per_jet: np.ndarray, event_offsets: np.ndarray) -> np.ndarray:
    """Per-event offsets of items (pixels, nodes) given per-jet item counts and the jets' event offsets."""
    jet_cum = np.zeros(len(item_counts_per_jet) + 1, dtype=np.int64)
    np.cumsum(item_counts_per_jet, out=jet_cum[1:])
    return jet_cum[event_offsets]
