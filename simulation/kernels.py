"""Numba kernels of the fast detector simulation.

All kernels take flat numpy arrays (particles of many events concatenated, with
event offsets) and run single-threaded with numba's own random stream, seeded
at the start of each call, so a chunk is reproducible bit for bit.

Units: momenta and energies in GeV, lengths in cm, angles in rad, field in T.
Particle kinds: 1 = visible final-state particle, 2 = charged unstable particle
that only leaves tracker hits (tau, B, D flying past a layer before decaying).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# pT [GeV] = 0.299792458 * B [T] * R [m] * |q|
C_LIGHT = 0.299792458
KIND_VISIBLE = 1
KIND_TRACKER_ONLY = 2
_SQRT2 = math.sqrt(2.0)


@njit(cache=True)
def helix_to_cylinder(x0, y0, z0, px, py, pz, q, b_field, radius):
    """Transverse path length (cm) from (x0, y0) to the first crossing of the cylinder ``radius``.

    Returns -1 when the helix never reaches it or already starts outside.
    A neutral particle (q = 0) follows a straight line.
    """
    pt = math.hypot(px, py)
    if pt <= 0.0:
        return -1.0
    r0sq = x0 * x0 + y0 * y0
    if r0sq >= radius * radius:
        return -1.0
    if r0sq == 0.0:  # starts on the beam line (almost every particle): closed form
        if q == 0.0:
            return radius
        rho0 = pt / (C_LIGHT * b_field * abs(q)) * 100.0
        if radius > 2.0 * rho0:
            return -1.0
        return 2.0 * rho0 * math.asin(radius / (2.0 * rho0))
    ux = px / pt
    uy = py / pt
    if q == 0.0:
        # |p0 + s u|^2 = R^2 -> s^2 + 2 s (p0.u) + r0^2 - R^2 = 0, positive root
        b = x0 * ux + y0 * uy
        c = r0sq - radius * radius
        return -b + math.sqrt(b * b - c)
    rho = pt / (C_LIGHT * b_field * abs(q)) * 100.0  # cm
    kappa = math.copysign(1.0 / rho, q)  # signed curvature; phi(s) = phi0 - kappa s
    xc = x0 + uy / kappa
    yc = y0 - ux / kappa
    d = math.hypot(xc, yc)
    if d + rho < radius or abs(d - rho) > radius:
        return -1.0
    cosarg = (radius * radius - d * d - rho * rho) / (2.0 * rho * d) if d > 0.0 else 2.0
    if cosarg > 1.0:
        if d == 0.0 and abs(rho - radius) < 1e-12:
            return 0.0
        return -1.0
    if cosarg < -1.0:
        cosarg = -1.0
    thc = math.atan2(yc, xc)
    th0 = math.atan2(y0 - yc, x0 - xc)
    dth = math.acos(cosarg)
    best = 1e30
    sgn = -1.0 if kappa > 0.0 else 1.0  # theta(s) = theta0 - kappa s
    for t in (thc + dth, thc - dth):
        a = sgn * (t - th0)
        a = a - 2.0 * math.pi * math.floor(a / (2.0 * math.pi))
        s = a * rho
        if s > 1e-9 and s < best:
            best = s
    return best if best < 1e29 else -1.0


@njit(cache=True)
def helix_position(x0, y0, z0, px, py, pz, q, b_field, s):
    """Position (x, y, z) after transverse path length ``s`` (cm) along the helix."""
    pt = math.hypot(px, py)
    ux = px / pt
    uy = py / pt
    z = z0 + s * pz / pt
    if q == 0.0:
        return x0 + s * ux, y0 + s * uy, z
    rho = pt / (C_LIGHT * b_field * abs(q)) * 100.0
    kappa = math.copysign(1.0 / rho, q)
    phi0 = math.atan2(uy, ux)
    phi = phi0 - kappa * s
    x = x0 + (math.sin(phi0) - math.sin(phi)) / kappa
    y = y0 + (-math.cos(phi0) + math.cos(phi)) / kappa
    return x, y, z


@njit(cache=True)
def propagate_to_face(x0, y0, z0, px, py, pz, q, b_field, face_r, face_z):
    """Impact (x, y, z) on a calorimeter face (barrel cylinder ``face_r``, endcap planes +-``face_z``).

    Returns (ok, x, y, z); ok is False for loopers and particles along the beam.
    """
    pt = math.hypot(px, py)
    if pt <= 0.0:
        return False, 0.0, 0.0, 0.0
    s_r = helix_to_cylinder(x0, y0, z0, px, py, pz, q, b_field, face_r)
    s_z = 1e30
    if pz > 0.0:
        s_z = (face_z - z0) * pt / pz
    elif pz < 0.0:
        s_z = (-face_z - z0) * pt / pz
    if s_r > 0.0 and s_r < s_z:
        x, y, z = helix_position(x0, y0, z0, px, py, pz, q, b_field, s_r)
        return True, x, y, z
    if s_z < 1e29 and s_z > 0.0:
        x, y, z = helix_position(x0, y0, z0, px, py, pz, q, b_field, s_z)
        return True, x, y, z
    return False, 0.0, 0.0, 0.0


@njit(cache=True)
def eta_phi_of(x, y, z):
    """Pseudorapidity and azimuth of the point (x, y, z) seen from the origin."""
    r = math.hypot(x, y)
    if r <= 0.0:
        return math.copysign(1e9, z), 0.0
    return math.asinh(z / r), math.atan2(y, x)


@njit(cache=True)
def grid_coordinate(eta, phi, eta_edges, n_phi):
    """Continuous (row, column) on a grid: row i spans [i, i+1); -1 row when eta is outside."""
    n_eta = eta_edges.shape[0] - 1
    if not (eta >= eta_edges[0] and eta <= eta_edges[n_eta]):
        return -1.0, 0.0
    i = np.searchsorted(eta_edges, eta, side="right") - 1
    if i >= n_eta:
        i = n_eta - 1
    u = i + (eta - eta_edges[i]) / (eta_edges[i + 1] - eta_edges[i])
    f = (phi + math.pi) / (2.0 * math.pi)
    f = f - math.floor(f)
    v = f * n_phi
    if v >= n_phi:
        v = 0.0
    return u, v


@njit(cache=True)
def deposit(grid, n_eta, n_phi, u, v, energy, sigma, half, touched, n_touched, scratch):
    """Spread ``energy`` over the (2 half + 1)^2 cells around continuous position (u, v); phi wraps.

    Cell shares are Gaussian integrals (``sigma`` in cells), normalised to the
    window so energy is conserved, except rows beyond the grid (leakage at
    |eta| = 3). Newly touched cells are appended to ``touched``; returns the new count.
    ``scratch`` is a [2, >= 2 half + 1] work array (no allocation per call).
    """
    iu = int(math.floor(u))
    iv = int(math.floor(v))
    fr = scratch[0]
    fc = scratch[1]
    inv = 1.0 / (sigma * _SQRT2)
    # cell shares from the Gaussian CDF at each cell edge (one erf per edge)
    er0 = er_first = math.erf((iu - half - u) * inv)
    ec0 = ec_first = math.erf((iv - half - v) * inv)
    for d in range(2 * half + 1):
        er1 = math.erf((iu - half + d + 1 - u) * inv)
        ec1 = math.erf((iv - half + d + 1 - v) * inv)
        fr[d] = er1 - er0
        fc[d] = ec1 - ec0
        er0 = er1
        ec0 = ec1
    norm = energy / ((er0 - er_first) * (ec0 - ec_first))  # the shares telescope to the window total
    for di in range(-half, half + 1):
        r = iu + di
        if r < 0 or r >= n_eta:
            continue
        er = norm * fr[di + half]
        for dj in range(-half, half + 1):
            idx = r * n_phi + (iv + dj) % n_phi
            if grid[idx] == 0.0:
                touched[n_touched] = idx
                n_touched += 1
            grid[idx] += er * fc[dj + half]
    return n_touched


@njit(cache=True)
def window_half_width(sigma):
    """Half width (cells) of the deposit window: 2.5 sigma, between 1 and 2."""
    return min(2, max(1, int(math.ceil(2.5 * sigma))))


@njit(cache=True)
def relative_resolution(e, stochastic, noise, constant):
    """sigma(E)/E = stochastic/sqrt(E) (+) noise/E (+) constant, in quadrature."""
    if e <= 0.0:
        return 0.0
    return math.sqrt(stochastic * stochastic / e + (noise / e) ** 2 + constant * constant)


@njit(cache=True)
def gaussian_tail(a):
    """A standard normal value conditioned on x > a >= 0 (Robert 1995 exponential rejection)."""
    lam = 0.5 * (a + math.sqrt(a * a + 4.0))
    while True:
        z = a - math.log(1.0 - np.random.random()) / lam
        if np.random.random() <= math.exp(-0.5 * (z - lam) ** 2):
            return z


@njit(cache=True)
def add_noise(grid, occupied, n_occ, row_lo, row_hi, n_phi, sigma, threshold, p_tail):
    """Add Gaussian noise to rows [row_lo, row_hi) of ``grid`` and zero-suppress them at ``threshold``.

    Occupied cells get N(0, sigma) added and are marked -1 ("touched, below
    threshold") when under it; empty cells fire with probability ``p_tail`` with
    an energy drawn from the noise tail above threshold. This equals adding noise
    to every cell, at the cost of only the cells that fire.
    """
    n_touched = 0
    for k in range(n_occ):
        idx = occupied[k]
        row = idx // n_phi
        if row < row_lo or row >= row_hi:
            continue
        n_touched += 1
        e = grid[idx] + sigma * np.random.standard_normal()
        grid[idx] = e if e > threshold else -1.0
    n_cells = (row_hi - row_lo) * n_phi
    n_empty = n_cells - n_touched
    if p_tail > 0.0 and n_empty > 0:
        n_noise = np.random.binomial(n_empty, p_tail)
        a = threshold / sigma
        placed = 0
        while placed < n_noise:
            idx = row_lo * n_phi + np.random.randint(0, n_cells)
            if grid[idx] != 0.0:
                continue
            grid[idx] = sigma * gaussian_tail(a)
            placed += 1


@njit(cache=True)
def read_out(grid, n_phi, out, n):
    """Append the cells with positive energy to ``out[n:]`` as (row, column, energy) in row-major order and
    zero the grid. Returns the new count, or -1 when ``out`` is full (the grid is then left dirty)."""
    for idx in range(grid.shape[0]):
        val = grid[idx]
        if val != 0.0:
            if val > 0.0:
                if n >= out.shape[0]:
                    return -1
                out[n, 0] = idx // n_phi
                out[n, 1] = idx % n_phi
                out[n, 2] = val
                n += 1
            grid[idx] = 0.0
    return n


@njit(cache=True)
def ip_resolution_um(pt, abseta, a, b, power):
    """Impact-parameter resolution sqrt(a^2 + (b / pT^power)^2) (um) times the |eta| factor."""
    s = math.sqrt(a * a + (b / pt**power) ** 2)
    if abseta > 1.4:
        return 2.0 * s
    if abseta > 0.9:
        return 1.3 * s
    return s


@njit(cache=True)
def true_impact_parameters(vx, vy, vz, px, py, pz, pv_z):
    """Transverse (signed, CMS dxy convention) and longitudinal impact parameters (cm) w.r.t. (0, 0, pv_z)."""
    pt = math.hypot(px, py)
    d0 = (-vx * py + vy * px) / pt
    dz = (vz - pv_z) - (vx * px + vy * py) / pt * (pz / pt)
    return d0, dz


#: Parameters of :func:`simulate_chunk`, passed as one numpy record that numba reads by field name.
#: Filled by :meth:`simulation.detector.DetectorSimulation` from the geometry and the DetectorResponse.
SIM_PARAM_FIELDS = (
    # geometry (dataformats.geometry)
    "b_field", "ecal_r", "ecal_z", "hcal_r", "hcal_z", "track_eta_max", "ecal_nphi", "hcal_nphi",
    "barrel_row_lo", "barrel_row_hi",
    # ECAL
    "ecal_stochastic", "ecal_noise_term", "ecal_constant", "ecal_noise_barrel", "ecal_threshold_barrel",
    "ecal_noise_endcap", "ecal_threshold_endcap", "ecal_p_tail_barrel", "ecal_p_tail_endcap",
    "em_sigma", "hadron_sigma_ecal",
    # HCAL
    "hcal_stochastic", "hcal_constant", "hcal_noise", "hcal_threshold", "hcal_p_tail", "hcal_sigma",
    # hadrons and muons
    "hadron_p_interact", "hadron_fraction_min", "hadron_fraction_max", "mip_ecal", "mip_hcal",
    # tracking
    "track_pt_min", "track_eff_high", "track_eff_low", "pt_res", "pt_res_slope",
    "d0_a", "d0_b", "d0_power", "dz_a", "dz_b", "dz_power", "hit_efficiency",
)  # fmt: skip
SIM_PARAM_DTYPE = np.dtype([(name, np.float64) for name in SIM_PARAM_FIELDS])
NUCLEON_MASS = 0.938  # GeV


@njit(cache=True)
def tracker_hits(x0, y0, z0, px, py, pz, q, rdec, zpv, p, layer_r, layer_hl, eta_edges, out, n):
    """Hits of one charged helix on the barrel layers between its production and decay radius.

    Each hit is stored as (layer, ieta, iphi) of the ECAL cell seen from the primary vertex (0, 0, zpv).
    Returns the new count, or -1 when ``out`` is full.
    """
    if x0 == 0.0 and y0 == 0.0:  # from the beam line (almost every particle): closed form
        return _tracker_hits_from_beamline(z0, px, py, pz, q, rdec, zpv, p, layer_r, layer_hl, eta_edges, out, n)
    r0 = math.hypot(x0, y0)
    for L in range(layer_r.shape[0]):
        rl = layer_r[L]
        if rl <= r0 or rl >= rdec:
            continue
        s = helix_to_cylinder(x0, y0, z0, px, py, pz, q, p.b_field, rl)
        if s < 0.0:
            continue
        hx, hy, hz = helix_position(x0, y0, z0, px, py, pz, q, p.b_field, s)
        if abs(hz) > layer_hl[L] or np.random.random() >= p.hit_efficiency:
            continue
        heta, hphi = eta_phi_of(hx, hy, hz - zpv)
        u, v = grid_coordinate(heta, hphi, eta_edges, int(p.ecal_nphi))
        if u < 0.0:
            continue
        if n >= out.shape[0]:
            return -1
        out[n, 0] = L
        out[n, 1] = int(u)
        out[n, 2] = int(v)
        n += 1
    return n


@njit(cache=True)
def _tracker_hits_from_beamline(z0, px, py, pz, q, rdec, zpv, p, layer_r, layer_hl, eta_edges, out, n):
    """:func:`tracker_hits` for a helix starting at (0, 0, z0): the crossing of radius R is at transverse
    arc length s = 2 rho asin(R / 2 rho) and azimuth phi0 - sign(q) asin(R / 2 rho)."""
    pt = math.hypot(px, py)
    rho = pt / (C_LIGHT * p.b_field * abs(q)) * 100.0
    phi0 = math.atan2(py, px)
    sgn = 1.0 if q > 0.0 else -1.0
    nphi = int(p.ecal_nphi)
    for L in range(layer_r.shape[0]):
        rl = layer_r[L]
        if rl >= rdec or rl > 2.0 * rho:
            break  # layers are ordered in radius
        a = math.asin(rl / (2.0 * rho))
        z = z0 + 2.0 * rho * a * pz / pt
        if abs(z) > layer_hl[L] or np.random.random() >= p.hit_efficiency:
            continue
        u, v = grid_coordinate(math.asinh((z - zpv) / rl), phi0 - sgn * a, eta_edges, nphi)
        if u < 0.0:
            continue
        if n >= out.shape[0]:
            return -1
        out[n, 0] = L
        out[n, 1] = int(u)
        out[n, 2] = int(v)
        n += 1
    return n


@njit(cache=True)
def calorimeter_deposits(pid, e, x0, y0, z0, px, py, pz, q, p, ecal_edges, hcal_edges, ecal_grid, hcal_grid,
                         occ_e, n_oe, occ_h, n_oh, scratch):  # fmt: skip
    """Deposit one visible particle in the ECAL and HCAL grids (before noise).

    e/gamma shower in the ECAL; muons leave MIPs; hadrons start showering in the
    ECAL with probability ``hadron_p_interact`` (a uniform fraction there, the rest
    in the HCAL) or pass it as a MIP. Returns (ECAL row, column of the impact as
    continuous coordinates, -1 row when the particle misses the ECAL; new touched counts).
    """
    apid = abs(pid)
    ok, ix, iy, iz = propagate_to_face(x0, y0, z0, px, py, pz, q, p.b_field, p.ecal_r, p.ecal_z)
    ecal_u = -1.0
    ecal_v = 0.0
    if ok:
        ceta, cphi = eta_phi_of(ix, iy, iz)
        ecal_u, ecal_v = grid_coordinate(ceta, cphi, ecal_edges, int(p.ecal_nphi))
    e_dep = e
    if apid == 2212 or apid == 2112:  # nucleons deposit kinetic energy, antinucleons annihilate
        e_dep = e - NUCLEON_MASS if pid > 0 else e + NUCLEON_MASS
    e_hcal = 0.0
    sig_ecal = p.em_sigma
    if apid == 11 or apid == 22:
        e_ecal = e_dep
    elif apid == 13:
        e_ecal = min(p.mip_ecal, e_dep)
        e_hcal = min(p.mip_hcal, e_dep - e_ecal)
    else:
        if np.random.random() < p.hadron_p_interact:
            f = p.hadron_fraction_min + (p.hadron_fraction_max - p.hadron_fraction_min) * np.random.random()
            e_ecal = f * e_dep
            sig_ecal = p.hadron_sigma_ecal
        else:
            e_ecal = min(p.mip_ecal, e_dep)
        e_hcal = e_dep - e_ecal
    if ecal_u >= 0.0 and e_ecal > 0.0:
        s_rel = relative_resolution(e_ecal, p.ecal_stochastic, p.ecal_noise_term, p.ecal_constant)
        e_s = e_ecal * (1.0 + s_rel * np.random.standard_normal())
        if e_s > 0.0:
            n_ecal_rows, w_ecal = ecal_edges.shape[0] - 1, window_half_width(sig_ecal)
            n_oe = deposit(ecal_grid, n_ecal_rows, int(p.ecal_nphi), ecal_u, ecal_v, e_s, sig_ecal, w_ecal, occ_e, n_oe,
                           scratch)  # fmt: skip
    if e_hcal > 0.0:
        okh, hx, hy, hz = propagate_to_face(x0, y0, z0, px, py, pz, q, p.b_field, p.hcal_r, p.hcal_z)
        if okh:
            heta, hphi = eta_phi_of(hx, hy, hz)
            hu, hv = grid_coordinate(heta, hphi, hcal_edges, int(p.hcal_nphi))
            if hu >= 0.0:
                s_rel = relative_resolution(e_hcal, p.hcal_stochastic, 0.0, p.hcal_constant)
                e_s = e_hcal * (1.0 + s_rel * np.random.standard_normal())
                if e_s > 0.0:
                    n_hcal_rows, w_hcal = hcal_edges.shape[0] - 1, window_half_width(p.hcal_sigma)
                    n_oh = deposit(hcal_grid, n_hcal_rows, int(p.hcal_nphi), hu, hv, e_s, p.hcal_sigma, w_hcal, occ_h,
                                   n_oh, scratch)  # fmt: skip
    return ecal_u, ecal_v, n_oe, n_oh


@njit(cache=True)
def reconstruct_track(i, x0, y0, z0, px, py, pz, q, zpv, ecal_u, ecal_v, p, out, truth, n):
    """Track of charged particle ``i``: efficiency, pT and impact-parameter smearing, ECAL impact cell.

    Appends (pt, eta, phi, charge, d0, dz, d0sig, dzsig, ecal_ieta, ecal_iphi) to ``out`` and
    (i, true d0, true dz) to ``truth``. Returns the new count, or -1 when ``out`` is full.
    """
    pt = math.hypot(px, py)
    if pt < p.track_pt_min:
        return n
    eta = math.asinh(pz / pt)
    if abs(eta) >= p.track_eta_max:
        return n
    if np.random.random() >= (p.track_eff_high if pt > 1.0 else p.track_eff_low):
        return n
    if n >= out.shape[0]:
        return -1
    s_pt = math.sqrt(p.pt_res * p.pt_res + (p.pt_res_slope * pt) ** 2)
    pt_meas = abs(pt * (1.0 + s_pt * np.random.standard_normal()))
    d0t, dzt = true_impact_parameters(x0, y0, z0, px, py, pz, zpv)
    s_d0 = ip_resolution_um(pt, abs(eta), p.d0_a, p.d0_b, p.d0_power) * 1e-4
    s_dz = ip_resolution_um(pt, abs(eta), p.dz_a, p.dz_b, p.dz_power) * 1e-4
    d0m = d0t + s_d0 * np.random.standard_normal()
    dzm = dzt + s_dz * np.random.standard_normal()
    out[n, 0] = pt_meas
    out[n, 1] = eta
    out[n, 2] = math.atan2(py, px)
    out[n, 3] = q
    out[n, 4] = d0m
    out[n, 5] = dzm
    out[n, 6] = d0m / s_d0
    out[n, 7] = dzm / s_dz
    out[n, 8] = int(ecal_u) if ecal_u >= 0.0 else -1
    out[n, 9] = int(ecal_v) if ecal_u >= 0.0 else -1
    truth[n, 0] = i
    truth[n, 1] = d0t
    truth[n, 2] = dzt
    return n + 1


@njit(cache=True)
def simulate_chunk(
    seed,
    ev_off,
    px,
    py,
    pz,
    en,
    pid,
    charge,
    vx,
    vy,
    vz,
    rdec,
    kind,
    pv_z,
    par,
    ecal_edges,
    hcal_edges,
    layer_r,
    layer_hl,
    ecal_grid,
    hcal_grid,
    ecal_out,
    hcal_out,
    trk_out,
    tkh_out,
    counts,
    trk_truth,
):
    """Simulate calorimeters, tracks and tracker hits for a chunk of events.

    Inputs are flat particle arrays with event offsets ``ev_off`` and ``par``, a
    one-element :data:`SIM_PARAM_DTYPE` array. Outputs are written into preallocated
    buffers; ``counts[e]`` receives the number of ECAL, HCAL, track and tracker hits
    of event e. Returns False when a buffer was too small: the caller then clears
    the grids, enlarges the buffers and calls again with the same seed.
    """
    np.random.seed(seed)
    p = par[0]
    occ_e = np.empty(ecal_grid.shape[0], np.int64)
    occ_h = np.empty(hcal_grid.shape[0], np.int64)
    scratch = np.empty((2, 5))
    n_ecal_rows = ecal_edges.shape[0] - 1
    lo, hi = int(p.barrel_row_lo), int(p.barrel_row_hi)
    ecal_nphi, hcal_nphi = int(p.ecal_nphi), int(p.hcal_nphi)
    ne = nh = nt = nk = 0
    for e in range(ev_off.shape[0] - 1):
        n_oe = n_oh = 0
        start = np.array([ne, nh, nt, nk])
        zpv = pv_z[e]
        for i in range(ev_off[e], ev_off[e + 1]):
            q = charge[i]
            if px[i] == 0.0 and py[i] == 0.0:
                continue
            if q != 0.0:
                nk = tracker_hits(
                    vx[i],
                    vy[i],
                    vz[i],
                    px[i],
                    py[i],
                    pz[i],
                    q,
                    rdec[i],
                    zpv,
                    p,
                    layer_r,
                    layer_hl,
                    ecal_edges,
                    tkh_out,
                    nk,
                )
                if nk < 0:
                    return False
            if kind[i] != KIND_VISIBLE:
                continue
            ecal_u, ecal_v, n_oe, n_oh = calorimeter_deposits(
                pid[i], en[i], vx[i], vy[i], vz[i], px[i], py[i], pz[i], q, p, ecal_edges, hcal_edges, ecal_grid,
                hcal_grid, occ_e, n_oe, occ_h, n_oh, scratch)  # fmt: skip
            if q != 0.0:
                nt = reconstruct_track(
                    i, vx[i], vy[i], vz[i], px[i], py[i], pz[i], q, zpv, ecal_u, ecal_v, p, trk_out, trk_truth, nt
                )
                if nt < 0:
                    return False
        # noise and zero suppression (EE-, EB, EE+, HCAL), then read-out in row-major order (hits sorted)
        add_noise(
            ecal_grid, occ_e, n_oe, 0, lo, ecal_nphi, p.ecal_noise_endcap, p.ecal_threshold_endcap, p.ecal_p_tail_endcap
        )
        add_noise(
            ecal_grid,
            occ_e,
            n_oe,
            lo,
            hi,
            ecal_nphi,
            p.ecal_noise_barrel,
            p.ecal_threshold_barrel,
            p.ecal_p_tail_barrel,
        )
        add_noise(
            ecal_grid,
            occ_e,
            n_oe,
            hi,
            n_ecal_rows,
            ecal_nphi,
            p.ecal_noise_endcap,
            p.ecal_threshold_endcap,
            p.ecal_p_tail_endcap,
        )
        add_noise(
            hcal_grid, occ_h, n_oh, 0, hcal_edges.shape[0] - 1, hcal_nphi, p.hcal_noise, p.hcal_threshold, p.hcal_p_tail
        )
        ne = read_out(ecal_grid, ecal_nphi, ecal_out, ne)
        nh = read_out(hcal_grid, hcal_nphi, hcal_out, nh)
        if ne < 0 or nh < 0:
            return False
        counts[e, 0] = ne - start[0]
        counts[e, 1] = nh - start[1]
        counts[e, 2] = nt - start[2]
        counts[e, 3] = nk - start[3]
    return True


@njit(cache=True)
def find_jet_seeds(ev_jet_off, jet_tieta, jet_tiphi, ev_hit_off, hit_ieta, hit_iphi, hit_e, n_eta, n_phi, half, grid):
    """Hottest HCAL tower in a (2 half + 1)^2 window around each jet's axis tower (phi wraps).

    Returns (tower row, tower column, found) per jet; when the window holds no HCAL
    hit the axis tower itself is returned with found = False.
    """
    n_jets = jet_tieta.shape[0]
    out_eta = np.empty(n_jets, np.int64)
    out_phi = np.empty(n_jets, np.int64)
    found = np.zeros(n_jets, np.bool_)
    n_ev = ev_jet_off.shape[0] - 1
    for e in range(n_ev):
        for h in range(ev_hit_off[e], ev_hit_off[e + 1]):
            grid[hit_ieta[h] * n_phi + hit_iphi[h]] = hit_e[h]
        for j in range(ev_jet_off[e], ev_jet_off[e + 1]):
            best = 0.0
            be = jet_tieta[j]
            bp = jet_tiphi[j]
            for di in range(-half, half + 1):
                r = jet_tieta[j] + di
                if r < 0 or r >= n_eta:
                    continue
                for dj in range(-half, half + 1):
                    c = (jet_tiphi[j] + dj) % n_phi
                    val = grid[r * n_phi + c]
                    if val > best:
                        best = val
                        be = r
                        bp = c
            out_eta[j] = be
            out_phi[j] = bp
            found[j] = best > 0.0
        for h in range(ev_hit_off[e], ev_hit_off[e + 1]):
            grid[hit_ieta[h] * n_phi + hit_iphi[h]] = 0.0
    return out_eta, out_phi, found


@njit(cache=True)
def match_nearest(ev_jet_off, jet_eta, jet_phi, ev_obj_off, obj_eta, obj_phi, max_dr):
    """Index of the nearest object (same event) within dR < ``max_dr`` of each jet; -1 if none."""
    out = np.full(jet_eta.shape[0], -1, np.int64)
    for e in range(ev_jet_off.shape[0] - 1):
        for j in range(ev_jet_off[e], ev_jet_off[e + 1]):
            best = max_dr * max_dr
            for o in range(ev_obj_off[e], ev_obj_off[e + 1]):
                dphi = abs(jet_phi[j] - obj_phi[o])
                if dphi > math.pi:
                    dphi = 2.0 * math.pi - dphi
                deta = jet_eta[j] - obj_eta[o]
                d2 = deta * deta + dphi * dphi
                if d2 < best:
                    best = d2
                    out[j] = o
    return out
