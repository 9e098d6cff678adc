"""The Source contract: plan work items from file metadata, read one item into an EventBatch (DESIGN.md 6).

As coffea's executors do with WorkItems, e2e separates *what* to read from *reading it*: ``plan()`` lists
frozen :class:`WorkItem` units (file, tree, entry range) in input order from metadata alone, and ``read(item)``
returns the :class:`~e2e.event.EventBatch` of one unit. Iterating ``read`` over ``plan`` is a whole run; an
executor may read the items anywhere (another process, a dask worker) and must put the results back in plan
order. Every source puts the same product types (``source:<Collection>`` as JaggedCollection), so producers
and taggers do not care where the hits came from.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from e2e.event import EventBatch
from e2e.module import Module


@dataclass(frozen=True)
class WorkItem:
    """One unit of reading: entries ``entry_start:entry_stop`` of ``tree`` in ``file``; ``index`` is its place
    in the plan (the output order)."""

    file: str
    tree: str
    entry_start: int
    entry_stop: int
    index: int = 0

    @property
    def n_events(self) -> int:
        return self.entry_stop - self.entry_start


def plan_entries(files: list[tuple[str, int]], tree: str, step: int, max_events: int = -1) -> list[WorkItem]:
    """Items of at most ``step`` entries over ``(file, entries)`` in file and entry order, up to ``max_events``
    in total (-1: all)."""
    items: list[WorkItem] = []
    remaining = max_events if max_events >= 0 else sum(entries for _, entries in files)
    for path, entries in files:
        stop_file = min(entries, remaining)
        for start in range(0, stop_file, step):
            items.append(WorkItem(path, tree, start, min(start + step, stop_file), len(items)))
        remaining -= stop_file
        if remaining <= 0:
            break
    return items


#: Column plan: collection -> fields to read (None: all fields), from what the scheduled modules consume.
ColumnPlan = Mapping[str, tuple[str, ...] | None]


class Source(Module):
    """Base of every source (RootSource, ...): the members :class:`e2e.process.Process` and executors use."""

    kind = "source"

    def produces(self) -> dict[str, type]:
        """Collection name -> product type this source can put (``source:<name>``)."""
        raise NotImplementedError

    def empty_inputs(self) -> list[str]:
        """The input files without any event (after begin()): per-file outputs still get one for each."""
        return []

    def input_paths(self) -> list[str]:
        """The input files of the run, globs expanded (outputs are checked against them before any read)."""
        raise NotImplementedError

    def set_plan(self, columns: ColumnPlan) -> None:
        """Which collections (and fields; None = all) the scheduled modules consume (column projection)."""
        raise NotImplementedError

    def begin(self) -> None:
        """Open and check the inputs (metadata only) before the first plan or read."""

    def plan(self) -> list[WorkItem]:
        """The work items of the run in input order (after ``begin``), from metadata only."""
        raise NotImplementedError

    def read(self, item: WorkItem) -> EventBatch:
        """The EventBatch of one work item, with the planned collections and the event ids."""
        raise NotImplementedError

    def empty_batch(self) -> EventBatch:
        """A batch of zero events with every planned collection (warm-up, and outputs of empty inputs)."""
        raise NotImplementedError

    def batches(self) -> Iterator[EventBatch]:
        """Every work item read in plan order (one process, no executor)."""
        for item in self.plan():
            yield self.read(item)

    @property
    def total_events(self) -> int:
        """Events the plan covers (for progress bars)."""
        return sum(item.n_events for item in self.plan())

    def produce(self, batch: EventBatch) -> None:  # sources make batches, they do not add to them
        raise TypeError(f"{type(self).__name__} is a source: it makes batches with read()")
