"""The decorator of the kernel functions that must not pay numba's reference counting.

Numba increfs and decrefs, with atomic operations, every array bound by an inlined helper call or held in a
named tuple argument, and in loops it cannot prune them: at a helper call per hit or per node that costs
from ~10% (small windows) to several times the kernel. The per-window and per-graph functions allocate
nothing and keep no reference to an array, so they are compiled without reference counting (numba's
long-standing ``_nrt=False`` option); a function they call that needs it (an allocation, a slice copy) is a
compile error, not a silent leak.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from numba import njit

_F = TypeVar("_F", bound=Callable[..., Any])
_NO_REFCOUNT: dict[str, Any] = {"cache": True, "_nrt": False}


def no_refcount(fn: _F) -> _F:
    """``@njit(cache=True)`` without reference counting, for a function that allocates no array."""
    compiled: _F = njit(**_NO_REFCOUNT)(fn)
    return compiled
