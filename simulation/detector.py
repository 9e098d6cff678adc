"""Fast parametric detector response: calorimeters, tracks and tracker hits.

Defaults are the published CMS / Delphes figures of REFERENCE.md. The per-event
work runs in :func:`simulation.kernels.simulate_chunk`; this module holds the
parameters and the buffers it reuses between chunks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dataformats import geometry as geo
from e2e.params import param
from simulation import kernels


@dataclass
class EcalResponse:
    """ECAL: sigma/E = stochastic/sqrt(E) (+) noise_term/E (+) constant; Gaussian noise, zero suppression."""

    stochastic: float = param(0.028, "stochastic term (GeV^0.5): 2.8%/sqrt(E)", minimum=0)
    noise_term: float = param(0.12, "noise term of the resolution (GeV)", minimum=0)
    constant: float = param(0.003, "constant term", minimum=0)
    noise_barrel: float = param(0.050, "electronics noise per barrel crystal (GeV)", minimum=1e-6)
    threshold_barrel: float = param(0.080, "zero-suppression threshold in the barrel (GeV)", minimum=0)
    noise_endcap: float = param(0.050, "noise per endcap pseudo-crystal (GeV)", minimum=1e-6)
    threshold_endcap: float = param(0.300, "zero-suppression threshold in the endcap (GeV, PF EE)", minimum=0)
    em_shower_sigma: float = param(0.35, "lateral EM shower width (crystals, Gaussian sigma)", minimum=0.01)
    hadron_shower_sigma: float = param(1.0, "lateral width of hadron showers in the ECAL (crystals)", minimum=0.01)


@dataclass
class HcalResponse:
    """HCAL: sigma/E = stochastic/sqrt(E) (+) constant; Gaussian noise per tower, threshold."""

    stochastic: float = param(1.50, "stochastic term (GeV^0.5): 150%/sqrt(E) (Delphes)", minimum=0)
    constant: float = param(0.05, "constant term", minimum=0)
    noise: float = param(0.25, "noise per tower (GeV)", minimum=1e-6)
    threshold: float = param(0.80, "tower threshold (GeV, Run 2 barrel)", minimum=0)
    shower_sigma: float = param(0.25, "lateral shower width (towers)", minimum=0.01)


@dataclass
class HadronResponse:
    """How a hadron shares its energy between ECAL and HCAL; muons leave a MIP; neutrinos nothing."""

    p_interact_ecal: float = param(
        0.6, "probability that a hadron starts showering in the ECAL (~1.1 lambda_I)", minimum=0, maximum=1
    )
    ecal_fraction_min: float = param(0.1, "ECAL fraction of a showering hadron: uniform from ...", minimum=0, maximum=1)
    ecal_fraction_max: float = param(0.7, "... to this value; the rest goes to the HCAL", minimum=0, maximum=1)
    mip_ecal: float = param(0.30, "MIP energy in the ECAL (GeV; muons and non-showering hadrons)", minimum=0)
    mip_hcal: float = param(2.0, "muon MIP energy in the HCAL (GeV)", minimum=0)


#: largest impact-parameter resolution term (um): 1 cm, ~100x CMS's, so that a track's d0 and dz stay within the
#: schema's ranges (130 and 700 cm) that e2e-validate checks
MAX_IP_UM = 10_000.0


@dataclass
class TrackingResponse:
    """Tracking efficiency, momentum and impact-parameter resolution (CMS TRK-11-001 fit)."""

    pt_min: float = param(0.5, "minimum pT of a reconstructed track (GeV)", minimum=0)
    efficiency_high: float = param(0.95, "efficiency above 1 GeV", minimum=0, maximum=1)
    efficiency_low: float = param(0.70, "efficiency below 1 GeV", minimum=0, maximum=1)
    pt_resolution: float = param(0.01, "sigma(pT)/pT constant term", minimum=0)
    pt_resolution_slope: float = param(1.5e-4, "sigma(pT)/pT term proportional to pT (1/GeV)", minimum=0)
    d0_constant_um: float = param(10.8, "sigma(d0) = sqrt(a^2 + (b/pT^c)^2) um: a", minimum=0, maximum=MAX_IP_UM)
    d0_msc_um: float = param(86.0, "sigma(d0): b (um GeV^c)", minimum=0, maximum=MAX_IP_UM)
    d0_power: float = param(0.78, "sigma(d0): c", minimum=0, maximum=2)
    dz_constant_um: float = param(31.0, "sigma(dz) = sqrt(a^2 + (b/pT^c)^2) um: a", minimum=0, maximum=MAX_IP_UM)
    dz_msc_um: float = param(116.0, "sigma(dz): b (um GeV^c)", minimum=0, maximum=MAX_IP_UM)
    dz_power: float = param(0.75, "sigma(dz): c", minimum=0, maximum=2)
    hit_efficiency: float = param(0.98, "efficiency of a tracker hit on a crossed layer", minimum=0, maximum=1)


@dataclass
class DetectorResponse:
    """Every tunable number of the fast detector simulation (the geometry lives in dataformats.geometry)."""

    ecal: EcalResponse = field(default_factory=EcalResponse, metadata={"help": "ECAL response"})
    hcal: HcalResponse = field(default_factory=HcalResponse, metadata={"help": "HCAL response"})
    hadrons: HadronResponse = field(default_factory=HadronResponse, metadata={"help": "hadron/muon energy sharing"})
    tracking: TrackingResponse = field(default_factory=TrackingResponse, metadata={"help": "tracking response"})

    def kernel_parameters(self) -> np.ndarray:
        """The one-element record :func:`simulation.kernels.simulate_chunk` reads: geometry + this response."""
        e, h, had, t = self.ecal, self.hcal, self.hadrons, self.tracking
        values = {
            "b_field": geo.B_FIELD_T, "ecal_r": geo.ECAL_FACE_RADIUS_CM, "ecal_z": geo.ECAL_FACE_Z_CM,
            "hcal_r": geo.HCAL_FACE_RADIUS_CM, "hcal_z": geo.HCAL_FACE_Z_CM, "track_eta_max": geo.TRACK_ETA_MAX,
            "ecal_nphi": geo.ECAL_N_IPHI, "hcal_nphi": geo.HCAL_N_IPHI, "barrel_row_lo": geo.ECAL_ENDCAP_ROWS,
            "barrel_row_hi": geo.ECAL_ENDCAP_ROWS + geo.ECAL_BARREL_ROWS,
            "ecal_stochastic": e.stochastic, "ecal_noise_term": e.noise_term, "ecal_constant": e.constant,
            "ecal_noise_barrel": e.noise_barrel, "ecal_threshold_barrel": e.threshold_barrel,
            "ecal_noise_endcap": e.noise_endcap, "ecal_threshold_endcap": e.threshold_endcap,
            "ecal_p_tail_barrel": noise_tail_probability(e.noise_barrel, e.threshold_barrel),
            "ecal_p_tail_endcap": noise_tail_probability(e.noise_endcap, e.threshold_endcap),
            "em_sigma": e.em_shower_sigma, "hadron_sigma_ecal": e.hadron_shower_sigma,
            "hcal_stochastic": h.stochastic, "hcal_constant": h.constant, "hcal_noise": h.noise,
            "hcal_threshold": h.threshold, "hcal_p_tail": noise_tail_probability(h.noise, h.threshold),
            "hcal_sigma": h.shower_sigma,
            "hadron_p_interact": had.p_interact_ecal, "hadron_fraction_min": had.ecal_fraction_min,
            "hadron_fraction_max": had.ecal_fraction_max, "mip_ecal": had.mip_ecal, "mip_hcal": had.mip_hcal,
            "track_pt_min": t.pt_min, "track_eff_high": t.efficiency_high, "track_eff_low": t.efficiency_low,
            "pt_res": t.pt_resolution, "pt_res_slope": t.pt_resolution_slope,
            "d0_a": t.d0_constant_um, "d0_b": t.d0_msc_um, "d0_power": t.d0_power,
            "dz_a": t.dz_constant_um, "dz_b": t.dz_msc_um, "dz_power": t.dz_power,
            "hit_efficiency": t.hit_efficiency,
        }  # fmt: skip
        assert set(values) == set(kernels.SIM_PARAM_FIELDS), set(values) ^ set(kernels.SIM_PARAM_FIELDS)
        rec = np.zeros(1, kernels.SIM_PARAM_DTYPE)
        for name, value in values.items():
            rec[name] = value
        return rec

    def expected_noise_cells(self) -> float:
        """Mean number of ECAL + HCAL cells per event that fire on noise alone."""
        e, h = self.ecal, self.hcal
        barrel = geo.ECAL_BARREL_ROWS * geo.ECAL_N_IPHI
        endcap = 2 * geo.ECAL_ENDCAP_ROWS * geo.ECAL_N_IPHI
        return (
            barrel * noise_tail_probability(e.noise_barrel, e.threshold_barrel)
            + endcap * noise_tail_probability(e.noise_endcap, e.threshold_endcap)
            + geo.HCAL_N_IETA * geo.HCAL_N_IPHI * noise_tail_probability(h.noise, h.threshold)
        )


def noise_tail_probability(sigma: float, threshold: float) -> float:
    """P(N(0, sigma) > threshold): how often an empty cell fires on noise alone."""
    return 0.5 * math.erfc(threshold / (sigma * math.sqrt(2.0)))


@dataclass
class SimulatedHits:
    """Flat detector output of a chunk: per-event counts and concatenated hit arrays."""

    ecal: np.ndarray  # [n, 3] ieta, iphi, energy
    hcal: np.ndarray  # [n, 3]
    tracks: np.ndarray  # [n, 10] pt, eta, phi, charge, d0, dz, d0sig, dzsig, ecal_ieta, ecal_iphi
    tracker_hits: np.ndarray  # [n, 3] layer, ieta, iphi
    counts: np.ndarray  # [n_events, 4] ECAL, HCAL, tracks, tracker hits
    track_truth: np.ndarray  # [n_tracks, 3] particle index, true d0 (cm), true dz (cm)


class DetectorSimulation:
    """Runs the numba detector kernel on chunks of events; reuses its buffers between chunks."""

    def __init__(self, response: DetectorResponse | None = None) -> None:
        self.response = response or DetectorResponse()
        self._par = self.response.kernel_parameters()
        self._noise_cells = self.response.expected_noise_cells()
        self._ecal_grid = np.zeros(geo.ECAL_N_IETA * geo.ECAL_N_IPHI)
        self._hcal_grid = np.zeros(geo.HCAL_N_IETA * geo.HCAL_N_IPHI)
        self._caps = np.zeros(4, np.int64)
        self._ecal = self._hcal = self._trk = self._tkh = self._trk_truth = np.empty((0, 3))

    def _reserve(self, caps: np.ndarray) -> None:
        """Grow the output buffers (ECAL, HCAL, tracks, tracker hits) to at least ``caps`` rows; never shrink."""
        if np.all(caps <= self._caps):
            return
        self._caps = np.maximum(self._caps, caps)
        ce, ch, ct, ck = (int(c) for c in self._caps)
        self._ecal = np.empty((ce, 3))
        self._hcal = np.empty((ch, 3))
        self._trk = np.empty((ct, 10))
        self._trk_truth = np.empty((ct, 3))
        self._tkh = np.empty((ck, 3))

    def simulate(
        self, particles: dict[str, np.ndarray], ev_off: np.ndarray, pv_z: np.ndarray, seed: int
    ) -> SimulatedHits:
        """Simulate a chunk. ``particles``: flat arrays px, py, pz, e, pid, charge, vx, vy, vz, rdec, kind."""
        p = particles
        n_ev = len(ev_off) - 1
        counts = np.zeros((n_ev, 4), np.int64)
        n_part = len(p["px"])
        n_charged = int(np.count_nonzero(p["charge"]))
        # tracks and tracker hits: exact bounds; calorimeters: generous estimates, doubled on overflow
        self._reserve(
            np.array(
                [
                    6 * n_part + 1.3 * n_ev * self._noise_cells + 1000,
                    3 * n_part + 1000,
                    n_part + 1,
                    len(geo.TRACKER_LAYER_RADII_CM) * n_charged + 1,
                ],
                np.int64,
            )
        )
        while not kernels.simulate_chunk(
            seed, ev_off, p["px"], p["py"], p["pz"], p["e"], p["pid"], p["charge"], p["vx"], p["vy"], p["vz"],
            p["rdec"], p["kind"], pv_z, self._par, geo.ECAL_ETA_EDGES, geo.HCAL_ETA_EDGES,
            geo.TRACKER_LAYER_RADII_CM, geo.TRACKER_LAYER_HALF_LENGTHS_CM, self._ecal_grid, self._hcal_grid,
            self._ecal, self._hcal, self._trk, self._tkh, counts, self._trk_truth,
        ):  # fmt: skip
            self._ecal_grid[:] = 0.0
            self._hcal_grid[:] = 0.0
            self._reserve(2 * self._caps)
        tot = counts.sum(axis=0)
        return SimulatedHits(
            ecal=self._ecal[: tot[0]].copy(),
            hcal=self._hcal[: tot[1]].copy(),
            tracks=self._trk[: tot[2]].copy(),
            tracker_hits=self._tkh[: tot[3]].copy(),
            counts=counts,
            track_truth=self._trk_truth[: tot[2]].copy(),
        )
