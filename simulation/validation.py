"""Physics validation of the generator: measured values against the reference values of REFERENCE.md.

Every check generates its own small sample (Pythia 8 + the fast detector simulation, with the
simulation truth kept) and compares one number with a reference and a tolerance:

* :func:`tau_checks`: hadronic tau decay-mode fractions and the median true |d0| of tau daughters;
* :func:`ecal_closure_checks`: a photon/electron gun into the ECAL barrel (energy closure, resolution,
  5 x 5 containment with noise and zero suppression);
* :func:`pileup_checks`: the |dz| > 1 mm fraction of pileup tracks and the mean number of pileup interactions.

:func:`single_variable_auc_report` is not a check: it measures how well single jet variables separate
taus from QCD jets (how hard the tagging task is), with and without pileup.

Units: GeV, cm (um where stated), rad.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from dataformats import geometry as geo
from simulation.detector import DetectorResponse, DetectorSimulation
from simulation.generate import Chunk, JobStats, PileupConfig, build_library, chunks_in_memory, load_config
from simulation.pythia import MinBiasLibrary
from taggers.metrics import auc

__all__ = [
    "Check",
    "tau_checks",
    "ecal_closure_checks",
    "pileup_checks",
    "auc",
    "single_variable_auc_report",
    "format_checks",
    "format_auc_report",
]

#: Hadronic tau decay-mode fractions (Pythia 8, REFERENCE.md) and their tolerances (absolute).
TAU_MODE_REFERENCE: dict[int, tuple[str, float, float]] = {
    1: ("1-prong + pi0", 0.40, 0.03),
    0: ("1-prong", 0.19, 0.03),
    10: ("3-prong", 0.16, 0.03),
    2: ("1-prong + 2pi0", 0.14, 0.03),
    11: ("3-prong + pi0", 0.07, 0.02),
}
#: Median true |d0| of charged tau daughters: ~25-30 um (REFERENCE.md, c*tau = 87 um).
TAU_D0_MEDIAN_UM = (27.5, 5.0)
#: Jets used by the single-variable report (GeV) and the cone of its variables.
AUC_JET_PT = (20.0, 100.0)
AUC_CONE_DR = 0.4
AUC_TRACK_PT_MIN = 1.0  # GeV
AUC_TRACK_DZ_MAX = 0.1  # cm, as the E2E track channels


@dataclass
class Check:
    """One validation number: measured +- uncertainty against reference +- tolerance (same unit)."""

    name: str
    measured: float
    uncertainty: float
    reference: float
    tolerance: float
    unit: str = ""
    note: str = ""

    @property
    def passed(self) -> bool:
        """|measured - reference| <= tolerance + 2 * uncertainty (NaN fails)."""
        return bool(abs(self.measured - self.reference) <= self.tolerance + 2.0 * self.uncertainty)


# ----------------------------------------------------------------------------------------------- sampling


def _chunks(
    process: str,
    n_events: int,
    seed: int,
    mu: float,
    library_size: int = 100,
    pt_hat: tuple[float, float] | None = None,
    library: MinBiasLibrary | None = None,
    stats: JobStats | None = None,
) -> Iterator[Chunk]:
    """Chunks (with truth) of ``n_events`` events of ``process`` at pileup ``mu``."""
    data: dict[str, Any] = {
        "process": process,
        "events": n_events,
        "seed": seed,
        "pileup": {"mu": mu, "library_size": library_size},
        "chunk_size": 100,
    }
    if pt_hat is not None:
        data["pt_hat"] = list(pt_hat)
    yield from chunks_in_memory(load_config(data, where="validation"), keep_truth=True, stats=stats, library=library)


def _binomial(k: int, n: int) -> tuple[float, float]:
    """Fraction k/n and its binomial uncertainty (NaN for n = 0)."""
    if n == 0:
        return math.nan, math.nan
    f = k / n
    return f, math.sqrt(max(f * (1.0 - f), 0.0) / n)


def _median_with_error(x: np.ndarray) -> tuple[float, float]:
    """Median and its uncertainty from the order statistics at n/2 +- sqrt(n)/2 (a 68 % interval)."""
    n = len(x)
    if n == 0:
        return math.nan, math.nan
    s = np.sort(x)
    half = 0.5 * math.sqrt(n)
    lo = s[max(int(math.floor(n / 2 - half)), 0)]
    hi = s[min(int(math.ceil(n / 2 + half)), n - 1)]
    return float(np.median(s)), float(0.5 * (hi - lo))


# ----------------------------------------------------------------------------------------------- taus


def tau_checks(n_events: int, seed: int = 1) -> list[Check]:
    """Decay-mode fractions of hadronic taus and the median true |d0| (um) of their charged daughters.

    Z -> tautau at mu = 0 (the generator truth does not depend on pileup); every tau decays hadronically.
    """
    modes, d0 = [], []
    for chunk in _chunks("ztautau", n_events, seed, mu=0.0):
        modes += [t[:, 4] for t in chunk.truth["taus"]]
        d0.append(chunk.truth["tau_daughter_d0"])
    dm = np.concatenate(modes).astype(np.int64) if modes else np.zeros(0, np.int64)
    n = len(dm)
    checks = []
    for mode, (label, ref, tol) in TAU_MODE_REFERENCE.items():
        f, err = _binomial(int(np.sum(dm == mode)), n)
        checks.append(Check(f"tau mode {mode} ({label}) fraction", f, err, ref, tol, note=f"{n} hadronic taus"))
    d0_um = np.concatenate(d0) * 1e4 if d0 else np.zeros(0)
    med, err = _median_with_error(d0_um)
    ref, tol = TAU_D0_MEDIAN_UM
    checks.append(
        Check(
            "tau daughters median true |d0|",
            med,
            err,
            ref,
            tol,
            "um",
            note=f"{len(d0_um)} charged daughters; reference 25-30 um",
        )
    )
    return checks


# ----------------------------------------------------------------------------------------------- ECAL


def ecal_resolution(e_gev: np.ndarray | float, response: DetectorResponse | None = None) -> np.ndarray:
    """Relative ECAL resolution sigma(E)/E = a/sqrt(E) (+) b/E (+) c (REFERENCE.md: 2.8 %, 0.12 GeV, 0.3 %)."""
    ec = (response or DetectorResponse()).ecal
    e = np.asarray(e_gev, dtype=np.float64)
    return np.sqrt((ec.stochastic / np.sqrt(e)) ** 2 + (ec.noise_term / e) ** 2 + ec.constant**2)


def particle_gun(
    pid: int, energies: np.ndarray, rng: np.random.Generator, eta_max: float = 1.3
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """One particle per event from the origin, eta uniform in |eta| < ``eta_max``, phi uniform.

    Returns (flat particle arrays as :meth:`DetectorSimulation.simulate` takes them, event offsets,
    primary-vertex z per event (cm, all 0)). ``pid`` 22 (photon) or +-11 (electron/positron).
    """
    n = len(energies)
    mass = {22: 0.0, 11: 0.000511}[abs(pid)]
    charge = 0.0 if pid == 22 else -math.copysign(1.0, pid)
    eta = rng.uniform(-eta_max, eta_max, n)
    phi = rng.uniform(-math.pi, math.pi, n)
    p = np.sqrt(np.maximum(energies**2 - mass**2, 0.0))
    pt = p / np.cosh(eta)
    zeros = np.zeros(n)
    particles: dict[str, np.ndarray] = {
        "px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta), "e": energies.astype(np.float64),
        "pid": np.full(n, pid, np.int32), "charge": np.full(n, charge), "vx": zeros.copy(), "vy": zeros.copy(),
        "vz": zeros.copy(), "rdec": np.full(n, np.inf), "kind": np.ones(n, np.int8), "from_tau": np.zeros(n, bool),
    }  # fmt: skip
    return particles, np.arange(n + 1, dtype=np.int64), np.zeros(n)


def _noise_free_response() -> DetectorResponse:
    """Default response with negligible ECAL noise, so that every deposited GeV is read out.

    The threshold is 1e-6 GeV = 1000 noise sigma rather than 0: with a zero threshold half of all
    empty crystals would fire on the (1e-9 GeV) noise; cells below 1e-6 GeV carry < 1e-5 of the energy.
    """
    resp = DetectorResponse()
    resp.ecal.noise_barrel = resp.ecal.noise_endcap = 1e-9
    resp.ecal.threshold_barrel = resp.ecal.threshold_endcap = 1e-6
    return resp


def _ecal_sums(hits: Any, n_events: int) -> tuple[np.ndarray, np.ndarray]:
    """Per event: total ECAL energy and the energy in the 5 x 5 crystals around the hottest crystal (GeV)."""
    ecal = hits.ecal
    ev = np.repeat(np.arange(n_events), hits.counts[:, 0])
    ieta, iphi, energy = ecal[:, 0].astype(np.int64), ecal[:, 1].astype(np.int64), ecal[:, 2]
    total = np.bincount(ev, weights=energy, minlength=n_events)
    order = np.lexsort((-energy, ev))  # by event, hottest first
    first = np.searchsorted(ev[order], np.arange(n_events))
    has = hits.counts[:, 0] > 0
    hot_eta = np.full(n_events, -100, np.int64)  # no hit: nothing is within 2 rows
    hot_phi = np.zeros(n_events, np.int64)
    hot_eta[has] = ieta[order[first[has]]]
    hot_phi[has] = iphi[order[first[has]]]
    deta = ieta - hot_eta[ev]
    dphi = (iphi - hot_phi[ev] + geo.ECAL_N_IPHI // 2) % geo.ECAL_N_IPHI - geo.ECAL_N_IPHI // 2
    inside = (np.abs(deta) <= 2) & (np.abs(dphi) <= 2)
    window = np.bincount(ev[inside], weights=energy[inside], minlength=n_events)
    return total, window


def ecal_closure_checks(n_particles: int = 2000, seed: int = 2) -> list[Check]:
    """Photon + electron gun (10 and 50 GeV, |eta| < 1.3) into the ECAL.

    Without noise: mean(sum E_hits / E) = 1 within 0.5 % and RMS(sum / E) against the resolution formula
    within 15 % (relative). With the default noise and thresholds: 5 x 5 crystals around the hottest / E
    within 3 % of 1.
    """
    rng = np.random.default_rng(seed)
    quiet = DetectorSimulation(_noise_free_response())
    noisy = DetectorSimulation(DetectorResponse())
    n_per = max(n_particles // 4, 2)
    checks = []
    for energy in (10.0, 50.0):
        ratio_all, window_all = [], []
        for pid in (22, 11):
            e = np.full(n_per, energy)
            particles, ev_off, pv_z = particle_gun(pid, e, rng)
            total, _ = _ecal_sums(quiet.simulate(particles, ev_off, pv_z, int(rng.integers(2**31 - 1))), n_per)
            ratio_all.append(total / e)
            _, window = _ecal_sums(noisy.simulate(particles, ev_off, pv_z, int(rng.integers(2**31 - 1))), n_per)
            window_all.append(window / e)
        r = np.concatenate(ratio_all)
        w = np.concatenate(window_all)
        n = len(r)
        mean, rms = float(np.mean(r)), float(np.std(r, ddof=1))
        expected = float(ecal_resolution(energy)) * 100.0
        note = f"{n} photons + electrons, |eta| < 1.3, no ECAL noise"
        checks.append(
            Check(f"ECAL closure <sum E_hits / E>, {energy:g} GeV", mean, rms / math.sqrt(n), 1.0, 0.005, note=note)
        )
        checks.append(
            Check(
                f"ECAL resolution RMS(sum / E), {energy:g} GeV",
                100.0 * rms,
                100.0 * rms / math.sqrt(2.0 * (n - 1)),
                expected,
                0.15 * expected,
                "%",
                note="reference: 2.8%/sqrt(E) (+) 0.12/E (+) 0.3%; tolerance 15% relative",
            )
        )
        checks.append(
            Check(
                f"ECAL 5x5 around hottest / E, {energy:g} GeV",
                float(np.mean(w)),
                float(np.std(w, ddof=1)) / math.sqrt(n),
                1.0,
                0.03,
                note="default noise (50 MeV) and 80 MeV threshold",
            )
        )
    return checks


# ----------------------------------------------------------------------------------------------- pileup


def pileup_dz_reference(sigma_z_cm: float, cut_cm: float = 0.1) -> float:
    """P(|z_pu - z_pv| > cut) for two vertices ~ N(0, sigma_z): the difference has sigma sqrt(2) sigma_z."""
    return 1.0 - math.erf(cut_cm / (2.0 * sigma_z_cm))


def pileup_checks(n_events: int, mu: float = 40, seed: int = 3, library_size: int = 100) -> list[Check]:
    """Pileup tracks with measured |dz| > 1 mm, and the mean number of pileup interactions per event.

    The dz fraction's uncertainty is cluster-robust: tracks of one pileup vertex share their dz, so
    tracks are grouped by event and true vertex z (1 mm bins) rather than counted as independent.
    """
    stats = JobStats()
    frac_num, keys = [], []
    sigma_z = PileupConfig().sigma_z_cm
    ev_base = 0
    for chunk in _chunks("ztautau", n_events, seed, mu=mu, library_size=library_size, stats=stats):
        t = chunk.truth
        hits = t["hits"]
        pidx = hits.track_truth[:, 0].astype(np.int64)
        pu = t["is_pileup"][pidx]
        ev = np.repeat(np.arange(chunk.n_events), hits.counts[:, 2]) + ev_base
        far = np.abs(hits.tracks[:, 5]) > 0.1
        frac_num.append(far[pu])
        keys.append(np.stack([ev[pu], np.round(t["particles"]["vz"][pidx[pu]] * 10.0).astype(np.int64)], axis=1))
        ev_base += chunk.n_events
    far = np.concatenate(frac_num) if frac_num else np.zeros(0, bool)
    checks = []
    n = len(far)
    if n:
        f = float(np.mean(far))
        _, cluster = np.unique(np.concatenate(keys), axis=0, return_inverse=True)
        cluster = cluster.ravel()
        resid = np.bincount(cluster, weights=far - f)
        err = float(math.sqrt(np.sum(resid**2)) / n)
        n_clusters = len(resid)
    else:
        f, err, n_clusters = math.nan, math.nan, 0
    note = f"{n} pileup tracks from {n_clusters} vertices; reference 1 - erf(0.1 / (2 * {sigma_z:g} cm))"
    checks.append(Check("pileup tracks with |dz| > 1 mm", f, err, pileup_dz_reference(sigma_z), 0.01, note=note))
    n_ev = max(stats.events, 1)
    mean_pu = stats.pileup_interactions / n_ev
    err_mu = math.sqrt(mu / n_ev)
    checks.append(
        Check(
            "pileup interactions per event",
            mean_pu,
            err_mu,
            float(mu),
            3.0 * err_mu,
            note=f"{stats.events} events; Poisson(mu = {mu:g})",
        )
    )
    return checks


# ----------------------------------------------------------------------------------------------- AUC


def _dr(eta1: Any, phi1: Any, eta2: Any, phi2: Any) -> Any:
    dphi = (phi1 - phi2 + np.pi) % (2.0 * np.pi) - np.pi
    return np.sqrt((eta1 - eta2) ** 2 + dphi**2)


def jet_variables(arrays: dict[str, Any], label: int) -> dict[str, np.ndarray]:
    """Per jet of ``label`` with 20 < pT < 100 GeV: calorimeter width, charged multiplicity, leading-track fraction.

    width = sum(pT_i dR_i) / sum(pT_i) over ECAL + HCAL hits within dR < 0.4 (hit pT = E / cosh(eta));
    multiplicity = tracks with pT > 1 GeV, |dz| < 0.1 cm within dR < 0.4; fraction = leading such track
    pT / jet pT (0 without one).
    """
    jets = arrays["Jet"]
    # gen_pt > 0: jets of the hard scatter (pileup jets carry label 0 with gen_pt = -1 and are left out)
    jets = jets[(jets.label == label) & (jets.gen_pt > 0) & (jets.pt > AUC_JET_PT[0]) & (jets.pt < AUC_JET_PT[1])]

    def cells(coll: Any, eta_of: Any, phi_of: Any) -> Any:
        counts = ak.num(coll)
        ieta = ak.to_numpy(ak.flatten(coll.ieta)).astype(np.int64)
        iphi = ak.to_numpy(ak.flatten(coll.iphi)).astype(np.int64)
        energy = ak.to_numpy(ak.flatten(coll.energy)).astype(np.float64)
        eta = eta_of(ieta)
        rec = ak.zip({"eta": eta, "phi": phi_of(iphi), "pt": energy / np.cosh(eta)})
        return ak.unflatten(rec, counts)

    hits = ak.concatenate(
        [cells(arrays["EcalHit"], geo.ecal_eta, geo.ecal_phi), cells(arrays["HcalHit"], geo.hcal_eta, geo.hcal_phi)],
        axis=1,
    )
    trk = arrays["Track"]
    trk = trk[(trk.pt > AUC_TRACK_PT_MIN) & (np.abs(trk.dz) < AUC_TRACK_DZ_MAX)]

    jh, hh = ak.unzip(ak.cartesian([jets, hits], axis=1, nested=True))
    dr = _dr(hh.eta, hh.phi, jh.eta, jh.phi)
    w = ak.where(dr < AUC_CONE_DR, hh.pt, 0.0)
    sum_pt = ak.to_numpy(ak.flatten(ak.sum(w, axis=-1)))
    sum_ptdr = ak.to_numpy(ak.flatten(ak.sum(w * dr, axis=-1)))
    width = np.divide(sum_ptdr, sum_pt, out=np.zeros_like(sum_pt), where=sum_pt > 0)

    jt, tt = ak.unzip(ak.cartesian([jets, trk], axis=1, nested=True))
    in_cone = _dr(tt.eta, tt.phi, jt.eta, jt.phi) < AUC_CONE_DR
    mult = ak.to_numpy(ak.flatten(ak.sum(in_cone, axis=-1))).astype(np.float64)
    lead = ak.to_numpy(ak.flatten(ak.max(ak.where(in_cone, tt.pt, 0.0), axis=-1, initial=0.0)))
    jet_pt = ak.to_numpy(ak.flatten(jets.pt)).astype(np.float64)
    return {"width": width, "multiplicity": mult, "leading_fraction": lead / jet_pt}


#: The report's variables: (name, sign of the score: tau-like = smaller width, fewer tracks, larger fraction).
AUC_VARIABLES = (
    ("calorimeter pT-weighted width", "width", -1.0),
    ("charged multiplicity (pT > 1 GeV, |dz| < 1 mm)", "multiplicity", -1.0),
    ("leading-track pT fraction", "leading_fraction", 1.0),
)


def single_variable_auc_report(
    n_events: int, mu: float, seed: int = 4, library_size: int = 200
) -> list[tuple[str, float, float, int, int]]:
    """AUC of single jet variables, taus (Z -> tautau, label 1) vs QCD jets (pTHat 20-120 GeV, label 0).

    ``n_events`` events of each process at pileup ``mu``; jets with 20 < pT < 100 GeV. Returns
    (variable, AUC, uncertainty, n_tau, n_qcd) per variable. Not a target: it shows how hard the task is.
    """
    library = None
    if mu > 0:
        cfg = load_config(
            {"process": "minbias", "events": 0, "seed": seed, "pileup": {"mu": mu, "library_size": library_size}},
            where="validation",
        )
        library = build_library(cfg, 0, JobStats())
    samples: dict[int, list[dict[str, np.ndarray]]] = {1: [], 0: []}
    for label, process, s, pt_hat in ((1, "ztautau", seed, None), (0, "qcd", seed + 1, (20.0, 120.0))):
        for chunk in _chunks(process, n_events, s, mu, library_size, pt_hat=pt_hat, library=library):
            samples[label].append(jet_variables(chunk.arrays, label))

    def column(label: int, key: str) -> np.ndarray:
        return np.concatenate([v[key] for v in samples[label]]) if samples[label] else np.zeros(0)

    report = []
    for name, key, sign in AUC_VARIABLES:
        tau, qcd = column(1, key), column(0, key)
        a, err = auc(sign * tau, sign * qcd)
        report.append((name, a, err, len(tau), len(qcd)))
    return report


# ----------------------------------------------------------------------------------------------- output


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "nan"
    return f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def format_checks(checks: Iterable[Check]) -> list[str]:
    """A fixed-width table: name, measured +- uncertainty, reference, tolerance, unit, PASS/FAIL, note."""
    checks = list(checks)
    w = max([len(c.name) for c in checks] + [5])
    head = f"{'check':<{w}}  {'measured':>20}  {'reference':>10}  {'tolerance':>10}  {'unit':<4}  result"
    lines = [head, "-" * len(head)]
    for c in checks:
        meas = f"{_num(c.measured)} +- {_num(c.uncertainty)}"
        line = (
            f"{c.name:<{w}}  {meas:>20}  {_num(c.reference):>10}  {_num(c.tolerance):>10}  {c.unit:<4}  "
            f"{'PASS' if c.passed else 'FAIL'}"
        )
        lines.append(line + (f"  ({c.note})" if c.note else ""))
    return lines


def format_auc_report(report: Iterable[tuple[str, float, float, int, int]], title: str = "") -> list[str]:
    """A fixed-width table of :func:`single_variable_auc_report` rows."""
    rows = list(report)
    w = max([len(r[0]) for r in rows] + [8])
    head = f"{'variable':<{w}}  {'AUC':>16}  {'tau jets':>8}  {'QCD jets':>8}"
    lines = ([title] if title else []) + [head, "-" * len(head)]
    for name, a, err, n_tau, n_qcd in rows:
        lines.append(f"{name:<{w}}  {f'{a:.3f} +- {err:.3f}':>16}  {n_tau:>8}  {n_qcd:>8}")
    return lines
