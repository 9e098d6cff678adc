"""CUDA: the main jobs end to end on a GPU, the models alone at large micro-batches, CUDA scores against CPU.

One prepared script, short enough to run twice inside a 15-minute GPU lease (~3-4 min on an H200 host with 16
cores); every figure is measured here, in this run:

- environment: GPU, driver/CUDA, torch and ONNX Runtime versions and execution providers, CPU cores, load;
- models alone (``tau_gnn``, ``tau_gnn_fast``, ``tau_cnn``), inputs already on the GPU (torch), at large
  micro-batches: jets/s (min / median of ``--repeats``), float32 and, at the best micro-batch, TF32 and bfloat16
  autocast with their score change against float32 on the CPU (max |delta|, and the AUC-relevant fraction of
  jets whose score moves by more than 1e-3); ONNX Runtime's CUDA execution provider too, when installed; for
  ParticleNet, the fused EdgeConv kernel against the block's torch form and the kernel's block shapes;
- end to end, ROOT -> ROOT in this process: ``tau_gnn.yaml`` and ``tau_cnn.yaml`` on CPU and on CUDA (torch and,
  when installed, ONNX Runtime CUDA), per stage us/jet and the event loop's jets/s, next to uproot alone reading
  the same branches (the read floor): the GPU stage's share says whether the GPU or the CPU limits the rate; the
  CNN on torch CUDA also with its frames copied dense (``taggers/transfer.py`` off: the baseline of sending only
  their non-zero pixels);
- scores: every CUDA run's output tree against the CPU run's (max |delta| per score branch);
- scale-out on one GPU: ``e2e-run --executor futures --workers W`` for ``tau_gnn.yaml`` on CUDA (every worker its
  own CUDA session), wall jets/s after setup.

    python benchmarks/bench_gpu.py [--replicas 40] [--cnn-replicas 10] [--repeats 3] [--workers 4 8]
                                   [--jobs gnn cnn fast] [--json OUT.json] [--budget-s 330]

Without CUDA it says so and, with ``--dry-run``, runs every step on the CPU at a small size (to check the script).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_pipeline import CNN_CONFIG, CONFIG, FAST_CONFIG, fmt, gnn_model, job, products, stage_runs  # noqa: E402
from bench_run import read_floor, replicate  # noqa: E402

from taggers import transfer  # noqa: E402
from taggers.models import edgeconv_cuda  # noqa: E402
from taggers.modules import tf32_switches  # noqa: E402  (torch's TF32 switches, restored after)

T0 = time.perf_counter()
RESULTS: dict[str, Any] = {}


def say(line: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f} s] {line}", flush=True)


def fmt_rate(values: list[float]) -> str:
    """Rates (jets/s): ``best / median`` is max / median."""
    return f"{max(values):,.0f} / {statistics.median(values):,.0f}"


def environment(device: str) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "onnxruntime": ort.__version__,
        "ort_providers": ort.get_available_providers(),
        "triton": triton_version(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        "device": device,
    }
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = (
            f"{p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, cc {p.major}.{p.minor}"
        )
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20,
            )  # fmt: skip
            env["driver"] = smi.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            env["driver"] = "nvidia-smi not available"
    return env


def triton_version() -> str:
    try:
        import triton
    except ImportError:
        return "not installed (EdgeConv runs in its torch form on CUDA)"
    return str(triton.__version__)


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    m = re.search(r"model name\s*:\s*(.+)", text)
    return m.group(1).strip() if m else platform.processor()


def ort_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


# ------------------------------------------------------------------------------------------------ jobs
def configured(config: Path, path: Path, out: Path, threads: int, label: str, **block: Any) -> dict[str, Any]:
    """``config`` on ``path`` written to ``out``, ``threads`` everywhere, the tagger ``label``'s block updated."""
    data = job(path, out, threads, config)
    data["modules"][label].update(block)
    return data


def score_arrays(path: Path, prefix: str) -> dict[str, np.ndarray]:
    import awkward as ak
    import uproot

    with uproot.open(path) as f:
        tree = f["Events"]
        return {k: ak.to_numpy(ak.flatten(tree[k].array(library="ak"))) for k in tree.keys() if k.startswith(prefix)}


def max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    if set(a) != set(b) or any(len(a[k]) != len(b[k]) for k in a):
        raise SystemExit(f"score branches differ between runs: {sorted(a)} vs {sorted(b)}")
    return max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) if len(a[k]) else 0.0 for k in a)


def end_to_end(
    name: str, config: Path, path: Path, tmp: Path, threads: int, label: str, variants: list[dict[str, Any]],
    repeats: int, n_jets: int,
) -> None:  # fmt: skip
    """The job on CPU and on each CUDA variant: stages, rates, read floor, scores against the CPU run."""
    say(f"end to end: {name} ({n_jets} jets, {threads} CPU threads)")
    scores: dict[str, dict[str, np.ndarray]] = {}
    rows = []
    floor_data = None
    for v in variants:
        v = dict(v)
        dense = v.pop("dense_upload", False)  # frames copied dense to the GPU: the baseline of taggers/transfer.py
        tag = f"{v['backend']}-{v['device']}" + (f"-mb{v['micro_batch']}" if "micro_batch" in v else "")
        tag += "-dense-upload" if dense else ""
        out = tmp / f"{name}-{tag}.root"
        data = configured(config, path, out, threads, label, **v)
        floor_data = data
        transfer.ENABLED = not dense
        try:
            stage_runs(data, 1)  # warm-up: numba cache, sessions, cuDNN's algorithms, the allocators
            runs = stage_runs(data, repeats)
        finally:
            transfer.ENABLED = True
        loops = [sum(r.times.values()) for r in runs]
        stages = {k: [1e6 * r.times[k] / n_jets for r in runs] for k in runs[0].times}
        rate = [n_jets / t for t in loops]
        desc = runs[-1].descriptions.get(label, "")
        scores[tag] = score_arrays(out, f"Jet_{label}_")
        rows.append((tag, rate, stages, desc))
        RESULTS.setdefault("end_to_end", {}).setdefault(name, {})[tag] = {
            "jets_per_s": rate, "us_per_jet": stages, "tagger": desc,
        }  # fmt: skip
    assert floor_data is not None
    read_s = [read_floor(floor_data, 1) for _ in range(repeats)]
    read_rate = [n_jets / t for t in read_s]
    RESULTS["end_to_end"][name]["read_floor_jets_per_s"] = read_rate
    cpu = next((t for t in scores if t.endswith("-cpu")), None)  # the first CPU variant: the reference
    for tag, rate, stages, desc in rows:
        diff = max_diff(scores[tag], scores[cpu]) if cpu and tag != cpu else None
        RESULTS["end_to_end"][name][tag]["max_score_diff_vs_cpu"] = diff
        parts = ", ".join(f"{k} {fmt(v)}" for k, v in stages.items())  # min / median
        gpu_share = statistics.median(stages[label]) / sum(statistics.median(v) for v in stages.values())
        say(
            f"  {tag:<22} {fmt_rate(rate)} jets/s (best / median); us/jet (best / median): {parts}; {label} share "
            f"{100 * gpu_share:.0f}%" + ("" if diff is None else f"; max |score - CPU score| {diff:.2e}")
        )
        say(f"    {desc}")
    say(
        f"  read floor (uproot alone, same branches and chunks): {fmt_rate(read_rate)} jets/s (best / median) = "
        f"{fmt([1e6 / r for r in read_rate])} us/jet (best / median)"
    )


# ------------------------------------------------------------------------------------------------ models alone
def one_product(data: dict[str, Any], producer: str) -> Any:
    """The producer's product for the whole file in one batch (so that any micro-batch size can be cut)."""
    data = copy.deepcopy(data)
    data["source"]["step_size"] = 10**9
    (prod,) = products(data, [producer])
    return prod[producer]


def timed_gpu(fn: Callable[[], Any], repeats: int, device: str) -> tuple[list[float], Any]:
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    out = fn()  # warm-up (kernel selection, allocator)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times, out


def model_alone(
    name: str, config: Path, path: Path, threads: int, label: str, producer: str, sizes: list[int], repeats: int,
    device: str, budget: Callable[[], bool],
) -> None:  # fmt: skip
    """The model on ``device`` at each micro-batch size (inputs already there), float32 / TF32 / bf16, and ORT."""
    import torch

    data = job(path, Path(os.devnull), threads, config)
    product = one_product(data, producer)
    cpu_tagger = gnn_model(data, label, backend="torch", device="cpu")
    names = cpu_tagger.input_kind.feature_names(product)
    n = product.n_jets
    ref = np.concatenate(
        [cpu_tagger.run_model(mb, names) for mb in cpu_tagger.input_kind.micro_batches(product, 512)]
    ).astype(np.float64)
    say(f"model alone: {name} on {device}, {n} jets (float32 CPU reference: torch, {threads} threads)")
    tagger = gnn_model(data, label, backend="torch", device=device)
    session = tagger.session()
    rows = RESULTS.setdefault("model_alone", {}).setdefault(name, {"jets": n})

    def on_device(size: int) -> list[tuple[Any, ...]]:
        return [tuple(torch.from_numpy(v).to(device) for v in mb.values())
                for mb in tagger.input_kind.micro_batches(product, size)]  # fmt: skip

    def measure(tag: str, size: int, batches: list[tuple[Any, ...]], dtype: Any = None) -> float:
        """Time the model on ``batches`` (TF32 only for the tag tf32, autocast to ``dtype``); its median jets/s."""

        def call() -> Any:
            with torch.inference_mode(), tf32_switches(tag == "tf32"):
                with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
                    return torch.cat([session(*b) for b in batches])

        times, out = timed_gpu(call, repeats, device)
        rate = [n / t for t in times]
        delta = np.abs(out.float().cpu().numpy() - ref)
        rows[f"{tag}_mb{size}"] = {"jets_per_s": rate, "max_diff_vs_cpu": float(delta.max())}
        say(
            f"  {tag}, micro-batch {size:>6}: {fmt_rate(rate)} jets/s (best / median); max |score - CPU float32| "
            f"{delta.max():.2e}, jets moved by > 1e-3: {100 * float((delta.max(axis=1) > 1e-3).mean()):.2f}%"
        )
        return statistics.median(rate)

    best = (0.0, sizes[0])
    for size in sizes:
        if size > n and size != sizes[0]:
            break
        if not budget():
            say(f"  micro-batch {size}: skipped (time budget)")
            break
        best = max(best, (measure("float32", size, on_device(size)), size))
    size = best[1]
    batches = on_device(size)
    if device == "cuda" and edgeconv_cuda.used_by(session) and budget():
        fused_against_torch_form(measure, size, batches, rows)
    for tag, dtype in [("tf32", None)] + [("bf16 autocast", torch.bfloat16)] * (device == "cuda"):
        if budget():
            measure(tag, size, batches, dtype)
        else:
            say(f"  {tag}: skipped (time budget)")
    if device == "cuda" and budget():
        kernel_profile(session, batches, n)
    del batches
    if ort_cuda() and device == "cuda" and budget():
        ort_tagger = gnn_model(data, label, backend="onnxruntime", device="cuda")
        mbs = list(ort_tagger.input_kind.micro_batches(product, size))
        times, out = timed_gpu(lambda: np.concatenate([ort_tagger.run_model(mb, names) for mb in mbs]), repeats, "cpu")
        rate = [n / t for t in times]
        diff = float(np.abs(out - ref).max())
        rows[f"ort_cuda_mb{size}"] = {"jets_per_s": rate, "max_diff_vs_cpu": diff, "session": ort_tagger.describe()}
        say(
            f"  ONNX Runtime CUDA EP, micro-batch {size} (numpy in and out, transfers counted): "
            f"{fmt_rate(rate)} jets/s (best / median); max |score - CPU| {diff:.2e} ({ort_tagger.describe()})"
        )


def fused_against_torch_form(
    measure: Callable[..., float], size: int, batches: list[tuple[Any, ...]], rows: dict[str, Any]
) -> None:
    """ParticleNet on CUDA: the fused EdgeConv kernel (taggers/models/edgeconv_cuda.py) against the block's torch
    form in this run, then its block shapes (edge rows per program, warps) around the default."""
    say("  EdgeConv: the fused Triton kernel (default) against the torch form, and the kernel's block shapes")
    edgeconv_cuda.ENABLED = False
    try:
        plain = measure("float32 torch form", size, batches)
    finally:
        edgeconv_cuda.ENABLED = True
    default = (dict(edgeconv_cuda.BLOCK_ROWS), edgeconv_cuda.NUM_WARPS)
    rates = {}
    try:
        for block_rows, warps in [(None, default[1]), (64, 4), (128, 4), (64, 8), (256, 8)]:
            tag = "default" if block_rows is None else f"{block_rows} rows, {warps} warps"
            edgeconv_cuda.BLOCK_ROWS.update(default[0] if block_rows is None else dict.fromkeys(default[0], block_rows))
            edgeconv_cuda.NUM_WARPS = warps
            rates[tag] = measure(f"float32 fused ({tag})", size, batches)
    finally:
        edgeconv_cuda.BLOCK_ROWS.update(default[0])
        edgeconv_cuda.NUM_WARPS = default[1]
    rows["fused_over_torch_form"] = rates["default"] / plain
    say(f"  fused kernel / torch form: {rates['default'] / plain:.2f}x (medians, same run)")


def kernel_profile(session: Any, batches: list[Any], n_jets: int, rows: int = 10) -> None:
    """The model's CUDA kernels by self time on ``batches`` (one pass, torch.profiler): what limits it."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof, torch.inference_mode():
        for b in batches:
            session(*b)
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if getattr(e, "self_device_time_total", 0) > 0]
    total = sum(e.self_device_time_total for e in events)
    say(f"  CUDA kernels (one pass, {len(events)} kinds, {total / n_jets:.2f} us/jet of GPU time):")
    for e in sorted(events, key=lambda e: -e.self_device_time_total)[:rows]:
        say(f"    {100 * e.self_device_time_total / total:5.1f}%  {e.count:6d} calls  {e.key[:110]}")


# ------------------------------------------------------------------------------------------------ scale-out
def workers_run(path: Path, tmp: Path, workers: int, cores: int, device: str) -> float | None:
    """Wall jets/s after setup of ``e2e-run --executor futures --workers W`` (tau_gnn.yaml, tagger on device)."""
    block: dict[str, Any] = {"backend": "torch", "device": device}
    if device == "cuda":
        block["micro_batch"] = 4096
    data = configured(CONFIG, path, tmp / f"workers{workers}-{device}.root", max(1, cores // workers), "tauGNN",
                      **block)  # fmt: skip
    cfg = tmp / f"workers{workers}-{device}.yaml"
    cfg.write_text(yaml.safe_dump(data))
    r = subprocess.run(
        [sys.executable, "-m", "e2e.cli.run", str(cfg), "--executor", "futures", "--workers", str(workers),
         "--no-progress"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    text = r.stdout + r.stderr
    m = re.search(r"throughput \(wall, after setup, ([\d.]+) s\): [\d,]+ events/s, ([\d,]+) jets/s", text)
    if r.returncode or not m:
        say(f"  {workers} workers: failed (rc {r.returncode}): {text[-600:]}")
        return None
    return float(m.group(2).replace(",", ""))


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", type=int, default=40, help="copies of the 150-event sample for the GNN jobs")
    ap.add_argument("--cnn-replicas", type=int, default=10, help="copies for the CNN job (0.5 MB of frames a jet)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per measurement (min and median are printed)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads of the jobs (0: all cores)")
    ap.add_argument("--gnn-batches", type=int, nargs="+", default=[1024, 4096, 16384], help="GNN micro-batches")
    ap.add_argument("--cnn-batches", type=int, nargs="+", default=[256, 1024, 4096], help="CNN micro-batches")
    ap.add_argument("--workers", type=int, nargs="*", default=[4, 8], help="futures workers for the scale-out runs")
    ap.add_argument("--workers-replicas", type=int, default=200, help="copies of the sample for the scale-out runs")
    ap.add_argument("--budget-s", type=float, default=330.0, help="skip the remaining optional steps after this")
    ap.add_argument(
        "--jobs",
        nargs="+",
        choices=["gnn", "cnn", "fast"],
        default=["gnn", "cnn", "fast"],
        help="which parts: tau_gnn (end to end, model alone), tau_cnn (both), tau_gnn_fast (model alone)",
    )
    ap.add_argument("--json", type=Path, help="write every figure here as JSON")
    ap.add_argument("--dry-run", action="store_true", help="no CUDA: run every step on the CPU (a check)")
    args = ap.parse_args(argv)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.dry_run:
        print("bench_gpu: no CUDA device (torch.cuda.is_available() is False); nothing to measure (--dry-run runs "
              "the steps on the CPU)")  # fmt: skip
        return 0
    cores = args.threads or os.cpu_count() or 1
    env = environment(device)
    RESULTS["environment"] = env
    say("environment: " + "; ".join(f"{k}: {v}" for k, v in env.items()))
    budget = lambda: time.perf_counter() - T0 < args.budget_s  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        gnn_file, cnn_file = tmp / "hits.root", tmp / "hits_cnn.root"
        _, n_gnn = replicate(gnn_file, args.replicas)
        _, n_cnn = replicate(cnn_file, args.cnn_replicas)
        say(f"inputs: {n_gnn} jets ({args.replicas} x the sample), {n_cnn} jets for the CNN")
        gnn_variants: list[dict[str, Any]] = [
            {"backend": "torch", "device": "cpu"},
            {"backend": "torch", "device": device, "micro_batch": 4096},
        ]
        cnn_variants: list[dict[str, Any]] = [
            {"backend": "onnxruntime", "device": "cpu"},
            {"backend": "torch", "device": device, "micro_batch": 1024},
            {"backend": "torch", "device": device, "micro_batch": 1024, "dense_upload": True},
        ]
        if ort_cuda() and device == "cuda":
            gnn_variants.append({"backend": "onnxruntime", "device": "cuda", "micro_batch": 4096})
            cnn_variants.append({"backend": "onnxruntime", "device": "cuda", "micro_batch": 1024})
        else:
            say("ONNX Runtime has no CUDA execution provider here: its CUDA rows are left out")
        if "gnn" in args.jobs:
            end_to_end("tau_gnn.yaml", CONFIG, gnn_file, tmp, cores, "tauGNN", gnn_variants, args.repeats, n_gnn)
            model_alone("tau_gnn", CONFIG, gnn_file, cores, "tauGNN", "hitGraphs", args.gnn_batches, args.repeats,
                        device, budget)  # fmt: skip
        if "cnn" in args.jobs and budget():
            end_to_end("tau_cnn.yaml", CNN_CONFIG, cnn_file, tmp, cores, "tauCNN", cnn_variants, args.repeats, n_cnn)
        if "cnn" in args.jobs and budget():
            model_alone("tau_cnn", CNN_CONFIG, cnn_file, cores, "tauCNN", "jetFrames", args.cnn_batches,
                        args.repeats, device, budget)  # fmt: skip
        if "fast" in args.jobs and budget():
            model_alone("tau_gnn_fast", FAST_CONFIG, gnn_file, cores, "tauGNN",
                        yaml.safe_load(FAST_CONFIG.read_text())["modules"]["tauGNN"]["graphs"], args.gnn_batches,
                        args.repeats, device, budget)  # fmt: skip
        big = tmp / "hits_big.root"
        if args.workers and budget():
            _, n_big = replicate(big, args.workers_replicas)
            say(f"scale-out: tau_gnn.yaml on {n_big} jets ({args.workers_replicas} x the sample), e2e-run --executor "
                f"futures, {cores} cores shared by the workers")  # fmt: skip
        runs = [(w, device) for w in args.workers]
        if device == "cuda" and args.workers:
            runs.append((max(args.workers), "cpu"))
        for w, dev in runs:
            if not budget():
                say(f"  {w} workers, tagger on {dev}: skipped (time budget)")
                continue
            rate = workers_run(big, tmp, w, cores, dev)
            RESULTS.setdefault("workers", {})[f"{w}-{dev}"] = rate
            if rate is not None:
                say(f"  {w} workers x {max(1, cores // w)} threads, tagger on {dev}: {rate:,.0f} jets/s (wall, after "
                    "setup: the workers' start, imports and sessions included)")  # fmt: skip
    RESULTS["environment"]["load_avg_1min_end"] = os.getloadavg()[0]
    say(f"done; load average (1 min) {env['load_avg_1min']:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        args.json.write_text(json.dumps(RESULTS, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
