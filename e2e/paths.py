"""Output paths: checked before anything is read, written atomically, nothing left behind (README "Outputs").

Rules shared by every console script:

- An output path is checked before any input is read (:func:`check_output_file`, :func:`check_output_dir`):
  it must not be empty, must not be (or resolve to, through a symlink or a hard link) any input, must be a
  regular file or not exist yet (never a directory, device, FIFO or socket), and must lie under a writable
  directory; missing parent directories are created when writing.
- Every output is written under a temporary name in its own directory and renamed into place when complete
  (:class:`atomic_file`, :class:`atomic_dir`), so a failed or interrupted run keeps the previous output.
- Temporaries are named ``.NAME.HOST.PID.XXXXXXXX.tmp``. SIGINT and SIGTERM abort a run cleanly, removing
  them. After SIGKILL or a crash they stay; the next run that writes the same output removes those whose
  writer is gone (same host, process no longer alive): :func:`remove_stale_temporaries`. Temporaries of
  other hosts (a shared file system) are left alone.
- An OSError without a file name raised while writing (a full disk) is given the output's path
  (:func:`on_path`), so the console scripts report it in one line naming the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from e2e.errors import E2EError
from e2e.interrupts import deferred, raise_if_requested

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname() or "host")
_TMP_RE = re.compile(r"\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.(?P<tag>[A-Za-z0-9_]+)\.tmp")


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _nonempty(path: str | os.PathLike[str] | None, what: str) -> Path:
    if path is None or not os.fspath(path).strip():
        raise E2EError(f"{what}: empty path (an unset shell variable?); give a file name")
    return Path(os.fspath(path))


def _writable_parent(p: Path, what: str) -> None:
    """The nearest existing ancestor of ``p`` must be a directory we can create entries in."""
    parent = Path(os.path.abspath(p)).parent
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if not parent.is_dir():
        raise E2EError(f"{what} {p}: {parent} is not a directory")
    if os.statvfs(parent).f_flag & os.ST_RDONLY:
        raise E2EError(f"{what} {p}: {parent} is on a read-only file system")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise E2EError(f"{what} {p}: no permission to write in {parent}")


def file_identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(device, inode) of an existing file, following symlinks; None when it does not exist."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _check_not_input(p: Path, inputs: Iterable[str | os.PathLike[str]], what: str) -> None:
    mine = file_identity(p)
    if mine is None:
        return
    for inp in inputs:
        if "://" not in os.fspath(inp) and file_identity(inp) == mine:
            same = "" if os.path.abspath(inp) == os.path.abspath(p) else f" (the same file as {inp})"
            raise E2EError(f"{what} {p} is an input of this run{same}; refusing to overwrite an input")


def check_output_file(
    path: str | os.PathLike[str] | None, inputs: Iterable[str | os.PathLike[str]] = (), what: str = "output"
) -> Path:
    """Check an output file path before anything is read (module docstring); returns it as a Path."""
    p = _nonempty(path, what)
    given = os.fspath(path) if path is not None else ""
    if given.endswith(("/", os.sep)):  # (Path() drops the slash that names a directory)
        raise E2EError(f"{what} {given} names a directory (it ends with '/'); give a file name")
    if p.exists():
        mode = os.stat(p).st_mode
        if stat.S_ISDIR(mode):
            raise E2EError(f"{what} {p} is a directory; give a file name")
        if not stat.S_ISREG(mode):
            raise E2EError(f"{what} {p} is {_kind(mode)}; outputs are regular files, written atomically")
    _check_not_input(p, inputs, what)
    _writable_parent(p, what)
    return p


def check_output_dir(
    path: str | os.PathLike[str] | None,
    inputs: Iterable[str | os.PathLike[str]] = (),
    what: str = "output directory",
    marker: str | None = None,
    owned: re.Pattern[str] | None = None,
) -> Path:
    """Check an output directory (replaced as a whole when complete) before anything is read.

    An existing directory is replaced only if it holds ``marker`` (e.g. ``model.yaml`` of an earlier
    artefact) or is empty, holds nothing but names matching ``owned`` (what such an output holds: anything else
    would be deleted with it), and never if it is an input or an input lies inside it.
    """
    p = _nonempty(path, what)
    if p.exists():
        mode = os.stat(p).st_mode
        if not stat.S_ISDIR(mode):
            raise E2EError(f"{what} {p} is {'a file' if stat.S_ISREG(mode) else _kind(mode)}; expected a directory")
        if marker is not None and not (p / marker).exists() and any(p.iterdir()):
            raise E2EError(
                f"{what} {p} exists and is not an earlier output (no {marker} in it); "
                "refusing to replace it: give a new directory"
            )
        root = os.path.realpath(p)
        for inp in inputs:
            real = os.path.realpath(inp) if "://" not in os.fspath(inp) else ""
            if real == root:
                raise E2EError(f"{what} {p} is an input of the run ({inp}); refusing to replace it")
            if real.startswith(root + os.sep):
                raise E2EError(f"{what} {p} holds the input {inp}; refusing to replace it")
        foreign = sorted(
            n.name for n in p.iterdir() if owned is not None and not (owned.fullmatch(n.name) and n.is_file())
        )
        if foreign:
            raise E2EError(
                f"{what} {p} also holds {', '.join(foreign[:3])}, which it does not write (replacing the directory "
                "would delete them): move them, or give a new directory"
            )
    _writable_parent(p, what)
    return p


# ---------------------------------------------------------------------------------------------- temporaries
def _prefix(path: Path) -> str:
    return f".{path.name}.{_HOST}.{os.getpid()}."


def temporary_path(path: str | os.PathLike[str], tag: str) -> Path:
    """The temporary name ``.NAME.HOST.PID.TAG.tmp`` of this process for ``path`` (not created)."""
    p = Path(path)
    return p.parent / f"{_prefix(p)}{tag}.tmp"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove temporaries of ``path`` left by writers on this host that are gone (SIGKILL, crash)."""
    p = Path(path)
    removed: list[Path] = []
    try:
        entries = list(p.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_RE.fullmatch(entry.name)
        if not m or m["name"] != p.name or m["host"] != _HOST or _alive(int(m["pid"])):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    return removed


@contextlib.contextmanager
def on_path(path: str | os.PathLike[str]) -> Iterator[None]:
    """Give OSErrors without a file name (ENOSPC from a library's write, ...) the path being written."""
    try:
        yield
    except OSError as err:
        if err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror or os.strerror(err.errno), os.fspath(path)) from err
        raise


def final_mode(tmp: Path, directory: bool) -> None:
    """The mode a new file (directory) gets under the umask, for files made 0600 (0700) by mkstemp, mkdtemp or a
    library (safetensors)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, (0o777 if directory else 0o666) & ~umask)  # mkstemp/mkdtemp create 0600/0700


#: temporaries of this process's atomic outputs that are neither committed nor discarded yet
_LIVE: set[Path] = set()


def remove_live_temporaries() -> list[Path]:
    """Remove the temporaries of this process's unfinished atomic outputs (after SIGINT / SIGTERM, whose exception
    may have come before the output's owner could discard it); returns them."""
    removed = sorted(_LIVE)
    for tmp in removed:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    _LIVE.clear()
    return removed


class atomic_file(contextlib.AbstractContextManager["atomic_file"]):
    """``with atomic_file(path) as tmp:`` write ``tmp``; it becomes ``path`` only if the block succeeds.

    Missing parent directories are created; stale temporaries of ``path`` are removed first.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise E2EError(f"{self.path}: a directory; a file cannot replace it (name a file)")
        with on_path(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.removed = remove_stale_temporaries(self.path)
            with deferred():  # created and registered, or neither
                try:
                    fd, tmp = tempfile.mkstemp(prefix=_prefix(self.path), suffix=".tmp", dir=self.path.parent)
                except OSError as err:  # (its message would name the temporary, not the file asked for)
                    raise OSError(err.errno, f"cannot create a file in {self.path.parent}: {err.strerror}",
                                  str(self.path)) from None  # fmt: skip
                self.tmp = Path(tmp)
                _LIVE.add(self.tmp)
        os.close(fd)

    def __enter__(self) -> atomic_file:
        return self

    def commit(self) -> Path:
        raise_if_requested()  # never replace an output after SIGINT / SIGTERM
        try:
            with on_path(self.path):
                final_mode(self.tmp, False)
                if _GROUPS:
                    _GROUPS[-1].replace(self.tmp, self.path)
                else:
                    os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()  # not left behind when the rename fails
            raise
        _LIVE.discard(self.tmp)
        return self.path

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)
        _LIVE.discard(self.tmp)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


class _CommitGroup:
    """The renames of :func:`all_or_none`: each file replaced first gets a second name (a hard link, or where the
    file system has none a rename; a temporary of this process, removed by a later run if this one is killed), so
    that the renames can be undone."""

    def __init__(self) -> None:
        self.done: list[tuple[Path, Path | None]] = []  # (target, its previous file moved aside, or None)

    def replace(self, tmp: Path, target: Path) -> None:
        backup = None
        if os.path.lexists(target) and not os.path.isdir(target):
            backup = temporary_path(target, f"previous{len(self.done)}")
            try:  # a second name for the previous file: the target never goes missing, even if this process is killed
                os.link(target, backup, follow_symlinks=False)
            except OSError:  # a file system without hard links
                os.replace(target, backup)
            _LIVE.add(backup)
        try:
            os.replace(tmp, target)
        except BaseException:
            if backup is not None:
                os.replace(backup, target)
                _LIVE.discard(backup)
            raise
        self.done.append((target, backup))

    def undo(self) -> None:
        for target, backup in reversed(self.done):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, target)
                    _LIVE.discard(backup)
                else:
                    target.unlink()
        self.done.clear()

    def finish(self) -> None:
        for _, backup in self.done:
            if backup is not None:
                backup.unlink(missing_ok=True)
                _LIVE.discard(backup)
        self.done.clear()


_GROUPS: list[_CommitGroup] = []


@contextlib.contextmanager
def all_or_none() -> Iterator[None]:
    """A block whose :class:`atomic_file` commits (several outputs, the files of a per-file output) take effect
    together or not at all: an error or an interruption (SIGINT, SIGTERM: deferred to the end of the block) undoes
    the renames already made, putting back the files they replaced."""
    raise_if_requested()
    group = _CommitGroup()
    _GROUPS.append(group)
    try:
        with deferred():
            yield
    except BaseException:
        group.undo()
        raise
    finally:
        _GROUPS.remove(group)
    group.finish()


class atomic_dir(contextlib.AbstractContextManager["atomic_dir"]):
    """``with atomic_dir(path) as d:`` fill ``d.tmp``; it replaces ``path`` (a directory) if the block succeeds."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with on_path(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.removed = remove_stale_temporaries(self.path)
            with deferred():  # created and registered, or neither
                self.tmp = Path(tempfile.mkdtemp(prefix=_prefix(self.path), suffix=".tmp", dir=self.path.parent))
                _LIVE.add(self.tmp)

    def __enter__(self) -> atomic_dir:
        return self

    def commit(self) -> Path:
        raise_if_requested()  # never replace an output after SIGINT / SIGTERM
        with on_path(self.path):
            final_mode(self.tmp, True)
            old = None
            if self.path.exists():
                old = Path(tempfile.mkdtemp(prefix=_prefix(self.path), suffix=".tmp", dir=self.path.parent))
                os.rmdir(old)
                os.rename(self.path, old)
            try:
                os.rename(self.tmp, self.path)
            except OSError:
                if old is not None:
                    os.rename(old, self.path)
                raise
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        _LIVE.discard(self.tmp)
        return self.path

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        _LIVE.discard(self.tmp)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def temporary_dir(path: str | os.PathLike[str]) -> Path:
    """A new private directory named as this process's temporary of ``path`` (``.NAME.HOST.PID.XXXXXXXX.tmp``, next
    to it): one a killed process leaves is removed by :func:`remove_stale_temporaries` of the same ``path``."""
    p = Path(path)
    return Path(tempfile.mkdtemp(prefix=_prefix(p), suffix=".tmp", dir=p.parent))


@contextlib.contextmanager
def exclusive(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Hold ``path`` (an output, a directory of parts or checkpoints) for this process while the block runs: a second
    e2e command working on it meanwhile is one line (``what`` it is, the holder's pid) instead of two runs removing
    or overwriting each other's files. An advisory lock (``flock``) on a file in the temporary directory named after
    the user and the path's real path (a few bytes, left there); released when the block ends or the process dies.
    Without a writable temporary directory the block runs unguarded."""
    import fcntl
    import hashlib

    key = hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:20]
    fd = -1
    try:  # (per user: another user's lock file is not ours to open)
        fd = os.open(Path(tempfile.gettempdir()) / f"e2e-{os.getuid()}-{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:  # no writable temporary directory: the block runs unguarded, as before there was a lock
        pass
    if fd < 0:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise E2EError(
                f"{path}: another process (pid {holder}) is writing {what} now; wait for it to end, or give another "
                "output"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # (releases the lock)


def describe_removed(removed: list[Path]) -> str:
    """'removed N stale temporary file(s) of runs that were killed: a, b'."""
    names = ", ".join(p.name for p in removed[:3]) + (", ..." if len(removed) > 3 else "")
    return f"removed {len(removed)} stale temporary file(s) of killed runs: {names}"


__all__ = [
    "temporary_dir",
    "check_output_file",
    "check_output_dir",
    "temporary_path",
    "remove_stale_temporaries",
    "on_path",
    "atomic_file",
    "atomic_dir",
    "file_identity",
    "describe_removed",
]
