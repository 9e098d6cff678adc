"""e2e-train: dataset from the inference producers -> training -> model artefact, metrics and ROC plot.

Deterministic (seeded) event-level split, class weights, Adam with a cosine schedule, early stopping on the
validation loss and a wall-clock budget; the best validation state is exported (safetensors + model.yaml +
ONNX with the YAML inside) after a torch-vs-onnxruntime parity check at several batch sizes.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import platform
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dataformats.schema import SchemaError
from e2e.errors import ConfigError, E2EError, short
from e2e.eventids import EventIdRegister
from e2e.params import MAX_THREADS, build, param, to_plain
from e2e.yamlio import load_yaml_file
from taggers.artefact import METRICS_JSON, MODEL_YAML, ONNX, OUTPUT_NAME, WEIGHTS, ZOO, ZOO_NAME_RE, Artefact, resolve
from taggers.heads import Head, apply_heads, outputs_of, parse_heads
from taggers.inputs import INPUT_KINDS, InputKind, kind_of_product
from taggers.metrics import json_finite, roc_plot, summary
from taggers.models.registry import DEFAULT_ARCHITECTURE, architecture_name, resolve_architecture
from training import checkpoint
from training.checkpoint import checkpoint_dir
from training.dataset import SPLITS, TRUTH_FIELDS, JetDataset, Selection, collect, quotas, sampling_limits
from training.heads import Objective, calibrate, classification_metrics, regression_metrics

#: the repository (the shipped sample's directory is data/)
REPO = Path(__file__).resolve().parents[1]
#: ``heldout`` unless a configuration gives it (relative to the working directory, else to :data:`REPO`)
DEFAULT_HELDOUT = "data/sample_tau_qcd.root"


@dataclass
class SelectionConfig:
    classes: dict[str, int] = param({"qcd": 0, "tau": 1}, "output name -> Jet_label, in output order")
    pt_range: list[float] = param([20.0, 100.0], "jet pT window (GeV)")
    require_gen_match: bool = param(True, "only jets with a generator match (drops pileup jets)")


@dataclass
class OptimizerConfig:
    lr: float = param(1e-3, "Adam learning rate (> 0)")
    weight_decay: float = param(1e-4, "Adam weight decay", minimum=0.0)
    batch_size: int = param(256, "jets per training step", minimum=1)
    max_epochs: int = param(30, "epochs at most (the cosine schedule spans them)", minimum=1)
    patience: int = param(4, "stop after this many epochs without a better validation loss", minimum=1)
    budget_minutes: float = param(20.0, "wall-clock training budget (minutes)", minimum=0.0)


@dataclass
class ModelConfig:
    name: str = param(
        "",
        "built-in architecture: GraphNet (graphs), ResNet (frames), LinearNet (tables); empty: the one for the product",
    )
    class_path: str = param(
        "",
        "an architecture outside e2e, package.module:Class (a torch.nn.Module with an "
        "input_kind; see taggers/models/registry.py)",
    )
    init_args: dict[str, Any] = param(
        {}, "constructor arguments (n_features / n_channels and n_classes are filled in from the data)"
    )
    hyperparameters: dict[str, Any] = param({}, "the same as init_args (the name used by earlier configs)")


@dataclass
class TrainConfig:
    name: str = param(help="model name (the zoo entry)")
    product: str = param(help="label of the module whose product the model reads (e.g. jetGraphs)")
    process: dict[str, Any] = param(help="source and modules, exactly as in an e2e-run configuration")
    output: str = param(help="artefact directory to write (e.g. taggers/zoo/tau_gnn)")
    selection: SelectionConfig = field(default_factory=SelectionConfig, metadata={"help": "jets and classes"})
    split: list[float] = param([0.7, 0.15, 0.15], "train / validation / test fractions, by event")
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "architecture"})
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig, metadata={"help": "optimisation"})
    max_jets: int = param(
        -1,
        "use at most this many jets (-1: all): an equal share per class, drawn at random (seeded, reproducible) "
        "from every file",
        minimum=-1,
    )
    heldout: list[str] = param(
        [DEFAULT_HELDOUT],
        "independent files tagged after training, through e2e-run's modules (metrics recorded in model.yaml); "
        "when not given and not found from the working directory, the repository's sample (or none)",
    )
    seed: int = param(1, "seed of the split, initialisation and shuffling", minimum=0)
    threads: int = param(0, "torch CPU threads (0: default)", minimum=0, maximum=MAX_THREADS)
    dataset: str = param(
        "disk",
        "where the dataset's per-node and per-pixel arrays live: disk (files in dataset_dir, read per minibatch: "
        "memory bounded whatever the sample size) or memory",
        choices=("disk", "memory"),
    )
    dataset_dir: str = param("", "directory for the dataset files (empty: the system temporary directory, TMPDIR)")
    heads: list[dict[str, Any]] = param(
        [],
        "output heads of a multi-task model (taggers/heads.py: name, type classification | regression, target, "
        "classes, only, weight, balance); empty: one classification head over selection.classes",
    )


def load_config(data: dict[str, Any], where: str) -> TrainConfig:
    cfg = build(TrainConfig, data, where)
    if not cfg.name.strip():
        raise ConfigError(f"{where}.name: expected a model name (the zoo entry, named in the log and model.yaml)")
    if cfg.output.startswith("zoo:"):  # the zoo entry that model: zoo:NAME reads, not a directory named "zoo:NAME"
        name = cfg.output[4:]
        if not ZOO_NAME_RE.fullmatch(name) or ".." in name:
            raise ConfigError(
                f"{where}.output: {short(cfg.output)} is not a zoo name (letters, digits, '_', '-', '.'; no '/' or "
                "'..'); or give a directory"
            )
        cfg.output = str(ZOO / name)
    lo, hi = (cfg.selection.pt_range + [math.nan, math.nan])[:2]
    if len(cfg.selection.pt_range) != 2 or not 0 <= lo < hi < math.inf:
        raise ConfigError(
            f"{where}.selection.pt_range: got {cfg.selection.pt_range}, expected [low, high] in GeV, 0 <= low < high"
        )
    bad = [c for c in cfg.selection.classes if not OUTPUT_NAME.fullmatch(c)]
    if bad:
        raise ConfigError(
            f"{where}.selection.classes: {short(bad[0])} is not an output name (a letter, then letters, digits, _): "
            "each class names the branch Jet_<tagger>_<class> of its score"
        )
    if cfg.max_jets == 0:
        raise ConfigError(f"{where}.max_jets: 0 keeps no jet; expected -1 (all) or a number of jets")
    labels = list(cfg.selection.classes.values())
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{where}.selection.classes: a Jet_label is listed twice: {dict(cfg.selection.classes)}")
    if not cfg.optimizer.lr > 0:
        raise ConfigError(f"{where}.optimizer.lr: got {cfg.optimizer.lr}, expected a positive learning rate")
    if "outputs" in cfg.process:
        raise ConfigError(
            f"{where}.process.outputs: e2e-train makes its own (the dataset of 'product'); the process takes a source "
            "and modules only"
        )
    if "heldout" not in data:  # the default is the shipped sample, wherever e2e-train runs from
        cfg.heldout = default_heldout()
    if cfg.heads:
        parse_heads(cfg.heads, f"{where}.heads")
    elif len(cfg.selection.classes) < 2:  # one softmax over the classes
        raise ConfigError(
            f"{where}.selection.classes: {dict(cfg.selection.classes)}: a classifier needs at least two classes"
        )
    if len(cfg.split) != 3 or abs(sum(cfg.split) - 1.0) > 1e-6 or min(cfg.split) <= 0:
        raise ConfigError(f"{where}.split: expected three positive fractions summing to 1, got {cfg.split}")
    return cfg


#: |logit| beyond which a trained network counts as diverged when its export fails the parity check (a network that
#: learned anything has logits of a few units; at 1e4 float32 rounds to ~1e-3, beyond the parity tolerance)
DIVERGED_LOGIT = 1e4


def _diverged(what: str, lr: float) -> ConfigError:
    """The one-line error of a training whose loss is no longer finite."""
    return ConfigError(
        f"training diverged: {what} (lower optimizer.lr, now {lr:g}, or look for NaN/inf in the inputs: "
        "source.check_values)"
    )


def default_heldout() -> list[str]:
    """``heldout`` when a configuration does not give it: the shipped sample as :data:`DEFAULT_HELDOUT` from the
    working directory (the repository), else this repository's copy, else none (e2e-train says so)."""
    if Path(DEFAULT_HELDOUT).is_file():
        return [DEFAULT_HELDOUT]
    shipped = REPO / DEFAULT_HELDOUT
    return [str(shipped)] if shipped.is_file() else []


def architecture(cfg: TrainConfig, kind: InputKind, product: str) -> Any:
    """The architecture class of ``cfg.model`` for products of ``kind``; a class that reads another kind is a
    one-line error (not silently replaced)."""
    m = cfg.model
    if m.init_args and m.hyperparameters:
        raise ConfigError("model: give init_args or hyperparameters (the same thing), not both")
    if m.name and m.class_path:
        raise ConfigError("model: give a built-in name or a class_path, not both")
    name = m.name or ("" if m.class_path else DEFAULT_ARCHITECTURE[kind.name])
    cls = resolve_architecture(name, m.class_path, "model")
    if cls.input_kind != kind.name:
        fits = DEFAULT_ARCHITECTURE[kind.name]
        raise ConfigError(
            f"model: {m.class_path or name} reads {cls.input_kind}, but '{product}' makes "
            f"{kind.name} ({kind.product.__name__}); use {fits} or a class whose input_kind is "
            f"{kind.name}"
        )
    return cls


def _network(cls: Any, cfg: TrainConfig, ds: JetDataset, n_outputs: int) -> tuple[Any, dict[str, Any]]:
    """The network to train, its parameters float32, and its arguments."""
    import torch

    hyper = {
        **(cfg.model.init_args or cfg.model.hyperparameters),
        **ds.input_kind.sizes(ds.arrays, ds.params),
        "n_classes": n_outputs,
    }
    if "n_jet_features" in hyper and "n_jet_features" not in inspect.signature(cls).parameters:
        raise ConfigError(
            f"model: {cls.__name__} takes no per-jet inputs (no n_jet_features argument), but '{cfg.product}' has "
            f"jet_features {ds.params.get('jet_features')}: remove them from the producer or use a network that "
            "joins them (ParticleNet, GraphTransformer)"
        )
    try:
        net = cls(**hyper)
    except TypeError as err:
        raise ConfigError(f"model: {cls.__name__}({', '.join(hyper)}) does not fit its constructor ({err})") from err
    other = next(((n, p.dtype) for n, p in net.named_parameters() if p.dtype != torch.float32), None)
    if other is not None:
        raise ConfigError(
            f"model: {cls.__name__} has {str(other[1]).removeprefix('torch.')} parameters ({other[0]}); e2e trains, "
            "stores and exports float32 (leave the parameters' dtype as torch makes them)"
        )
    return net, hyper


def _check_first_output(logits: Any, n_jets: int, n_outputs: int, net: Any, fresh: bool) -> None:
    """The network's output on the first minibatch of a training: one row of ``n_outputs`` float32 logits per jet,
    finite before any step (``fresh``), else one line naming its class (the loss failed inside torch, which was
    reported as a bug in e2e, or as a diverged training to be fixed by a lower learning rate)."""
    import torch

    name = type(net).__name__
    shape = list(logits.shape) if isinstance(logits, torch.Tensor) else None
    if shape != [n_jets, n_outputs]:
        got = f"shape {shape}" if shape is not None else f"a {type(logits).__name__}"
        raise ConfigError(
            f"model: {name} returns {got} for a minibatch of {n_jets} jets; expected a tensor [jets, {n_outputs}]: "
            "one row of logits per jet (did it pool its nodes?)"
        )
    if logits.dtype != torch.float32:
        raise ConfigError(f"model: {name} returns {str(logits.dtype).removeprefix('torch.')} values; expected float32")
    if fresh and not bool(torch.isfinite(logits).all()):
        raise ConfigError(
            f"model: {name} returns NaN or infinite values on the first minibatch, before any training step: its "
            "forward is not finite on these inputs (a division by zero, a log of 0?)"
        )


def _standardise(net: Any, ds: JetDataset, train: np.ndarray) -> None:
    """Per-feature (channel) shift and scale from (at most 20k of) the training jets, into the network's
    ``shift``/``scale`` buffers when it has them."""
    import torch

    if not (hasattr(net, "shift") and hasattr(net, "scale")):
        return
    mean, std = ds.input_kind.statistics(ds.arrays, ds.params, train[:20000])
    std = np.where(std > 0, std, 1.0)
    net.shift.copy_(torch.as_tensor(mean, dtype=torch.float32))
    net.scale.copy_(torch.as_tensor(1.0 / std, dtype=torch.float32))


def _truth_batches(process: dict[str, Any]) -> Any:
    """Batches of the source of ``process`` with only the Jet truth fields read (no producer runs)."""
    from e2e.config import load_process

    source = load_process(process, where="process").source
    source.set_plan(dict(TRUTH_FIELDS))
    source.begin()
    try:
        for item in source.plan():
            yield source.read(item)
    finally:
        source.end()


def _product_type(desc: Any, product: str) -> type:
    """The product type module ``product`` declares (before anything is read)."""
    from e2e.event import split_tag

    label, instance = split_tag(product)
    if label not in desc.modules:
        raise ConfigError(f"product: no module labelled '{label}' in process.modules ({', '.join(desc.modules)})")
    made = desc.modules[label].produces()
    if instance not in made:
        raise ConfigError(f"product: '{label}' makes {', '.join(made) or 'nothing'}, not '{product}'")
    return made[instance]


def _architecture_record(cls: type, hyper: dict[str, Any]) -> dict[str, Any]:
    """``architecture`` of model.yaml: the class name, its import path when it is not built in, its arguments."""
    name, class_path = architecture_name(cls)
    return {"name": name, **({"class_path": class_path} if class_path else {}), "hyperparameters": hyper}


def inputs_of(ds: JetDataset, jets: np.ndarray) -> dict[str, np.ndarray]:
    """Model inputs of ``jets`` (ONNX input names -> arrays)."""
    return ds.inputs(jets)


#: inputs per inference batch of predict_raw, at most (bytes): 128 jet images of 8 x 125 x 125, 1024 graphs
PREDICT_BYTES = 64 * 2**20


def predict_raw(net: Any, ds: JetDataset, jets: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Raw outputs (logits, regression values) of ``jets`` with the torch network, [len(jets), n_outputs]; at most
    ``batch_size`` jets and PREDICT_BYTES of inputs per batch (the activations of a CNN grow with the batch)."""
    import torch

    out = []
    net.eval()
    if len(jets):
        per_jet = sum(v.nbytes for v in inputs_of(ds, jets[:1]).values())
        batch_size = max(1, min(batch_size, PREDICT_BYTES // max(per_jet, 1)))
    with torch.inference_mode():
        for a in range(0, len(jets), batch_size):
            inp = inputs_of(ds, jets[a : a + batch_size])
            out.append(net(*(torch.from_numpy(v) for v in inp.values())).numpy())
    return np.concatenate(out) if out else np.zeros((0, 2), np.float32)


def predict(net: Any, ds: JetDataset, jets: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities of ``jets`` with the torch network (one softmax over all outputs)."""
    raw = predict_raw(net, ds, jets, batch_size).astype(np.float64)
    e = np.exp(raw - raw.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _truth_fields(heads: list[Head] | None) -> tuple[str, ...]:
    """Jet fields a dataset keeps per jet: the selection's, every head's target and ``only`` fields, and the
    reconstructed mass next to a mass regression (its baseline)."""
    fields = list(TRUTH_FIELDS["Jet"])
    for h in heads or []:
        fields += [h.target, *h.only]
        if h.type == "regression" and h.target == "gen_mass":
            fields.append("mass")
    return tuple(dict.fromkeys(fields))


#: what an artefact directory holds besides its figures (training writes these)
ARTEFACT_FILES = (ONNX, MODEL_YAML, WEIGHTS, METRICS_JSON, "roc.png")


def _artefact_files(output: str) -> re.Pattern[str]:
    """The names an earlier artefact in ``output`` holds that training wrote: its files and figures (``roc.png``, and
    one per head its model.yaml names); a directory holding anything else is not replaced."""
    names = list(ARTEFACT_FILES)
    try:
        spec = load_yaml_file(Path(output) / MODEL_YAML, MODEL_YAML)
        heads = spec.get("heads") if isinstance(spec, dict) else None
        names += [f"{h['name']}.png" for h in heads or [] if isinstance(h, dict) and isinstance(h.get("name"), str)]
    except (E2EError, OSError):  # (none, or unreadable: the fixed names only)
        pass
    return re.compile("|".join(re.escape(n) for n in names))


def train(
    cfg: TrainConfig,
    command: str,
    config_text: str,
    progress: bool = True,
    resume: bool = False,
    config_file: str | None = None,
) -> dict[str, Any]:
    """Train, evaluate on the test split, export the artefact; return the metrics written to metrics.json.

    The artefact directory is checked before the dataset is built and written atomically (e2e.paths): it
    appears, or replaces an earlier artefact, only when complete; never one that holds an input (a source or
    held-out file, the configuration ``config_file``, a model a module of the process runs) or other files.
    """
    from e2e.io.source import expand_files
    from e2e.paths import atomic_dir, check_output_dir, describe_removed, exclusive, file_identity

    source = cfg.process.get("source", {})
    files = source.get("files", []) if isinstance(source, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ConfigError(f"process.source.files: got {short(files)}, expected a list of files or glob patterns")
    inputs = expand_files(files, "process.source.files")
    heldout = expand_files(list(cfg.heldout), "heldout") if cfg.heldout else []
    for path in [*inputs, *heldout]:  # before minutes of dataset building and training, not after
        if "://" not in path and not Path(path).is_file():
            what = (
                "a directory, not a ROOT file; give its files (e.g. 'DIR/*.root')"
                if Path(path).is_dir()
                else ("no such file" if not Path(path).exists() else "not a regular file")
            )
            raise ConfigError(
                f"{path}: {what} (an input of {'heldout' if path in heldout else 'process.source.files'})"
            )
    if source.get("type") == "RHTreeSource" and cfg.selection.require_gen_match:
        from e2e.io.rhtree import RHTreeSource
        from e2e.module import build_module

        rh = build_module("source", source, "process.source")
        assert isinstance(rh, RHTreeSource)
        if rh.params.truth.gen_pt is None:
            raise ConfigError(
                "selection.require_gen_match: the RHTree source has no generator pT (process.source.truth.gen_pt is "
                "null: every jet's gen_pt is -1, so no jet would pass): name your branch (e.g. truth: {gen_pt: "
                "jet_GenPt}), or set selection.require_gen_match: false"
            )
    if source.get("type", "RootSource") == "RootSource":  # (other sources' files are checked as they are read)
        from e2e.io.source import RootSource
        from e2e.module import build_module

        reader = build_module("source", {"type": "RootSource", **source}, "process.source")  # (its names, units)
        assert isinstance(reader, RootSource)
        _check_heldout(heldout, reader.params.tree, reader.file_names)
    sources = {file_identity(p) for p in inputs if "://" not in p} - {None}
    trained_on = [h for h in heldout if "://" not in h and file_identity(h) in sources]
    if trained_on:  # (the default held-out file is the shipped sample, which small trainings train on)
        print(
            f"e2e-train: note: held-out file {trained_on[0]} is also a training input: its held-out metrics are not "
            "independent of the training (recorded in model.yaml as metrics.heldout.also_training_input)",
            file=sys.stderr,
        )
    inputs += heldout + ([config_file] if config_file else []) + _models_run(cfg.process)
    check_output_dir(cfg.output, inputs, "output", marker=MODEL_YAML, owned=_artefact_files(cfg.output))
    where = checkpoint_dir(cfg.output)
    if where.exists() and not where.is_dir():
        raise ConfigError(f"{where}: not a directory; e2e-train keeps the checkpoint of {cfg.output} there: move it")
    with exclusive(cfg.output, "this artefact (e2e-train)"):  # (a second training of the same output at once)
        if resume and not checkpoint.check(where, hashlib.sha256(config_text.encode()).hexdigest()):
            print(f"e2e-train: {cfg.name}: no checkpoint in {where}: training from the start", file=sys.stderr)
        with atomic_dir(cfg.output) as target:
            if target.removed:
                print(f"e2e-train: {cfg.output}: {describe_removed(target.removed)}", file=sys.stderr)
            metrics = _train(cfg, command, config_text, progress, target.tmp, resume, trained_on)
        checkpoint.remove(where)
    return metrics


def _models_run(process: Mapping[str, Any]) -> list[str]:
    """The model directories that modules of the training's process run (taggers whose scores are inputs): inputs,
    which the artefact must not replace. A model that cannot be found is left for the module to refuse."""
    blocks = process.get("modules") if isinstance(process.get("modules"), Mapping) else {}
    found = []
    for label, block in (blocks or {}).items():
        if isinstance(block, Mapping) and isinstance(block.get("model"), str):
            try:
                found.append(str(resolve(block["model"], f"process.modules.{label}.model")))
            except E2EError:
                continue
    return found


def _check_heldout(files: list[str], tree: str, names: dict[str, str]) -> None:
    """The held-out files, before training: each a hits tree (``names``: the source's schema -> file branch names)
    with the Jet truth, and events in them (tagged only after training, minutes later)."""
    from dataformats.schema import inspect_file

    entries = 0
    for path in files:
        try:
            entries += inspect_file(path, tree, truth=True, names=names).entries
        except SchemaError as err:
            raise ConfigError(f"heldout: {err}") from None
    if files and not entries:
        raise ConfigError(f"heldout: {', '.join(files)}: no events to tag after training (give files with events)")


def _train(
    cfg: TrainConfig,
    command: str,
    config_text: str,
    progress: bool,
    out: Path,
    resume: bool,
    heldout_trained_on: list[str],
) -> dict[str, Any]:
    import torch
    from tqdm import tqdm

    from e2e.config import load_process
    from e2e.process import Process

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    process = {**cfg.process, "outputs": [{"file": "unused.root", "keep": [cfg.product]}]}
    desc = load_process(process, where="process")
    heads = parse_heads(cfg.heads, "heads") if cfg.heads else None
    truth_fields = _truth_fields(heads)
    product_type = _product_type(desc, cfg.product)  # (a label that names no module: this line, not output.keep's)
    made = Process(desc, extra_fields={"Jet": truth_fields})
    kind = kind_of_product(product_type)
    if kind is None:
        known = ", ".join(k.product.__name__ for k in INPUT_KINDS.values())
        raise ConfigError(f"product: '{cfg.product}' makes {product_type.__name__}; models read {known}")
    net_cls = architecture(cfg, kind, cfg.product)  # before minutes of dataset building
    lo, hi = cfg.selection.pt_range
    sel = Selection(dict(cfg.selection.classes), (lo, hi), cfg.selection.require_gen_match)
    f_train, f_val, f_test = cfg.split
    limits = None
    if cfg.max_jets >= 0:  # a first pass over the jets' truth only: which jets the sample keeps
        limits, available = sampling_limits(_truth_batches(process), sel, cfg.max_jets, cfg.seed)
        kept = [min(int(a), int(q)) for a, q in zip(available, quotas(cfg.max_jets, len(sel.classes)), strict=True)]
        print(
            f"e2e-train: {cfg.name}: max_jets {cfg.max_jets}: sampling "
            + ", ".join(f"{n} of {int(a)} {c}" for c, n, a in zip(sel.classes, kept, available, strict=True))
            + " jets over every file",
            file=sys.stderr,
            flush=True,
        )
    # process.options.duplicate_ids: error refuses repeated event ids, as e2e-run does; by default nothing is said (the
    # zoo's recipes read files that share ids by design: a note fired on every one of them)
    strict = EventIdRegister(True) if desc.options.duplicate_ids == "error" else None

    def registered(batches: Any) -> Any:
        for batch in batches:
            if strict is not None:
                strict.add(batch)
            yield batch

    ds = collect(
        registered(made.iter_batches()),
        cfg.product,
        sel,
        (f_train, f_val, f_test),
        cfg.seed,
        limits=limits,
        truth_fields=truth_fields,
        on_disk=cfg.dataset == "disk",
        dataset_dir=cfg.dataset_dir or None,
    )
    t_data = time.perf_counter() - t0
    log = tqdm.write if progress else (lambda line: print(line, file=sys.stderr, flush=True))
    if strict is not None:
        strict.finish()  # (raises at the first repeat across the files)
    log(f"e2e-train: {cfg.name}: dataset {ds.counts()} jets in {t_data:.0f} s")
    parts = {s: np.flatnonzero(ds.split == i) for i, s in enumerate(SPLITS)}
    if min(len(p) for p in parts.values()) == 0:
        raise ConfigError(f"too few jets for a train/validation/test split: {ds.counts()}")

    n_outputs = len(outputs_of(heads)) if heads else len(sel.classes)
    net, hyper = _network(net_cls, cfg, ds, n_outputs)
    _standardise(net, ds, parts["train"])
    counts = np.bincount(ds.y[parts["train"]], minlength=len(sel.classes)).astype(np.float64)
    if not heads:  # one softmax over selection.classes (two or more: load_config): each needs training jets
        empty = [name for name, n in zip(sel.classes, counts, strict=True) if n == 0]
        if empty:
            raise ConfigError(
                f"selection.classes: class '{empty[0]}' (Jet_label {sel.classes[empty[0]]}) has no training jets "
                f"(dataset {ds.counts()}): give data with such jets, or leave the class out"
            )
    weights = torch.as_tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    objective = Objective(heads, ds.truth, parts["train"]) if heads else None
    for h in heads or []:  # (a head without validation jets early-stops on a constant; without test jets, no metric)
        mask = h.selected(ds.truth)
        for split in ("validation", "test"):
            if not mask[parts[split]].any():
                only = f" with its only: {h.only}" if h.only else ""
                raise ConfigError(
                    f"heads: head '{h.name}' has no {split} jets{only} (dataset {ds.counts()}): give more events, or "
                    "another split"
                )

    def batch_loss(logits: Any, jets: np.ndarray) -> Any:
        if objective is not None:
            return objective(logits, jets)
        return loss_fn(logits, torch.as_tensor(ds.y[jets]))

    opt = cfg.optimizer
    optim = torch.optim.Adam(net.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    steps_per_epoch = max(1, int(np.ceil(len(parts["train"]) / opt.batch_size)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=opt.max_epochs * steps_per_epoch)

    def val_loss() -> float:
        if objective is not None:
            raw = torch.from_numpy(predict_raw(net, ds, parts["validation"]))
            return float(objective(raw, parts["validation"]))
        p = predict(net, ds, parts["validation"])
        y = torch.as_tensor(ds.y[parts["validation"]])
        return float(loss_fn(torch.log(torch.as_tensor(p).clamp_min(1e-12)), y))

    where = checkpoint_dir(cfg.output)
    sha = hashlib.sha256(config_text.encode()).hexdigest()
    data_sha = ds.digest()
    st = checkpoint.load(where, net, optim, sched, rng, sha, data_sha) if resume else None
    if st is not None:
        log(f"e2e-train: {cfg.name}: resuming at epoch {st.epoch} from {where} ({st.train_s:.0f} s trained"
            + (f"; it had stopped: {st.stopped})" if st.stopped else ")"))  # fmt: skip
    st = st or checkpoint.TrainingState()
    t_train = time.perf_counter() - st.train_s
    budget_s = 60.0 * opt.budget_minutes
    stopped = st.stopped or "max_epochs"
    for epoch in range(st.epoch, opt.max_epochs if not st.stopped else st.epoch):
        net.train()
        order = rng.permutation(parts["train"])
        total, n = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}", disable=not progress, leave=False)
        for step in bar:
            jets = order[step * opt.batch_size : (step + 1) * opt.batch_size]
            inp = inputs_of(ds, jets)
            logits = net(*(torch.from_numpy(v) for v in inp.values()))
            if step == 0 and epoch == st.epoch:
                _check_first_output(logits, len(jets), n_outputs, net, fresh=epoch == 0)
            loss = batch_loss(logits, jets)
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            value = float(loss.detach())  # (read once per step, as before: no extra device sync)
            if not math.isfinite(value):
                checkpoint.remove(where)  # (a resume would diverge again)
                raise _diverged(f"the loss is {value} at epoch {epoch}, step {step}", opt.lr)
            total += value * len(jets)
            n += len(jets)
            if time.perf_counter() - t_train > budget_s:
                break
        v = val_loss()
        if not math.isfinite(v):
            checkpoint.remove(where)
            raise _diverged(f"the validation loss is {v} after epoch {epoch}", opt.lr)
        st.history.append({"epoch": epoch, "train_loss": total / max(n, 1), "validation_loss": v})
        log(
            f"e2e-train: {cfg.name}: epoch {epoch}: train loss {total / max(n, 1):.4f}, validation loss "
            f"{v:.4f}, lr {sched.get_last_lr()[0]:.2e}, {n} jets, {time.perf_counter() - t_train:.0f} s"
        )
        if v < st.best:
            st.best, st.best_epoch = v, epoch
            st.best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
        st.epoch, st.train_s = epoch + 1, time.perf_counter() - t_train
        if st.train_s > budget_s:
            st.stopped = "budget"
        elif epoch - st.best_epoch >= opt.patience:
            st.stopped = "early_stopping"
        checkpoint.save(where, net, optim, sched, rng, st, sha, data_sha)  # (a resume after a stop goes on to export)
        if st.stopped:
            stopped = st.stopped
            break
    best_state, best_epoch, history = st.best_state, st.best_epoch, st.history
    train_s = time.perf_counter() - t_train
    net.load_state_dict(best_state)
    net.eval()
    calibration: dict[str, Any] = {}
    if heads and any(h.type == "regression" for h in heads):  # median response 1 on the validation jets
        val = parts["validation"]
        val_scores = apply_heads(predict_raw(net, ds, val), heads, ds.pt[val])
        val_truth = {k: v[val] for k, v in ds.truth.items()}
        calibration = {h.name: calibrate(h, val_scores, val_truth) for h in heads if h.type == "regression"}

    test = parts["test"]
    # a tagger: one softmax over selection.classes, or a head classifying Jet_label; else only head metrics
    primary = next((h for h in heads or [] if h.type == "classification" and h.target == "label"), None)
    tagger = not heads or primary is not None
    names = list(primary.classes) if primary is not None else list(sel.classes)
    sig = names.index("tau") if "tau" in names else len(names) - 1
    metrics: dict[str, Any] = {}
    if heads:
        scores = apply_heads(predict_raw(net, ds, test), heads, ds.pt[test])
        truth_test = {k: v[test] for k, v in ds.truth.items()}
    if primary is not None:
        y_test = np.where(primary.selected(truth_test), primary.index(truth_test), -1)
        probs = scores[:, primary.start : primary.stop]
    elif not heads:
        y_test, probs = ds.y[test], predict(net, ds, test)
    if tagger:
        score = probs[:, sig]
        sig_jets, bkg_jets = y_test == sig, (y_test != sig) & (y_test >= 0)
        metrics = {"signal": names[sig], "background": [n for n in names if n != names[sig]]}
        metrics.update(summary(score[sig_jets], score[bkg_jets]))
        metrics["pt_bins"] = {}
        for lo, hi in ((20, 30), (30, 50), (50, 100)):
            m = (ds.pt[test] >= lo) & (ds.pt[test] < hi)
            metrics["pt_bins"][f"{lo}-{hi}"] = summary(score[m & sig_jets], score[m & bkg_jets])
    if heads:
        metrics["heads"] = {
            h.name: classification_metrics(h, scores, truth_test)
            if h.type == "classification"
            else regression_metrics(h, scores, truth_test, truth_test.get("mass") if h.target == "gen_mass" else None)
            for h in heads
        }
        for name, record in calibration.items():
            metrics["heads"][name]["calibration"] = record

    spec: dict[str, Any] = {
        "name": cfg.name,
        "architecture": _architecture_record(type(net), hyper),
        "input": {"product": ds.kind, **{k: ds.params[k] for k in kind.spec_keys if k in ds.params}},
        "outputs": outputs_of(heads) if heads else names,
        **({"heads": [h.record() for h in heads]} if heads else {}),
        "provenance": {
            "command": command,
            "config_sha256": hashlib.sha256(config_text.encode()).hexdigest(),
            "config": to_plain(cfg),
            "seed": cfg.seed,
            "dataset": {
                "jets": ds.counts(),
                "files": list(cfg.process.get("source", {}).get("files", [])),
                "sha256": data_sha,  # (JetDataset.digest: the selected jets, whatever the files are called)
            },
            "training": {
                "epochs": len(history),
                "best_epoch": best_epoch,
                "stopped": stopped,
                "wall_s": round(train_s, 1),
                "dataset_s": round(t_data, 1),
                "budget_minutes": opt.budget_minutes,
                "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
                "torch": str(torch.__version__),
                "python": sys.version.split()[0],
            },
        },
        "metrics": {"test": _round(metrics)},
    }
    example = inputs_of(ds, test[:64])
    dynamic = kind.dynamic_axes
    spec["parity"] = export_with_parity(out, net, spec, ds, test, example, dynamic)
    ds.close()  # the dataset's files (dataset: disk) are not needed after the export
    if cfg.heldout and tagger:
        spec["metrics"]["heldout"] = {
            "files": list(cfg.heldout),
            **({"also_training_input": heldout_trained_on} if heldout_trained_on else {}),
            **_round(heldout_metrics(cfg, out, sel, names[sig], dict(primary.classes) if primary else sel.classes)),
        }
        _rewrite(out, net, spec, example, dynamic)
    report = json_finite({"test": _round(metrics), "history": history})  # (standard JSON: no NaN or Infinity)
    (out / METRICS_JSON).write_text(json.dumps(report, indent=1, allow_nan=False))
    lo, hi = sel.pt_range
    if tagger:
        roc_plot(out / "roc.png", {cfg.name: (score[sig_jets], score[bkg_jets])},
                 f"test split, {lo:g} < $p_T$ < {hi:g} GeV")  # fmt: skip
    for h in heads or []:  # one figure per head
        _head_figure(out / f"{h.name}.png", h, metrics["heads"][h.name], f"{cfg.name} {h.name}, test split")
    return metrics


def _head_figure(path: Path, head: Head, metrics: dict[str, Any], title: str) -> None:
    from taggers.plots import PlotText, confusion_figure, response_figure

    text = PlotText(selection=["Pythia 8 + e2e fast detector simulation", "test split"])
    if head.type == "classification":
        confusion_figure(path, metrics["confusion"], metrics["classes"], text, title)
    else:
        response_figure(path, metrics, text, title, head.target.replace("gen_", ""))


#: jets per call of the ONNX parity check
PARITY_BATCH_SIZES = (1, 7, 64, 512)


def onnx_parity(net: Any, session: Any, batches: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """torch (``net``) against ONNX Runtime (``session``) on ``batches`` of the kind's inputs (one per batch size,
    :data:`PARITY_BATCH_SIZES`, as many jets as there are): the largest logit difference and the jets above 1e-4
    among the jets whose logits are finite on both sides, the jets whose are not, and the batch sizes compared
    (the record of an artefact)."""
    import torch

    worst, above, compared, not_finite, sizes, largest = 0.0, 0, 0, 0, [], 0.0
    for inp in batches:
        with torch.inference_mode():
            ref = net(*(torch.from_numpy(v) for v in inp.values())).numpy()
        with np.errstate(invalid="ignore"):
            largest = max(largest, float(np.abs(ref[np.isfinite(ref)]).max(initial=0.0)))
        feed = {i.name: inp[i.name] for i in session.get_inputs()}  # inputs a model ignores are not exported
        got = np.asarray(session.run(None, feed)[0])
        if got.shape != ref.shape:  # an export that lost or added an axis: nothing to compare
            return {"output_shapes": f"ONNX Runtime {list(got.shape)}, torch {list(ref.shape)}", "jets_compared": 0}
        finite = (np.isfinite(ref) & np.isfinite(got)).reshape(len(ref), -1).all(axis=1)
        with np.errstate(invalid="ignore", over="ignore"):  # (the jets with a non-finite logit are counted apart)
            diff = np.abs(got - ref).reshape(len(ref), -1).max(axis=1, initial=0.0)
        diff = diff[finite]
        worst = max(worst, float(diff.max(initial=0.0)))
        above += int(np.count_nonzero(diff > 1e-4))
        not_finite += int(np.count_nonzero(~finite))
        compared += len(ref)
        sizes.append(len(ref))
    return {
        "max_abs_logit_difference": worst,
        "jets_above_1e-4": above,
        "jets_not_finite": not_finite,
        "jets_compared": compared,
        "batch_sizes": sizes,
        "max_abs_logit": largest,
    }


def parity_failure(parity: dict[str, Any]) -> str:
    """Why :func:`onnx_parity`'s result fails e2e-train's rule (see :func:`export_with_parity`); empty if it passes."""
    if "output_shapes" in parity:
        return f"the outputs differ in shape ({parity['output_shapes']})"
    worst, above, compared = parity["max_abs_logit_difference"], parity["jets_above_1e-4"], parity["jets_compared"]
    if parity.get("jets_not_finite", 0):
        return (
            f"NaN or infinite logits for {parity['jets_not_finite']} of {compared} jets (torch or ONNX Runtime; "
            "accepted: none)"
        )
    if worst > 1e-2 or above > max(1.0, 0.005 * compared):
        return (
            f"{above} of {compared} jets by more than 1e-4, at most {worst:.2e} (accepted: one jet or 0.5 % of "
            "them, up to 1e-2)"
        )
    return ""


def export_with_parity(
    out: Path,
    net: Any,
    spec: dict[str, Any],
    ds: JetDataset,
    test: np.ndarray,
    example: dict[str, np.ndarray],
    dynamic: dict[str, dict[int, str]],
) -> dict[str, Any]:
    """Save the artefact, then compare torch and onnxruntime at several batch sizes.

    Parity: every logit within 1e-4, except for one jet or at most 0.5 % of them, which may differ by up to 1e-2: a
    network that recomputes its kNN in feature space (ParticleNet) can pick another neighbour where two
    candidates are (nearly) equidistant, since the two backends round the distance products differently
    (measured: 1 jet of 512 at 9e-4 for tau_gnn). An export bug moves every jet. Recorded in the artefact."""
    import onnxruntime as ort
    import torch

    from taggers import artefact

    ex = tuple(torch.from_numpy(v) for v in example.values())
    artefact.save(out, net, spec, ex, list(example), dynamic)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(out / artefact.ONNX), options, providers=["CPUExecutionProvider"])
    parity = onnx_parity(net, session, [inputs_of(ds, test[:size]) for size in PARITY_BATCH_SIZES])
    why = parity_failure(parity)
    if why and parity.get("max_abs_logit", 0.0) > DIVERGED_LOGIT:  # float32 rounding alone exceeds 1e-4 there
        raise _diverged(
            f"its logits reach {parity['max_abs_logit']:.1e} (an exported network is compared to 1e-4)",
            float(spec["provenance"]["config"]["optimizer"]["lr"]),
        )
    if why:
        raise RuntimeError(f"ONNX export differs from torch: {why}")
    spec["parity"] = parity
    (out / artefact.MODEL_YAML).write_text(yaml.safe_dump(spec, sort_keys=False))
    artefact.save(out, net, spec, ex, list(example), dynamic)  # the ONNX metadata gets the parity too
    return parity


def heldout_metrics(
    cfg: TrainConfig, artefact_dir: Path, sel: Selection, signal: str, classes: Mapping[str, int]
) -> dict[str, Any]:
    """Tag ``cfg.heldout`` with the exported model exactly as e2e-run does; metrics of the selected jets, the class
    ``signal`` of ``classes`` (name -> Jet_label: the selection's, or the classification head's) against the rest."""
    from e2e.config import load_process
    from e2e.process import Process

    kind = Artefact.load(str(artefact_dir)).input_kind
    modules = {
        **cfg.process["modules"],
        "tagger": {"type": kind.tagger, kind.tagger_param: cfg.product, "model": str(artefact_dir), "device": "cpu"},
    }
    data = {
        "source": {**cfg.process["source"], "files": list(cfg.heldout), "max_events": -1},
        "modules": modules,
        "outputs": [{"file": "unused.root", "keep": ["tagger"]}],
    }
    scores, labels, pts, gen = [], [], [], []
    for batch in Process(load_process(data), extra_fields=TRUTH_FIELDS).iter_batches():
        jets = batch.get("source:Jet")
        scores.append(batch.get("tagger").column(signal))
        labels.append(jets["label"])
        pts.append(jets["pt"])
        gen.append(jets["gen_pt"])
    s, lab, pt, g = (np.concatenate(a) for a in (scores, labels, pts, gen))
    base = (
        (g > 0) & (pt > sel.pt_range[0]) & (pt < sel.pt_range[1])
        if sel.require_gen_match
        else (pt > sel.pt_range[0]) & (pt < sel.pt_range[1])
    )
    sig_label, bkg_label = classes[signal], [v for k, v in classes.items() if k != signal]
    return summary(s[base & (lab == sig_label)], s[base & np.isin(lab, bkg_label)])


def _rewrite(
    out: Path, net: Any, spec: dict[str, Any], example: dict[str, np.ndarray], dynamic: dict[str, dict[int, str]]
) -> None:
    """Write model.yaml (and the ONNX metadata) again after adding to the spec."""
    import torch

    from taggers import artefact

    artefact.save(out, net, spec, tuple(torch.from_numpy(v) for v in example.values()), list(example), dynamic)


def _round(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _round(v) for k, v in d.items()}
    if isinstance(d, float):
        return float(f"{d:.6g}")
    return d
