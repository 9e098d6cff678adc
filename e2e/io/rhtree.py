"""RHTreeSource: MLAnalyzer ``RecHitAnalyzer`` ntuples (tree ``fevt/RHTree``, dense maps) in, hits out.

The CMS E2E group's ntuples store, per event, dense detector maps as flat row-major vectors
(``cell = ieta * width + iphi``) and the jets' seeds and kinematics as vectors. This source turns a chunk of
events into the same ``source:<Collection>`` products as :class:`~e2e.io.source.RootSource`, so the frame, graph
and shape producers and the taggers run unchanged:

===========  ==================================================  ================================================
product      from                                                entries
===========  ==================================================  ================================================
EcalHit      ``ECAL_energy`` (280 x 360)                         one per non-zero crystal (ieta, iphi, energy)
HcalHit      ``HBHE_energy`` (56 x 72)                           one per non-zero tower
Track        ``ECAL_tracks{Pt,D0,Dz,D0Sig,DzSig}_atECALfixIP``   one *pseudo-track* per crystal with a non-zero
             (280 x 360, per-crystal sums at the ECAL face)      pT sum: pt, d0, dz, d0sig, dzsig are the
                                                                 crystal's sums, ecal_ieta/iphi the crystal,
                                                                 eta/phi its centre, charge 0
TrackerHit   ``{BPIX,TIB,TOB}_layerN_ECAL_atPV`` (280 x 360)     the count of a cell repeated as that many hits
Jet          ``jetSeed_ieta/iphi`` (HCAL towers, EB-aligned)     seed crystal = tower x 5 + 2; pt/eta/phi/mass
             and the jet kinematics named in ``jets``            from the mapped branches (eta/phi: the seed
                                                                 crystal's centre when mapped to null)
===========  ==================================================  ================================================

Channel definitions next to ours (frameproducers/channels.py): ECAL, HCAL (upsampled at E/25 by the producers,
as the E2E converters do) and the tracker-layer counts are the same quantities. The track maps are already
per-crystal sums, and MLAnalyzer's d0/dz maps already hold only tracks from the primary vertex, so the producers'
``dz_max`` cut must not be applied a second time, to a crystal's *summed* dz: the Track product says so
(``meta['pv_dz_max']``, the source's ``pv_dz_max``, 0.1 cm), the producers then skip their cut and record the
maps' cut (a ``dz_max`` tighter than it is an error), so ``tau_cnn.yaml`` with only its source block changed
gives the E2E converters' frames exactly (and the same CNN scores as on the hits of the same events). What the
maps do not hold: the tracks' charge and anything per track inside a crystal, so the jet-shape producer counts
crystals, not tracks, and graph taggers trained on hits see different track nodes (their scores differ).

Memory is bounded by ``step_size``: each dense branch of a chunk is read, converted to sparse cells (numba,
:mod:`dataformats.dense`) and dropped before the next (about 400 kB per 280 x 360 map per event).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from typing import Any

import awkward as ak
import numpy as np

from dataformats.dense import gather, sparse_cells
from dataformats.geometry import (
    CRYSTALS_PER_TOWER,
    ECAL_N_IETA,
    ECAL_N_IPHI,
    HCAL_N_IETA,
    HCAL_N_IPHI,
    TRACKER_LAYER_NAMES,
    ecal_eta,
    ecal_phi,
)
from dataformats.products import JaggedCollection
from dataformats.rntuple_pages import PageChecksums
from dataformats.schema import (
    SchemaError,
    branch_dtypes,
    cast_to_schema,
    check_branch_entries,
    check_branch_values,
    field_of,
    invalid_mask,
    open_root_file,
    reading,
    tree_class,
)
from e2e.errors import E2EError
from e2e.event import EventBatch
from e2e.io.source import ID_FIELDS, FileSourceParams, HitsFileSource, _flat, _numbers, collection_fields
from e2e.params import param
from e2e.source import WorkItem

#: The E2E crop's seed crystal inside an HCAL tower: crystal = tower * 5 + 2 (the tower's central crystal).
SEED_CRYSTAL_OFFSET = CRYSTALS_PER_TOWER // 2
#: Largest tracker-hit count accepted in one cell of a layer map.
MAX_HITS_PER_CELL = 1000
ECAL_SHAPE = (ECAL_N_IETA, ECAL_N_IPHI)
HCAL_SHAPE = (HCAL_N_IETA, HCAL_N_IPHI)
#: Track field -> the map it comes from (``maps.<name>``).
TRACK_MAPS: dict[str, str] = {
    "pt": "track_pt",
    "d0": "track_d0",
    "dz": "track_dz",
    "d0sig": "track_d0sig",
    "dzsig": "track_dzsig",
}
LAYER_MAPS: tuple[str, ...] = tuple(name.lower() for name in TRACKER_LAYER_NAMES)
#: The Jet truth fields (``truth.<name>``).
TRUTH_FIELDS: tuple[str, ...] = ("label", "gen_pt", "gen_mass", "decay_mode")


def _layer_default(name: str) -> str:
    det, n = name[:-1], name[-1]
    return f"{det.upper()}_layer{n}_ECAL_atPV"


@dataclass
class RHTreeIds:
    run: str = param("runId", "run number branch")
    luminosityBlock: str = param("lumiId", "luminosity block branch")  # noqa: N815 - the schema's name
    event: str = param("eventId", "event number branch")


@dataclass
class RHTreeMaps:
    """Dense map branches; null: the file has no such map (its collection or field is then empty / zero)."""

    ecal: str | None = param("ECAL_energy", "ECAL crystal energy (GeV), 280 x 360 -> EcalHit")
    hcal: str | None = param("HBHE_energy", "HCAL tower energy summed over depth (GeV), 56 x 72 -> HcalHit")
    track_pt: str | None = param(
        "ECAL_tracksPt_atECALfixIP", "per-crystal sum of track pT (GeV), 280 x 360 -> one Track per crystal"
    )
    track_d0: str | None = param("ECAL_tracksD0_atECALfixIP", "per-crystal sum of d0 (cm) -> Track.d0")
    track_dz: str | None = param("ECAL_tracksDz_atECALfixIP", "per-crystal sum of dz (cm) -> Track.dz")
    track_d0sig: str | None = param("ECAL_tracksD0Sig_atECALfixIP", "per-crystal sum of d0/sigma -> Track.d0sig")
    track_dzsig: str | None = param("ECAL_tracksDzSig_atECALfixIP", "per-crystal sum of dz/sigma -> Track.dzsig")
    bpix1: str | None = param(_layer_default("bpix1"), "pixel-barrel layer 1 hit counts, 280 x 360 -> TrackerHit")
    bpix2: str | None = param(_layer_default("bpix2"), "pixel-barrel layer 2 hit counts")
    bpix3: str | None = param(_layer_default("bpix3"), "pixel-barrel layer 3 hit counts")
    bpix4: str | None = param(_layer_default("bpix4"), "pixel-barrel layer 4 hit counts")
    tib1: str | None = param(_layer_default("tib1"), "inner-barrel strip layer 1 hit counts")
    tib2: str | None = param(_layer_default("tib2"), "inner-barrel strip layer 2 hit counts")
    tob1: str | None = param(_layer_default("tob1"), "outer-barrel strip layer 1 hit counts")
    tob2: str | None = param(_layer_default("tob2"), "outer-barrel strip layer 2 hit counts")


@dataclass
class RHTreeJets:
    seed_ieta: str = param("jetSeed_ieta", "seed HCAL-tower row (EB-aligned grid; crystal = tower x 5 + 2)")
    seed_iphi: str = param("jetSeed_iphi", "seed HCAL-tower column (EB-aligned grid)")
    pt: str = param("jet_Pt", "jet pT branch (GeV); older tasks: jetPt")
    eta: str | None = param("jet_Eta", "jet eta branch; null: the seed crystal's centre")
    phi: str | None = param("jet_Phi", "jet phi branch (rad); null: the seed crystal's centre")
    mass: str | None = param("jet_M", "jet mass branch (GeV; older tasks: jetM); null: 0")


@dataclass
class RHTreeTruth:
    label: str | None = param("jet_IsTau", "per-jet truth flag: non-zero -> label_code, zero -> 0; null: no truth")
    label_code: int = param(1, "Jet_label of flagged jets (1 tau, 2 electron, 3 photon, 4 top)", choices=(1, 2, 3, 4))
    gen_pt: str | None = param(None, "generator-level pT branch (GeV); null: -1 (Jet_gen_pt unknown)")
    gen_mass: str | None = param(None, "generator-level mass branch (GeV); null: -1")
    decay_mode: str | None = param(None, "tau decay mode branch (CMS numbering); null: -1")


@dataclass
class _FileInfo:
    path: str
    entries: int
    truth: bool


class RHTreeSource(HitsFileSource):
    """Read MLAnalyzer RHTree ntuples chunk by chunk into the hits products (see the module docstring).

    Checks while reading: every dense branch has ``height x width`` values per event; jet vectors have one value
    per seed; seeds are whole tower numbers on the grid; tracker counts are whole and non-negative; a track map
    has no value where the pT map is zero; ids fit the schema; and, unless ``check_values: false``, energies and
    sums are finite and in the schema's ranges.
    """

    @dataclass
    class Params(FileSourceParams):
        tree: str = param("fevt/RHTree", "path of the tree in the files")
        step_size: int = param(100, "events per batch (each 280 x 360 map is ~400 kB per event)", minimum=1)
        read_threads: int = param(
            0, "threads for decompression (0: none; measured faster for one-entry baskets of dense maps)", minimum=0
        )
        pv_dz_max: float = param(
            0.1, "|dz| cut (cm) MLAnalyzer applied to the tracks of the d0/dz maps (E2E: 0.1)", minimum=0.0
        )
        ids: RHTreeIds = field(default_factory=RHTreeIds, metadata={"help": "event id branches"})
        maps: RHTreeMaps = field(default_factory=RHTreeMaps, metadata={"help": "dense map branches"})
        jets: RHTreeJets = field(default_factory=RHTreeJets, metadata={"help": "jet branches"})
        truth: RHTreeTruth = field(default_factory=RHTreeTruth, metadata={"help": "jet truth branches"})

    def __init__(self, label: str, params: Any) -> None:
        super().__init__(label, params)
        self.files: list[_FileInfo] = []
        self._open: tuple[str, Any] | None = None
        self._pages: PageChecksums | None = None  # the open file's, when an RNTuple

    # -- contract (file list, column plan and work items: HitsFileSource) -------------------------------

    def describe(self) -> str:
        p = self.params
        null = [f"maps.{f.name}" for f in fields(p.maps) if getattr(p.maps, f.name) is None]
        notes = [f"RHTree {p.tree}: dense maps -> sparse hits (track maps -> one pseudo-track per crystal)"]
        if null:
            notes.append("maps not read (null: empty hits / zero sums): " + ", ".join(null))
        if not p.check_values:
            notes.append("value checks are OFF (check_values: false)")
        return "; ".join(notes)

    def inspect(self, path: str) -> _FileInfo:
        """Open a file and check the tree and every branch the plan needs (metadata only)."""
        with open_root_file(path) as file, reading(f"{path}:{self.params.tree}"):  # (a damaged header: one line)
            tree = self._tree(file, path)
            keys = set(tree.keys())
            needed = self._needed_branches()
            for key, branch in needed.items():
                if branch not in keys:
                    raise SchemaError(self._missing(path, key, branch, keys))
            entries = int(tree.num_entries)
            check_branch_entries(tree, needed.values(), entries, f"{path}:{self.params.tree}")
        return _FileInfo(path, entries, self.params.truth.label is not None)

    def end(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None
        super().end()

    def empty_fields(self) -> dict[str, tuple[str, ...]]:
        available = collection_fields(self.params.truth.label is not None)
        return {coll: available[coll] for coll in self.columns}

    def read(self, item: WorkItem) -> EventBatch:
        """The hits products of entries ``item.entry_start:item.entry_stop`` (each dense branch read in turn)."""
        info: _FileInfo = self.file_info(item.file)
        chunk = _Chunk(self, info, item)
        batch = EventBatch(info.path, self.params.tree, item.entry_start, item.entry_stop, chunk.ids(), item.index)
        for coll in self.columns:
            batch.put(self.label, chunk.collection(coll), coll)
        return batch

    # -- helpers ----------------------------------------------------------------------------------------
    def _tree(self, file: Any, path: str) -> Any:
        tree_class(file, path, self.params.tree, f"; set {self.label}.tree")
        return file[self.params.tree]

    def _missing(self, path: str, key: str, branch: str, keys: set[str]) -> str:
        close = difflib.get_close_matches(branch, sorted(keys), n=3, cutoff=0.6)
        like = f"; branches like it: {', '.join(close)}" if close else ""
        nullable = "" if key.startswith(("ids.", "jets.seed")) or key == "jets.pt" else " (or null: not in the file)"
        return (
            f"{path}:{self.params.tree}: no branch '{branch}' ({self.label}.{key}); set {self.label}.{key} to the "
            f"file's branch name{nullable}{like}"
        )

    def _needed_maps(self, coll: str) -> dict[str, str]:
        """``maps.<name>`` -> branch of the dense maps collection ``coll`` is made from (non-null ones)."""
        m = self.params.maps
        if coll == "EcalHit":
            names: tuple[str, ...] = ("ecal",)
        elif coll == "HcalHit":
            names = ("hcal",)
        elif coll == "Track":
            wanted = self.columns.get("Track")
            track_fields = tuple(TRACK_MAPS) if wanted is None else tuple(f for f in wanted if f in TRACK_MAPS)
            names = ("track_pt", *(TRACK_MAPS[f] for f in track_fields if f != "pt"))
        elif coll == "TrackerHit":
            names = LAYER_MAPS
        else:
            names = ()
        return {n: getattr(m, n) for n in names if getattr(m, n) is not None}

    def reads_truth(self) -> bool:
        """True when the plan needs a Jet truth field and the files have truth (``truth.label`` set)."""
        wanted = self.columns.get("Jet")
        return self.params.truth.label is not None and (wanted is None or bool(set(wanted) & set(TRUTH_FIELDS)))

    def _jet_branches(self) -> dict[str, str]:
        j, t = self.params.jets, self.params.truth
        out = {f"jets.{f.name}": getattr(j, f.name) for f in fields(j) if getattr(j, f.name) is not None}
        if self.reads_truth():
            for name in TRUTH_FIELDS:
                if getattr(t, name) is not None:
                    out[f"truth.{name}"] = getattr(t, name)
        return out

    def _needed_branches(self) -> dict[str, str]:
        """Parameter key -> branch, for every branch the plan reads."""
        out = {f"ids.{f.name}": getattr(self.params.ids, f.name) for f in fields(self.params.ids)}
        for coll in self.columns:
            if coll == "Jet":
                out.update(self._jet_branches())
            else:
                out.update({f"maps.{k}": v for k, v in self._needed_maps(coll).items()})
        return out

    def tree_of(self, path: str) -> Any:
        """The open tree of ``path`` (one file kept open at a time)."""
        if self._open is None or self._open[0] != path:
            if self._open is not None:
                self._open[1].close()
            self._open = (path, open_root_file(path))
            self._pages = None
            if tree_class(self._open[1], path, self.params.tree) != "TTree":  # an RNTuple, whose pages carry
                with reading(f"{path}:{self.params.tree}"):  # checksums that uproot does not verify: checked here
                    tree = self._open[1][self.params.tree]
                names = list(self._needed_branches().values())
                self._pages = PageChecksums(tree, names, f"{path}:{self.params.tree}")
        with reading(f"{path}:{self.params.tree}"):
            return self._open[1][self.params.tree]

    def check_pages(self, entry_start: int, entry_stop: int) -> None:
        """The page checksums of the open file's entries ``entry_start:entry_stop`` (an RNTuple's; a TTree has
        none), before anything of them is decompressed."""
        if self._pages is not None:
            self._pages.check(entry_start, entry_stop)


class _Chunk:
    """One work item being read: each branch is read when first asked for and converted at once."""

    def __init__(self, source: RHTreeSource, info: _FileInfo, item: WorkItem) -> None:
        self.src = source
        self.p = source.params
        self.info = info
        self.item = item
        self.where = f"{info.path}:{self.p.tree}"
        self.start = item.entry_start
        self.n = item.n_events
        self.tree = source.tree_of(info.path)
        source.check_pages(item.entry_start, item.entry_stop)

    def _read(self, branch: str) -> Any:
        try:
            arrays = self.tree.arrays(
                [branch],
                entry_start=self.item.entry_start,
                entry_stop=self.item.entry_stop,
                library="ak",
                how=dict,
                decompression_executor=self.src._executor,
                interpretation_executor=self.src._executor,
            )
        except Exception as err:
            raise SchemaError(
                f"{self.where}: cannot read branch '{branch}' entries {self.start}-{self.start + self.n - 1} "
                f"({type(err).__name__}: {err})"
            ) from err
        arr = arrays[branch]
        if len(arr) != self.n:
            raise SchemaError(f"{self.where}: read {len(arr)} entries of '{branch}' at {self.start}, expected {self.n}")
        return arr

    def _scalar(self, branch: str) -> np.ndarray:
        arr = self._read(branch)
        if arr.layout.purelist_depth != 1:
            raise SchemaError(f"{self.where}: branch '{branch}' is not one number per event ({arr.type})")
        return _numbers(arr)

    def _vector(self, branch: str, flags: bool = False, rows: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Offsets and values of a list of numbers per event (``flags``: booleans too, a ``vector<bool>``; ``rows``:
        a map written as a fixed 2D array, ``x[280][360]/F``, read as its rows one after the other)."""
        arr = self._read(branch)
        if rows and arr.layout.purelist_depth == 3:
            arr = ak.flatten(arr, axis=2)  # (row-major: the flat map's order)
        if arr.layout.purelist_depth != 2:
            raise SchemaError(
                f"{self.where}: branch '{branch}' is not a list of numbers per event ({arr.type}); expected a flat "
                "std::vector (or fixed array) of numbers per event, a map stored row-major"
            )
        offsets, values = _flat(arr, branch, self.where)
        if values.dtype.kind not in ("iufb" if flags else "iuf"):
            raise SchemaError(f"{self.where}: branch '{branch}' holds {values.dtype}, expected numbers")
        return offsets, values

    def _dense(self, key: str, branch: str, shape: tuple[int, int]) -> np.ndarray:
        """One chunk of a dense map as flat float32 ``n * height * width`` (each event's size checked)."""
        offsets, values = self._vector(branch, rows=True)
        size = shape[0] * shape[1]
        counts = np.diff(offsets)
        bad = counts != size
        if bad.any():
            e = int(np.argmax(bad))
            raise SchemaError(
                f"{self.where}: branch '{branch}' ({self.src.label}.maps.{key}) has {counts[e]} values in entry "
                f"{self.start + e}, expected {shape[0]} x {shape[1]} = {size} (row-major, ieta * {shape[1]} + iphi)"
            )
        return self._float32(values, branch)

    def _float32(self, values: np.ndarray, branch: str, copy: bool = False) -> np.ndarray:
        """``values`` as float32 (``copy``: always a new array); a finite value beyond float32's range (from float64)
        is one line, not an inf."""
        if values.dtype.kind == "f" and values.dtype.itemsize > 4:
            big = np.isfinite(values) & (np.abs(values) > np.finfo(np.float32).max)
            if big.any():
                raise SchemaError(
                    f"{self.where}: branch '{branch}' has a value beyond float32 ({values[big][0]:g}, flat index "
                    f"{int(np.argmax(big))} of the chunk from entry {self.start})"
                )
        return values.astype(np.float32, copy=copy)

    def _where_cell(self, branch: str, offsets: np.ndarray, i: int, cells: np.ndarray, width: int) -> str:
        e = int(np.searchsorted(offsets, i, side="right") - 1)
        c = int(cells[i])
        return f"{self.where}: branch '{branch}' entry {self.start + e} cell (ieta {c // width}, iphi {c % width})"

    def _check(
        self,
        schema_branch: str,
        file_branch: str,
        values: np.ndarray,
        offsets: np.ndarray,
        cells: np.ndarray | None,
        width: int,
    ) -> None:
        """Schema range / finiteness of values read from ``file_branch`` (always NaN/inf; ranges when checking)."""
        ok = np.isfinite(values)
        if self.p.check_values:
            invalid = invalid_mask(field_of(schema_branch), values)
            if invalid is not None:
                ok &= ~invalid
        if not ok.all():
            i = int(np.argmin(ok))
            at = (
                self._where_cell(file_branch, offsets, i, cells, width)
                if cells is not None
                else f"{self.where}: branch '{file_branch}' entry "
                f"{self.start + int(np.searchsorted(offsets, i, side='right') - 1)}"
            )
            accepted = field_of(schema_branch).accepted()
            raise SchemaError(f"{at} has value {values[i]:g}, expected {accepted} (read as {schema_branch})")

    # -- products ---------------------------------------------------------------------------------------
    def ids(self) -> dict[str, np.ndarray]:
        out = {}
        for name in ID_FIELDS:
            branch = getattr(self.p.ids, name)
            values = self._scalar(branch)
            if values.dtype.kind == "f":  # ids stored as floats: whole numbers within the schema's integer type
                if not (np.isfinite(values).all() and (values == np.round(values)).all()):
                    raise SchemaError(f"{self.where}: branch '{branch}' ({name}) holds non-integer values")
                dtype = field_of(name).dtype
                info = np.iinfo(dtype)
                fits = (values >= info.min) & (values < float(info.max) + 1.0)  # 2^32, 2^64: exact in float64
                if not fits.all():
                    i = int(np.argmin(fits))
                    raise SchemaError(
                        f"{self.where}: branch '{branch}' ({name}) entry {self.start + i} has value {values[i]:g}, "
                        f"which does not fit {dtype} (0..{info.max})"
                    )
                values = values.astype(dtype)
            try:
                out[name] = cast_to_schema(name, values, source=self.where, entry_offset=self.start)
                check_branch_values(name, out[name], source=self.where, entry_offset=self.start)
            except SchemaError as err:  # name the file's branch
                raise SchemaError(str(err).replace(f"branch '{name}'", f"branch '{branch}' ({name})", 1)) from None
        return out

    def collection(self, coll: str) -> JaggedCollection:
        if coll == "EcalHit":
            return self._calo(coll, "ecal", ECAL_SHAPE)
        if coll == "HcalHit":
            return self._calo(coll, "hcal", HCAL_SHAPE)
        if coll == "Track":
            return self._tracks()
        if coll == "TrackerHit":
            return self._tracker_hits()
        if coll == "Jet":
            return self._jets()
        raise E2EError(f"{self.src.label}: no collection '{coll}'")

    def _empty(self, coll: str, fields_: tuple[str, ...]) -> JaggedCollection:
        dtypes = branch_dtypes(True)
        cols = {f: np.zeros(0, dtype=dtypes[f"{coll}_{f}"]) for f in fields_}
        return JaggedCollection(coll, np.zeros(self.n + 1, dtype=np.int64), cols)

    def _calo(self, coll: str, key: str, shape: tuple[int, int]) -> JaggedCollection:
        branch = getattr(self.p.maps, key)
        if branch is None:
            return self._empty(coll, ("ieta", "iphi", "energy"))
        size = shape[0] * shape[1]
        dense = self._dense(key, branch, shape)
        offsets, cells, energy = sparse_cells(dense, self.n, size)
        del dense
        self._check(f"{coll}_energy", branch, energy, offsets, cells, shape[1])
        cols = {
            "ieta": (cells // shape[1]).astype(np.int16),
            "iphi": (cells % shape[1]).astype(np.int16),
            "energy": energy,
        }
        return JaggedCollection(coll, offsets, cols)

    def _tracks(self) -> JaggedCollection:
        maps = self.src._needed_maps("Track")
        all_fields = collection_fields(True)["Track"]
        if "track_pt" not in maps:
            empty = self._empty("Track", all_fields)
            return JaggedCollection("Track", empty.offsets, empty.columns, {"pv_dz_max": float(self.p.pv_dz_max)})
        size = ECAL_N_IETA * ECAL_N_IPHI
        pt_branch = maps["track_pt"]
        pt = self._dense("track_pt", pt_branch, ECAL_SHAPE)
        offsets, cells, pt_values = sparse_cells(pt, self.n, size)
        cols: dict[str, np.ndarray] = {"pt": pt_values}
        del pt
        self._check("Track_pt", pt_branch, cols["pt"], offsets, cells, ECAL_N_IPHI)
        for fld, key in TRACK_MAPS.items():
            if fld == "pt":
                continue
            if key not in maps:
                cols[fld] = np.zeros(len(cells), dtype=np.float32)
                continue
            dense = self._dense(key, maps[key], ECAL_SHAPE)
            cols[fld] = values = gather(dense, offsets, cells, size)
            n_nonzero = int(np.count_nonzero(dense))
            if n_nonzero != int(np.count_nonzero(values)):  # a value where no track pT is: would be dropped
                e, c = divmod(int(np.flatnonzero((dense != 0) & self._pt_zero(offsets, cells))[0]), size)
                raise SchemaError(
                    f"{self.where}: branch '{maps[key]}' entry {self.start + e} cell (ieta {c // ECAL_N_IPHI}, "
                    f"iphi {c % ECAL_N_IPHI}) is non-zero where '{pt_branch}' is zero (every track has a pT)"
                )
            del dense
            self._check(f"Track_{fld}", maps[key], values, offsets, cells, ECAL_N_IPHI)
        ieta = (cells // ECAL_N_IPHI).astype(np.int16)
        iphi = (cells % ECAL_N_IPHI).astype(np.int16)
        cols["eta"] = ecal_eta(ieta).astype(np.float32)
        cols["phi"] = ecal_phi(iphi).astype(np.float32)
        cols["charge"] = np.zeros(len(cells), dtype=np.int16)
        cols["ecal_ieta"], cols["ecal_iphi"] = ieta, iphi
        meta = {"pv_dz_max": float(self.p.pv_dz_max)}
        return JaggedCollection("Track", offsets, {f: cols[f] for f in all_fields}, meta)

    def _pt_zero(self, offsets: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """Flat mask over the chunk's cells: True where the pT map is zero (no pseudo-track)."""
        size = ECAL_N_IETA * ECAL_N_IPHI
        mask = np.ones(self.n * size, dtype=bool)
        event = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(offsets))
        mask[event * size + cells] = False
        return mask

    def _tracker_hits(self) -> JaggedCollection:
        maps = self.src._needed_maps("TrackerHit")
        if not maps:
            return self._empty("TrackerHit", ("layer", "ieta", "iphi"))
        size = ECAL_N_IETA * ECAL_N_IPHI
        events, layers, cells_all = [], [], []
        for key, branch in maps.items():
            dense = self._dense(key, branch, ECAL_SHAPE)
            offsets, cells, counts = sparse_cells(dense, self.n, size)
            del dense
            whole = np.isfinite(counts) & (counts >= 0) & (counts <= MAX_HITS_PER_CELL) & (counts == np.round(counts))
            if not whole.all():
                i = int(np.argmin(whole))
                raise SchemaError(
                    f"{self._where_cell(branch, offsets, i, cells, ECAL_N_IPHI)} has value {counts[i]:g}, expected "
                    f"a whole hit count 0..{MAX_HITS_PER_CELL}"
                )
            reps = counts.astype(np.int64)
            event = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(offsets))
            events.append(np.repeat(event, reps))
            cells_all.append(np.repeat(cells, reps))
            layers.append(np.full(int(reps.sum()), LAYER_MAPS.index(key), dtype=np.int16))
        event = np.concatenate(events)
        order = np.argsort(event, kind="stable")  # per event, by layer, then cell
        cells = np.concatenate(cells_all)[order]
        offsets = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(np.bincount(event, minlength=self.n), out=offsets[1:])
        cols = {
            "layer": np.concatenate(layers)[order],
            "ieta": (cells // ECAL_N_IPHI).astype(np.int16),
            "iphi": (cells % ECAL_N_IPHI).astype(np.int16),
        }
        return JaggedCollection("TrackerHit", offsets, cols)

    def _jet_vector(
        self, key: str, branch: str, offsets: np.ndarray | None, flags: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        offs, values = self._vector(branch, flags)
        if offsets is not None and not np.array_equal(offs, offsets):
            e = int(np.argmax(np.diff(offs) != np.diff(offsets)))
            raise SchemaError(
                f"{self.where}: branch '{branch}' ({self.src.label}.{key}) has {offs[e + 1] - offs[e]} values in "
                f"entry {self.start + e} but '{self.p.jets.seed_ieta}' has {offsets[e + 1] - offsets[e]} seeds"
            )
        return offs, values

    def _seed(self, key: str, branch: str, offsets: np.ndarray | None, towers: int) -> tuple[np.ndarray, np.ndarray]:
        offs, values = self._jet_vector(key, branch, offsets)
        v = values.astype(np.float64)
        ok = np.isfinite(v) & (v == np.round(v)) & (v >= 0) & (v <= towers - 1)
        if not ok.all():
            i = int(np.argmin(ok))
            e = int(np.searchsorted(offs, i, side="right") - 1)
            raise SchemaError(
                f"{self.where}: branch '{branch}' ({self.src.label}.{key}) entry {self.start + e} has value "
                f"{values[i]:g}, expected a whole HCAL-tower index 0..{towers - 1}"
            )
        return offs, (v.astype(np.int64) * CRYSTALS_PER_TOWER + SEED_CRYSTAL_OFFSET).astype(np.int16)

    def _float(self, schema_branch: str, key: str, branch: str, offsets: np.ndarray) -> np.ndarray:
        _, values = self._jet_vector(key, branch, offsets)
        out = self._float32(values, branch, copy=True)
        self._check(schema_branch, branch, out, offsets, None, 0)
        return out

    def _jets(self) -> JaggedCollection:
        j, t = self.p.jets, self.p.truth
        offsets, ieta = self._seed("jets.seed_ieta", j.seed_ieta, None, HCAL_N_IETA)
        _, iphi = self._seed("jets.seed_iphi", j.seed_iphi, offsets, HCAL_N_IPHI)
        n = len(ieta)
        cols: dict[str, np.ndarray] = {"pt": self._float("Jet_pt", "jets.pt", j.pt, offsets)}
        cols["eta"] = self._float("Jet_eta", "jets.eta", j.eta, offsets) if j.eta else ecal_eta(ieta).astype(np.float32)
        cols["phi"] = self._float("Jet_phi", "jets.phi", j.phi, offsets) if j.phi else ecal_phi(iphi).astype(np.float32)
        cols["mass"] = (
            self._float("Jet_mass", "jets.mass", j.mass, offsets) if j.mass else np.zeros(n, dtype=np.float32)
        )
        cols["seed_ieta"], cols["seed_iphi"] = ieta, iphi
        if self.src.reads_truth() and t.label is not None:
            _, flag = self._jet_vector("truth.label", t.label, offsets, flags=True)  # (a vector<bool> too)
            if flag.dtype.kind == "f" and not np.isfinite(flag).all():
                raise SchemaError(f"{self.where}: branch '{t.label}' (truth.label) holds NaN/inf")
            cols["label"] = np.where(flag != 0, t.label_code, 0).astype(np.int16)
            for name, schema_branch in (("gen_pt", "Jet_gen_pt"), ("gen_mass", "Jet_gen_mass")):
                branch = getattr(t, name)
                cols[name] = (
                    self._float(schema_branch, f"truth.{name}", branch, offsets)
                    if branch
                    else np.full(n, -1.0, dtype=np.float32)
                )
            if t.decay_mode:
                _, dm = self._jet_vector("truth.decay_mode", t.decay_mode, offsets)
                dm64 = dm.astype(np.float64)
                if not (np.isfinite(dm64).all() and (dm64 == np.round(dm64)).all()):
                    raise SchemaError(f"{self.where}: branch '{t.decay_mode}' (truth.decay_mode) holds non-integers")
                field = field_of("Jet_decay_mode")
                bad = ~np.isin(dm64, np.asarray(field.allowed, dtype=np.float64))  # before the cast: no wrap-around
                if bad.any():
                    i = int(np.argmax(bad))
                    e = int(np.searchsorted(offsets, i, side="right") - 1)
                    raise SchemaError(
                        f"{self.where}: branch '{t.decay_mode}' (truth.decay_mode) entry {self.start + e} has value "
                        f"{dm64[i]:g}, expected {field.accepted()} (read as Jet_decay_mode)"
                    )
                cols["decay_mode"] = dm64.astype(np.int16)
            else:
                cols["decay_mode"] = np.full(n, -1, dtype=np.int16)
        return JaggedCollection("Jet", offsets, cols)
