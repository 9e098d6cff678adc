"""Flat-array helpers of the simulation: event offsets and four-vector kinematics (GeV)."""

from __future__ import annotations

import numpy as np


def offsets(counts: np.ndarray) -> np.ndarray:
    """Offsets [n+1] of per-event counts: event e owns entries offsets[e]:offsets[e+1]."""
    out = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def pt_eta(px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transverse momentum and pseudorapidity; eta = +-1e9 along the beam (pT = 0)."""
    pt = np.hypot(px, py)
    safe = np.where(pt > 0, pt, 1.0)
    eta = np.where(pt > 0, np.arcsinh(pz / safe), np.sign(pz) * 1e9)
    return pt, eta


def four_vector_kinematics(px, py, pz, e):
    """(pt, eta, phi, mass) of four-vector components."""
    pt, eta = pt_eta(px, py, pz)
    mass = np.sqrt(np.maximum(e * e - px * px - py * py - pz * pz, 0.0))
    return pt, eta, np.arctan2(py, px), mass
