"""Architectures: built-in names or ``class_path: package.module:Class`` (salt style), one resolver.

An architecture is a ``torch.nn.Module`` class with a class attribute ``input_kind`` (a key of
:data:`taggers.inputs.INPUT_KINDS`: graphs, frames or table); its constructor takes the kind's size arguments
(``n_features`` or ``n_channels``) and ``n_classes``, filled in from the data, plus its own ``init_args``; its
``forward`` takes the kind's inputs in order and returns logits; ``shift``/``scale`` buffers, when present,
receive the input standardisation. Classes outside e2e are found by import path with the same resolver as
module types (:func:`e2e.module.import_object`).
"""

from __future__ import annotations

from typing import Any

from e2e.errors import ConfigError, short
from e2e.module import import_object

#: Built-in architectures: name -> import path.
BUILTIN_ARCHITECTURES: dict[str, str] = {
    "GraphNet": "taggers.models.networks:GraphNet",
    "ResNet": "taggers.models.networks:ResNet",
    "LinearNet": "taggers.models.networks:LinearNet",
    "ParticleNet": "taggers.models.particlenet:ParticleNet",
    "GraphTransformer": "taggers.models.transformer:GraphTransformer",
}
#: The default architecture of each input kind.
DEFAULT_ARCHITECTURE = {"graphs": "GraphNet", "frames": "ResNet", "table": "LinearNet"}
#: ``architecture.name`` of a model that exists only as ONNX (trained elsewhere; onnxruntime backend only).
EXTERNAL = "external"


def resolve_architecture(name: str = "", class_path: str = "", where: str = "model") -> Any:
    """The architecture class of a built-in ``name`` or a ``class_path``; one-line ConfigError otherwise."""
    if class_path:
        path, what = class_path, f"class_path {short(class_path)}"
    elif name in BUILTIN_ARCHITECTURES:
        path, what = BUILTIN_ARCHITECTURES[name], name
    elif name == EXTERNAL:
        raise ConfigError(f"{where}: an external (ONNX-only) model has no torch architecture; use backend: onnxruntime")
    else:
        raise ConfigError(
            f"{where}: unknown architecture {short(name)} (built-in: "
            f"{', '.join(BUILTIN_ARCHITECTURES)}; or class_path: package.module:Class)"
        )
    cls = import_object(path, where)
    import torch

    from taggers.inputs import INPUT_KINDS

    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ConfigError(f"{where}: {what} is not a torch.nn.Module class")
    kind = getattr(cls, "input_kind", None)
    if kind not in INPUT_KINDS:
        raise ConfigError(
            f"{where}: {what} has no input_kind (one of {', '.join(INPUT_KINDS)}): declare which "
            "product it reads as a class attribute"
        )
    return cls


def architecture_name(cls: type) -> tuple[str, str]:
    """(name, class_path) recorded in model.yaml: class_path empty for built-in classes."""
    path = f"{cls.__module__}:{cls.__qualname__}"
    builtin = BUILTIN_ARCHITECTURES.get(cls.__name__) == path
    return cls.__name__, "" if builtin else path
