"""Re-export a trained artefact's ``model.onnx`` from its weights with the current exporter, as e2e-train exports
(the command: ``e2e-reexport``, :mod:`e2e.cli.reexport`).

The weights (``weights.safetensors``) are not touched: the network is rebuilt from them as stored and exported again
(:func:`taggers.artefact.onnx_model`), for instance after a change of how a layer is exported. The new ONNX model is
checked against torch on jets of a process configuration's products (its tagger ``--label`` names the product) at
the batch sizes e2e-train checks, with e2e-train's acceptance; ``model.yaml`` gets an ``onnx_export`` block (the
command, the parity, the jets) and the ONNX model embeds the new ``model.yaml``. Both files are written atomically,
and only when the check passes.

    e2e-reexport zoo:tau_gnn_fast --config process_configs/tau_gnn_fast.yaml --label tauGNN
"""

from __future__ import annotations

from typing import Any

import yaml

from e2e.errors import E2EError
from e2e.paths import atomic_file


def product_inputs(config: str, data: dict[str, Any], label: str, max_events: int) -> tuple[Any, list[Any]]:
    """The tagger ``label`` of the process configuration ``data`` (read from ``config``; built, its session not
    started) and the products it reads, event batch by event batch, of the input files (up to ``max_events``)."""
    from e2e.config import load_process
    from e2e.process import Process
    from taggers.modules import TaggerBase

    modules = data.get("modules") or {}
    if label not in modules:
        raise E2EError(f"{config}: no module '{label}' (modules: {', '.join(modules)})")
    source = data.get("source")
    if not isinstance(source, dict):
        raise E2EError(f"{config}: source: expected a mapping (type, files, ...)")
    source["max_events"] = max_events  # (iter_batches writes no output)
    desc = load_process(data, where=config)
    tagger = desc.modules[label]
    if not isinstance(tagger, TaggerBase):
        raise E2EError(f"{config}: module '{label}' is a {type(tagger).__name__}, not a tagger")
    tag = getattr(tagger.params, tagger.input_kind.tagger_param)
    # the producers of its product only: the tagger's own session would check the model.onnx being replaced (its
    # inputs, the model.yaml it embeds), which may be what the re-export is to put right
    upstream = {**data, "outputs": [{"file": "unused.root", "keep": [tag.partition(":")[0]]}]}
    products = [batch.get(tag) for batch in Process(load_process(upstream, where=config)).iter_batches()]
    return tagger, products


def parity(net: Any, session: Any, tagger: Any, products: list[Any]) -> dict[str, Any]:
    """torch against ONNX Runtime on the first jets of ``products`` at e2e-train's batch sizes, with its rule."""
    from training.train import PARITY_BATCH_SIZES, onnx_parity, parity_failure

    batches = []
    for size in PARITY_BATCH_SIZES:
        product = next((p for p in products if p.n_jets >= size), max(products, key=lambda p: p.n_jets))
        batches.append(next(iter(tagger.input_kind.micro_batches(product, size))))
    result = onnx_parity(net, session, batches)
    why = parity_failure(result)
    if why:
        raise E2EError(f"the re-exported model differs from torch: {why}; nothing was written")
    return result


def reexport(
    model: str, config: str, data: dict[str, Any], label: str, max_events: int, command: str
) -> dict[str, Any]:
    """Re-export ``model`` (see the module docstring) checked on the process configuration ``data`` (read from
    ``config``); returns the parity."""
    import onnxruntime as ort
    import torch

    from taggers import artefact as A

    art = A.Artefact.load(model)
    if art.external:
        raise E2EError(f"{art.path}: an ONNX-only model has no weights to export from")
    if not art.feed.default:
        raise E2EError(
            f"{art.path}: its model.yaml feeds model.onnx its own inputs (feed); e2e-reexport exports e2e's own "
            "inputs only, which that feed would not match"
        )
    files = ", ".join(str(f) for f in (data.get("source") or {}).get("files", []))
    tagger, products = product_inputs(config, data, label, max_events)
    if tagger.artefact.path.resolve() != art.path.resolve():
        raise E2EError(f"{config}: module '{label}' runs {tagger.params.model}, not {model}")
    products = [p for p in products if p.n_jets]
    if not products:
        raise E2EError(f"{config}: the input has no jets to check the export on")
    for p in products:
        tagger.check_product(p)
    net = art.build_torch("cpu", inference=False)
    example = next(iter(tagger.input_kind.micro_batches(products[0], 64)))
    ex = tuple(torch.from_numpy(v) for v in example.values())
    proto = A.onnx_model(net, ex, list(example), tagger.input_kind.dynamic_axes)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    result = parity(net, session, tagger, products)
    spec = {k: v for k, v in art.spec.items() if k != "onnx_export"}
    spec["onnx_export"] = {"command": command, "parity": result, "jets": f"the first jets of {files} through {config}"}
    text = yaml.safe_dump(spec, sort_keys=False)
    A.write_onnx(art.path / A.ONNX, proto, text)
    with atomic_file(art.path / A.MODEL_YAML) as out:
        out.tmp.write_text(text)
    return result
