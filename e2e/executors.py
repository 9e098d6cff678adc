"""Executors: run the work units of a process on local processes or a dask cluster (DESIGN.md 6).

As coffea's executors: the driver plans frozen :class:`~e2e.source.WorkItem` units from metadata; an executor
runs :func:`run_unit` on each, anywhere, and yields :class:`UnitResult` records as they finish. A worker builds
its modules once from the configuration (plain data; numba kernels and inference sessions are created in the
worker, never pickled) and reuses them for every unit it gets. Each unit writes one *part* per output next to
the final output (atomically); the driver checks that the plan is covered exactly once and assembles the parts
in plan order (:mod:`e2e.parts`). Only the configuration, work items and these small records cross processes.

- ``futures``: a local process pool (``concurrent.futures``), one single-threaded worker per core by default; a
  worker that dies (killed, out of memory) breaks the pool: it is rebuilt and the unfinished units resubmitted,
  each at most ``retries`` times.
- ``dask``: ``dask.distributed`` on a ``LocalCluster`` of N single-threaded worker processes, or on an existing
  scheduler (``tcp://host:8786``; dask-jobqueue's HTCondorCluster/SLURMCluster give one on a batch system); dask re-runs
  the units of a lost worker (``retries``: the LocalCluster's ``allowed-failures``). A unit's user error (a bad file,
  branch or value) comes back as a :class:`UnitFailure`, not raised in the worker: dask would log its traceback and
  re-run it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from e2e.errors import ConfigError, E2EError, is_user_oserror, short
from e2e.interrupts import die_with_parent
from e2e.source import WorkItem

#: Executors by name (``--executor``, ``options.executor``).
EXECUTORS = ("iterative", "futures", "dask")


@dataclass(frozen=True)
class UnitCall:
    """What every unit of a run shares: the configuration (plain data), its hash, where parts go."""

    config: Mapping[str, Any]
    key: str
    part_dir: str
    skip_bad_files: bool = False


@dataclass
class UnitResult:
    """What a worker reports for one unit (small: counts, digests, part paths, timings)."""

    index: int
    file: str
    entry_start: int
    entry_stop: int
    events: int = 0
    jets: int = 0
    ids_digest: str = ""
    #: the event ids read (e2e.eventids.pack_ids): the driver checks them for repeats over the run (duplicate_ids)
    ids: str = ""
    parts: list[str] = field(default_factory=list)
    #: sha256 of each part file as written: --resume reuses a part only if it still reads the same (a part damaged
    #: inside a basket opens, and has the right entry count, but would fail or, uncompressed, corrupt the output)
    part_digests: list[str] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    skipped: str = ""  # the one-line error of a bad input unit skipped with --skip-bad-files
    worker: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UnitResult:
        return cls(**json.loads(text))

    def where(self) -> str:
        return describe_item(WorkItem(self.file, "", self.entry_start, self.entry_stop, self.index))


def describe_item(item: WorkItem) -> str:
    """``unit I (FILE entries A-B)``, as messages name a unit."""
    return f"unit {item.index} ({item.file} entries {item.entry_start}-{item.entry_stop - 1})"


def config_key(config: Mapping[str, Any], files_read: Sequence[str] = ()) -> str:
    """Hash of everything that defines a unit's output: source, modules and outputs (progress and executor
    options excluded), and the contents of the files the modules read (``files_read``: e.g. a tagger's weights,
    which may change under the same path), so parts of another configuration or model are never reused."""
    relevant = {k: v for k, v in config.items() if k not in ("options",)}
    relevant["options"] = {k: v for k, v in dict(config.get("options") or {}).items() if k == "duplicate_ids"}
    h = hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode())
    for path in sorted({os.path.abspath(p) for p in files_read}):
        h.update(f"|{path}|{file_digest(path)}".encode())
    return h.hexdigest()[:16]


def file_digest(path: str) -> str:
    """sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unit_stem(call_key: str, item: WorkItem) -> str:
    """Part file stem of a unit: the configuration hash, the input file's identity and the entry range."""
    path = item.file
    ident = path
    if "://" not in path:
        st = os.stat(path)
        ident = f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
    digest = hashlib.sha256(f"{call_key}|{ident}|{item.tree}|{item.entry_start}|{item.entry_stop}".encode())
    return f"u{item.index:06d}-{digest.hexdigest()[:20]}"


# ------------------------------------------------------------------------------------------- worker side
class UnitRunner:
    """The modules of one configuration, built once per worker process and reused for every unit."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        from e2e.config import load_process
        from e2e.process import Process

        self.desc = load_process(dict(config), where="<worker>")
        self.process = Process(self.desc)
        self.modules = [self.desc.modules[label] for label in self.process.schedule.order]
        from e2e.io.source import HitsFileSource

        if isinstance(self.desc.source, HitsFileSource):
            self.desc.source.lazy = True  # inspect a file when its first unit arrives
        self.desc.source.begin()
        for m in self.modules:
            m.begin()
        self.process._warm_up(self.modules)

    def run(self, item: WorkItem, call: UnitCall) -> UnitResult:
        from dataformats.schema import SchemaError
        from e2e.eventids import ids_digest, pack_ids
        from e2e.process import Process, RunSummary

        source = self.desc.source
        result = UnitResult(item.index, item.file, item.entry_start, item.entry_stop, worker=f"pid {os.getpid()}")
        stem = unit_stem(call.key, item)
        outs = [o.for_part(os.path.join(call.part_dir, f"{stem}-{i}.root")) for i, o in enumerate(self.desc.outputs)]
        record = os.path.join(call.part_dir, f"{stem}.json")
        done = _finished_in_this_run(record, item, outs, call.skip_bad_files)
        if done is not None:  # run a second time (dask recomputes a lost worker's results): its parts stand
            return done
        before = {m.label: dict(m.counters) for m in [source, *self.modules]}
        times = dict.fromkeys(["source", *(m.label for m in [*self.modules, *outs])], 0.0)
        counted = RunSummary(self.desc.name)
        t0 = time.perf_counter()
        try:
            batch = source.read(item)
        except (SchemaError, E2EError) as err:
            if not call.skip_bad_files:
                raise
            result.skipped = str(err)
            return result
        times["source"] = time.perf_counter() - t0
        try:
            for o in outs:
                o.begin()
            Process._process(batch, [*self.modules, *outs], times, counted)  # the same loop as an iterative run
            for o in outs:
                o.end()
                if o.entries != batch.n_events:
                    raise E2EError(f"{o.label}: wrote {o.entries} entries of {describe_item(item)}")
                o.close()
                o.commit()
        except BaseException:
            for o in outs:
                o.abort()
            raise
        result.events, result.jets = counted.events, counted.jets
        result.ids_digest = ids_digest(batch.ids)
        result.ids = pack_ids(batch.ids)
        result.parts = [o.output_paths()[0] for o in outs]
        result.part_digests = [file_digest(p) for p in result.parts]
        result.times = times
        for m in [source, *self.modules]:
            if m.counters:
                result.counters[m.label] = {k: v - before[m.label].get(k, 0) for k, v in m.counters.items()}
        result.descriptions = {m.label: m.describe() for m in [source, *self.modules]}
        with open(record + ".tmp", "w") as f:
            f.write(result.to_json())
        os.replace(record + ".tmp", record)
        return result


def _finished_in_this_run(record: str, item: WorkItem, outs: list[Any], skip_bad_files: bool) -> UnitResult | None:
    """The recorded result of this unit when its parts are already written whole (a unit run twice: the driver
    has, or will have, the digests of the first run's parts, which a second run must not replace with other
    bytes), else None. The parts directory starts empty (or with --resume, with only parts the driver did not
    reuse, which are not reusable here either), so a record found is this run's."""
    from e2e.process import reusable

    try:
        with open(record) as f:
            recorded = UnitResult.from_json(f.read())
    except (OSError, ValueError, TypeError):  # none, or not a record of this version: run it
        return None
    return recorded if reusable(recorded, item, outs, skip_bad_files) else None


_RUNNERS: dict[str, UnitRunner] = {}


def single_threaded() -> None:
    """One thread per worker process for numba and torch (the workers are the parallelism). Only the libraries
    already imported are told (importing torch for an onnxruntime-only job costs ~2 s of every worker's start);
    the environment tells those imported later, and the taggers set their backend's threads themselves."""
    import sys

    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["NUMBA_NUM_THREADS"] = "1"
    for name in ("numba", "torch"):
        if name in sys.modules:
            try:
                sys.modules[name].set_num_threads(1)
            except Exception:  # noqa: S110 - numba's thread count fixed at its first parallel launch
                pass


def one_thread_each(config: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration with every module's ``threads: 0`` (the backend's default, all cores) set to 1 and the
    source's decompression threads off: the worker processes are the parallelism. Explicit thread counts are
    kept."""
    out = dict(config)
    source = dict(config.get("source") or {})
    if "read_threads" in source:
        source["read_threads"] = 0  # decompression in the worker's own thread
    out["source"] = source
    out["modules"] = {
        label: ({**block, "threads": 1} if block.get("threads") == 0 else block)
        for label, block in dict(config.get("modules") or {}).items()
    }
    return out


@dataclass(frozen=True)
class UnitFailure:
    """A user error of a unit (one line: a bad file, branch, value or model, a full disk) as a dask worker returns
    it (:func:`run_unit_or_failure`): raised in a dask task, it would be logged with its traceback by the worker
    ("Compute Failed") and re-run ``retries`` times, to the same end. The driver raises it again
    (:meth:`exception`), with the worker's traceback as its cause for ``--debug``."""

    kind: str  # "schema", "config", "e2e" or "os"
    message: str
    traceback: str = ""
    errno: int = 0
    filename: str | None = None

    @classmethod
    def of(cls, err: BaseException) -> UnitFailure | None:
        """The failure of a user error; None for anything else (raised as it is: a bug, a lost worker)."""
        import traceback

        from dataformats.schema import SchemaError

        text = "".join(traceback.format_exception(err))
        if isinstance(err, SchemaError):
            return cls("schema", str(err), text)
        if isinstance(err, E2EError):
            return cls("config" if isinstance(err, ConfigError) else "e2e", str(err), text)
        if isinstance(err, OSError) and is_user_oserror(err):  # as the command line reports it, in one line
            filename = None if err.filename is None else os.fsdecode(err.filename)
            return cls("os", err.strerror or str(err), text, err.errno or 0, filename)
        return None

    def exception(self) -> BaseException:
        """The error to raise in the driver."""
        from dataformats.schema import SchemaError

        err: BaseException
        if self.kind == "os":
            err = OSError(self.errno, self.message, self.filename)
        else:
            err = {"schema": SchemaError, "config": ConfigError}.get(self.kind, E2EError)(self.message)
        err.__cause__ = _WorkerTraceback(self.traceback)
        return err


class _WorkerTraceback(Exception):
    """The traceback of a worker's error, as the cause of the driver's (shown with ``--debug``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n(in the worker)\n{self.text}"


def run_unit_or_failure(call: UnitCall, item: WorkItem) -> UnitResult | UnitFailure:
    """:func:`run_unit` in a dask worker, its user errors returned as :class:`UnitFailure`."""
    try:
        return run_unit(call, item)
    except Exception as err:
        failure = UnitFailure.of(err)
        if failure is None:
            raise
        return failure


def run_unit(call: UnitCall, item: WorkItem, worker: bool = True) -> UnitResult:
    """Run one unit in this process (module-level: executors ship it by reference). In a worker process
    (``worker``) numba, torch and the taggers' backends use one thread each."""
    runner = _RUNNERS.get(call.key)
    if runner is None:
        _RUNNERS.clear()
        if worker:
            single_threaded()
        runner = _RUNNERS[call.key] = UnitRunner(one_thread_each(call.config) if worker else call.config)
    return runner.run(item, call)


#: what every worker of an e2e job imports, whatever the configuration
PRELOAD = ("numba", "awkward", "uproot", "e2e.process", "e2e.io.source", "e2e.io.output", "frameproducers.pixels")


def preload_modules(config: Mapping[str, Any]) -> list[str]:
    """The modules a worker of ``config`` (a raw process configuration) will import: the common ones, the
    taggers and the inference backends their ``backend`` names (onnxruntime unless torch)."""
    given = config.get("modules")
    blocks = [b for b in given.values() if isinstance(b, Mapping)] if isinstance(given, Mapping) else []
    backends = {str(b.get("backend", "onnxruntime")) for b in blocks if "model" in b}
    out = list(PRELOAD)
    if backends:
        out.append("taggers.modules")
    out += sorted(b for b in backends if b in ("torch", "onnxruntime"))
    return out


def _preload(modules: list[str]) -> int:
    """Import ``modules`` in this worker (a missing optional one is left for the run to report); its pid."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: S112 - the unit that needs it fails with its own one-line error
            continue
    single_threaded()
    return os.getpid()


# ------------------------------------------------------------------------------------------- driver side
def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a batch slot's; else all of the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


class Executor:
    """Runs units and yields their results as they finish (any order). ``start`` (optional) starts the workers
    early, while the driver is still setting up; ``close`` releases them (map releases them at its end)."""

    name = ""

    def __init__(self, workers: int, retries: int = 2, scheduler: str | None = None) -> None:
        self.workers = workers
        self.retries = retries
        self.scheduler = scheduler
        self.retried = 0

    def start(self, preload: Sequence[str] = ()) -> None:
        """Start the workers now and have them import ``preload`` (module names)."""

    def map(self, call: UnitCall, items: list[WorkItem]) -> Iterator[UnitResult]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the workers started by :meth:`start` and not yet used by :meth:`map`."""

    def describe(self) -> str:
        return f"{self.name}, {self.workers} worker(s){self._oversubscribed()}"

    def _oversubscribed(self) -> str:
        """A note when local workers outnumber the cores (each runs one thread: they share the cores)."""
        cores = usable_cores()
        return f" on {cores} core(s): oversubscribed" if self.workers > cores else ""


class SerialExecutor(Executor):
    """Units one after another in this process (the iterative executor writing parts, for --resume)."""

    name = "iterative"

    def map(self, call: UnitCall, items: list[WorkItem]) -> Iterator[UnitResult]:
        for item in items:
            yield run_unit(call, item, worker=False)


def _worker_init(driver: int = 0) -> None:
    """A futures worker: one thread, and killed with its driver (``driver``: the driver's pid; Linux
    PR_SET_PDEATHSIG), so that a killed run leaves no orphan that keeps a core busy with its unit."""
    os.environ["NUMBA_NUM_THREADS"] = "1"
    from e2e.numba_setup import defer_blas_probe, skip_numba_extensions

    skip_numba_extensions()
    defer_blas_probe()
    if driver:
        die_with_parent(driver)
    single_threaded()


def _ignore_sigint() -> None:
    """A LocalCluster worker ignores SIGINT: a Ctrl-C in the terminal reaches the whole process group, and each
    worker process printed its KeyboardInterrupt traceback; the driver stops the run and closes the cluster."""
    import signal

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _shut_down(pool: Any, timeout: float = 10.0) -> None:
    """Shut down a process pool whose workers are dead or killed without waiting for them, then let its manager
    thread finish (at most ``timeout`` s; it only reaps the dead workers): on CPython 3.11 the interpreter's exit hook
    otherwise races with that thread closing its wake-up pipe and prints an ``OSError: [Errno 9] Bad file
    descriptor`` traceback after e2e's one-line error (seen once in CI, a bad configuration with early workers)."""
    manager = getattr(pool, "_executor_manager_thread", None)  # CPython's internals; shutdown() forgets it
    pool.shutdown(wait=False, cancel_futures=True)
    if isinstance(manager, threading.Thread) and manager is not threading.current_thread():
        manager.join(timeout)


class FuturesExecutor(Executor):
    """A local process pool; a dead worker's units are resubmitted to a new pool (at most ``retries`` times)."""

    name = "futures"
    _pool: Any = None

    def _new_pool(self) -> Any:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        method = os.environ.get("E2E_MP_START", "spawn")
        if method not in multiprocessing.get_all_start_methods():
            raise E2EError(
                f"E2E_MP_START={short(method)}: not a start method of worker processes here; accepted: "
                f"{', '.join(multiprocessing.get_all_start_methods())} (default spawn)"
            )
        ctx = multiprocessing.get_context(method)
        return ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),))

    def start(self, preload: Sequence[str] = ()) -> None:
        """Start the pool with at most one worker per usable core now (one task each: the pool spawns them); the
        pool spawns the others, up to ``workers``, only when units are waiting (a run of fewer units than
        workers does not start them all: 64 workers asked for one unit on 2 cores took 79 s of imports)."""
        self._pool = self._new_pool()
        for _ in range(min(self.workers, usable_cores())):
            self._pool.submit(_preload, list(preload))

    def close(self) -> None:
        """A pool whose run stopped (before its units, or interrupted while they ran): its workers are killed, not
        waited for."""
        if self._pool is not None:
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.kill()
            _shut_down(self._pool)
            self._pool = None

    def map(self, call: UnitCall, items: list[WorkItem]) -> Iterator[UnitResult]:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        attempts: dict[int, int] = {}
        pending = list(items)
        while pending:
            # the pool stays in self._pool while it works: an interrupt in the caller's loop leaves this generator
            # suspended (its finally runs only when it is collected), and close() then kills the workers, which
            # otherwise waited for work at exit while the interpreter waited for them (a SIGINT to the driver alone)
            pool = self._pool = self._pool or self._new_pool()
            futures = {pool.submit(run_unit, call, item): item for item in pending}
            pending = []
            broken = False
            try:
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for fut in done:
                        item = futures.pop(fut)
                        try:
                            yield fut.result()
                        except BrokenProcessPool as err:
                            broken = True
                            attempts[item.index] = attempts.get(item.index, 0) + 1
                            if attempts[item.index] > self.retries:
                                raise E2EError(
                                    f"{describe_item(item)} failed {attempts[item.index]} times: a worker process "
                                    f"died ({err or 'killed or out of memory'})"
                                ) from None
                            pending.append(item)
            finally:
                if self._pool is not pool:  # close() has killed it
                    pass
                elif broken:
                    _shut_down(pool)
                else:
                    pool.shutdown(wait=True, cancel_futures=True)
                if self._pool is pool:
                    self._pool = None
            if broken:
                self.retried += len(pending)
                pending.sort(key=lambda i: i.index)


class DaskExecutor(Executor):
    """dask.distributed: a LocalCluster of ``workers`` single-threaded processes, or ``scheduler``'s cluster."""

    name = "dask"

    def describe(self) -> str:
        where = self.scheduler or f"LocalCluster of {self.workers} worker(s){self._oversubscribed()}"
        return f"dask, {where}"

    _client: Any = None
    _cluster: Any = None
    _preloading: Sequence[Any] = ()
    _starting: threading.Thread | None = None
    _start_error: BaseException | None = None

    def start(self, preload: Sequence[str] = ()) -> None:
        """Connect (or start the LocalCluster: ~2 s of nannies and worker processes) in a background thread, so
        that the driver loads the configuration and plans the units meanwhile; :meth:`map` waits for it."""
        _import_distributed()  # not installed: one line now
        self._starting = threading.Thread(
            target=self._start_in_background, args=(list(preload),), name="e2e-dask-start", daemon=True
        )
        self._starting.start()

    def _start_in_background(self, preload: list[str]) -> None:
        try:
            client = self._connect()
            # one task per worker, not waited for (kept referenced: a released future would be cancelled)
            self._preloading = [
                client.submit(_preload, preload, workers=[address], allow_other_workers=False, pure=False)
                for address in client.scheduler_info().get("workers", {})
            ]
        except BaseException as err:  # raised again by _started, in the driver's thread
            self._start_error = err

    def _started(self) -> None:
        """Wait for :meth:`start`'s thread; raise what it raised."""
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        err, self._start_error = self._start_error, None
        if err is not None:
            raise err

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing: what the start raised is reported by map, or moot
            self._started()
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None
        self._preloading = ()

    def _connect(self) -> Any:
        """The client of this run: connected once, to the scheduler or a new LocalCluster; every worker set up
        with _worker_init (one thread, numba extensions off)."""
        if self._client is not None:
            return self._client
        import logging

        import dask

        Client, LocalCluster = _import_distributed()

        # dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=64 kB: every freed batch is handed back to the
        # kernel and faulted in again (measured: the GNN tagger 3x slower); keep glibc's default for e2e's workers
        environ = {
            k: v
            for k, v in dict(dask.config.get("distributed.nanny.pre-spawn-environ", {})).items()
            if k.replace("-", "_") != "MALLOC_TRIM_THRESHOLD_"
        }
        dask.config.set(
            {
                "distributed.nanny.pre-spawn-environ": environ,
                "distributed.worker.profile.enabled": False,
                # a unit whose worker died is run again at most `retries` times (the LocalCluster's scheduler; an
                # external scheduler applies its own setting)
                "distributed.scheduler.allowed-failures": self.retries,
            }
        )
        if self.scheduler:
            try:  # within dask's connect timeout (distributed.comm.timeouts.connect, 30 s unless configured)
                self._client = Client(self.scheduler)
            except (OSError, ValueError, TypeError) as err:
                why = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise E2EError(
                    f"--scheduler {self.scheduler}: cannot connect: {why}; expected the address of a running dask "
                    "scheduler, e.g. tcp://host:8786"
                ) from None
        else:
            self._cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # any free port: never "port 8787 is already in use" (another run)
                # a Ctrl-C reaches the workers and nannies too (the terminal's process group): their ERROR logs of
                # the closing connections were ~60 lines of tracebacks; a unit's failure reaches the driver anyway
                silence_logs=logging.CRITICAL,
            )
            self._client = Client(self._cluster)
        self._client.run(_worker_init)
        if self._cluster is not None:  # its worker processes are ours: a Ctrl-C is the driver's to handle
            self._client.run(_ignore_sigint)
        return self._client

    def map(self, call: UnitCall, items: list[WorkItem]) -> Iterator[UnitResult]:
        from distributed import as_completed

        self._started()
        client = self._connect()
        try:
            futures = {
                client.submit(run_unit_or_failure, call, item, pure=False, key=f"e2e-{call.key}-{item.index}"): item
                for item in items
            }  # a lost worker's units: rescheduled by dask (allowed-failures); an error: not run again
            for fut in as_completed(list(futures)):
                item = futures.pop(fut)  # released once taken: a worker lost later does not run it again
                try:
                    result = fut.result()
                except Exception as err:
                    if type(err).__name__ == "KilledWorker":
                        raise E2EError(
                            f"{describe_item(item)} failed {self.retries + 1} times: its worker died ({err})"
                        ) from None
                    raise
                if isinstance(result, UnitFailure):
                    raise result.exception()
                yield result
        finally:
            self.close()


def _import_distributed() -> tuple[Any, Any]:
    """(Client, LocalCluster) of dask.distributed; not installed: one-line E2EError."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise E2EError(
            "--executor dask needs dask.distributed: pip install -e .[dask] (or 'dask[distributed]')"
        ) from err
    return Client, LocalCluster


def make_executor(name: str, workers: int, retries: int = 2, scheduler: str | None = None) -> Executor:
    if name == "futures":
        return FuturesExecutor(workers, retries)
    if name == "dask":
        return DaskExecutor(workers, retries, scheduler)
    return SerialExecutor(1, retries)
