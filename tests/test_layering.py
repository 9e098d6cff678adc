"""Imports go downward only (DESIGN.md 2): every import in the package code, lazy ones included, is checked.

Layers, lowest first; a module may import its own group and any lower layer, never a higher one or another
group of its own layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

#: (group, module prefixes), lowest layer first.
LAYERS: list[list[tuple[str, tuple[str, ...]]]] = [
    [("dataformats", ("dataformats",))],
    [
        (
            "e2e core",
            (
                "e2e.errors",
                "e2e.params",
                "e2e.yamlio",
                "e2e.paths",
                "e2e.event",
                "e2e.eventids",
                "e2e.module",
                "e2e.source",
                "e2e",
            ),
        )
    ],
    [("e2e.io", ("e2e.io",)), ("frameproducers", ("frameproducers",))],
    [("taggers", ("taggers",))],
    [("e2e process", ("e2e.config", "e2e.process", "e2e.executors"))],
    [("training", ("training",)), ("simulation", ("simulation",))],
    [("e2e.cli", ("e2e.cli",))],
    [("e2e api", ("e2e.api",))],  # the in-memory API: an entry point like the command lines
]
PACKAGES = ("dataformats", "e2e", "frameproducers", "taggers", "training", "simulation")


def _group(module: str) -> tuple[int, str] | None:
    """(layer, group) of a project module: the longest matching prefix wins."""
    best: tuple[int, int, str] | None = None
    for rank, groups in enumerate(LAYERS):
        for name, prefixes in groups:
            for prefix in prefixes:
                if module == prefix or module.startswith(prefix + "."):
                    if best is None or len(prefix) > best[0]:
                        best = (len(prefix), rank, name)
    return None if best is None else (best[1], best[2])


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def violations(root: Path = REPO) -> list[str]:
    """Every import of a higher layer (or of another group of the same layer), as 'file:line: ...'."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            here = _group(_module_name(path, root))
            assert here is not None, path
            for line, imported in _imports(path):
                there = _group(imported)
                if there is None or there[1] == here[1]:
                    continue
                if there[0] >= here[0]:
                    found.append(f"{path.relative_to(root)}:{line}: {here[1]} imports {imported} ({there[1]})")
    return found


def test_imports_go_downward():
    assert violations() == []


def test_the_check_finds_upward_and_sideways_imports(tmp_path):
    files = {
        "dataformats/x.py": "def f():\n    from e2e.process import Process\n",  # lazy, upward
        "frameproducers/y.py": "import e2e.io.source\n",  # sideways, same layer
        "taggers/z.py": "from frameproducers import kernels\nfrom e2e.module import Module\n",  # downward: fine
        "e2e/cli/w.py": "from training.train import train\n",  # downward: fine
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = violations(tmp_path)
    assert len(found) == 2
    assert found[0].startswith("dataformats/x.py:2: dataformats imports e2e.process")
    assert found[1].startswith("frameproducers/y.py:1: frameproducers imports e2e.io.source")


def test_every_console_script_runs_as_a_module() -> None:
    """``python -m e2e.cli.<name>`` runs the command (reexport did nothing, exit 0): each module listed in
    pyproject's scripts ends with the ``__main__`` guard."""
    import tomllib

    scripts = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    for name, target in scripts.items():
        module = target.split(":")[0]
        source = (Path(__file__).resolve().parents[1] / Path(*module.split("."))).with_suffix(".py").read_text()
        assert 'if __name__ == "__main__":' in source, f"{name}: {module} does not run with python -m"
