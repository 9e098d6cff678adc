"""Atomic, incremental TTree writing with uproot (mktree + extend, LZ4).

The file is written under a temporary name in the destination directory and renamed when complete
(:mod:`e2e.paths`), so a crash never leaves a file that looks finished; an error while writing (a full
disk) names the output and removes the temporary.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import uproot

from e2e.errors import E2EError
from e2e.paths import atomic_file, on_path

#: Compression algorithms by name; LZ4 writes ~10x faster than ZLIB.
COMPRESSION = {"lz4": uproot.LZ4, "zstd": uproot.ZSTD, "zlib": uproot.ZLIB, "lzma": uproot.LZMA}


class AtomicTreeWriter:
    """Write one TTree in chunks; ``close()`` renames the temporary file to ``path``.

    ``branch_types`` maps branch (or collection) names to numpy dtypes or awkward
    type strings such as ``"var * {ieta: int16, energy: float32}"``; a collection
    ``X`` becomes the counter ``nX`` and branches ``X_field`` (NanoAOD style).
    ``atomic=False`` writes ``path`` directly (for files that are themselves temporaries).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        branch_types: Mapping[str, Any],
        tree: str = "Events",
        compression: str = "lz4",
        compression_level: int = 1,
        atomic: bool = True,
    ) -> None:
        self.path = Path(path)
        self._target = atomic_file(self.path) if atomic else None
        self.tmp_path = self._target.tmp if self._target is not None else self.path
        #: stale temporaries of killed runs removed before writing (e2e.paths)
        self.removed: list[Path] = self._target.removed if self._target is not None else []
        try:
            with on_path(self.path):
                self._file = uproot.recreate(self.tmp_path, compression=COMPRESSION[compression](compression_level))
                self._tree = self._file.mktree(tree, dict(branch_types))
        except Exception as err:
            self.tmp_path.unlink(missing_ok=True)
            if isinstance(err, OSError):
                raise
            raise E2EError(f"cannot create output file {self.path}: {err}") from err
        except BaseException:  # SIGINT / SIGTERM while creating the file
            self.tmp_path.unlink(missing_ok=True)
            raise
        self.entries = 0

    def extend(self, chunk: Mapping[str, Any]) -> None:
        """Append a chunk of entries (a dict of arrays with one row per entry)."""
        first = next(iter(chunk.values()))
        n = len(first)
        if n == 0:
            return
        with on_path(self.path):
            self._tree.extend(dict(chunk))
        self.entries += n

    def write_string(self, name: str, text: str) -> None:
        """Store ``text`` as a TObjString ``name`` next to the tree (provenance, configuration)."""
        with on_path(self.path):
            self._file[name] = text

    def close(self, commit: bool = True) -> Path:
        """Finish the file and move it to its final name (``commit=False``: leave it under its temporary name until
        :meth:`commit`, or :meth:`abort`)."""
        with on_path(self.path):
            self._file.close()
        if commit:
            self.commit()
        return self.path

    def commit(self) -> Path:
        """Move the finished file to its final name."""
        if self._target is not None:
            self._target.commit()
        return self.path

    def abort(self) -> None:
        """Discard the partial file (errors while closing it, e.g. on a full disk, are ignored)."""
        try:
            self._file.close()
        except Exception:  # noqa: S110 - the file is being thrown away
            pass
        finally:
            if self._target is not None:
                self._target.discard()
            else:
                self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> AtomicTreeWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
