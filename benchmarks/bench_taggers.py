"""Tagger throughput: each model with torch and onnxruntime over micro-batch sizes, end to end, and the notebook way.

Printed in one run (jets/s, best of ``--repeats``, the notebook way too; inputs made by the producers of each
model's input spec from the shipped sample replicated ``--replicas`` times):

- inference alone: torch and onnxruntime, micro-batches of 32 / 128 / 512 jets (CPU; CUDA too when present);
- end to end ``e2e-run process_configs/tau_gnn.yaml`` (and ``tau_gnn_fast.yaml``) in-process, the source replaced
  by the replicated sample (ROOT -> graphs and shapes -> GNN and shapes taggers -> ROOT, setup excluded);
- the same GNN "the notebook way" on the same file: uproot, numpy maps per event, one PyG ``Data`` per jet with
  a brute-force kNN (torch.cdist + topk), a PyG ``DataLoader`` and the PyG layers (weights copied from the
  artefact): the ratio to beat. It writes nothing, e2e-run writes the friend tree.

    python benchmarks/bench_taggers.py [--models zoo:tau_gnn zoo:tau_cnn] [--configs CONFIG...] [--replicas 4]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))  # frame_references: the notebook's numpy code

from bench_run import replicate  # noqa: E402

from e2e.config import load_process  # noqa: E402
from e2e.errors import E2EError  # noqa: E402
from e2e.module import resolve_type  # noqa: E402
from e2e.process import Process  # noqa: E402
from taggers.artefact import Artefact  # noqa: E402
from taggers.inputs import INPUT_KINDS  # noqa: E402


def producer_block(spec: dict) -> tuple[str, dict]:
    """(label, YAML block) of the producer that makes the inputs a model was trained on."""
    inp = dict(spec["input"])
    kind = inp.pop("product")
    if kind == "table":
        keep = {k: inp[k] for k in ("cone", "core", "track_pt_min", "dz_max", "d0sig_min") if k in inp}
        return "jetShapes", {"type": "JetShapeProducer", **keep}
    if inp.get("nodes") == "hits":  # hit-level graphs: HitGraphProducer with the recorded selection
        from dataclasses import fields

        from frameproducers.hitgraphs import HitGraphProducer

        names = {f.name for f in fields(HitGraphProducer.Params)}
        return "hitGraphs", {"type": "HitGraphProducer", **{k: v for k, v in inp.items() if k in names}}
    channels = inp["channels"]
    for key in ("thresholds", "scale"):
        if isinstance(inp.get(key), list):
            default = 0.0 if key == "thresholds" else 1.0
            inp[key] = {c: v for c, v in zip(channels, inp[key], strict=True) if v != default}
    if kind == "graphs":
        return "jetGraphs", {"type": "JetGraphProducer", **inp}
    return "jetFrames", {"type": "JetFrameProducer", **inp}


def tagger_type(kind: str) -> tuple[str, str]:
    """(module type, its input parameter) of the tagger that serves models of input kind ``kind``."""
    return INPUT_KINDS[kind].tagger, INPUT_KINDS[kind].tagger_param


def products(path: Path, label: str, block: dict, max_events: int) -> list:
    data = {
        "source": {"files": [str(path)], "max_events": max_events, "step_size": 1000},
        "modules": {label: block},
        "outputs": [{"file": "unused.root", "keep": [label]}],
    }
    return [b.get(label) for b in Process(load_process(data)).iter_batches()]


def time_inference(model: str, kind: str, prods: list, backend: str, device: str, micro: int, repeats: int) -> float:
    name, inp = tagger_type(kind)
    cls = resolve_type(name, "bench")
    from e2e.params import build

    tagger = cls(
        "tagger",
        build(cls.Params, {"model": model, "backend": backend, "device": device, "micro_batch": micro}, "bench"),
    )
    n = sum(p.n_jets for p in prods)
    best = float("inf")
    for _ in range(repeats + 1):  # the first pass creates the session and warms up
        t0 = time.perf_counter()
        for p in prods:
            for mb in tagger.input_kind.micro_batches(p, micro):
                tagger.run_model(mb)
        best = min(best, time.perf_counter() - t0)
    return n / best


def notebook_way(model: str, path: Path, max_jets: int) -> float:
    """ROOT file -> scores the way a notebook would, on the first ``max_jets`` jets (-1: all): jets/s.

    uproot reads the events; per event numpy maps of the channels (np.add.at), per jet a crop, its non-zero
    pixels as nodes (the producer's features), a brute-force kNN (torch.cdist + topk) and one PyG ``Data``;
    then a PyG ``DataLoader`` and the PyG layers with the artefact's weights. Nothing is written.
    """
    import awkward as ak
    import frame_references as ref
    import numpy as np
    import torch
    import uproot
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader

    from e2e.params import build
    from frameproducers.graphs import ECAL_ETA_CENTRES
    from frameproducers.pixels import PixelMap, PixelParams
    from taggers.models.graph_layers import pyg_layer
    from taggers.models.networks import graph_pool

    art = Artefact.load(model)
    net = art.build_torch("cpu")
    hyper = art.spec["architecture"]["hyperparameters"]
    inp = art.spec["input"]
    k = int(inp["k"])
    convs = []
    dims = [hyper["n_features"]] + [hyper.get("hidden", 64)] * hyper.get("layers", 3)
    for conv, (a, b) in zip(net.convs, zip(dims[:-1], dims[1:], strict=True), strict=True):
        layer = pyg_layer(hyper.get("kind", "sage"), a, b)
        layer.load_state_dict(_pyg_state(conv))
        convs.append(layer)
    _, block = producer_block(art.spec)
    pp = build(PixelParams, {key: v for key, v in block.items() if key in PixelParams.__dataclass_fields__}, "nb")
    px = PixelMap("nb", pp)
    impact = "sig" if pp.impact == "significance" else ""

    t0 = time.perf_counter()
    ev = uproot.open(path)["Events"].arrays(library="ak")
    max_jets = max_jets if max_jets >= 0 else int(ak.sum(ak.num(ev.Jet_pt)))
    data: list = []
    for e in range(len(ev)):
        one = ev[e : e + 1]
        img = ref.notebook_event_image(one, px, pp.dz_max, pp.hcal_upsample, impact)
        for j in range(len(one.Jet_pt[0])):
            seed = int(one.Jet_seed_ieta[0][j])
            crop = ref.crop(img, seed, int(one.Jet_seed_iphi[0][j]), pp.window)[None]
            _, xj, posj, _ = ref.graph_nodes(
                crop, np.array([seed]), bool(inp.get("coordinates", True)), ECAL_ETA_CENTRES
            )
            x, pos = torch.from_numpy(xj), torch.from_numpy(posj)
            n = len(x)
            if n > 1:
                d = torch.cdist(pos, pos)
                d.fill_diagonal_(float("inf"))
                nb = torch.topk(d, min(k, n - 1), largest=False).indices
                edge_index = torch.stack([nb.reshape(-1), torch.arange(n).repeat_interleave(nb.shape[1])])
            else:
                edge_index = torch.zeros((2, 0), dtype=torch.long)
            data.append(Data(x=x, edge_index=edge_index))
            if len(data) >= max_jets:
                break
        if len(data) >= max_jets:
            break
    with torch.inference_mode():
        for batch in DataLoader(data, batch_size=256):
            h = (batch.x - net.shift) * net.scale
            for conv, norm in zip(convs, net.norms, strict=True):
                h = torch.relu(norm(conv(h, batch.edge_index)))
            torch.softmax(net.head(graph_pool(h, batch.batch, batch.ptr)), dim=1)
    return len(data) / (time.perf_counter() - t0)


def _pyg_state(gather_conv: object) -> dict:
    """State dict of the PyG layer equivalent to a gather-form layer (inverse of from_pyg)."""
    sd = gather_conv.state_dict()
    if "att_src" in sd:
        return {
            "lin.weight": sd["lin.weight"],
            "att_src": sd["att_src"].reshape(1, 1, -1),
            "att_dst": sd["att_dst"].reshape(1, 1, -1),
            "bias": sd["bias"],
        }
    if any(k.startswith("mlp.") for k in sd):
        return {k.replace("mlp.", "nn."): v for k, v in sd.items()}
    return sd


def gnn_model(config: Path) -> str:
    """The model of the (first) GNNTagger of a process configuration."""
    modules = yaml.safe_load(config.read_text())["modules"]
    return next(m["model"] for m in modules.values() if m.get("type") == "GNNTagger")


def end_to_end(path: Path, config: Path, repeats: int, tmp: Path) -> tuple[float, int]:
    """jets/s of ``e2e-run CONFIG -i path -o tmp/tagged.root`` in-process (setup excluded), best of ``repeats``."""
    data = yaml.safe_load(config.read_text())
    data["source"]["files"] = [str(path)]
    data["outputs"][0]["file"] = str(tmp / "tagged.root")
    best, jets = float("inf"), 0
    for _ in range(repeats):
        s = Process(load_process(copy.deepcopy(data))).run(progress=False)
        best = min(best, sum(s.times.values()))
        jets = s.jets
    return jets / best, jets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["zoo:tau_gnn", "zoo:tau_gnn_fast", "zoo:tau_cnn", "zoo:tau_shapes"])
    ap.add_argument("--replicas", type=int, default=4, help="copies of the 150-event sample")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--micro-batches", nargs="+", type=int, default=[32, 128, 512])
    ap.add_argument("--notebook-jets", type=int, default=-1, help="jets for the notebook way (-1: all, the same jets)")
    ap.add_argument(
        "--configs",
        type=Path,
        nargs="*",
        default=[REPO / "process_configs" / "tau_gnn.yaml", REPO / "process_configs" / "tau_gnn_fast.yaml"],
        help="end-to-end GNN jobs (their source and output are replaced)",
    )
    args = ap.parse_args(argv)
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        path = tmpd / "hits.root"
        n_events, n_jets = replicate(path, args.replicas)
        print(
            f"input: {n_events} events, {n_jets} jets; torch threads {torch.get_num_threads()}; best of {args.repeats}"
        )
        print(
            f"{'model':<16} {'backend':<12} {'device':<6} "
            + " ".join(f"{f'mb={m}':>10}" for m in args.micro_batches)
            + "   (jets/s)"
        )
        for model in args.models:
            try:
                art = Artefact.load(model)
            except E2EError as err:  # a zoo model not trained yet
                print(f"{model:<16} skipped: {err}")
                continue
            print(
                f"{art.spec.get('name', model):<16} {art.n_parameters():,} parameters "
                f"({art.spec['architecture']['name']})"
            )
            label, block = producer_block(art.spec)
            kind = art.spec["input"]["product"]
            prods = products(path, label, block, n_events if kind != "frames" else min(n_events, 300))
            for backend in ("torch", "onnxruntime"):
                for device in devices:
                    rates = [
                        time_inference(model, kind, prods, backend, device, m, args.repeats) for m in args.micro_batches
                    ]
                    print(
                        f"{art.spec.get('name', model):<16} {backend:<12} {device:<6} "
                        + " ".join(f"{r:10,.0f}" for r in rates)
                    )
        for config in args.configs:
            model = gnn_model(config)
            try:
                Artefact.load(model)
            except E2EError as err:
                print(f"{config.name}: skipped: {err}")
                continue
            e2e_rate, jets = end_to_end(path, config, args.repeats, tmpd)
            chain = ", ".join(yaml.safe_load(config.read_text())["modules"])
            print(f"end to end e2e-run {config.name} (ROOT -> {chain} -> ROOT): {e2e_rate:,.0f} jets/s ({jets} jets)")
            arch = Artefact.load(model).spec["architecture"]["name"]
            if arch != "GraphNet":  # the notebook way rebuilds GraphNet's message passing from PyG layers
                print(f"  notebook way: only for GraphNet models (PyG layers), not {arch}; skipped")
                continue
            nb_rate = max(notebook_way(model, path, args.notebook_jets) for _ in range(args.repeats))
            nb_jets = args.notebook_jets if args.notebook_jets >= 0 else jets
            print(
                f"  notebook way with {model} (uproot, numpy maps per event, PyG Data per jet, brute-force kNN, "
                f"DataLoader): {nb_rate:,.0f} jets/s ({nb_jets} jets)"
            )
            print(
                f"  ratio e2e-run / notebook: {e2e_rate / nb_rate:.1f}x   (goals on 2 cores: >= 5,000 jets/s end to "
                f"end and >= 25x: {'met' if e2e_rate >= 5000 and e2e_rate / nb_rate >= 25 else 'NOT met'})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
