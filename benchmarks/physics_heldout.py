"""Physics table: tau taggers on held-out samples per pileup condition and per background, side by side.

Every model tags the same jets of each held-out file (process_configs/generate_heldout_mu{0,40,60}.yaml: Z->tautau
signal, QCD-dijet and Z->qq backgrounds, new seeds) through the same producers and taggers as e2e-run. Selected
jets: 20 < pT < 100 GeV with a generator match; signal Jet_label 1, background Jet_label 0 of the QCD-dijet
(luminosityBlock 2) or Z->qq (luminosityBlock 3) events. Printed per (file, background, model): AUC +- DeLong
error, misID at 60 % tau efficiency +- binomial error, and per file the paired AUC differences between models
(same jets, bootstrap error over jets). Then, at each model's 60 % working point (threshold from all selected
tau jets of the file): the tau efficiency per CMS decay mode (Jet_decay_mode 0, 1, 2, 10, 11) and, per jet pT
bin, the tau efficiency, the misID and the AUC in the bin.

    python benchmarks/physics_heldout.py output/heldout/mixed_mu40.root [...] \
        [--model NAME=KIND:PATH ...] [--option NAME:KEY=VALUE ...] [--max-events N] [--json out.json]

KIND is gnn-hits (HitGraphProducer, the new tau_gnn), gnn-pixels (JetGraphProducer window 63, the earlier
tau_gnn), cnn (JetFrameProducer, 8 channels) or shapes (JetShapeProducer).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
sys.path.insert(0, str(REPO))

from e2e.config import load_process, with_inputs  # noqa: E402
from e2e.process import Process  # noqa: E402
from taggers.metrics import auc, summary  # noqa: E402


def _module(config: str, label: str) -> dict[str, Any]:
    """The producer block ``label`` of a shipped process configuration (the settings its model was trained with)."""
    return dict(yaml.safe_load((REPO / "process_configs" / config).read_text())["modules"][label])


#: kind -> (producer label, producer block, tagger type, the tagger's product parameter)
PRODUCERS: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "gnn-hits": ("hitGraphs", _module("tau_gnn.yaml", "hitGraphs"), "GNNTagger", "graphs"),
    "gnn-pixels": (  # the producer of the earlier tau_gnn (before issue 13), which no shipped config runs now
        "jetGraphs",
        {
            "type": "JetGraphProducer",
            "channels": ["track_pt", "track_d0", "track_dz", "ecal", "hcal"],
            "window": 63,
            "hcal_upsample": False,
            "thresholds": {"ecal": 0.2},
            "k": 16,
        },
        "GNNTagger",
        "graphs",
    ),
    "cnn": ("jetFrames", _module("tau_cnn.yaml", "jetFrames"), "CNNTagger", "frames"),
    "shapes": ("jetShapes", _module("tau_gnn.yaml", "jetShapes"), "ShapeTagger", "shapes"),
}
BACKGROUNDS = {"QCD dijets": 2, "Z->qq": 3}
DECAY_MODES = {0: "1-prong", 1: "1-prong + pi0", 2: "1-prong + 2 pi0", 10: "3-prong", 11: "3-prong + pi0"}
PT_BINS = ((20, 30), (30, 50), (50, 100))


def scores(
    path: str, models: dict[str, tuple[str, str]], max_events: int, options: dict[str, dict[str, Any]] | None = None
) -> tuple[dict[str, np.ndarray], dict]:
    """Tau scores of every jet of ``path`` for each model (its tagger block updated by ``options[name]``), and the
    jets' truth."""
    modules: dict[str, Any] = {}
    for name, (kind, model) in models.items():
        label, block, tagger, key = PRODUCERS[kind]
        modules[label] = block
        extra = (options or {}).get(name, {})
        modules[f"tag_{name}"] = {"type": tagger, key: label, "model": model, "device": "cpu", **extra}
    modules = with_inputs(modules, {p[0]: p[1] for p in PRODUCERS.values()})  # hitGraphs reads jetShapes' shapes
    data = {
        "source": {"files": [path], "step_size": 500, "max_events": max_events},
        "modules": modules,
        "outputs": [{"file": "unused.root", "keep": [f"tag_{n}" for n in models]}],
    }
    out: dict[str, list[np.ndarray]] = {n: [] for n in models}
    fields = ("pt", "label", "gen_pt", "decay_mode")
    truth: dict[str, list[np.ndarray]] = {k: [] for k in (*fields, "lumi")}
    for batch in Process(load_process(data), extra_fields={"Jet": fields}).iter_batches():
        jets = batch.get("source:Jet")
        for n in models:
            out[n].append(batch.get(f"tag_{n}").column("tau"))
        for k in fields:
            truth[k].append(jets[k])
        truth["lumi"].append(batch.ids["luminosityBlock"][jets.event_index()])
    return {n: np.concatenate(v) for n, v in out.items()}, {k: np.concatenate(v) for k, v in truth.items()}


def paired_auc_difference(sa, sb, sig, bkg, n_boot: int = 200, seed: int = 1) -> tuple[float, float]:
    """AUC(a) - AUC(b) on the same jets, and its bootstrap standard error (jets resampled)."""
    rng = np.random.default_rng(seed)
    i_s, i_b = np.flatnonzero(sig), np.flatnonzero(bkg)
    diff = auc(sa[i_s], sa[i_b])[0] - auc(sb[i_s], sb[i_b])[0]
    boots = []
    for _ in range(n_boot):
        s, b = rng.choice(i_s, len(i_s)), rng.choice(i_b, len(i_b))
        boots.append(auc(sa[s], sa[b])[0] - auc(sb[s], sb[b])[0])
    return diff, float(np.std(boots))


def working_point_report(
    name: str, score: np.ndarray, t: dict[str, np.ndarray], sig: np.ndarray, bkg: np.ndarray
) -> dict[str, Any]:
    """Tau efficiency per decay mode and (efficiency, misID, AUC) per pT bin at the 60 % working point of
    ``score`` (the threshold that keeps 60 % of all selected tau jets); printed and returned."""
    cut = float(np.quantile(score[sig], 0.4))
    modes = {}
    for mode, what in DECAY_MODES.items():
        m = sig & (t["decay_mode"] == mode)
        if m.any():
            eff = float(np.mean(score[m] > cut))
            modes[what] = {"efficiency": eff, "error": float(np.sqrt(eff * (1 - eff) / m.sum())), "jets": int(m.sum())}
    bins = {}
    for lo, hi in PT_BINS:
        in_bin = (t["pt"] >= lo) & (t["pt"] < hi)
        s, b = sig & in_bin, bkg & in_bin
        if s.any() and b.any():
            bins[f"{lo}-{hi}"] = {
                "efficiency": float(np.mean(score[s] > cut)),
                "misid": float(np.mean(score[b] > cut)),
                "auc": auc(score[s], score[b])[0],
                "tau_jets": int(s.sum()),
                "background_jets": int(b.sum()),
            }
    per_mode = (f"{k} {100 * v['efficiency']:.1f} +- {100 * v['error']:.1f} % ({v['jets']})" for k, v in modes.items())
    print(f"    {name}: tau efficiency at the 60 % point per decay mode: " + ", ".join(per_mode))
    per_bin = (f"{k}: {100 * v['efficiency']:.1f} / {100 * v['misid']:.2f} % / {v['auc']:.4f}" for k, v in bins.items())
    print(f"    {name}: per pT bin (GeV) eff / misID / AUC: " + "; ".join(per_bin))
    return {"decay_modes": modes, "pt_bins": bins}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", help="held-out hits files")
    p.add_argument("--model", action="append", default=[], help="NAME=KIND:PATH (default: the zoo's three taggers)")
    p.add_argument("--max-events", type=int, default=-1, help="events per file (-1: all)")
    p.add_argument("--json", help="write the table as JSON here")
    p.add_argument("--scores", help="also read/write per-jet scores in this directory (NAME.npz per file), so models "
                   "tagged in separate runs are compared on the same jets")  # fmt: skip
    p.add_argument("--pairs", nargs="*", default=[], metavar="A:B",
                   help="paired AUC differences to print (default: consecutive models)")  # fmt: skip
    p.add_argument("--option", action="append", default=[], metavar="NAME:KEY=VALUE",
                   help="a tagger parameter of model NAME (e.g. bf16:precision=bf16; VALUE read as YAML)")  # fmt: skip
    args = p.parse_args()
    default = ["tau_gnn=gnn-hits:zoo:tau_gnn", "tau_cnn=cnn:zoo:tau_cnn", "tau_shapes=shapes:zoo:tau_shapes"]
    specs = args.model or default
    models = {s.split("=", 1)[0]: tuple(s.split("=", 1)[1].split(":", 1)) for s in specs}
    options: dict[str, dict[str, Any]] = {}
    for opt in args.option:
        name, _, setting = opt.partition(":")
        key, eq, value = setting.partition("=")
        if name not in models or not key or not eq:
            p.error(f"--option {opt}: expected NAME:KEY=VALUE with NAME one of {', '.join(models)}")
        options.setdefault(name, {})[key] = yaml.safe_load(value)
    table: list[dict[str, Any]] = []
    for path in args.files:
        sc, t = scores(path, models, args.max_events, options)  # type: ignore[arg-type]
        if args.scores:
            d = Path(args.scores)
            d.mkdir(parents=True, exist_ok=True)
            for n, v in sc.items():
                np.savez(d / f"{Path(path).stem}.{n}.npz", score=v, **t)
            for f in sorted(d.glob(f"{Path(path).stem}.*.npz")):
                n = f.name.split(".")[-2]
                if n not in sc:
                    z = np.load(f)
                    if all(np.array_equal(z[k], t[k]) for k in t):  # the same jets, in the same order
                        sc[n] = z["score"]
        base = (t["gen_pt"] > 0) & (t["pt"] > 20) & (t["pt"] < 100)
        sig = base & (t["label"] == 1)
        for bkg_name, lumi in BACKGROUNDS.items():
            bkg = base & (t["label"] == 0) & (t["lumi"] == lumi)
            if not bkg.any():
                continue
            print(f"\n{Path(path).name}, background {bkg_name}: {int(sig.sum())} tau / {int(bkg.sum())} jets")
            for n in sc:
                m = summary(sc[n][sig], sc[n][bkg])
                print(
                    f"  {n:14s} AUC {m['auc']:.4f} +- {m['auc_error']:.4f}   misID@60% "
                    f"{100 * m['misid_at_0.6']:.2f} +- {100 * m['misid_at_0.6_error']:.2f} %"
                )
                table.append({"file": Path(path).name, "background": bkg_name, "model": n, **m})
            for n in sc:
                table.append({"file": Path(path).name, "background": bkg_name, "model": n, "working_point":
                              working_point_report(n, sc[n], t, sig, bkg)})  # fmt: skip
            names = list(sc)
            pairs = [tuple(x.split(":", 1)) for x in args.pairs] or list(zip(names[:-1], names[1:], strict=True))
            for a, b in pairs:
                if a not in sc or b not in sc:
                    continue
                d, e = paired_auc_difference(sc[a], sc[b], sig, bkg)
                print(f"  AUC({a}) - AUC({b}) = {d:+.4f} +- {e:.4f} (paired, {d / max(e, 1e-12):.1f} sigma)")
                table.append({"file": Path(path).name, "background": bkg_name, "paired": [a, b], "diff": d, "error": e})
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
