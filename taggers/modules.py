"""Tagger modules: GNNTagger (JetGraphs) and CNNTagger (JetFrames) -> TagScores, with torch or ONNX Runtime.

One inference session per process, created lazily at the first batch (never pickled); thread counts are
explicit; all jets of a batch run in micro-batches of ``micro_batch`` jets with dynamic axes, never one call
per jet. ``device: auto`` uses CUDA only when it is really there (torch: ``torch.cuda.is_available()``;
ONNX Runtime: the CUDA execution provider is installed and a CUDA device exists); the run summary says which
device and execution provider ran.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataformats.products import JaggedCollection, JetFrames, JetGraphs, JetProduct, JetShapes, TagScores
from e2e.errors import ConfigError
from e2e.event import EventBatch
from e2e.module import Producer
from e2e.params import MAX_THREADS, input_tag, param
from taggers.artefact import ONNX, Artefact
from taggers.inputs import INPUT_KINDS, InputKind, jet_groups
from taggers.transfer import to_device


@dataclass
class TaggerParams:
    model: str = param(help="model artefact: zoo:NAME or a directory with model.yaml, weights, model.onnx")
    backend: str = param("onnxruntime", "inference backend", choices=("onnxruntime", "torch"))
    device: str = param("auto", "cpu, cuda, or auto (CUDA when really available)", choices=("cpu", "cuda", "auto"))
    micro_batch: int = param(128, "jets per inference call (smaller batches stay in cache)", minimum=1)
    precision: str = param(
        "float32",
        "float32 (on CUDA, scores equal the CPU's to ~1e-6); tf32 (CUDA: TF32 products and convolutions, faster, "
        "scores move by up to ~3e-2; the CPU runs float32); bf16 (CPU, backend torch: ParticleNet's edge MLPs as "
        "bfloat16 products with float32 sums, ~1.3x faster on AMX, scores move by ~2e-4 on average, up to ~5e-2)",
        choices=("float32", "tf32", "bf16"),
    )
    threads: int = param(
        0, "CPU threads of the backend (0: the job's options.threads, else all cores)", minimum=0, maximum=MAX_THREADS
    )
    jets: str = input_tag(
        "source:Jet", "jets whose pT a regression head's pT calibration reads (read only for such models)",
        product=JaggedCollection,
    )  # fmt: skip


class TaggerBase(Producer):
    """Shared machinery: artefact, input check, lazy session, micro-batches, TagScores.

    A subclass names its input kind (taggers.inputs: graphs, frames, table) and declares the input parameter
    the kind names (``tagger_param``); the kind makes the micro-batches and names the model inputs.
    """

    kind_name = ""

    def __init__(self, label: str, params: Any) -> None:
        super().__init__(label, params)
        self.artefact = Artefact.load(params.model, f"modules.{label}.model")
        self.input_kind: InputKind = INPUT_KINDS[self.kind_name]
        model_kind = self.artefact.input_kind
        if model_kind is not self.input_kind:
            raise ConfigError(
                f"modules.{label}.model: {self.artefact.path.name} reads {model_kind.name} "
                f"({model_kind.product.__name__}); {type(self).__name__} serves {self.input_kind.name}: "
                f"use {model_kind.tagger}"
            )
        if params.precision == "bf16" and params.backend != "torch":
            raise ConfigError(
                f"modules.{label}.precision: bf16 runs with backend: torch (its bfloat16 edge MLPs on CPU); "
                f"backend {params.backend} runs float32: set backend: torch, or precision: float32"
            )
        self.feed = self.artefact.feed
        self._feed_names: list[str] = []
        self._session: Any = None
        self._device = ""
        self._checked = False
        self._feed_checked = False  # the first ONNX Runtime feed checked against the graph's inputs
        self._torch_cuda = False  # the torch session is on CUDA (set with the session)
        self._threads = 0  # torch on CPU: the intra-op threads of a lone micro-batch, the pool size otherwise
        self._pool: ThreadPoolExecutor | None = None

    @property
    def input_names(self) -> tuple[str, ...]:
        """The model inputs this tagger feeds, in call order."""
        return self.input_kind.input_names

    def produces(self) -> dict[str, type]:
        return {"": TagScores}

    def files_read(self) -> list[str]:
        """The model artefact's files (model.yaml, weights, model.onnx, ...)."""
        return [str(p) for p in self.artefact.path.iterdir() if p.is_file()]

    def consumes(self) -> dict[str, type | None]:
        """The input product, and the jets only for a model whose scores depend on the jet pT."""
        out = super().consumes()
        if not self.feed.needs_pt and self.params.jets != getattr(self.params, self.input_kind.tagger_param):
            out.pop(self.params.jets, None)  # (not the input product, when both name one tag: its type is checked)
        return out

    def fields_needed(self) -> dict[str, tuple[str, ...]]:
        return {self.params.jets: ("pt",)} if self.feed.needs_pt else {}

    def jet_pt(self, batch: EventBatch, product: JetProduct) -> np.ndarray:
        """The pT (GeV) of every jet of ``product``, from ``jets`` (the collection its jet_index refers to)."""
        jets: JaggedCollection = batch.get(self.params.jets)
        if not np.array_equal(jets.offsets, product.event_offsets):
            raise ConfigError(
                f"modules.{self.label}.jets: {self.params.jets} is not the jet collection the "
                f"{getattr(self.params, self.input_kind.tagger_param)} product was made from (its jets per event "
                "differ); name the collection the producer reads"
            )
        return np.asarray(jets["pt"], dtype=np.float64)[jets.offsets[product.jet_event()] + product.jet_index]

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
            raise ConfigError(
                f"modules.{self.label}.device: cuda requested but no CUDA device/provider is "
                f"available for {self.params.backend}; use device: cpu or auto"
            )
        return ok and want != "cpu"

    def session(self) -> Any:
        """The inference session of this process, created at first use."""
        if self._session is not None:
            return self._session
        cuda = self._cuda()
        if self.params.backend == "torch":
            import torch

            if self.artefact.external or not self.feed.default:
                raise ConfigError(
                    f"modules.{self.label}.backend: torch needs an architecture trained by e2e; "
                    f"{self.artefact.path.name} is an ONNX model with its own inputs: use backend: "
                    "onnxruntime"
                )

            bf16 = self.params.precision == "bf16"
            if bf16 and cuda:
                raise ConfigError(
                    f"modules.{self.label}.precision: bf16 is the CPU's bfloat16 path and this tagger would run on "
                    f"CUDA (device: {self.params.device}); set device: cpu, or precision: float32 or tf32 on CUDA"
                )
            threads = self.params.threads or self.job_threads
            if threads:
                torch.set_num_threads(threads)
            self._threads = 0 if cuda else torch.get_num_threads()
            device = "cuda" if cuda else "cpu"
            model = self.artefact.build_torch(device, bf16=bf16)
            if bf16:
                from taggers.models.particlenet import bf16_note, has_edgeconv

                if not has_edgeconv(model):
                    raise ConfigError(
                        f"modules.{self.label}.precision: bf16 changes EdgeConv blocks (ParticleNet) only; "
                        f"{self.artefact.path.name} ({type(model).__name__}) has none: use precision: float32"
                    )
            self._session = model
            self._torch_cuda = cuda
            self._device = f"torch on {device}" + (
                f" ({torch.cuda.get_device_name()}, {self.params.precision})" if cuda else ""
            )
            if bf16:
                self._device += f", {bf16_note()}"
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            threads = self.params.threads or self.job_threads
            if threads:
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
            # cuDNN's algorithm search by heuristics, not by timing every algorithm (ONNX Runtime's default): each
            # new micro-batch shape (every event batch's last one) cost tau_cnn 350-540 us/jet instead of 115-130,
            # and the steady state was 1.2x slower (H200, onnxruntime-gpu 1.31)
            cuda_options = {
                "use_tf32": "1" if self.params.precision == "tf32" else "0",
                "cudnn_conv_algo_search": "HEURISTIC",
            }
            providers = ([("CUDAExecutionProvider", cuda_options)] if cuda else []) + ["CPUExecutionProvider"]
            session = self._onnx_session(ort, options, providers)
            first = session.get_providers()[0]
            fell_back = cuda and first != "CUDAExecutionProvider"
            if fell_back and self.params.device == "cuda":
                raise ConfigError(
                    f"modules.{self.label}.device: cuda requested but ONNX Runtime could not start its CUDA execution "
                    f"provider (it ran {first}; CUDA or cuDNN libraries missing or of another version?); use "
                    "device: cpu or auto, or backend: torch"
                )
            self._device = (
                f"onnxruntime, {first}"
                + (" (the CUDA provider did not start)" if fell_back else "")
                + (f", {self.params.precision}" if first != "CPUExecutionProvider" else "")
            )
            self._session = session
        return self._session

    def _onnx_session(self, ort: Any, options: Any, providers: list[Any]) -> Any:
        """The ONNX Runtime session of the artefact; a missing or invalid model.onnx, or one whose inputs are
        not what this tagger feeds, is one line naming the file."""
        path = self.artefact.path / ONNX
        if not path.is_file():
            raise ConfigError(
                f"modules.{self.label}.model: {self.artefact.path}: no {ONNX} (the onnxruntime "
                "backend runs it; backend: torch runs weights.safetensors)"
            )
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:
            first = " ".join(str(err).split())
            first = first if len(first) <= 200 else first[:197] + "..."
            raise ConfigError(
                f"modules.{self.label}.model: {path}: onnxruntime cannot load it ({first}); "
                "expected an ONNX model as e2e-train exports"
            ) from err
        self._feed_names = self.feed.check_session(session, len(self.artefact.outputs), self.params.micro_batch)
        self.artefact.check_embedded(session.get_modelmeta().custom_metadata_map, f"modules.{self.label}.model")
        return session

    def _fused_note(self) -> str:
        """On CUDA with torch: whether ParticleNet's EdgeConv ran as the fused Triton kernel (it is switched off in a
        process where it failed to compile, with a warning)."""
        if not self._torch_cuda:
            return ""
        from taggers.models import edgeconv_cuda

        return ", EdgeConv fused by Triton" if edgeconv_cuda.used_by(self._session) else ""

    def describe(self) -> str:
        name = self.artefact.spec.get("name", self.artefact.path.name)
        return (
            f"model {name}: {self._device or 'not run'}{self._fused_note()}, micro-batch {self.params.micro_batch} jets"
        )

    def run_model(self, inputs: dict[str, np.ndarray], feature_names: tuple[str, ...] = ()) -> np.ndarray:
        """The model's output for one micro-batch of the kind's inputs, from either backend."""
        session = self.session()
        if self.params.backend == "torch":
            import torch

            if not self._torch_cuda:
                with torch.inference_mode():
                    out = session(*[torch.from_numpy(v) for v in inputs.values()])
                return out.float().numpy()
            with torch.inference_mode(), tf32_switches(self.params.precision == "tf32"):
                sparse = self.input_kind.sparse_inputs
                out = session(*[to_device(v, "cuda", k in sparse) for k, v in inputs.items()])
            return out.float().cpu().numpy()
        feed = self.feed.build(inputs, feature_names, self._feed_names)
        if not self._feed_checked:  # once: what the ONNX graph declares against what is fed
            check_onnx_feed(session, feed, str(self.artefact.path / ONNX))
            self._feed_checked = True
        return session.run(None, feed)[0]

    def _run_micro_batches(self, product: JetProduct, names: tuple[str, ...]) -> list[np.ndarray]:
        """The model's outputs for every micro-batch of ``product``, in order.

        torch on CPU with several threads runs that many micro-batches at once, each on one thread, instead of
        splitting every operation over the threads: no barrier after each of the model's ~100 operations, so
        1.2-1.4x faster on 2 cores, quiet or loaded, with the same scores bit for bit (tested). A lone
        micro-batch (a single event) keeps all threads for its operations. At most as many micro-batches as threads
        are in flight (their inputs made one at a time, as without threads). For a network whose jets do not depend
        on their micro-batch (``rows_independent``, e.g. ParticleNet), the micro-batches are made equal and as many
        as a multiple of the threads, so that none runs alone at the end (at most ``micro_batch`` jets each;
        :func:`~taggers.inputs.jet_groups`)."""
        step = self.params.micro_batch
        balance = self._threads >= 2 and product.n_jets > step and self._rows_independent()
        parts = self._threads if balance else 1
        groups = jet_groups(product.n_jets, step, parts)  # the micro-batches' jets, for the check of their outputs
        batches = self.input_kind.micro_batches(product, step, parts)
        if self._threads < 2:
            return self._checked_outputs([self.run_model(inputs, names) for inputs in batches], groups)
        head = list(itertools.islice(batches, 2))
        if len(head) < 2:
            return self._checked_outputs([self.run_model(inputs, names) for inputs in head], groups)
        import torch

        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, f"e2e-{self.label}", initializer=_one_kernel_thread)
        out: list[np.ndarray] = []
        running: deque[Future[np.ndarray]] = deque()
        torch.set_num_threads(1)
        try:
            for inputs in itertools.chain(head, batches):
                if len(running) == self._threads:
                    out.append(running.popleft().result())
                running.append(self._pool.submit(self.run_model, inputs, names))
            out.extend(f.result() for f in running)
        finally:
            for f in running:
                f.cancel()
            torch.set_num_threads(self._threads)
        return self._checked_outputs(out, groups)

    def _checked_outputs(self, outputs: list[np.ndarray], groups: list[tuple[int, int]]) -> list[np.ndarray]:
        """The micro-batches' outputs, each checked to hold one row of numbers per jet of its group (a model of
        your own may return a row per node, or one row, or bools: refused in one line, never written)."""
        what = "model.onnx" if self.params.backend == "onnxruntime" else f"the network ({type(self._session).__name__})"
        n_out = len(self.artefact.outputs)
        for values, (a, b) in zip(outputs, groups, strict=True):
            self.feed.check_outputs(values, n_out, b - a, what)
        return outputs

    def _rows_independent(self) -> bool:
        """Whether the torch network's outputs for a jet do not depend on its micro-batch (StandardisedNet)."""
        from taggers.models.networks import StandardisedNet

        return isinstance(self._session, StandardisedNet) and self._session.rows_independent

    def end(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        super().end()

    # ------------------------------------------------------------------------------------ produce
    def check_product(self, product: JetProduct) -> None:
        """Refuse a product whose recorded parameters differ from the model's input spec (one line)."""
        self.artefact.check_inputs(
            {"product": self.input_kind.name, **self.input_kind.record(product)}, f"modules.{self.label}"
        )

    def produce(self, batch: EventBatch) -> None:
        product: JetProduct = batch.get(getattr(self.params, self.input_kind.tagger_param))
        if not self._checked:
            self.check_product(product)
            self._checked = True
        self.session()  # at the setup warm-up (an empty batch): imports and session creation count as setup
        raw = self._run_micro_batches(product, self.input_kind.feature_names(product))
        n_out = len(self.artefact.outputs)
        if raw:
            out = np.concatenate(raw)
            pt = self.jet_pt(batch, product) if self.feed.needs_pt else None
            values = self.feed.scores(out, pt).astype(np.float32)
            finite = np.isfinite(values).all(axis=1)
            if not finite.all():  # the model's own output (e.g. NaN weights): written as it is, and said
                self.count("jets with a NaN or infinite score (the model's output)", int(np.count_nonzero(~finite)))
        else:
            values = np.zeros((0, n_out), dtype=np.float32)
        batch.put(
            self.label,
            TagScores(
                product.event_offsets,
                product.jet_index,
                {
                    "model": self.params.model,
                    **self.artefact.spec.get("provenance", {}),
                    **({"heads": _ordered_heads(self.artefact.spec["heads"])} if "heads" in self.artefact.spec else {}),
                },
                values=values,
                names=self.artefact.outputs,
            ),
        )


@contextmanager
def tf32_switches(allow: bool) -> Iterator[None]:
    """torch's TF32 switches (process-wide) set for one CUDA call and restored after it: float32 unless ``allow``
    (torch's own default lets cuDNN convolutions use TF32, which moved tau_cnn's scores by up to 7e-4)."""
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _cuda_device_present() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


class GNNTagger(TaggerBase):
    """Graph tagger on JetGraphs (x, fixed-k neighbours, graph index, node offsets)."""

    kind_name = "graphs"

    @dataclass
    class Params(TaggerParams):
        graphs: str = input_tag("jetGraphs", "graphs to tag", product=JetGraphs)

    def check_product(self, product: JetProduct) -> None:
        """Pixel graphs (JetGraphProducer) and hit graphs (HitGraphProducer) first: the record's ``nodes``, missing
        (models and products from before hit graphs) meaning pixels."""
        model = str(self.artefact.input_spec.get("nodes", "pixels"))
        got = str(product.params.get("nodes", "pixels"))
        if model != got:
            producer = {"pixels": "JetGraphProducer", "hits": "HitGraphProducer"}.get(model, "another producer")
            raise ConfigError(
                f"modules.{self.label}.graphs: model {self.artefact.path.name} was trained on graphs whose nodes are "
                f"{model}, the producer makes graphs whose nodes are {got}; make the graphs with {producer}"
            )
        super().check_product(product)


class CNNTagger(TaggerBase):
    """Image tagger on JetFrames."""

    kind_name = "frames"

    @dataclass
    class Params(TaggerParams):
        frames: str = input_tag("jetFrames", "frames to tag", product=JetFrames)


class ShapeTagger(TaggerBase):
    """Classical baseline on per-jet observables (JetShapeProducer)."""

    kind_name = "table"

    @dataclass
    class Params(TaggerParams):
        shapes: str = input_tag("jetShapes", "jet shapes to tag", product=JetShapes)


def _ordered_heads(heads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The heads of model.yaml with ``classes`` as [[name, value], ...]: the provenance is JSON with sorted keys,
    which would reorder a mapping."""
    return [{**h, "classes": [[k, v] for k, v in h["classes"].items()]} if "classes" in h else h for h in heads]


#: ONNX tensor element types -> numpy dtypes (those a tagger feeds)
_ONNX_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


def check_onnx_feed(session: Any, feed: Mapping[str, np.ndarray], where: str) -> None:
    """One-line ConfigError when an input of the ONNX graph ``session`` does not take what the tagger feeds: its
    rank, a fixed dimension (e.g. 7 features per node where the producer makes 14) or its element type."""
    for spec in session.get_inputs():
        array = feed.get(spec.name)
        if array is None:
            continue  # (the feed names the graph's inputs: a missing one is ONNX Runtime's own error)
        shape = list(spec.shape)
        want = _ONNX_TYPES.get(spec.type)
        fixed = all(not isinstance(d, int) or d == n for d, n in zip(shape, array.shape, strict=False))
        if len(shape) != array.ndim or not fixed or (want is not None and array.dtype != want):
            shown = "[" + ", ".join(str(d) if isinstance(d, int) else "n" for d in shape) + "]"
            raise ConfigError(
                f"{where}: input '{spec.name}' takes {shown} {spec.type}, the tagger feeds {list(array.shape)} "
                f"{array.dtype}: the model was exported for other inputs (another producer's features?)"
            )


def _one_kernel_thread() -> None:
    """A thread of a tagger's micro-batch pool runs the numba kernels it calls (the in-model kNN's selection) in
    itself: the pool already keeps every core busy."""
    import numba

    numba.set_num_threads(1)
