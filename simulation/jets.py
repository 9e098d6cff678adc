"""Jet clustering (anti-kt, FastJet), E2E jet seeds and generator-truth labels."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

import awkward as ak
import numpy as np

from dataformats import geometry as geo
from e2e.errors import E2EError
from e2e.params import param
from simulation import kernels
from simulation.arrays import four_vector_kinematics, offsets


@dataclass
class JetConfig:
    """Reconstructed jets and their truth labels."""

    radius: float = param(0.4, "anti-kt distance parameter R", minimum=0.05, maximum=1.5)
    pt_min: float = param(20.0, "minimum jet pT (GeV)", minimum=0)
    eta_max: float = param(2.5, "maximum jet |eta|", minimum=0, maximum=2.6)
    tau_match_dr: float = param(0.3, "dR within which a visible hadronic tau labels a jet", minimum=0)
    tau_visible_pt_min: float = param(15.0, "minimum visible pT of a generator tau (GeV)", minimum=0)
    prompt_pt_min: float = param(15.0, "minimum pT of a prompt electron/photon that labels a jet (GeV)", minimum=0)
    charged_hadron_subtraction: bool = param(True, "drop charged pileup particles before clustering (CMS PFchs)")
    gen_jet_match_dr: float = param(0.2, "dR for the generator-jet match that gives gen_pt of other jets", minimum=0)


class JetClusterer:
    """Anti-kt clustering of many events in one FastJet call (its awkward interface)."""

    def __init__(self, radius: float) -> None:
        try:
            import fastjet
        except ImportError as err:  # pragma: no cover
            raise E2EError("FastJet is not installed: install the gen extra (pip install -e '.[gen]')") from err
        self._fastjet = fastjet
        self.jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, radius)

    def cluster(self, px, py, pz, e, counts, pt_min: float, eta_max: float) -> dict[str, np.ndarray]:
        """Jets above ``pt_min`` within ``eta_max``, sorted by pT per event.

        Returns flat arrays pt, eta, phi, mass, px, py, pz, e and per-event ``counts``.
        """
        n_ev = len(counts)
        if int(np.sum(counts)) == 0:
            empty = np.zeros(0)
            return {"pt": empty, "eta": empty, "phi": empty, "mass": empty, "counts": np.zeros(n_ev, np.int64)}
        parts = ak.unflatten(ak.zip({"px": px, "py": py, "pz": pz, "E": e}), counts)
        with _quiet_banner():
            jets = self._fastjet.ClusterSequence(parts, self.jetdef).inclusive_jets(min_pt=pt_min)
        jcounts = ak.to_numpy(ak.num(jets))
        flat = ak.flatten(jets)
        jpx, jpy, jpz, je = (ak.to_numpy(flat[c]).astype(np.float64) for c in ("px", "py", "pz", "E"))
        pt, eta, phi, mass = four_vector_kinematics(jpx, jpy, jpz, je)
        ev = np.repeat(np.arange(n_ev), jcounts)
        keep = np.abs(eta) < eta_max
        order = np.lexsort((-pt[keep], ev[keep]))
        out = {k: v[keep][order] for k, v in (("pt", pt), ("eta", eta), ("phi", phi), ("mass", mass))}
        out["counts"] = np.bincount(ev[keep], minlength=n_ev).astype(np.int64)
        return out


@contextlib.contextmanager
def _quiet_banner():
    """FastJet's C++ core prints its banner to stdout on first use: silence it (keeps stdout parseable)."""
    global _BANNER_SEEN
    if _BANNER_SEEN:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            _BANNER_SEEN = True


_BANNER_SEEN = False


def jet_seeds(
    jets: dict[str, np.ndarray], hcal_counts, hcal_ieta, hcal_iphi, hcal_e, grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E2E seed of each jet: hottest HCAL tower in the 7x7 towers around its axis, as crystal index tower*5+2.

    Returns (seed_ieta, seed_iphi, found); found is False where the window had no
    HCAL hit and the axis tower was used instead.
    """
    t_eta = geo.hcal_ieta(jets["eta"])
    t_phi = geo.hcal_iphi(jets["phi"])
    half = geo.SEED_WINDOW_TOWERS // 2
    se, sp, found = kernels.find_jet_seeds(
        offsets(jets["counts"]), t_eta, t_phi, offsets(hcal_counts), hcal_ieta.astype(np.int64),
        hcal_iphi.astype(np.int64), hcal_e, geo.HCAL_N_IETA, geo.HCAL_N_IPHI, half, grid,
    )  # fmt: skip
    ce, cp = geo.hcal_to_ecal_seed(se, sp)
    return ce, cp, found
