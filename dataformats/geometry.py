"""Detector geometry of e2e: every detector constant lives here.

The calorimeter grid is the stitched E2E grid (REFERENCE.md): 280 x 360 ECAL
crystals, EE- rows 0-54, EB rows 55-224 (170 rows of 0.0174 in eta, ieta
-85..85), EE+ rows 225-279, the endcaps cut into 5 pseudo-crystals per HCAL tower
up to |eta| = 3.0. HCAL towers are 56 x 72, each 5 x 5 crystals. Phi bins start
at -pi. Lengths are in cm, angles in rad, the field in tesla.

Index conventions: a value outside the grid maps to index -1 (eta beyond
|eta| = 3.0, NaN); phi always wraps into [0, n_phi).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "B_FIELD_T",
    "ECAL_N_IETA",
    "ECAL_N_IPHI",
    "ECAL_BARREL_ROWS",
    "ECAL_ENDCAP_ROWS",
    "ECAL_BARREL_DETA",
    "ECAL_BARREL_ETA_MAX",
    "ETA_MAX",
    "ECAL_ETA_EDGES",
    "ECAL_PHI_EDGES",
    "HCAL_N_IETA",
    "HCAL_N_IPHI",
    "CRYSTALS_PER_TOWER",
    "HCAL_ETA_EDGES",
    "HCAL_PHI_EDGES",
    "ECAL_FACE_RADIUS_CM",
    "ECAL_FACE_Z_CM",
    "HCAL_FACE_RADIUS_CM",
    "HCAL_FACE_Z_CM",
    "TRACKER_RADIUS_CM",
    "TRACKER_HALF_LENGTH_CM",
    "TRACKER_LAYER_NAMES",
    "TRACKER_LAYER_RADII_CM",
    "TRACKER_LAYER_HALF_LENGTHS_CM",
    "TRACK_ETA_MAX",
    "SEED_WINDOW_TOWERS",
    "ecal_ieta",
    "ecal_iphi",
    "ecal_eta",
    "ecal_phi",
    "hcal_ieta",
    "hcal_iphi",
    "hcal_eta",
    "hcal_phi",
    "ecal_to_hcal",
    "hcal_to_ecal_seed",
    "wrap_iphi",
    "is_barrel",
]

#: Solenoid field (T), CMS.
B_FIELD_T = 3.8

#: Stitched ECAL grid (REFERENCE.md, E2E DetFrameProducer).
ECAL_N_IETA = 280
ECAL_N_IPHI = 360
ECAL_BARREL_ROWS = 170
ECAL_ENDCAP_ROWS = 55
ECAL_BARREL_DETA = 0.0174
ECAL_BARREL_ETA_MAX = 85 * ECAL_BARREL_DETA  # 1.479
ETA_MAX = 3.0

#: HCAL towers: 5 x 5 crystals each.
CRYSTALS_PER_TOWER = 5
HCAL_N_IETA = ECAL_N_IETA // CRYSTALS_PER_TOWER  # 56
HCAL_N_IPHI = ECAL_N_IPHI // CRYSTALS_PER_TOWER  # 72


def _ecal_eta_edges() -> np.ndarray:
    endcap = np.linspace(-ETA_MAX, -ECAL_BARREL_ETA_MAX, ECAL_ENDCAP_ROWS + 1)
    barrel = (np.arange(ECAL_BARREL_ROWS + 1) - 85) * ECAL_BARREL_DETA
    edges = np.concatenate([endcap[:-1], barrel, -endcap[::-1][1:]])
    edges[ECAL_ENDCAP_ROWS] = -ECAL_BARREL_ETA_MAX  # exact stitching
    edges[ECAL_ENDCAP_ROWS + ECAL_BARREL_ROWS] = ECAL_BARREL_ETA_MAX
    return edges


#: Row edges in eta, shape (281,), increasing from -3.0 to +3.0.
ECAL_ETA_EDGES: npt.NDArray[np.float64] = _ecal_eta_edges()
#: Column edges in phi, shape (361,), from -pi to +pi.
ECAL_PHI_EDGES: npt.NDArray[np.float64] = np.linspace(-np.pi, np.pi, ECAL_N_IPHI + 1)
#: HCAL tower edges: every fifth crystal edge.
HCAL_ETA_EDGES: npt.NDArray[np.float64] = ECAL_ETA_EDGES[::CRYSTALS_PER_TOWER].copy()
HCAL_PHI_EDGES: npt.NDArray[np.float64] = ECAL_PHI_EDGES[::CRYSTALS_PER_TOWER].copy()

#: Calorimeter front faces (cm): ECAL barrel radius ~1.29 m (REFERENCE.md),
#: ECAL endcap face |z| ~3.15 m (CMS ECAL TDR), HCAL ~1.8 m / 3.9 m.
ECAL_FACE_RADIUS_CM = 129.0
ECAL_FACE_Z_CM = 315.4
HCAL_FACE_RADIUS_CM = 179.0
HCAL_FACE_Z_CM = 388.0

#: Tracker volume (REFERENCE.md: radius 1.29 m, half-length 3.0 m).
TRACKER_RADIUS_CM = 129.0
TRACKER_HALF_LENGTH_CM = 300.0
#: Track acceptance in |eta|.
TRACK_ETA_MAX = 2.5

#: Barrel tracker layers stored as TrackerHit.layer 0..7 (REFERENCE.md radii;
#: half-lengths: Phase-1 BPIX 26.7 cm, TIB 70 cm, TOB 109 cm).
TRACKER_LAYER_NAMES: tuple[str, ...] = ("BPIX1", "BPIX2", "BPIX3", "BPIX4", "TIB1", "TIB2", "TOB1", "TOB2")
TRACKER_LAYER_RADII_CM: npt.NDArray[np.float64] = np.array([2.9, 6.8, 10.9, 16.0, 25.5, 33.9, 60.8, 69.2])
TRACKER_LAYER_HALF_LENGTHS_CM: npt.NDArray[np.float64] = np.array([26.7] * 4 + [70.0] * 2 + [109.0] * 2)

#: Jet seed search window (towers), as E2E: 7 x 7 towers around the jet axis.
SEED_WINDOW_TOWERS = 7


def _edge_index(values: npt.ArrayLike, edges: np.ndarray) -> np.ndarray:
    """Bin index of each value in ``edges`` (closed low edge; top edge belongs to the last bin); -1 outside."""
    v = np.asarray(values, dtype=np.float64)
    idx = np.searchsorted(edges, v, side="right") - 1
    n = len(edges) - 1
    idx = np.where(v == edges[-1], n - 1, idx)
    inside = (v >= edges[0]) & (v <= edges[-1])  # False for NaN
    return np.where(inside, idx, -1).astype(np.int64)


def _phi_index(phi: npt.ArrayLike, edges: np.ndarray) -> np.ndarray:
    """Column of each phi (wrapped into [-pi, pi)) on the phi ``edges``; -1 for NaN/inf."""
    p = np.asarray(phi, dtype=np.float64)
    finite = np.isfinite(p)
    w = np.mod(np.where(finite, p, 0.0) + np.pi, 2.0 * np.pi) - np.pi
    n = len(edges) - 1
    idx = np.clip(np.searchsorted(edges, w, side="right") - 1, 0, n - 1)
    return np.where(finite, idx, -1).astype(np.int64)


def ecal_ieta(eta: npt.ArrayLike) -> np.ndarray:
    """ECAL row 0..279 of pseudorapidity ``eta``; -1 beyond |eta| = 3.0 or NaN."""
    return _edge_index(eta, ECAL_ETA_EDGES)


def ecal_iphi(phi: npt.ArrayLike) -> np.ndarray:
    """ECAL column 0..359 of azimuth ``phi`` (rad, any value: wraps); -1 for NaN/inf."""
    return _phi_index(phi, ECAL_PHI_EDGES)


def ecal_eta(ieta: npt.ArrayLike) -> np.ndarray:
    """Eta at the centre of ECAL row ``ieta``; NaN for rows outside 0..279."""
    i = np.asarray(ieta, dtype=np.int64)
    ok = (i >= 0) & (i < ECAL_N_IETA)
    j = np.where(ok, i, 0)
    return np.where(ok, 0.5 * (ECAL_ETA_EDGES[j] + ECAL_ETA_EDGES[j + 1]), np.nan)


def ecal_phi(iphi: npt.ArrayLike) -> np.ndarray:
    """Phi (rad, in [-pi, pi)) at the centre of ECAL column ``iphi`` (wrapped modulo 360)."""
    i = wrap_iphi(iphi, ECAL_N_IPHI)
    return -np.pi + (i + 0.5) * (2.0 * np.pi / ECAL_N_IPHI)


def hcal_ieta(eta: npt.ArrayLike) -> np.ndarray:
    """HCAL tower row 0..55 of ``eta``; -1 beyond |eta| = 3.0 or NaN."""
    return _edge_index(eta, HCAL_ETA_EDGES)


def hcal_iphi(phi: npt.ArrayLike) -> np.ndarray:
    """HCAL tower column 0..71 of ``phi`` (rad, wraps); -1 for NaN/inf."""
    return _phi_index(phi, HCAL_PHI_EDGES)


def hcal_eta(ieta: npt.ArrayLike) -> np.ndarray:
    """Eta at the centre of HCAL row ``ieta``; NaN outside 0..55."""
    i = np.asarray(ieta, dtype=np.int64)
    ok = (i >= 0) & (i < HCAL_N_IETA)
    j = np.where(ok, i, 0)
    return np.where(ok, 0.5 * (HCAL_ETA_EDGES[j] + HCAL_ETA_EDGES[j + 1]), np.nan)


def hcal_phi(iphi: npt.ArrayLike) -> np.ndarray:
    """Phi (rad) at the centre of HCAL column ``iphi`` (wrapped modulo 72)."""
    i = wrap_iphi(iphi, HCAL_N_IPHI)
    return -np.pi + (i + 0.5) * (2.0 * np.pi / HCAL_N_IPHI)


def wrap_iphi(iphi: npt.ArrayLike, n: int = ECAL_N_IPHI) -> np.ndarray:
    """Wrap phi indices into [0, n)."""
    return np.mod(np.asarray(iphi, dtype=np.int64), n)


def ecal_to_hcal(ieta: npt.ArrayLike, iphi: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """HCAL tower (row, column) containing ECAL crystal (ieta, iphi)."""
    return (
        np.asarray(ieta, dtype=np.int64) // CRYSTALS_PER_TOWER,
        np.asarray(iphi, dtype=np.int64) // CRYSTALS_PER_TOWER,
    )


def hcal_to_ecal_seed(tieta: npt.ArrayLike, tiphi: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Central crystal of an HCAL tower, the E2E jet-seed convention: tower * 5 + 2."""
    c = CRYSTALS_PER_TOWER
    return np.asarray(tieta, dtype=np.int64) * c + c // 2, np.asarray(tiphi, dtype=np.int64) * c + c // 2


def is_barrel(ieta: npt.ArrayLike) -> np.ndarray:
    """True for ECAL rows of the barrel (55..224)."""
    i = np.asarray(ieta)
    return (i >= ECAL_ENDCAP_ROWS) & (i < ECAL_ENDCAP_ROWS + ECAL_BARREL_ROWS)
