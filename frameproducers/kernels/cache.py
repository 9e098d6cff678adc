"""Numba's on-disk cache of the kernels, made stale by a change to any source file they compile in.

Numba stamps a function's cache entries with its own source file only, but a compiled kernel contains the
``@njit`` functions it calls from the other files of this package (images.py and nodes.py call window.py) and
the constants of frameproducers/channels.py and dataformats/geometry.py: after an edit of window.py alone
(or a ``git pull`` that changes only it) numba would load the old image and node kernels. The functions of
this package therefore get the cache locator numba would choose for them, with a stamp that also covers
every one of those files: importing this module installs the locator; ``__init__.py`` imports it before any
kernel module.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

from numba.core import caching

_PACKAGE = Path(__file__).resolve().parent
_REPO = _PACKAGE.parents[1]
_ALSO = (_REPO / "frameproducers" / "channels.py", _REPO / "dataformats" / "geometry.py")


@functools.lru_cache(maxsize=1)
def sources_stamp() -> str:
    """sha256 of the kernel sources: every .py file of this package and the modules whose constants they use."""
    h = hashlib.sha256()
    for path in (*sorted(_PACKAGE.glob("*.py")), *_ALSO):
        h.update(path.name.encode())
        h.update(path.read_bytes() if path.is_file() else b"")
    return h.hexdigest()


class PackageSourceLocator:
    """The locator numba chooses for a function of this package, its source stamp extended by
    :func:`sources_stamp`."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get_source_stamp(self) -> Any:
        return self._inner.get_source_stamp(), sources_stamp()

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> PackageSourceLocator | None:
        if Path(py_file).resolve().parent != _PACKAGE:
            return None
        for other in _locator_classes():
            if other is not cls:
                inner = other.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner)
        return None


def _locator_classes() -> list[Any]:
    """numba's list of cache locator classes (numba < 0.62: in the private _CacheImpl)."""
    impl = next(getattr(caching, name) for name in ("CacheImpl", "_CacheImpl") if hasattr(caching, name))
    classes: list[Any] = impl._locator_classes
    return classes


def install() -> None:
    """Put :class:`PackageSourceLocator` first in numba's locator list (once)."""
    classes = _locator_classes()
    if PackageSourceLocator not in classes:
        classes.insert(0, PackageSourceLocator)


install()


def cache_is_cold() -> bool:
    """Whether the kernels have never been cached in this environment (no index file in their cache directory):
    the first run compiles them (~20 s on 2 cores). A stale cache (kernel sources changed) is not detected here;
    numba recompiles it silently."""
    import sys

    from numba.core.dispatcher import Dispatcher

    for name, module in list(sys.modules.items()):
        if not name.startswith(__package__ or "frameproducers.kernels"):
            continue
        for obj in vars(module).values():
            if isinstance(obj, Dispatcher):
                index = getattr(getattr(getattr(obj, "_cache", None), "_cache_file", None), "_index_path", None)
                if index is not None:
                    folder = Path(index).parent
                    return not folder.is_dir() or not any(folder.glob("*.nbi"))
    return False
