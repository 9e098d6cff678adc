"""Declarative parameters: declared once (type, default, one-line help), validated at config load.

Used by every configurable piece of e2e, as CMSSW ``fillDescriptions``: a block of
YAML is checked against the declarations, unknown keys get the closest match, wrong
types name what is accepted.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from e2e.errors import ConfigError, short

#: A number with an exponent and no dot (``1e-1``, ``2E3``): YAML 1.1, which PyYAML follows, reads it as text (its
#: floats need a dot); a float parameter takes it as the number it is.
_EXPONENT_NUMBER = re.compile(r"[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+")


def yaml_number(value: Any) -> Any:
    """``value``, or the float that a text like ``1e-1`` means (YAML 1.1 reads it as text: :data:`_EXPONENT_NUMBER`),
    for settings read outside the typed parameters (a head's weight)."""
    return float(value) if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value) else value


_MISSING = dataclasses.MISSING


#: the most threads (or worker processes) a setting may ask for
MAX_THREADS = 1024
#: the most neighbours per node a graph setting may ask for
MAX_NEIGHBOURS = 1024


def param(
    default: Any = _MISSING,
    help: str = "",
    *,
    choices: tuple | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
) -> Any:
    """Declare one parameter of a config dataclass: default, one-line help, optional choices/range."""
    meta = {"help": help, "choices": choices, "minimum": minimum, "maximum": maximum}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=functools.partial(copy.copy, default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def input_tag(default: Any = _MISSING, help: str = "", *, product: type | None = None) -> Any:
    """Declare a parameter that names a product to consume: ``label`` or ``label:instance`` (CMSSW InputTag).

    ``product`` is the product type the module expects; the schedule checks it at config load.
    """
    meta = {"help": help, "choices": None, "minimum": None, "maximum": None, "input_tag": True, "product": product}
    return dataclasses.field(default=default, metadata=meta)


def to_plain(value: Any) -> Any:
    """Plain YAML-able data of a config dataclass (tuples become lists), for --dump-config and provenance."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append((arg, err))
        tried = [err for arg, err in errors if arg is not type(None)]
        if len(tried) == 1 and value is not None:  # an optional value: what its type says (a finite number, ...)
            own = str(tried[0]).startswith(f"{where}: ")  # (not an element's: a list of numbers or null)
            raise ConfigError(f"{tried[0]} (or null)" if own else str(tried[0])) from None
        raise ConfigError(f"{where}: got {short(value)}, expected {_type_name(tp)}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} parameters, got {short(value)}")
        return build(tp, value, where)
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: got {short(value)}, expected a list ({_type_name(tp)})")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: got {len(value)} values, expected {len(args)} ({_type_name(tp)})")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: got {short(value)}, expected a mapping")
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: got {short(value)}, expected true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if not -(2**63) <= value < 2**63:  # every integer parameter reaches numpy or C as a 64-bit integer
                raise ConfigError(f"{where}: got {short(value)}, expected a signed 64-bit integer (|value| < 2**63)")
            return value
        number = yaml_number(value)
        if isinstance(number, float) and number.is_integer() and abs(number) < 2**63:
            raise ConfigError(f"{where}: got {short(value)}, expected an integer (write {int(number)})")
        raise ConfigError(f"{where}: got {short(value)}, expected an integer")
    if tp is float:
        value = yaml_number(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(float(value)):  # NaN passes every range check; inf is no setting either
                raise ConfigError(f"{where}: got {short(value)}, expected a finite number")
            return float(value)
        raise ConfigError(f"{where}: got {short(value)}, expected a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: got {short(value)}, expected a string")
    raise ConfigError(f"{where}: unsupported parameter type {_type_name(tp)}")


def unknown_key_message(key: str, allowed: list[str], where: str) -> str:
    """'unknown key' message with the closest match and the allowed keys."""
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{where}: unknown key {short(key)}{hint}; allowed: {', '.join(allowed)}"


def build(cls: type, mapping: Mapping[str, Any] | None, where: str) -> Any:
    """Instantiate config dataclass ``cls`` from ``mapping``, validating every key and value."""
    mapping = dict(mapping or {})
    try:
        hints = typing.get_type_hints(cls)
    except Exception as err:  # (a class of the user's: an annotation naming what its module does not define)
        raise ConfigError(
            f"{where}: the parameter declarations of {cls.__module__}.{cls.__qualname__} cannot be read: an "
            f"annotation names something undefined ({type(err).__name__}: {err})"
        ) from None
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in mapping:
        if key not in fields:
            raise ConfigError(unknown_key_message(str(key), list(fields), where))
    kwargs = {}
    for name, f in fields.items():
        loc = f"{where}.{name}"
        if name not in mapping:
            if f.default is _MISSING and f.default_factory is _MISSING:
                raise ConfigError(f"{loc}: missing required key ({f.metadata.get('help', '')})")
            plain = not dataclasses.is_dataclass(f.default) and not (
                isinstance(f.default, float) and not math.isfinite(f.default)
            )  # (a sub-configuration instance, or an unbounded "no cut" default: as declared)
            if f.default is not _MISSING and plain:
                try:  # (a module of the user's whose declared default breaks its own type, choices or bounds)
                    _checked(f.default, hints[name], f.metadata, loc)
                except ConfigError as err:
                    raise ConfigError(
                        f"{err} (the default {cls.__qualname__} declares for it: give a valid value, or correct the "
                        "declaration)"
                    ) from None
            continue
        kwargs[name] = _checked(mapping[name], hints[name], f.metadata, loc)
    return cls(**kwargs)


def _checked(given: Any, hint: Any, meta: Mapping[str, Any], loc: str) -> Any:
    """``given`` as the type ``hint``, within the field's ``choices`` and bounds (``meta``); one-line ConfigError."""
    value = _coerce(given, hint, loc)
    if meta.get("choices") is not None and value not in meta["choices"]:
        allowed = ", ".join("null" if c is None else str(c) for c in meta["choices"])
        close = difflib.get_close_matches(str(value), [str(c) for c in meta["choices"]], n=1)
        hint_ = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{loc}: got {short(value)}{hint_}; allowed: {allowed}")
    for bound, op, word in (("minimum", float.__lt__, ">="), ("maximum", float.__gt__, "<=")):
        lim = meta.get(bound)
        if lim is not None and isinstance(value, (int, float)) and op(float(value), float(lim)):
            raise ConfigError(f"{loc}: got {short(value)}, expected a value {word} {lim}")
    return value


def describe(cls: type, prefix: str = "") -> list[str]:
    """One line per parameter: name, type, default and help (for --help-config and docs)."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            lines.append(f"{prefix}{f.name}:  ({f.metadata.get('help', '')})")
            lines += describe(tp, prefix + "  ")
            continue
        default = (
            f.default
            if f.default is not _MISSING
            else (f.default_factory() if f.default_factory is not _MISSING else "<required>")
        )
        lines.append(f"{prefix}{f.name}: {_type_name(tp)} = {default!r}  # {f.metadata.get('help', '')}")
    return lines
