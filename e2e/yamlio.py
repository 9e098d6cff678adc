"""Bounded, safe YAML loading for every file e2e reads (process configs, training configs, model.yaml, -s values).

``yaml.safe_load`` constructs no Python objects from tags, but it does follow aliases: 1.7 kB of nested
``&a``/``*a`` anchors describe 10^10 leaves. PyYAML shares the aliased objects, so loading is cheap, but
anything that walks the result afterwards (validation messages, ``--dump-config``, JSON provenance) does
not finish. :func:`load_yaml_text` therefore counts the nodes of the document *as expanded* (each alias
counted as a full copy of its anchor) before constructing anything, and refuses documents over
:data:`MAX_NODES` nodes, recursive aliases, and nesting deeper than :data:`MAX_DEPTH`, each with one line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from e2e.errors import ConfigError, short

#: Most nodes (scalars, sequences, mappings) a YAML document may expand to. The largest shipped
#: configuration has about 400; a model.yaml with its provenance about 1000.
MAX_NODES = 100_000
#: Deepest nesting of sequences and mappings accepted.
MAX_DEPTH = 64
#: Largest YAML file read (bytes): configurations and model.yaml files are a few kB.
MAX_BYTES = 8 * 1024 * 1024
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def expanded_size(root: yaml.Node, where: str, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> int:
    """Number of nodes of the document rooted at ``root`` with every alias expanded (iterative, memoised).

    Refuses (ConfigError) more than ``max_nodes`` nodes, nesting deeper than ``max_depth`` and recursive aliases.
    """
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            height[key] = 1 + max((height[id(c)] for c in children), default=0)
            if size[key] > max_nodes:
                raise ConfigError(
                    f"{where}: the document holds more than {max_nodes:,} values (aliases expanded); "
                    "configurations are small, refusing to load it"
                )
            if height[key] > max_depth:
                raise ConfigError(f"{where}: nested more than {max_depth} levels deep; not accepted")
            continue
        if key in size:
            continue
        if key in on_path:
            raise ConfigError(f"{where}: a recursive alias (an anchor used inside itself); not accepted")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)
    return size[id(root)]


#: Plain numbers that YAML 1.1 (PyYAML) reads other than as written: a leading zero is octal (``016`` is 14, ``09``
#: text), a colon base 60 (``1:30`` is 90, ``1:30.5`` 90.5).
_SURPRISING_NUMBER = re.compile(r"[-+]?(0[0-9_]+|[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?)")


def _check_nodes(root: yaml.Node, where: str) -> None:
    """Refuse a mapping with the same key twice (PyYAML keeps the last silently: a second block of the same label,
    or a model.yaml line appended with other class names, would replace the first without a word; merge keys,
    ``<<``, may still be overridden, as YAML intends) and a plain number that YAML 1.1 reads as another number
    (:data:`_SURPRISING_NUMBER`: ``window: 063`` would be 51)."""
    seen_nodes: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if node.style is None and node.tag in _NUMBER_TAGS and _SURPRISING_NUMBER.fullmatch(node.value):
                text = node.value.replace("_", "")
                read = yaml.safe_load(text)
                if ":" not in text and read == int(text):  # (00, 0_0: zero either way)
                    continue
                meant = f"{int(text)} for the decimal number, " if ":" not in text else ""
                raise ConfigError(
                    f"{where}: line {node.start_mark.line + 1}: {short(node.value)} reads as {read} in YAML 1.1 (a "
                    f"leading zero means base 8, a colon base 60): write {meant}{read} for that one, or quote it as "
                    "text"
                )
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                stack.extend((key, value))
                if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                    continue
                line = key.start_mark.line + 1
                name = (key.tag, key.value)
                if name in first:
                    shown = key.value if len(key.value) <= 80 else key.value[:77] + "..."
                    raise ConfigError(
                        f"{where}: line {line}: key '{shown}' appears twice in one mapping (first at line "
                        f"{first[name]}); YAML would silently keep only the last: remove or rename one"
                    )
                first[name] = line


def _yaml_error(err: yaml.YAMLError, where: str) -> ConfigError:
    mark = getattr(err, "problem_mark", None)
    line = f" line {mark.line + 1}:" if mark is not None else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    if context and "single document" in context:  # (PyYAML: "expected a single document in the stream")
        problem = f"{context}, {problem}"
    hint = ""
    if isinstance(err, yaml.constructor.ConstructorError):
        hint = " (only plain YAML is accepted: no !!python or other object tags)"
    return ConfigError(f"{where}:{line} invalid YAML: {problem}{hint}")


def load_yaml_text(text: str, where: str) -> Any:
    """Parse ``text`` as one YAML document with the safe loader, bounded in size; one-line ConfigError."""
    try:
        loader = yaml.SafeLoader(text)  # (checks the characters first)
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        raise ConfigError(
            f"{where}: line {line}: invalid YAML: character U+{err.character:04X} is not allowed (YAML text has no "
            "control characters other than tab, newline and carriage return)"
        ) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded_size(node, where)
        _check_nodes(node, where)
        return _unshared(loader.construct_document(node))
    except yaml.YAMLError as err:
        raise _yaml_error(err, where) from err
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply; not accepted") from None
    finally:
        loader.dispose()


def _unshared(value: Any) -> Any:
    """``value`` with every mapping and list a copy of its own: YAML gives each use of an alias (``*a``, and the
    values a merge key ``<<: *a`` brings) the same object, so that an override of one block (``-s modules.b.x=1``)
    changed every block that shares it. Bounded by :func:`expanded_size` (checked before)."""
    if isinstance(value, dict):
        return {k: _unshared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unshared(v) for v in value]
    return value


def load_yaml_file(path: str | os.PathLike[str], what: str = "configuration file") -> Any:
    """Read and parse a YAML file (:func:`load_yaml_text`); missing, special or oversized files are one line."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: {what} not found")
    if not p.is_file():
        raise ConfigError(f"{p}: {what} is not a regular file")
    size = p.stat().st_size
    if size > MAX_BYTES:
        raise ConfigError(f"{p}: {what} of {size:,} bytes; YAML files over {MAX_BYTES:,} bytes are not read")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{p}: {what} is not UTF-8 text (byte {err.start})") from None
    return load_yaml_text(text, str(p))
