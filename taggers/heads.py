"""Output heads: one model, several tasks (class, tau decay mode, mass regression), each a slice of its outputs.

A model's raw output is ``[n_jets, n_outputs]``; ``heads`` (in the training configuration and in model.yaml)
cut it into consecutive column ranges, in order:

.. code-block:: yaml

    heads:
      - {name: class, classes: {qcd: 0, tau: 1, electron: 2, photon: 3}}             # target: Jet_label
      - {name: decay_mode, target: decay_mode, only: {label: [1]},                   # tau jets only
         classes: {dm0: 0, dm1: 1, dm2: 2, dm10: 10, dm11: 11}, balance: false, weight: 0.5}
      - {name: mass, type: regression, target: gen_mass, only: {label: [1, 4]}, weight: 0.5}

A classification head has one output per class (named by the class; softmax within the head); a regression head
one output named after the head: the regression of ``log(target)`` standardised by the training sample's
``shift``/``scale`` (recorded in model.yaml), returned in the target's unit as ``exp(shift + scale * raw) / R(pT)``.
e2e-train calibrates it on the validation jets: ``shift`` moved so that the median of predicted / true is 1, then
``R``, the response left as a function of the reconstructed jet pT (a median regression, piecewise linear in log pT;
``pt_response``: [jet pT in GeV, response] nodes, the end values beyond them), divided out (recorded in the
metrics); the tagger reads the jets' pT (``jets``, source:Jet) only for such a head. A head's loss is weighted by
inverse class frequency (classification; a regression head: of the jets' Jet_label) with ``balance: true``, the
default (equal per-class efficiencies, every jet kind learnt as well), or not (``balance: false``: the highest
accuracy).
``only`` restricts the jets whose loss the head sees (at inference every jet gets every output). Column names
must be unique over the heads: they become the branches ``Jet_<module label>_<name>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from e2e.errors import ConfigError, short
from e2e.params import yaml_number

HEAD_TYPES = ("classification", "regression")
#: Jet truth fields a head may predict or select on
TARGETS = ("label", "decay_mode", "gen_mass", "gen_pt")


@dataclass
class Head:
    """One task: its columns ``[start, stop)`` of the raw output and how they are read."""

    name: str
    type: str = "classification"
    target: str = "label"
    classes: dict[str, int] = field(default_factory=dict)
    only: dict[str, list[int]] = field(default_factory=dict)
    weight: float = 1.0
    start: int = 0
    stop: int = 0
    #: weight the loss by inverse class (classification) or Jet_label (regression) frequency, or not
    balance: bool = True
    #: regression: the standardisation of log(target) (set by e2e-train from the training jets, ``shift`` then
    #: calibrated on the validation jets so that the median of predicted / true is 1)
    shift: float = 0.0
    scale: float = 1.0
    #: regression: the response left after ``shift`` as a function of the reconstructed jet pT, nodes
    #: ``(pT in GeV, response)`` in increasing pT; the output is divided by it (none: no pT dependence)
    pt_response: list[tuple[float, float]] = field(default_factory=list)

    @property
    def needs_pt(self) -> bool:
        """Whether the head's output depends on the jet pT (a pT-dependent response calibration)."""
        return bool(self.pt_response)

    def response(self, pt: np.ndarray) -> np.ndarray:
        """The calibration's response at jet pT ``pt`` (GeV): linear in log pT between the nodes, the end
        node's beyond them; 1 without nodes."""
        if not self.pt_response:
            return np.ones(len(pt))
        nodes = np.asarray(self.pt_response, dtype=np.float64)
        return np.interp(np.log(np.maximum(pt, 1e-3)), np.log(nodes[:, 0]), nodes[:, 1])

    @property
    def outputs(self) -> list[str]:
        return list(self.classes) if self.type == "classification" else [self.name]

    def record(self) -> dict[str, Any]:
        """The head as model.yaml records it (``classes`` may also be given as [[name, value], ...], the form
        kept in the JSON provenance of a tagged file, whose keys are sorted)."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "target": self.target}
        if self.type == "classification":
            out["classes"] = dict(self.classes)
        else:
            out.update(shift=self.shift, scale=self.scale)
            if self.pt_response:
                out["pt_response"] = [[float(p), float(r)] for p, r in self.pt_response]
        out["balance"] = self.balance
        if self.only:
            out["only"] = {k: list(v) for k, v in self.only.items()}
        out.update(weight=self.weight, columns=[self.start, self.stop])
        return out

    def selected(self, truth: Mapping[str, np.ndarray]) -> np.ndarray:
        """Jets this head learns from: ``only`` passes, the target is one of the classes (classification) or
        positive (regression)."""
        t = truth[self.target]
        mask = np.isin(t, list(self.classes.values())) if self.type == "classification" else t > 0
        for key, values in self.only.items():
            mask &= np.isin(truth[key], values)
        return mask

    def index(self, truth: Mapping[str, np.ndarray]) -> np.ndarray:
        """Class index (order of ``classes``) of every jet, -1 where the target is no class."""
        t = truth[self.target]
        out = np.full(len(t), -1, dtype=np.int64)
        for i, value in enumerate(self.classes.values()):
            out[t == value] = i
        return out


def parse_heads(raw: Any, where: str, recorded: bool = False) -> list[Head]:
    """Heads from a configuration or model.yaml (``recorded``: with columns and standardisation); columns are
    assigned in order. One-line ConfigError naming the key."""
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: expected a non-empty list of heads ({{name, type, target, classes, ...}})")
    heads: list[Head] = []
    start = 0
    names: set[str] = set()
    allowed = {"name", "type", "target", "classes", "only", "weight", "balance"}
    if recorded:
        allowed |= {"columns", "shift", "scale", "pt_response"}
    for i, block in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(block, dict):
            raise ConfigError(f"{at}: expected a mapping with name, type, target, classes, only, weight")
        unknown = sorted(set(block) - allowed)
        if unknown:
            raise ConfigError(f"{at}: unknown key {short(unknown[0])}; allowed: {', '.join(sorted(allowed))}")
        name = block.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"{at}.name: expected an identifier (it names the outputs), got {short(name)}")
        kind = block.get("type", "classification")
        if kind not in HEAD_TYPES:
            raise ConfigError(f"{at}.type {short(kind)}: expected one of {', '.join(HEAD_TYPES)}")
        target = block.get("target", "label" if kind == "classification" else None)
        if target not in TARGETS:
            raise ConfigError(f"{at}.target {short(target)}: expected a Jet truth field: {', '.join(TARGETS)}")
        head = Head(name, kind, target)
        if kind == "classification":
            classes = block.get("classes")
            if isinstance(classes, list) and all(isinstance(c, list) and len(c) == 2 for c in classes):
                classes = {str(k): v for k, v in classes}  # [[name, value], ...]: the order kept through JSON
            if (
                not isinstance(classes, dict)
                or len(classes) < 2
                or not all(
                    isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in classes.items()
                )
            ):
                raise ConfigError(f"{at}.classes: expected at least two 'output name: {target} value' entries")
            if len(set(classes.values())) != len(classes):
                raise ConfigError(f"{at}.classes: a {target} value is listed twice: {classes}")
            head.classes = dict(classes)
        elif "classes" in block:
            raise ConfigError(f"{at}.classes: a regression head has one output (named {name}), no classes")
        balance = block.get("balance", True)
        if not isinstance(balance, bool):
            raise ConfigError(
                f"{at}.balance: expected true (equal weight per class / jet label) or false, got {short(balance)}"
            )
        head.balance = balance
        only = block.get("only", {})
        if not isinstance(only, dict) or not all(
            k in TARGETS and isinstance(v, list) and v and all(type(x) is int for x in v) for k, v in only.items()
        ):
            raise ConfigError(f"{at}.only: expected {{truth field: [values]}} with fields among {', '.join(TARGETS)}")
        head.only = {k: list(v) for k, v in only.items()}
        weight = yaml_number(block.get("weight", 1.0))
        if not isinstance(weight, int | float) or isinstance(weight, bool) or not 0 < weight < math.inf:
            raise ConfigError(f"{at}.weight: expected a positive finite loss weight, got {short(weight)}")
        head.weight = float(weight)
        head.start, head.stop = start, start + len(head.outputs)
        if recorded:
            columns = block.get("columns")
            if columns != [head.start, head.stop]:
                raise ConfigError(f"{at}.columns: expected [{head.start}, {head.stop}], got {short(columns)}")
            if kind == "regression":
                head.shift, head.scale = float(block.get("shift", 0.0)), float(block.get("scale", 1.0))
                head.pt_response = _pt_response(block.get("pt_response", []), f"{at}.pt_response")
        start = head.stop
        clash = names & set(head.outputs)
        if clash:
            raise ConfigError(f"{at}: output name '{sorted(clash)[0]}' is used by an earlier head; names must differ")
        names |= set(head.outputs)
        heads.append(head)
    return heads


def _pt_response(raw: Any, at: str) -> list[tuple[float, float]]:
    """Calibration nodes [[pT GeV, response], ...]: positive finite numbers, pT strictly increasing."""
    ok = isinstance(raw, list) and all(
        isinstance(n, list)
        and len(n) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) and v > 0 for v in n)
        for n in raw
    )
    if not ok or any(b[0] <= a[0] for a, b in zip(raw, raw[1:], strict=False)):
        raise ConfigError(f"{at}: expected [[jet pT in GeV, response], ...], positive, pT increasing; got {short(raw)}")
    return [(float(p), float(r)) for p, r in raw]


def outputs_of(heads: Sequence[Head]) -> list[str]:
    """Every output column's name, in order."""
    return [o for h in heads for o in h.outputs]


def apply_heads(values: np.ndarray, heads: Sequence[Head], pt: np.ndarray | None = None) -> np.ndarray:
    """Scores from raw outputs: a softmax within each classification head, ``exp(shift + scale * raw) / R(pT)``
    for a regression head (the target's unit); ``pt``: every row's jet pT (GeV), needed by a head with a pT
    calibration."""
    if pt is None and any(h.needs_pt for h in heads):
        raise ValueError("a regression head with a pT calibration needs the jets' pT")
    out = np.empty_like(values, dtype=np.float64)
    for h in heads:
        v = values[:, h.start : h.stop].astype(np.float64)
        if h.type == "classification":
            e = np.exp(v - v.max(axis=1, keepdims=True))
            out[:, h.start : h.stop] = e / e.sum(axis=1, keepdims=True)
        else:
            out[:, h.start : h.stop] = np.exp(np.clip(h.shift + h.scale * v, -50.0, 50.0))
            if h.needs_pt:
                assert pt is not None
                out[:, h.start : h.stop] /= h.response(np.asarray(pt, dtype=np.float64))[:, None]
    return out
