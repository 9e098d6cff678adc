"""Threads and memory of a job: numba's pool only for batches large enough to gain from it, one thread setting for
every stage, the peak RSS of the program itself."""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np
import pytest

from frameproducers import kernels as K
from frameproducers.kernels.params import SERIAL_BELOW, n_chunks, pool_for


def test_small_batches_run_in_the_calling_thread_and_the_thread_count_is_restored() -> None:
    before = numba.get_num_threads()
    with pool_for(SERIAL_BELOW - 1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with pool_for(SERIAL_BELOW):
        assert numba.get_num_threads() == before
    try:
        with pool_for(1):
            raise RuntimeError("inside")
    except RuntimeError:
        pass
    assert numba.get_num_threads() == before
    assert n_chunks(SERIAL_BELOW - 1) == 1 and n_chunks(0) == 1
    assert n_chunks(SERIAL_BELOW) >= 1


def test_knn_of_a_few_graphs_equals_the_same_graphs_among_many() -> None:
    """The serial path (a few graphs) gives each graph the neighbours it gets in a large, parallel batch."""
    rng = np.random.default_rng(3)
    sizes = rng.integers(0, 40, size=4 * SERIAL_BELOW)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    x = rng.normal(size=(int(offsets[-1]), 2)).astype(np.float32)
    many = K.knn_features(x, offsets, 5, False)
    a, b = offsets[3], offsets[6]
    few = K.knn_features(x[a:b], offsets[3:7] - a, 5, False)
    np.testing.assert_array_equal(few + a, many[a:b])


def test_options_threads_is_the_thread_count_of_taggers_without_their_own() -> None:
    """One setting: ``options.threads`` sizes numba and every tagger whose own ``threads`` is 0."""
    import torch
    import yaml
    from conftest import REPO, SAMPLE

    from e2e.config import load_process
    from e2e.process import Process

    data = yaml.safe_load((REPO / "process_configs" / "tau_gnn.yaml").read_text())
    data["source"].update(files=[str(SAMPLE)], max_events=5)
    data["options"] = {"threads": 1}
    data["modules"]["tauGNN"].pop("threads", None)
    before = torch.get_num_threads(), numba.get_num_threads()
    try:
        torch.set_num_threads(2)
        desc = load_process(data)
        assert desc.modules["tauGNN"].job_threads == 1 and desc.modules["tauGNN"].params.threads == 0
        list(Process(desc).iter_batches())
        desc.modules["tauGNN"].session()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])


def test_peak_rss_is_this_programs_own() -> None:
    """The summary's peak RSS counts this program's memory: it grows with an allocation, and a process started
    from a larger one does not report the parent's size (Linux VmHWM; ru_maxrss would)."""
    import subprocess
    import sys

    code = (
        "import numpy as np; from e2e.process import peak_rss_mb; a = peak_rss_mb(); "
        "x = np.ones(40_000_000); b = peak_rss_mb(); print(a, b)"
    )
    ballast = np.ones(60_000_000)  # ~480 MB in this process when the child starts
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    del ballast
    before, after = float(out[0]), float(out[1])
    if not Path("/proc/self/status").exists():
        pytest.skip("no /proc: ru_maxrss is the measure")
    assert before < 400 and after - before > 250  # 320 MB allocated


@pytest.mark.parametrize(
    ("setting", "skipped"), [(None, True), ("0", True), ("false", True), ("1", False), ("true", False), ("Yes", False)]
)
def test_e2e_commands_skip_other_packages_numba_extensions(setting, skipped) -> None:
    """e2e's commands do not load vector's and awkward's numba extensions (0.5-1 s of start-up) unless
    E2E_NUMBA_EXTENSIONS=1; the kernels still compile and run."""
    out = _after_run_main(
        "E2E_NUMBA_EXTENSIONS",
        setting,
        "print(njit(lambda x: x.sum())(np.arange(4.0)))\nprint('vector' in sys.modules, 'sympy' in sys.modules)\n",
    )
    total, loaded = out.split("\n", 1)
    assert total == "6.0"
    if skipped:
        assert loaded.split() == ["False", "False"]
    else:  # numba's own loading ran: whatever is installed was loaded
        from importlib.metadata import entry_points

        wanted = {e.value.split(":")[0].split(".")[0] for e in entry_points(group="numba_extensions")}
        assert loaded.split()[0] == str("vector" in wanted)


@pytest.mark.parametrize(("setting", "deferred"), [(None, True), ("1", False)])
def test_e2e_commands_do_not_import_blas_at_numba_start(setting, deferred) -> None:
    """numba's target initialisation imports scipy.linalg's BLAS only to know whether np.dot may use it (0.2-0.4 s
    of start-up); e2e's commands answer that without the import unless E2E_NUMBA_BLAS_PROBE=1. A kernel that
    does use np.dot still compiles, with BLAS, and agrees with numpy."""

    out = _after_run_main(
        "E2E_NUMBA_BLAS_PROBE",
        setting,
        "print(njit(lambda x: x.sum())(np.arange(4.0)), 'scipy.linalg' in sys.modules)\n"
        "a = np.arange(12.0).reshape(3, 4)\n"
        "print(np.array_equal(njit(lambda a, b: np.dot(a, b))(a, a.T), a @ a.T), 'scipy.linalg' in sys.modules)\n",
    )
    first, second = (line.split() for line in out.strip().splitlines())
    assert first == ["6.0", str(not deferred)]
    assert second == ["True", "True"]


def _after_run_main(variable: str, setting: str | None, code: str) -> str:
    """stdout of ``code`` run in a fresh interpreter after e2e's command-line set-up (``run_main``), with the
    environment ``variable`` unset (``setting`` None) or set."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != variable}
    if setting is not None:
        env[variable] = setting
    head = "import sys, numpy as np\nfrom e2e.cli.common import run_main\nfrom numba import njit\n"
    head += "assert run_main('probe', lambda: 0, False) == 0\n"
    return subprocess.run(
        [sys.executable, "-c", head + code], env=env, capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.parametrize(
    ("setup", "teardown"),
    [
        ("", False),  # only daemon threads: os._exit after the handlers
        ("import threading, time; threading.Thread(target=time.sleep, args=(0.3,)).start()\n", True),
        ("os.environ['E2E_EXIT_TEARDOWN'] = '1'\n", True),
    ],
)
def test_console_scripts_exit_promptly_after_their_handlers(setup, teardown) -> None:
    """A console script skips the interpreter's teardown (0.2-0.5 s after torch) when no other non-daemon thread is
    alive: its exit code, its buffered output, the atexit handlers and weakref finalizers (temporary directories,
    logging) are kept; with a non-daemon thread alive, or E2E_EXIT_TEARDOWN=1, a normal exit (the thread finishes
    first)."""
    import subprocess
    import sys

    code = (
        "import atexit, os, sys, weakref\nfrom e2e.cli.common import exit_promptly\n" + setup
        + "class Marker:\n    def __del__(self): print('teardown', flush=True)\n"
        "m = Marker()\nweakref.finalize(m, print, 'finalizer', flush=True)\n"
        "atexit.register(print, 'atexit handler', flush=True)\n"
        "sys.stdout.write('buffered')\nsys.stderr.write('to stderr')\n"
        "import threading; threading.Thread(target=__import__('time').sleep, args=(30,), daemon=True).start()\n"
        "exit_promptly(3)\n"
    )  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    assert r.stdout.startswith("buffered") and "atexit handler" in r.stdout and "finalizer" in r.stdout
    assert r.stderr == "to stderr"
    assert ("teardown" in r.stdout) == teardown  # a module global's __del__ runs only in the interpreter's teardown
