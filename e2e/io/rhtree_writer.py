"""Write MLAnalyzer RHTree-format files (tree ``fevt/RHTree``, dense maps) from hits trees, with uproot.

For tests, demos and benchmarks of :class:`~e2e.io.rhtree.RHTreeSource`: the maps are filled as
``RecHitAnalyzer`` fills them, from the project's own hits:

- ``ECAL_energy`` (280 x 360) and ``HBHE_energy`` (56 x 72): the hit energies at their cells;
- ``ECAL_tracksPt_atECALfixIP``: sum of the pT of the tracks reaching the ECAL, at their ECAL-face crystal;
  ``ECAL_tracks{D0,Dz,D0Sig,DzSig}_atECALfixIP``: sums of d0, dz, d0/sigma, dz/sigma of those tracks with
  |dz| < ``dz_max`` (0.1 cm, primary-vertex tracks, as the E2E track channels);
- ``{BPIX,TIB,TOB}_layerN_ECAL_atPV``: the number of tracker hits per crystal;
- jets: ``jetSeed_ieta/iphi`` (the seed's HCAL tower, float), ``jet_Pt``, ``jet_Eta``, ``jet_Phi``, ``jet_M``,
  and with truth ``jet_IsTau`` (label 1), ``jet_Label``, ``jet_GenPt``, ``jet_GenM``, ``jet_DecayMode``.

Sums are float32, in the hits' order (as the frame kernels sum). uproot writes each vector as a counter and a
C array (``nECAL_energy``, ``ECAL_energy[nECAL_energy]``); ROOT's MLAnalyzer writes ``std::vector<float>``: the
source reads both.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from dataformats.dense import dense_from_cells
from dataformats.geometry import CRYSTALS_PER_TOWER, ECAL_N_IETA, ECAL_N_IPHI, HCAL_N_IETA, HCAL_N_IPHI
from dataformats.products import JaggedCollection
from e2e.errors import E2EError
from e2e.io.rhtree import LAYER_MAPS, SEED_CRYSTAL_OFFSET, RHTreeMaps
from e2e.io.source import RootSource, collection_fields
from e2e.io.treewriter import AtomicTreeWriter
from e2e.params import build

#: The primary-vertex cut of the d0/dz maps (cm), as the E2E track channels (REFERENCE.md).
DZ_MAX_CM = 0.1
RHTREE_PATH = "fevt/RHTree"


#: The default RHTree branch name of every map (``RHTreeMaps``' defaults).
NAMES: dict[str, str] = {key: str(value) for key, value in vars(RHTreeMaps()).items()}


def _branch_types(truth: bool) -> dict[str, Any]:
    types: dict[str, Any] = {"runId": np.uint32, "lumiId": np.uint32, "eventId": np.uint64}
    for key in ("ecal", "hcal", *(f"track_{f}" for f in ("pt", "d0", "dz", "d0sig", "dzsig")), *LAYER_MAPS):
        types[NAMES[key]] = "var * float32"
    for name in ("jetSeed_ieta", "jetSeed_iphi", "jet_Pt", "jet_Eta", "jet_Phi", "jet_M"):
        types[name] = "var * float32"
    if truth:
        for name in ("jet_IsTau", "jet_Label", "jet_GenPt", "jet_GenM", "jet_DecayMode"):
            types[name] = "var * float32"
    return types


def _jagged(offsets: np.ndarray, values: np.ndarray) -> Any:
    import awkward as ak

    return ak.unflatten(np.asarray(values, dtype=np.float32), np.diff(offsets))


def _dense(offsets: np.ndarray, cells: np.ndarray, values: np.ndarray, size: int) -> Any:
    import awkward as ak

    dense = dense_from_cells(offsets, cells, values, size)
    n = dense.shape[0]
    return ak.unflatten(dense.reshape(-1), np.full(n, size, dtype=np.int64))


def rhtree_chunk(
    colls: dict[str, JaggedCollection],
    ids: dict[str, np.ndarray],
    truth: bool,
    dz_max: float = DZ_MAX_CM,
    first_entry: int = 0,
) -> dict[str, Any]:
    """The RHTree branches of one batch of events (module docstring) from its hits collections (``first_entry``: the
    entry of its first event, for messages)."""
    ecal_size, hcal_size = ECAL_N_IETA * ECAL_N_IPHI, HCAL_N_IETA * HCAL_N_IPHI
    out: dict[str, Any] = {"runId": ids["run"], "lumiId": ids["luminosityBlock"], "eventId": ids["event"]}
    e = colls["EcalHit"]
    out[NAMES["ecal"]] = _dense(e.offsets, e["ieta"].astype(np.int64) * ECAL_N_IPHI + e["iphi"], e["energy"], ecal_size)
    h = colls["HcalHit"]
    out[NAMES["hcal"]] = _dense(h.offsets, h["ieta"].astype(np.int64) * HCAL_N_IPHI + h["iphi"], h["energy"], hcal_size)
    t = colls["Track"]
    reach = t["ecal_ieta"] >= 0
    pv = reach & (np.abs(t["dz"].astype(np.float64)) < dz_max)
    cell = t["ecal_ieta"].astype(np.int64) * ECAL_N_IPHI + t["ecal_iphi"]
    event = t.event_index()
    for key, fld, mask in (("track_pt", "pt", reach), *((f"track_{f}", f, pv) for f in ("d0", "dz", "d0sig", "dzsig"))):
        offsets = np.zeros(t.n_events + 1, dtype=np.int64)
        np.cumsum(np.bincount(event[mask], minlength=t.n_events), out=offsets[1:])
        out[NAMES[key]] = _dense(offsets, cell[mask], t[fld][mask], ecal_size)
    th = colls["TrackerHit"]
    tcell = th["ieta"].astype(np.int64) * ECAL_N_IPHI + th["iphi"]
    tevent = th.event_index()
    for layer, key in enumerate(LAYER_MAPS):
        mask = th["layer"] == layer
        offsets = np.zeros(th.n_events + 1, dtype=np.int64)
        np.cumsum(np.bincount(tevent[mask], minlength=th.n_events), out=offsets[1:])
        out[NAMES[key]] = _dense(offsets, tcell[mask], np.ones(int(mask.sum()), np.float32), ecal_size)
    j = colls["Jet"]
    towers = {}
    for axis in ("ieta", "iphi"):
        seed = j[f"seed_{axis}"].astype(np.int64) - SEED_CRYSTAL_OFFSET
        off = seed % CRYSTALS_PER_TOWER != 0
        if off.any():
            bad = int(np.argmax(off))
            raise E2EError(
                f"Jet_seed_{axis}: a seed is not a tower's central crystal (tower x 5 + 2): no RHTree form ("
                f"{j[f'seed_{axis}'][bad]} in entry {first_entry + int(j.event_index()[bad])})"
            )
        towers[axis] = seed // CRYSTALS_PER_TOWER
    out["jetSeed_ieta"] = _jagged(j.offsets, towers["ieta"])
    out["jetSeed_iphi"] = _jagged(j.offsets, towers["iphi"])
    for name, fld in (("jet_Pt", "pt"), ("jet_Eta", "eta"), ("jet_Phi", "phi"), ("jet_M", "mass")):
        out[name] = _jagged(j.offsets, j[fld])
    if truth:
        out["jet_IsTau"] = _jagged(j.offsets, j["label"] == 1)
        for name, fld in (("jet_Label", "label"), ("jet_GenPt", "gen_pt"), ("jet_GenM", "gen_mass"),
                          ("jet_DecayMode", "decay_mode")):  # fmt: skip
            out[name] = _jagged(j.offsets, j[fld])
    return out


def write_rhtree(
    inputs: list[str],
    output: str | os.PathLike[str],
    *,
    tree: str = "Events",
    max_events: int = -1,
    step_size: int = 20,
    basket_events: int = 1,
    compression: str = "zlib",
    compression_level: int = 1,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Convert hits trees to one RHTree-format file (atomic); returns the number of events written.

    ``step_size`` events are converted at a time (~5.6 MB of dense maps per event before compression) and
    written ``basket_events`` per basket. The defaults are what ROOT writes for MLAnalyzer's ``std::vector``
    maps: one entry per basket (an entry is larger than ROOT's basket size), ZLIB level 1 (ROOT's default 101).
    """
    source = RootSource("source", build(RootSource.Params, {
        "files": list(inputs), "tree": tree, "step_size": step_size, "max_events": max_events}, "source"))  # fmt: skip
    source.set_plan(dict.fromkeys(collection_fields(True)))
    source.begin()
    try:
        truth = all(f.truth for f in source.files)
        if not truth and any(f.truth for f in source.files):  # (one tree: its events all have truth, or none)
            without = [f.path for f in source.files if not f.truth]
            raise E2EError(
                f"{without[0]}{f' (and {len(without) - 1} more)' if len(without) > 1 else ''} has no Jet truth but "
                "other inputs have: one RHTree holds truth for every event or none; convert them separately"
            )
        if not truth:
            source.set_plan(dict.fromkeys(collection_fields(False)))
        writer = AtomicTreeWriter(
            output, _branch_types(truth), tree=RHTREE_PATH, compression=compression, compression_level=compression_level
        )
        try:
            n = 0
            for item in source.plan():
                batch = source.read(item)
                colls = {name: batch.get(f"source:{name}") for name in collection_fields(truth)}
                try:
                    chunk = rhtree_chunk(colls, batch.ids, truth, first_entry=item.entry_start)
                except E2EError as err:  # (the file named)
                    raise E2EError(f"{item.file}:{tree}: {err}") from None
                for start in range(0, item.n_events, basket_events):
                    writer.extend({k: v[start : start + basket_events] for k, v in chunk.items()})
                n += item.n_events
                if progress is not None:
                    progress(n)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    finally:
        source.end()
    return n
