"""Training datasets on disk: the bulky per-node and per-pixel arrays appended batch by batch to files and read
back per minibatch, so that building and training hold one batch and one minibatch in memory, whatever the
sample size (per-jet arrays, a few bytes per jet, stay in memory).

The files live in a private temporary directory (``TMPDIR``, or ``dataset_dir`` of the training configuration),
removed when the dataset is closed or the process exits. Reads go straight into fresh arrays (``readinto``), not
memory maps: the pages read stay in the operating system's page cache, not in the process's resident memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np


class DiskColumn:
    """One array on disk, rows of ``row_shape`` and ``dtype``; indexed by a slice or an integer array (rows in the
    order given; consecutive runs read at once)."""

    def __init__(self, path: str, dtype: np.dtype, row_shape: tuple[int, ...], rows: int) -> None:
        self.path, self.dtype, self.row_shape, self.rows = path, np.dtype(dtype), row_shape, rows
        self.row_bytes = self.dtype.itemsize * int(np.prod(row_shape, dtype=np.int64))
        self._file: Any = None

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.rows, *self.row_shape)

    def __len__(self) -> int:
        return self.rows

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        if self._file is None:
            self._file = open(self.path, "rb", buffering=0)  # noqa: SIM115 - kept open, closed by close()
        want = (stop - start) * self.row_bytes
        view = out.reshape(-1).view(np.uint8).data
        self._file.seek(start * self.row_bytes)
        done = 0
        while done < want:
            n = self._file.readinto(view[done:want])
            if not n:
                raise OSError(f"{self.path}: short read at row {start} (the dataset file changed or was removed)")
            done += n

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, slice):
            start, stop, step = index.indices(self.rows)
            if step != 1:
                raise IndexError("DiskColumn: slices with a step are not supported")
            out = np.empty((max(stop - start, 0), *self.row_shape), dtype=self.dtype)
            if stop > start:
                self._read(start, stop, out)
            return out
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        out = np.empty((len(idx), *self.row_shape), dtype=self.dtype)
        if not len(idx):
            return out
        if idx.min() < 0 or idx.max() >= self.rows:
            raise IndexError(f"DiskColumn: row index out of range 0..{self.rows - 1}")
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [len(idx)]])
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
            self._read(int(idx[a]), int(idx[a]) + (b - a), out[a:b])
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class DiskStore:
    """Append-only column files in a private temporary directory; :meth:`columns` gives them as DiskColumns."""

    def __init__(self, where: str | None = None) -> None:
        import sys

        from e2e.paths import describe_removed, remove_stale_temporaries, temporary_dir

        # named as a temporary of <where>/e2e-train-dataset: the next store there removes those of killed runs
        name = os.path.join(where or tempfile.gettempdir(), "e2e-train-dataset")
        removed = remove_stale_temporaries(name)
        if removed:
            print(f"e2e-train: dataset directory: {describe_removed(removed)}", file=sys.stderr)
        self.dir = str(temporary_dir(name))
        #: the directory goes when the store is collected or the interpreter exits (a killed run leaves it)
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.dir, True)
        self._files: dict[str, Any] = {}
        self._meta: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        self._rows: dict[str, int] = {}
        self._columns: dict[str, DiskColumn] = {}

    def append(self, arrays: Mapping[str, np.ndarray]) -> None:
        for key, value in arrays.items():
            value = np.ascontiguousarray(value)
            meta = (value.dtype, value.shape[1:])
            if key not in self._files:
                self._files[key] = open(os.path.join(self.dir, f"{key}.bin"), "wb")  # noqa: SIM115 - kept open
                self._meta[key], self._rows[key] = meta, 0
            elif self._meta[key] != meta:
                raise ValueError(f"dataset column {key}: rows of {meta} after rows of {self._meta[key]}")
            self._files[key].write(value.reshape(-1).view(np.uint8).data)
            self._rows[key] += len(value)

    def columns(self) -> dict[str, DiskColumn]:
        """The columns written so far, readable (the files are flushed)."""
        for f in self._files.values():
            f.flush()
        self._columns = {
            key: DiskColumn(os.path.join(self.dir, f"{key}.bin"), *self._meta[key], self._rows[key])
            for key in self._files
        }
        return dict(self._columns)

    def close(self) -> None:
        """Close and remove the files."""
        for c in self._columns.values():
            c.close()
        for f in self._files.values():
            f.close()
        self._cleanup()
