"""e2e-eval FILE...: ROC curves, AUC, rejection and misID of the taggers in tagged outputs (friend trees).

The truth (``Jet_label``, ``Jet_pt``, ``Jet_gen_pt``) is read from the input files the tagged file records in
its ``e2e_products`` provenance (or ``--input``), after checking that both have the same event ids in the
same order. Jets: truth tau (label 1) vs QCD (label 0) with a generator match, in the pT window.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dataformats.schema import open_root_file
from e2e.cli.common import run_main
from e2e.errors import E2EError

IDS = ("run", "luminosityBlock", "event")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="e2e-eval", description=__doc__)
    p.add_argument("files", nargs="+", metavar="FILE", help="tagged outputs of e2e-run (friend trees)")
    p.add_argument("--input", nargs="+", metavar="HITS", help="the input hits files (default: from the provenance)")
    p.add_argument("--signal", default="tau", help="score name of the signal class (default tau)")
    p.add_argument("--pt", nargs=2, type=float, default=[20.0, 100.0], metavar=("MIN", "MAX"), help="jet pT window")
    p.add_argument("--pt-bins", nargs="+", type=float, default=[20.0, 30.0, 50.0, 100.0], help="pT bin edges")
    p.add_argument("--plot", help="ROC plot file (default: <first FILE>_roc.png)")
    p.add_argument("--json", help="also write the numbers as JSON here")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _read_tagged(path: str, signal: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str]]:
    """(ids, scores per tagger label, input files from the provenance) of one tagged file."""
    with open_root_file(path) as f:
        if "Events" not in f:
            raise E2EError(f"{path}: no tree Events (is it an e2e-run output?)")
        prov = json.loads(str(f["e2e_products"])) if "e2e_products" in f else {}
        taggers = [tag for tag, p in prov.get("products", {}).items() if p.get("type") == "TagScores"]
        tree = f["Events"]
        branches = [f"Jet_{tag.replace(':', '_')}_{signal}" for tag in taggers]
        missing = [b for b in branches if b not in tree.keys()]
        if not taggers or missing:
            found = ", ".join(taggers) or "none"
            raise E2EError(f"{path}: no tagger scores '{signal}' found (tagged products: {found})")
        arrays = tree.arrays([*IDS, *branches], library="np")
    files = prov.get("process", {}).get("source", {}).get("files", [])
    scores = {tag: np.concatenate(arrays[b]) if len(arrays[b]) else np.zeros(0) for tag, b in zip(taggers, branches,
                                                                                                  strict=True)}
    return {k: arrays[k] for k in IDS}, scores, files


def _read_truth(files: list[str], n_events: int, ids: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    import uproot

    from e2e.io.source import expand_files

    out: dict[str, list[np.ndarray]] = {}
    remaining = n_events
    for path in expand_files(files, where):
        if remaining <= 0:
            break
        with uproot.open(path) as f:
            t = f["Events"]
            missing = [b for b in ("Jet_label", "Jet_pt", "Jet_gen_pt") if b not in t.keys()]
            if missing:
                raise E2EError(f"{path}: no truth branch {missing[0]} (the input of e2e-eval must be a simulated "
                               "hits file; give it with --input)")
            a = t.arrays([*IDS, "Jet_label", "Jet_pt", "Jet_gen_pt"], entry_stop=remaining, library="ak")
        remaining -= len(a)
        for k in a.fields:
            out.setdefault(k, []).append(a[k])
    import awkward as ak

    truth = {k: ak.concatenate(v) for k, v in out.items()}
    for k in IDS:
        if len(truth[k]) != n_events or not np.array_equal(ak.to_numpy(truth[k]), ids[k]):
            raise E2EError(f"{where}: the tagged file and its input ({', '.join(files)}) do not have the same "
                           f"events in the same order ({k} differs); give the right --input")
    return {k: ak.to_numpy(ak.flatten(truth[k])) for k in ("Jet_label", "Jet_pt", "Jet_gen_pt")}


def evaluate(files: list[str], inputs: list[str] | None, signal: str, pt: tuple[float, float],
             pt_bins: list[float]) -> dict[str, Any]:
    from training.metrics import summary

    results: dict[str, Any] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for path in files:
        ids, scores, prov_files = _read_tagged(path, signal)
        truth = _read_truth(inputs or prov_files, len(ids["event"]), ids, path)
        label, jpt, gen = truth["Jet_label"], truth["Jet_pt"], truth["Jet_gen_pt"]
        base = (label <= 1) & (gen > 0)
        for tag, s in scores.items():
            name = tag if len(files) == 1 else f"{Path(path).stem}:{tag}"
            sel = base & (jpt > pt[0]) & (jpt < pt[1])
            res = {"all": summary(s[sel & (label == 1)], s[sel & (label == 0)])}
            for lo, hi in zip(pt_bins[:-1], pt_bins[1:], strict=True):
                m = base & (jpt >= lo) & (jpt < hi)
                res[f"{lo:g}-{hi:g}"] = summary(s[m & (label == 1)], s[m & (label == 0)])
            results[name] = res
            curves[name] = (s[sel & (label == 1)], s[sel & (label == 0)])
    return {"results": results, "curves": curves}


def table(results: dict[str, Any], pt: tuple[float, float]) -> list[str]:
    lines = [f"{'tagger':<22} {'pT [GeV]':<10} {'AUC':>16} {'misID@60%':>16} {'1/eB@0.3':>9} {'@0.5':>8} "
             f"{'@0.6':>8} {'@0.7':>8} {'tau/QCD':>12}"]
    for name, res in results.items():
        for bin_name, m in res.items():
            label = f"{pt[0]:g}-{pt[1]:g}" if bin_name == "all" else bin_name
            lines.append(
                f"{name:<22} {label:<10} {m['auc']:8.4f}+-{m['auc_error']:.4f} "
                f"{m.get('misid_at_0.6', float('nan')):8.4f}+-{m.get('misid_at_0.6_error', float('nan')):.4f} "
                f"{m['rejection_at_0.3']:9.1f} {m['rejection_at_0.5']:8.1f} {m['rejection_at_0.6']:8.1f} "
                f"{m['rejection_at_0.7']:8.1f} {m['n_signal']:>5}/{m['n_background']:<6}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from training.train import roc_plot

        out = evaluate(args.files, args.input, args.signal, tuple(args.pt), list(args.pt_bins))
        print("\n".join(table(out["results"], tuple(args.pt))))
        plot = Path(args.plot) if args.plot else Path(args.files[0]).with_name(Path(args.files[0]).stem + "_roc.png")
        roc_plot(plot, out["curves"])
        print(f"ROC curves: {plot}")
        if args.json:
            Path(args.json).write_text(json.dumps(out["results"], indent=1, default=float))
        return 0

    return run_main("e2e-eval", body, args.debug)


if __name__ == "__main__":
    sys.exit(main())
