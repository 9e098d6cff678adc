"""User-facing errors: one clear line each, shown without a traceback unless --debug."""

from __future__ import annotations

import reprlib
from typing import Any


class E2EError(Exception):
    """Base of every user error (bad config, file, branch or value)."""


class ConfigError(E2EError):
    """A configuration file or override is invalid."""


def is_user_oserror(err: OSError) -> bool:
    """Whether an OSError is the user's (a path they gave: missing, unreadable, read-only; or a full disk or quota),
    reported in one line like the errors above, rather than a bug."""
    import errno

    return err.filename is not None or err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


#: At most this many characters of a user value are formatted into a message.
MESSAGE_VALUE_CHARS = 80


class _YamlRepr(reprlib.Repr):
    """``repr`` bounded, with the values configurations hold written as in YAML: null, true / false, .inf, .nan,
    dates."""

    def repr_NoneType(self, x: None, level: int) -> str:  # noqa: N802 - reprlib's naming
        return "null"

    def repr_bool(self, x: bool, level: int) -> str:
        return "true" if x else "false"

    def repr_float(self, x: float, level: int) -> str:
        if x != x:
            return ".nan"
        return (".inf" if x > 0 else "-.inf") if x in (float("inf"), float("-inf")) else repr(x)

    def repr_date(self, x: Any, level: int) -> str:
        return str(x.isoformat())

    repr_datetime = repr_date


_repr = _YamlRepr()
_repr.maxlevel = 3
_repr.maxdict = _repr.maxlist = _repr.maxtuple = _repr.maxset = 6
_repr.maxstring = _repr.maxother = _repr.maxlong = MESSAGE_VALUE_CHARS


def short(value: Any, limit: int = MESSAGE_VALUE_CHARS) -> str:
    """A bounded ``repr`` of a user value for messages: nested and long values are elided with '...'.

    Never walks more than a few levels or items, so a value that aliases expand to billions of leaves
    (a hostile YAML file) costs microseconds to format, not minutes and gigabytes.
    """
    text = _repr.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
