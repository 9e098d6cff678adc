"""The Source contract: plan() lists WorkItems from metadata, read(item) gives the same batch in any order."""

from __future__ import annotations

import numpy as np
from conftest import SAMPLE, read_events, write_hits

from e2e.config import load_process
from e2e.io.source import RootSource
from e2e.source import Source, WorkItem


def _source(files, **params) -> RootSource:
    data = {
        "source": {"files": [str(f) for f in files], **params},
        "modules": {"jetShapes": {"type": "JetShapeProducer"}},
        "outputs": [{"file": "unused.root"}],
    }
    desc = load_process(data)
    from e2e.process import Process

    Process(desc)  # schedules and sets the column plan
    return desc.source


def test_plan_covers_every_entry_in_order(tmp_path):
    small = write_hits(tmp_path / "small.root", read_events(SAMPLE, 7))
    src = _source([SAMPLE, small], step_size=40)
    assert isinstance(src, Source)
    src.begin()
    items = src.plan()
    assert [(i.entry_start, i.entry_stop) for i in items] == [(0, 40), (40, 80), (80, 120), (120, 150), (0, 7)]
    assert [i.index for i in items] == list(range(5)) and items[-1].file == str(small)
    assert src.total_events == 157
    src.end()
    src = _source([SAMPLE, small], step_size=40, max_events=90)
    src.begin()
    assert [(i.entry_start, i.entry_stop) for i in src.plan()] == [(0, 40), (40, 80), (80, 90)]
    src.end()


def test_read_in_any_order_gives_the_same_batches():
    src = _source([SAMPLE], step_size=25)
    src.begin()
    items = src.plan()
    forward = [src.read(i) for i in items]
    backward = [src.read(i) for i in reversed(items)][::-1]
    odd = src.read(WorkItem(str(SAMPLE), "Events", 33, 61, 0))  # not on a step boundary
    src.end()
    for a, b in zip(forward, backward, strict=True):
        assert (a.entry_start, a.entry_stop) == (b.entry_start, b.entry_stop)
        for tag in a.tags:
            ca, cb = a.get(tag), b.get(tag)
            assert np.array_equal(ca.offsets, cb.offsets)
            assert all(np.array_equal(ca.columns[k], cb.columns[k]) for k in ca.columns)
    jets = np.concatenate([b.get("source:Jet")["pt"] for b in forward])
    per_event = np.concatenate([[0], np.cumsum(np.concatenate([b.get("source:Jet").counts for b in forward]))])
    assert np.array_equal(odd.get("source:Jet")["pt"], jets[per_event[33] : per_event[61]])
    assert np.array_equal(odd.ids["event"], np.concatenate([b.ids["event"] for b in forward])[33:61])
