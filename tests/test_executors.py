"""Executors (iterative, futures, dask): the same friend tree bit for bit, every event exactly once, dead workers'
units re-run, --resume after a killed driver, bad files failing with one line or skipped."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml
from conftest import REPO, SAMPLE, need_extra, read_events, write_hits

from e2e.errors import E2EError
from e2e.eventids import ids_digest, pack_ids, unpack_ids
from e2e.executors import UnitResult
from e2e.process import check_exactly_once
from e2e.source import WorkItem

HELPERS = REPO / "tests" / "helpers"
pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two small hits files (30 + 24 events of the sample)."""
    d = tmp_path_factory.mktemp("exec")
    ev = read_events(SAMPLE, 54)
    a = write_hits(d / "a.root", ev[:30])
    b = write_hits(d / "b.root", ev[30:])
    return [a, b]


def _config(tmp: Path, inputs, marker: str = "", at_entry: int = -1, model: str = "zoo:tau_shapes", **options) -> Path:
    data = {
        "process": "ExecTest",
        "source": {"files": [str(p) for p in inputs], "step_size": 8},
        "modules": {
            "jetShapes": {"type": "JetShapeProducer"},
            "tauShapes": {"type": "ShapeTagger", "shapes": "jetShapes", "model": model},
            "killer": {"type": "faulty_modules:KillOnce", "marker": marker, "at_entry": at_entry},
        },
        "outputs": [{"file": str(tmp / "out.root"), "keep": ["jetShapes", "tauShapes", "killer"]}],
        "options": {"progress": False, **options},
    }
    path = tmp / f"config_{len(list(tmp.glob('config_*')))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(config: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HELPERS), str(REPO)])}
    cmd = [sys.executable, "-m", "e2e.cli.run", str(config), "--no-progress", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _branches(path: Path) -> dict[str, bytes]:
    with uproot.open(path) as f:
        t = f["Events"]
        out = {}
        for k in t.keys():
            a = t[k].array(library="ak")
            out[k] = (str(a.type), ak.to_numpy(ak.flatten(a, axis=None)).tobytes())
        return out


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    r = _run(_config(tmp, inputs))
    assert r.returncode == 0, r.stderr
    return _branches(tmp / "out.root")


@pytest.mark.parametrize("executor", ["futures", "dask"])
def test_parallel_output_is_identical_to_iterative(executor, inputs, reference, tmp_path):
    if executor == "dask":
        need_extra("distributed", "dask")
    r = _run(_config(tmp_path, inputs), "--executor", executor, "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert _branches(tmp_path / "out.root") == reference
    assert f"executor: {executor}" in r.stdout and "7 unit(s) run by 2 worker process(es)" in r.stdout
    # where the time went: the units' work, the workers' busy share, their start, the units per worker (sum 7)
    busy = re.search(r"units ([0-9.]+) s of work in ([0-9.]+) s with 2 worker\(s\): (\d+) % busy, first result "
                     r"after ([0-9.]+) s, units per worker (\d+)/(\d+)", r.stdout)  # fmt: skip
    assert busy and int(busy[5]) + int(busy[6]) == 7 and 0 < float(busy[1]) and 0 < int(busy[3]) <= 100, r.stdout
    assert not list(tmp_path.glob(".out.root.parts"))  # parts removed after assembly


@pytest.mark.parametrize("executor", ["futures", "dask"])
def test_a_worker_killed_mid_unit_is_rerun(executor, inputs, reference, tmp_path):
    if executor == "dask":
        need_extra("distributed", "dask")
    marker = tmp_path / "killed"
    r = _run(_config(tmp_path, inputs, str(marker), at_entry=16), "--executor", executor, "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert marker.exists()  # a worker did die
    assert _branches(tmp_path / "out.root") == reference


def test_resume_after_the_driver_is_killed(inputs, reference, tmp_path):
    """The driver of a serial parts run is SIGKILLed in its third unit; --resume reuses the two finished units,
    runs the other five, and the output is identical."""
    marker = tmp_path / "killed"
    config = _config(tmp_path, inputs, str(marker), at_entry=16)
    r = _run(config, "--resume")
    assert r.returncode == -signal.SIGKILL and marker.exists()
    parts = tmp_path / ".out.root.parts"
    assert len(list(parts.glob("*.json"))) == 2 and not (tmp_path / "out.root").exists()
    r = _run(config, "--resume")
    assert r.returncode == 0, r.stderr
    assert "2 unit(s) reused" in r.stdout and "5 unit(s) run by 1 worker process(es)" in r.stdout  # not 2 pids
    assert _branches(tmp_path / "out.root") == reference
    assert not parts.exists()


def test_resume_does_not_reuse_parts_made_with_other_model_weights(inputs, tmp_path):
    """The model's weights changed under the same path between the killed run and --resume: none of its parts are
    reused (its outputs would mix two models' scores), and the output is that of the new weights."""
    import shutil

    from safetensors.numpy import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(REPO / "taggers" / "zoo" / "tau_shapes", model)
    marker = tmp_path / "killed"
    config = _config(tmp_path, inputs, str(marker), at_entry=16, model=str(model))
    assert _run(config, "--resume").returncode == -signal.SIGKILL
    state = load_file(str(model / "weights.safetensors"))
    name = next(k for k, v in state.items() if v.dtype == np.float32 and v.ndim == 2)
    save_file({**state, name: state[name] * 1.5}, str(model / "weights.safetensors"))
    r = _run(config, "--resume")
    assert r.returncode == 0, r.stderr
    assert "reused" not in r.stdout and "7 unit(s) run" in r.stdout, r.stdout
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert _run(_config(fresh, inputs, model=str(model))).returncode == 0
    assert _branches(tmp_path / "out.root") == _branches(fresh / "out.root")


@pytest.mark.parametrize("with_input", [False, True])
def test_a_directory_named_like_the_parts_directory_is_never_removed(inputs, tmp_path, with_input):
    """The parts of a parallel run go to .NAME.parts next to the output, removed at the end: a directory of that name
    that e2e-run did not make (here holding an input, or another file) is refused, never removed."""
    import shutil

    parts = tmp_path / ".out.root.parts"
    parts.mkdir()
    if with_input:
        mine = shutil.copy(inputs[0], parts / "mine.root")
        files = [mine, inputs[1]]
    else:
        (parts / "notes.txt").write_text("mine")
        files = list(inputs)
    for args in (("--executor", "futures", "--workers", "1"), ("--resume",)):
        r = _run(_config(tmp_path, files), *args)
        expected = "an input inside" if with_input else "is not a parts directory of e2e-run"
        assert r.returncode == 2 and expected in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert sorted(p.name for p in parts.iterdir()) == (["mine.root"] if with_input else ["notes.txt"])


def test_parts_of_an_earlier_version_are_named_as_such(inputs, tmp_path):
    """A parts directory of an e2e-run from before the marker: said to be one, to be removed (not reused)."""
    parts = tmp_path / ".out.root.parts"
    parts.mkdir()
    (parts / "u000001-0123456789abcdef0123.json").write_text("{}")
    (parts / "u000001-0123456789abcdef0123-0.root").write_bytes(b"x")
    r = _run(_config(tmp_path, inputs), "--resume")
    assert r.returncode == 2 and "the parts of a run of an earlier e2e-run" in r.stderr and "remove" in r.stderr
    assert len(list(parts.iterdir())) == 2


@pytest.mark.parametrize("executor", ["iterative", "futures"])
def test_a_failed_per_file_run_replaces_none_of_its_outputs(executor, inputs, tmp_path):
    """per_file: the first input's output is finished when the second input fails: it stays under its temporary
    name and goes with the rest, so every earlier output file is left as it was (was: replaced, the others not)."""
    bad = _with_nan_energy(tmp_path / "bad.root", 10, 3)
    config = _config(tmp_path, [inputs[0], bad, inputs[1]])
    data = yaml.safe_load(config.read_text())
    data["outputs"][0].update(file=str(tmp_path / "pf" / "{stem}_out.root"), per_file=True)
    config.write_text(yaml.safe_dump(data))
    (tmp_path / "pf").mkdir()
    for stem in ("a", "bad", "b"):
        (tmp_path / "pf" / f"{stem}_out.root").write_bytes(b"OLD")
    r = _run(config, *(("--executor", executor, "--workers", "2") if executor != "iterative" else ()))
    assert r.returncode == 2 and "bad.root" in r.stderr, r.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "pf").glob("*.root")} == {
        f"{stem}_out.root": b"OLD" for stem in ("a", "bad", "b")
    }


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing", "basket bytes"])
def test_resume_runs_again_a_unit_whose_part_is_damaged(damage, inputs, reference, tmp_path):
    """A finished unit's part that was damaged since (truncated, overwritten, removed) is not reused by
    --resume: that unit runs again, the summary says so, and the output is identical."""
    marker = tmp_path / "killed"
    config = _config(tmp_path, inputs, str(marker), at_entry=16)
    r = _run(config, "--resume")
    assert r.returncode == -signal.SIGKILL
    parts = sorted((tmp_path / ".out.root.parts").glob("*.root"))
    assert len(parts) == 2
    if damage == "truncated":
        parts[0].write_bytes(parts[0].read_bytes()[: parts[0].stat().st_size // 2])
    elif damage == "garbage":
        parts[0].write_bytes(b"not a ROOT file" * 100)
    elif damage == "missing":
        parts[0].unlink()
    else:  # the same size, bytes flipped past the file's header: it still opens with its entry counts
        data = bytearray(parts[0].read_bytes())
        for i in range(len(data) // 3, len(data) // 3 + 4):
            data[i] ^= 0x5A
        parts[0].write_bytes(bytes(data))
    r = _run(config, "--resume")
    assert r.returncode == 0, r.stderr
    assert "1 unit(s) reused" in r.stdout and "6 unit(s) run" in r.stdout, r.stdout
    assert "1 unfinished or damaged part(s)" in r.stdout
    assert _branches(tmp_path / "out.root") == reference


def test_a_part_damaged_before_assembly_is_one_line(inputs, tmp_path, monkeypatch):
    """A part that cannot be read when the driver assembles the output: one line naming the unit and the part,
    and no final output."""
    from e2e.config import load_process
    from e2e.module import UnitPart

    monkeypatch.syspath_prepend(str(HELPERS))

    desc = load_process(yaml.safe_load(_config(tmp_path, inputs).read_text()))
    bad = tmp_path / "part.root"
    bad.write_bytes(b"\0" * 4096)
    output = desc.outputs[0]
    output.set_provenance({})
    with pytest.raises(E2EError) as err:
        output.assemble([UnitPart(str(inputs[0]), str(bad), "", "a.root entries 0-8")])
    msg = str(err.value)
    assert msg.startswith("a.root entries 0-8: its part") and str(bad) in msg and "\n" not in msg
    assert not (tmp_path / "out.root").exists()
    assert not output.part_is_complete(str(bad), 8) and not output.part_is_complete(str(tmp_path / "none"), 8)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_futures_workers_die_with_their_driver(inputs, tmp_path):
    """A SIGKILLed driver leaves no futures worker behind busy with its unit (it would take a core from the
    --resume run)."""
    pid_file = tmp_path / "worker.pid"
    data = yaml.safe_load(_config(tmp_path, inputs).read_text())
    data["modules"]["killer"] = {"type": "faulty_modules:StallAt", "pid_file": str(pid_file), "at_entry": 8}
    config = tmp_path / "stall.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HELPERS), str(REPO)])}
    cmd = [sys.executable, "-m", "e2e.cli.run", str(config), "--no-progress", "--executor", "futures", "--workers", "2"]
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not pid_file.exists() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pid_file.exists(), "no worker reached the stalling unit"
        worker = int(pid_file.read_text())
    finally:
        driver.kill()
        driver.wait()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker), "the worker outlived its killed driver"


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_stale_parts_of_another_configuration_are_not_reused(inputs, reference, tmp_path):
    other = _config(tmp_path, inputs, str(tmp_path / "killed"), at_entry=16)
    data = yaml.safe_load(other.read_text())
    data["outputs"][0]["compression_level"] = 4  # another configuration (same values), killed after two units
    other.write_text(yaml.safe_dump(data))
    assert _run(other, "--resume").returncode == -signal.SIGKILL
    assert len(list((tmp_path / ".out.root.parts").glob("*.json"))) == 2
    r = _run(_config(tmp_path, inputs, str(tmp_path / "killed"), at_entry=16), "--resume")
    assert r.returncode == 0, r.stderr
    assert "reused" not in r.stdout and "7 unit(s) run" in r.stdout
    assert _branches(tmp_path / "out.root") == reference


def _with_nan_energy(path: Path, n_events: int, hit: int) -> Path:
    """The sample's first ``n_events`` with ECAL hit number ``hit`` (counted over the events) at NaN energy."""
    ev = read_events(SAMPLE, n_events)
    energy = ak.to_numpy(ak.flatten(ev.EcalHit_energy)).copy()
    energy[hit] = np.nan
    return write_hits(
        path, {**{k: ev[k] for k in ev.fields}, "EcalHit_energy": ak.unflatten(energy, ak.num(ev.EcalHit_energy))}
    )


@pytest.mark.parametrize("executor", ["futures", "dask"])
def test_a_bad_file_fails_with_one_line_or_is_skipped(executor, inputs, tmp_path):
    """A bad value in one file: one line (no worker log or traceback: dask gets the error back as a value, run
    once), no output; or the unit skipped with --skip-bad-files."""
    if executor == "dask":
        need_extra("distributed", "dask")
    bad = _with_nan_energy(tmp_path / "bad.root", 10, 3)
    files = [inputs[0], bad, inputs[1]]
    for args in ((), ("--executor", executor, "--workers", "2")):
        r = _run(_config(tmp_path, files), *args)
        assert r.returncode == 2, r.stderr
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and "bad.root:Events: branch 'EcalHit_energy'" in err[0] and "nan" in err[0], r.stderr
        assert not (tmp_path / "out.root").exists()
    r = _run(_config(tmp_path, files), "--executor", executor, "--workers", "2", "--debug")
    assert r.returncode == 2 and r.stderr.count("Traceback (most recent call last)") == 2, r.stderr  # worker, driver
    assert "Compute Failed" not in r.stderr  # dask did not log it, nor run it again
    r = _run(_config(tmp_path, files), "--executor", executor, "--workers", "2", "--skip-bad-files")
    assert r.returncode == 0, r.stderr
    assert "1 unit(s) skipped (--skip-bad-files)" in r.stdout and "bad.root" in r.stdout
    assert "entries (not a friend of the input: the entries skipped are missing)" in r.stdout, r.stdout
    with uproot.open(tmp_path / "out.root") as f:
        assert f["Events"].num_entries == 30 + 2 + 24  # entries 8-9 of bad.root are a good unit
        assert "bad.root" in str(f["e2e_products"])
    # e2e-eval leaves the skipped entries out of the truth (the tagged file lacks them: not aligned entry by entry)
    from e2e.cli.eval import main as eval_main

    assert eval_main([str(tmp_path / "out.root"), "--plot", str(tmp_path / "roc.png")]) == 0
    # a file that cannot even be opened (truncated) is skipped as a whole and recorded too
    truncated = tmp_path / "truncated.root"
    truncated.write_bytes(Path(inputs[0]).read_bytes()[:5000])
    r = _run(_config(tmp_path, [truncated, *files]), "--executor", executor, "--workers", "2", "--skip-bad-files")
    assert r.returncode == 0, r.stderr
    assert "1 file(s) skipped (--skip-bad-files): " in r.stdout and "truncated.root: truncated ROOT file" in r.stdout
    with uproot.open(tmp_path / "out.root") as f:
        assert f["Events"].num_entries == 30 + 2 + 24
        prov = json.loads(str(f["e2e_products"]))
    lacking = [(Path(e["file"]).name, e["entry_start"], e["entry_stop"]) for e in prov["skipped_entries"]]
    assert lacking == [("truncated.root", 0, -1), ("bad.root", 0, 8)]
    assert eval_main([str(tmp_path / "out.root"), "--plot", str(tmp_path / "roc.png")]) == 0
    r = _run(_config(tmp_path, [truncated, *files]), "--executor", executor, "--workers", "2")
    assert r.returncode == 2 and "truncated.root: truncated ROOT file" in r.stderr  # without the option: fails


@pytest.mark.parametrize("executor", ["futures", "iterative"])
def test_duplicate_event_ids_are_checked_over_the_units(executor, inputs, tmp_path):
    """Each unit records the ids it read, and the driver checks them over the run (as an iterative run does), before
    any output is written: counted by default, one line with ``duplicate_ids: error``; the iterative executor runs
    units with --resume."""
    again = write_hits(tmp_path / "again.root", read_events(SAMPLE, 4))  # the first 4 events of inputs[0] again
    args = ("--executor", executor, *(("--workers", "2") if executor == "futures" else ("--resume",)))
    r = _run(_config(tmp_path, [inputs[0], again]), *args)
    assert r.returncode == 0, r.stderr
    assert "as an earlier event): 4; first: run " in r.stdout and "again.root:Events entry 0" in r.stdout, r.stdout
    os.unlink(tmp_path / "out.root")
    r = _run(_config(tmp_path, [inputs[0], again], duplicate_ids="error"), *args)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and "duplicate event ids: run " in err[0], r.stderr
    assert "again.root:Events entry 0 (options.duplicate_ids: error)" in err[0] and "--resume" not in err[0]
    assert not (tmp_path / "out.root").exists() and not (tmp_path / ".out.root.parts").exists()  # (no use resuming)


def test_workers_without_a_parallel_executor_are_refused(inputs, tmp_path):
    r = _run(_config(tmp_path, inputs), "--workers", "3")
    assert r.returncode == 2 and "options.workers (--workers) is the number of worker processes" in r.stderr, r.stderr


def test_per_file_outputs_record_their_own_skipped_entries(inputs, tmp_path):
    """With per_file, each output's provenance holds its own input's skipped entries, indexed in its own input list
    (a file skipped before it does not make e2e-eval skip its entries); a skipped file gets its 0-entry output,
    which records why."""
    from e2e.cli.eval import main as eval_main

    truncated = tmp_path / "truncated.root"
    truncated.write_bytes(Path(inputs[0]).read_bytes()[:5000])
    config = _config(tmp_path, [truncated, inputs[1]])
    data = yaml.safe_load(config.read_text())
    data["outputs"][0].update(file=str(tmp_path / "pf" / "{stem}_out.root"), per_file=True)
    config.write_text(yaml.safe_dump(data))
    r = _run(config, "--skip-bad-files")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "pf").iterdir()) == ["b_out.root", "truncated_out.root"]
    with uproot.open(tmp_path / "pf" / "truncated_out.root") as f:  # 0 entries, as every input that gave no events
        skipped = json.loads(str(f["e2e_products"]))["skipped_entries"]
        assert f["Events"].num_entries == 0 and [e["entry_stop"] for e in skipped] == [-1], skipped  # the whole file
    assert "(each a friend of its input less the entries skipped there" in r.stdout, r.stdout  # (not "not a friend")
    with uproot.open(tmp_path / "pf" / "b_out.root") as f:
        prov = json.loads(str(f["e2e_products"]))
    assert prov["inputs"] == [str(inputs[1])] and prov["skipped_entries"] == [] and prov["skipped_units"] == []
    assert eval_main([str(tmp_path / "pf" / "b_out.root"), "--plot", str(tmp_path / "roc.png")]) == 0


def test_eval_takes_the_skipped_entries_by_input_position():
    from e2e.cli.eval import skipped_ranges

    prov = {
        "inputs": ["/d/a.root", "/d/b.root"],
        "skipped_units": ["/d/b.root:Events entries 0-7: bad"],
        "skipped_entries": [{"file": "/d/b.root", "entry_start": 0, "entry_stop": 8, "error": "bad"}],
    }
    assert skipped_ranges(prov, ["moved/a.root", "moved/b.root"], "t.root") == {1: [(0, 8)]}
    with pytest.raises(E2EError, match=r"t.root: e2e-run skipped entries .* give its 2 input file\(s\) in their order"):
        skipped_ranges(prov, ["moved/b.root"], "t.root")
    assert skipped_ranges({"inputs": ["/d/a.root"]}, ["x.root", "y.root"], "t.root") == {}  # nothing skipped


def _result(item: WorkItem) -> UnitResult:
    return UnitResult(item.index, item.file, item.entry_start, item.entry_stop, events=item.n_events)


def test_exactly_once_catches_a_dropped_and_a_duplicated_unit():
    items = [WorkItem("a.root", "Events", s, s + 10, i) for i, s in enumerate(range(0, 40, 10))]
    check_exactly_once(items, [_result(i) for i in items])
    with pytest.raises(E2EError, match=r"unit 2 \(a.root entries 20-29\) is missing"):
        check_exactly_once(items, [_result(i) for i in items if i.index != 2])
    with pytest.raises(E2EError, match=r"unit 1 \(a.root entries 10-19\) was written twice"):
        check_exactly_once(items, [*map(_result, items), _result(items[1])])
    short = _result(items[3])
    short.events = 9
    with pytest.raises(E2EError, match="wrote 9 events, the plan has 10"):
        check_exactly_once(items, [*map(_result, items[:3]), short])


@pytest.mark.parametrize("executor", ["iterative", "futures"])
def test_per_file_outputs(executor, inputs, reference, tmp_path):
    """per_file: one friend per input file ({stem} in the name), each aligned with its input."""
    config = _config(tmp_path, inputs)
    data = yaml.safe_load(config.read_text())
    data["outputs"][0].update(file=str(tmp_path / "{stem}_tagged.root"), per_file=True)
    config.write_text(yaml.safe_dump(data))
    r = _run(config, "--executor", executor, *(("--workers", "2") if executor != "iterative" else ()))
    assert r.returncode == 0, r.stderr
    assert "2 files" in r.stdout and "(per_file)" in r.stdout
    whole = {k: v for k, v in reference.items()}
    with uproot.open(tmp_path / "a_tagged.root") as fa, uproot.open(tmp_path / "b_tagged.root") as fb:
        assert fa["Events"].num_entries == 30 and fb["Events"].num_entries == 24
        assert json.loads(str(fa["e2e_products"]))["inputs"] == [str(inputs[0])]
        for key in ("event", "Jet_tauShapes_tau"):
            joined = np.concatenate([ak.to_numpy(ak.flatten(f["Events"][key].array(), axis=None)) for f in (fa, fb)])
            assert joined.tobytes() == whole[key][1]
    data["outputs"][0]["file"] = str(tmp_path / "same.root")
    config.write_text(yaml.safe_dump(data))
    r = _run(config)
    assert r.returncode == 2 and "must contain {stem}" in r.stderr


def test_a_part_with_other_event_ids_than_its_unit_fails_the_run(inputs, tmp_path):
    """Each part is checked at assembly against the digest of the ids its unit read."""
    marker = tmp_path / "killed"
    config = _config(tmp_path, inputs, str(marker), at_entry=16)
    assert _run(config, "--resume").returncode == -signal.SIGKILL
    record = sorted((tmp_path / ".out.root.parts").glob("*.json"))[0]
    data = json.loads(record.read_text())
    ids = unpack_ids(data["ids"])
    ids["event"] = ids["event"] + np.uint64(1000)  # the record says its unit read other events than its part holds
    data["ids"], data["ids_digest"] = pack_ids(ids), ids_digest(ids)
    record.write_text(json.dumps(data))
    r = _run(config, "--resume")
    assert r.returncode == 2 and "holds other event ids than it read" in r.stderr, r.stderr
    assert not (tmp_path / "out.root").exists()


def test_workers_start_early_and_import_what_the_modules_need(monkeypatch):
    """futures / dask workers are started before the configuration is loaded, importing the inference backend
    each tagger names (torch only for a torch tagger), at most one per usable core (more workers start only when
    units wait for them, and are reported as oversubscribed); an early pool the run never uses is killed at once."""
    from e2e import executors
    from e2e.executors import FuturesExecutor, preload_modules

    monkeypatch.setattr(executors, "usable_cores", lambda: 2)
    many = FuturesExecutor(5)
    assert many.describe() == "futures, 5 worker(s) on 2 core(s): oversubscribed"
    assert FuturesExecutor(2).describe() == "futures, 2 worker(s)"
    many.start(["json"])
    assert len(many._pool._processes) == 2
    many.close()

    def load(name):
        return yaml.safe_load((REPO / "process_configs" / name).read_text())

    gnn, cnn = preload_modules(load("tau_gnn.yaml")), preload_modules(load("tau_cnn.yaml"))
    assert "torch" in gnn and "taggers.modules" in gnn
    assert "onnxruntime" in cnn and "torch" not in cnn
    no_tagger = preload_modules({"modules": {"jetFrames": {"type": "JetFrameProducer"}}})
    assert "taggers.modules" not in no_tagger and "torch" not in no_tagger and "numba" in no_tagger
    ex = FuturesExecutor(2)
    ex.start(["json"])
    procs = list(ex._pool._processes.values())
    manager = ex._pool._executor_manager_thread
    assert len(procs) == 2
    ex.close()
    # and its management thread is finished when close() returns: its wake-up pipe closed before the interpreter's
    # exit hook writes to it (CPython 3.11 races otherwise: an "Exception ignored ... Bad file descriptor" traceback)
    assert not manager.is_alive()
    for p in procs:
        p.join(60)
    # the pool's management thread may reap a killed worker at the same moment as join(): the loser of that
    # waitpid race sees no exit code yet, the winner records it on the same Process object just after
    deadline = time.monotonic() + 60
    while any(p.exitcode is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ex._pool is None and [p.exitcode for p in procs] == [-signal.SIGKILL] * 2  # killed, not waited for


@pytest.mark.parametrize("executor", ["futures", "dask"])
def test_a_bad_configuration_with_early_workers_is_one_line(executor, tmp_path):
    """The workers start (dask: its cluster, in a background thread) before the configuration is checked; a bad
    configuration still ends in one line, and the early workers are gone."""
    if executor == "dask":
        need_extra("distributed", "dask")
    bad = yaml.safe_load((REPO / "process_configs" / "tau_gnn.yaml").read_text())
    bad["modules"]["tauGNN"]["colour"] = "red"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    r = subprocess.run(
        [sys.executable, "-m", "e2e.cli.run", str(path), "--executor", executor, "--workers", "2", "--no-progress"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert r.returncode != 0 and "unknown key 'colour'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1", "nonsense::"])
def test_a_scheduler_that_cannot_be_reached_is_one_line(address, tmp_path):
    """--scheduler names no running scheduler (dask's connect timeout, set short here): one line naming it."""
    need_extra("distributed", "dask")
    r = subprocess.run(
        [sys.executable, "-m", "e2e.cli.run", str(REPO / "process_configs" / "tau_cnn.yaml"), "-n", "2",
         "-o", str(tmp_path / "out.root"), "--executor", "dask", "--scheduler", address, "--no-progress"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"},
    )  # fmt: skip
    assert r.returncode != 0 and f"--scheduler {address}: cannot connect" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "out.root").exists()


@pytest.mark.parametrize("executor", ["futures", "dask"])
def test_a_run_without_events_writes_what_an_iterative_run_writes(executor, inputs, tmp_path):
    """-n 0, an empty input, or every unit skipped: a 0-entry output with every branch, as the iterative executor
    writes it (no output was written, and an earlier output of the same name stayed in place); a run that fails
    before any unit finished leaves no part directory."""
    if executor == "dask":
        need_extra("distributed", "dask")
    config = _config(tmp_path, inputs)
    r = _run(config)
    assert r.returncode == 0, r.stderr
    iterative_empty = tmp_path / "iterative_empty.root"
    r = _run(config, "-n", "0", "-o", str(iterative_empty))
    assert r.returncode == 0, r.stderr
    expected = _branches(iterative_empty)
    assert uproot.open(tmp_path / "out.root")["Events"].num_entries == 54  # the earlier output, replaced below
    r = _run(config, "-n", "0", "--executor", executor, "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert "out.root: tree Events, 0 entries" in r.stdout
    assert _branches(tmp_path / "out.root") == expected
    bad = _with_nan_energy(tmp_path / "all_bad.root", 5, 0)
    r = _run(_config(tmp_path, [bad]), "--executor", executor, "--workers", "2", "--skip-bad-files")
    assert r.returncode == 0 and "1 unit(s) skipped" in r.stdout, r.stderr
    assert _branches(tmp_path / "out.root") == expected
    truncated = tmp_path / "truncated.root"
    truncated.write_bytes(Path(inputs[0]).read_bytes()[:5000])
    r = _run(_config(tmp_path, [truncated]), "--executor", executor, "--workers", "2")
    assert r.returncode == 2 and "truncated ROOT file" in r.stderr
    assert not list(tmp_path.glob(".*.parts"))


def _interrupted(tmp_path: Path, inputs, executor: str, units: int, group: bool) -> tuple[int, str]:
    """A run with 2 workers of ``executor`` sent SIGINT once ``units`` units finished (``group``: to its process
    group, as a terminal's Ctrl-C; else to the driver alone): its exit code and stderr."""
    config = _config(tmp_path, inputs)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HELPERS), str(REPO)])}
    cmd = [sys.executable, "-m", "e2e.cli.run", str(config), "--no-progress", "--executor", executor, "--workers", "2",
           "-s", "source.step_size=1"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    parts = tmp_path / ".out.root.parts"
    deadline = time.monotonic() + 120
    while len(list(parts.glob("*.json"))) < units and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    if group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the driver did not exit within 60 s of its SIGINT") from None
    return proc.returncode, err


def test_sigint_to_the_driver_alone_stops_a_futures_run(inputs, tmp_path):
    """A SIGINT to the driver only (not its process group, as `kill -INT` or a batch system sends it) while units
    run: the driver stops with 130 within seconds and says where the finished units are kept (its workers never got
    the signal: close() kills them; a fuzzing session once saw the driver wait for them at exit forever)."""
    returncode, err = _interrupted(tmp_path, inputs, "futures", units=1, group=False)
    assert returncode == 130, err
    assert "finished unit(s) are kept in" in err and "interrupted" in err and "Traceback" not in err, err
    assert not (tmp_path / "out.root").exists()


def test_ctrl_c_to_a_dask_run_is_two_lines(inputs, tmp_path):
    """Ctrl-C in a terminal signals the whole process group, the LocalCluster's nannies and workers too: the driver
    says where the finished units are kept and that it was interrupted, without the workers' logs of their closing
    connections (were ~60 lines of tracebacks)."""
    need_extra("distributed", "dask")
    returncode, err = _interrupted(tmp_path, inputs, "dask", units=2, group=True)
    assert returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2 and "interrupted" in err, err


@pytest.mark.parametrize("executor", ["iterative", "futures"])
def test_per_file_outputs_include_the_inputs_without_events(executor, inputs, tmp_path):
    """per_file: an input file of 0 events gets its 0-entry output (with every branch) like the others, so each
    input has its friend file; with every executor."""
    empty = write_hits(tmp_path / "empty.root", read_events(SAMPLE, 1)[:0])
    config = _config(tmp_path, [inputs[0], empty, inputs[1]])
    args = ["-s", "outputs.0.per_file=true", "-s", f"outputs.0.file={tmp_path}/out_{{stem}}.root"]
    if executor != "iterative":
        args += ["--executor", executor, "--workers", "2"]
    r = _run(config, *args)
    assert r.returncode == 0, r.stderr
    entries = {}
    for name in ("a", "empty", "b"):
        with uproot.open(tmp_path / f"out_{name}.root") as f:
            entries[name] = (f["Events"].num_entries, sorted(f["Events"].keys()))
    assert [n for n, _ in entries.values()] == [30, 0, 24]
    assert entries["empty"][1] == entries["a"][1]


@pytest.mark.parametrize("executor", ["iterative", "futures"])
def test_per_file_outputs_of_inputs_that_gave_no_events_replace_earlier_ones(executor, inputs, tmp_path):
    """per_file: an input that gives no events in this run, cut off by -n or skipped as unreadable by
    --skip-bad-files, gets its 0-entry output too, so that an earlier run's file of that name (no friend of what the
    input now holds) is not left in place among this run's outputs."""
    later = tmp_path / "later.root"
    shutil.copy(inputs[1], later)
    config = _config(tmp_path, [inputs[0], later])
    args = ["-s", "outputs.0.per_file=true", "-s", f"outputs.0.file={tmp_path}/out_{{stem}}.root"]
    if executor != "iterative":
        args += ["--executor", executor, "--workers", "2"]

    def entries() -> list[int]:
        out = []
        for name in ("a", "later"):
            with uproot.open(tmp_path / f"out_{name}.root") as f:
                out.append(f["Events"].num_entries)
        return out

    assert _run(config, *args).returncode == 0 and entries() == [30, 24]
    r = _run(config, *args, "-n", "3")
    assert r.returncode == 0 and entries() == [3, 0], r.stderr
    assert _run(config, *args).returncode == 0 and entries() == [30, 24]
    later.write_bytes(later.read_bytes()[:2000])  # damaged since
    r = _run(config, *args, "--skip-bad-files")
    assert r.returncode == 0 and entries() == [30, 0], r.stderr


@pytest.mark.parametrize("executor", ["iterative", "futures"])
def test_copy_input_over_files_with_and_without_truth(executor, inputs, tmp_path):
    """copy_input copies each input's branches, Jet truth where a file has it: into one file, a file without truth
    after one with it is one line naming the file and the branches it lacks; with per_file each output has its own
    input's branches (was 'the branches of Jet changed between batches', per_file too)."""
    bare = write_hits(tmp_path / "bare.root", read_events(inputs[1], 24), truth=False)
    config = _config(tmp_path, [inputs[0], bare])
    args = ["-s", "outputs.0.copy_input=true"]
    if executor != "iterative":
        args += ["--executor", executor, "--workers", "2"]
    r = _run(config, *args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"{bare} gives other branches than the earlier inputs of its output file (without Jet_label" in r.stderr
    assert "give inputs that all have the same branches, or per_file: true" in r.stderr
    r = _run(config, *args, "-s", "outputs.0.per_file=true", "-s", f"outputs.0.file={tmp_path}/out_{{stem}}.root")
    assert r.returncode == 0, r.stderr
    with uproot.open(tmp_path / "out_a.root") as a, uproot.open(tmp_path / "out_bare.root") as b:
        assert "Jet_label" in a["Events"].keys() and "Jet_label" not in b["Events"].keys()
        assert a["Events"].num_entries == 30 and b["Events"].num_entries == 24


def test_a_second_run_of_an_output_whose_parts_are_being_written_is_one_line(inputs, tmp_path):
    """Two unit runs of one output at once: the second emptied the first's parts directory (which then failed
    naming a part 'missing or changed', and pointed at --resume); now it is refused while the first holds it."""
    from e2e.paths import exclusive

    config = _config(tmp_path, inputs)
    parts = tmp_path / ".out.root.parts"
    with exclusive(parts, "the parts of this output (e2e-run)"):  # (as a running e2e-run holds them)
        r = _run(config, "--executor", "futures", "--workers", "1")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"another process (pid {os.getpid()}) is writing the parts of this output (e2e-run) now" in r.stderr
    assert not parts.exists() and not (tmp_path / "out.root").exists()
    assert _run(config, "--executor", "futures", "--workers", "1").returncode == 0


def test_a_part_changed_between_its_unit_and_the_assembly_fails_in_one_line(inputs, tmp_path, monkeypatch):
    """A part whose bytes change after its unit wrote it (here: bytes flipped, same size, as in an uncompressed basket
    that would be read as data) fails the run naming the unit, before anything is assembled; the part is removed, so
    --resume redoes that unit only, and the output is then the uninterrupted run's."""
    from e2e.config import load_process
    from e2e.executors import SerialExecutor
    from e2e.process import Process, run_units

    monkeypatch.syspath_prepend(str(HELPERS))

    class Damaging(SerialExecutor):
        def map(self, call, items):
            for r in super().map(call, items):
                if r.index == 1:
                    data = bytearray(Path(r.parts[0]).read_bytes())
                    data[len(data) // 2] ^= 0x01
                    Path(r.parts[0]).write_bytes(bytes(data))
                yield r

    config = _config(tmp_path, inputs)
    desc = load_process(yaml.safe_load(config.read_text()))
    with pytest.raises(E2EError) as err:
        run_units(Process(desc), Damaging(1), resume=True)
    assert "unit 1 (" in str(err.value) and "changed since its unit wrote it" in str(err.value)
    assert not (tmp_path / "out.root").exists()
    r = _run(config, "--resume")
    assert r.returncode == 0 and "6 unit(s) reused" in r.stdout and "1 unit(s) run" in r.stdout, r.stdout + r.stderr
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert _run(_config(fresh, inputs)).returncode == 0
    assert _branches(tmp_path / "out.root") == _branches(fresh / "out.root")


def test_a_unit_run_again_after_its_result_was_taken_keeps_its_parts(inputs, reference, tmp_path, monkeypatch):
    """dask runs a finished unit again when the worker that held its result dies: that second run must not replace
    the unit's parts (the driver has the first run's digests; ROOT files differ byte for byte between two writes),
    it returns the first run's record."""
    from e2e.config import load_process
    from e2e.executors import SerialExecutor, run_unit
    from e2e.process import Process, run_units

    class RunsEveryUnitTwice(SerialExecutor):
        def map(self, call, items):
            first = {}
            for item in items:
                first[item.index] = run_unit(call, item, worker=False)
                yield first[item.index]
            for item in items:  # as dask recomputes the results a lost worker held, after the driver took them
                again = run_unit(call, item, worker=False)
                assert again.part_digests == first[item.index].part_digests  # (a new write has other bytes)
                self.retried += 1

    monkeypatch.syspath_prepend(str(HELPERS))
    config = yaml.safe_load(_config(tmp_path, inputs).read_text())
    executor = RunsEveryUnitTwice(1)
    run_units(Process(load_process(config)), executor)
    assert executor.retried == 7
    assert _branches(tmp_path / "out.root") == reference


def test_an_input_inside_a_parts_directory_of_e2e_run_is_refused_and_kept(inputs, tmp_path):
    """A marked parts directory (an interrupted run's) holding an input or another file: refused in one line before
    anything is removed, with --resume too."""
    import shutil

    parts = tmp_path / ".out.root.parts"
    for holds_input in (True, False):
        parts.mkdir()
        (parts / ".e2e-run-parts").write_text("")
        mine = Path(shutil.copy(inputs[0], parts / "mine.root"))
        files = [mine, inputs[1]] if holds_input else list(inputs)
        expected = "an input inside" if holds_input else "also holds mine.root, which e2e-run did not write there"
        for args in (("--executor", "futures", "--workers", "1"), ("--resume",)):
            r = _run(_config(tmp_path, files), *args)
            assert r.returncode == 2 and expected in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert sorted(p.name for p in parts.iterdir()) == [".e2e-run-parts", "mine.root"]
        shutil.rmtree(parts)


def test_a_start_method_that_does_not_exist_is_one_line(monkeypatch):
    from e2e.executors import FuturesExecutor

    monkeypatch.setenv("E2E_MP_START", "bogus")
    with pytest.raises(E2EError, match=r"E2E_MP_START='bogus': not a start method .*; accepted: .*spawn"):
        FuturesExecutor(1)._new_pool()
