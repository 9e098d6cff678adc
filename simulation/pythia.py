"""Pythia 8 event generation and extraction of the record into flat numpy arrays.

Lengths are converted from Pythia's mm to cm. Each generated event becomes a
:class:`GenEvent`: the visible final-state particles, the charged unstable
particles that fly past tracker layers (kind 2), and the truth objects used for
jet labels (visible hadronic taus, hadronic tops, prompt electrons/photons).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataformats import geometry as geo
from e2e.errors import E2EError
from simulation.arrays import pt_eta
from simulation.kernels import KIND_TRACKER_ONLY, KIND_VISIBLE
from simulation.processes import COMMON_SETTINGS, Process

NEUTRINOS = frozenset((12, 14, 16, 18))
#: charged weakly-decaying particles whose own tracker hits are simulated before they decay
CHARGED_LONG_LIVED = frozenset((15, 411, 431, 521, 541, 4122, 4232, 5132, 5232, 3112, 3222, 3312, 3334))
#: |eta| beyond which particles cannot reach the calorimeter grid (|eta| <= 3.0) and are not kept
ETA_KEEP = 3.3
PARTICLE_FIELDS = ("px", "py", "pz", "e", "pid", "charge", "vx", "vy", "vz", "rdec", "kind", "from_tau")


@dataclass
class GenEvent:
    """One generated event as flat arrays (cm, GeV) plus truth objects."""

    particles: dict[str, np.ndarray]
    taus: np.ndarray  # [n, 6] visible px, py, pz, e, decay_mode, n_prongs
    tops: np.ndarray  # [n, 10] px, py, pz, e, then eta/phi of b, q1, q2 (hadronic tops only)
    prompt: np.ndarray  # [n, 5] px, py, pz, e, label (2 electron, 3 photon)
    tau_daughter_d0: np.ndarray  # true |d0| (cm) of charged final tau daughters w.r.t. the tau's production vertex


def decay_mode(n_prongs: int, n_pi0: int) -> int:
    """CMS tau decay-mode numbering: 5 * (prongs - 1) + pi0s for 1/3 prongs, else -1."""
    if n_prongs == 1:
        return min(n_pi0, 2)
    if n_prongs == 3:
        return 10 + min(n_pi0, 1)
    return -1


def _import_pythia():
    try:
        import pythia8mc
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise E2EError("Pythia8 is not installed: install the gen extra (pip install -e '.[gen]')") from err
    return pythia8mc


def _row(q: Any, rdec_cm: float, kind: int, index: int) -> tuple:
    """One particle row: four-momentum (GeV), pid, charge, production vertex (mm), decay radius (cm), kind, index."""
    return (q.px(), q.py(), q.pz(), q.e(), q.id(), q.charge(), q.xProd(), q.yProd(), q.zProd(), rdec_cm, kind, index)


class PythiaGenerator:
    """A configured, initialised Pythia instance that yields :class:`GenEvent` objects."""

    def __init__(
        self,
        process: Process,
        seed: int,
        sqrt_s_gev: float = 13000.0,
        pt_hat: tuple[float, float] | None = None,
        extra_settings: tuple[str, ...] = (),
    ) -> None:
        pythia8mc = _import_pythia()
        self.process = process
        self.pythia = pythia8mc.Pythia("", False)
        settings = list(COMMON_SETTINGS) + list(process.settings)
        settings += [f"Beams:eCM = {sqrt_s_gev}", "Random:setSeed = on", f"Random:seed = {seed % 900_000_000}"]
        if process.uses_pt_hat and pt_hat is not None:
            settings += [f"PhaseSpace:pTHatMin = {pt_hat[0]}", f"PhaseSpace:pTHatMax = {pt_hat[1]}"]
        settings += list(extra_settings)
        for s in settings:
            if not self.pythia.readString(s, False):  # (warn=False: not Pythia's own lines on stdout too)
                raise E2EError(
                    f"Pythia rejected the setting '{s}' (a 'Key = value' line of Pythia 8's settings: an unknown "
                    "key, or a value of the wrong type)"
                )
        if not self.pythia.init():
            scale = f", pt_hat {list(pt_hat)} GeV" if process.uses_pt_hat and pt_hat is not None else ""
            raise E2EError(
                f"Pythia failed to initialise process '{process.name}' at sqrt_s_gev {sqrt_s_gev:g}{scale} (its "
                "messages are not shown; the usual cause: no phase space, e.g. a centre-of-mass energy below the "
                "process's mass scale or a pt_hat range above sqrt_s_gev / 2)"
            )

    def next_raw(self) -> None:
        """Generate the next event into ``self.pythia.event`` (retries Pythia's rare failures)."""
        for _ in range(100):
            if self.pythia.next():
                return
        raise E2EError(f"Pythia failed 100 times in a row for process '{self.process.name}'")

    def extract(self, with_truth: bool = True) -> GenEvent:
        """Convert ``pythia.event`` into a :class:`GenEvent` (visible particles within |eta| < 3.3)."""
        ev = self.pythia.event
        parts = ev.particles()
        rows: list[tuple] = []
        taus: list[Any] = []
        tops: list[Any] = []
        prompt: list[Any] = []
        tau_d0: list[float] = []
        tau_desc: set[int] = set()
        for i, q in enumerate(parts):
            if q.isFinal():
                aid = q.idAbs()
                if aid in NEUTRINOS:
                    continue
                rows.append(_row(q, math.inf, KIND_VISIBLE, i))
                if with_truth and (aid == 11 or aid == 22) and q.pT() > 15.0:
                    top = parts[ev[i].iTopCopyId()]
                    mother = top.mother1()
                    # from a boson decay, or an outgoing particle of the hard process (prompt photon: status 23)
                    if (mother > 0 and parts[mother].idAbs() in (22, 23, 24, 25, 32)) or abs(top.status()) // 10 == 2:
                        prompt.append((q.px(), q.py(), q.pz(), q.e(), 2.0 if aid == 11 else 3.0))
                continue
            aid = q.idAbs()
            if aid in CHARGED_LONG_LIVED and q.charge() != 0.0:
                rdec_mm = math.hypot(q.xDec(), q.yDec())
                if rdec_mm > 10.0 * geo.TRACKER_LAYER_RADII_CM[0]:
                    rows.append(_row(q, rdec_mm / 10.0, KIND_TRACKER_ONLY, i))
            if not with_truth:
                continue
            if aid == 15 and parts[q.daughter1()].idAbs() != 15:
                self._tau_truth(parts, ev[i], i, taus, tau_desc, tau_d0)
            elif aid == 6 and parts[q.daughter1()].idAbs() != 6:
                self._top_truth(ev, ev[i], tops)
        arr = np.array(rows, dtype=np.float64).reshape(-1, 12)
        pt, eta = pt_eta(arr[:, 0], arr[:, 1], arr[:, 2])
        keep = (pt > 0) & (np.abs(eta) < ETA_KEEP)
        arr = arr[keep]
        particles = {
            "px": arr[:, 0].copy(), "py": arr[:, 1].copy(), "pz": arr[:, 2].copy(), "e": arr[:, 3].copy(),
            "pid": arr[:, 4].astype(np.int32), "charge": arr[:, 5].copy(),
            "vx": arr[:, 6] / 10.0, "vy": arr[:, 7] / 10.0, "vz": arr[:, 8] / 10.0,
            "rdec": arr[:, 9].copy(), "kind": arr[:, 10].astype(np.int8),
            "from_tau": np.isin(arr[:, 11].astype(np.int64), np.fromiter(tau_desc, np.int64, len(tau_desc))),
        }  # fmt: skip
        return GenEvent(
            particles=particles,
            taus=np.array(taus, dtype=np.float64).reshape(-1, 6),
            tops=np.array(tops, dtype=np.float64).reshape(-1, 10),
            prompt=np.array(prompt, dtype=np.float64).reshape(-1, 5),
            tau_daughter_d0=np.array(tau_d0, dtype=np.float64),
        )

    @staticmethod
    def _tau_truth(parts, tau, tau_index, taus, tau_desc, tau_d0) -> None:
        px = py = pz = e = 0.0
        n_prongs = n_pi0 = 0
        leptonic = False
        for d in tau.daughterListRecursive():
            p = parts[d]
            aid = p.idAbs()
            if aid == 111:
                n_pi0 += 1
            if not p.isFinal():
                continue
            if aid in NEUTRINOS:
                continue
            if (aid == 11 or aid == 13) and p.mother1() == tau_index:
                leptonic = True
            tau_desc.add(d)
            px += p.px()
            py += p.py()
            pz += p.pz()
            e += p.e()
            if p.isHadron() and p.isCharged():
                n_prongs += 1
                # true transverse impact parameter w.r.t. the tau production point (cm)
                ptd = p.pT()
                dx = (p.xProd() - tau.xProd()) / 10.0
                dy = (p.yProd() - tau.yProd()) / 10.0
                tau_d0.append(abs(-dx * p.py() + dy * p.px()) / ptd)
        if leptonic:
            return
        taus.append((px, py, pz, e, float(decay_mode(n_prongs, n_pi0)), float(n_prongs)))

    @staticmethod
    def _top_truth(event, top, tops) -> None:
        b = w = None
        for d in (top.daughter1(), top.daughter2()):
            aid = event[d].idAbs()
            if aid == 5:
                b = event[d]
            elif aid == 24:
                w = event[event[d].iBotCopyId()]
        if b is None or w is None:
            return
        q1, q2 = event[w.daughter1()], event[w.daughter2()]
        if q1.idAbs() > 5 or q2.idAbs() > 5:
            return  # leptonic top
        tops.append((top.px(), top.py(), top.pz(), top.e(), b.eta(), b.phi(), q1.eta(), q1.phi(), q2.eta(), q2.phi()))


class MinBiasLibrary:
    """Minimum-bias events overlaid as pileup.

    ``reuse = 0``: generated once and sampled with replacement (a fixed library; events that make a pileup jet are
    rare, so a small library makes the pileup-jet count of a whole job fluctuate with its few such events).
    ``reuse = k >= 1``: consumed in random order without replacement, each event overlaid exactly ``k`` times, then
    the library is replaced by ``size`` newly generated events; ``reuse = 1`` overlays a distinct event for every
    interaction, as in data.

    Each overlaid interaction is a library event placed at its own vertex
    z ~ N(0, sigma_z), rotated by a random azimuth and mirrored in z with
    probability 1/2 (symmetries of pp collisions), which makes repeats of the
    same library event look different in the detector.
    """

    def __init__(self, generator: PythiaGenerator, size: int, reuse: int = 0, seed: int = 0) -> None:
        self.generator = generator
        self.size = size
        self.reuse = reuse
        self.refreshed = 0  # library events replaced by new ones so far
        self.generated = 0  # minimum-bias events generated so far (library and replacements)
        self.generation_seconds = 0.0  # time spent generating them
        self._rng = np.random.default_rng(seed)  # the order of use (reuse > 0), independent of the hard events
        self._fill(size)

    def _fill(self, size: int) -> None:
        """A library of ``size`` new events (and, with ``reuse``, a new random order of use)."""
        t0 = time.perf_counter()
        self.events = [self._next_event() for _ in range(size)]
        self.size = size
        self._flatten()
        if self.reuse > 0:
            self._order = self._rng.permutation(np.repeat(np.arange(size), self.reuse))
            self._cursor = 0
        self.generation_seconds += time.perf_counter() - t0

    def _take(self, n: int) -> np.ndarray:
        """The library slots of the next ``n`` interactions in the order of use (``reuse > 0``); a new library when
        fewer than ``n`` remain (the unused rest, a random subset, is discarded)."""
        if self._cursor + n > len(self._order):
            self.refreshed += self.size
            self._fill(max(self.size, -(-n // self.reuse)))
        which = self._order[self._cursor : self._cursor + n]
        self._cursor += n
        return which

    def _next_event(self) -> dict[str, np.ndarray]:
        self.generator.next_raw()
        self.generated += 1
        p = self.generator.extract(with_truth=False).particles
        vis = p["kind"] == KIND_VISIBLE
        return {k: v[vis] for k, v in p.items()}

    def _flatten(self) -> None:
        self.offsets = np.zeros(self.size + 1, dtype=np.int64)
        np.cumsum([len(e["px"]) for e in self.events], out=self.offsets[1:])
        self.particles = {k: np.concatenate([e[k] for e in self.events]) for k in PARTICLE_FIELDS}

    def refresh(self, rng: np.random.Generator, n: int) -> None:
        """Replace ``n`` library events (distinct, chosen at random) by newly generated ones: with a refresh after
        every chunk, a long job overlays many more distinct minimum-bias events than the library holds."""
        n = min(n, self.size)
        if n <= 0:
            return
        for slot in rng.choice(self.size, size=n, replace=False):
            self.events[int(slot)] = self._next_event()
        self.refreshed += n
        self._flatten()

    def overlay(self, rng: np.random.Generator, mu: float, sigma_z: float) -> tuple[dict[str, np.ndarray], int]:
        """Particles of Poisson(mu) pileup interactions; returns (flat arrays, number of interactions)."""
        n_pu = int(rng.poisson(mu)) if mu > 0 else 0
        if n_pu == 0:
            return {k: v[:0] for k, v in self.particles.items()}, 0
        which = rng.integers(0, self.size, n_pu) if self.reuse == 0 else self._take(n_pu)
        z0 = rng.normal(0.0, sigma_z, n_pu)
        rot = rng.uniform(-math.pi, math.pi, n_pu)
        flip = np.where(rng.random(n_pu) < 0.5, -1.0, 1.0)
        starts = self.offsets[which]
        lens = self.offsets[which + 1] - starts
        owner = np.repeat(np.arange(n_pu), lens)
        idx = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
        out = {k: v[idx] for k, v in self.particles.items()}
        c, s, f = np.cos(rot[owner]), np.sin(rot[owner]), flip[owner]
        for a, b in (("px", "py"), ("vx", "vy")):
            x, y = out[a], out[b]
            out[a], out[b] = c * x - s * y, s * x + c * y
        out["pz"] = out["pz"] * f
        out["vz"] = out["vz"] * f + z0[owner]
        return out, n_pu
