"""Model artefacts: a directory with ``model.onnx`` (metadata inside), ``weights.safetensors`` and ``model.yaml``.

``model.yaml`` holds the architecture and its hyperparameters, the input spec (the producer parameters the
model was trained on: channels, window, k, scaling, ...), the output names, the training provenance (command,
config hash, dataset sizes, seed) and the held-out metrics. The ONNX file carries the same YAML as the
metadata entry ``e2e_model_yaml``. Weights are read with safetensors only: nothing is ever unpickled.

``zoo:NAME`` names an artefact shipped in the package (``taggers/zoo/NAME``); anything else is a directory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

from dataformats.products import COLUMN_NAME
from e2e.errors import ConfigError, short
from e2e.paths import atomic_file
from e2e.yamlio import load_yaml_file, load_yaml_text
from taggers.feed import Feed, parse_feed
from taggers.inputs import INPUT_KINDS, InputKind
from taggers.models.registry import BUILTIN_ARCHITECTURES, EXTERNAL, resolve_architecture

ZOO = Path(__file__).resolve().parent / "zoo"
MODEL_YAML, WEIGHTS, ONNX = "model.yaml", "weights.safetensors", "model.onnx"
#: the test metrics and training history e2e-train writes next to them
METRICS_JSON = "metrics.json"
ONNX_METADATA_KEY = "e2e_model_yaml"


#: A zoo name: letters, digits, '_', '-' and '.', no path separator and no '..'.
ZOO_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: Files that hold pickled weights: reported, never loaded.
PICKLED_WEIGHTS = ("*.pt", "*.pth", "*.bin", "*.ckpt", "*.pkl", "*.pickle")
#: Largest safetensors header accepted (bytes); e2e's are a few kB.
MAX_SAFETENSORS_HEADER = 16 * 1024 * 1024


def zoo_names() -> list[str]:
    """Names of the artefacts shipped in the zoo."""
    return sorted(p.name for p in ZOO.iterdir() if (p / MODEL_YAML).is_file()) if ZOO.is_dir() else []


def resolve(model: str, where: str = "model") -> Path:
    """The artefact directory of ``zoo:NAME`` or a path; one-line error naming what exists."""
    if model.startswith("zoo:"):
        name = model[4:]
        if not ZOO_NAME_RE.fullmatch(name) or ".." in name:
            raise ConfigError(
                f"{where}: {short(model)} is not a zoo name (letters, digits, '_', '-', '.'; no '/' "
                "or '..'); give a model directory as a plain path, without 'zoo:'"
            )
        path = ZOO / name
        if not (path / MODEL_YAML).is_file():
            raise ConfigError(f"{where}: no zoo model '{name}' (zoo: {', '.join(zoo_names()) or 'empty'})")
        return path
    path = Path(model)
    expected = f"a model artefact is a directory with {MODEL_YAML}, {WEIGHTS} and {ONNX}, or zoo:NAME"
    if not model or not path.exists():
        raise ConfigError(f"{where}: no model directory '{model}' ({expected})")
    if not path.is_dir():
        raise ConfigError(f"{where}: '{model}' is a file, not a model directory ({expected})")
    if not (path / MODEL_YAML).is_file():
        found = ", ".join(sorted(p.name for p in path.iterdir())[:6]) or "nothing"
        raise ConfigError(f"{where}: '{model}' has no {MODEL_YAML} (it holds {found}; {expected})")
    return path


#: an output name, the end of its branch name ``Jet_<tagger>_<name>``
OUTPUT_NAME = COLUMN_NAME
#: the most weights (parameters and buffers) a model artefact may make (the shipped ones: < 1 million)
MAX_PARAMETERS = 1_000_000_000


def _non_finite(value: Any, path: str = "") -> str:
    """The dotted path of the first NaN or infinite number in nested hyperparameters, else ""."""
    if isinstance(value, float) and not math.isfinite(value):
        return path.lstrip(".") or "value"
    if isinstance(value, dict):
        for k, v in value.items():
            found = _non_finite(v, f"{path}.{k}")
            if found:
                return found
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _non_finite(v, f"{path}[{i}]")
            if found:
                return found
    return ""


def _require(cond: bool, where: Path, message: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {message}")


def flush_subnormals(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with every subnormal floating-point value (``0 < |w| < finfo.tiny``, 1.2e-38 in float32) set to zero,
    in place. Training with weight decay leaves such weights in dead units (1,465 in tau_gnn_fast's head), and on x86
    every multiplication by one takes a microcode assist (~100x slower): that head's product took 6.3 ms instead of
    ~20 us per 512 jets. Each such term is below 1.2e-38 x |input|, far below half an ulp of the sums it enters, so
    the scores are unchanged (tau_gnn_fast's, bit for bit: tests/test_zoo.py; the other zoo models have none)."""
    import torch

    for t in state.values():
        if t.is_floating_point():
            t.masked_fill_((t != 0) & (t.abs() < torch.finfo(t.dtype).tiny), 0.0)
    return state


@dataclasses.dataclass
class Artefact:
    """A loaded ``model.yaml`` and where its files are."""

    path: Path
    spec: dict[str, Any]

    @classmethod
    def load(cls, model: str, where: str = "model") -> Artefact:
        """Resolve and read ``model.yaml`` (bounded safe YAML), checking its structure; one-line ConfigError."""
        path = resolve(model, where)
        yml = path / MODEL_YAML
        spec = load_yaml_file(yml, MODEL_YAML)
        _require(isinstance(spec, dict), yml, "expected a mapping with architecture, input and outputs")
        for key in ("architecture", "input", "outputs"):
            _require(key in spec, yml, f"missing '{key}' (a model.yaml has architecture, input and outputs)")
        arch = spec["architecture"]
        _require(
            isinstance(arch, dict) and isinstance(arch.get("name"), str),
            yml,
            "architecture: expected a mapping with a name and hyperparameters",
        )
        class_path = arch.get("class_path", "")
        _require(isinstance(class_path, str), yml, "architecture.class_path: expected package.module:Class")
        known = [*BUILTIN_ARCHITECTURES, EXTERNAL]
        _require(
            bool(class_path) or arch["name"] in known,
            yml,
            f"architecture.name {short(arch['name'])} is not a known architecture (built-in: "
            f"{', '.join(BUILTIN_ARCHITECTURES)}; '{EXTERNAL}' for an ONNX-only model; or a class_path)",
        )
        _require(
            isinstance(arch.get("hyperparameters", {}), dict),
            yml,
            "architecture.hyperparameters: expected a mapping of keyword arguments",
        )
        _require(isinstance(spec["input"], dict), yml, "input: expected a mapping of producer parameters")
        _require(
            "product" in spec["input"],
            yml,
            f"input.product: missing; the kind of product the model reads: {', '.join(INPUT_KINDS)}",
        )
        _require(
            spec["input"]["product"] in INPUT_KINDS,
            yml,
            f"input.product {short(spec['input']['product'])} is not an input kind ({', '.join(INPUT_KINDS)})",
        )
        outputs = spec["outputs"]
        _require(
            isinstance(outputs, list) and bool(outputs) and all(isinstance(o, str) for o in outputs),
            yml,
            f"outputs: expected a non-empty list of output names, got {short(outputs)}",
        )
        bad = [o for o in outputs if not OUTPUT_NAME.fullmatch(o)]
        _require(
            not bad,
            yml,
            f"outputs: {short(bad[0]) if bad else ''} is not a name for a branch (letters, digits and _, "
            "starting with a letter: Jet_<tagger>_<name>)",
        )
        twice = sorted({o for o in outputs if outputs.count(o) > 1})
        _require(not twice, yml, f"outputs: {', '.join(twice)} named twice (each output is one branch)")
        artefact = cls(path, spec)
        artefact.feed  # noqa: B018 - checks the feed block at load
        return artefact

    @property
    def input_kind(self) -> InputKind:
        """How the model is fed (taggers.inputs), from ``input.product``."""
        return INPUT_KINDS[self.spec["input"]["product"]]

    @property
    def feed(self) -> Feed:
        """How the ONNX model is fed and what its output is (taggers.feed; e2e's own inputs and logits unless
        model.yaml says otherwise)."""
        return parse_feed(self.spec, self.input_kind, self.path / MODEL_YAML)

    @property
    def external(self) -> bool:
        """An ONNX-only model (trained elsewhere): no torch architecture."""
        return self.spec["architecture"]["name"] == EXTERNAL and not self.spec["architecture"].get("class_path")

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(self.spec["outputs"])

    @property
    def input_spec(self) -> dict[str, Any]:
        return dict(self.spec["input"])

    def check_embedded(self, metadata: dict[str, str], where: str) -> None:
        """``model.onnx``'s embedded copy of model.yaml (its metadata ``metadata``, ONNX Runtime's custom metadata
        map; e2e writes it at every export) against ``model.yaml``: what decides how the model is fed and how its
        output is read (``input``, ``outputs``, ``output``, ``feed``, and of the ``heads`` their names, types, targets,
        classes and columns; not their calibration, applied after the model) must agree, else one line naming the first
        difference (an edited model.yaml, say its class names swapped, would label every score wrongly). An ONNX
        file without the entry (one of your own) is not checked."""
        text = metadata.get(ONNX_METADATA_KEY)
        if text is None:
            return
        onnx_path = self.path / ONNX
        try:
            embedded = load_yaml_text(text, f"{onnx_path} (metadata {ONNX_METADATA_KEY})")
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        if not isinstance(embedded, dict):
            raise ConfigError(f"{where}: {onnx_path}: its metadata {ONNX_METADATA_KEY} is not a model.yaml mapping")
        for key in ("outputs", "output", "input", "feed", "heads"):
            now, then = _as_exported(key, self.spec.get(key)), _as_exported(key, embedded.get(key))
            if now != then:
                name = key
                absent = object()
                if isinstance(now, dict) and isinstance(then, dict):  # (the first entry that differs, by name)
                    sub = next((k for k in [*now, *then] if now.get(k, absent) != then.get(k, absent)), None)
                    if sub is not None:
                        name, now, then = f"{key}.{sub}", now.get(sub, absent), then.get(sub, absent)
                shown = ["absent" if v is absent else short(v) for v in (now, then)]
                raise ConfigError(
                    f"{where}: {self.path / MODEL_YAML} {name} {shown[0]} differs from the model.yaml {ONNX} was "
                    f"exported with ({name} {shown[1]}, its metadata {ONNX_METADATA_KEY}): put model.yaml's {key} "
                    "back, or re-export the ONNX model (e2e-reexport)"
                )

    def build_torch(self, device: str = "cpu", inference: bool = True, bf16: bool = False) -> Any:
        """The torch module with its weights (safetensors, names and shapes checked first; subnormal values flushed to
        zero, :func:`flush_subnormals`), in eval mode, frozen for inference
        (:func:`~taggers.models.particlenet.freeze_for_inference`; ``bf16``: its EdgeConv blocks with bfloat16
        products on CPU); ``inference=False``: the stored weights as they are, not frozen (as e2e-train exported
        them)."""
        from safetensors.torch import load_file

        arch = self.spec["architecture"]
        hyper = arch.get("hyperparameters", {})
        cls = resolve_architecture(arch["name"], arch.get("class_path", ""), str(self.path / MODEL_YAML))
        model = self._construct(cls, hyper, arch["name"])
        weights = self.path / WEIGHTS
        stored = read_safetensors_header(weights)
        expected = model.state_dict()
        _check_tensors(weights, stored, {k: tuple(v.shape) for k, v in expected.items()}, arch["name"])
        _check_dtypes(weights, stored, {k: v.dtype for k, v in expected.items()})
        try:
            state = load_file(str(weights), device="cpu")
        except Exception as err:
            raise ConfigError(
                f"{weights}: cannot be read as safetensors ({type(err).__name__}: {short(str(err))})"
            ) from err
        if not inference:
            model.load_state_dict(state)
            return model.to(device).eval()
        model.load_state_dict(flush_subnormals(state))
        from taggers.models.particlenet import freeze_for_inference

        return freeze_for_inference(model.to(device).eval(), bf16)

    def _construct(self, cls: Any, hyper: dict[str, Any], name: str) -> Any:
        """``cls(**hyper)``, first on torch's meta device (no memory): hyperparameters that do not fit the class, are
        not finite, or make more than :data:`MAX_PARAMETERS` weights are one line naming model.yaml."""
        import warnings

        import torch

        where = f"{self.path / MODEL_YAML}: architecture.hyperparameters"
        bad = _non_finite(hyper)
        if bad:
            raise ConfigError(f"{where}.{bad}: not a finite number")

        def size(model: Any) -> None:
            n = sum(int(t.numel()) for t in model.state_dict().values())
            if n > MAX_PARAMETERS:
                raise ConfigError(f"{where} make {n:,} weights (at most {MAX_PARAMETERS:,}): refusing to build it")

        with warnings.catch_warnings():  # (torch warns about zero-sized layers, before their error)
            warnings.simplefilter("ignore")
            try:
                with torch.device("meta"):  # shapes only: no memory
                    shapes = cls(**hyper)
            except Exception:  # the real construction below says what does not fit
                shapes = None
            if shapes is not None:
                size(shapes)
            try:
                model = cls(**hyper)
            except (TypeError, ValueError, KeyError, RuntimeError, OverflowError, MemoryError) as err:
                raise ConfigError(f"{where} do not fit {name} ({short(str(err)) or type(err).__name__})") from err
        if shapes is None:
            size(model)
        return model

    def n_parameters(self) -> int:
        """Trainable parameters of the network (buffers such as input scaling and batch-norm statistics excluded)."""
        return sum(p.numel() for p in self.build_torch().parameters())

    def check_inputs(self, produced: dict[str, Any], where: str) -> None:
        """Refuse a producer whose recorded parameters differ from the model's input spec (one line)."""
        diffs = []
        for key, want in self.input_spec.items():
            got = produced.get(key, "<not recorded>")
            if _normal(got) != _normal(want):
                diffs.append(f"{key}: producer {short(got)}, model {short(want)}")
        if diffs:
            raise ConfigError(
                f"{where}: the inputs do not match what model {self.path.name} was trained on ({'; '.join(diffs)})"
            )


def read_safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (dtype, shape) from a safetensors file's header, checking the file covers every tensor.

    One-line ConfigError for a missing file (naming pickled weights found instead), a file that is not
    safetensors (a pickle renamed, ...) and a truncated file. Reads the header only.
    """
    if not path.is_file():
        pickled = sorted({p.name for pattern in PICKLED_WEIGHTS for p in path.parent.glob(pattern)})
        found = (
            (
                f" (found {', '.join(pickled)}: pickled weights are never loaded; save the state_dict with "
                "safetensors.torch.save_file)"
            )
            if pickled
            else ""
        )
        raise ConfigError(f"{path.parent}: no {path.name}{found}; the weights of a model artefact are {WEIGHTS}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or n > min(size - 8, MAX_SAFETENSORS_HEADER):
            pickle = (
                " (it looks like a Python pickle: e2e never unpickles weights)"
                if head[:1] == b"\x80" or head[:2] == b"PK"
                else ""
            )
            raise ConfigError(
                f"{path}: not a safetensors file ({size} bytes; its first 8 bytes announce a header "
                f"of {n} bytes){pickle}; expected weights written by safetensors.torch.save_file"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
        tensors = {
            k: (str(v["dtype"]), tuple(int(d) for d in v["shape"]), tuple(int(o) for o in v["data_offsets"]))
            for k, v in header.items()
            if k != "__metadata__"
        }
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise ConfigError(
            f"{path}: not a safetensors file (its header is not the JSON safetensors writes: {type(err).__name__})"
        ) from None
    data = size - 8 - n
    for name, (_, _, (start, end)) in tensors.items():
        if not 0 <= start <= end <= data:
            raise ConfigError(
                f"{path}: truncated or damaged: tensor '{name}' needs bytes {start}-{end} of the "
                f"data, the file holds {data}"
            )
    return {k: (dt, shape) for k, (dt, shape, _) in tensors.items()}


def _check_tensors(
    path: Path, stored: dict[str, tuple[str, tuple[int, ...]]], expected: dict[str, tuple[int, ...]], arch: str
) -> None:
    """The weights' names and shapes must be exactly the architecture's; name the first tensor that differs."""
    for name, shape in expected.items():
        if name not in stored:
            raise ConfigError(f"{path}: has no tensor '{name}' {list(shape)}, which {arch} (model.yaml) needs")
        if tuple(stored[name][1]) != shape:
            raise ConfigError(
                f"{path}: tensor '{name}' has shape {list(stored[name][1])}, {arch} with the "
                f"hyperparameters of model.yaml expects {list(shape)}"
            )
    extra = [k for k in stored if k not in expected]
    if extra:
        raise ConfigError(
            f"{path}: tensor '{extra[0]}' is not part of {arch} with the hyperparameters of model.yaml"
            f" ({len(extra)} unexpected tensor(s))"
        )


def _check_dtypes(path: Path, stored: dict[str, tuple[str, tuple[int, ...]]], expected: dict[str, Any]) -> None:
    """Each stored tensor is of the kind of the architecture's (floating point for a weight, integer for a counter
    such as ``num_batches_tracked``, boolean for a mask): loading casts within a kind (float64 or float16 weights
    become float32), but integers as weights would be read as other numbers."""
    for name, dtype in expected.items():
        stored_dtype = stored[name][0]
        kind = "float" if dtype.is_floating_point else "bool" if str(dtype) == "torch.bool" else "int"
        have = "float" if stored_dtype.startswith(("F", "BF")) else "bool" if stored_dtype == "BOOL" else "int"
        if have != kind:
            wanted = str(dtype).removeprefix("torch.")
            raise ConfigError(
                f"{path}: tensor '{name}' is stored as {stored_dtype}; the architecture's is {wanted} "
                f"(accepted: any {kind} dtype)"
            )


#: what of a head decides how the model's output columns are read (the rest, its calibration, is applied after)
HEAD_LAYOUT_KEYS = ("name", "type", "target", "classes", "columns")


def _as_exported(key: str, value: Any) -> Any:
    """The part of model.yaml's ``key`` that must be as when the ONNX model was exported."""
    if key == "heads" and isinstance(value, list):
        return [{k: _classes(h.get(k)) if k == "classes" else h.get(k) for k in HEAD_LAYOUT_KEYS}
                if isinstance(h, dict) else h for h in value]  # fmt: skip
    return value


def _classes(value: Any) -> Any:
    """A head's classes as a mapping (model.yaml may give them as [[name, value], ...])."""
    if isinstance(value, list) and all(isinstance(c, list) and len(c) == 2 for c in value):
        return {str(c[0]): c[1] for c in value}
    return value


def _normal(v: Any) -> Any:
    """Comparable form of a recorded parameter: floats to 6 significant digits (producers keep float32 values,
    so a hand-written 0.2 equals a recorded 0.20000000298), ints as floats, lists element-wise."""
    if isinstance(v, (list, tuple)):
        return [_normal(x) for x in v]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(f"{v:.6g}")
    return v


def save(
    path: Path,
    model: Any,
    spec: dict[str, Any],
    example_inputs: tuple[Any, ...],
    input_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> Path:
    """Write an artefact directory: weights (safetensors), model.yaml and model.onnx with the YAML embedded."""
    from safetensors.torch import save_file

    from e2e.paths import final_mode

    path.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / WEIGHTS))
    final_mode(path / WEIGHTS, directory=False)  # (safetensors writes 0600; the other files follow the umask)
    text = yaml.safe_dump(spec, sort_keys=False)
    (path / MODEL_YAML).write_text(text)
    write_onnx(path / ONNX, onnx_model(model, example_inputs, input_names, dynamic_axes), text)
    return path


def onnx_model(
    model: Any, example_inputs: tuple[Any, ...], input_names: list[str], dynamic_axes: dict[str, dict[int, str]]
) -> Any:
    """``model`` (eval mode, CPU) exported as e2e-train exports it: an ONNX ModelProto (opset 18, dynamic axes,
    inputs the model ignores left out)."""
    import io
    import warnings

    import onnx
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            example_inputs,
            buf,  # type: ignore[arg-type]
            dynamo=False,
            opset_version=18,
            input_names=input_names,
            output_names=["logits"],
            dynamic_axes={**{k: v for k, v in dynamic_axes.items() if k in input_names}, "logits": {0: "jets"}},
        )
    return onnx.load_from_string(buf.getvalue())


def write_onnx(target: Path, proto: Any, text: str) -> None:
    """Write the ONNX ``proto`` to ``target`` atomically with the ``model.yaml`` ``text`` embedded as metadata
    (replacing any it had)."""
    import onnx

    kept = [p for p in proto.metadata_props if p.key != ONNX_METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_METADATA_KEY, text
    with atomic_file(target) as out:
        onnx.save(proto, str(out.tmp))
