"""Schedule modules from their declared inputs and run them over the source's batches (DESIGN.md 3, 6).

Only modules whose products an output needs (directly or through other modules) run, in an order
where every module comes after what it consumes (YAML order among equals), as a CMSSW Task.
Consumed labels that nothing produces, wrong product types and cycles are configuration errors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dataformats.schema import SchemaError
from e2e.config import SOURCE_LABEL, ProcessDescription
from e2e.errors import ConfigError, E2EError, short
from e2e.event import EventBatch, split_tag
from e2e.eventids import EventIdRegister
from e2e.interrupts import raise_if_requested
from e2e.module import Module, OutputModule, UnitPart, run_producer
from e2e.paths import check_output_file, exclusive
from e2e.source import WorkItem

if TYPE_CHECKING:
    from e2e.executors import UnitResult


@dataclass
class Schedule:
    """Modules to run in order, the source read plan, and modules left out (nothing needs them)."""

    order: list[str]
    plan: dict[str, tuple[str, ...] | None]
    unscheduled: list[str]


def _closest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _source_collections_as_declared(owner: str, module: Module, where: str, collections: Mapping[str, type]) -> None:
    """An input that reads a source collection by default (``jets: source:Jet``) takes that collection from the
    source, or a module's product in its place, never another source collection: the ECAL hits as jets have the
    same product type, so only the name tells (they failed deep in a kernel)."""
    consumed = module.consumes()
    for f in dataclasses.fields(module.params):
        default = f.default if isinstance(f.default, str) else ""
        value = getattr(module.params, f.name)
        if not (f.metadata.get("input_tag") and default.startswith(f"{SOURCE_LABEL}:") and isinstance(value, str)):
            continue
        label, instance = split_tag(value)
        if label == SOURCE_LABEL and instance not in collections and value not in consumed:
            names = [f"{SOURCE_LABEL}:{c}" for c in collections]  # (a tag it consumes is named by build_schedule)
            raise ConfigError(
                f"{where}: {owner}.{f.name}: got '{value}', but 'source' produces {', '.join(names)}"
                f"{_closest(value, names)}"
            )
        if label == SOURCE_LABEL and instance in collections and value != default:
            raise ConfigError(
                f"{where}: {owner}.{f.name}: got '{value}'; this input takes the source's collection {default} (or a "
                "module's product of that kind)"
            )


def _check_declarations(module: Module) -> None:
    """A module's ``produces()`` ({instance: product class}) and ``consumes()`` ({tag: product class or None}) as
    the framework reads them, or one line naming the module (a module of your own may return anything)."""
    owner = (
        f"modules.{module.label} ({module.type_name})" if module.kind == "producer" else f"output {module.type_name}"
    )
    made, used = module.produces(), module.consumes()
    if not isinstance(made, Mapping) or not all(isinstance(i, str) and isinstance(t, type) for i, t in made.items()):
        raise ConfigError(
            f"{owner}: produces() must return {{instance: product class}} ('' for the label itself), got {short(made)}"
        )
    if not isinstance(used, Mapping) or not all(
        isinstance(tag, str) and (t is None or isinstance(t, type)) for tag, t in used.items()
    ):
        raise ConfigError(f"{owner}: consumes() must return {{tag: product class or None}}, got {short(used)}")


def build_schedule(desc: ProcessDescription) -> Schedule:
    """Check every consumed tag and derive the module order and what the source must read."""
    where = desc.where
    producers: dict[str, Module] = {SOURCE_LABEL: desc.source, **desc.modules}
    for module in [*desc.modules.values(), *desc.outputs]:
        _check_declarations(module)
    available: dict[str, type] = {}
    for label, module in desc.modules.items():
        for instance, tp in module.produces().items():
            available[f"{label}:{instance}" if instance else label] = tp
    for output in desc.outputs:
        output.select(available)

    def check(owner: str, module: Module) -> list[str]:
        """Labels this module depends on, after checking each consumed tag exists with the right type."""
        _source_collections_as_declared(owner, module, where, desc.source.produces())
        deps = []
        for tag, expected in module.consumes().items():
            label, instance = split_tag(tag)
            if tag.endswith(":"):  # ('x:' read as x's main product here, but put under 'x': not found mid-run)
                raise ConfigError(
                    f"{where}: {owner} consumes '{tag}': nothing after ':'; write '{label}' for its main product, or "
                    f"'{label}:INSTANCE'"
                )
            if label not in producers:
                raise ConfigError(
                    f"{where}: {owner} consumes '{tag}' but no module is labelled '{label}'"
                    f"{_closest(label, list(producers))}; labels: {', '.join(producers)}"
                )
            made = producers[label].produces()
            if instance not in made:
                what = ", ".join(f"{label}:{i}" if i else label for i in made) or "nothing"
                raise ConfigError(
                    f"{where}: {owner} consumes '{tag}' but '{label}' produces {what}"
                    f"{_closest(tag, [f'{label}:{i}' if i else label for i in made])}"
                )
            if expected is not None and not issubclass(made[instance], expected):
                raise ConfigError(
                    f"{where}: {owner} consumes '{tag}', a {made[instance].__name__}, but needs a {expected.__name__}"
                )
            if label != SOURCE_LABEL:
                deps.append(label)
        return deps

    deps = {label: check(f"modules.{label}", m) for label, m in desc.modules.items()}
    out_deps = [check(f"outputs.{i}", o) for i, o in enumerate(desc.outputs)]

    # modules needed by the outputs, transitively
    needed: set[str] = set()
    stack = [d for ds in out_deps for d in ds]
    while stack:
        label = stack.pop()
        if label not in needed:
            needed.add(label)
            stack.extend(deps[label])

    # topological order (YAML order among ready modules); cycles are errors
    order: list[str] = []
    done: set[str] = set()
    pending = [label for label in desc.modules if label in needed]
    while pending:
        ready = [label for label in pending if all(d in done for d in deps[label])]
        if not ready:
            raise ConfigError(f"{where}: modules form a cycle: {_cycle(pending, deps)}")
        for label in ready:
            order.append(label)
            done.add(label)
        pending = [label for label in pending if label not in done]
    _check_cycles(desc, deps)

    # what the source must read: collection -> fields (None = all)
    plan: dict[str, set[str] | None] = {}
    for module in [desc.modules[label] for label in order] + list(desc.outputs):
        fields = module.fields_needed()
        for tag in module.consumes():
            label, coll = split_tag(tag)
            if label != SOURCE_LABEL:
                continue
            want = fields.get(tag)
            if coll in plan and plan[coll] is None:
                continue
            plan[coll] = None if want is None else (plan.get(coll) or set()) | set(want)
    final_plan = {c: (None if f is None else tuple(sorted(f))) for c, f in plan.items()}
    unscheduled = [label for label in desc.modules if label not in needed]
    return Schedule(order, final_plan, unscheduled)


def _cycle(pending: list[str], deps: dict[str, list[str]]) -> str:
    """One cycle among ``pending`` as 'a -> b -> a'."""
    start = pending[0]
    path = [start]
    seen = {start}
    node = start
    while True:
        node = next(d for d in deps[node] if d in pending)
        if node in seen:
            path = path[path.index(node) :]
            return " -> ".join([*path, node])
        path.append(node)
        seen.add(node)


def _check_cycles(desc: ProcessDescription, deps: dict[str, list[str]]) -> None:
    """Cycles among modules no output needs are still configuration errors."""
    done: set[str] = set()
    pending = list(desc.modules)
    while pending:
        ready = [label for label in pending if all(d in done for d in deps[label])]
        if not ready:
            raise ConfigError(f"{desc.where}: modules form a cycle: {_cycle(pending, deps)}")
        done.update(ready)
        pending = [label for label in pending if label not in done]


def _say_if_compiling() -> None:
    """Say on stderr that the numba kernels are being compiled, when they have never been cached here."""
    import sys

    if "frameproducers.kernels" not in sys.modules:
        return
    from frameproducers.kernels.cache import cache_is_cold

    if cache_is_cold():
        print(
            "e2e: first run in this environment: compiling the numba kernels (20-50 s, one core; cached for the "
            "next runs)",
            file=sys.stderr,
            flush=True,
        )


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (MB), or of its largest finished child process (``children``: the
    executors' workers); 0 where ``resource`` is not available.

    This process: Linux's VmHWM (the peak of this program's own memory; ``ru_maxrss`` would start from the RSS
    of the parent at the fork, e.g. a large notebook or benchmark that started e2e-run), else ``ru_maxrss``."""
    if not children:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024.0  # kB
        except (OSError, ValueError, IndexError):
            pass
    try:
        import resource
        import sys
    except ImportError:  # pragma: no cover - not POSIX
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF).ru_maxrss
    return usage / (1024.0 * 1024.0) if sys.platform == "darwin" else usage / 1024.0  # bytes on macOS, else kB


def peak_rss_text(parallel: bool) -> str:
    """The summary's memory line: this process, and the largest worker for parallel runs."""
    text = f"{peak_rss_mb():,.0f} MB"
    if parallel:
        workers = peak_rss_mb(children=True)
        text += f" (driver); largest finished worker {workers:,.0f} MB" if workers else " (driver)"
    return text


@dataclass
class RunSummary:
    """What a run did: counts, time per module, throughput, outputs."""

    process: str
    events: int = 0
    jets: int = 0
    batches: int = 0
    files: int = 0
    wall_s: float = 0.0
    setup_s: float = 0.0
    times: dict[str, float] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    unscheduled: list[str] = field(default_factory=list)
    duplicate_ids: int = 0
    first_duplicate: str | None = None
    parallel: bool = False

    def lines(self) -> list[str]:
        loop = sum(self.times.values())
        out = [
            f"e2e-run: process {self.process}: {self.events} events, {self.jets} jets from {self.files} file(s) "
            f"in {self.batches} batch(es); {self.wall_s:.2f} s wall, of which setup {self.setup_s:.2f} s "
            "(imports, numba cache load or compile, inference sessions)"
        ]
        out.append(f"  {'module':<18} {'type':<20} {'time [s]':>9} {'ms/event':>9} {'us/jet':>8} {'share':>6}")
        for label, t in self.times.items():
            share = 100.0 * t / loop if loop > 0 else 0.0
            ms_ev = 1e3 * t / self.events if self.events else 0.0
            us_jet = 1e6 * t / self.jets if self.jets else 0.0
            out.append(
                f"  {label:<18} {self.types.get(label, ''):<20} {t:9.3f} {ms_ev:9.3f} {us_jet:8.1f} {share:5.1f}%"
            )
        rate_ev = self.events / loop if loop > 0 else 0.0  # setup (incl. numba compile/cache load) excluded
        rate_jet = self.jets / loop if loop > 0 else 0.0
        if self.parallel:
            run = max(self.wall_s - self.setup_s, 1e-9)
            out.append(
                f"  throughput (wall, after setup, {run:.2f} s): {self.events / run:,.0f} events/s, "
                f"{self.jets / run:,.0f} jets/s; module times above are summed over the workers ({loop:.2f} s)"
            )
        else:
            out.append(f"  throughput (event loop, {loop:.2f} s): {rate_ev:,.0f} events/s, {rate_jet:,.0f} jets/s")
        out.append(f"  peak memory (RSS): {peak_rss_text(self.parallel)}")
        for label, desc in self.descriptions.items():
            if desc:
                out.append(f"  {label}: {desc}")
        for label, counters in self.counters.items():
            for name, n in counters.items():
                out.append(f"  {label}: {name}: {n}")
        if self.duplicate_ids:
            out.append(
                f"  duplicate event ids (same run, luminosityBlock, event as an earlier event): "
                f"{self.duplicate_ids}; first: {self.first_duplicate}"
            )
        if self.unscheduled:
            out.append(f"  not run (no output needs them): {', '.join(self.unscheduled)}")
        out += [f"  output: {o}" for o in self.outputs]
        return out


class _NoBar:
    """The progress bar of a run that shows none (tqdm's ``update`` and ``close``)."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _located(message: str, module: Module, where: str) -> str:
    """``message`` of an error raised by ``module`` on the events ``where``, the module named once: run_producer's
    checks name it as ``modules.LABEL (TYPE)`` already."""
    own = f"modules.{module.label} ({module.type_name})"
    if message.startswith(own + " "):
        return f"{own} on {where}:{message[len(own) :]}"
    return f"{module.label} ({where}): {message}"


class Process:
    """A configured, scheduled process: run it over the source and write the outputs."""

    def __init__(self, desc: ProcessDescription, extra_fields: Mapping[str, tuple[str, ...]] | None = None) -> None:
        """``extra_fields``: source collection -> fields to read besides what the modules consume
        (e.g. the Jet truth for training datasets)."""
        self.desc = desc
        self.schedule = build_schedule(desc)
        plan = dict(self.schedule.plan)
        for coll, fields in (extra_fields or {}).items():
            if coll in plan and plan[coll] is None:
                continue
            plan[coll] = tuple(sorted(set(plan.get(coll) or ()) | set(fields)))
        self.schedule.plan = plan
        desc.source.set_plan(plan)

    def iter_batches(self) -> Iterator[EventBatch]:
        """Yield every batch with the products of the scheduled modules on it (no outputs are written).

        For notebooks and training datasets: the same source and producers as ``e2e-run``.
        """
        modules = [self.desc.modules[label] for label in self.schedule.order]
        source = self.desc.source
        source.begin()
        for m in modules:
            m.begin()
        try:
            for item in source.plan():
                batch = source.read(item)
                for m in modules:
                    run_producer(m, batch)
                yield batch
        finally:
            for m in modules:
                m.end()
            source.end()

    def start_summary(self) -> RunSummary:
        """Set this process's numba threads (``options.threads``) and return an empty summary with the module
        types (for ``run`` and ``run_units``)."""
        desc = self.desc
        if desc.options.threads:
            import numba

            numba.set_num_threads(min(desc.options.threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
        summary = RunSummary(desc.name, unscheduled=list(self.schedule.unscheduled))
        summary.types = {
            "source": type(desc.source).__name__,
            **{label: type(desc.modules[label]).__name__ for label in self.schedule.order},
            **{o.label: type(o).__name__ for o in desc.outputs},
        }
        return summary

    def progress_bar(self, total: int, progress: bool | None) -> Any:
        """A tqdm bar over ``total`` events: shown when ``progress`` (else ``options.progress``, else when stderr
        is a terminal) says so; else a bar that shows nothing, without importing tqdm (~20 ms of start-up)."""
        show = self.desc.options.progress if progress is None else progress
        if show is None:
            show = sys.stderr.isatty()
        if not show:
            return _NoBar()
        from tqdm import tqdm

        return tqdm(total=total, unit="ev", leave=False, dynamic_ncols=True)

    def run(self, progress: bool | None = None) -> RunSummary:
        t_start = time.perf_counter()
        desc = self.desc
        modules = [desc.modules[label] for label in self.schedule.order]
        source = desc.source
        summary = self.start_summary()
        times = dict.fromkeys(summary.types, 0.0)
        inputs = self.check_paths()
        for output in desc.outputs:
            output.set_provenance(
                {"process": desc.to_dict(), "inputs": [p if "://" in p else os.path.abspath(p) for p in inputs]}
            )
        ids = EventIdRegister(desc.options.duplicate_ids == "error")
        try:
            source.begin()
            for m in [*modules, *desc.outputs]:
                m.begin()
            items = source.plan()
            summary.files = len({item.file for item in items})
            self._warm_up(modules)
            summary.setup_s = time.perf_counter() - t_start
            bar = self.progress_bar(sum(i.n_events for i in items), progress)
            for batch, waited in self._prefetched(items):
                raise_if_requested()  # a SIGINT / SIGTERM whose exception a __del__ swallowed
                ids.add(batch)
                times["source"] += waited
                self._process(batch, [*modules, *desc.outputs], times, summary)
                bar.update(batch.n_events)
            bar.close()
            summary.files = len({item.file for item in items} | set(source.empty_inputs()))  # (those without events)
            summary.duplicate_ids = ids.finish()
            summary.first_duplicate = ids.first
            if summary.batches == 0:  # an empty input still gets outputs with every branch (0 entries)
                self._process(source.empty_batch(), [*modules, *desc.outputs], times, summary)
            for m in [*modules, *desc.outputs]:
                m.end()
            source.end()
            for output in desc.outputs:
                if output.entries != summary.events:
                    raise E2EError(f"{output.label}: wrote {output.entries} entries but read {summary.events} events")
                summary.outputs.append(output.close())
            _commit(desc.outputs)  # every output finished: only now does any replace a file
        except BaseException:
            for output in desc.outputs:
                output.abort()
            source.end()  # idempotent: closes files, stops the read threads
            raise
        summary.times = times
        summary.counters = {m.label: dict(m.counters) for m in [source, *modules, *desc.outputs] if m.counters}
        summary.descriptions = {m.label: m.describe() for m in [source, *modules]}
        summary.wall_s = time.perf_counter() - t_start
        return summary

    def _prefetched(self, items: list[Any]) -> Iterator[tuple[EventBatch, float]]:
        """The batches of ``items`` in order, each read in a background thread while the previous one is
        processed (``options.prefetch``); with the seconds the loop waited for it."""
        source = self.desc.source
        if not self.desc.options.prefetch or len(items) < 2:
            for item in items:
                t0 = time.perf_counter()
                batch = source.read(item)
                yield batch, time.perf_counter() - t0
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="e2e-prefetch") as pool:
            future = pool.submit(source.read, items[0])
            try:
                for k in range(len(items)):
                    t0 = time.perf_counter()
                    batch = future.result()
                    waited = time.perf_counter() - t0
                    if k + 1 < len(items):
                        future = pool.submit(source.read, items[k + 1])
                    yield batch, waited
            finally:
                future.cancel()
                try:  # a read still running must finish before the source is closed
                    future.exception()
                except BaseException:  # noqa: S110 - its error is irrelevant once the loop stopped
                    pass

    def check_paths(self) -> list[str]:
        """Check every output path against the inputs before anything is read (e2e.paths); return the inputs."""
        inputs = self.desc.source.input_paths()
        protected = [*inputs, *([self.desc.config_file] if self.desc.config_file else [])]
        protected += [f for m in self.desc.modules.values() for f in m.files_read()]
        seen: dict[str, str] = {}
        for output in self.desc.outputs:
            output.set_inputs(inputs)
            for path in output.output_paths():
                check_output_file(path, protected, "output")
                key = os.path.realpath(path)
                if key in seen:
                    raise ConfigError(f"{self.desc.where}: outputs {seen[key]} and {output.label} both write {path}")
                seen[key] = output.label
        return inputs

    def _warm_up(self, modules: list[Module]) -> None:
        """Run every module on an empty batch once: numba compiles or loads its kernels here (setup time),
        and configuration problems that only show with data appear before any output is written."""
        batch = self.desc.source.empty_batch()
        _say_if_compiling()
        for m in modules:
            run_producer(m, batch)
        for o in self.desc.outputs:
            o.prepare(batch)

    @staticmethod
    def _process(batch: EventBatch, modules: list[Module], times: dict[str, float], summary: RunSummary) -> None:
        """Run the scheduled modules, then the outputs (modules list ends with them) on one batch."""
        for m in modules:
            t0 = time.perf_counter()
            try:
                run_producer(m, batch)
            except E2EError as err:
                raise type(err)(_located(str(err), m, batch.where())) from err
            times[m.label] += time.perf_counter() - t0
        summary.events += batch.n_events
        summary.batches += batch.n_events > 0
        tag = f"{SOURCE_LABEL}:Jet"
        if tag in batch:
            summary.jets += len(batch.get(tag))


def check_exactly_once(items: list[Any], results: Mapping[int, Any] | list[Any]) -> None:
    """Every planned unit has exactly one result with its entry range and event count (skipped units count as
    done); else one line naming the missing or duplicated unit."""
    from e2e.executors import describe_item

    listed = list(results.values()) if isinstance(results, Mapping) else list(results)
    by_index: dict[int, Any] = {}
    for r in listed:
        if r.index in by_index:
            raise E2EError(f"exactly-once check: {r.where()} was written twice")
        by_index[r.index] = r
    for item in items:
        r = by_index.pop(item.index, None)
        if r is None:
            raise E2EError(f"exactly-once check: {describe_item(item)} is missing from the output")
        if (r.file, r.entry_start, r.entry_stop) != (item.file, item.entry_start, item.entry_stop):
            raise E2EError(f"exactly-once check: {r.where()} does not match the plan's {describe_item(item)}")
        if not r.skipped and r.events != item.n_events:
            raise E2EError(f"exactly-once check: {r.where()} wrote {r.events} events, the plan has {item.n_events}")
    if by_index:
        extra = next(iter(by_index.values()))
        raise E2EError(f"exactly-once check: {extra.where()} is not in the plan")


def reusable(r: UnitResult, item: WorkItem, outputs: list[OutputModule], skip_bad_files: bool) -> bool:
    """Whether the recorded result ``r`` of a unit can stand for ``item`` (--resume: an interrupted run's; a unit run
    a second time in one run, e2e.executors): the same entries, and every output's part whole and byte for byte as
    written (its recorded sha256; a bad input skipped then is skipped again only with skip_bad_files)."""
    if r.index != item.index or (r.entry_start, r.entry_stop) != (item.entry_start, item.entry_stop):
        return False
    if r.skipped:
        return skip_bad_files
    from e2e.executors import file_digest

    entries = item.entry_stop - item.entry_start
    if len(r.parts) != len(outputs) or len(r.part_digests) != len(r.parts):
        return False
    from e2e.eventids import ids_digest, unpack_ids

    try:  # the ids recorded for the duplicate check are the ones its part holds
        if ids_digest(unpack_ids(r.ids)) != r.ids_digest:
            return False
    except ValueError:  # (binascii.Error: not base64 of 16-byte ids)
        return False
    for o, p, digest in zip(outputs, r.parts, r.part_digests, strict=True):
        if not (o.part_is_complete(p, entries) and file_digest(p) == digest):  # the bytes it wrote, unchanged
            return False
    return True


def _duplicate_ids(rule: str, items: list[WorkItem], results: Mapping[int, UnitResult]) -> tuple[int, str | None]:
    """The duplicate event-id check of a unit run (``options.duplicate_ids``), on the ids each unit recorded, in plan
    order, before any output is assembled: (repeats, the first in words), as an iterative run counts them."""
    from e2e.eventids import id_keys, unpack_ids

    register = EventIdRegister(rule == "error")
    for item in items:
        r = results[item.index]
        if not r.skipped:
            register.add_keys(*id_keys(unpack_ids(r.ids)), f"{item.file}:{item.tree}", item.entry_start)
    return register.finish(), register.first


def _commit(outputs: list[OutputModule]) -> None:
    """Commit every output of a run, all or none (:func:`e2e.paths.all_or_none`): a rename that fails, or a SIGINT /
    SIGTERM meanwhile, puts back every file already replaced."""
    from e2e.paths import all_or_none

    with all_or_none():
        for output in outputs:
            output.commit()


def _empty_outputs(process: Process) -> list[str]:
    """The outputs of a run without events written as an iterative run writes them: the scheduled modules and the
    outputs run once on the source's empty batch, so every branch is there with 0 entries (and an earlier file of
    the same name is replaced, not left in place)."""
    desc = process.desc
    modules = [desc.modules[label] for label in process.schedule.order]
    times: dict[str, float] = defaultdict(float)
    desc.source.begin()
    try:
        for m in [*modules, *desc.outputs]:
            m.begin()
        Process._process(desc.source.empty_batch(), [*modules, *desc.outputs], times, RunSummary(desc.name))
        for m in [*modules, *desc.outputs]:
            m.end()
        closed = [output.close() for output in desc.outputs]
        _commit(desc.outputs)
        return closed
    except BaseException:
        for output in desc.outputs:
            output.abort()
        raise
    finally:
        desc.source.end()


def run_units(
    process: Process,
    executor: Any,
    resume: bool = False,
    skip_bad_files: bool = False,
    progress: bool | None = None,
) -> RunSummary:
    """Run ``process`` unit by unit on ``executor`` (e2e.executors): parts, exactly-once check, assembly.

    Parts go to a directory next to the first output (``.NAME.parts``); with ``resume`` the parts of units
    finished by an earlier run of the same configuration on the same inputs are reused, otherwise every stale
    part is removed first. The parts are removed once every output is assembled.
    """
    inputs = process.check_paths()
    _refuse_inputs_inside(_part_dir(process), inputs)  # before anything that may remove that directory
    with exclusive(_part_dir(process), "the parts of this output (e2e-run)"):  # (a second run of it meanwhile)
        try:
            return _run_units(process, executor, inputs, resume, skip_bad_files, progress)
        except (E2EError, SchemaError) as err:  # one line: the note joins the message
            note = _keep_or_remove_parts(process)
            if note:
                err.args = (f"{err} ({note})", *err.args[1:])  # the same exception (its traceback and cause kept)
            raise
        except BaseException:  # interrupted: the note is a line of its own
            note = _keep_or_remove_parts(process)
            if note:
                print(f"e2e-run: {note}", file=sys.stderr)
            raise


def _part_dir(process: Process) -> str:
    """Where the parts of the units go: ``.NAME.parts`` next to the first output."""
    first = os.path.abspath(process.desc.outputs[0].output_paths()[0])
    return os.path.join(os.path.dirname(first), f".{os.path.basename(first)}.parts")


#: the file that marks a directory as e2e-run's parts directory (only such a directory is ever removed)
PARTS_MARKER = ".e2e-run-parts"
#: what e2e-run writes in a parts directory: units' parts and records (``u000012-<hash>-0.root``, ``.json``) and
#: their temporaries (``.u000012-<hash>-0.root.HOST.PID.TAG.tmp``, ``.json.tmp``)
_UNIT_FILE = re.compile(r"\.?u\d{6,}-[0-9a-f]{20}[-.].*")


def _not_ours(part_dir: str) -> list[str]:
    """The names in a marked parts directory that e2e-run did not write there (never removed with it)."""
    return sorted(n for n in os.listdir(part_dir) if n != PARTS_MARKER and not _UNIT_FILE.fullmatch(n))


def _refuse_inputs_inside(part_dir: str, inputs: list[str]) -> None:
    """An input inside the parts directory (which the run empties and removes) is refused, before anything is."""
    real = os.path.realpath(part_dir) + os.sep
    inside = [p for p in inputs if "://" not in p and os.path.realpath(p).startswith(real)]
    if inside:
        raise E2EError(f"{inside[0]}: an input inside {part_dir}, the parts directory this run removes: move it")


def _claim_part_dir(part_dir: str, resume: bool) -> None:
    """Make ``part_dir`` this run's parts directory: one that e2e-run made (its marker) is emptied (kept with
    ``resume``); anything else of that name, or a marked one holding files e2e-run did not write, is refused: it
    is removed when the run ends."""
    import shutil

    if os.path.lexists(part_dir):
        if os.path.islink(part_dir) or not os.path.isfile(os.path.join(part_dir, PARTS_MARKER)):
            names = os.listdir(part_dir) if os.path.isdir(part_dir) and not os.path.islink(part_dir) else []
            if names and all(re.fullmatch(r"u\d{6}-[0-9a-f]{20}(-\d+\.root|\.json)(\.tmp)?", n) for n in names):
                raise E2EError(
                    f"{part_dir}: the parts of a run of an earlier e2e-run (before parts directories were marked), "
                    "which cannot be reused: remove the directory"
                )
            raise E2EError(
                f"{part_dir}: exists and is not a parts directory of e2e-run (a run with --executor futures or dask, "
                "or --resume, keeps its units' parts there, named after the first output, and removes it at the "
                "end): move it, or name another output"
            )
        foreign = _not_ours(part_dir)
        if foreign:
            raise E2EError(
                f"{part_dir}: a parts directory of e2e-run that also holds {', '.join(foreign[:3])}, which e2e-run "
                "did not write there (it removes the directory at the end): move them"
            )
        if not resume:
            shutil.rmtree(part_dir)
    os.makedirs(part_dir, exist_ok=True)
    with open(os.path.join(part_dir, PARTS_MARKER), "w") as f:
        f.write("the parts of an e2e-run's units (parallel executors, --resume); removed when the run ends\n")


def _remove_part_dir(part_dir: str) -> list[str]:
    """Remove a parts directory that e2e-run made (its marker) and that holds only what it wrote, nothing else;
    returns the names that kept it (put there during the run)."""
    import shutil

    foreign: list[str] = []
    if not os.path.islink(part_dir) and os.path.isfile(os.path.join(part_dir, PARTS_MARKER)):
        foreign = _not_ours(part_dir)
        if not foreign:
            shutil.rmtree(part_dir, ignore_errors=True)
    return foreign


def _keep_or_remove_parts(process: Process) -> str:
    """After a failed or interrupted unit run: the finished units' parts stay for --resume (the returned note says
    where), a part directory without any goes (note "")."""
    try:
        part_dir = _part_dir(process)
        ours = not os.path.islink(part_dir) and os.path.isfile(os.path.join(part_dir, PARTS_MARKER))
        finished = [f for f in os.listdir(part_dir) if f.endswith(".json")] if ours else None
    except Exception:  # the run failed before its outputs were known
        return ""
    if finished == []:
        _remove_part_dir(part_dir)
    if not finished:
        return ""
    return f"the {len(finished)} finished unit(s) are kept in {part_dir} for --resume; no output was written"


def _run_units(
    process: Process,
    executor: Any,
    inputs: list[str],
    resume: bool,
    skip_bad_files: bool,
    progress: bool | None,
) -> RunSummary:
    """:func:`run_units`."""

    from e2e.executors import UnitCall, UnitResult, config_key, unit_stem
    from e2e.io.source import HitsFileSource

    t_start = time.perf_counter()
    desc = process.desc
    source = desc.source
    summary = process.start_summary()  # numba threads of this process (serial executor); workers use one each
    config = desc.to_dict()
    config["source"]["files"] = [p if "://" in p else os.path.abspath(p) for p in inputs]
    for out in config["outputs"]:
        out["file"] = os.path.abspath(out["file"])
    key = config_key(config, [f for m in desc.modules.values() for f in m.files_read()])
    part_dir = _part_dir(process)
    _claim_part_dir(part_dir, resume)
    call = UnitCall(config, key, part_dir, skip_bad_files)
    files_source = source if isinstance(source, HitsFileSource) else None
    if files_source is not None:  # with --skip-bad-files, a file that cannot be opened is skipped too
        files_source.skip_unreadable = skip_bad_files
    source.begin()
    try:
        items = [i if "://" in i.file else dataclasses.replace(i, file=os.path.abspath(i.file)) for i in source.plan()]
        found = files_source.unreadable if files_source is not None else []
        unreadable = [(p if "://" in p else os.path.abspath(p), err) for p, err in found]
        empty = source.empty_inputs()
    finally:
        source.end()
    results: dict[int, UnitResult] = {}
    reused = damaged = 0
    if resume:
        for item in items:
            stem = os.path.join(part_dir, unit_stem(key, item))
            if os.path.exists(stem + ".json"):
                with open(stem + ".json") as f:
                    r = UnitResult.from_json(f.read())
                if reusable(r, item, desc.outputs, skip_bad_files):
                    results[item.index] = r
                    reused += 1
                else:  # damaged, incomplete, or skipped then as a bad file: the unit runs again
                    damaged += not r.skipped
    todo = [i for i in items if i.index not in results]
    summary.files = len({i.file for i in items} | {p if "://" in p else os.path.abspath(p) for p in empty})
    summary.setup_s = time.perf_counter() - t_start
    bar = process.progress_bar(sum(i.n_events for i in items), progress)
    bar.update(sum(r.entry_stop - r.entry_start for r in results.values()))
    t_map = time.perf_counter()
    fresh: list[UnitResult] = []  # the units run now (not reused), in the order they finished
    first_result = 0.0
    for r in executor.map(call, todo):
        raise_if_requested()
        if r.index in results:
            raise E2EError(f"exactly-once check: {r.where()} was written twice")
        results[r.index] = r
        if not fresh:
            first_result = time.perf_counter() - t_map
        fresh.append(r)
        bar.update(r.entry_stop - r.entry_start)
    map_s = time.perf_counter() - t_map
    bar.close()
    check_exactly_once(items, results)
    ordered = [results[i.index] for i in items]
    written = [r for r in ordered if not r.skipped]
    try:
        summary.duplicate_ids, summary.first_duplicate = _duplicate_ids(desc.options.duplicate_ids, items, results)
    except SchemaError:
        _remove_part_dir(part_dir)  # (duplicate_ids: error) the inputs must change: a --resume would fail the same
        raise
    files = list(config["source"]["files"])
    # what the outputs lack (entry_stop -1: the whole file); e2e-eval leaves the same entries out of the truth
    lacking = [(path, 0, -1, err) for path, err in unreadable]
    lacking += [(r.file, r.entry_start, r.entry_stop, r.skipped) for r in ordered if r.skipped]
    skipped_entries = [dict(zip(("file", "entry_start", "entry_stop", "error"), e, strict=True)) for e in lacking]
    provenance = {
        "process": config,
        "inputs": files,
        "executor": executor.describe(),
        "skipped_units": [f"{p}: whole file: {err}" for p, err in unreadable]
        + [f"{r.where()}: {r.skipped}" for r in ordered if r.skipped],
        "skipped_entries": skipped_entries,
    }
    from e2e.executors import file_digest

    for r in fresh:  # each part as its unit wrote it (a basket changed since, uncompressed, would be read as data;
        # the reused units' parts were just compared by reusable)
        for path, digest in zip(r.parts, r.part_digests, strict=True):
            if not os.path.isfile(path) or file_digest(path) != digest:
                with contextlib.suppress(OSError):
                    os.remove(path)  # so that --resume runs that unit again
                raise E2EError(
                    f"{r.where()}: its part {path} is missing or changed since its unit wrote it; run again with "
                    "--resume to redo that unit"
                )
    try:
        for i, output in enumerate(desc.outputs):
            output.set_provenance(provenance)
            if written:
                parts = [UnitPart(r.file, r.parts[i], r.ids_digest, r.where()) for r in written]
                summary.outputs.append(output.assemble(parts))
        if written:  # every output assembled: only now does any replace a file
            _commit(desc.outputs)
    except BaseException:
        for output in desc.outputs:
            output.abort()
        raise
    if not written:  # no event (an empty input, -n 0, every unit skipped): 0-entry outputs, as an iterative run's
        summary.outputs += _empty_outputs(process)
    kept = _remove_part_dir(part_dir)
    if kept:
        print(f"e2e-run: {part_dir} kept: it holds {', '.join(kept[:3])}, not written by e2e-run", file=sys.stderr)
    times: dict[str, float] = dict.fromkeys(summary.types, 0.0)
    for r in written:
        for label, t in r.times.items():
            times[label] = times.get(label, 0.0) + t
        for label, counts in r.counters.items():
            mine = summary.counters.setdefault(label, {})
            for name, n in counts.items():
                mine[name] = mine.get(name, 0) + n
        summary.descriptions.update(r.descriptions)
    summary.times = times
    summary.events = sum(r.events for r in written)
    summary.jets = sum(r.jets for r in written)
    summary.batches = len(written)
    summary.wall_s = time.perf_counter() - t_start
    fresh = [r for r in fresh if not r.skipped]
    workers = {r.worker for r in fresh if r.worker}  # this run's; a reused part names an earlier run's worker
    notes = [f"{executor.describe()}; {len(todo)} unit(s) run by {len(workers)} worker process(es)"]
    if fresh and map_s > 0:
        # where the time of a parallel run goes: workers starting (first result), units, and idle workers at the end
        busy = sum(sum(r.times.values()) for r in fresh)
        per_worker = sorted(Counter(r.worker for r in fresh).values())
        notes.append(
            f"units {busy:.1f} s of work in {map_s:.1f} s with {len(per_worker)} worker(s): "
            f"{100 * busy / (len(per_worker) * map_s):.0f} % busy, first result after {first_result:.1f} s, "
            f"units per worker {'/'.join(map(str, per_worker))}"
        )
    if reused:
        notes.append(f"{reused} unit(s) reused from an interrupted run (--resume)")
    if damaged:
        notes.append(f"{damaged} unfinished or damaged part(s) of an interrupted run not reused: run again")
    if executor.retried:
        notes.append(f"{executor.retried} unit(s) retried after a worker died")
    skipped = [r for r in ordered if r.skipped]
    if unreadable:
        notes.append(f"{len(unreadable)} file(s) skipped (--skip-bad-files): " + "; ".join(e for _, e in unreadable))
    if skipped:
        notes.append(f"{len(skipped)} unit(s) skipped (--skip-bad-files): " + "; ".join(r.skipped for r in skipped))
    if skipped or unreadable:
        notes.append(
            "the outputs lack the skipped entries, so they are not friends of the input chain entry by entry; their "
            "provenance lists them (skipped_entries) and e2e-eval leaves them out of the truth"
        )
    summary.descriptions["executor"] = "; ".join(notes)
    summary.parallel = True
    return summary
