"""Shared test helpers: the shipped sample, writing modified hits trees, running e2e-run in-process."""

from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot

from dataformats import schema
from e2e.io.treewriter import AtomicTreeWriter
from simulation.generate import hits_branch_types

REPO = Path(__file__).resolve().parents[1]
# `make test` sets this: a missing compatibility extra (real ROOT, coffea) then fails its tests instead of skipping
REQUIRE_EXTRAS = os.environ.get("E2E_REQUIRE_EXTRAS", "") == "1"


def need_extra(module: str, extra: str) -> Any:
    """Import an optional extra's module; skip without it, or fail when `make test` demands the extras."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except ImportError as exc:
        message = f"{module} is not importable ({exc}); install it with pip install -e .[{extra}]"
        if REQUIRE_EXTRAS:
            pytest.fail(message + " (E2E_REQUIRE_EXTRAS=1)")
        pytest.skip(message)


SAMPLE = REPO / "data" / "sample_tau_qcd.root"
#: A small, fast graph producer block (window 33, ECAL > 0.2 GeV, k = 8) for tagger tests.
SMALL_GRAPHS = {
    "type": "JetGraphProducer",
    "channels": ["track_pt", "track_d0", "track_dz", "ecal", "hcal"],
    "window": 33,
    "hcal_upsample": False,
    "thresholds": {"ecal": 0.2},
    "k": 8,
}


def read_events(path: str | Path = SAMPLE, n: int | None = None) -> ak.Array:
    """The hits tree as an awkward array with flat branch names (as uproot returns it)."""
    return uproot.open(path)["Events"].arrays(library="ak", entry_stop=n)


def write_hits(
    path: str | Path,
    events: ak.Array | dict[str, Any],
    truth: bool = True,
    dtypes: dict[str, Any] | None = None,
    basket_events: int | None = None,
) -> Path:
    """Write events with flat branch names (``EcalHit_ieta``, ...) as a hits tree, as e2e-generate does
    (``basket_events`` per basket; default: all in one).

    ``dtypes``: branch -> dtype to write instead of the schema's (to make files with wrong types).
    """
    dtypes = dtypes or {}
    get = (lambda k: events[k]) if isinstance(events, dict) else (lambda k: events[k])
    data: dict[str, Any] = {}
    types = hits_branch_types(truth)
    for branch, dt in dtypes.items():
        coll, _, fld = branch.partition("_")
        types[coll] = types[coll].replace(f"{fld}: {schema.field_of(branch).dtype.name}", f"{fld}: {np.dtype(dt).name}")
    for f in schema.EVENT_FIELDS:
        data[f.name] = np.asarray(get(f.name), dtype=f.dtype)
    fields: dict[str, list[schema.Field]] = {}
    for coll in schema.collections(truth):
        fields.setdefault(coll.name, []).extend(coll.fields)
    for name, fs in fields.items():
        cols = {f.name: ak.values_astype(get(f"{name}_{f.name}"), dtypes.get(f"{name}_{f.name}", f.dtype)) for f in fs}
        data[name] = ak.zip(cols, depth_limit=2)
    n = len(next(iter(data.values())))
    step = basket_events or max(n, 1)
    with AtomicTreeWriter(path, types, "Events", "lz4", 1) as w:
        for start in range(0, max(n, 1), step):
            w.extend({k: v[start : start + step] for k, v in data.items()})
    return Path(path)


@pytest.fixture(scope="session")
def sample_events() -> ak.Array:
    return read_events()


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run e2e-run in-process; return (exit code, stdout, stderr)."""
    from e2e.cli.run import main

    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err
