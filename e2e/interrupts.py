"""Interruptions (SIGINT, SIGTERM) that stop a run even when their exception is swallowed.

A signal handler's exception is raised in whatever Python code runs at that moment; inside a ``__del__``, a weakref
callback or the garbage collector, Python reports it as "Exception ignored" and carries on. So e2e's handlers also
record the request: outputs refuse to be committed after it (:func:`raise_if_requested` in :mod:`e2e.paths`), the
event loop stops at its next batch, and the console scripts exit with the signal's code.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as SIGINT: the run stops, partial outputs and temporaries are removed."""


_requested: list[KeyboardInterrupt] = []
_deferring = [0]


def on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM handler: record the request and raise :class:`Terminated` (at the end of a :func:`deferred` block)."""
    _requested.append(Terminated())
    if not _deferring[0]:
        raise Terminated()


def on_sigint(signum: int, frame: Any) -> None:
    """SIGINT handler: record the request and raise ``KeyboardInterrupt``, as Python's own (or at the end of a
    :func:`deferred` block)."""
    _requested.append(KeyboardInterrupt())
    if not _deferring[0]:
        raise KeyboardInterrupt()


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A block that an interruption does not cut short: the signal is recorded, its exception raised when the block
    ends (e.g. a temporary file is created and registered for removal, or neither)."""
    _deferring[0] += 1
    try:
        yield
    finally:
        _deferring[0] -= 1
    if not _deferring[0]:
        raise_if_requested()


def raise_if_requested() -> None:
    """Raise the requested interruption again (a fresh exception of its type), if there was one."""
    if _requested:
        raise type(_requested[0])()


def clear() -> None:
    """Forget earlier requests (the start of a command)."""
    _requested.clear()


def quiet_unraisable(hook: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A ``sys.unraisablehook`` that drops the recorded interruption (raised inside a ``__del__``), else ``hook``."""

    def unraisable(info: Any) -> Any:
        if _requested and isinstance(info.exc_value, KeyboardInterrupt):
            return None
        return hook(info)

    return unraisable


def die_with_parent(driver: int) -> None:
    """SIGKILL this process (a worker: of e2e-run's futures executor, of e2e-generate's jobs) when its parent dies
    (Linux prctl; elsewhere nothing); exit now if ``driver`` has already gone (it died before the call): a driver
    killed with SIGKILL leaves no worker running on."""
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - no prctl: orphans finish their unit and exit
        return
    if os.getppid() != driver:
        os._exit(1)


__all__ = [
    "Terminated",
    "clear",
    "deferred",
    "die_with_parent",
    "on_sigint",
    "on_sigterm",
    "quiet_unraisable",
    "raise_if_requested",
]
