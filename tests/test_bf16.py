"""``precision: bf16`` on CPU: ParticleNet's edge MLPs as bfloat16 products with float32 sums.

The kernels round as torch does (to nearest even) and sum as the float32 path does; the chunked bf16 path equals a
torch form of the same arithmetic bit for bit; a jet's scores do not depend on its micro-batch or the thread count;
the scores stay close to float32's; the tagger refuses bf16 where it would not apply, in one line.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from conftest import SAMPLE, run_cli
from test_strong_networks import (  # _one_torch_thread: the autouse fixture, one torch thread by default
    N_JET,
    _inputs,
    _one_torch_thread,  # noqa: F401
    _run,
    _slice,
    _trained_like,
    gather_case,
)
from torch.nn import functional as F

from e2e.config import load_process
from e2e.process import Process
from frameproducers.kernels.edge_mlp import from_bf16, gather_add_relu, mean_add_bf16, to_bf16
from taggers.models import particlenet
from taggers.models.networks import rowwise
from taggers.models.particlenet import EdgeConvBlock, ParticleNet, freeze_for_inference

CONFIGS = SAMPLE.parents[1] / "process_configs"


def _bits(t: torch.Tensor) -> np.ndarray:
    return t.contiguous().view(torch.int16).numpy().view(np.uint16)


def test_rounding_is_torchs_round_to_nearest_even() -> None:
    """to_bf16 equals torch's float32 -> bfloat16 conversion on ties, near-overflow, subnormals, infinities; NaN
    stays NaN; from_bf16 is exact."""
    from numba import njit

    @njit
    def convert(v, out):
        for i in range(v.size):
            out[i] = to_bf16(v[i])

    @njit
    def back(u, out):
        for i in range(u.size):
            out[i] = from_bf16(u[i])

    ties = np.array([0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001, 0x7F7FFFFF, 0x00008000, 0x80018000], np.uint32)
    rng = np.random.default_rng(0)
    v = np.concatenate(
        [
            ties.view(np.float32),
            np.array([0.0, -0.0, np.inf, -np.inf, 1e-40, -3.4e38, 3.39e38], np.float32),
            rng.normal(scale=10.0, size=5000).astype(np.float32),
            rng.integers(0, 2**32, size=5000, dtype=np.uint64).astype(np.uint32).view(np.float32),
        ]
    )
    got = np.empty(v.size, np.uint16)
    convert(v, got)
    expected = _bits(torch.from_numpy(v).bfloat16())
    nan = np.isnan(v)
    np.testing.assert_array_equal(got[~nan], expected[~nan])
    restored = np.empty(v.size, np.float32)
    back(got, restored)
    assert np.isnan(restored[nan]).all()
    np.testing.assert_array_equal(restored[~nan], torch.from_numpy(v[~nan]).bfloat16().float().numpy())


def test_bf16_kernels_equal_torch() -> None:
    """The first layer (gather, add, ReLU in float32, rounded once) and the mean over the k edges (float32, in order,
    then / k) equal torch's, NaN carried through."""
    n, k, w = 11, 5, 32
    a, b, index = gather_case(1, n, k, w, 7)
    e = np.empty((n * k, w), np.uint16)
    gather_add_relu(a, index, b, k, e)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    expected = torch.relu(ta[torch.from_numpy(index)] + tb.repeat_interleave(k, 0)).bfloat16()
    got = torch.from_numpy(e.view(np.int16)).view(torch.bfloat16).float()
    assert torch.equal(got.nan_to_num(-1.0), expected.float().nan_to_num(-1.0)) and got[7, 2].isnan()
    y = torch.randn(n * k, w).bfloat16()
    out = torch.randn(n, w)
    total = torch.zeros(n, w)
    for j in range(k):
        total += y.float()[j::k]
    expected_out = out + total / k
    mean_add_bf16(_bits(y), k, out.numpy())
    assert torch.equal(out, expected_out)


def _block_reference(block: EdgeConvBlock, x: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
    """An EdgeConv block with bf16 edge MLPs in plain torch: the arithmetic of _edge_mlp_bf16, unchunked."""
    w = block._frozen
    assert w is not None and w.bf16 is not None
    a = rowwise(lambda v: F.linear(v, *w.neighbour), x)
    b = rowwise(lambda v: F.linear(v, *w.node), x)
    out = rowwise(lambda v: F.linear(v, *w.shortcut), x)
    e = torch.relu(a[neighbors] + b.unsqueeze(1)).bfloat16()
    for weight, bias in w.bf16:
        e = torch.relu(F.linear(e, weight, bias))
    total = torch.zeros_like(out)
    for j in range(neighbors.shape[1]):
        total += e[:, j].float()
    return torch.relu(out + total / neighbors.shape[1])


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("chunk", [1, 40, 10**6])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("fused_op", [True, False])
@pytest.mark.parametrize("row_step", [1, 512])
def test_bf16_block_equals_its_torch_form_bit_for_bit(
    monkeypatch, request, layers: int, chunk: int, threads: int, fused_op: bool, row_step: int
) -> None:
    """The chunked bf16 path (oneDNN's linear with the ReLU fused, or torch's linear and relu where the op is
    missing) equals the unchunked torch form, on 1 or 2 threads, chunks of one node included, its products on the
    chunk's rows or padded to a multiple of 512 rows."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    request.addfinalizer(lambda: torch.set_num_threads(before))
    if not fused_op:
        monkeypatch.setattr(particlenet, "_LINEAR_POINTWISE", None)
    monkeypatch.setattr(particlenet, "EDGE_CHUNK_BF16", chunk)
    monkeypatch.setattr(particlenet, "BF16_ROW_STEP", row_step)
    torch.manual_seed(3)
    net = _trained_like(ParticleNet(7, 2, k=16, widths=(32, 64), layers=layers, head=16, coord_features=[5, 6]))
    freeze_for_inference(net, bf16=True)
    x = torch.randn(300, 32)
    neighbors = torch.randint(0, 300, (300, 16))
    block = net.blocks[1]
    with torch.no_grad():
        got = block(x, neighbors)
        assert torch.equal(got, _block_reference(block, x, neighbors))


@pytest.mark.parametrize("threads", [1, 2])
def test_bf16_scores_do_not_depend_on_the_micro_batch_and_stay_near_float32(request, threads: int) -> None:
    """A jet's bf16 logits are the same bit for bit in any micro-batch (rows_independent holds), differ from float32's
    (the path runs) by little; freezing again without bf16 gives float32's scores back."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    request.addfinalizer(lambda: torch.set_num_threads(before))
    torch.manual_seed(6)
    net = _trained_like(ParticleNet(7, 2, k=16, widths=(32, 64), head=16, coord_features=[5, 6], n_jet_features=N_JET))
    sizes = [int(n) for n in np.random.default_rng(7).integers(0, 70, size=45)] + [1, 0, 2]
    inp = _inputs(sizes, seed=8, jet=N_JET)
    float32 = _run(freeze_for_inference(net), inp)
    whole = _run(freeze_for_inference(net, bf16=True), inp)
    for step in (1, 3, 17, 33):
        parts = [_run(net, _slice(inp, a, min(a + step, len(sizes)))) for a in range(0, len(sizes), step)]
        assert torch.equal(torch.cat(parts), whole), step
    assert not torch.equal(whole, float32)
    p32, p16 = torch.softmax(float32, 1), torch.softmax(whole, 1)
    assert (p32 - p16).abs().max() < 0.05, (p32 - p16).abs().max()
    assert torch.equal(_run(freeze_for_inference(net), inp), float32)


def _tau_gnn(precision: str, **block: object) -> dict:
    data = yaml.safe_load((CONFIGS / "tau_gnn.yaml").read_text())
    data["source"].update(files=[str(SAMPLE)], max_events=40)
    data["modules"]["tauGNN"].update(backend="torch", device="cpu", precision=precision, **block)
    data["outputs"][0]["keep"] = ["tauGNN"]
    return data


def test_tagger_runs_bf16_and_says_so() -> None:
    """tau_gnn.yaml with ``precision: bf16``: the summary names it, the scores are near float32's (the shipped
    ParticleNet; ~2e-4 mean change on the held-out sample) and the same on 1 and 2 threads."""
    scores = {}
    for precision, threads in (("float32", 1), ("bf16", 1), ("bf16", 2)):
        process = Process(load_process(_tau_gnn(precision, threads=threads, micro_batch=16)))
        got = [b.get("tauGNN") for b in process.iter_batches()]
        scores[precision, threads] = np.concatenate([t.values for t in got])
        if precision == "bf16":
            assert "bf16 edge-MLP products" in process.desc.modules["tauGNN"].describe()
    np.testing.assert_array_equal(scores["bf16", 1], scores["bf16", 2])
    change = np.abs(scores["bf16", 1] - scores["float32", 1])
    assert 0 < change.max() < 0.1 and change.mean() < 5e-3


@pytest.mark.parametrize(
    ("config", "block", "cuda", "message"),
    [
        ("tau_gnn", {"backend": "onnxruntime"}, False, "bf16 runs with backend: torch"),
        ("tau_gnn_fast", {"backend": "torch"}, False, "EdgeConv blocks (ParticleNet) only"),
        ("tau_gnn", {"backend": "torch", "device": "auto"}, True, "would run on CUDA (device: auto)"),
    ],
)
def test_bf16_where_it_does_not_apply_is_one_line(tmp_path, capsys, monkeypatch, config, block, cuda, message):
    """ONNX Runtime, a model without EdgeConv blocks (GraphNet), and a tagger that would run on CUDA: one line naming
    the parameter, no output file."""
    if cuda:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    data = yaml.safe_load((CONFIGS / f"{config}.yaml").read_text())
    data["source"]["files"] = [str(SAMPLE)]
    data["modules"]["tauGNN"].update(precision="bf16", **block)
    data["outputs"][0]["file"] = str(tmp_path / "out.root")
    cfg = tmp_path / "bf16.yaml"
    cfg.write_text(yaml.safe_dump(data))
    rc, _, err = run_cli([str(cfg), "-n", "2", "--no-progress"], capsys)
    assert rc == 2 and err.count("\n") == 1, err
    assert "modules.tauGNN.precision" in err and message in err
    assert not (tmp_path / "out.root").exists()
