"""e2e-eval FILE...: ROC curves, AUC, rejection and misID of the taggers in tagged outputs (friend trees).

The truth (``Jet_label``, ``Jet_pt``, ``Jet_gen_pt``) is read from the input files the tagged file records in
its ``e2e_products`` provenance (or ``--input``), after checking that both have the same event ids in the
same order. Jets: truth tau (label 1) vs QCD (label 0) with a generator match, in the pT window. Taggers with
several heads (multi-class, decay mode, mass regression) also get each head's metrics and figure: confusion
matrices, response and resolution per pT bin.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataformats.schema import JET_LABELS, open_root_file, reading, tree_class, zipped_field, zipped_names
from e2e.cli.common import Parser, console_script, nonempty, output_tree, run_main
from e2e.errors import E2EError

IDS = ("run", "luminosityBlock", "event")


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="e2e-eval", description=__doc__)
    p.add_argument("files", nargs="+", metavar="FILE", help="tagged outputs of e2e-run (friend trees)")
    p.add_argument("--input", nargs="+", metavar="HITS", help="the input hits files (default: from the provenance)")
    p.add_argument("--signal", default="tau", help="score name of the signal class (default tau)")
    p.add_argument(
        "--pt",
        nargs=2,
        type=float,
        default=[20.0, 100.0],
        metavar=("MIN", "MAX"),
        help="jet pT window of the ROC curves and classification heads; regression heads: every jet above MIN, "
        "reported per pT bin",
    )
    p.add_argument("--pt-bins", nargs="+", type=float, default=[20.0, 30.0, 50.0, 100.0], help="pT bin edges")
    p.add_argument(
        "--head-labels",
        nargs="+",
        type=int,
        metavar="LABEL",
        help="head metrics (confusion, response) only over jets with these Jet_label values, e.g. 4 for top jets",
    )
    p.add_argument("--plot", help="performance plot file (default: <first FILE>_roc.png), one panel per pT bin")
    p.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="TEXT",
        help="a line written on the plot about the sample, e.g. 'Z->tautau + QCD, <mu> = 40' (repeatable)",
    )
    p.add_argument("--bootstrap", type=int, default=200, metavar="N", help="bootstrap replicas of the bands")
    p.add_argument("--working-point", type=float, default=0.6, metavar="EFF", help="signal efficiency marked")
    p.add_argument(
        "--json",
        help="also write the numbers as JSON here (null: a figure undefined, as in a pT bin without jets of a class, "
        "or unbounded, as a rejection where no background jet passes)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _provenance(f: Any, path: str) -> dict[str, Any]:
    with reading(path, "its e2e_products provenance"):
        text = str(f["e2e_products"]) if "e2e_products" in f else None
    if text is None:
        raise E2EError(
            f"{path}: no e2e_products provenance: not an output of e2e-run (e2e-eval reads the tagged friend trees "
            "e2e-run writes, and finds their inputs from it)"
        )
    try:
        prov = json.loads(text)
    except ValueError:
        raise E2EError(f"{path}: its e2e_products provenance is not JSON (is it an e2e-run output?)") from None
    _check_provenance(prov, path)
    return prov


def _check_provenance(prov: Any, path: str) -> None:
    """The parts of the provenance that e2e-eval reads have the types e2e-run writes (else one line)."""

    def bad(what: str, expected: str) -> E2EError:
        return E2EError(
            f"{path}: its e2e_products provenance has {what} that is not {expected} (is it an e2e-run output?)"
        )

    if not isinstance(prov, dict):
        raise bad(f"a {type(prov).__name__} at the top", "an object")
    products = prov.get("products", {})
    if not isinstance(products, dict) or not all(isinstance(v, dict) for v in products.values()):
        raise bad("'products'", "an object of objects (one per product)")
    for key in ("inputs", "inputs_relative_to_output"):
        value = prov.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad(f"'{key}'", "a list of file names")
    process = prov.get("process", {})
    source = process.get("source", {}) if isinstance(process, dict) else None
    if not isinstance(source, dict):
        raise bad("'process.source'", "an object (the job's source configuration)")
    files = source.get("files", [])
    if not isinstance(files, (list, str)) or not all(isinstance(f, str) for f in files):
        raise bad("'process.source.files'", "a file name or a list of them")
    skipped = prov.get("skipped_entries") or []
    keys = {"file", "entry_start", "entry_stop"}
    if not isinstance(skipped, list) or not all(isinstance(e, dict) and keys <= set(e) for e in skipped):
        raise bad("'skipped_entries'", "a list of {file, entry_start, entry_stop}")


def read_provenance(path: str) -> dict[str, Any]:
    """The ``e2e_products`` provenance of a tagged file."""
    with open_root_file(path) as f:
        return _provenance(f, path)


@dataclass
class Tagged:
    """What e2e-eval reads from a tagged file: event ids and nJet, the signal score of every tagger, and the
    outputs of the taggers with several heads (taggers.heads), and its provenance (``e2e_products``)."""

    ids: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    heads: dict[str, tuple[list[Any], np.ndarray]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    #: the jets' pT as the tagged file holds them (written by default: jet_kinematics), None where it has not
    jet_pt: np.ndarray | None = None


def _read_tagged(path: str, signal: str) -> Tagged:
    """The ids, scores and head outputs of one tagged file."""
    from taggers.heads import outputs_of, parse_heads

    with open_root_file(path) as f:
        prov = _provenance(f, path)
        name = output_tree(f, path, prov)
        products = prov.get("products", {})
        taggers = [tag for tag, p in products.items() if p.get("type") == "TagScores"]
        with reading(f"{path}:{name}"):
            tree = f[name]
            keys = set(tree.keys())
            entries = int(tree.num_entries)
        # every tagger with a score named `signal`; a tagger with heads and no such score (a regression) has
        # only its head metrics
        named = {tag: f"Jet_{tag.replace(':', '_')}_{signal}" for tag in taggers}
        with_score = {t: b for t, b in named.items() if b in keys}
        branches = list(with_score.values())
        missing = [b for t, b in named.items() if b not in keys and "heads" not in products[t]]
        if not taggers or missing or not (branches or any("heads" in products[t] for t in taggers)):
            found = ", ".join(taggers) or "none"
            raise E2EError(f"{path}: no tagger scores '{signal}' found (tagged products: {found})")
        if entries == 0:
            raise E2EError(f"{path}: the tree {name} has 0 entries: no jets to evaluate")
        missing_ids = [b for b in (*IDS, "nJet") if b not in keys]
        if missing_ids:
            raise E2EError(f"{path}: no branch '{missing_ids[0]}' (is it an e2e-run output?)")
        kinematics = ["Jet_pt"] if "Jet_pt" in keys else []  # (jet_kinematics: the jets' pT, to check the input)
        with reading(f"{path}:{name}", "the tree data"):
            arrays = tree.arrays([*IDS, "nJet", *branches, *kinematics], library="np")
        n_jet = np.asarray(arrays["nJet"])
        heads: dict[str, tuple[list[Any], np.ndarray]] = {}
        for tag in taggers:
            if "heads" not in products[tag]:
                continue
            parsed = parse_heads(products[tag]["heads"], f"{path}: e2e_products.{tag}.heads", recorded=True)
            names = [f"Jet_{tag.replace(':', '_')}_{o}" for o in outputs_of(parsed)]
            missing = [b for b in names if b not in keys]
            if missing:
                raise E2EError(f"{path}: tagger {tag} has heads but no branch {missing[0]}")
            with reading(f"{path}:{name}", "the tree data"):
                columns = tree.arrays(names, library="np")
            heads[tag] = (parsed, np.stack([_per_jet(columns[b], n_jet, b, path) for b in names], axis=1))
    scores = {tag: _per_jet(arrays[b], n_jet, b, path) for tag, b in with_score.items()}
    for tag, values in [*scores.items(), *((t, h[1]) for t, h in heads.items())]:
        bad = ~np.isfinite(values)
        if bad.any():  # an AUC of NaN scores is no measure: say so instead of printing one
            n = int(np.count_nonzero(bad.reshape(len(values), -1).any(axis=1)))
            raise E2EError(
                f"{path}: tagger {tag} has NaN or infinite scores for {n} of {len(values)} jets (the model's output; "
                "its run counted them): nothing to evaluate"
            )
    pt = _per_jet(arrays["Jet_pt"], n_jet, "Jet_pt", path) if kinematics else None
    return Tagged({k: arrays[k] for k in (*IDS, "nJet")}, scores, heads, prov, pt)


def _per_jet(column: np.ndarray, n_jet: np.ndarray, branch: str, path: str) -> np.ndarray:
    """A score branch as one flat value per jet, checked against ``nJet`` entry by entry (a branch whose values
    are spread over the entries otherwise than the jets would pair every later score with another jet)."""
    if column.dtype != object:
        raise E2EError(
            f"{path}: branch {branch} is not one value per jet ({column.dtype} per entry; e2e-run writes a "
            "variable-length float per jet, nJet of them per entry)"
        )
    counts = np.fromiter((len(v) for v in column), np.int64, len(column))
    wrong = np.flatnonzero(counts != n_jet)
    if wrong.size:
        e = int(wrong[0])
        raise E2EError(
            f"{path}: branch {branch} has {counts[e]} values in entry {e}, where nJet is {int(n_jet[e])} "
            f"({wrong.size} entries differ): its scores are not one per jet"
        )
    values = np.concatenate(column) if len(column) else np.zeros(0, np.float32)
    if values.ndim != 1:
        raise E2EError(f"{path}: branch {branch} is not one value per jet (arrays of {values.shape[1:]} per jet)")
    return values


def input_files(path: str, prov: dict[str, Any]) -> list[str]:
    """The hits files a tagged file was made from, found from its provenance.

    Each input is looked for relative to the tagged file's directory first (input and output moved
    together), then at the recorded absolute path, then as recorded (relative to where e2e-run ran).
    """
    here = Path(path).resolve().parent
    absolute = list(prov.get("inputs", []))
    relative = list(prov.get("inputs_relative_to_output", []))
    if not absolute:  # written before inputs were recorded: only the configured source.files
        given = prov.get("process", {}).get("source", {}).get("files", [])  # (types checked by _check_provenance)
        given = [given] if isinstance(given, str) else list(given)
        absolute, relative = given, given
    if not absolute:
        raise E2EError(f"{path}: its provenance records no input file; give the hits file(s) with --input")
    found = []
    for i, recorded in enumerate(absolute):
        if "://" in recorded:  # remote (xrootd, http): as recorded
            found.append(recorded)
            continue
        rel = relative[i] if i < len(relative) else recorded
        tried = list(dict.fromkeys([str(here / rel), recorded, rel]))
        hit = next((t for t in tried if Path(t).is_file() or glob.has_magic(t) and glob.glob(t)), None)
        if hit is None:
            raise E2EError(
                f"{path}: its input {recorded} is not found (tried {', '.join(tried)}); it was moved or "
                "renamed: give the hits file(s) with --input"
            )
        found.append(hit)
    from e2e.io.source import expand_files

    return expand_files(found, f"{path}: inputs")


def skipped_ranges(prov: dict[str, Any], files: list[str], where: str) -> dict[int, list[tuple[int, int]]]:
    """Input index -> the entry ranges ``[start, stop)`` (stop -1: the whole file) that e2e-run skipped with
    --skip-bad-files (provenance ``skipped_entries``), for ``files`` given in the order of the recorded inputs."""
    entries = prov.get("skipped_entries") or []
    if not entries:
        return {}
    recorded = list(prov.get("inputs", []))
    if len(files) != len(recorded):
        raise E2EError(
            f"{where}: e2e-run skipped entries of its inputs (--skip-bad-files: {prov.get('skipped_units')}); give "
            f"its {len(recorded)} input file(s) in their order ({', '.join(recorded)}), not {len(files)}"
        )
    out: dict[int, list[tuple[int, int]]] = {}
    for e in entries:
        if e["file"] in recorded:  # (the given files are taken to be the recorded ones, in their order)
            out.setdefault(recorded.index(e["file"]), []).append((int(e["entry_start"]), int(e["entry_stop"])))
    return out


def _read_truth(
    files: list[str],
    ids: dict[str, np.ndarray],
    where: str,
    extra: tuple[str, ...] = (),
    skipped: dict[int, list[tuple[int, int]]] | None = None,
    source: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Jet truth of the input files, read as the job's ``source`` block read them (its ``tree``, and its
    ``branches``, ``prefixes`` and ``units`` for files with their own names and units), after checking they hold
    the tagged file's events and jets, in order; ``extra``: further Jet branches read where the files have them
    (the truth of heads); ``skipped``: the entries of each input that the tagged file lacks
    (:func:`skipped_ranges`), left out."""
    import awkward as ak

    from e2e.io.source import expand_files, file_branch_names

    source = source or {}
    given = source.get("tree")
    tree = given if isinstance(given, str) and given else "Events"
    mapping: dict[str, dict[str, Any]] = {
        k: dict(source[k]) if isinstance(source.get(k), dict) else {} for k in ("branches", "prefixes", "units")
    }
    names = file_branch_names(mapping["branches"], mapping["prefixes"], mapping["units"], "the job's source")
    units = {k: float(v) for k, v in mapping["units"].items()}

    n_events = len(ids["event"])
    out: dict[str, list[Any]] = {}
    remaining = n_events
    for index, path in enumerate(expand_files(files, where)):
        ranges = (skipped or {}).get(index, [])
        if remaining <= 0:
            break
        if any(stop < 0 for _, stop in ranges):  # the whole file was skipped (it could not be opened)
            continue
        with open_root_file(path) as f:
            with reading(path, "the file directory"):
                has_events = tree in f
            if not has_events:
                raise E2EError(f"{path}: no tree {tree} (the input of e2e-eval must be a simulated hits file)")
            with reading(f"{path}:{tree}"):
                t = f[tree]
                on_disk = set(t.keys())
                # an RNTuple of ak.zip-ed collections holds Jet.label: read as the job's source read it
                file_names = zipped_names(on_disk, names) if tree_class(f, path, tree) != "TTree" else names
                keys = {
                    b for b in (*IDS, "Jet_label", "Jet_pt", "Jet_gen_pt", *extra) if file_names.get(b, b) in on_disk
                }
                keys |= {"runId", "eventId"} & on_disk
            missing = [b for b in (*IDS, "Jet_label", "Jet_pt", "Jet_gen_pt") if b not in keys]
            if missing and {"runId", "eventId"} <= keys:
                raise E2EError(
                    f"{path}:{tree}: an MLAnalyzer RHTree, whose truth e2e-eval does not read (it reads the hits "
                    "tree's Jet_label and Jet_gen_pt): evaluate a job run on the hits files of these events"
                )
            if missing:
                raise E2EError(
                    f"{path}: no truth branch {missing[0]} (the input of e2e-eval must be a simulated "
                    "hits file; give it with --input)"
                )
            more = [b for b in extra if b in keys]
            stop = remaining + sum(hi - lo for lo, hi in ranges)
            wanted = [*IDS, "Jet_label", "Jet_pt", "Jet_gen_pt", *more]
            with reading(f"{path}:{tree}", "the tree data"):
                read = t.arrays([file_names.get(b, b) for b in wanted], entry_stop=stop, library="ak", how=dict)
            columns = {b: zipped_field(read, file_names.get(b, b)) for b in wanted}
            a = ak.zip(  # under the schema's names and units, as the job read them
                {b: columns[b] * units[b] if b in units else columns[b] for b in wanted}, depth_limit=1
            )
            if ranges:
                keep = np.ones(len(a), dtype=bool)
                for start, end in ranges:
                    keep[start:end] = False
                a = a[keep][:remaining]
        remaining -= len(a)
        for k in a.fields:
            out.setdefault(k, []).append(a[k])
    truth = {k: ak.concatenate(v) for k, v in out.items()} if out else {}
    for k in IDS:
        if k not in truth or len(truth[k]) != n_events or not np.array_equal(ak.to_numpy(truth[k]), ids[k]):
            raise E2EError(
                f"{where}: the tagged file and its input ({', '.join(files)}) do not have the same "
                f"events in the same order ({k} differs); give the right --input"
            )
    counts = ak.to_numpy(ak.num(truth["Jet_pt"], axis=1))
    bad = counts != ids["nJet"]
    if bad.any():
        e = int(np.argmax(bad))
        raise E2EError(
            f"{where}: the tagged file and its input ({', '.join(files)}) have the same events but "
            f"different jets (entry {e}: nJet {ids['nJet'][e]} tagged, {counts[e]} in the input); "
            "give the input it was made from with --input"
        )
    return {k: ak.to_numpy(ak.flatten(v)) for k, v in truth.items() if k.startswith("Jet_")}


def evaluate(
    files: list[str],
    inputs: list[str] | None,
    signal: str,
    pt: tuple[float, float],
    pt_bins: list[float],
    head_labels: list[int] | None = None,
) -> dict[str, Any]:
    """Metrics of every tagger in ``files``; truth from ``inputs`` or each file's recorded inputs; the head
    metrics over the jets with a Jet_label among ``head_labels`` when given."""
    from e2e.io.source import expand_files
    from taggers.metrics import summary

    results: dict[str, Any] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    bins: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    heads: dict[str, tuple[list[Any], dict[str, Any]]] = {}
    known = {name: label for label, name in JET_LABELS.items()}
    if known.get(signal, 1) != 1:
        raise E2EError(
            f"--signal {signal}: e2e-eval measures Jet_label 1 ({JET_LABELS[1]}) jets against Jet_label 0 "
            f"({JET_LABELS[0]}) jets; --signal names the tagger output that scores Jet_label 1 (default tau)"
        )
    names = _file_names(files)
    for path in files:
        tagged = _read_tagged(path, signal)
        ids, scores = tagged.ids, tagged.scores
        extra = HEAD_TRUTH if tagged.heads else ()
        prov = tagged.provenance
        sources = expand_files(inputs, "--input") if inputs else input_files(path, prov)
        source = prov.get("process", {}).get("source", {})  # (types checked by _check_provenance)
        truth = _read_truth(sources, ids, path, extra, skipped_ranges(prov, sources, path), source)
        label, jpt, gen = truth["Jet_label"], truth["Jet_pt"], truth["Jet_gen_pt"]
        _same_jets(tagged.jet_pt, jpt, path, sources)
        base = (label <= 1) & (gen > 0)
        for tag, values in tagged.heads.items():
            name = tag if len(files) == 1 else f"{names[path]}:{tag}"
            matched = (gen > 0) & (np.isin(label, head_labels) if head_labels else True)
            heads[name] = _head_metrics(values, truth, matched, (jpt > pt[0]) & (jpt < pt[1]), jpt > pt[0])
        sel = base & (jpt > pt[0]) & (jpt < pt[1])
        n_signal, n_background = int(np.count_nonzero(sel & (label == 1))), int(np.count_nonzero(sel & (label == 0)))
        if scores and not (n_signal and n_background):  # no AUC, no misID: nothing the table could say
            raise E2EError(
                f"{path}: {n_signal} signal (Jet_label 1) and {n_background} background (Jet_label 0) jets with a "
                f"generator match and {pt[0]:g} < pT < {pt[1]:g} GeV: the performance needs both; widen --pt or "
                "evaluate more events"
            )
        for tag, s in scores.items():
            name = tag if len(files) == 1 else f"{names[path]}:{tag}"
            res = {"all": summary(s[sel & (label == 1)], s[sel & (label == 0)])}
            for lo, hi in zip(pt_bins[:-1], pt_bins[1:], strict=True):
                m = base & (jpt >= lo) & (jpt < hi)
                res[f"{lo:g}-{hi:g}"] = summary(s[m & (label == 1)], s[m & (label == 0)])
            results[name] = res
            curves[name] = (s[sel & (label == 1)], s[sel & (label == 0)])
            for lo, hi in zip(pt_bins[:-1], pt_bins[1:], strict=True):
                m = base & (jpt >= lo) & (jpt < hi)
                bins.setdefault(f"{lo:g}-{hi:g}", {})[name] = (s[m & (label == 1)], s[m & (label == 0)])
    if head_labels and not heads:
        raise E2EError(
            f"--head-labels {' '.join(map(str, head_labels))}: no tagger of {', '.join(files)} has heads (the option "
            "chooses the jets of their head metrics)"
        )
    return {"results": results, "curves": curves, "bins": bins, "heads": heads}


def _file_names(files: list[str]) -> dict[str, str]:
    """How each tagged file is named in the table (its stem; its path where two have the same stem); the same file
    given twice is one line."""
    seen: dict[str, str] = {}
    for path in files:
        key = os.path.realpath(path)
        if key in seen:
            raise E2EError(f"{path}: given twice ({seen[key]} is the same file)")
        seen[key] = path
    stems = [Path(p).stem for p in files]
    return {p: s if stems.count(s) == 1 else p for p, s in zip(files, stems, strict=True)}


def _same_jets(tagged_pt: np.ndarray | None, input_pt: np.ndarray, path: str, inputs: list[str]) -> None:
    """The tagged file's jets (their pT, which e2e-run writes by default) are its input's: a file of other events
    under the same ids and jet counts (a sample generated again, its events in another order) is one line, not
    metrics of scores paired with other jets."""
    if tagged_pt is None:
        return
    differ = ~np.isclose(tagged_pt.astype(np.float64), input_pt.astype(np.float64), rtol=1e-6, atol=1e-6)
    if differ.any():
        j = int(np.argmax(differ))
        raise E2EError(
            f"{path}: its jets are not those of its input ({', '.join(inputs)}): jet {j} has pT {tagged_pt[j]:.6g} "
            f"GeV there and {input_pt[j]:.6g} here ({int(np.count_nonzero(differ))} of {len(differ)} jets differ; "
            "same event ids and jet counts); give the input it was made from with --input"
        )


#: Jet truth the head metrics read (decay mode, generator and reconstructed mass)
HEAD_TRUTH = ("Jet_decay_mode", "Jet_gen_mass", "Jet_mass")


def _head_metrics(
    tagged: tuple[list[Any], np.ndarray],
    truth: dict[str, np.ndarray],
    matched: np.ndarray,
    in_window: np.ndarray,
    above_min: np.ndarray,
) -> tuple[list[Any], dict[str, Any]]:
    """(heads, metrics per head) of one tagger over the generator-``matched`` jets of every label: a
    classification head's in the pT window, a regression head's above its lower edge (reported per pT bin)."""
    from training.heads import classification_metrics, regression_metrics

    heads, values = tagged
    out: dict[str, Any] = {}
    for h in heads:
        selected = matched & (in_window if h.type == "classification" else above_min)
        t = {k.removeprefix("Jet_"): v[selected] for k, v in truth.items()}
        if h.target not in t or any(k not in t for k in h.only):
            out[h.name] = {"skipped": f"the input has no Jet_{h.target} truth"}
        elif h.type == "classification":
            out[h.name] = classification_metrics(h, values[selected], t)
        else:
            baseline = t.get("mass") if h.target == "gen_mass" else None
            out[h.name] = regression_metrics(h, values[selected], t, baseline)
    return heads, out


def head_lines(heads: dict[str, tuple[list[Any], dict[str, Any]]]) -> list[str]:
    """The head metrics as printed: confusion matrices (fractions of each true class) and the response and
    resolution per pT bin."""
    lines = []
    for name, (specs, metrics) in heads.items():
        for h in specs:
            m = metrics[h.name]
            if "skipped" in m:
                lines.append(f"{name} head {h.name}: skipped ({m['skipped']})")
            elif h.type == "classification":
                lines += _confusion_lines(f"{name} head {h.name}", m)
            else:
                lines += _regression_lines(f"{name} head {h.name}", m)
    return lines


def _confusion_lines(title: str, m: dict[str, Any]) -> list[str]:
    lines = [
        f"{title}: {100 * m['accuracy']:.1f} % of {m['jets']} jets in the right class; rows: true class, "
        "columns: predicted (fraction of the true class)",
        "  " + " " * 10 + "".join(f"{c:>9}" for c in m["classes"]),
    ]
    for c, row in zip(m["classes"], m["confusion"], strict=True):
        n = max(sum(row), 1)
        lines.append(f"  {c:>10}" + "".join(f"{v / n:9.3f}" for v in row) + f"   ({sum(row)} jets)")
    if "at_tau_60" in m:
        rates = ", ".join(f"{c} {100 * v:.2f} %" for c, v in m["at_tau_60"].items())
        lines.append(f"  pass rate at the 60 % tau working point: {rates}")
    return lines


def _regression_lines(title: str, m: dict[str, Any]) -> list[str]:
    def rr(d: dict[str, Any]) -> str:
        err = f" +- {d['response_error']:.3f}" if "response_error" in d else ""
        return f"{d['response']:.3f}{err} / {d['resolution']:.3f}"

    base = f"; reconstructed {rr(m['baseline'])}" if "baseline" in m else ""
    lines = [
        f"{title}: response +- its error / resolution (median, IQR/2 of predicted/true) {rr(m['all'])} "
        f"({m['all']['jets']} jets){base}"
    ]
    from taggers.plots import regression_groups

    rows = []
    for kind, group in regression_groups(m).items():  # several kinds of jet: each with its own pT bins
        if kind:
            rows.append((f"{kind} jets", group))
        rows += [(f"{kind} pT {b} GeV".strip(), row) for b, row in group["pt_bins"].items()]
    for name, row in rows:
        extra = f" | reconstructed {rr(row['baseline'])}" if "baseline" in row else ""
        lines.append(f"  {name:>18}: {rr(row['model'])} ({row['model']['jets']} jets){extra}")
    return lines


def table(results: dict[str, Any], pt: tuple[float, float]) -> list[str]:
    lines = [
        f"{'tagger':<22} {'pT [GeV]':<10} {'AUC':>16} {'misID@60%':>16} {'1/eB@0.3':>9} {'@0.5':>8} "
        f"{'@0.6':>8} {'@0.7':>8} {'tau/QCD':>12}"
    ]
    for name, res in results.items():
        for bin_name, m in res.items():
            label = f"{pt[0]:g}-{pt[1]:g}" if bin_name == "all" else bin_name
            if not (m["n_signal"] and m["n_background"]):  # a pT bin without jets of a class: no figure to show
                missing = "signal" if not m["n_signal"] else "background"
                lines.append(
                    f"{name:<22} {label:<10} {'(no ' + missing + ' jets)':>34} {'':>9} {'':>8} {'':>8} {'':>8} "
                    f"{m['n_signal']:>5}/{m['n_background']:<6}"
                )
                continue
            lines.append(
                f"{name:<22} {label:<10} {m['auc']:8.4f}+-{m['auc_error']:.4f} "
                f"{m.get('misid_at_0.6', float('nan')):8.4f}+-{m.get('misid_at_0.6_error', float('nan')):.4f} "
                f"{m['rejection_at_0.3']:9.1f} {m['rejection_at_0.5']:8.1f} {m['rejection_at_0.6']:8.1f} "
                f"{m['rejection_at_0.7']:8.1f} {m['n_signal']:>5}/{m['n_background']:<6}"
            )
    return lines


#: most bootstrap replicas of the performance bands
MAX_BOOTSTRAP = 10_000


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from e2e.paths import atomic_file, check_output_file
        from taggers.metrics import json_finite, plot_format
        from taggers.plots import Panel, PlotText, confusion_figure, performance_figure, response_figure

        if not args.pt[0] < args.pt[1]:
            raise E2EError(f"--pt {args.pt[0]:g} {args.pt[1]:g}: expected MIN < MAX (GeV)")
        if not 2 <= args.bootstrap <= MAX_BOOTSTRAP:
            raise E2EError(
                f"--bootstrap {args.bootstrap}: expected 2 to {MAX_BOOTSTRAP:,} replicas (each holds a resampled ROC "
                "curve in memory; the bands change little beyond a few hundred)"
            )
        if not 0.0 < args.working_point < 1.0:
            raise E2EError(f"--working-point {args.working_point:g}: expected a signal efficiency in (0, 1)")
        if len(args.pt_bins) < 2 or np.any(np.isnan(args.pt_bins)) or np.any(np.diff(args.pt_bins) <= 0):
            raise E2EError(
                f"--pt-bins {' '.join(f'{b:g}' for b in args.pt_bins)}: expected at least two increasing edges (GeV)"
            )
        first = args.files[0]
        plot = nonempty(args.plot, "--plot") or str(Path(first).with_name(Path(first).stem + "_roc.png"))
        nonempty(args.json, "--json")
        inputs = [*args.files, *(args.input or [f for p in args.files for f in input_files(p, read_provenance(p))])]
        check_output_file(plot, inputs, "--plot")
        plot_format(plot)
        if args.json is not None:
            check_output_file(args.json, [*inputs, plot], "--json")
        out = evaluate(args.files, args.input, args.signal, tuple(args.pt), list(args.pt_bins), args.head_labels)
        if out["results"]:
            print("\n".join(table(out["results"], tuple(args.pt))))
        lo, hi = args.pt
        panels = [Panel(f"{lo:g} < $p_T$ < {hi:g} GeV", out["curves"])]
        panels += [Panel(f"{b.replace('-', ' < $p_T$ < ')} GeV", c) for b, c in out["bins"].items()]
        signal = r"$\tau_h$" if args.signal == "tau" else args.signal
        text = PlotText(
            selection=[
                "Pythia 8 + e2e fast detector simulation",
                "jets with a generator-jet match, pT as titled",
                f"signal: Jet_label 1 ({signal}), background: Jet_label 0",
            ],
            extra=args.label,
            signal=signal,
        )
        if out["results"]:
            numbers = performance_figure(plot, panels, text, args.working_point, args.bootstrap)
            for per_tagger, bin_name in zip(numbers, ["all", *out["bins"]], strict=True):
                for name, m in per_tagger.items():
                    out["results"][name][bin_name][f"misid_at_{args.working_point:g}_band"] = m["band"]
            print(f"performance plot: {plot} (misID vs {args.signal} efficiency, {len(panels)} panels)")
        if out["heads"]:
            print("\n".join(head_lines(out["heads"])))
        for name, (specs, metrics) in out["heads"].items():
            for h in specs:
                m = metrics[h.name]
                if "skipped" in m:
                    continue
                figure = Path(plot).with_name(f"{Path(plot).stem}_{name.replace(':', '_')}_{h.name}{Path(plot).suffix}")
                check_output_file(str(figure), inputs, f"--plot ({h.name} figure)")
                only = ", ".join(f"Jet_{k} in {v}" for k, v in h.only.items())
                head_text = PlotText(
                    selection=[
                        "Pythia 8 + e2e fast detector simulation",
                        "jets with a generator-jet match, "
                        + (f"{lo:g} < pT < {hi:g} GeV" if h.type == "classification" else f"pT > {lo:g} GeV"),
                        *([f"the head's jets: {only}"] if only else []),
                        *([f"selected: Jet_label in {args.head_labels}"] if args.head_labels else []),
                    ],
                    extra=args.label,
                    signal=signal,
                )
                if h.type == "classification":
                    confusion_figure(figure, m["confusion"], m["classes"], head_text, f"{name} {h.name}")
                else:
                    response_figure(figure, m, head_text, f"{name} {h.name}", h.target.replace("gen_", ""))
                print(f"{h.name} plot: {figure}")
                out["results"].setdefault(name, {}).setdefault("heads", {})[h.name] = m
        if args.json:
            with atomic_file(args.json) as target:
                target.tmp.write_text(json.dumps(json_finite(out["results"]), indent=1, default=float, allow_nan=False))
        return 0

    return run_main("e2e-eval", body, args.debug)


cli = console_script(main)


if __name__ == "__main__":
    cli()
