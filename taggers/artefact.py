"""Model artefacts: a directory with ``model.onnx`` (metadata inside), ``weights.safetensors`` and ``model.yaml``.

``model.yaml`` holds the architecture and its hyperparameters, the input spec (the producer parameters the
model was trained on: channels, window, k, scaling, ...), the output names, the training provenance (command,
config hash, dataset sizes, seed) and the held-out metrics. The ONNX file carries the same YAML as the
metadata entry ``e2e_model_yaml``. Weights are read with safetensors only: nothing is ever unpickled.

``zoo:NAME`` names an artefact shipped in the package (``taggers/zoo/NAME``); anything else is a directory.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from e2e.errors import ConfigError

ZOO = Path(__file__).resolve().parent / "zoo"
MODEL_YAML, WEIGHTS, ONNX = "model.yaml", "weights.safetensors", "model.onnx"
ONNX_METADATA_KEY = "e2e_model_yaml"


def architectures() -> dict[str, type]:
    from taggers.models.networks import GraphNet, LinearNet, ResNet

    return {"GraphNet": GraphNet, "ResNet": ResNet, "LinearNet": LinearNet}


def resolve(model: str, where: str = "model") -> Path:
    """The artefact directory of ``zoo:NAME`` or a path; one-line error naming what exists."""
    if model.startswith("zoo:"):
        name = model[4:]
        path = ZOO / name
        if not (path / MODEL_YAML).is_file():
            known = sorted(p.name for p in ZOO.iterdir() if (p / MODEL_YAML).is_file()) if ZOO.is_dir() else []
            raise ConfigError(f"{where}: no zoo model '{name}' (zoo: {', '.join(known) or 'empty'})")
        return path
    path = Path(model)
    if not (path / MODEL_YAML).is_file():
        raise ConfigError(f"{where}: '{model}' is not a model artefact (a directory with {MODEL_YAML}, {WEIGHTS}, "
                          f"{ONNX}) nor zoo:NAME")
    return path


@dataclasses.dataclass
class Artefact:
    """A loaded ``model.yaml`` and where its files are."""

    path: Path
    spec: dict[str, Any]

    @classmethod
    def load(cls, model: str, where: str = "model") -> Artefact:
        path = resolve(model, where)
        spec = yaml.safe_load((path / MODEL_YAML).read_text())
        for key in ("architecture", "input", "outputs"):
            if key not in spec:
                raise ConfigError(f"{path / MODEL_YAML}: missing '{key}'")
        return cls(path, spec)

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(self.spec["outputs"])

    @property
    def input_spec(self) -> dict[str, Any]:
        return dict(self.spec["input"])

    def build_torch(self, device: str = "cpu") -> Any:
        """The torch module with its weights (safetensors), in eval mode on ``device``."""
        from safetensors.torch import load_file

        arch = self.spec["architecture"]
        cls = architectures()[arch["name"]]
        model = cls(**arch.get("hyperparameters", {}))
        model.load_state_dict(load_file(str(self.path / WEIGHTS), device="cpu"))
        return model.to(device).eval()

    def n_parameters(self) -> int:
        """Trainable parameters of the network (buffers such as input scaling and batch-norm statistics excluded)."""
        return sum(p.numel() for p in self.build_torch().parameters())

    def check_inputs(self, produced: dict[str, Any], where: str) -> None:
        """Refuse a producer whose recorded parameters differ from the model's input spec (one line)."""
        diffs = []
        for key, want in self.input_spec.items():
            got = produced.get(key, "<not recorded>")
            if _normal(got) != _normal(want):
                diffs.append(f"{key}: producer {got!r}, model {want!r}")
        if diffs:
            raise ConfigError(f"{where}: the inputs do not match what model {self.path.name} was trained on "
                              f"({'; '.join(diffs)})")


def _normal(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_normal(x) for x in v]
    if isinstance(v, float):
        return round(v, 9)
    return v


def save(path: Path, model: Any, spec: dict[str, Any], example_inputs: tuple[Any, ...], input_names: list[str],
         dynamic_axes: dict[str, dict[int, str]]) -> Path:
    """Write an artefact directory: weights (safetensors), model.yaml and model.onnx with the YAML embedded."""
    import io
    import warnings

    import onnx
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / WEIGHTS))
    text = yaml.safe_dump(spec, sort_keys=False)
    (path / MODEL_YAML).write_text(text)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example_inputs, buf, dynamo=False, opset_version=18, input_names=input_names,
                          output_names=["logits"], dynamic_axes={**dynamic_axes, "logits": {0: "jets"}})
    proto = onnx.load_from_string(buf.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_METADATA_KEY, text
    onnx.save(proto, str(path / ONNX))
    return path
