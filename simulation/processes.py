"""Physics processes that e2e-generate knows: Pythia 8 settings and the label of their jets.

Settings follow REFERENCE.md (Pythia 8 / pythia8mc). Leptonic tau decays are
switched off in the tau samples so every tau is hadronic.
"""

from __future__ import annotations

from dataclasses import dataclass

COMMON_SETTINGS = (
    "Next:numberCount = 0",
    "Print:quiet = on",
    # tau, B, D decay with displaced vertices; K0S, Lambda and longer-lived stay stable as a detector sees them
    "ParticleDecays:limitTau0 = on",
    "ParticleDecays:tau0Max = 10",
)


@dataclass(frozen=True)
class Process:
    """A named Pythia process: settings and the label of jets that no truth object claims."""

    name: str
    help: str
    settings: tuple[str, ...]
    uses_pt_hat: bool = False  # PhaseSpace:pTHatMin/Max from the config
    default_label: int = 0  # label of jets without a tau/top/e/gamma match (0 = QCD)


PROCESSES: dict[str, Process] = {
    p.name: p
    for p in (
        Process(
            "ztautau",
            "Z/gamma* -> tau tau, hadronic taus (mHat > 50 GeV)",
            (
                "WeakSingleBoson:ffbar2gmZ = on",
                "23:onMode = off",
                "23:onIfAny = 15",
                "PhaseSpace:mHatMin = 50",
                "15:offIfAny = 11 13",
            ),
        ),
        Process(
            "zprime_tautau",
            "Z'(1 TeV) -> tau tau, boosted hadronic taus",
            (
                "NewGaugeBoson:ffbar2gmZZprime = on",
                "Zprime:gmZmode = 3",
                "32:m0 = 1000",
                "32:onMode = off",
                "32:onIfAny = 15",
                "PhaseSpace:mHatMin = 500",
                "15:offIfAny = 11 13",
            ),
        ),
        Process("qcd", "QCD dijets (HardQCD:all) in a pTHat range", ("HardQCD:all = on",), uses_pt_hat=True),
        Process(
            "zqq",
            "Z -> q qbar (u, d, s, c, b): a quark-rich jet background",
            ("WeakSingleBoson:ffbar2gmZ = on", "23:onMode = off", "23:onIfAny = 1 2 3 4 5", "PhaseSpace:mHatMin = 50"),
        ),
        Process(
            "wjets",
            "W (-> e nu, mu nu) + jet: quark-enriched recoil jets (qg -> Wq, qqbar -> Wg) in a pTHat range",
            (
                "WeakBosonAndParton:qqbar2Wg = on",
                "WeakBosonAndParton:qg2Wq = on",
                "24:onMode = off",
                "24:onIfAny = 11 13",
            ),
            uses_pt_hat=True,
        ),
        Process(
            "zee",
            "Z/gamma* -> e e (mHat > 50 GeV): prompt electrons, jets of label 2",
            ("WeakSingleBoson:ffbar2gmZ = on", "23:onMode = off", "23:onIfAny = 11", "PhaseSpace:mHatMin = 50"),
        ),
        Process(
            "gammajet",
            "prompt photon + jet (qg -> q gamma, qqbar -> g gamma) in a pTHat range: photons, jets of label 3",
            ("PromptPhoton:qg2qgamma = on", "PromptPhoton:qqbar2ggamma = on"),
            uses_pt_hat=True,
        ),
        Process(
            "ttbar",
            "t tbar (gg, qqbar -> t tbar), all decays: b jets and light-quark jets; contained tops are label 4",
            ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on"),
        ),
        Process(
            "zprime_ttbar",
            "Z'(2 TeV) -> t tbar, boosted tops (E2E top-tagging benchmark)",
            (
                "NewGaugeBoson:ffbar2gmZZprime = on",
                "Zprime:gmZmode = 3",
                "32:m0 = 2000",
                "32:onMode = off",
                "32:onIfAny = 6",
                "PhaseSpace:mHatMin = 1000",
            ),
            default_label=0,
        ),
        Process("minbias", "inelastic minimum bias (SoftQCD:inelastic): pileup", ("SoftQCD:inelastic = on",)),
    )
}
