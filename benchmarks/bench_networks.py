"""Graph network forward speed on CPU: ParticleNet and GraphTransformer against GraphNet (sage), in one run.

Random jets (``--jets`` graphs of 100-200 nodes, mean ~150, ``--features`` node features, the producer's
pixel kNN with k = 16 on a 33 x 33 window), default hyperparameters (GraphNet: sage, hidden 64, 3 layers); also
ParticleNet at ParticleNet-Lite sizes (k 8, widths 32, 64) and GraphTransformer with the pair bias (columns 0,
1). Eval mode, ``torch.inference_mode``, ``--threads`` torch threads; with ``--onnx`` onnxruntime too (same
threads). Prints min and median microseconds per jet over ``--repeats`` forwards (after one warm-up), the
ratio of the medians to GraphNet, and the load average (the machine may be shared).

    python benchmarks/bench_networks.py [--jets 256] [--threads 2] [--repeats 5] [--onnx]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from frameproducers import kernels as K
from taggers.inputs import GraphInput
from taggers.models.networks import GraphNet
from taggers.models.particlenet import ParticleNet
from taggers.models.transformer import GraphTransformer


def jets(n_jets: int, n_features: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Model inputs of ``n_jets`` random graphs of 100-200 nodes (pixel kNN, k = 16, window 33)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(100, 201, size=n_jets)
    pixel = np.concatenate([np.sort(rng.choice(33 * 33, size=n, replace=False)) for n in sizes]).astype(np.int32)
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return {
        "x": rng.normal(size=(len(pixel), n_features)).astype(np.float32),
        "neighbors": K.knn_pixels(pixel, ptr, 33, 16, False),
        "batch": np.repeat(np.arange(n_jets), sizes).astype(np.int64),
        "ptr": ptr,
    }


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def onnx_session(net: torch.nn.Module, example: dict[str, np.ndarray], threads: int):  # noqa: ANN201
    import onnxruntime as ort

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            tuple(torch.from_numpy(v) for v in example.values()),
            buf,
            dynamo=False,
            opset_version=18,
            input_names=list(example),
            output_names=["logits"],
            dynamic_axes={**GraphInput.dynamic_axes, "logits": {0: "jets"}},
        )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jets", type=int, default=256)
    ap.add_argument("--features", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--onnx", action="store_true", help="time onnxruntime as well")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    inp = jets(args.jets, args.features)
    tensors = tuple(torch.from_numpy(v) for v in inp.values())
    nets = {
        "GraphNet sage": GraphNet(args.features, 2, kind="sage", hidden=64, layers=3),
        "ParticleNet": ParticleNet(args.features, 2),
        "ParticleNet lite": ParticleNet(args.features, 2, k=8, widths=(32, 64), head=64),
        "GraphTransformer": GraphTransformer(args.features, 2),
        "GraphTransformer+pair": GraphTransformer(args.features, 2, pair_features=[0, 1]),
    }
    print(
        f"{args.jets} jets, {len(inp['x'])} nodes ({len(inp['x']) / args.jets:.0f}/jet), {args.features} features, "
        f"{args.threads} threads, torch {torch.__version__}; load average before {os.getloadavg()[0]:.2f}"
    )
    print(f"{'network':22s} {'params':>8s} {'backend':>11s} {'min us/jet':>11s} {'median':>9s} {'x GraphNet':>10s}")
    base: dict[str, float] = {}
    for name, net in nets.items():
        net.eval()
        runs: dict[str, Callable[[], object]] = {}

        def torch_forward(net: torch.nn.Module = net) -> object:
            with torch.inference_mode():
                return net(*tensors)

        runs["torch"] = torch_forward
        if args.onnx:
            session = onnx_session(net, jets(8, args.features, seed=1), args.threads)
            feed = {i.name: inp[i.name] for i in session.get_inputs()}
            runs["onnxruntime"] = lambda s=session, f=feed: s.run(None, f)
        n_params = sum(p.numel() for p in net.parameters())
        for backend, fn in runs.items():
            t = [1e6 * s / args.jets for s in timed(fn, args.repeats)]
            med = statistics.median(t)
            base.setdefault(backend, med)
            print(f"{name:22s} {n_params:8d} {backend:>11s} {min(t):11.1f} {med:9.1f} {med / base[backend]:10.2f}")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
