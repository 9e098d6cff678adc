"""Process-wide numba settings of e2e's commands and worker processes."""

from __future__ import annotations

import os


def skip_numba_extensions() -> None:
    """Do not load other packages' ``numba_extensions`` entry points (vector, awkward: 0.5-1 s, sympy included,
    at the first compilation or cache load): e2e's kernels take numpy arrays only. Every e2e command (and its
    worker processes, which inherit the setting) does so unless ``E2E_NUMBA_EXTENSIONS=1`` is set, for a module
    of your own whose kernels use vector or awkward arrays inside numba. Without numba: nothing."""
    if os.environ.setdefault("E2E_NUMBA_EXTENSIONS", "0") != "0":
        return
    try:
        from numba.core import entrypoints
    except ImportError:  # pragma: no cover - numba is a dependency
        return
    if hasattr(entrypoints, "_already_initialized"):
        entrypoints._already_initialized = True
