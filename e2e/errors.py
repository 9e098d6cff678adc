"""User-facing errors: one clear line each, shown without a traceback unless --debug."""

from __future__ import annotations


class E2EError(Exception):
    """Base of every user error (bad config, file, branch or value)."""


class ConfigError(E2EError):
    """A configuration file or override is invalid."""
