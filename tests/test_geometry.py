"""Geometry of the stitched ECAL grid and the HCAL towers at bin edges, seams and invalid inputs."""

from __future__ import annotations

import numpy as np
import pytest

from dataformats import geometry as g


def up(x: float) -> float:
    return float(np.nextafter(x, np.inf))


def down(x: float) -> float:
    return float(np.nextafter(x, -np.inf))


# ---------------------------------------------------------------------------- constants and edges


def test_grid_sizes() -> None:
    assert (g.ECAL_N_IETA, g.ECAL_N_IPHI) == (280, 360)
    assert (g.HCAL_N_IETA, g.HCAL_N_IPHI) == (56, 72)
    assert g.ECAL_BARREL_ROWS + 2 * g.ECAL_ENDCAP_ROWS == g.ECAL_N_IETA
    assert g.ECAL_ETA_EDGES.shape == (281,)
    assert g.ECAL_PHI_EDGES.shape == (361,)
    assert g.HCAL_ETA_EDGES.shape == (57,)
    assert g.HCAL_PHI_EDGES.shape == (73,)
    assert len(g.TRACKER_LAYER_NAMES) == len(g.TRACKER_LAYER_RADII_CM) == len(g.TRACKER_LAYER_HALF_LENGTHS_CM) == 8


def test_eta_edges_monotonic_symmetric_and_exact_at_ends() -> None:
    e = g.ECAL_ETA_EDGES
    assert np.all(np.diff(e) > 0)
    assert e[0] == -3.0 and e[-1] == 3.0
    assert e[140] == 0.0
    np.testing.assert_allclose(e, -e[::-1], rtol=0, atol=1e-12)
    assert e[g.ECAL_ENDCAP_ROWS] == -g.ECAL_BARREL_ETA_MAX
    assert e[g.ECAL_ENDCAP_ROWS + g.ECAL_BARREL_ROWS] == g.ECAL_BARREL_ETA_MAX
    assert g.ECAL_BARREL_ETA_MAX == pytest.approx(1.479, abs=1e-12)


def test_barrel_rows_are_0174_wide() -> None:
    barrel = g.ECAL_ETA_EDGES[g.ECAL_ENDCAP_ROWS : g.ECAL_ENDCAP_ROWS + g.ECAL_BARREL_ROWS + 1]
    assert barrel.shape == (171,)
    np.testing.assert_allclose(np.diff(barrel), 0.0174, rtol=0, atol=1e-12)


def test_endcap_rows_have_equal_width_up_to_eta_3() -> None:
    width = (3.0 - g.ECAL_BARREL_ETA_MAX) / g.ECAL_ENDCAP_ROWS
    minus = g.ECAL_ETA_EDGES[: g.ECAL_ENDCAP_ROWS + 1]
    plus = g.ECAL_ETA_EDGES[-(g.ECAL_ENDCAP_ROWS + 1) :]
    np.testing.assert_allclose(np.diff(minus), width, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.diff(plus), width, rtol=0, atol=1e-12)
    assert width > 0.0174  # endcap pseudo-crystals are wider than barrel crystals in eta


def test_hcal_edges_are_every_fifth_ecal_edge() -> None:
    np.testing.assert_array_equal(g.HCAL_ETA_EDGES, g.ECAL_ETA_EDGES[::5])
    np.testing.assert_array_equal(g.HCAL_PHI_EDGES, g.ECAL_PHI_EDGES[::5])
    # the barrel/endcap seam is a tower edge
    assert g.ECAL_ENDCAP_ROWS % g.CRYSTALS_PER_TOWER == 0
    assert g.HCAL_ETA_EDGES[11] == -g.ECAL_BARREL_ETA_MAX
    assert g.HCAL_ETA_EDGES[45] == g.ECAL_BARREL_ETA_MAX


def test_phi_edges() -> None:
    assert g.ECAL_PHI_EDGES[0] == -np.pi and g.ECAL_PHI_EDGES[-1] == np.pi
    np.testing.assert_allclose(np.diff(g.ECAL_PHI_EDGES), 2 * np.pi / 360, rtol=1e-12)


# ---------------------------------------------------------------------------- eta -> row


def test_eta_at_grid_ends() -> None:
    assert g.ecal_ieta(-3.0) == 0
    assert g.ecal_ieta(3.0) == 279  # the top edge belongs to the last row
    assert g.hcal_ieta(-3.0) == 0
    assert g.hcal_ieta(3.0) == 55


@pytest.mark.parametrize("eta", [up(3.0), down(-3.0), 3.0001, -3.0001, 5.0, -10.0])
def test_eta_just_beyond_grid_is_minus_one(eta: float) -> None:
    assert g.ecal_ieta(eta) == -1
    assert g.hcal_ieta(eta) == -1


def test_barrel_endcap_stitch() -> None:
    b = g.ECAL_BARREL_ETA_MAX  # 85 * 0.0174
    assert g.ecal_ieta(-b) == 55  # first barrel row starts at -1.479
    assert g.ecal_ieta(down(-b)) == 54  # last EE- row
    assert g.ecal_ieta(down(b)) == 224  # last barrel row
    assert g.ecal_ieta(b) == 225  # first EE+ row starts at +1.479
    assert g.hcal_ieta(-b) == 11 and g.hcal_ieta(down(-b)) == 10
    assert g.hcal_ieta(down(b)) == 44 and g.hcal_ieta(b) == 45
    assert not g.is_barrel(54) and g.is_barrel(55) and g.is_barrel(224) and not g.is_barrel(225)


def test_eta_zero_between_rows_139_and_140() -> None:
    assert g.ecal_ieta(0.0) == 140
    assert g.ecal_ieta(-0.0) == 140
    assert g.ecal_ieta(down(0.0)) == 139
    assert g.ecal_ieta(-1e-9) == 139
    assert g.hcal_ieta(0.0) == 28 and g.hcal_ieta(-1e-9) == 27


def test_each_edge_maps_to_the_bin_starting_at_it() -> None:
    expected = np.append(np.arange(280), 279)
    np.testing.assert_array_equal(g.ecal_ieta(g.ECAL_ETA_EDGES), expected)
    # just below each inner edge is the previous row
    np.testing.assert_array_equal(g.ecal_ieta(np.nextafter(g.ECAL_ETA_EDGES[1:-1], -np.inf)), np.arange(279))
    np.testing.assert_array_equal(g.hcal_ieta(g.HCAL_ETA_EDGES), np.append(np.arange(56), 55))


def test_centres_round_trip() -> None:
    rows = np.arange(280)
    np.testing.assert_array_equal(g.ecal_ieta(g.ecal_eta(rows)), rows)
    towers = np.arange(56)
    np.testing.assert_array_equal(g.hcal_ieta(g.hcal_eta(towers)), towers)
    cols = np.arange(360)
    np.testing.assert_array_equal(g.ecal_iphi(g.ecal_phi(cols)), cols)
    tcols = np.arange(72)
    np.testing.assert_array_equal(g.hcal_iphi(g.hcal_phi(tcols)), tcols)
    assert np.all(g.ecal_phi(cols) >= -np.pi) and np.all(g.ecal_phi(cols) < np.pi)


def test_eta_of_invalid_rows_is_nan() -> None:
    assert np.all(np.isnan(g.ecal_eta([-1, 280, 1000])))
    assert np.all(np.isnan(g.hcal_eta([-1, 56])))


# ---------------------------------------------------------------------------- phi -> column


def test_phi_seam() -> None:
    assert g.ecal_iphi(-np.pi) == 0
    assert g.ecal_iphi(np.pi) == 0  # +pi is the same azimuth as -pi
    assert g.ecal_iphi(float(np.float32(np.pi))) == 0  # float32 pi is slightly above numpy pi
    assert g.ecal_iphi(np.pi - 1e-12) == 359
    assert g.ecal_iphi(-np.pi - 1e-12) == 359
    assert g.ecal_iphi(0.0) == 180
    assert g.hcal_iphi(-np.pi) == 0 and g.hcal_iphi(np.pi) == 0 and g.hcal_iphi(np.pi - 1e-12) == 71


def test_phi_near_column_edges() -> None:
    inner = g.ECAL_PHI_EDGES[1:-1]
    np.testing.assert_array_equal(g.ecal_iphi(inner + 1e-12), np.arange(1, 360))
    np.testing.assert_array_equal(g.ecal_iphi(inner - 1e-12), np.arange(0, 359))
    tinner = g.HCAL_PHI_EDGES[1:-1]
    np.testing.assert_array_equal(g.hcal_iphi(tinner + 1e-12), np.arange(1, 72))
    np.testing.assert_array_equal(g.hcal_iphi(tinner - 1e-12), np.arange(0, 71))


def test_each_phi_edge_maps_to_the_column_starting_at_it() -> None:
    np.testing.assert_array_equal(g.ecal_iphi(g.ECAL_PHI_EDGES[:-1]), np.arange(360))
    np.testing.assert_array_equal(g.hcal_iphi(g.HCAL_PHI_EDGES[:-1]), np.arange(72))


def test_phi_wraps_around() -> None:
    x = g.ecal_phi(np.arange(360))
    cols = np.arange(360)
    np.testing.assert_array_equal(g.ecal_iphi(x + 2 * np.pi), cols)
    np.testing.assert_array_equal(g.ecal_iphi(x - 2 * np.pi), cols)
    np.testing.assert_array_equal(g.ecal_iphi(x - 2 * np.pi * 1000), cols)  # large negative
    np.testing.assert_array_equal(g.ecal_iphi(x + 2 * np.pi * 1000), cols)
    xh = g.hcal_phi(np.arange(72))
    np.testing.assert_array_equal(g.hcal_iphi(xh - 2 * np.pi * 50), np.arange(72))
    np.testing.assert_array_equal(g.wrap_iphi([-1, 360, 725]), [359, 0, 5])
    np.testing.assert_array_equal(g.wrap_iphi([-1, 72], g.HCAL_N_IPHI), [71, 0])


def test_nan_and_inf_map_to_minus_one() -> None:
    bad = np.array([np.nan, np.inf, -np.inf])
    for fn in (g.ecal_ieta, g.ecal_iphi, g.hcal_ieta, g.hcal_iphi):
        np.testing.assert_array_equal(fn(bad), [-1, -1, -1])


# ---------------------------------------------------------------------------- ECAL <-> HCAL


def test_ecal_to_hcal_and_seed_consistency() -> None:
    ti, tp = np.meshgrid(np.arange(56), np.arange(72), indexing="ij")
    si, sp = g.hcal_to_ecal_seed(ti, tp)
    np.testing.assert_array_equal(si, ti * 5 + 2)
    np.testing.assert_array_equal(sp, tp * 5 + 2)
    bi, bp = g.ecal_to_hcal(si, sp)
    np.testing.assert_array_equal(bi, ti)
    np.testing.assert_array_equal(bp, tp)
    # every crystal lies inside its tower, in eta and in phi
    rows, cols = np.arange(280), np.arange(360)
    tr, tc = g.ecal_to_hcal(rows, cols)
    np.testing.assert_array_equal(tr, rows // 5)
    np.testing.assert_array_equal(tc, cols // 5)
    np.testing.assert_array_equal(g.hcal_ieta(g.ecal_eta(rows)), tr)
    np.testing.assert_array_equal(g.hcal_iphi(g.ecal_phi(cols)), tc)
    # seed crystal centre is the tower centre
    np.testing.assert_allclose(g.ecal_phi(sp[0]), g.hcal_phi(tp[0]), atol=1e-12)


# ---------------------------------------------------------------------------- vectorisation


def test_shapes_preserved() -> None:
    eta = np.linspace(-3.2, 3.2, 24).reshape(2, 3, 4)
    assert g.ecal_ieta(eta).shape == (2, 3, 4)
    assert g.hcal_ieta(eta).shape == (2, 3, 4)
    assert g.ecal_iphi(eta).shape == (2, 3, 4)
    assert g.hcal_iphi(eta).shape == (2, 3, 4)
    assert g.ecal_ieta(eta).dtype == np.int64
    rows = np.arange(12).reshape(3, 4)
    assert g.ecal_eta(rows).shape == (3, 4)
    assert g.ecal_phi(rows).shape == (3, 4)
    assert g.ecal_to_hcal(rows, rows)[0].shape == (3, 4)
    assert g.hcal_to_ecal_seed(rows, rows)[1].shape == (3, 4)
    assert np.ndim(g.ecal_ieta(0.5)) == 0
    assert g.ecal_ieta([]).shape == (0,)
    # float32 input gives the same rows as float64 away from edges
    centres = g.ecal_eta(np.arange(280))
    np.testing.assert_array_equal(g.ecal_ieta(centres.astype(np.float32)), np.arange(280))
