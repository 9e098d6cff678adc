"""Schema of the hits tree ``Events`` (DESIGN.md 4.1), declared once, and its validator.

One entry per event: the event ids (``run``, ``luminosityBlock``, ``event``) and, per
collection, an int32 counter ``nX`` followed by jagged branches ``X_field`` in on-disk
order (as uproot writes an awkward record array from ``ak.zip`` and coffea reads it).
The simulation truth of ``Jet`` (``Jet_label``, ...) shares the counter ``nJet`` and is
written after the Jet reconstruction fields.

Energies and momenta are in GeV, impact parameters in cm, angles in rad; calorimeter
indices are on the grids of :mod:`dataformats.geometry`.

:func:`validate_arrays` and :func:`validate_file` raise :class:`SchemaError` with one
line naming the source, the branch, what is wrong and what is accepted. All checks are
columnar (no Python loop over events).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from dataformats.geometry import (
    ECAL_N_IETA,
    ECAL_N_IPHI,
    ETA_MAX,
    HCAL_N_IETA,
    HCAL_N_IPHI,
    TRACKER_LAYER_NAMES,
)

__all__ = [
    "Field",
    "Collection",
    "SchemaError",
    "EVENT_FIELDS",
    "COUNTER_DTYPE",
    "COUNTER_MAX",
    "E_MAX_GEV",
    "D0_MAX_CM",
    "DZ_MAX_CM",
    "ECAL_HIT",
    "HCAL_HIT",
    "TRACK",
    "TRACKER_HIT",
    "JET",
    "JET_TRUTH",
    "COLLECTIONS",
    "TRUTH_COLLECTIONS",
    "JET_LABELS",
    "TAU_DECAY_MODES",
    "FLOAT_RTOL",
    "collections",
    "branch_dtypes",
    "validate_arrays",
    "validate_file",
    "field_of",
    "check_branch_values",
    "invalid_mask",
    "tree_class",
]


@dataclass(frozen=True)
class Field:
    """One field of a collection (or an event id): on-disk dtype, unit and valid range."""

    name: str
    dtype: np.dtype
    unit: str
    lo: float
    hi: float
    help: str
    allowed: tuple[int, ...] | None = None
    #: an index into a detector grid or table (kernels address memory with it): always range-checked
    index: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", np.dtype(self.dtype))

    @functools.cached_property
    def bounds(self) -> tuple[float, float] | tuple[int, int]:
        """The accepted range as the value checks compare it: widened by :data:`FLOAT_RTOL` for floats, rounded
        inwards to integers otherwise (computed once per field: the in-memory API checks ~30 branches per call)."""
        if self.is_float:
            return self.lo - FLOAT_RTOL * abs(self.lo), self.hi + FLOAT_RTOL * abs(self.hi)
        return math.ceil(self.lo), math.floor(self.hi)

    @property
    def is_float(self) -> bool:
        """True for floating-point fields (checked for NaN/inf, with a relative range tolerance)."""
        return self.dtype.kind == "f"

    def accepted(self) -> str:
        """Human-readable description of the accepted values, e.g. ``finite 0..14000 GeV``."""
        if self.allowed is not None:
            return "one of " + ", ".join(str(v) for v in self.allowed)
        unit = f" {self.unit}" if self.unit else ""
        if self.is_float:
            return f"finite {self.lo:g}..{self.hi:g}{unit}"
        return f"{int(self.lo)}..{int(self.hi)}{unit}"


@dataclass(frozen=True)
class Collection:
    """A NanoAOD-style collection: counter ``n{name}`` and jagged branches ``{name}_{field}``."""

    name: str
    fields: tuple[Field, ...]
    truth: bool = False

    def branch(self, field: str | Field) -> str:
        """Branch name of ``field`` (a name or a :class:`Field`): ``f"{name}_{field}"``."""
        return f"{self.name}_{field.name if isinstance(field, Field) else field}"

    @property
    def counter(self) -> str:
        """Name of the int32 counter branch, ``f"n{name}"``."""
        return f"n{self.name}"

    @property
    def counter_field(self) -> Field:
        """The counter as a :class:`Field` (int32, 0..COUNTER_MAX)."""
        return Field(self.counter, COUNTER_DTYPE, "", 0, COUNTER_MAX, f"number of {self.name} entries in the event")

    @property
    def field_names(self) -> tuple[str, ...]:
        """Field names in on-disk order."""
        return tuple(f.name for f in self.fields)

    @property
    def branches(self) -> tuple[str, ...]:
        """Branch names ``{name}_{field}`` in on-disk order (without the counter)."""
        return tuple(self.branch(f) for f in self.fields)


class SchemaError(ValueError):
    """One-line description of the first schema violation."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# --------------------------------------------------------------------------------------
# The schema
# --------------------------------------------------------------------------------------

#: Counters ``nX``: int32, as uproot's ``mktree`` writes them.
COUNTER_DTYPE = np.dtype(np.int32)
COUNTER_MAX = 10_000_000
#: Upper bound of energies, momenta and masses (GeV): the LHC centre-of-mass energy.
E_MAX_GEV = 14_000.0
#: Sanity bounds of the track impact parameters w.r.t. the primary vertex (cm).
D0_MAX_CM = 130.0
DZ_MAX_CM = 700.0
#: Bound of the impact-parameter significances.
IPSIG_MAX = 1.0e7
#: Relative tolerance on float range bounds (float32(pi) > numpy pi).
FLOAT_RTOL = 1.0e-6

#: Jet truth labels (``Jet_label``).
JET_LABELS: dict[int, str] = {0: "qcd", 1: "tau", 2: "electron", 3: "photon", 4: "top"}
#: Hadronic tau decay modes (CMS numbering: 1-prong + n pi0 = n, 3-prong + n pi0 = 10 + n); -1 otherwise.
TAU_DECAY_MODES: tuple[int, ...] = (-1, 0, 1, 2, 10, 11)

_u32 = np.dtype(np.uint32)
_u64 = np.dtype(np.uint64)
#: Small integers (charge, truth label, decay mode, tracker layer) are int16, not int8/uint8: ROOT reads 8-bit
#: arrays (Char_t, UChar_t) as strings in TTree::Draw/Scan. Files with 8-bit branches are still read (cast).
_i16 = np.dtype(np.int16)
_f32 = np.dtype(np.float32)

#: Event ids, one value per event.
EVENT_FIELDS: tuple[Field, ...] = (
    Field("run", _u32, "", 0, 2**32 - 1, "run number"),
    Field("luminosityBlock", _u32, "", 0, 2**32 - 1, "luminosity block number"),
    Field("event", _u64, "", 0, 2**64 - 1, "event number (unique per file together with run and lumi)"),
)


def _ieta(n: int, what: str) -> Field:
    return Field("ieta", _i16, "", 0, n - 1, f"{what} row (eta index) 0..{n - 1}", index=True)


def _iphi(n: int, what: str) -> Field:
    return Field("iphi", _i16, "", 0, n - 1, f"{what} column (phi index) 0..{n - 1}", index=True)


def _energy(what: str) -> Field:
    return Field("energy", _f32, "GeV", 0.0, E_MAX_GEV, f"energy deposited in the {what}")


ECAL_HIT = Collection(
    "EcalHit",
    (_ieta(ECAL_N_IETA, "stitched ECAL grid"), _iphi(ECAL_N_IPHI, "ECAL"), _energy("crystal")),
)
HCAL_HIT = Collection(
    "HcalHit",
    (_ieta(HCAL_N_IETA, "HCAL tower"), _iphi(HCAL_N_IPHI, "HCAL tower"), _energy("tower")),
)
TRACK = Collection(
    "Track",
    (
        Field("pt", _f32, "GeV", 0.0, E_MAX_GEV, "transverse momentum"),
        Field("eta", _f32, "", -ETA_MAX, ETA_MAX, "pseudorapidity at the primary vertex"),
        Field("phi", _f32, "rad", -math.pi, math.pi, "azimuth at the primary vertex"),
        Field("charge", _i16, "", -2, 2, "electric charge (units of e)"),
        Field("d0", _f32, "cm", -D0_MAX_CM, D0_MAX_CM, "transverse impact parameter w.r.t. the primary vertex"),
        Field("dz", _f32, "cm", -DZ_MAX_CM, DZ_MAX_CM, "longitudinal impact parameter w.r.t. the primary vertex"),
        Field("d0sig", _f32, "", -IPSIG_MAX, IPSIG_MAX, "d0 / sigma(d0)"),
        Field("dzsig", _f32, "", -IPSIG_MAX, IPSIG_MAX, "dz / sigma(dz)"),
        Field(
            "ecal_ieta",
            _i16,
            "",
            -1,
            ECAL_N_IETA - 1,
            "ECAL row at the ECAL face; -1: does not reach the ECAL",
            index=True,
        ),
        Field(
            "ecal_iphi",
            _i16,
            "",
            -1,
            ECAL_N_IPHI - 1,
            "ECAL column at the ECAL face; -1: does not reach it",
            index=True,
        ),
    ),
)
TRACKER_HIT = Collection(
    "TrackerHit",
    (
        Field(
            "layer",
            _i16,
            "",
            0,
            len(TRACKER_LAYER_NAMES) - 1,
            "barrel layer: " + ", ".join(TRACKER_LAYER_NAMES),
            index=True,
        ),
        _ieta(ECAL_N_IETA, "ECAL-grid (seen from the PV)"),
        _iphi(ECAL_N_IPHI, "ECAL-grid (seen from the PV)"),
    ),
)
JET = Collection(
    "Jet",
    (
        Field("pt", _f32, "GeV", 0.0, E_MAX_GEV, "transverse momentum"),
        Field("eta", _f32, "", -ETA_MAX, ETA_MAX, "pseudorapidity"),
        Field("phi", _f32, "rad", -math.pi, math.pi, "azimuth"),
        Field("mass", _f32, "GeV", 0.0, E_MAX_GEV, "invariant mass"),
        Field("seed_ieta", _i16, "", 0, ECAL_N_IETA - 1, "ECAL row of the jet seed (frame centre)", index=True),
        Field("seed_iphi", _i16, "", 0, ECAL_N_IPHI - 1, "ECAL column of the jet seed (frame centre)", index=True),
    ),
)
#: Simulation truth of Jet: same collection name and counter (nJet), written after the Jet reco fields.
JET_TRUTH = Collection(
    "Jet",
    (
        Field(
            "label",
            _i16,
            "",
            0,
            max(JET_LABELS),
            "truth class: " + ", ".join(f"{k} {v}" for k, v in JET_LABELS.items()),
        ),
        Field("gen_pt", _f32, "GeV", -1.0, E_MAX_GEV, "matched generator-level pt; -1: no generator match"),
        Field("gen_mass", _f32, "GeV", -1.0, E_MAX_GEV, "matched generator-level mass; -1: no generator match"),
        Field(
            "decay_mode",
            _i16,
            "",
            min(TAU_DECAY_MODES),
            max(TAU_DECAY_MODES),
            "hadronic tau decay mode (CMS numbering); -1 otherwise",
            allowed=TAU_DECAY_MODES,
        ),
    ),
    truth=True,
)

#: Reconstruction-level collections in on-disk order.
COLLECTIONS: tuple[Collection, ...] = (ECAL_HIT, HCAL_HIT, TRACK, TRACKER_HIT, JET)
#: Simulation-truth parts, each written right after the collection of the same name.
TRUTH_COLLECTIONS: tuple[Collection, ...] = (JET_TRUTH,)


def collections(truth: bool = True) -> tuple[Collection, ...]:
    """All collection parts in on-disk order; with ``truth`` each truth part follows its reco part."""
    out: list[Collection] = []
    for coll in COLLECTIONS:
        out.append(coll)
        if truth:
            out.extend(t for t in TRUTH_COLLECTIONS if t.name == coll.name)
    return tuple(out)


def branch_dtypes(truth: bool = True) -> dict[str, np.dtype]:
    """Every branch name -> numpy dtype on disk, in on-disk order (ids, then per collection nX and X_field); a new
    dict each call (a copy of the table, made once: building it cost ~10 us, which a single event's call paid
    several times)."""
    return dict(_branch_dtype_table(truth))


@functools.cache
def _branch_dtype_table(truth: bool) -> dict[str, np.dtype]:
    out: dict[str, np.dtype] = {f.name: f.dtype for f in EVENT_FIELDS}
    for coll in collections(truth):
        if not coll.truth:
            out[coll.counter] = COUNTER_DTYPE
        for f in coll.fields:
            out[coll.branch(f)] = f.dtype
    return out


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Desc:
    """What a branch holds per event: ``scalar`` (one number), ``jagged`` (a list of numbers) or ``other``."""

    kind: str
    dtype: np.dtype | None
    typestr: str
    vector: bool = False  # ROOT std::vector: no counter branch


def _native(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    return dt.newbyteorder("=") if dt.byteorder in "<>" else dt


def _numpy_type_dtype(t: Any) -> np.dtype | None:
    if isinstance(t, ak.types.NumpyType):
        try:
            return np.dtype(t.primitive)
        except TypeError:
            return None
    return None


def _describe_array(arr: Any) -> _Desc:
    if isinstance(arr, np.ndarray):
        if arr.ndim == 1 and arr.dtype.kind in "biufc":
            return _Desc("scalar", _native(arr.dtype), str(_native(arr.dtype)))
        return _Desc("other", None, f"numpy {arr.dtype} array of shape {arr.shape}")
    if not isinstance(arr, ak.Array):
        return _Desc("other", None, type(arr).__name__)
    t = arr.type.content
    dt = _numpy_type_dtype(t)
    if dt is not None:
        return _Desc("scalar", dt, str(t))
    if isinstance(t, ak.types.ListType) and t.parameter("__array__") is None:
        dt = _numpy_type_dtype(t.content)
        if dt is not None:
            return _Desc("jagged", dt, str(t))
    return _Desc("other", None, str(t))


#: ROOT leaf classes of types uproot may fail to read, by their C++ names (for messages)
_LEAF_TYPES = {"TLeafF16": "Float16_t", "TLeafD32": "Double32_t"}


def _packed_leaf(branch: Any) -> str:
    """Why a Double32_t or Float16_t leaf with a range or bit count in its title (``x[n]/d[0,100,12]``) cannot be read,
    or "": ROOT stores such values as packed integers, which uproot reads as if they were float32 (Double32_t: tiny
    or huge numbers, silently) or fails on (Float16_t)."""
    member = getattr(branch, "member", None)  # (a stand-in without ROOT members: nothing packed)
    for leaf in (member("fLeaves", none_if_missing=True) if member else None) or ():
        name = _LEAF_TYPES.get(str(getattr(leaf, "classname", "")))
        title = str(leaf.member("fTitle", none_if_missing=True) or "")
        spec = title.rsplit("/", 1)[1] if "/" in title else ""
        if name and "[" in spec:
            return (
                f"{name} with a range or bit count ('/{spec}'), stored as packed integers that uproot does not unpack; "
                "write the branch as float or double (or Double32_t without a range)"
            )
    return ""


def _describe_interpretation(branch: Any) -> _Desc:
    """Map an uproot branch interpretation to a :class:`_Desc` (no data read)."""
    from uproot.containers import AsVector
    from uproot.interpretation.jagged import AsJagged
    from uproot.interpretation.numerical import AsDtype
    from uproot.interpretation.objects import AsObjects

    packed = _packed_leaf(branch)
    if packed:
        return _Desc("other", None, packed)
    try:
        interp = branch.interpretation
    except Exception as exc:  # a type uproot cannot read (e.g. Float16_t without a range in its title)
        leaves = [str(getattr(leaf, "classname", "?")) for leaf in branch.member("fLeaves", none_if_missing=True) or ()]
        leaf_type = ", ".join(_LEAF_TYPES.get(c, c) for c in leaves) or "unknown type"
        return _Desc("other", None, f"{leaf_type}, which uproot cannot read: {exc_line(exc)}")
    typestr = str(getattr(branch, "typename", interp))
    if isinstance(interp, AsDtype) and not interp.inner_shape:
        return _Desc("scalar", _native(interp.to_dtype), typestr)
    if isinstance(interp, AsJagged) and isinstance(interp.content, AsDtype) and not interp.content.inner_shape:
        return _Desc("jagged", _native(interp.content.to_dtype), typestr, vector=interp.header_bytes != 0)
    if isinstance(interp, AsObjects) and isinstance(interp.model, AsVector):
        values = interp.model.values
        if isinstance(values, np.dtype) or (isinstance(values, type) and issubclass(values, np.generic)):
            return _Desc("jagged", _native(values), typestr, vector=True)
    return _Desc("other", None, typestr)


def _group_desc(coll: Collection) -> str:
    what = f"{coll.name} truth" if coll.truth else coll.name
    return f"{what} needs {', '.join(coll.field_names)}"


def _want_truth(names: Iterable[str], truth: bool | None) -> bool:
    if truth is not None:
        return bool(truth)
    names = set(names)
    return any(c.branch(f) in names for c in TRUTH_COLLECTIONS for f in c.fields)


def compatible(dtype: np.dtype, field: Field) -> bool:
    """Whether values of ``dtype`` are read into ``field``: integers of any width and signedness (or booleans, as 0
    and 1: a ``vector<bool>`` truth flag) for integer fields, floats (or integers) for float fields; each chunk is
    then checked to fit (:func:`cast_to_schema`) and its values to be in range."""
    kind = np.dtype(dtype).kind
    return kind in "biu" if field.dtype.kind in "iu" else kind in "fiu"


def _kind_words(field: Field) -> str:
    return "an integer" if field.dtype.kind in "iu" else "a floating-point number"


def _check_layout(
    descs: Mapping[str, _Desc], source: str, want_truth: bool, counters_optional: set[str]
) -> dict[str, tuple[np.dtype, np.dtype]]:
    """Presence, per-event shape and dtype of every schema branch, in on-disk order.

    Returns the branches stored with another (compatible) dtype than the schema's: name -> (on disk, schema).
    """
    casts: dict[str, tuple[np.dtype, np.dtype]] = {}

    def check(name: str, field: Field, jagged: bool, missing_hint: str) -> None:
        d = descs.get(name)
        if d is None:
            raise SchemaError(f"{source}: missing branch '{name}' ({missing_hint})")
        unit = f" ({field.unit})" if field.unit else ""
        if d.kind == "other" or (d.kind == "jagged") != jagged:
            if jagged:
                expected = f"a variable-length list of {field.dtype}{unit} per event (jagged)"
                what = "is not jagged" if d.kind == "scalar" else "is not a jagged list of numbers"
            else:
                expected = f"one {field.dtype}{unit} per event"
                what = "is jagged" if d.kind == "jagged" else "has an unsupported type"
            raise SchemaError(f"{source}: branch '{name}' {what} ({d.typestr}), expected {expected}")
        assert d.dtype is not None
        if not compatible(d.dtype, field):
            raise SchemaError(
                f"{source}: branch '{name}' has dtype {d.dtype}, expected {_kind_words(field)} "
                f"(read as {field.dtype}{unit})"
            )
        if d.dtype != field.dtype:
            casts[name] = (d.dtype, field.dtype)

    ids = ", ".join(f.name for f in EVENT_FIELDS)
    for f in EVENT_FIELDS:
        check(f.name, f, False, f"event ids need {ids}")
    for coll in collections(want_truth):
        names = [coll.branch(f) for f in coll.fields]
        if not coll.truth and not any(n in descs for n in [coll.counter_field.name, *names]):
            raise SchemaError(
                f"{source}: no branch of the collection {coll.name} ({', '.join(names)}, counter "
                f"{coll.counter_field.name} optional for std::vector or RNTuple collections); if the file names them "
                f"otherwise, give the source prefixes: {{{coll.name}: <its prefix>}} or branches: {{<schema name>: "
                "<file's name>}"
            )
        if not coll.truth:
            cf = coll.counter_field
            if cf.name in descs or coll.name not in counters_optional:
                check(cf.name, cf, False, f"int32 counter of {coll.name}")
        for f in coll.fields:
            check(coll.branch(f), f, True, _group_desc(coll))
    return casts


def cast_to_schema(
    branch: str,
    values: np.ndarray,
    *,
    counts: np.ndarray | None = None,
    source: str = "<arrays>",
    entry_offset: int = 0,
) -> np.ndarray:
    """``values`` of a schema branch in the schema's dtype; one-line SchemaError naming the entry when a value
    does not fit it (an integer outside the type's range, a float beyond float32). No copy when already right."""
    field = field_of(branch)
    target = field.dtype
    if values.dtype == target:
        return values
    if values.size:
        if target.kind in "iu":
            info = np.iinfo(target)
            if values.min() < info.min or values.max() > info.max:
                bad = (values < info.min) | (values > info.max)
                _raise_at(
                    branch,
                    values,
                    bad,
                    counts,
                    source,
                    entry_offset,
                    f"which does not fit {target} (accepted: {field.accepted()})",
                )
        elif values.dtype.kind == "f" and values.dtype.itemsize > target.itemsize:
            big = np.isfinite(values) & (np.abs(values) > np.finfo(target).max)
            if big.any():
                _raise_at(
                    branch, values, big, counts, source, entry_offset, f"beyond {target} (accepted: {field.accepted()})"
                )
    return values.astype(target)


def _raise_at(
    branch: str, values: np.ndarray, bad: np.ndarray, counts: np.ndarray | None, source: str, offset: int, what: str
) -> None:
    if not bad.any():
        return
    i = int(np.argmax(bad))
    entry = i if counts is None else int(np.searchsorted(np.cumsum(counts), i, side="right"))
    raise SchemaError(
        f"{source}: branch '{branch}' entry {offset + entry} has value {_format_value(values[i])}, {what}"
    )


def _groups(want_truth: bool) -> dict[str, list[str]]:
    """Collection name -> its jagged branches (reco then truth) in on-disk order."""
    out: dict[str, list[str]] = {}
    for coll in collections(want_truth):
        out.setdefault(coll.name, []).extend(coll.branches)
    return out


def _format_value(v: Any) -> str:
    return str(v)  # numpy scalars print shortest round-trip ('0.1' for float32, 'nan', '300')


def invalid_mask(field: Field, v: np.ndarray) -> np.ndarray | None:
    """Mask of the values of ``v`` (already of dtype ``field.dtype``) the field does not accept (out of range,
    NaN, not an allowed value); None when every value is valid."""
    if field.allowed is not None:
        return ~np.isin(v, np.asarray(field.allowed))
    if field.is_float:
        lo = field.lo - FLOAT_RTOL * abs(field.lo)
        hi = field.hi + FLOAT_RTOL * abs(field.hi)
        return ~((v >= lo) & (v <= hi))  # NaN compares False: invalid; inf is outside any finite range
    info = np.iinfo(v.dtype)
    lo_i = max(math.ceil(field.lo), int(info.min))
    hi_i = min(math.floor(field.hi), int(info.max))
    if lo_i <= info.min and hi_i >= info.max:
        return None
    return (v < lo_i) | (v > hi_i)


def _within_range(field: Field, v: np.ndarray) -> bool:
    """Fast path: True when min and max are inside the field's range (NaN makes min/max NaN: False)."""
    if v.size == 0:
        return True
    if field.allowed is not None or v.dtype != field.dtype:
        return False
    lo, hi = field.bounds
    return bool(np.minimum.reduce(v) >= lo) and bool(np.maximum.reduce(v) <= hi)  # (v.min(): ~1 us more each)


def _check_values(
    name: str, field: Field, values: np.ndarray, counts: np.ndarray | None, source: str, offset: int
) -> None:
    if _within_range(field, values):
        return
    bad = invalid_mask(field, values)
    if bad is None or not bad.any():
        return
    i = int(np.argmax(bad))
    entry = i if counts is None else int(np.searchsorted(np.cumsum(counts), i, side="right"))
    raise SchemaError(
        f"{source}: branch '{name}' entry {offset + entry} has value {_format_value(values[i])}, "
        f"expected {field.accepted()}"
    )


def _scalar_values(arr: Any) -> np.ndarray:
    return np.asarray(arr) if isinstance(arr, np.ndarray) else ak.to_numpy(arr)


def _check_flat(
    flat: Mapping[str, Any],
    *,
    source: str,
    truth: bool | None,
    check_values: bool,
    counters_optional: set[str],
    offset: int = 0,
    n_events: int | None = None,
) -> int:
    """Validate flat branch name -> array; return the number of events."""
    want_truth = _want_truth(flat.keys(), truth)
    schema_names = list(branch_dtypes(want_truth))
    present = [n for n in schema_names if n in flat]
    descs = {n: _describe_array(flat[n]) for n in present}
    _check_layout(descs, source, want_truth, counters_optional)

    # every branch has one entry per event
    if n_events is None:
        n_events = len(flat[present[0]])
    for n in present:
        if len(flat[n]) != n_events:
            raise SchemaError(
                f"{source}: branch '{n}' has {len(flat[n])} entries, expected {n_events} (as '{present[0]}')"
            )

    # per-collection list lengths: each field agrees with the counter (or, without one, with the first field)
    counts: dict[str, np.ndarray] = {}
    for cname, branches in _groups(want_truth).items():
        counter = f"n{cname}"
        ref: np.ndarray | None = _scalar_values(flat[counter]) if counter in flat else None
        ref_name = counter
        for b in branches:
            c = ak.to_numpy(ak.num(flat[b], axis=1))
            if ref is None:
                ref, ref_name = c, b
                continue
            bad = c != ref
            if bad.any():
                e = int(np.argmax(bad))
                if ref_name == counter:
                    tail = f"but {counter} = {ref[e]}"
                else:
                    tail = f"but '{ref_name}' has {ref[e]} (all {cname} branches must have equal lengths)"
                raise SchemaError(f"{source}: branch '{b}' has {c[e]} values in entry {offset + e} {tail}")
        if ref is not None:
            counts[cname] = ref

    if not check_values:
        return n_events
    for f in EVENT_FIELDS:
        _check_values(f.name, f, _scalar_values(flat[f.name]), None, source, offset)
    for coll in collections(want_truth):
        if not coll.truth and coll.counter in flat:
            _check_values(coll.counter, coll.counter_field, _scalar_values(flat[coll.counter]), None, source, offset)
        for f in coll.fields:
            b = coll.branch(f)
            values = ak.to_numpy(ak.flatten(flat[b], axis=1))
            _check_values(b, f, values, counts[coll.name], source, offset)
    return n_events


def _normalise(events: Any, source: str) -> tuple[dict[str, Any], set[str]]:
    """Flat branch name -> array, and the collections given nested (their counter is implicit)."""
    if isinstance(events, Mapping):
        items = [(str(k), v) for k, v in events.items()]
    elif isinstance(events, ak.Array) and events.fields:
        items = [(f, events[f]) for f in events.fields]
    else:
        kind = f"awkward array of type {events.type}" if isinstance(events, ak.Array) else type(events).__name__
        raise SchemaError(
            f"{source}: expected an awkward record array (one entry per event) or a dict of branch arrays, got {kind}"
        )
    flat: dict[str, Any] = {}
    nested: set[str] = set()
    for name, value in items:
        if isinstance(value, ak.Array) and value.fields:  # a collection as one (jagged) record, as from ak.zip
            nested.add(name)
            for f in value.fields:
                flat[f"{name}_{f}"] = value[f]
        elif name not in flat:
            flat[name] = value
    for name, value in flat.items():
        if not isinstance(value, np.ndarray | ak.Array):
            flat[name] = ak.Array(value) if isinstance(value, list | tuple) else np.asarray(value)
    return flat, nested


def validate_arrays(
    events: Any,
    *,
    source: str = "<arrays>",
    truth: bool | None = None,
    check_values: bool = True,
    require_counters: bool = True,
) -> int:
    """Check in-memory events against the hits-tree schema; return the number of events.

    ``events``: an awkward record array with one entry per event whose fields are flat branch names
    (as ``uproot.TTree.arrays()`` returns) or nested collections (field ``EcalHit`` a jagged record of
    ieta/iphi/energy, as from ``ak.zip``), or a dict of branch name -> numpy/awkward array (either form).
    A nested collection needs no counter; a flat one needs ``nX`` unless ``require_counters`` is False
    (e.g. arrays read from ROOT-written ``std::vector`` branches).

    ``truth``: None checks the Jet truth fields when any is present (then all must be); True requires
    them; False ignores them. ``check_values=False`` checks branches, dtypes and lengths only.

    Raises :class:`SchemaError` (one line) at the first violation; extra branches are ignored.
    """
    flat, nested = _normalise(events, source)
    optional = {c.name for c in COLLECTIONS} if not require_counters else nested
    n = len(events) if isinstance(events, ak.Array) else None
    return _check_flat(
        flat, source=source, truth=truth, check_values=check_values, counters_optional=optional, n_events=n
    )


def exc_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception from a library, for one-line messages."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@contextmanager
def reading(source: str, what: str = "the tree") -> Iterator[None]:
    """Around uproot calls on a file: what a damaged file makes uproot raise (deserialisation, decompression, byte
    ranges) as one-line SchemaError ``SOURCE: cannot read WHAT (Error: its first line)``; SchemaError passes."""
    try:
        yield
    except SchemaError:
        raise
    except Exception as exc:
        hint = ""
        if "unsupported compression algorithm: b'CS'" in str(exc):  # ROOT's algorithm 3, still written on request
            hint = (
                ": it was written with ROOT's old compression algorithm (compression setting 3xx), which uproot "
                "cannot read; rewrite it with another, e.g. hadd -f505 new.root old.root (ZSTD)"
            )
        raise SchemaError(f"{source}: cannot read {what} ({exc_line(exc)}){hint}") from exc


#: A ROOT file starts with these 4 bytes, then a header whose first record begins at byte 100 (fBEGIN).
ROOT_MAGIC = b"root"
ROOT_MIN_BYTES = 100
#: What a file is when it starts with these bytes (for "not a ROOT file" messages).
_MAGIC_NAMES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (or .npz)"),
    (b"\x89HDF", "an HDF5 file"),
    (b"PAR1", "a Parquet file"),
    (b"\x1f\x8b", "a gzip file"),
    (b"\x28\xb5\x2f\xfd", "a zstd file"),
    (b"\x80", "a Python pickle"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"\x7fELF", "an executable"),
    (b"%PDF", "a PDF"),
    (b"\x89PNG", "a PNG image"),
    (b"BZh", "a bzip2 file"),
    (b"{", "text (JSON?)"),
    (b"#", "text"),
)


def _check_root_header(p: str) -> None:
    """One-line SchemaError for an empty, too short or non-ROOT local file (judged by its first bytes)."""
    size = os.path.getsize(p)
    if size == 0:
        raise SchemaError(f"{p}: empty file (0 bytes), not a ROOT file")
    with open(p, "rb") as f:
        head = f.read(20)
    if not head.startswith(ROOT_MAGIC):
        what = next((name for magic, name in _MAGIC_NAMES if head.startswith(magic)), None)
        shown = " ".join(f"{b:02x}" for b in head[:8])
        kind = f"; it looks like {what}" if what else ""
        raise SchemaError(
            f"{p}: not a ROOT file: it starts with bytes {shown} where a ROOT file starts with "
            f"'root' (72 6f 6f 74){kind}"
        )
    if size < ROOT_MIN_BYTES:
        raise SchemaError(
            f"{p}: too short to be a ROOT file ({size} bytes; the ROOT header alone takes {ROOT_MIN_BYTES}): truncated?"
        )
    end = _header_end(head)
    if size < end:
        raise SchemaError(f"{p}: truncated ROOT file ({size} bytes on disk, the header says {end})")


def _header_end(head: bytes) -> int:
    """``fEND`` of a ROOT file header (big-endian: magic, fVersion int32, fBEGIN int32, then fEND, int64 when
    fVersion >= 1000000, else int32): the file's size when it was closed (0 when the bytes are too few)."""
    version = int.from_bytes(head[4:8], "big", signed=True)
    field = head[12:20] if version >= 1_000_000 else head[12:16]
    return int.from_bytes(field, "big", signed=True) if len(field) in (4, 8) else 0


#: What reading a remote file needs: URL scheme -> (Python module, e2e extra, pip package).
REMOTE_NEEDS: dict[str, tuple[str, str, str]] = {
    "root": ("fsspec_xrootd", "xrootd", "fsspec-xrootd"),
    "http": ("aiohttp", "http", "aiohttp"),
    "https": ("aiohttp", "http", "aiohttp"),
}


def _check_remote(p: str) -> None:
    """One line naming what to install when a URL's scheme needs a package that is missing (no network used)."""
    import importlib.util

    scheme = p.split("://", 1)[0].lower()
    need = REMOTE_NEEDS.get(scheme)
    if need is not None and importlib.util.find_spec(need[0]) is None:
        raise SchemaError(
            f"{p}: reading {scheme}:// files needs {need[2]}: pip install 'e2e[{need[1]}]' (or pip install {need[2]})"
        )


def open_root_file(path: str | os.PathLike) -> Any:
    """``uproot.open(path)``, with a missing, non-regular, non-ROOT or truncated local file as one-line SchemaError."""
    import uproot

    p = os.fspath(path)
    local = "://" not in p
    if local and not os.path.exists(p):
        raise SchemaError(f"{p}: no such file")
    if local and os.path.isdir(p):
        raise SchemaError(f"{p}: a directory, not a ROOT file; give its files (e.g. '{os.path.join(p, '*.root')}')")
    if local and not os.path.isfile(p):
        raise SchemaError(f"{p}: not a regular file")
    if local:
        _check_root_header(p)
    else:
        _check_remote(p)
    try:
        file = uproot.open(p)
    except Exception as exc:
        raise SchemaError(f"{p}: cannot open as a ROOT file ({exc_line(exc)})") from exc
    return file


#: Classes of the trees e2e reads: TTrees and RNTuples (uproot reads both with the same calls).
TREE_CLASSES = ("TTree", "ROOT::RNTuple", "ROOT::Experimental::RNTuple")


def tree_class(file: Any, path: str, tree: str, hint: str = "") -> str:
    """The class of ``tree`` (a path such as ``fevt/RHTree``; the highest cycle of that name, as ROOT's ``Get`` and
    uproot read it, or the cycle named: ``Events;1``) in an open file; one-line SchemaError listing the file's trees
    when it has none of that name (``hint`` is appended, e.g. which parameter sets the name)."""
    with reading(path, "the file directory"):
        listed = file.classnames()
    found: dict[str, str] = {}
    cycles: dict[str, int] = {}
    for key, cls in listed.items():  # the highest cycle of each name: the object file[name] returns, as ROOT's Get
        name, _, cycle = key.rpartition(";")
        if not name:
            name, cycle = key, "0"
        c = int(cycle) if cycle.isdigit() else 0
        if c >= cycles.get(name, -1):
            found[name], cycles[name] = cls, c
    exact = listed.get(tree) if ";" in tree.rsplit("/", 1)[-1] else None  # a cycle named: 'Events;1'
    if exact is not None:
        found[tree] = exact
    trees = [k for k, c in found.items() if c in TREE_CLASSES]
    if tree not in trees:
        names = ", ".join(repr(t) for t in trees) or (
            "none; its directory lists no object at all: a damaged file, or one written empty" if not found else "none"
        )
        if tree in found:
            cycle = (
                f" (cycle {cycles[tree]}, the one read)"
                if sum(k.rpartition(";")[0] == tree for k in listed) > 1
                else ""
            )
            raise SchemaError(
                f"{path}: '{tree}' is a {found[tree]}{cycle}, not a TTree or RNTuple (trees in the file: {names}){hint}"
            )
        raise SchemaError(f"{path}: no TTree or RNTuple '{tree}' (trees in the file: {names}){hint}")
    return str(found[tree])


@dataclass(frozen=True)
class FileLayout:
    """What :func:`inspect_file` found: entries, Jet truth present, collections with a counter branch, the
    branches read with a cast (name -> (on disk, schema)), and schema name -> on-disk name."""

    entries: int
    truth: bool
    counters: frozenset[str]
    casts: Mapping[str, tuple[np.dtype, np.dtype]]
    names: Mapping[str, str]
    rntuple: bool


def zipped_names(on_disk: set[str], rename: dict[str, str]) -> dict[str, str]:
    """``rename`` with, for an RNTuple whose collections are records (``EcalHit.ieta``: uproot writes ``ak.zip``-ed
    collections so, without a counter), each schema branch that is not on disk under its own name or a given one
    named by its record field."""
    out = dict(rename)
    for c in collections(True):
        for f in c.fields:
            b, zipped = c.branch(f), f"{c.name}.{f.name}"
            if b not in out and b not in on_disk and zipped in on_disk:
                out[b] = zipped
    return out


def zipped_field(arrays: Mapping[str, Any], name: str) -> Any:
    """Branch ``name`` of arrays read by uproot: itself, or for an RNTuple record field ``X.f`` (:func:`zipped_names`)
    the field f of the records X, which is where uproot puts it; None when absent."""
    if name in arrays:
        return arrays[name]
    parent, dot, child = name.partition(".")
    if dot and parent in arrays and child in getattr(arrays[parent], "fields", ()):
        return arrays[parent][child]
    return None


def _describe_rntuple(ntuple: Any, names: list[str]) -> dict[str, _Desc]:
    """Like :func:`_describe_interpretation` for RNTuple fields, from a zero-entry read (no data)."""
    arrays = ntuple.arrays(names, entry_stop=0, library="ak", how=dict)
    out = {}
    for name in names:
        d = _describe_array(zipped_field(arrays, name))
        out[name] = _Desc(d.kind, d.dtype, d.typestr, vector=d.kind == "jagged")
    return out


def inspect_file(
    path: str | os.PathLike[str],
    tree: str = "Events",
    *,
    truth: bool | None = None,
    names: Mapping[str, str] | None = None,
) -> FileLayout:
    """Open a hits file and check its layout against the schema without reading data (one-line SchemaError).

    ``names``: schema branch -> branch name in the file, for files with their own names (default: the same).
    Integer and float branches of other widths are accepted and reported in ``casts``; ``std::vector`` (and
    RNTuple) collections need no counter.
    """
    p = os.fspath(path)
    source = f"{p}:{tree}"
    rename = dict(names or {})
    with open_root_file(p) as file:
        rntuple = tree_class(file, p, tree) != "TTree"
        with reading(source):
            ttree = file[tree]
            on_disk = set(ttree.keys())
            if rntuple:
                rename = zipped_names(on_disk, rename)
            present = [b for b in branch_dtypes(True) if rename.get(b, b) in on_disk]
            want_truth = _want_truth(present, truth)
            wanted = [b for b in branch_dtypes(want_truth) if b in present]
            if rntuple:
                by_file = _describe_rntuple(ttree, [rename.get(b, b) for b in wanted])
                descs = {b: by_file[rename.get(b, b)] for b in wanted}
            else:
                descs = {b: _describe_interpretation(ttree[rename.get(b, b)]) for b in wanted}
            entries = int(ttree.num_entries)
            if not rntuple:
                check_branch_entries(ttree, [rename.get(b, b) for b in wanted], entries, source)
    rhtree = {"runId", "eventId"} <= on_disk and not present  # MLAnalyzer's RecHitAnalyzer ids, no hits branch
    if rhtree:
        raise SchemaError(
            f"{source}: an MLAnalyzer RHTree (runId, eventId, dense maps), not a hits tree: e2e-run reads it with "
            "source type RHTreeSource (process_configs/tau_cnn_rhtree.yaml); e2e-validate and e2e-display read hits "
            "trees"
        )
    optional: set[str] = set()
    for cname, branches in _groups(want_truth).items():
        jagged = [descs[b] for b in branches if b in descs]
        if f"n{cname}" not in descs and jagged and all(d.vector for d in jagged):
            optional.add(cname)
    shown = {b: rename[b] for b in wanted if rename.get(b, b) != b}

    def named(message: str) -> str:  # say the file's own names too
        for b, n in shown.items():
            message = message.replace(f"'{b}'", f"'{b}' (file branch '{n}')")
        return message

    try:
        casts = _check_layout(descs, source, want_truth, optional)
    except SchemaError as err:
        raise SchemaError(named(str(err))) from None
    counters = frozenset(c.name for c in COLLECTIONS if f"n{c.name}" in descs)
    return FileLayout(entries, want_truth, counters, casts, {b: rename.get(b, b) for b in wanted}, rntuple)


def check_branch_entries(ttree: Any, branches: Iterable[str], entries: int, source: str) -> None:
    """One-line SchemaError when a TTree branch has another number of entries than its tree (ROOT allows it, for
    a branch filled on its own with ``TBranch::Fill``): every branch read must hold one entry per event."""
    for name in branches:
        n = int(ttree[name].num_entries)
        if n != entries:
            raise SchemaError(
                f"{source}: branch '{name}' has {n} entries but the tree has {entries} (every branch read must have "
                "one entry per event)"
            )


def read_chunk(arrays: Mapping[str, Any], layout: FileLayout, units: Mapping[str, float] | None = None) -> dict:
    """Arrays read with the file's names -> schema names; unit factors applied to float branches."""
    out = {}
    for schema_name, file_name in layout.names.items():
        value = zipped_field(arrays, file_name)
        if value is not None:
            factor = (units or {}).get(schema_name)
            out[schema_name] = value * factor if factor is not None else value
    return out


def validate_file(
    path: str | os.PathLike[str],
    tree: str = "Events",
    *,
    truth: bool | None = None,
    check_values: bool = True,
    step_size: int = 50_000,
    names: Mapping[str, str] | None = None,
    units: Mapping[str, float] | None = None,
) -> int:
    """Check a ROOT file's hits tree against the schema; return its number of entries.

    The layout is checked first (:func:`inspect_file`: branches, per-event shape, compatible dtypes); then the
    data are read in chunks of ``step_size`` entries and checked (counter/list lengths, every value fits the
    schema's dtype, value ranges, NaN/inf), with entry numbers counted from the start of the tree.
    ``check_values=False`` reads no data. Every problem, including a missing, non-ROOT or truncated file or a
    missing tree, raises :class:`SchemaError` with one line naming the file.
    """
    layout = inspect_file(path, tree, truth=truth, names=names)
    if not check_values:
        return layout.entries
    p = os.fspath(path)
    source = f"{p}:{tree}"
    optional = {c.name for c in COLLECTIONS if c.name not in layout.counters}
    n = 0
    with open_root_file(p) as file:
        with reading(source, "the tree data"):
            if layout.rntuple:  # page checksums, which uproot does not verify, before it decompresses the pages
                from dataformats.rntuple_pages import PageChecksums

                PageChecksums(file[tree], layout.names.values(), source).check(0, layout.entries)
            for chunk, report in file[tree].iterate(
                list(layout.names.values()), step_size=step_size, library="ak", report=True, how=dict
            ):
                flat = read_chunk(chunk, layout, units)
                offset = int(report.tree_entry_start)
                for b, v in flat.items():
                    if b in layout.casts:
                        flat[b] = _cast_any(b, v, source, offset)
                n += _check_flat(
                    flat,
                    source=source,
                    truth=layout.truth,
                    check_values=True,
                    counters_optional=optional,
                    offset=offset,
                    n_events=len(flat[ID_NAMES[0]]),
                )
    if n != layout.entries:
        raise SchemaError(f"{source}: read {n} entries, the tree has {layout.entries}")
    return layout.entries


ID_NAMES: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS)


def _cast_any(branch: str, value: Any, source: str, offset: int) -> Any:
    """:func:`cast_to_schema` for a scalar (numpy/awkward) or jagged awkward branch."""
    if isinstance(value, ak.Array) and value.ndim == 2:
        counts = ak.to_numpy(ak.num(value, axis=1))
        flat = cast_to_schema(
            branch, ak.to_numpy(ak.flatten(value, axis=1)), counts=counts, source=source, entry_offset=offset
        )
        return ak.unflatten(flat, counts)
    return cast_to_schema(branch, _scalar_values(value), source=source, entry_offset=offset)


def field_of(branch: str) -> Field:
    """The schema Field of a branch name (event id, counter ``nX`` or ``X_field``); KeyError if not in the schema."""
    try:
        return _fields_by_branch()[branch]
    except KeyError:
        raise KeyError(branch) from None


@functools.cache
def _fields_by_branch() -> dict[str, Field]:
    """Branch name -> schema Field, built once (the schema is fixed; first definition wins)."""
    table: dict[str, Field] = {}
    for f in EVENT_FIELDS:
        table.setdefault(f.name, f)
    for coll in collections(True):
        if not coll.truth:
            table.setdefault(coll.counter, coll.counter_field)
        for f in coll.fields:
            table.setdefault(coll.branch(f), f)
    return table


def check_branch_values(branch: str, values: np.ndarray, *, counts: np.ndarray | None = None,
                        source: str = "<arrays>", entry_offset: int = 0) -> None:  # fmt: skip
    """Check flat ``values`` of one schema branch (NaN/inf, range, allowed values); one-line SchemaError.

    ``counts``: entries per event for a jagged branch, so the message names the event entry
    (counted from ``entry_offset``); None for one value per event.
    """
    _check_values(branch, field_of(branch), values, counts, source, entry_offset)
