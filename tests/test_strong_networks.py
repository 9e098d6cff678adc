"""ParticleNet and GraphTransformer: shapes, empty and one-node jets, batch independence, ONNX parity through the
artefact export, a few training steps, the registry, and a short e2e-train run of each."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
import yaml
from conftest import SAMPLE

from frameproducers import kernels as K
from taggers.inputs import GraphInput
from taggers.models.graph_layers import dynamic_knn, knn_per_graph
from taggers.models.particlenet import ParticleNet
from taggers.models.registry import architecture_name, resolve_architecture
from taggers.models.transformer import GraphTransformer

PIXEL = 0.0174  # grid pitch of the coordinate columns (radians)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Small tensors: one torch thread (two threads spin-wait on a busy 2-core machine: up to 20x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(sizes: list[int], seed: int = 0, k: int = 8, jet: int = 0) -> dict[str, np.ndarray]:
    """Random jets on a 21 x 21 window: 5 random features, then (delta_eta, delta_phi) on the pixel grid; ``jet``
    per-jet inputs (input ``jet``) when non-zero."""
    rng = np.random.default_rng(seed)
    pixel = np.concatenate([np.sort(rng.choice(441, size=n, replace=False)) for n in sizes]).astype(np.int32)
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    x = rng.normal(size=(len(pixel), 7)).astype(np.float32)
    x[:, 5], x[:, 6] = (pixel // 21 - 10) * PIXEL, (pixel % 21 - 10) * PIXEL
    out = {
        "x": x,
        "neighbors": K.knn_pixels(pixel, ptr, 21, k, False),
        "batch": np.repeat(np.arange(len(sizes)), sizes).astype(np.int64),
        "ptr": ptr,
    }
    if jet:
        out["jet"] = rng.normal(loc=3.0, size=(len(sizes), jet)).astype(np.float32)
    return out


def _run(net: torch.nn.Module, inputs: dict[str, np.ndarray]) -> torch.Tensor:
    with torch.no_grad():
        return net(*(torch.from_numpy(v) for v in inputs.values()))


def _slice(inp: dict[str, np.ndarray], a: int, b: int) -> dict[str, np.ndarray]:
    """Jets ``a..b-1`` of a batch of inputs, as GraphInput.micro_batches cuts them."""
    na, nb = int(inp["ptr"][a]), int(inp["ptr"][b])
    out = {
        "x": inp["x"][na:nb],
        "neighbors": inp["neighbors"][na:nb] - na,
        "batch": inp["batch"][na:nb] - a,
        "ptr": inp["ptr"][a : b + 1] - na,
    }
    if "jet" in inp:
        out["jet"] = inp["jet"][a:b]
    return out


NETS = {
    "particlenet": lambda: ParticleNet(7, 2, k=4, widths=(16, 32), head=16),
    "particlenet_coords": lambda: ParticleNet(7, 2, k=6, widths=(16, 32), layers=2, head=16, coord_features=[5, 6]),
    "transformer": lambda: GraphTransformer(7, 2, hidden=16, heads=2, layers=2),
    "transformer_pairs": lambda: GraphTransformer(7, 2, hidden=16, heads=2, layers=2, pair_features=[5, 6]),
    "particlenet_jet": lambda: ParticleNet(7, 2, k=4, widths=(16, 32), head=16, n_jet_features=N_JET),
    "transformer_jet": lambda: GraphTransformer(7, 2, hidden=16, heads=2, layers=2, n_jet_features=N_JET),
}
#: per-jet inputs of the *_jet networks
N_JET = 3


def _jet(name: str) -> int:
    return N_JET if name.endswith("_jet") else 0


def _net(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = NETS[name]()
    net.shift.normal_()  # non-trivial standardisation
    net.scale.uniform_(0.5, 2.0)
    jet_norm = getattr(getattr(net, "jet_inputs", None), "norm", None)
    if jet_norm is not None:  # non-trivial running statistics of the per-jet inputs
        jet_norm.running_mean.fill_(3.0)
        jet_norm.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("sizes", [[0], [1], [0, 1, 0], [2, 30, 0, 5, 1, 22]])
def test_shapes_with_empty_and_one_node_jets(name: str, sizes: list[int]) -> None:
    out = _run(_net(name), _inputs(sizes, jet=_jet(name)))
    assert out.shape == (len(sizes), 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(NETS))
def test_scores_do_not_depend_on_the_batch(name: str) -> None:
    """Every jet scored alone gives its score in a batch of others (jets of 0 to 60 nodes, ties on the grid)."""
    net = _net(name)
    sizes = [30, 0, 5, 1, 22, 60, 9]
    inp = _inputs(sizes, seed=1, jet=_jet(name))
    together = _run(net, inp)
    for g in range(len(sizes)):
        torch.testing.assert_close(_run(net, _slice(inp, g, g + 1))[0], together[g], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["particlenet", "particlenet_coords", "particlenet_jet"])
@pytest.mark.parametrize("chunk", [1, 40, 10**6])
def test_edgeconv_in_chunks_equals_the_whole_batch_bit_for_bit(monkeypatch, name: str, chunk: int) -> None:
    """CPU inference runs the edge MLP over EDGE_CHUNK edges at a time: the same scores as the whole-batch form
    (the export and GPU path), exactly, whatever the chunk (one node per chunk, a few, all)."""
    from taggers.models import particlenet

    net = _net(name)
    inp = _inputs([30, 0, 5, 1, 22, 60, 9], seed=2, jet=_jet(name))
    monkeypatch.setattr(particlenet, "_exporting", lambda: True)
    whole = _run(net, inp)
    monkeypatch.setattr(particlenet, "_exporting", lambda: False)
    monkeypatch.setattr(particlenet, "EDGE_CHUNK", chunk)
    assert torch.equal(_run(net, inp), whole)


def _trained_like(net: torch.nn.Module) -> torch.nn.Module:
    """Batch norms with non-trivial statistics and affine terms (folded weights and non-zero shifts)."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.uniform_(-1.0, 1.0)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-1.0, 1.0)
    return net.eval()


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("chunk", [1, 40, 10**6])
@pytest.mark.parametrize(("k", "threads"), [(16, 1), (16, 2), (12, 1), (12, 2)])
@pytest.mark.parametrize("blas", [True, False], ids=["one-call", "torch-products"])
def test_fused_edge_mlp_equals_the_whole_batch_bit_for_bit(
    monkeypatch, request, layers: int, chunk: int, k: int, threads: int, blas: bool
) -> None:
    """tau_gnn's shape (widths 32 and 64, k = 16, kNN in every block; k = 12: chunks of 12 edges, whose bias
    ``addmm`` adds) with trained-like batch norms: the chunked form gives the whole batch's scores exactly, its
    epilogues fused in numba, on 1 torch thread or 2 (the products threaded); chunks of one node (12 or 16 edges)
    included, whose products run on MIN_ROWS rows (MKL's products of fewer rows differ in the last bit). Both forms
    of the chunk loop: one numba call with torch's sgemm_ (edge_mlp_chunks), and Python with torch's products."""
    from taggers.models import particlenet

    if not blas:
        monkeypatch.setattr(particlenet, "_torch_sgemm", lambda width, threads: 0)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    request.addfinalizer(lambda: torch.set_num_threads(before))
    torch.manual_seed(4)
    net = _trained_like(ParticleNet(7, 2, k=k, widths=(32, 64), layers=layers, head=16, coord_features=[5, 6]))
    inp = _inputs([30, 0, 5, 1, 22, 60, 9, 17, 40], seed=5)
    monkeypatch.setattr(particlenet, "_exporting", lambda: True)
    whole = _run(net, inp)
    monkeypatch.setattr(particlenet, "_exporting", lambda: False)
    monkeypatch.setattr(particlenet, "EDGE_CHUNK", chunk)
    assert torch.equal(_run(net, inp), whole)


@pytest.mark.parametrize(("k", "threads"), [(16, 1), (16, 2), (12, 1), (4, 2)])
@pytest.mark.parametrize("blas", [True, False], ids=["one-call", "torch-products"])
def test_particlenet_scores_do_not_depend_on_the_micro_batch_bit_for_bit(
    monkeypatch, request, k: int, threads: int, blas: bool
) -> None:
    """ParticleNet at inference on CPU (rows_independent): a jet's logits are the same bit for bit whatever the jets
    around it, from micro-batches of one jet to the whole batch (products of a few rows, which MKL computes with
    other kernels, are padded to MIN_ROWS), on 1 or 2 torch threads; so the tagger may balance its micro-batches."""
    from taggers.models import particlenet

    if not blas:
        monkeypatch.setattr(particlenet, "_torch_sgemm", lambda width, threads: 0)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    request.addfinalizer(lambda: torch.set_num_threads(before))
    torch.manual_seed(6)
    net = _trained_like(ParticleNet(7, 2, k=k, widths=(32, 64), head=16, coord_features=[5, 6], n_jet_features=N_JET))
    assert net.rows_independent
    sizes = [int(n) for n in np.random.default_rng(7).integers(0, 70, size=45)] + [1, 0, 2]
    inp = _inputs(sizes, seed=8, jet=N_JET)
    whole = _run(net, inp)
    for step in (1, 2, 3, 17, 32, 33):
        parts = [_run(net, _slice(inp, a, min(a + step, len(sizes)))) for a in range(0, len(sizes), step)]
        assert torch.equal(torch.cat(parts), whole), step


def test_frozen_blocks_give_the_same_scores_until_thawed() -> None:
    """Inference sessions freeze the EdgeConv blocks (batch norms folded into the weights once): the same scores
    bit for bit; train() and load_state_dict() thaw them, so new weights are used; a new freeze follows weights
    changed through ``.data``."""
    from taggers.models.particlenet import freeze_for_inference

    torch.manual_seed(6)
    net = _trained_like(ParticleNet(7, 2, k=6, widths=(32, 64), head=16))
    inp = _inputs([30, 5, 22, 60], seed=7)
    before = _run(net, inp)
    assert torch.equal(_run(freeze_for_inference(net), inp), before)
    assert all(b._frozen is not None for b in net.blocks)

    other = _trained_like(ParticleNet(7, 2, k=6, widths=(32, 64), head=16))
    net.load_state_dict(other.state_dict())
    assert torch.equal(_run(net, inp), _run(other, inp)) and not torch.equal(_run(net, inp), before)

    freeze_for_inference(net)
    net.train()
    assert all(b._frozen is None for b in net.blocks)
    freeze_for_inference(net.eval()).to(torch.float32)
    assert all(b._frozen is None for b in net.blocks)
    net.eval()
    net.blocks[1].norms[1].running_mean.data.add_(0.25)
    changed = _run(net, inp)
    assert not torch.equal(changed, _run(other, inp))
    assert torch.equal(_run(freeze_for_inference(net), inp), changed)
    net.blocks[0].lins[1].weight.data.mul_(1.5)  # while frozen: a new freeze folds the new weights
    assert torch.equal(_run(net, inp), changed)
    assert not torch.equal(_run(freeze_for_inference(net), inp), changed)


def gather_case(seed: int, n: int, k: int, w: int, nan_edge: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs of the first-layer kernels: node terms ``a``, ``b`` [n, w] (``a[3, 2]`` NaN) and a neighbour index of
    n * k edges, edge ``nan_edge`` reading node 3."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(2, n, w)).astype(np.float32)
    a[3, 2] = np.nan
    index = rng.integers(0, n, size=n * k)
    index[nan_edge] = 3
    return a, b, index


def edge_mean_reference(y: np.ndarray, bias: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """numpy's ``relu(y + bias)`` and its mean over each node's k consecutive edges (summed in order, then / k)."""
    z = y + bias
    relu = np.where(z < 0, np.float32(0), z)
    total = np.zeros((len(y) // k, y.shape[1]), np.float32)
    for j in range(k):
        total += relu[j::k]
    return relu, total / np.float32(k)


def test_edge_mlp_kernels_equal_their_numpy_reference() -> None:
    """The fused epilogues: float32 results equal to numpy's, NaN carried through (ReLU is clamp(min=0))."""
    from frameproducers.kernels.edge_mlp import bias_relu, bias_relu_mean_add, gather_add_relu

    n, k, w = 9, 4, 8
    a, b, index = gather_case(0, n, k, w, 5)
    rng = np.random.default_rng(10)
    e = np.empty((n * k, w), np.float32)
    gather_add_relu(a, index, b, k, e)
    expected = np.repeat(b, k, axis=0) + a[index]
    np.testing.assert_array_equal(e, np.where(expected < 0, np.float32(0), expected))
    assert np.isnan(e[5, 2])
    bias = rng.normal(size=w).astype(np.float32)
    y = rng.normal(size=(n * k, w)).astype(np.float32)
    relu, mean = edge_mean_reference(y, bias, k)
    out = rng.normal(size=(n, w)).astype(np.float32)
    expected_out = out + mean
    bias_relu_mean_add(y, bias, k, out)
    np.testing.assert_array_equal(out, expected_out)
    bias_relu(y, bias)
    np.testing.assert_array_equal(y, relu)


def test_edge_mlp_kernels_add_the_biases_as_addmm_rounds_them() -> None:
    """With the node term's and the shortcut's biases passed apart (``b_shift``, ``out_shift``): ``b[i] + b_shift``
    first, then the neighbour's term; ``relu((out + out_shift) + mean)``; NaN carried through."""
    from frameproducers.kernels.edge_mlp import bias_relu_mean_add, gather_add_relu

    n, k, w = 9, 4, 8
    a, b, index = gather_case(1, n, k, w, 6)
    rng = np.random.default_rng(11)
    b_shift, bias, out_shift = rng.normal(size=(3, w)).astype(np.float32)
    e = np.empty((n * k, w), np.float32)
    gather_add_relu(a, index, b, k, e, b_shift)
    expected = np.repeat(b + b_shift, k, axis=0) + a[index]
    np.testing.assert_array_equal(e, np.where(expected < 0, np.float32(0), expected))
    assert np.isnan(e[6, 2])
    y = rng.normal(size=(n * k, w)).astype(np.float32)
    y[5, 1] = np.nan
    _, mean = edge_mean_reference(y, bias, k)
    out = rng.normal(size=(n, w)).astype(np.float32)
    finished = (out + out_shift) + mean
    bias_relu_mean_add(y, bias, k, out, out_shift)
    np.testing.assert_array_equal(out, np.where(finished < 0, np.float32(0), finished))
    assert np.isnan(out[1, 1])


@pytest.mark.parametrize("seed", [0, 1])
def test_graph_pool_kernel_equals_the_scatters_bit_for_bit(seed: int) -> None:
    """Inference on CPU pools each graph's nodes in one pass: the same values as the scatter form (training) bit for
    bit (NaN as NaN), with empty graphs (zeros), one-node graphs, NaN (kept in the max and the mean), -0.0 and
    infinities."""
    from taggers.models.networks import graph_pool

    rng = np.random.default_rng(seed)
    sizes = [0, 1, 5, 0, 40, 3, 1, 0, 17, 250]
    ptr = torch.from_numpy(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
    batch = torch.from_numpy(np.repeat(np.arange(len(sizes)), sizes))
    h = torch.from_numpy(rng.normal(size=(int(ptr[-1]), 24)).astype(np.float32) * 1e3)
    h[6, 3], h[8, 5], h[10, 0] = float("nan"), float("-inf"), float("inf")
    h[0, :], h[1, :] = -0.0, -0.0  # graph 1 has one node
    h[50, 7] = float("nan")  # the first node of the 17-node graph
    h[51, 7] = 5e4  # after the NaN: the max stays NaN
    with torch.enable_grad():
        scattered = graph_pool(h, batch, ptr)  # the scatter form
    with torch.inference_mode():
        pooled = graph_pool(h, batch, ptr)
    assert pooled.shape == (len(sizes), 48)
    np.testing.assert_array_equal(pooled.numpy(), scattered.detach().numpy())
    bits, nan = pooled.view(torch.int32), pooled.isnan()  # signed zeros too (NaN: torch's payload differs)
    assert torch.equal(bits[~nan], scattered.detach().view(torch.int32)[~nan])
    assert torch.isnan(pooled[8, 24 + 7]) and torch.isnan(pooled[8, 7]) and torch.isnan(pooled[4, 24 + 3])
    assert torch.equal(pooled[0], torch.zeros(48)) and torch.equal(pooled[3], torch.zeros(48))


@pytest.mark.parametrize("name", sorted(NETS))
def test_onnx_artefact_parity(tmp_path, name: str) -> None:
    """The artefact's model.onnx (taggers.artefact.save, as e2e-train exports) equals torch at 1, 7, 64 and 512
    jets, with graphs larger than the export example's."""
    ort = pytest.importorskip("onnxruntime")
    from taggers import artefact

    net = _net(name, seed=3)
    example = _inputs([12, 30, 0, 3], seed=0, jet=_jet(name))
    artefact.save(
        tmp_path,
        net,
        {"name": name},
        tuple(torch.from_numpy(v) for v in example.values()),
        list(example),
        GraphInput.dynamic_axes,
    )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(tmp_path / artefact.ONNX), options, providers=["CPUExecutionProvider"])
    assert ("jet" in {i.name for i in session.get_inputs()}) == bool(_jet(name))
    rng = np.random.default_rng(5)
    for n_jets in (1, 7, 64, 512):
        sizes = [int(n) for n in rng.integers(0, 50, size=n_jets)]
        sizes[0] = 80 if n_jets > 1 else sizes[0]
        inp = _inputs(sizes, seed=n_jets, jet=_jet(name))
        out = session.run(None, {i.name: inp[i.name] for i in session.get_inputs()})[0]
        ref = _run(net, inp).numpy()
        assert out.shape == (n_jets, 2)
        assert np.abs(out - ref).max() <= 1e-4


@pytest.mark.parametrize("name", sorted(NETS))
def test_a_few_training_steps_reduce_the_loss(name: str) -> None:
    """Class 1 jets have feature 0 shifted by +1: 30 Adam steps on 32 jets at least halve the loss."""
    net = _net(name).train()
    rng = np.random.default_rng(0)
    sizes = [int(n) for n in rng.integers(3, 25, size=32)]
    inp = _inputs(sizes, seed=2, jet=_jet(name))
    y = torch.from_numpy(rng.integers(0, 2, size=32))
    inp["x"][:, 0] += np.repeat(y.numpy(), sizes).astype(np.float32)
    tensors = [torch.from_numpy(v) for v in inp.values()]
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(net(*tensors), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])


@pytest.mark.parametrize("cls", [ParticleNet, GraphTransformer])
def test_builtin_names_resolve(cls: type) -> None:
    assert resolve_architecture(cls.__name__) is cls
    assert architecture_name(cls) == (cls.__name__, "")  # built in: no class_path in model.yaml
    assert cls.input_kind == "graphs"


def test_bad_hyperparameters_are_type_errors() -> None:
    """TypeError: what e2e-train and Artefact.build_torch turn into one-line 'does not fit' errors."""
    with pytest.raises(TypeError, match="coord_features"):
        ParticleNet(7, 2, coord_features=[7])
    with pytest.raises(TypeError, match="pair_features"):
        GraphTransformer(7, 2, pair_features=[5])
    with pytest.raises(TypeError, match="multiple of heads"):
        GraphTransformer(7, 2, hidden=10, heads=4)


def test_default_sizes() -> None:
    """Defaults stay CPU-sized (n_features 16, 2 classes)."""
    for cls in (ParticleNet, GraphTransformer):
        assert sum(p.numel() for p in cls(16, 2).parameters()) < 200_000


def test_knn_per_graph_equals_dynamic_knn_and_breaks_ties_by_index() -> None:
    """Feature space: the same neighbours as dynamic_knn. Grid coordinates (exact ties): the lower index first,
    the same for a graph alone as in a batch; graphs of fewer than k + 1 nodes (or none) padded with self."""
    torch.manual_seed(2)
    sizes = [12, 2, 0, 1, 30]
    inp = _inputs(sizes, seed=4)
    batch, ptr = torch.from_numpy(inp["batch"]), torch.from_numpy(inp["ptr"])
    h = torch.randn(len(batch), 8)
    assert torch.equal(knn_per_graph(h, batch, ptr, 4), dynamic_knn(h, batch, 4))
    coords = torch.from_numpy(inp["x"][:, 5:])
    nb = knn_per_graph(coords, batch, ptr, 6)
    for g in range(len(sizes)):
        a, b = int(ptr[g]), int(ptr[g + 1])
        alone = knn_per_graph(coords[a:b], batch[a:b] - g, torch.tensor([0, b - a]), 6)
        assert torch.equal(alone + a, nb[a:b])
        for i in range(a, b):
            d = (coords[a:b] - coords[i]).square().sum(1)
            d[i - a] = float("inf")
            m = min(6, b - a - 1)
            want = torch.sort(d, stable=True).indices[:m] + a
            assert torch.equal(nb[i, :m], want) and torch.all(nb[i, m:] == i)


@pytest.mark.parametrize("columns", [8, 2])
@pytest.mark.parametrize("n_graphs", [101, 3, 1, 0])
def test_knn_grouped_by_size_is_the_padded_knn(columns: int, n_graphs: int) -> None:
    """Inference on CPU groups the graphs by size (KNN_GROUP at a time, each padded to its own largest; a small
    batch such as one event is one group): the same neighbours, bit for bit, as the whole batch padded to its
    largest graph (features and grid coordinates with exact ties; empty, tiny and large graphs, in no order)."""
    from taggers.models import graph_layers

    rng = np.random.default_rng(7 + n_graphs)
    sizes = [int(n) for n in rng.integers(0, 60, size=n_graphs)]
    sizes[:3] = [140, 0, 1][: len(sizes)]  # a large graph first; an empty and a lone node where there are more
    counts = torch.tensor(sizes, dtype=torch.long)
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    batch = torch.repeat_interleave(torch.arange(len(sizes)), counts)
    h = torch.randn(int(ptr[-1]), columns) if columns > 2 else torch.randint(-5, 6, (int(ptr[-1]), 2)).float()
    with torch.inference_mode():
        grouped = graph_layers.knn_per_graph(h, batch, ptr, 16)
        padded = graph_layers._knn_padded(h, batch, ptr, 16)
    assert torch.equal(grouped, padded)
    assert torch.equal(graph_layers._knn_by_size(h, ptr, 16), padded)
    # the selection kernel of inference on CPU against torch's own (topk / stable sort), the exported form
    traced = graph_layers._knn_padded(h.clone().requires_grad_(True), batch, ptr, 16)
    assert torch.equal(traced, padded)


@pytest.mark.parametrize(
    ("name", "hyper", "heldout"),
    [
        ("ParticleNet", {"k": 8, "widths": [16, 32], "head": 16, "coord_features": [5, 6]}, []),
        ("GraphTransformer", {"hidden": 16, "heads": 2, "layers": 2, "pair_features": [5, 6]}, [str(SAMPLE)]),
    ],
)
def test_e2e_train_two_epochs(tmp_path, name: str, hyper: dict, heldout: list[str]) -> None:
    """e2e-train on the shipped sample, 2 epochs (~10-20 s each): the artefact records the architecture and passes
    the torch/onnxruntime parity check; GraphTransformer's ONNX (inputs x and ptr only) tags the held-out file
    through GNNTagger."""
    pytest.importorskip("onnxruntime")
    from e2e.cli.train import main as train_main

    graphs = {"type": "JetGraphProducer", "window": 33, "hcal_upsample": False, "thresholds": {"ecal": 0.2}, "k": 8}
    cfg = {
        "name": "small",
        "product": "jetGraphs",
        "process": {"source": {"files": [str(SAMPLE)], "step_size": 50}, "modules": {"jetGraphs": graphs}},
        "output": str(tmp_path / "small"),
        "split": [0.5, 0.25, 0.25],
        "heldout": heldout,
        "model": {"name": name, "hyperparameters": hyper},
        "optimizer": {"max_epochs": 2, "batch_size": 32, "budget_minutes": 1},
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(cfg))
    assert train_main([str(tmp_path / "train.yaml"), "--no-progress"]) == 0
    spec = yaml.safe_load((tmp_path / "small" / "model.yaml").read_text())
    assert spec["architecture"]["name"] == name and "class_path" not in spec["architecture"]
    assert spec["provenance"]["training"]["epochs"] == 2
    assert spec["parity"]["max_abs_logit_difference"] <= 1e-4
    assert ("heldout" in spec["metrics"]) == bool(heldout)


@pytest.mark.parametrize("name", ["particlenet_jet", "transformer_jet"])
def test_per_jet_inputs_change_the_scores(name: str) -> None:
    """The per-jet inputs reach the head: changing one jet's changes that jet's logits only; none given is an
    error that says so."""
    net = _net(name)
    inp = _inputs([10, 4, 7], seed=4, jet=N_JET)
    before = _run(net, inp)
    inp["jet"][1] += 2.0
    after = _run(net, inp)
    assert not torch.allclose(before[1], after[1])
    torch.testing.assert_close(before[[0, 2]], after[[0, 2]])
    del inp["jet"]
    with pytest.raises(ValueError, match="per-jet inputs"):
        _run(net, inp)


def test_onnx_of_a_network_without_per_jet_inputs_has_no_jet_input(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from taggers import artefact

    example = _inputs([5, 9], seed=0)
    artefact.save(tmp_path, _net("particlenet"), {"name": "p"}, tuple(torch.from_numpy(v) for v in example.values()),
                  list(example), GraphInput.dynamic_axes)  # fmt: skip
    session = ort.InferenceSession(str(tmp_path / artefact.ONNX), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x", "neighbors", "batch", "ptr"]


@pytest.mark.parametrize("bad", [14, -1, 2**40])
def test_fused_edge_mlp_refuses_neighbours_outside_the_batch(bad: int) -> None:
    """The fused kernels do not check their reads: indices outside the micro-batch's nodes raise, as torch's gather
    does."""
    net = _trained_like(ParticleNet(7, 2, k=4, widths=(32,), head=16))
    inp = _inputs([5, 9], seed=6, k=4)
    inp["neighbors"] = inp["neighbors"].copy()
    inp["neighbors"][3, 1] = bad
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(IndexError, match="outside 0..13"):
            _run(net, inp)
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="torch built without MKL (its sgemm_ is probed)")
@pytest.mark.parametrize("threads", [1, 2])
def test_edge_mlp_products_call_torchs_own_sgemm(request, threads: int) -> None:
    """With torch's MKL, the one-call edge MLP finds the sgemm_ that torch's products call, and its calls give
    ``mm``'s and ``addmm``'s values bit for bit (products of 33 to 5000 rows of widths 16 to 64, not the probe's)."""
    from frameproducers.kernels.edge_mlp_blas import sgemm_rows
    from taggers.models.particlenet import _torch_sgemm

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    request.addfinalizer(lambda: torch.set_num_threads(before))
    g = torch.Generator().manual_seed(9)
    scratch = (np.empty(6, np.int32), np.empty(2, np.float32), np.frombuffer(b"n", np.uint8).copy())
    for width in (16, 32, 64):
        address = _torch_sgemm(width, threads)
        assert address
        for m in (33, 100, 1000, 5000):
            e, w = torch.randn(m, width, generator=g), torch.randn(width, width, generator=g)
            bias = torch.randn(width, generator=g)
            y = np.full((m, width), np.nan, np.float32)
            sgemm_rows(address, e.numpy(), w.numpy(), y, False, *scratch)
            assert np.array_equal(y, torch.mm(e, w).numpy())
            y[:] = bias.numpy()
            sgemm_rows(address, e.numpy(), w.numpy(), y, True, *scratch)
            assert np.array_equal(y, torch.addmm(bias, e, w).numpy())


def test_edge_mlp_products_refuse_shapes_and_layouts_blas_would_misread() -> None:
    """The BLAS call reads by pointer: mismatched shapes and strided views are errors, not reads past an array."""
    from frameproducers.kernels.edge_mlp_blas import sgemm_rows

    scratch = (np.empty(6, np.int32), np.empty(2, np.float32), np.frombuffer(b"n", np.uint8).copy())
    w, y = np.ones((32, 32), np.float32), np.empty((40, 32), np.float32)
    with pytest.raises(ValueError, match="contiguous"):
        sgemm_rows(0, np.ones((40, 64), np.float32)[:, :32], w, y, False, *scratch)
    with pytest.raises(ValueError, match="shapes"):
        sgemm_rows(0, np.ones((40, 16), np.float32), w, y, False, *scratch)


def test_one_call_edge_mlp_refuses_inconsistent_shapes() -> None:
    """edge_mlp_chunks writes through its buffers unchecked: buffers shorter than a chunk, or widths that differ, are
    errors before anything is written."""
    from frameproducers.kernels.edge_mlp_blas import edge_mlp_chunks

    n, k, w = 10, 4, 32
    scratch = (np.empty(6, np.int32), np.empty(2, np.float32), np.frombuffer(b"n", np.uint8).copy())
    a, b, out = (np.zeros((n, w), np.float32) for _ in range(3))
    index = np.zeros(n * k, np.int64)
    weights_t, biases = np.zeros((2, w, w), np.float32), np.zeros((2, w), np.float32)
    after = np.ones(2, np.bool_)
    good = np.zeros((n * k, w), np.float32)
    for e0, e1, idx in (
        (np.zeros((8, w), np.float32), good, index),  # shorter than a chunk's edges
        (good, np.zeros((n * k, w + 1), np.float32), index),  # another width
        (good, good, index[:-1]),  # an index of another length
    ):
        with pytest.raises(ValueError, match="inconsistent shapes"):
            edge_mlp_chunks(0, a, idx, b, k, weights_t, biases, after, n, 32, e0, e1, out, None, None, scratch)
