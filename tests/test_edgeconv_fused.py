"""The fused EdgeConv kernel (taggers/models/edgeconv_cuda.py) against the torch form of the block.

On CUDA (marked gpu, skipped without a device) and, where Triton is installed, on the CPU through Triton's
interpreter (the same kernel source, run by numpy: checks its indexing, masks and padding without a GPU).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import need_extra
from torch.nn import functional as F

from taggers.models import edgeconv_cuda
from taggers.models.particlenet import EdgeConvBlock

REPO = Path(__file__).resolve().parents[1]

#: (input channels, width, layers, k, nodes): the shipped widths and k, widths and k that are not powers of two,
#: a single layer (no product in the kernel), fewer nodes than a program's block, no nodes
SHAPES = [(14, 32, 3, 16, 300), (32, 64, 3, 16, 257), (7, 24, 1, 5, 40), (5, 20, 2, 3, 3), (4, 128, 2, 16, 17),
          (14, 32, 3, 16, 0)]  # fmt: skip


def _block(cin: int, width: int, layers: int, seed: int) -> EdgeConvBlock:
    torch.manual_seed(seed)
    block = EdgeConvBlock(cin, width, layers)
    with torch.no_grad():
        for bn in [*block.norms, block.shortcut_norm]:
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return block.eval()


def _fused(block: EdgeConvBlock, x: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
    w = block._folded_weights(x.shape[1], list(block.lins), list(block.norms))  # type: ignore[arg-type]
    return edgeconv_cuda.edge_mlp(
        F.linear(x, *w.neighbour), F.linear(x, *w.node), nb, w.stacked, F.linear(x, *w.shortcut)
    )


def _torch_form(block: EdgeConvBlock, x: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
    """The block's torch form (gradients on: neither the CPU's chunked path nor the fused kernel)."""
    with torch.enable_grad():
        return block(x, nb).detach()


def _compare(device: str, seed: int) -> None:
    for i, (cin, width, layers, k, n) in enumerate(SHAPES):
        block = _block(cin, width, layers, seed + i).to(device)
        g = torch.Generator().manual_seed(seed + i)
        x = torch.randn(n, cin, generator=g).to(device)
        nb = torch.randint(0, max(n, 1), (n, k), generator=g).to(device)
        with torch.no_grad():
            out, ref = _fused(block, x, nb), _torch_form(block, x, nb)
        assert out.shape == (n, width)
        assert torch.isfinite(out).all()
        if n:
            tol = 1e-5 * max(1.0, float(ref.abs().max()))
            assert float((out - ref).abs().max()) <= tol, (cin, width, layers, k, n)
            bad = nb.clone()
            bad[n // 2, 0] = n  # one index past the micro-batch's nodes
            with pytest.raises(IndexError, match="neighbour indices outside"):
                _fused(block, x, bad)


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.machine() != "x86_64", reason="the triton extra: Linux x86-64 only"
)
def test_fused_kernel_in_triton_interpreter():
    """In a child process: the interpreter patches triton.language for the whole process, after which kernels no
    longer compile for a GPU (seen with Triton 3.6)."""
    need_extra("triton", "triton")
    code = "import test_edgeconv_fused as t; t._compare('cpu', seed=11); print('ok')"
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fused_kernel_on_cuda():
    if edgeconv_cuda._kernel() is None:
        pytest.skip("Triton does not import")
    _compare("cuda", seed=23)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_particlenet_on_cuda_uses_fused_kernel_and_matches_torch_form(monkeypatch):
    """The whole network on CUDA: the block's inference path is the kernel (when Triton imports), with scores
    within 1e-5 of the torch form and of the CPU."""
    from taggers.models.particlenet import ParticleNet

    if edgeconv_cuda._kernel() is None:
        pytest.skip("Triton does not import")
    torch.manual_seed(5)
    model = ParticleNet(6, 2, k=8, widths=(32, 64), layers=3, head=32).eval()
    g = torch.Generator().manual_seed(5)
    sizes = torch.randint(0, 40, (50,), generator=g)
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)])
    n = int(ptr[-1])
    batch = torch.repeat_interleave(torch.arange(50), sizes)
    x = torch.randn(n, 6, generator=g)
    nb = torch.stack([torch.randint(int(ptr[b]), int(ptr[b + 1]), (8,), generator=g) for b in batch.tolist()])
    calls = []
    real = edgeconv_cuda.edge_mlp
    monkeypatch.setattr(edgeconv_cuda, "edge_mlp", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        cpu = model(x, nb, batch, ptr)
        cuda_model = model.cuda()
        args = [t.cuda() for t in (x, nb, batch, ptr)]
        fused = cuda_model(*args).cpu()
        assert len(calls) == 2  # one per block
        monkeypatch.setattr(edgeconv_cuda, "ENABLED", False)
        plain = cuda_model(*args).cpu()
        assert len(calls) == 2
    assert float((fused - plain).abs().max()) <= 1e-5
    assert float((fused - cpu).abs().max()) <= 1e-5


class _FakeKernel:
    """Stands in for the compiled kernel: launching it raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getitem__(self, grid: object):
        def launch(*args: object, **kwargs: object) -> None:
            raise self.error

        return launch


def _inputs(width: int = 32, n: int = 20, k: int = 4):
    g = torch.Generator().manual_seed(1)
    a, b, sc = (torch.randn(n, width, generator=g) for _ in range(3))
    return a, b, torch.randint(0, n, (n, k), generator=g), (torch.randn(1, width, width), torch.randn(1, width)), sc


def test_wider_blocks_keep_torch_form(monkeypatch):
    monkeypatch.setattr(edgeconv_cuda, "_kernel", lambda: pytest.fail("the kernel was launched"))
    a, b, nb, layers, sc = _inputs(width=edgeconv_cuda.MAX_WIDTH + 32)
    assert edgeconv_cuda.edge_mlp(a, b, nb, layers, sc) is None


def test_kernel_that_fails_to_compile_falls_back_with_one_warning(monkeypatch):
    """A Triton error at launch (say, a GPU or driver Triton cannot compile for): a warning naming it, None (the
    torch form), and the kernel off for the rest of the process; any other error propagates."""
    compile_error = type("CompilationError", (Exception,), {"__module__": "triton.compiler.errors"})
    monkeypatch.setattr(edgeconv_cuda, "ENABLED", True)
    monkeypatch.setattr(edgeconv_cuda, "_kernel", lambda: _FakeKernel(compile_error("no sm_42 target")))
    with pytest.warns(RuntimeWarning, match=r"fused Triton kernel failed \(CompilationError: no sm_42 target\)"):
        assert edgeconv_cuda.edge_mlp(*_inputs()) is None
    assert edgeconv_cuda.ENABLED is False
    monkeypatch.setattr(edgeconv_cuda, "ENABLED", True)
    monkeypatch.setattr(edgeconv_cuda, "_kernel", lambda: _FakeKernel(RuntimeError("CUDA out of memory")))
    with pytest.raises(RuntimeError, match="out of memory"):
        edgeconv_cuda.edge_mlp(*_inputs())
    assert edgeconv_cuda.ENABLED is True
