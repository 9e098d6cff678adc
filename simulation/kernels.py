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
def _cell_fraction(lo, center, sigma):
    """Fraction of a unit Gaussian (centre, sigma in cells) inside [lo, lo + 1)."""
    a = (lo - center) / (sigma * _SQRT2)
    b = (lo + 1.0 - center) / (sigma * _SQRT2)
    return 0.5 * (math.erf(b) - math.erf(a))


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
    tot_r = 0.0
    tot_c = 0.0
    for d in range(-half, half + 1):
        fr[d + half] = _cell_fraction(float(iu + d), u, sigma)
        fc[d + half] = _cell_fraction(float(iv + d), v, sigma)
        tot_r += fr[d + half]
        tot_c += fc[d + half]
    norm = energy / (tot_r * tot_c)
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
def add_noise_and_read_out(grid, occupied, n_occ, row_lo, row_hi, n_phi, sigma, threshold, p_tail):
    """Add Gaussian noise to occupied cells and sample noise-only cells above threshold.

    Works on rows [row_lo, row_hi). Occupied cells get N(0, sigma) added and are
    zeroed below ``threshold``; empty cells fire with probability ``p_tail`` with
    an energy drawn from the noise tail above threshold (this equals adding noise
    to every crystal, at the cost of the cells that fire). ``grid`` holds the
    read-out energies afterwards.
    """
    n_touched = 0
    for k in range(n_occ):
        idx = occupied[k]
        row = idx // n_phi
        if row < row_lo or row >= row_hi:
            continue
        n_touched += 1
        e = grid[idx] + sigma * np.random.standard_normal()
        grid[idx] = e if e > threshold else -1.0  # -1 marks "touched, below threshold"
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
    geo_f,
    ecal_eta_edges,
    hcal_eta_edges,
    layer_r,
    layer_hl,
    par,
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

    Inputs are flat particle arrays with event offsets ``ev_off``; ``geo_f`` holds
    [B, ecal_r, ecal_z, hcal_r, hcal_z, track_eta_max] and ``par`` the detector
    response parameters (see ``simulation.detector.DetectorResponse.as_array``).
    Outputs are written into preallocated buffers; ``counts[e, k]`` receives the
    number of ECAL, HCAL, track and tracker hits of event e. Returns False if a
    buffer was too small (the caller enlarges it and calls again with the same seed).
    """
    np.random.seed(seed)
    b_field = geo_f[0]
    n_ev = ev_off.shape[0] - 1
    ecal_neta = ecal_eta_edges.shape[0] - 1
    hcal_neta = hcal_eta_edges.shape[0] - 1
    ecal_nphi = 360
    hcal_nphi = 72
    eb_lo = 55
    eb_hi = 225
    n_layers = layer_r.shape[0]
    (
        ecal_a,
        ecal_b,
        ecal_c,
        ecal_noise_eb,
        ecal_thr_eb,
        ecal_noise_ee,
        ecal_thr_ee,
        p_tail_eb,
        p_tail_ee,
        em_sigma,
        had_sigma_ecal,
        hcal_a,
        hcal_c,
        hcal_noise,
        hcal_thr,
        p_tail_hcal,
        hcal_sigma,
        had_p_interact,
        had_f_lo,
        had_f_hi,
        mip_ecal,
        mip_hcal,
        trk_pt_min,
        trk_eff_hi,
        trk_eff_lo,
        trk_res_a,
        trk_res_b,
        d0_a,
        d0_b,
        d0_pow,
        dz_a,
        dz_b,
        dz_pow,
        hit_eff,
    ) = (
        par[0],
        par[1],
        par[2],
        par[3],
        par[4],
        par[5],
        par[6],
        par[7],
        par[8],
        par[9],
        par[10],
        par[11],
        par[12],
        par[13],
        par[14],
        par[15],
        par[16],
        par[17],
        par[18],
        par[19],
        par[20],
        par[21],
        par[22],
        par[23],
        par[24],
        par[25],
        par[26],
        par[27],
        par[28],
        par[29],
        par[30],
        par[31],
        par[32],
        par[33],
    )
    ecal_cap = ecal_out.shape[0]
    hcal_cap = hcal_out.shape[0]
    trk_cap = trk_out.shape[0]
    tkh_cap = tkh_out.shape[0]
    ne = 0
    nh = 0
    nt = 0
    nk = 0
    occ_e = np.empty(ecal_neta * ecal_nphi, np.int64)
    occ_h = np.empty(hcal_neta * hcal_nphi, np.int64)
    scratch = np.empty((2, 5))
    for e in range(n_ev):
        n_oe = 0
        n_oh = 0
        ne0 = ne
        nh0 = nh
        nt0 = nt
        nk0 = nk
        zpv = pv_z[e]
        for i in range(ev_off[e], ev_off[e + 1]):
            q = charge[i]
            pti = math.hypot(px[i], py[i])
            if pti <= 0.0:
                continue
            # ---------------- tracker hits: every charged helix between production and decay radius
            if q != 0.0:
                r0 = math.hypot(vx[i], vy[i])
                for L in range(n_layers):
                    rl = layer_r[L]
                    if rl <= r0 or rl >= rdec[i]:
                        continue
                    s = helix_to_cylinder(vx[i], vy[i], vz[i], px[i], py[i], pz[i], q, b_field, rl)
                    if s < 0.0:
                        continue
                    hx, hy, hz = helix_position(vx[i], vy[i], vz[i], px[i], py[i], pz[i], q, b_field, s)
                    if abs(hz) > layer_hl[L]:
                        continue
                    if np.random.random() >= hit_eff:
                        continue
                    heta, hphi = eta_phi_of(hx, hy, hz - zpv)  # seen from the primary vertex
                    u, v = grid_coordinate(heta, hphi, ecal_eta_edges, ecal_nphi)
                    if u < 0.0:
                        continue
                    if nk >= tkh_cap:
                        return False
                    tkh_out[nk, 0] = L
                    tkh_out[nk, 1] = int(u)
                    tkh_out[nk, 2] = int(v)
                    nk += 1
            if kind[i] != KIND_VISIBLE:
                continue
            apid = abs(pid[i])
            # ---------------- calorimeters
            ok, ix, iy, iz = propagate_to_face(
                vx[i], vy[i], vz[i], px[i], py[i], pz[i], q, b_field, geo_f[1], geo_f[2]
            )
            ecal_u = -1.0
            ecal_v = 0.0
            if ok:
                ceta, cphi = eta_phi_of(ix, iy, iz)
                ecal_u, ecal_v = grid_coordinate(ceta, cphi, ecal_eta_edges, ecal_nphi)
            e_dep = en[i]
            if apid == 2212 or apid == 2112:  # nucleons deposit kinetic energy, antinucleons annihilate
                e_dep = en[i] - 0.938 if pid[i] > 0 else en[i] + 0.938
            e_ecal = 0.0
            e_hcal = 0.0
            sig_ecal = em_sigma
            if apid == 11 or apid == 22:
                e_ecal = e_dep
            elif apid == 13:
                e_ecal = min(mip_ecal, e_dep)
                e_hcal = min(mip_hcal, e_dep - e_ecal)
            else:
                if np.random.random() < had_p_interact:
                    f = had_f_lo + (had_f_hi - had_f_lo) * np.random.random()
                    e_ecal = f * e_dep
                    sig_ecal = had_sigma_ecal
                else:
                    e_ecal = min(mip_ecal, e_dep)
                e_hcal = e_dep - e_ecal
            if ecal_u >= 0.0 and e_ecal > 0.0:
                s_rel = relative_resolution(e_ecal, ecal_a, ecal_b, ecal_c)
                e_s = e_ecal * (1.0 + s_rel * np.random.standard_normal())
                if e_s > 0.0:
                    n_oe = deposit(ecal_grid, ecal_neta, ecal_nphi, ecal_u, ecal_v, e_s, sig_ecal,
                                   window_half_width(sig_ecal), occ_e, n_oe, scratch)
            if e_hcal > 0.0:
                okh, hx, hy, hz = propagate_to_face(
                    vx[i], vy[i], vz[i], px[i], py[i], pz[i], q, b_field, geo_f[3], geo_f[4]
                )
                hu = -1.0
                hv = 0.0
                if okh:
                    heta, hphi = eta_phi_of(hx, hy, hz)
                    hu, hv = grid_coordinate(heta, hphi, hcal_eta_edges, hcal_nphi)
                if hu >= 0.0:
                    s_rel = relative_resolution(e_hcal, hcal_a, 0.0, hcal_c)
                    e_s = e_hcal * (1.0 + s_rel * np.random.standard_normal())
                    if e_s > 0.0:
                        n_oh = deposit(hcal_grid, hcal_neta, hcal_nphi, hu, hv, e_s, hcal_sigma,
                                       window_half_width(hcal_sigma), occ_h, n_oh, scratch)
            # ---------------- tracks
            if q != 0.0 and pti >= trk_pt_min:
                p_abs = math.sqrt(pti * pti + pz[i] * pz[i])
                teta = math.asinh(pz[i] / pti)
                if abs(teta) < geo_f[5] and p_abs > 0.0:
                    eff = trk_eff_hi if pti > 1.0 else trk_eff_lo
                    if np.random.random() < eff:
                        if nt >= trk_cap:
                            return False
                        s_pt = math.sqrt(trk_res_a * trk_res_a + (trk_res_b * pti) ** 2)
                        pt_meas = pti * (1.0 + s_pt * np.random.standard_normal())
                        if pt_meas < 0.0:
                            pt_meas = -pt_meas
                        d0t, dzt = true_impact_parameters(vx[i], vy[i], vz[i], px[i], py[i], pz[i], zpv)
                        s_d0 = ip_resolution_um(pti, abs(teta), d0_a, d0_b, d0_pow) * 1e-4
                        s_dz = ip_resolution_um(pti, abs(teta), dz_a, dz_b, dz_pow) * 1e-4
                        d0m = d0t + s_d0 * np.random.standard_normal()
                        dzm = dzt + s_dz * np.random.standard_normal()
                        trk_out[nt, 0] = pt_meas
                        trk_out[nt, 1] = teta
                        trk_out[nt, 2] = math.atan2(py[i], px[i])
                        trk_out[nt, 3] = q
                        trk_out[nt, 4] = d0m
                        trk_out[nt, 5] = dzm
                        trk_out[nt, 6] = d0m / s_d0
                        trk_out[nt, 7] = dzm / s_dz
                        trk_out[nt, 8] = int(ecal_u) if ecal_u >= 0.0 else -1
                        trk_out[nt, 9] = int(ecal_v) if ecal_u >= 0.0 else -1
                        trk_truth[nt, 0] = i
                        trk_truth[nt, 1] = d0t
                        trk_truth[nt, 2] = dzt
                        nt += 1
        # ---------------- noise, zero suppression and read-out (rows in order -> hits sorted)
        add_noise_and_read_out(ecal_grid, occ_e, n_oe, 0, eb_lo, ecal_nphi, ecal_noise_ee, ecal_thr_ee, p_tail_ee)
        add_noise_and_read_out(ecal_grid, occ_e, n_oe, eb_lo, eb_hi, ecal_nphi, ecal_noise_eb, ecal_thr_eb, p_tail_eb)
        add_noise_and_read_out(
            ecal_grid, occ_e, n_oe, eb_hi, ecal_neta, ecal_nphi, ecal_noise_ee, ecal_thr_ee, p_tail_ee
        )
        add_noise_and_read_out(hcal_grid, occ_h, n_oh, 0, hcal_neta, hcal_nphi, hcal_noise, hcal_thr, p_tail_hcal)
        for idx in range(ecal_grid.shape[0]):
            val = ecal_grid[idx]
            if val != 0.0:
                if val > 0.0:
                    if ne >= ecal_cap:
                        ecal_grid[:] = 0.0
                        hcal_grid[:] = 0.0
                        return False
                    ecal_out[ne, 0] = idx // ecal_nphi
                    ecal_out[ne, 1] = idx % ecal_nphi
                    ecal_out[ne, 2] = val
                    ne += 1
                ecal_grid[idx] = 0.0
        for idx in range(hcal_grid.shape[0]):
            val = hcal_grid[idx]
            if val != 0.0:
                if val > 0.0:
                    if nh >= hcal_cap:
                        ecal_grid[:] = 0.0
                        hcal_grid[:] = 0.0
                        return False
                    hcal_out[nh, 0] = idx // hcal_nphi
                    hcal_out[nh, 1] = idx % hcal_nphi
                    hcal_out[nh, 2] = val
                    nh += 1
                hcal_grid[idx] = 0.0
        counts[e, 0] = ne - ne0
        counts[e, 1] = nh - nh0
        counts[e, 2] = nt - nt0
        counts[e, 3] = nk - nk0
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
