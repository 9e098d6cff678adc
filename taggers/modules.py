"""Tagger modules: GNNTagger (JetGraphs) and CNNTagger (JetFrames) -> TagScores, with torch or ONNX Runtime.

One inference session per process, created lazily at the first batch (never pickled); thread counts are
explicit; all jets of a batch run in micro-batches of ``micro_batch`` jets with dynamic axes, never one call
per jet. ``device: auto`` uses CUDA only when it is really there (torch: ``torch.cuda.is_available()``;
ONNX Runtime: the CUDA execution provider is installed and a CUDA device exists); the run summary says which
device and execution provider ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dataformats.products import JetFrames, JetGraphs, JetProduct, JetShapes, TagScores
from e2e.errors import ConfigError
from e2e.event import EventBatch
from e2e.module import Producer
from e2e.params import input_tag, param
from taggers.artefact import ONNX, Artefact


@dataclass
class TaggerParams:
    model: str = param(help="model artefact: zoo:NAME or a directory with model.yaml, weights, model.onnx")
    backend: str = param("onnxruntime", "inference backend", choices=("onnxruntime", "torch"))
    device: str = param("auto", "cpu, cuda, or auto (CUDA when really available)", choices=("cpu", "cuda", "auto"))
    micro_batch: int = param(128, "jets per inference call (smaller batches stay in cache)", minimum=1)
    threads: int = param(0, "CPU threads of the backend (0: its default)", minimum=0)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class TaggerBase(Producer):
    """Shared machinery: artefact, input check, lazy session, micro-batches, TagScores."""

    input_param = ""
    product_kind = ""
    #: names of the model inputs this tagger feeds (ONNX input names, in order)
    input_names: tuple[str, ...] = ()

    def __init__(self, label: str, params: Any) -> None:
        super().__init__(label, params)
        self.artefact = Artefact.load(params.model, f"modules.{label}.model")
        self._session: Any = None
        self._device = ""
        self._checked = False

    def produces(self) -> dict[str, type]:
        return {"": TagScores}

    # ------------------------------------------------------------------------------------ sessions
    def _cuda(self) -> bool:
        want = self.params.device
        if self.params.backend == "torch":
            import torch

            ok = torch.cuda.is_available()
        else:
            import onnxruntime as ort

            ok = "CUDAExecutionProvider" in ort.get_available_providers() and _cuda_device_present()
        if want == "cuda" and not ok:
            raise ConfigError(f"modules.{self.label}.device: cuda requested but no CUDA device/provider is "
                              f"available for {self.params.backend}; use device: cpu or auto")
        return ok and want != "cpu"

    def session(self) -> Any:
        """The inference session of this process, created at first use."""
        if self._session is not None:
            return self._session
        cuda = self._cuda()
        if self.params.backend == "torch":
            import torch

            if self.params.threads:
                torch.set_num_threads(self.params.threads)
            device = "cuda" if cuda else "cpu"
            self._session = self.artefact.build_torch(device)
            self._device = f"torch on {device}" + (f" ({torch.cuda.get_device_name()})" if cuda else "")
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            if self.params.threads:
                options.intra_op_num_threads = self.params.threads
                options.inter_op_num_threads = 1
            providers = (["CUDAExecutionProvider"] if cuda else []) + ["CPUExecutionProvider"]
            self._session = self._onnx_session(ort, options, providers)
            self._device = f"onnxruntime, {self._session.get_providers()[0]}"
        return self._session

    def _onnx_session(self, ort: Any, options: Any, providers: list[str]) -> Any:
        """The ONNX Runtime session of the artefact; a missing or invalid model.onnx, or one whose inputs are
        not what this tagger feeds, is one line naming the file."""
        path = self.artefact.path / ONNX
        if not path.is_file():
            raise ConfigError(f"modules.{self.label}.model: {self.artefact.path}: no {ONNX} (the onnxruntime "
                              "backend runs it; backend: torch runs weights.safetensors)")
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:
            first = " ".join(str(err).split())
            first = first if len(first) <= 200 else first[:197] + "..."
            raise ConfigError(f"modules.{self.label}.model: {path}: onnxruntime cannot load it ({first}); "
                              "expected an ONNX model as e2e-train exports") from err
        names = [i.name for i in session.get_inputs()]
        if sorted(names) != sorted(self.input_names):
            raise ConfigError(f"modules.{self.label}.model: {path}: the model takes inputs {', '.join(names)}; "
                              f"{type(self).__name__} feeds {', '.join(self.input_names)}")
        return session

    def describe(self) -> str:
        name = self.artefact.spec.get("name", self.artefact.path.name)
        return f"model {name}: {self._device or 'not run'}, micro-batch {self.params.micro_batch} jets"

    def run_model(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Logits of one micro-batch from either backend."""
        session = self.session()
        if self.params.backend == "torch":
            import torch

            device = next(session.parameters()).device
            with torch.inference_mode():
                out = session(*(torch.from_numpy(v).to(device) for v in inputs.values()))
            return out.float().cpu().numpy()
        return session.run(None, inputs)[0]

    # ------------------------------------------------------------------------------------ produce
    def per_jet_input(self, product: Any) -> tuple[str, np.ndarray]:
        """(ONNX input name, array with one row per jet) for taggers whose input is sliced by jet."""
        raise NotImplementedError

    def micro_batches(self, product: Any) -> Any:
        """Model inputs of consecutive groups of ``micro_batch`` jets."""
        name, rows = self.per_jet_input(product)
        step = self.params.micro_batch
        for a in range(0, len(rows), step):
            yield {name: rows[a:a + step]}

    def produce(self, batch: EventBatch) -> None:
        product: JetProduct = batch.get(getattr(self.params, self.input_param))
        if not self._checked:
            produced = dict(product.params)
            if isinstance(product, JetShapes):
                produced["names"] = list(product.names)
            self.artefact.check_inputs({"product": self.product_kind, **produced}, f"modules.{self.label}")
            self._checked = True
        self.session()  # at the setup warm-up (an empty batch): imports and session creation count as setup
        logits = [self.run_model(inputs) for inputs in self.micro_batches(product)]
        n_out = len(self.artefact.outputs)
        values = (_softmax(np.concatenate(logits)) if logits else np.zeros((0, n_out))).astype(np.float32)
        batch.put(self.label, TagScores(product.event_offsets, product.jet_index,
                                        {"model": self.params.model, **self.artefact.spec.get("provenance", {})},
                                        values=values, names=self.artefact.outputs))


def _cuda_device_present() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


class GNNTagger(TaggerBase):
    """Graph tagger on JetGraphs (x, fixed-k neighbours, graph index, node offsets)."""

    input_param = "graphs"
    product_kind = "graphs"
    input_names = ("x", "neighbors", "batch", "ptr")

    @dataclass
    class Params(TaggerParams):
        graphs: str = input_tag("jetGraphs", "graphs to tag", product=JetGraphs)

    def micro_batches(self, g: JetGraphs) -> Any:
        step = self.params.micro_batch
        batch_vector = g.batch_vector()
        for a in range(0, g.n_jets, step):
            b = min(a + step, g.n_jets)
            na, nb = int(g.node_offsets[a]), int(g.node_offsets[b])
            yield {"x": g.x[na:nb], "neighbors": g.neighbors[na:nb] - na, "batch": batch_vector[na:nb] - a,
                   "ptr": g.node_offsets[a:b + 1] - na}


class CNNTagger(TaggerBase):
    """Image tagger on JetFrames."""

    input_param = "frames"
    product_kind = "frames"
    input_names = ("frames",)

    @dataclass
    class Params(TaggerParams):
        frames: str = input_tag("jetFrames", "frames to tag", product=JetFrames)

    def per_jet_input(self, f: JetFrames) -> tuple[str, np.ndarray]:
        return "frames", f.data


class ShapeTagger(TaggerBase):
    """Classical baseline on per-jet observables (JetShapeProducer)."""

    input_param = "shapes"
    product_kind = "table"
    input_names = ("values",)

    @dataclass
    class Params(TaggerParams):
        shapes: str = input_tag("jetShapes", "jet shapes to tag", product=JetShapes)

    def per_jet_input(self, t: JetShapes) -> tuple[str, np.ndarray]:
        return "values", t.values
