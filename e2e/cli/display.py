"""e2e-display HITS: draw what a tagger sees for one jet (its image channels and its graph) as a PNG.

The jet is chosen by ``--entry``/``--jet`` or by score: ``--tagged`` (an e2e-run output of the same events)
and ``--score`` (its branch, e.g. Jet_tauGNN_tau), ``--rank`` 0 for the highest-scoring jet, 1 for the next,
-1 for the lowest, optionally among jets of one truth ``--label``. The producers are the image and graph
producers of ``--config`` (by default the JetFrameProducer of process_configs/tau_cnn.yaml and the
HitGraphProducer of process_configs/tau_gnn.yaml, the inputs of the shipped taggers).

    e2e-display data/sample_tau_qcd.root --entry 3 --jet 0 -o jet.png
    e2e-display data/sample_tau_qcd.root --tagged output/tau_gnn.root --score Jet_tauGNN_tau --label qcd -o fake.png
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from e2e.cli.common import Parser, console_script, nonempty, output_tree, run_main
from e2e.errors import E2EError

REPO = Path(__file__).resolve().parents[2]
DRAWN = ("JetFrameProducer", "HitGraphProducer", "JetGraphProducer")
LABELS = {"qcd": 0, "tau": 1, "electron": 2, "photon": 3, "top": 4}
#: CMS tau decay modes (PI0: the neutral pion, written as TeX on the figure)
DECAY_MODES = {0: "1-prong", 1: "1-prong + PI0", 2: "1-prong + 2 PI0", 10: "3-prong", 11: "3-prong + PI0"}


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="e2e-display", description=__doc__)
    p.add_argument("hits", metavar="HITS", help="hits file (the input of e2e-run)")
    p.add_argument("-o", "--output", default="jet_display.png", help="picture to write (png, pdf, svg, ...)")
    p.add_argument("--entry", type=int, help="event (entry of the hits tree)")
    p.add_argument("--jet", type=int, help="jet of that event (default 0)")
    p.add_argument("--tagged", help="tagged e2e-run output of the same events, to choose the jet by score")
    p.add_argument("--score", help="score branch of --tagged, e.g. Jet_tauGNN_tau")
    p.add_argument("--rank", type=int, help="0: the highest score (default), 1: the next, -1: the lowest")
    p.add_argument("--label", choices=sorted(LABELS), help="choose among jets of this truth label (Jet_label)")
    p.add_argument("--config", help="take the image/graph producers from this process configuration")
    p.add_argument("--node-colour", help="colour graph nodes by this feature (default: the node type)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _producers(config: str | None) -> dict[str, dict[str, Any]]:
    """label -> block of every image/graph producer drawn, and of the modules they read (e.g. the JetShapeProducer
    whose shapes a HitGraphProducer takes as jet inputs)."""
    from e2e.config import with_inputs
    from e2e.yamlio import load_yaml_file

    configs = REPO / "process_configs"
    sources = [config] if config else [str(configs / "tau_cnn.yaml"), str(configs / "tau_gnn.yaml")]
    blocks: dict[str, dict[str, Any]] = {}
    for path in sources:
        data = load_yaml_file(path)
        modules = (data.get("modules") if isinstance(data, dict) else None) or {}
        drawn = {k: b for k, b in modules.items() if isinstance(b, dict) and b.get("type") in DRAWN}
        blocks.update(with_inputs(drawn, modules))
    if not blocks:
        raise E2EError(f"--config {config}: no {', '.join(DRAWN)} module to draw")
    return blocks


def _by_score(args: argparse.Namespace) -> tuple[int, int, str, tuple[int, ...], float | None]:
    """(entry, jet, score text, the entry's (run, luminosityBlock, event), the jet's pT in the tagged file or None)
    of the jet of rank ``--rank`` in ``--score`` of ``--tagged``."""
    import awkward as ak

    from dataformats.schema import SchemaError, inspect_file, open_root_file, reading, zipped_field

    if not args.score:
        raise E2EError("--tagged needs --score BRANCH (e.g. Jet_tauGNN_tau)")
    with open_root_file(args.tagged) as f:
        name = output_tree(f, args.tagged)
        with reading(f"{args.tagged}:{name}"):
            tree = f[name]
            keys = list(tree.keys())
        if args.score not in keys:
            scores = [k for k in keys if k.startswith("Jet_") and not k.startswith("Jet_gen")]
            raise E2EError(f"{args.tagged}: no branch {args.score} (score branches: {', '.join(scores) or 'none'})")
        missing = [k for k in _IDS if k not in keys]
        if missing:
            raise E2EError(f"{args.tagged}: no branch {missing[0]} (is it an e2e-run output?)")
        kinematics = ["Jet_pt"] if "Jet_pt" in keys else []  # (written by default: checked against the hits file)
        with reading(f"{args.tagged}:{name}", "the tree data"):
            arrays = tree.arrays([args.score, *_IDS, *kinematics], library="ak")
    score = arrays[args.score]
    if score.ndim != 2 or score.layout.purelist_depth != 2 or ak.to_numpy(ak.flatten(score)).dtype.kind not in "iuf":
        raise E2EError(f"{args.tagged}: branch {args.score} is {score.type}, expected one number per jet (a score)")
    counts = ak.to_numpy(ak.num(score, axis=1))
    flat = ak.to_numpy(ak.flatten(score)).astype(np.float64)
    entry_of = np.repeat(np.arange(len(counts)), counts)
    jet_of = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = np.ones(len(flat), dtype=bool)
    if args.label:
        try:  # (the file's own layout: an RNTuple of ak.zip-ed collections holds Jet.label)
            branch = inspect_file(args.hits, truth=True).names["Jet_label"]
        except SchemaError as err:
            raise SchemaError(f"{err} (--label needs a simulated hits file)") from None
        with open_root_file(args.hits) as f, reading(f"{args.hits}:Events", "the truth Jet_label"):
            read = f["Events"].arrays([branch], library="ak", entry_stop=len(counts), how=dict)
        labels = ak.to_numpy(ak.flatten(zipped_field(read, branch)))
        if len(labels) != len(flat):
            raise E2EError(f"{args.tagged} and {args.hits} do not have the same jets ({len(flat)} vs {len(labels)})")
        keep = labels == LABELS[args.label]
    candidates = np.flatnonzero(keep & np.isfinite(flat))
    if not len(candidates):
        raise E2EError(f"{args.tagged}: no jet with a score" + (f" and label {args.label}" if args.label else ""))
    order = candidates[np.argsort(-flat[candidates], kind="stable")]
    if not -len(order) <= args.rank < len(order):
        raise E2EError(f"--rank {args.rank}: {len(order)} jets to choose from")
    i = int(order[args.rank])
    entry = int(entry_of[i])
    ids = tuple(int(arrays[k][entry]) for k in _IDS)
    pt = float(arrays["Jet_pt"][entry][jet_of[i]]) if kinematics else None
    return entry, int(jet_of[i]), f"{args.score} = {flat[i]:.4f} (rank {args.rank} of {len(order)})", ids, pt


_IDS = ("run", "luminosityBlock", "event")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from e2e.config import load_process
        from e2e.module import run_producer
        from e2e.paths import check_output_file
        from e2e.process import Process
        from frameproducers.display import JetInfo, draw_jet
        from taggers.metrics import plot_format

        nonempty(args.output, "-o")
        read = [args.hits, *([args.tagged] if args.tagged else []), *([args.config] if args.config else [])]
        check_output_file(args.output, read, "-o")
        plot_format(args.output)
        tagged_ids: tuple[int, ...] | None = None
        tagged_pt: float | None = None
        by_position = [o for o, v in (("--entry", args.entry), ("--jet", args.jet)) if v is not None]
        by_score = [
            o for o, v in (("--score", args.score), ("--rank", args.rank), ("--label", args.label)) if v is not None
        ]
        if args.tagged and by_position:
            raise E2EError(
                f"{' and '.join(by_position)}: a jet by its position, but --tagged chooses by score: give one"
            )
        if not args.tagged and by_score:
            raise E2EError(f"{' and '.join(by_score)}: a jet by its score, which needs --tagged FILE --score BRANCH")
        args.rank = args.rank or 0
        if args.tagged:
            entry, jet, score, tagged_ids, tagged_pt = _by_score(args)
        elif args.entry is None:
            raise E2EError("choose a jet: --entry N [--jet J], or --tagged FILE --score BRANCH [--rank R]")
        else:
            entry, jet, score = args.entry, args.jet or 0, None
        blocks = _producers(args.config)
        data = {
            "source": {"files": [args.hits], "step_size": 1 << 30, "read_threads": 0},
            "modules": blocks,
            "outputs": [{"file": "unused.root", "keep": list(blocks)}],
        }
        process = Process(load_process(data), extra_fields={"Jet": ("pt", "eta", "label", "decay_mode")})
        source = process.desc.source
        source.begin()
        try:
            first = source.plan()[0]
            if not 0 <= entry < first.entry_stop:
                if tagged_ids is not None:
                    raise E2EError(
                        f"{args.tagged} is not a tagged file of {args.hits}: its entry {entry} is beyond the hits "
                        f"file's {first.entry_stop} entries (give the hits file it was made from)"
                    )
                raise E2EError(f"--entry {entry}: {args.hits} has entries 0-{first.entry_stop - 1}")
            batch = source.read(dataclasses.replace(first, entry_start=entry, entry_stop=entry + 1))
        finally:
            source.end()
        hits_ids = tuple(int(batch.ids[k][0]) for k in _IDS)
        if tagged_ids is not None and tagged_ids != hits_ids:
            raise E2EError(
                f"{args.tagged} is not a tagged file of {args.hits}: entry {entry} is event "
                f"{':'.join(map(str, tagged_ids))} there and {':'.join(map(str, hits_ids))} here (run:lumi:event; "
                "give the hits file it was made from)"
            )
        modules = [process.desc.modules[label] for label in process.schedule.order]
        for m in modules:
            m.begin()
            run_producer(m, batch)
            m.end()
        jets = batch.get("source:Jet")
        if not 0 <= jet < len(jets):
            if tagged_ids is not None:  # the jet came from the tagged file's scores, not from --jet
                raise E2EError(
                    f"{args.tagged} is not a tagged file of {args.hits}: its entry {entry} has a jet {jet}, which the "
                    f"hits file's entry has not ({len(jets)} jet(s)); give the hits file it was made from"
                )
            raise E2EError(f"--jet {jet}: entry {entry} has {len(jets)} jet(s)")
        pt = float(jets["pt"][jet])
        if tagged_pt is not None and not np.isclose(tagged_pt, pt, rtol=1e-6, atol=1e-6):
            raise E2EError(
                f"{args.tagged} is not a tagged file of {args.hits}: entry {entry} jet {jet} has pT "
                f"{tagged_pt:.6g} GeV there and {pt:.6g} here (same event ids and jet counts); give the hits file it "
                "was made from"
            )
        ids = batch.ids
        label = int(jets["label"][jet])
        mode = int(jets["decay_mode"][jet])
        info = JetInfo(
            int(ids["run"][0]),
            int(ids["luminosityBlock"][0]),
            int(ids["event"][0]),
            jet,
            float(jets["pt"][jet]),
            float(jets["eta"][jet]),
            {v: k for k, v in LABELS.items()}.get(label, str(label)),
            DECAY_MODES.get(mode) if label == 1 else None,
            score,
        )
        from dataformats.products import JetFrames, JetGraphs

        products = [batch.get(label) for label in blocks]
        frames = next((p for p in products if isinstance(p, JetFrames)), None)
        graphs = next((p for p in products if isinstance(p, JetGraphs)), None)
        if args.node_colour and graphs is None:
            raise E2EError(
                f"--node-colour {args.node_colour}: the configuration draws no graph (only image channels); give a "
                "configuration with a graph producer, or leave the option out"
            )
        draw_jet(args.output, info, frames, graphs, jet, args.node_colour)
        drawn = [x for x, p in (("image channels", frames), ("graph", graphs)) if p is not None]
        print(f"e2e-display: {info.title(tex=False)}: {' and '.join(drawn)} -> {args.output}")
        return 0

    return run_main("e2e-display", body, args.debug)


cli = console_script(main)


if __name__ == "__main__":
    cli()
