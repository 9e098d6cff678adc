"""Process-wide numba settings of e2e's commands and worker processes."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from typing import Any

#: values of an E2E_* switch that mean off (case-insensitive); anything else means on
_OFF = ("", "0", "false", "no", "off")


def env_flag(name: str) -> bool:
    """Whether the environment switch ``name`` (``E2E_NUMBA_EXTENSIONS``, ...) is on: 1, true, yes, on (any value
    but 0, false, no, off or empty, in any case; unset: off)."""
    return os.environ.get(name, "0").strip().lower() not in _OFF


def skip_numba_extensions() -> None:
    """Do not load other packages' ``numba_extensions`` entry points (vector, awkward: 0.5-1 s, sympy included,
    at the first compilation or cache load): e2e's kernels take numpy arrays only. Every e2e command (and its
    worker processes, which inherit the setting) does so unless ``E2E_NUMBA_EXTENSIONS=1`` is set, for a module
    of your own whose kernels use vector or awkward arrays inside numba. Without numba: nothing."""
    if env_flag("E2E_NUMBA_EXTENSIONS"):
        return
    os.environ["E2E_NUMBA_EXTENSIONS"] = "0"  # (worker processes inherit it)
    try:
        from numba.core import entrypoints
    except ImportError:  # pragma: no cover - numba is a dependency
        return
    if hasattr(entrypoints, "_already_initialized"):
        entrypoints._already_initialized = True


def defer_blas_probe() -> None:
    """Do not import scipy.linalg's BLAS when numba initialises its CPU target (0.2-0.4 s of every start).

    numba's ``numba.np.arraymath`` (imported at the first compilation or cache load) imports
    ``scipy.linalg.cython_blas`` only to decide whether ``np.dot`` inside a kernel may call BLAS. e2e's kernels use
    none. An import hook answers that question, when the module is imported, by whether scipy.linalg is installed
    (found, not imported); a kernel of your own that uses ``np.dot`` or ``np.linalg`` still gets BLAS, as numba
    imports it when it compiles such a call. ``E2E_NUMBA_BLAS_PROBE=1`` leaves numba's own probe alone."""
    if env_flag("E2E_NUMBA_BLAS_PROBE") or "numba.np.arraymath" in sys.modules:
        return
    if not any(isinstance(f, _DeferBlasProbe) for f in sys.meta_path):
        sys.meta_path.insert(0, _DeferBlasProbe())


def _scipy_linalg_found() -> None:
    """numba's ``ensure_blas`` while ``numba.np.arraymath`` is imported: raise ImportError without scipy.linalg."""
    if importlib.util.find_spec("scipy.linalg") is None:
        raise ImportError("scipy.linalg is not installed")


class _DeferBlasProbe(importlib.abc.MetaPathFinder):
    """Finds ``numba.np.arraymath`` (once) and runs it with :func:`_scipy_linalg_found` as numba's BLAS probe."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != "numba.np.arraymath":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:  # pragma: no cover - part of numba
            return spec
        run = spec.loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            from numba.np import linalg

            probe = linalg.ensure_blas
            linalg.ensure_blas = _scipy_linalg_found
            try:
                run(module)
            finally:
                linalg.ensure_blas = probe

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
