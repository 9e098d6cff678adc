"""EventBatch: a chunk of consecutive events of one file and the products put on it (DESIGN.md 3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from e2e.errors import E2EError


def split_tag(tag: str) -> tuple[str, str]:
    """``label`` or ``label:instance`` -> (label, instance); instance '' when absent."""
    label, _, instance = tag.partition(":")
    return label, instance


def join_tag(label: str, instance: str = "") -> str:
    return f"{label}:{instance}" if instance else label


@dataclass
class EventBatch:
    """Events ``entry_start:entry_stop`` of tree ``tree`` in ``file``, columnar.

    ``ids`` holds ``run``, ``luminosityBlock`` and ``event`` (one value per event); products are put
    by ``label`` / ``label:instance`` (as CMSSW's InputTag) and cannot be replaced once put.
    """

    file: str
    tree: str
    entry_start: int
    entry_stop: int
    ids: dict[str, np.ndarray]
    index: int = 0
    _products: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def n_events(self) -> int:
        return self.entry_stop - self.entry_start

    def put(self, label: str, product: Any, instance: str = "") -> None:
        tag = join_tag(label, instance)
        if tag in self._products:
            raise E2EError(f"product '{tag}' was already put on this batch (products are immutable once put)")
        self._products[tag] = product

    def get(self, tag: str) -> Any:
        try:
            return self._products[tag]
        except KeyError:
            raise E2EError(
                f"no product '{tag}' on the batch (products: {', '.join(self._products) or 'none'})"
            ) from None

    def __contains__(self, tag: str) -> bool:
        return tag in self._products

    @property
    def tags(self) -> list[str]:
        return list(self._products)

    def where(self) -> str:
        """'file:tree entries a-b' for messages."""
        return f"{self.file}:{self.tree} entries {self.entry_start}-{self.entry_stop - 1}"
