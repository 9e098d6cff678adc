"""Training checkpoints: an interrupted e2e-train resumes where it stopped, with no pickle anywhere.

After every epoch the training state is written next to the artefact directory, in ``<output>.checkpoint/``:

- ``tensors.safetensors``: the network's state, the best state so far (``best.`` prefix), the optimiser's
  per-parameter tensors (``optim.<index>.<name>``) and torch's CPU random state (``torch_rng``);
- ``state.json``: the epoch reached, the best validation loss and its epoch, the loss history, the training
  time used (the wall-clock budget continues, it does not restart), the optimiser's hyper-parameters, the
  learning-rate schedule and numpy's generator state, and the SHA-256 of the training configuration.

Both files are replaced atomically (a crash while writing leaves the previous checkpoint). ``e2e-train
--resume`` rebuilds the dataset (deterministic), loads the checkpoint when its configuration hash matches
(otherwise one line says why it cannot be used) and continues with the next epoch; the resumed training gives
the same weights as an uninterrupted one. The checkpoint is removed when the artefact is written.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from e2e.errors import ConfigError

TENSORS = "tensors.safetensors"
STATE = "state.json"


def checkpoint_dir(output: str | Path) -> Path:
    """Where the checkpoint of the artefact ``output`` lives."""
    out = Path(output)
    return out.with_name(out.name + ".checkpoint")


@dataclass
class TrainingState:
    """What an epoch loop needs to continue (besides the network and optimiser)."""

    epoch: int = 0  # the next epoch to run
    best: float = float("inf")
    best_epoch: int = -1
    history: list[dict[str, float]] = field(default_factory=list)
    train_s: float = 0.0  # training time used so far (s)
    best_state: dict[str, Any] | None = None
    #: why the epoch loop stopped before max_epochs ("early_stopping", "budget"); "" while it goes on
    stopped: str = ""


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    tmp.replace(path)


def save(
    where: Path,
    net: Any,
    optim: Any,
    sched: Any,
    rng: np.random.Generator,
    state: TrainingState,
    config_sha256: str,
    dataset_sha256: str,
) -> None:
    """Write the checkpoint after an epoch (``state.epoch`` is the next one); ``dataset_sha256``: the digest of the
    jets it trains on (:meth:`training.dataset.JetDataset.digest`)."""
    import torch
    from safetensors.torch import save_file

    where.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {f"net.{k}": v.detach().contiguous() for k, v in net.state_dict().items()}
    if state.best_state is not None:
        tensors |= {f"best.{k}": v.contiguous() for k, v in state.best_state.items()}
    opt = optim.state_dict()
    scalars: dict[str, dict[str, float]] = {}
    for index, per_param in opt["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0:
                tensors[f"optim.{index}.{name}"] = value.contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = float(value)
    tensors["torch_rng"] = torch.get_rng_state()
    _atomic_write(where / TENSORS, lambda p: save_file(tensors, str(p)))
    meta = {
        "config_sha256": config_sha256,
        "dataset_sha256": dataset_sha256,
        "epoch": state.epoch,
        "stopped": state.stopped,
        "best": state.best,
        "best_epoch": state.best_epoch,
        "history": state.history,
        "train_s": state.train_s,
        "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars},
        "scheduler": {k: v for k, v in sched.state_dict().items() if isinstance(v, int | float | list | bool)},
        "numpy_rng": rng.bit_generator.state,
    }
    _atomic_write(where / STATE, lambda p: p.write_text(json.dumps(meta)))


def check(where: Path, config_sha256: str) -> bool:
    """Whether a checkpoint is there to resume (before the dataset is built); one line when it cannot be used."""
    if not (where / STATE).is_file():
        return False
    try:
        meta = json.loads((where / STATE).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{where}: unreadable checkpoint ({err}); remove it to train from the start") from err
    if not isinstance(meta, dict) or "config_sha256" not in meta:
        raise ConfigError(f"{where}: unreadable checkpoint ({STATE} holds no training state); remove it to train from "
                          "the start")  # fmt: skip
    if meta.get("config_sha256") != config_sha256:
        raise ConfigError(
            f"{where}: the checkpoint is from another training configuration; remove it (or train without --resume)"
        )
    if not (where / TENSORS).is_file():  # (said before the dataset is built)
        raise ConfigError(f"{where}: an incomplete checkpoint (no {TENSORS}); remove it to train from the start")
    return True


def load(
    where: Path,
    net: Any,
    optim: Any,
    sched: Any,
    rng: np.random.Generator,
    config_sha256: str,
    dataset_sha256: str,
) -> TrainingState | None:
    """Restore a checkpoint into ``net``, ``optim``, ``sched`` and ``rng``; None when there is none (of this
    configuration); a damaged one, or one of another dataset (the input files changed since), is one line."""
    if not check(where, config_sha256):
        return None
    recorded = json.loads((where / STATE).read_text()).get("dataset_sha256")
    if recorded is not None and recorded != dataset_sha256:
        raise ConfigError(
            f"{where}: the checkpoint was trained on other jets than the inputs give now (a file changed since): "
            "remove it, or train without --resume"
        )
    try:
        return _restore(where, net, optim, sched, rng)
    except (KeyboardInterrupt, ConfigError, MemoryError):
        raise
    except Exception as err:  # damaged: a truncated file (SafetensorError), keys or types missing, other shapes
        why = " ".join(f"{type(err).__name__}: {err}".split())[:200]
        raise ConfigError(f"{where}: unreadable checkpoint ({why}); remove it to train from the start") from None


def _restore(where: Path, net: Any, optim: Any, sched: Any, rng: np.random.Generator) -> TrainingState:
    """:func:`load` of a checkpoint that :func:`check` accepted."""
    import torch
    from safetensors.torch import load_file

    meta = json.loads((where / STATE).read_text())
    tensors = load_file(str(where / TENSORS))
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, scalars in meta["optimizer"]["scalars"].items():
        for name, value in scalars.items():
            state.setdefault(int(index), {})[name] = torch.tensor(value)
    optim.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    sched.load_state_dict({**sched.state_dict(), **meta["scheduler"]})
    rng.bit_generator.state = meta["numpy_rng"]
    torch.set_rng_state(tensors["torch_rng"])
    return TrainingState(
        meta["epoch"], meta["best"], meta["best_epoch"], meta["history"], meta["train_s"], best, meta.get("stopped", "")
    )


def remove(where: Path) -> None:
    """Remove a checkpoint (after the artefact is written)."""
    shutil.rmtree(where, ignore_errors=True)
