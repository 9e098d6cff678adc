"""Numba kernels of the detector simulation against slow, obviously-correct references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dataformats import geometry as geo
from simulation import kernels as K
from simulation.arrays import offsets
from simulation.detector import DetectorResponse, DetectorSimulation, noise_tail_probability


def _step_to_radius(x, y, z, px, py, pz, q, b, radius, ds=1e-3, s_max=2000.0):
    """Reference: integrate the equation of motion in small steps until r >= radius."""
    pt = math.hypot(px, py)
    phi = math.atan2(py, px)
    kappa = 0.0 if q == 0 else q * K.C_LIGHT * b / pt / 100.0  # 1/cm
    s = 0.0
    while s < s_max:
        if math.hypot(x, y) >= radius:
            return s, x, y, z
        x += math.cos(phi) * ds
        y += math.sin(phi) * ds
        z += pz / pt * ds
        phi -= kappa * ds
        s += ds
    return -1.0, x, y, z


@pytest.mark.parametrize(
    ("x0", "y0", "px", "py", "pz", "q", "radius"),
    [
        (0.0, 0.0, 1.0, 0.5, 0.3, 1.0, 50.0),
        (0.0, 0.0, -0.8, 0.2, -1.0, -1.0, 60.8),
        (0.3, -0.2, 2.0, 1.0, 0.0, 1.0, 10.9),  # displaced start
        (0.5, 0.1, -0.3, -0.9, 2.0, -1.0, 6.8),
        (0.0, 0.0, 3.0, 4.0, 1.0, 0.0, 129.0),  # neutral
        (1.0, 1.0, -1.0, 2.0, 1.0, 0.0, 2.9),
    ],
)
def test_helix_crossing_matches_stepping(x0, y0, px, py, pz, q, radius) -> None:
    s = K.helix_to_cylinder(x0, y0, 0.0, px, py, pz, q, 3.8, radius)
    s_ref, xr, yr, zr = _step_to_radius(x0, y0, 0.0, px, py, pz, q, 3.8, radius)
    assert s == pytest.approx(s_ref, abs=2e-3)
    x, y, z = K.helix_position(x0, y0, 0.0, px, py, pz, q, 3.8, s)
    assert math.hypot(x, y) == pytest.approx(radius, abs=1e-6)
    assert (x, y, z) == pytest.approx((xr, yr, zr), abs=5e-3)


def test_looper_never_reaches_a_large_radius() -> None:
    # pT = 0.3 GeV in 3.8 T: helix diameter 2 * 26.3 cm < ECAL radius
    assert K.helix_to_cylinder(0.0, 0.0, 0.0, 0.3, 0.0, 0.1, 1.0, 3.8, 129.0) == -1.0
    ok, *_ = K.propagate_to_face(0.0, 0.0, 0.0, 0.3, 0.0, 0.0, 1.0, 3.8, 129.0, 315.4)
    assert not ok


def test_deposit_conserves_energy_and_wraps_phi() -> None:
    grid = np.zeros(geo.ECAL_N_IETA * geo.ECAL_N_IPHI)
    touched = np.empty(grid.size, np.int64)
    scratch = np.empty((2, 5))
    n = K.deposit(grid, 280, 360, 140.5, 359.7, 10.0, 0.35, 2, touched, 0, scratch)
    assert grid.sum() == pytest.approx(10.0, rel=1e-12)
    img = grid.reshape(280, 360)
    assert img[:, 0].sum() > 0.5 and img[:, 359].sum() > 4.0  # shared across the phi seam
    assert n == np.count_nonzero(grid) == 25
    # rows beyond |eta| = 3 leak energy (the only loss)
    grid[:] = 0.0
    K.deposit(grid, 280, 360, 0.1, 10.5, 10.0, 1.0, 2, touched, 0, scratch)
    assert 3.0 < grid.sum() < 10.0


def test_noise_tail_sampler_follows_the_truncated_gaussian() -> None:
    from numba import njit

    @njit
    def draw(a, n, seed):
        np.random.seed(seed)  # noqa: NPY002 - numba's stream
        out = np.empty(n)
        for i in range(n):
            out[i] = K.gaussian_tail(a)
        return out

    a = 1.6
    x = draw(a, 200_000, 3)
    assert x.min() > a
    # mean of N(0,1) truncated below at a: phi(a) / (1 - Phi(a))
    phi = math.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
    expected = phi / (0.5 * math.erfc(a / math.sqrt(2)))
    assert x.mean() == pytest.approx(expected, rel=0.01)


def _seeds_reference(jet_eta, jet_phi, hits):
    """Reference: hottest tower in the 7x7 window, by brute force over a dense HCAL image."""
    img = np.zeros((geo.HCAL_N_IETA, geo.HCAL_N_IPHI))
    for ie, ip, e in hits:
        img[ie, ip] = e
    out = []
    for eta, phi in zip(jet_eta, jet_phi, strict=True):
        te, tp = int(geo.hcal_ieta(eta)), int(geo.hcal_iphi(phi))
        best, be, bp = 0.0, te, tp
        for r in range(te - 3, te + 4):
            for c in range(tp - 3, tp + 4):
                if 0 <= r < geo.HCAL_N_IETA and img[r, c % 72] > best:
                    best, be, bp = img[r, c % 72], r, c % 72
        out.append((be * 5 + 2, bp * 5 + 2, best > 0))
    return out


def test_jet_seeds_match_brute_force_including_phi_seam_and_eta_edge() -> None:
    from simulation.jets import jet_seeds

    rng = np.random.default_rng(1)
    jet_eta = np.array([0.1, 2.45, -2.45, 1.0, 0.5])
    jet_phi = np.array([3.13, -3.13, 0.0, 1.0, -2.0])
    hits = [(int(rng.integers(0, 56)), int(rng.integers(0, 72)), float(rng.uniform(1, 50))) for _ in range(300)]
    hits += [(geo.hcal_ieta(0.1) + 1, 0, 500.0), (55, 71, 400.0)]  # across the seam / at the eta edge
    hits = sorted({(h[0], h[1]): h for h in hits}.values())
    counts = np.array([len(hits)] + [0] * 0)
    h = np.array(hits, dtype=float)
    jets = {"eta": jet_eta, "phi": jet_phi, "counts": np.array([len(jet_eta)])}
    se, sp, found = jet_seeds(jets, counts, h[:, 0], h[:, 1], h[:, 2], np.zeros(56 * 72))
    ref = _seeds_reference(jet_eta, jet_phi, hits)
    assert list(zip(se.tolist(), sp.tolist(), found.tolist(), strict=True)) == ref
    # a jet with no hit in its window falls back to its own tower, flagged
    se, sp, found = jet_seeds(
        {"eta": np.array([0.0]), "phi": np.array([0.0]), "counts": np.array([1])},
        np.array([0]),
        np.zeros(0),
        np.zeros(0),
        np.zeros(0),
        np.zeros(56 * 72),
    )
    assert not found[0] and se[0] == geo.hcal_ieta(0.0) * 5 + 2


def test_noise_only_occupancy_matches_the_tail_probability() -> None:
    resp = DetectorResponse()
    sim = DetectorSimulation(resp)
    n_ev = 20
    empty = {k: np.zeros(0) for k in ("px", "py", "pz", "e", "charge", "vx", "vy", "vz", "rdec")}
    empty["pid"] = np.zeros(0, np.int32)
    empty["kind"] = np.zeros(0, np.int8)
    hits = sim.simulate(empty, offsets(np.zeros(n_ev, np.int64)), np.zeros(n_ev), seed=4)
    p_eb = noise_tail_probability(resp.ecal.noise_barrel, resp.ecal.threshold_barrel)
    barrel = geo.is_barrel(hits.ecal[:, 0])
    assert barrel.sum() / n_ev == pytest.approx(61200 * p_eb, rel=0.03)
    assert np.all(hits.ecal[barrel, 2] > resp.ecal.threshold_barrel)
    assert np.all(hits.ecal[~barrel, 2] > resp.ecal.threshold_endcap)
    assert hits.tracks.shape[0] == 0 and hits.tracker_hits.shape[0] == 0
