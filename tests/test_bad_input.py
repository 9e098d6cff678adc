"""Bad input through the console scripts, one test per class of defect (issue 9).

Every case runs the installed console script in a subprocess and checks the exit code, that stderr is one
line without a traceback, that the inputs are byte-identical afterwards and that no output or temporary
file is left behind unless intended.
"""

from __future__ import annotations

import hashlib
import json
import os
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
from conftest import REPO, SAMPLE, read_events, run_cli, write_hits

BIN = Path(sys.executable).parent
ZOO = REPO / "taggers" / "zoo"
LAUGHS = "\n".join(
    [
        'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)),
    ]
)  # 1.1 kB that aliases expand to 10^9 strings


def cli(
    prog: str, *args: str | Path, cwd: Path | None = None, timeout: float = 120, **kw
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))}
    return subprocess.run(
        [str(BIN / prog), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, **kw
    )


def one_line_error(proc: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit code 2, one line on stderr naming the program, no traceback, every ``expected`` text in it."""
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err, err[-2000:]
    assert err.startswith(f"{Path(proc.args[0]).name}: error: "), err
    for text in expected:
        assert text in err, (text, err)
    return err


def digests(*paths: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def temporaries(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.name.endswith(".tmp"))


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A directory with a copy of the sample (in.root) and shapes.yaml: shapes + the shape tagger -> out.root."""
    shutil.copy(SAMPLE, tmp_path / "in.root")
    config = {
        "process": "Shapes",
        "source": {"files": ["in.root"], "step_size": 50},
        "modules": {
            "jetShapes": {"type": "JetShapeProducer"},
            "tauShapes": {"type": "ShapeTagger", "shapes": "jetShapes", "model": "zoo:tau_shapes"},
        },
        "outputs": [{"file": "out.root", "keep": ["tauShapes"]}],
    }
    (tmp_path / "shapes.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def run_job(work: Path, *args: str | Path, **kw) -> subprocess.CompletedProcess[str]:
    return cli("e2e-run", "shapes.yaml", "--no-progress", *args, cwd=work, **kw)


# ------------------------------------------------------------------------------------- data loss, unsafe writes
def test_output_that_is_an_input_is_refused_before_reading(work):
    (work / "link.root").symlink_to("in.root")
    os.link(work / "in.root", work / "hard.root")
    (work / "sub").mkdir()
    before = digests(work / "in.root")
    for out in ("in.root", "./sub/../in.root", "link.root", "hard.root"):
        one_line_error(run_job(work, "-o", out), "is an input of this run", "refusing to overwrite")
    # an output given in the configuration is checked the same way
    one_line_error(run_job(work, "-s", "outputs.0.file=in.root"), "is an input of this run")
    assert digests(work / "in.root") == before and not temporaries(work)
    assert (work / "link.root").is_symlink() and os.stat(work / "hard.root").st_nlink == 2


def test_output_that_is_the_configuration_or_a_model_file_is_refused(work):
    """The configuration file and the model artefact's files are inputs of the run too: -o on them is refused
    (it replaced them with a ROOT file)."""
    model = work / "model"
    shutil.copytree(ZOO / "tau_shapes", model)
    before = digests(work / "shapes.yaml", *sorted(model.iterdir()))
    one_line_error(run_job(work, "-o", "shapes.yaml"), "output shapes.yaml is an input of this run")
    for name in ("model.yaml", "weights.safetensors"):
        one_line_error(
            run_job(work, "-s", f"modules.tauShapes.model={model}", "-o", f"model/{name}"),
            f"output model/{name} is an input of this run",
        )
    assert digests(work / "shapes.yaml", *sorted(model.iterdir())) == before and not temporaries(work)


def test_duplicate_yaml_keys_are_refused_naming_the_line(work):
    """PyYAML keeps the last of two equal keys silently: a second block of one label dropped the first, and a
    line appended to model.yaml swapped its class names. Both are one line naming the file, line and key."""
    text = (work / "shapes.yaml").read_text()
    (work / "twice.yaml").write_text(text.replace("modules:\n", "modules:\n  jetShapes: {type: JetShapeProducer}\n"))
    one_line_error(cli("e2e-run", "twice.yaml", cwd=work), "twice.yaml: line ", "key 'jetShapes' appears twice")
    model = work / "model"
    shutil.copytree(ZOO / "tau_shapes", model)
    yml = (model / "model.yaml").read_text()
    (model / "model.yaml").write_text(yml + "outputs: [x, y]\n")
    one_line_error(
        run_job(work, "-s", f"modules.tauShapes.model={model}"), "model.yaml: line ", "key 'outputs' appears twice"
    )
    assert not (work / "out.root").exists()


def test_a_model_yaml_that_differs_from_the_one_its_onnx_was_exported_with_is_refused(work):
    """model.onnx carries the model.yaml it was exported with: class names swapped in model.yaml (every score
    labelled as the other class) or another input spec are one line with ONNX Runtime; put back, it runs."""
    model = _model_copy(work, "tau_shapes", lambda spec: spec.update(outputs=spec["outputs"][::-1]))
    err = one_line_error(run_job(work, "-s", f"modules.tauShapes.model={model}"), "model.yaml outputs ['tau', 'qcd']")
    assert "differs from the model.yaml model.onnx was exported with (outputs ['qcd', 'tau']" in err
    shutil.copy(ZOO / "tau_shapes" / "model.yaml", model / "model.yaml")
    assert run_job(work, "-s", f"modules.tauShapes.model={model}").returncode == 0
    from e2e.errors import ConfigError
    from taggers.artefact import ONNX_METADATA_KEY, Artefact

    art = Artefact.load(str(model))  # a key null in one copy and absent from the other: the block is named
    embedded = yaml.safe_dump({**art.spec, "input": {**art.spec["input"], "extra": None}})
    with pytest.raises(ConfigError, match=r"model.yaml input.extra absent differs from .* \(input.extra null, its"):
        art.check_embedded({ONNX_METADATA_KEY: embedded}, "m")
    assert not temporaries(work)


def test_non_regular_or_empty_output_paths_are_refused(work):
    os.mkfifo(work / "fifo")
    (work / "adir").mkdir()
    (work / "afile").write_text("x")
    cases = {
        "fifo": "is a FIFO",
        "adir": "adir is a directory",
        "afile/out.root": "afile is not a directory",
        "": "-o '': empty path",
    }
    for out, expected in cases.items():
        one_line_error(run_job(work, "-o", out), expected)
    one_line_error(run_job(work, "-s", "outputs.0.file=''"), "empty path")
    one_line_error(run_job(work, "-i", ""), "-i '': empty path")
    assert (work / "fifo").is_fifo() and (work / "afile").read_text() == "x" and not any((work / "adir").iterdir())
    assert not (work / "out.root").exists() and not temporaries(work)
    # the other console scripts: an empty path is an error, never the configured default
    one_line_error(
        cli("e2e-generate", REPO / "process_configs" / "generate_sample.yaml", "-o", "", cwd=work), "-o '': empty path"
    )
    one_line_error(
        cli("e2e-train", REPO / "process_configs" / "train_tau_shapes.yaml", "-o", "", cwd=work), "-o '': empty path"
    )
    one_line_error(cli("e2e-eval", "in.root", "--plot", "", cwd=work), "--plot '': empty path")


def _wait_for_temporary(proc: subprocess.Popen, directory: Path, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not temporaries(directory):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, "no temporary output appeared"
        time.sleep(0.02)


def _slow_job(work: Path) -> list[str]:
    """An e2e-run command line that writes for several seconds (8-channel 125x125 frames, 8 inputs, small steps)."""
    inputs = []
    for i in range(8):
        shutil.copy(SAMPLE, work / f"in{i}.root")
        inputs.append(f"in{i}.root")
    return [
        str(BIN / "e2e-run"),
        str(REPO / "process_configs" / "jet_frames.yaml"),
        "--no-progress",
        "-i",
        *inputs,
        "-o",
        "out/frames.root",
        "-s",
        "source.step_size=10",
    ]


def test_sigterm_stops_cleanly_and_keeps_the_previous_output(work):
    cmd = _slow_job(work)
    (work / "out").mkdir()
    (work / "out" / "frames.root").write_bytes(b"previous output")
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))}
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for_temporary(proc, work / "out")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.count("\n") == 1 and "terminated" in err and "Traceback" not in err, err
    assert (work / "out" / "frames.root").read_bytes() == b"previous output" and not temporaries(work)


_INTERRUPTED_BODY = """
import os, signal, sys, tempfile
from pathlib import Path
from e2e.cli.common import run_main
from e2e.paths import atomic_file

target = Path(sys.argv[1])
where = sys.argv[2]


def sigterm_now():
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(10000):  # the Python-level handler runs at one of these bytecodes
        pass


if where == "creation":  # the signal comes between creating the temporary and returning it
    make = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        made = make(*args, **kwargs)
        if where == "creation":  # once
            sigterm_now()
        return made

    tempfile.mkstemp = mkstemp


class Closer:
    def __del__(self):
        sigterm_now()  # its exception is swallowed: "Exception ignored in ... __del__"


def body():
    out = atomic_file(target)
    Closer()  # freed at once
    out.tmp.write_text("new")
    out.commit()
    return 0


rc = run_main("probe", body, False)
where = "done"
later = atomic_file(Path(str(target) + ".later"))  # the request was handled: later outputs are written again
later.tmp.write_text("later")
later.commit()
sys.exit(rc)
"""


@pytest.mark.parametrize("where", ["__del__", "creation"])
def test_sigterm_inside_a_del_or_a_temporary_creation_still_stops_cleanly(tmp_path, where):
    """SIGTERM whose exception a ``__del__`` swallows still stops the command (exit 143, one line) and no output is
    replaced after it; one that comes while a temporary output is being created leaves no temporary behind; once
    the command has handled it, later outputs of the same process are written."""
    target = tmp_path / "out.root"
    target.write_text("previous")
    r = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_BODY, str(target), where], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 143, r.stderr
    assert r.stderr == "probe: terminated (SIGTERM); partial outputs were removed\n"
    assert target.read_text() == "previous" and not temporaries(tmp_path)
    assert (tmp_path / "out.root.later").read_text() == "later"


def test_sigkill_leaves_a_temporary_that_the_next_run_removes(work):
    from e2e.paths import temporary_path

    cmd = _slow_job(work)
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))}
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for_temporary(proc, work / "out")
    proc.kill()
    proc.communicate(timeout=60)
    stale = temporaries(work)
    assert len(stale) == 1 and f".{proc.pid}." in stale[0], stale
    # temporaries of a live writer (this process) and of another host are not touched
    live = temporary_path(work / "out" / "frames.root", "live1234")
    live.write_bytes(b"x")
    other = work / "out" / f".frames.root.otherhost.{proc.pid}.abcd1234.tmp"
    other.write_bytes(b"x")
    quick = cli("e2e-run", "shapes.yaml", "--no-progress", "-o", "out/frames.root", cwd=work)
    assert quick.returncode == 0, quick.stderr
    assert temporaries(work) == sorted(str(p.relative_to(work)) for p in (live, other))
    assert "removed 1 stale temporary" in quick.stdout


def _train_config(work: Path, output: str) -> Path:
    cfg = {
        "name": "small_shapes",
        "product": "jetShapes",
        "output": output,
        "split": [0.5, 0.25, 0.25],
        "heldout": [],
        "process": {"source": {"files": ["in.root"]}, "modules": {"jetShapes": {"type": "JetShapeProducer"}}},
        "model": {"name": "LinearNet"},
        "optimizer": {"max_epochs": 2, "budget_minutes": 1},
    }
    path = work / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_and_generate_outputs_are_checked_and_atomic(work):
    before = digests(work / "in.root")
    cfg = _train_config(work, "model")
    (work / "notes").mkdir()
    (work / "notes" / "keep.txt").write_text("x")
    one_line_error(cli("e2e-train", cfg, "-o", "in.root", cwd=work), "output in.root is a file; expected a directory")
    one_line_error(cli("e2e-train", cfg, "-o", "notes", cwd=work), "notes exists and is not an earlier output")
    one_line_error(cli("e2e-train", cfg, "-o", ".", cwd=work), "is not an earlier output")
    one_line_error(cli("e2e-train", cfg, "-s", "heldout=[gone.root]", cwd=work), "gone.root: no such file")
    one_line_error(
        cli("e2e-generate", REPO / "process_configs" / "generate_sample.yaml", "-o", "notes", cwd=work),
        "output notes is a directory",
    )
    assert (work / "notes" / "keep.txt").read_text() == "x"
    # training twice into the same artefact replaces it as a whole; a dead run's temporary is removed
    assert cli("e2e-train", cfg, "--no-progress", cwd=work).returncode == 0
    (work / "model" / "stray.txt").write_text("not written by e2e-train")  # would be deleted with it: refused
    one_line_error(cli("e2e-train", cfg, "--no-progress", cwd=work), "also holds stray.txt, which it does not write")
    (work / "model" / "stray.txt").unlink()
    stale = work / ".model.{}.999999999.abcd1234.tmp".format(__import__("e2e.paths").paths._HOST)
    stale.mkdir()
    proc = cli("e2e-train", cfg, "--no-progress", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "removed 1 stale temporary file(s)" in proc.stderr
    assert (work / "model" / "model.yaml").is_file()
    assert not stale.exists() and not temporaries(work) and digests(work / "in.root") == before


def test_generate_display_and_train_mistakes_are_one_line(work):
    """e2e-generate and e2e-display never write over their configuration; an output ending in '/' names a
    directory; a huge pileup is a range error; e2e-train refuses one class, a class without jets and a diverging
    loss (an internal error, leaving a checkpoint); e2e-display refuses options of both ways to choose a jet."""
    gen = work / "gen.yaml"
    shutil.copy(REPO / "process_configs" / "generate_qcd.yaml", gen)
    before = digests(gen)
    one_line_error(cli("e2e-generate", "gen.yaml", "-o", "gen.yaml", "-n", "2", cwd=work), "is an input of this run")
    one_line_error(cli("e2e-generate", "gen.yaml", "-o", "new/", "-n", "2", cwd=work), "names a directory")
    one_line_error(cli("e2e-generate", "gen.yaml", "-s", "pileup.mu=1.0e+12", cwd=work), "pileup.mu: got ", "<= 1000")
    shutil.copy(REPO / "process_configs" / "tau_cnn.yaml", work / "cnn.svg")
    before.update(digests(work / "cnn.svg"))
    one_line_error(
        cli("e2e-display", "in.root", "--entry", "3", "--config", "cnn.svg", "-o", "cnn.svg", cwd=work),
        "is an input of this run",
    )
    one_line_error(cli("e2e-display", "in.root", "--entry", "3", "--rank", "2", cwd=work), "--rank: a jet by its score")
    one_line_error(
        cli("e2e-display", "in.root", "--jet", "1", "--tagged", "in.root", "--score", "x", cwd=work),
        "--jet: a jet by its position, but --tagged chooses by score",
    )
    assert digests(gen, work / "cnn.svg") == before and not (work / "new").exists()
    cfg = _train_config(work, "model")
    one_line_error(cli("e2e-train", cfg, "-s", "selection.classes={tau: 1}", cwd=work), "needs at least two classes")
    for override, message in (
        ("selection.classes={qcd: 0, tau: 1, electron: 2}", "class 'electron' (Jet_label 2) has no training jets"),
        ("optimizer.lr=1.0e+30", "training diverged: the "),
    ):  # (after the dataset's progress line)
        r = cli("e2e-train", cfg, "-s", override, "--no-progress", cwd=work)
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode == 2 and "Traceback" not in r.stderr and last.startswith("e2e-train: error: "), r.stderr
        assert message in last, r.stderr
    assert not (work / "model").exists() and not list(work.glob("*.checkpoint")) and not temporaries(work)


# ------------------------------------------------------------------------------------ hostile configuration
def test_alias_bombs_are_refused_at_load_for_every_yaml(work):
    bomb = work / "bomb.yaml"
    bomb.write_text(LAUGHS + "\nprocess: *i\n")
    for prog in ("e2e-run", "e2e-generate", "e2e-train"):
        one_line_error(cli(prog, bomb, cwd=work, timeout=60), "holds more than 100,000 values (aliases expanded)")
    # model.yaml of a model directory
    model = work / "model"
    shutil.copytree(ZOO / "tau_shapes", model)
    (model / "model.yaml").write_text((model / "model.yaml").read_text() + LAUGHS + "\n")
    one_line_error(run_job(work, "-s", f"modules.tauShapes.model={model}", timeout=60), "model.yaml", "holds more than")
    # a recursive alias, and a -s value
    (work / "self.yaml").write_text("process: &p [*p]\n")
    one_line_error(cli("e2e-run", "self.yaml", cwd=work, timeout=60), "recursive alias")
    one_line_error(run_job(work, "-s", "process=&a [*a]", timeout=60), "override", "recursive alias")
    assert not temporaries(work) and not (work / "out.root").exists()


def test_a_huge_value_is_not_formatted_into_the_message(work):
    config = yaml.safe_load((work / "shapes.yaml").read_text())
    text = LAUGHS.replace("i: &i", "bad: &i") + "\n" + yaml.safe_dump(config)
    (work / "wrong.yaml").write_text(text.replace("step_size: 50", "step_size: *i"))
    err = one_line_error(cli("e2e-run", "wrong.yaml", cwd=work, timeout=60), "holds more than")
    assert len(err) < 400
    # a value that is large but within the bound is shortened in the message
    (work / "long.yaml").write_text(yaml.safe_dump({**config, "process": ["x" * 5000] * 50}))
    err = one_line_error(cli("e2e-run", "long.yaml", cwd=work, timeout=60), "process: expected a name")
    assert len(err) < 400


@pytest.mark.parametrize("name", ["zoo:../..", "zoo:../zoo/tau_shapes", "zoo:/abs/path", "zoo:tau_shapes/..", "'zoo:'"])
def test_zoo_names_cannot_leave_the_zoo(work, name):
    one_line_error(run_job(work, "-s", f"modules.tauShapes.model={name}"), "is not a zoo name")


# ------------------------------------------------------------------------------------------- model files
def _pickle(path: Path) -> None:
    import pickle

    path.write_bytes(pickle.dumps({"weights": list(range(100))}))


def _damage(model: Path, case: str) -> None:
    weights, onnx, yml = model / "weights.safetensors", model / "model.onnx", model / "model.yaml"
    if case == "pickle_as_safetensors":
        _pickle(weights)
    elif case == "truncated_safetensors":
        weights.write_bytes(weights.read_bytes()[:-40])
    elif case == "pickle_as_onnx":
        _pickle(onnx)
    elif case == "only_weights_pt":
        weights.unlink()
        _pickle(model / "weights.pt")
    elif case == "python_tag":
        yml.write_text(yml.read_text() + "evil: !!python/object/apply:os.system [touch pwned]\n")
    elif case == "unknown_architecture":
        yml.write_text(yml.read_text().replace("name: LinearNet", "name: TransformerNet", 1))
    elif case == "wrong_shape":
        yml.write_text(yml.read_text().replace("n_features: 6", "n_features: 5", 1))


@pytest.mark.parametrize(
    ("case", "backend", "expected"),
    [
        ("pickle_as_safetensors", "torch", ("weights.safetensors: not a safetensors file", "pickle")),
        ("truncated_safetensors", "torch", ("weights.safetensors: truncated", "tensor '")),
        ("pickle_as_onnx", "onnxruntime", ("model.onnx: onnxruntime cannot load it", "expected an ONNX model")),
        ("only_weights_pt", "torch", ("no weights.safetensors", "found weights.pt", "never loaded")),
        ("python_tag", "onnxruntime", ("model.yaml: line", "only plain YAML")),
        ("unknown_architecture", "torch", ("model.yaml: architecture.name 'TransformerNet'", "not a known")),
        ("wrong_shape", "torch", ("weights.safetensors: tensor 'shift' has shape [6]", "expects [5]")),
    ],
)
def test_broken_model_files_are_one_line_naming_the_file(work, case, backend, expected):
    model = work / "model"
    shutil.copytree(ZOO / "tau_shapes", model)
    _damage(model, case)
    before = digests(*(p for p in model.iterdir()))
    err = one_line_error(
        run_job(work, "-s", f"modules.tauShapes.model={model}", "-s", f"modules.tauShapes.backend={backend}"), *expected
    )
    assert str(model) in err
    assert digests(*(p for p in model.iterdir())) == before
    assert not (work / "out.root").exists() and not temporaries(work) and not (work / "pwned").exists()


def _model_copy(work: Path, name: str, edit_yaml=None) -> Path:
    model = work / f"model_{name}"
    shutil.copytree(ZOO / name, model)
    if edit_yaml is not None:
        spec = yaml.safe_load((model / "model.yaml").read_text())
        edit_yaml(spec)
        (model / "model.yaml").write_text(yaml.safe_dump(spec))
    return model


def _gnn_job(work: Path, model: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = REPO / "process_configs" / "tau_gnn.yaml"
    return cli("e2e-run", config, "-i", "in.root", "-n", "5", "-o", "gnn.root", "--no-progress",
               "-s", f"modules.tauGNN.model={model}", *args, cwd=work)  # fmt: skip


def test_model_yaml_values_that_cannot_make_a_model(work):
    """Hyperparameters that torch refuses (a negative size), that would allocate without bound (a head of 10^12),
    or that are not finite, and output names that cannot be branches or repeat: one line naming model.yaml (they
    were internal errors, or wrote one branch for two outputs)."""

    def hyper(key, value):
        return lambda spec: spec["architecture"]["hyperparameters"].__setitem__(key, value)

    cases = [
        (hyper("n_features", -1), "architecture.hyperparameters do not fit ParticleNet"),
        (hyper("head", 10**12), "weights (at most 1,000,000,000): refusing to build it"),
        (hyper("dropout", float("nan")), "architecture.hyperparameters.dropout: not a finite number"),
        (lambda spec: spec.__setitem__("outputs", ["tau", "tau"]), "outputs: tau named twice"),
        (lambda spec: spec.__setitem__("outputs", ["q cd", "tau"]), "outputs: 'q cd' is not a name for a branch"),
    ]
    for edit, message in cases:
        model = _model_copy(work, "tau_gnn", edit)
        one_line_error(_gnn_job(work, model), "model.yaml", message)
        shutil.rmtree(model)
    assert not (work / "gnn.root").exists()


def test_an_onnx_graph_for_other_inputs_and_nan_scores(work):
    """A model.onnx exported for another producer's features is one line at its first batch (ONNX Runtime's
    INVALID_ARGUMENT was an internal error); NaN weights give NaN scores, which the run counts and e2e-eval
    refuses to turn into an AUC."""
    import onnx

    model = _model_copy(work, "tau_gnn")
    shutil.copy(ZOO / "tau_gnn_fast" / "model.onnx", model / "model.onnx")
    one_line_error(  # the model.yaml it embeds says so first
        _gnn_job(work, model, "-s", "modules.tauGNN.backend=onnxruntime"),
        "model_tau_gnn/model.yaml input.window 63 differs from the model.yaml model.onnx was exported with "
        "(input.window 33, its metadata e2e_model_yaml)",
    )
    proto = onnx.load(str(model / "model.onnx"))
    del proto.metadata_props[:]  # (an ONNX file of one's own: no model.yaml in it)
    onnx.save(proto, str(model / "model.onnx"))
    one_line_error(
        _gnn_job(work, model, "-s", "modules.tauGNN.backend=onnxruntime"),
        "model.onnx: input 'x' takes [n, 7] tensor(float), the tagger feeds [",
    )
    from safetensors.numpy import load_file, save_file

    model = _model_copy(work, "tau_gnn_fast")
    weights = load_file(model / "weights.safetensors")
    name = next(k for k in weights if k.endswith("weight"))
    weights[name][:] = np.nan
    save_file(weights, model / "weights.safetensors")
    config = REPO / "process_configs" / "tau_gnn_fast.yaml"
    r = cli("e2e-run", config, "-i", "in.root", "-n", "5", "-o", "nan.root", "--no-progress",
            "-s", f"modules.tauGNN.model={model}", "-s", "modules.tauGNN.backend=torch", cwd=work)  # fmt: skip
    assert r.returncode == 0 and "jets with a NaN or infinite score (the model's output): " in r.stdout, r.stderr
    one_line_error(cli("e2e-eval", "nan.root", cwd=work), "tagger tauGNN has NaN or infinite scores for ")


def test_model_paths_that_are_not_artefacts(work):
    (work / "empty").mkdir()
    cases = {
        "nowhere": "no model directory 'nowhere'",
        "in.root": "is a file, not a model directory",
        "empty": "'empty' has no model.yaml",
        "zoo:nonexistent": "no zoo model 'nonexistent' (zoo: ",
    }
    for model, expected in cases.items():
        one_line_error(run_job(work, "-s", f"modules.tauShapes.model={model}"), expected)


# --------------------------------------------------------------------------------------- output paths
def test_output_in_a_read_only_directory(work):
    (work / "locked").mkdir()
    os.chmod(work / "locked", 0o555)
    cmd = [str(BIN / "e2e-run"), "shapes.yaml", "-o", "locked/out.root"]
    if os.geteuid() == 0:  # root ignores permissions unless it gives up CAP_DAC_OVERRIDE
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop CAP_DAC_OVERRIDE")
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *cmd]
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))}
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=120, env=env)
    proc.args = [str(BIN / "e2e-run")]
    one_line_error(proc, "no permission to write in", "locked")
    assert not list((work / "locked").iterdir())


def _in_namespace(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (sh) as root of a new user + mount namespace, where it can mount a small tmpfs."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not available")
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("user namespaces are not available here")
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))}
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    proc.args = [str(BIN / "e2e-run")]
    return proc


def test_output_on_a_read_only_file_system(work):
    mnt = work / "mnt"
    mnt.mkdir()
    proc = _in_namespace(
        f"mount -t tmpfs -o size=4m tmpfs {mnt} && mount -o remount,ro {mnt} && "
        f"cd {work} && {BIN / 'e2e-run'} shapes.yaml -o {mnt}/out.root"
    )
    one_line_error(proc, "read-only file system", str(mnt))


def test_disk_full_while_writing_is_one_line_and_leaves_nothing(work):
    before = digests(work / "in.root")
    mnt = work / "mnt"
    mnt.mkdir()
    # a copy of the input (8.5 MB, LZ4) cannot fit in 1 MB: the disk fills during the run
    proc = _in_namespace(
        f"mount -t tmpfs -o size=1m tmpfs {mnt} && cd {work} && "
        f"{BIN / 'e2e-run'} shapes.yaml -o {mnt}/out.root -s outputs.0.copy_input=true; "
        f"rc=$?; ls -A {mnt} >&2; exit $rc"
    )
    err = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-3000:]  # `ls` printed nothing: nothing left
    assert f"{mnt}/out.root: No space left on device" in err[0] and "Traceback" not in proc.stderr
    assert digests(work / "in.root") == before


# ----------------------------------------------------------------------------------------------- inputs
def _write_flat(path: Path, columns: dict[str, np.ndarray | ak.Array]) -> Path:
    """A hits tree with every jagged branch written on its own (counter n<branch>) and the counters nX given
    as plain branches, so that a counter can disagree with its lists."""
    types = {
        k: (v.dtype if isinstance(v, np.ndarray) else f"var * {ak.type(v).content.content}") for k, v in columns.items()
    }
    with uproot.recreate(path) as f:
        f.mktree("Events", types)
        f["Events"].extend(dict(columns))
    return path


def _columns(n: int = 20) -> dict[str, np.ndarray | ak.Array]:
    ev = read_events(SAMPLE, n)
    return {k: (ak.to_numpy(ev[k]) if ev[k].ndim == 1 else ev[k]) for k in ev.fields}


def test_counters_are_checked_against_the_lists_read(work):
    cols = _columns()
    cols["nJet"] = cols["nJet"].copy()
    cols["nJet"][7] += 1
    _write_flat(work / "bad_counter.root", cols)
    before = digests(work / "bad_counter.root")
    one_line_error(run_job(work, "-i", "bad_counter.root"), "bad_counter.root", "entry 7", "nJet = ")
    one_line_error(cli("e2e-validate", "bad_counter.root", cwd=work), "entry 7", "nJet = ")
    assert digests(work / "bad_counter.root") == before and not (work / "out.root").exists()
    assert not temporaries(work)


def _with_ids(events: ak.Array, event_numbers: np.ndarray) -> dict:
    cols = {f: events[f] for f in events.fields}
    cols["event"] = event_numbers.astype(np.uint64)
    return cols


def test_duplicate_event_ids_are_counted_or_refused(work):
    ev = read_events(SAMPLE, 30)
    numbers = ak.to_numpy(ev.event).copy()
    numbers[12] = numbers[3]  # within the file (and across batches of 10)
    write_hits(work / "dup.root", _with_ids(ev, numbers))
    ok = run_job(work, "-i", "dup.root", "-s", "source.step_size=10")
    assert ok.returncode == 0, ok.stderr
    assert "duplicate event ids (same run, luminosityBlock, event as an earlier event): 1" in ok.stdout
    assert "dup.root:Events entry 3 and " in ok.stdout and "entry 12" in ok.stdout
    with uproot.open(work / "out.root") as f:  # the friend stays aligned entry by entry
        assert np.array_equal(f["Events"]["event"].array(library="np"), numbers)
    os.unlink(work / "out.root")
    for step in ("10", "50"):  # found across batches and within one
        one_line_error(
            run_job(work, "-i", "dup.root", "-s", "options.duplicate_ids=error", "-s", f"source.step_size={step}"),
            "duplicate event ids",
            "entry 3",
            "entry 12",
        )
    v = cli("e2e-validate", "dup.root", cwd=work)  # valid, with e2e-run's warning
    assert v.returncode == 0 and "WARNING: 1 event(s) repeat the (run, luminosityBlock, event)" in v.stdout, v.stderr
    # across files: a second file repeating events of the first
    write_hits(work / "again.root", read_events(SAMPLE, 5))
    v = cli("e2e-validate", "*.root", cwd=work)  # a glob, as e2e-run takes it
    assert v.returncode == 0 and [line.split(":")[0] for line in v.stdout.splitlines()] == [
        "OK again.root",
        "OK dup.root",
        "OK in.root",
    ], v.stdout
    ok = run_job(work, "-i", "in.root", "again.root")
    assert ok.returncode == 0 and "as an earlier event): 5" in ok.stdout, ok.stderr
    os.unlink(work / "out.root")
    one_line_error(
        run_job(work, "-i", "in.root", "again.root", "-s", "options.duplicate_ids=error"), "again.root:Events entry 0"
    )
    # the same file given twice is always an error
    os.link(work / "in.root", work / "same.root")
    one_line_error(run_job(work, "-i", "in.root", "in.root"), "'in.root' is given twice")
    one_line_error(run_job(work, "-i", "in.root", "same.root"), "are the same file")
    assert not (work / "out.root").exists() and not temporaries(work)


@pytest.mark.parametrize(
    ("branch", "value"),
    [
        ("Jet_seed_ieta", 300),
        ("Jet_seed_iphi", -4),
        ("EcalHit_iphi", 360),
        ("TrackerHit_layer", 9),
        ("TrackerHit_layer", -1),
    ],
)
def test_index_fields_are_checked_even_without_value_checks(work, branch, value):
    ev = read_events(SAMPLE, 10)
    cols = {f: ev[f] for f in ev.fields}
    flat = ak.to_numpy(ak.flatten(ev[branch])).astype(np.int64)
    start = int(ak.sum(ak.num(ev[branch])[:4]))
    flat[start] = value
    cols[branch] = ak.unflatten(flat.astype(np.int16), ak.num(ev[branch]))
    write_hits(work / "grid.root", cols)
    config = REPO / "process_configs" / "jet_frames.yaml"
    proc = cli(
        "e2e-run",
        config,
        "--no-progress",
        "-i",
        "grid.root",
        "-s",
        "source.check_values=false",
        "-o",
        "out.root",
        cwd=work,
    )
    one_line_error(proc, f"branch '{branch}' entry 4 has value {value}", "expected")
    assert not (work / "out.root").exists() and not temporaries(work)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file (0 bytes), not a ROOT file"),
        (b"root\x00\x00", "too short to be a ROOT file (6 bytes"),
        (b"PK\x03\x04" + bytes(200), "not a ROOT file: it starts with bytes 50 4b 03 04"),
        (b"\x80\x04\x95" + bytes(200), "looks like a Python pickle"),
        (b"run,event\n1,2\n", "not a ROOT file"),
    ],
)
def test_files_that_are_not_root_say_what_they_are(work, content, expected):
    (work / "bad.root").write_bytes(content)
    before = digests(work / "bad.root")
    one_line_error(run_job(work, "-i", "bad.root"), "bad.root: ", expected)
    one_line_error(cli("e2e-validate", "bad.root", cwd=work), expected)
    one_line_error(cli("e2e-eval", "bad.root", cwd=work), expected)
    assert digests(work / "bad.root") == before and not temporaries(work)


@pytest.mark.parametrize("kept", [100, 300, 5000, 0.5])
def test_a_file_cut_anywhere_is_named_truncated(work, kept):
    """A ROOT file cut short, even inside its first records (where uproot fails before its size can be compared
    with the header's end of file), is called truncated, with both sizes."""
    data = SAMPLE.read_bytes()
    n = int(len(data) * kept) if isinstance(kept, float) else kept
    (work / "cut.root").write_bytes(data[:n])
    expected = f"cut.root: truncated ROOT file ({n} bytes on disk, the header says {len(data)})"
    one_line_error(run_job(work, "-i", "cut.root"), expected)
    one_line_error(cli("e2e-validate", "cut.root", cwd=work), expected)
    assert not (work / "out.root").exists() and not temporaries(work)


def test_an_events_object_that_is_not_a_tree_says_what_it_is(work):
    with uproot.recreate(work / "histogram.root") as f:
        f["Events"] = np.histogram(np.arange(10.0), bins=5)
    one_line_error(run_job(work, "-i", "histogram.root"), "histogram.root: 'Events' is a TH1D, not a TTree or RNTuple")


def test_an_input_directory_suggests_its_files(work):
    (work / "hits").mkdir()
    one_line_error(
        run_job(work, "-i", "hits"), "hits: a directory, not a ROOT file; give its files (e.g. 'hits/*.root')"
    )
    one_line_error(cli("e2e-validate", "hits", cwd=work), "a directory, not a ROOT file")


# ---------------------------------------------------------------------------------------------- e2e-eval
@pytest.fixture
def tagged(work: Path) -> Path:
    (work / "a").mkdir()
    shutil.move(work / "in.root", work / "a" / "in.root")
    proc = run_job(work, "-i", "a/in.root", "-o", "a/tagged.root")
    assert proc.returncode == 0, proc.stderr
    return work


def test_eval_finds_an_input_moved_with_its_tagged_file(tagged):
    shutil.move(tagged / "a", tagged / "b")  # the tagged file and its input moved together
    proc = cli("e2e-eval", "b/tagged.root", "--plot", "b/roc.png", cwd=tagged)
    assert proc.returncode == 0 and "tauShapes" in proc.stdout, proc.stderr
    shutil.move(tagged / "b" / "in.root", tagged / "renamed.root")  # input renamed: say to use --input
    one_line_error(
        cli("e2e-eval", "b/tagged.root", "--plot", "b/roc.png", cwd=tagged),
        "b/tagged.root: its input",
        "is not found",
        "--input",
    )
    proc = cli("e2e-eval", "b/tagged.root", "--input", "renamed.root", "--plot", "b/roc.png", cwd=tagged)
    assert proc.returncode == 0, proc.stderr


def test_eval_refuses_an_input_with_other_jets(tagged):
    ev = read_events(tagged / "a" / "in.root")
    e = int(np.argmax(ak.to_numpy(ev.nJet) > 0))
    cols = {f: ev[f] for f in ev.fields}
    for f in ev.fields:  # same events, but event e loses its last jet
        if f.startswith("Jet_"):
            cols[f] = ak.concatenate([ev[f][:e], ev[f][e : e + 1, :-1], ev[f][e + 1 :]])
    write_hits(tagged / "other.root", cols)
    one_line_error(
        cli("e2e-eval", "a/tagged.root", "--input", "other.root", cwd=tagged),
        f"same events but different jets (entry {e}: nJet {int(ev.nJet[e])} tagged, {int(ev.nJet[e]) - 1}",
    )


def test_eval_and_display_refuse_an_input_of_other_jets_under_the_same_ids(tagged):
    """Other events under the same ids and jet counts (a sample made again: every e2e-generate file numbered its
    events 1..N in run 1): the tagged file's jet pT (written by default) against the input's, one line; metrics of
    scores paired with other jets (an AUC of 0.33 for 0.95) and a display labelled with another jet's score."""
    ev = read_events(tagged / "a" / "in.root")
    order = np.arange(len(ev))
    n_jet = ak.to_numpy(ev.nJet)
    for n in np.unique(n_jet):  # events of equal jet counts reversed, the ids kept
        group = np.flatnonzero(n_jet == n)
        order[group] = group[::-1]
    swapped = {f: ev[f] if f in ("run", "luminosityBlock", "event") else ev[f][order] for f in ev.fields}
    write_hits(tagged / "other.root", swapped)
    one_line_error(
        cli("e2e-eval", "a/tagged.root", "--input", "other.root", cwd=tagged),
        "a/tagged.root: its jets are not those of its input (other.root): jet ",
        "same event ids and jet counts",
    )
    one_line_error(
        cli(
            "e2e-display",
            "other.root",
            "--tagged",
            "a/tagged.root",
            "--score",
            "Jet_tauShapes_tau",
            "-o",
            "d.png",
            cwd=tagged,
        ),  # fmt: skip
        "a/tagged.root is not a tagged file of other.root: entry ",
    )
    assert not (tagged / "d.png").exists()


def test_eval_names_files_of_one_name_apart_and_refuses_what_it_cannot_measure(tagged):
    """Two tagged files of one name in other directories are both in the table (the second replaced the first);
    the same file twice, a signal other than Jet_label 1's, NaN bin edges, --head-labels without heads and a file
    that is no e2e-run output are one line each."""
    (tagged / "b").mkdir()
    shutil.copy(tagged / "a" / "in.root", tagged / "b" / "in.root")
    assert run_job(tagged, "-i", "b/in.root", "-o", "b/tagged.root", "-n", "100").returncode == 0
    proc = cli("e2e-eval", "a/tagged.root", "b/tagged.root", "--plot", "ab.png", cwd=tagged)
    assert proc.returncode == 0, proc.stderr
    assert "a/tagged.root:tauShapes" in proc.stdout and "b/tagged.root:tauShapes" in proc.stdout, proc.stdout
    for args, expected in [
        (["a/tagged.root", "./a/tagged.root"], "./a/tagged.root: given twice (a/tagged.root is the same file)"),
        (["a/tagged.root", "--signal", "qcd"], "--signal qcd: e2e-eval measures Jet_label 1 (tau) jets against"),
        (["a/tagged.root", "--pt-bins", "nan", "50"], "--pt-bins nan 50: expected at least two increasing edges"),
        (["a/tagged.root", "--head-labels", "4"], "--head-labels 4: no tagger of a/tagged.root has heads"),
        (["a/in.root"], "a/in.root: no e2e_products provenance: not an output of e2e-run"),
    ]:
        one_line_error(cli("e2e-eval", *args, "--plot", "x.png", cwd=tagged), expected)
    assert not (tagged / "x.png").exists()


def _damaged_copy(path: Path, out: Path, start: int, length: int) -> Path:
    data = bytearray(path.read_bytes())
    for i in range(start, min(start + length, len(data))):
        data[i] ^= 0x55
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("where", ["tree", "basket", "input basket"])
def test_eval_of_a_damaged_file_is_one_line(tagged, capsys, where):
    """Bytes flipped in the tagged file's TTree record, in the basket of the score it reads, or in a basket of its
    input's truth: one line naming the file and what could not be read (was uproot's traceback)."""
    from e2e.cli.eval import main

    tagged_file, hits = tagged / "a" / "tagged.root", tagged / "a" / "in.root"
    with uproot.open(tagged_file) as f:
        tree_at = f.key("Events").data_cursor.index
        score_at = int(f["Events"]["Jet_tauShapes_tau"].member("fBasketSeek")[0])
    with uproot.open(hits) as f:
        truth_at = int(f["Events"]["Jet_label"].member("fBasketSeek")[0])
    if where == "input basket":
        args = [str(tagged_file), "--input", str(_damaged_copy(hits, tagged / "bad_in.root", truth_at + 80, 200))]
    else:
        start = tree_at + 100 if where == "tree" else score_at + 80
        args = [str(_damaged_copy(tagged_file, tagged / "bad.root", start, 300)), "--input", str(hits)]
    assert main([*args, "--plot", str(tagged / "roc.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "internal error" not in err, err
    assert "bad_in.root:Events: cannot read the tree data" in err if where == "input basket" else "bad.root" in err
    assert "cannot read the tree" in err, err


def _tagged_copy(src: Path, dst: Path, change=None, provenance: str | None = None) -> Path:
    """A copy of a tagged file with its Events branches changed by ``change(dict)`` and/or its provenance text."""
    with uproot.open(src) as f:
        arrays = f["Events"].arrays(library="ak")
        text = provenance if provenance is not None else str(f["e2e_products"])
    cols = {k: arrays[k] for k in arrays.fields if not k.startswith("nJet_") or k == "nJet"}
    if change is not None:
        change(cols)
    with uproot.recreate(dst) as f:
        f["Events"] = {k: v for k, v in cols.items() if k != "nJet"} | {"nJet": cols["nJet"]}
        f["e2e_products"] = text
    return dst


def test_eval_refuses_scores_not_one_per_jet(tagged):
    """Score branches whose values per entry differ from nJet (the same total: every later score on another jet;
    or not) and a score that is one number per entry are one line each, not an AUC or a traceback."""
    src = tagged / "a" / "tagged.root"
    nj = uproot.open(src)["Events"]["nJet"].array(library="np")
    a, b = (int(e) for e in np.flatnonzero(nj > 0)[:2])

    def moved(cols):  # entry a loses its first score to entry b
        s = ak.to_list(cols["Jet_tauShapes_tau"])
        s[b] = [s[a][0], *s[b]]
        s[a] = s[a][1:]
        cols["Jet_tauShapes_tau"] = ak.Array(s)

    def flat(cols):
        cols["Jet_tauShapes_tau"] = ak.to_numpy(ak.fill_none(ak.firsts(cols["Jet_tauShapes_tau"]), 0.0))

    for change, expected in (
        (moved, f"branch Jet_tauShapes_tau has {nj[a] - 1} values in entry {a}, where nJet is {nj[a]}"),
        (flat, "branch Jet_tauShapes_tau is not one value per jet"),
    ):
        _tagged_copy(src, tagged / "a" / "bad.root", change)
        one_line_error(cli("e2e-eval", "a/bad.root", "--input", "a/in.root", "--plot", "x.png", cwd=tagged), expected)
    assert not (tagged / "x.png").exists()


@pytest.mark.parametrize(
    ("provenance", "expected"),
    [
        ("[1, 2]", "provenance has a list at the top that is not an object"),
        ('{"products": "x"}', "'products' that is not an object of objects"),
        ('{"products": {}, "inputs": "in.root"}', "'inputs' that is not a list of file names"),
        ('{"products": {}, "process": {"source": []}}', "'process.source' that is not an object"),
    ],
)
def test_eval_refuses_provenance_of_other_types(tagged, provenance, expected):
    _tagged_copy(tagged / "a" / "tagged.root", tagged / "a" / "bad.root", provenance=provenance)
    one_line_error(cli("e2e-eval", "a/bad.root", "--plot", "x.png", cwd=tagged), expected)


def test_eval_of_a_window_without_a_class_and_of_bins_like_the_window(tagged):
    """A pT window without signal or background jets is one line (no AUC of NaN, exit 0); pT bins whose only bin is
    the window, and bins without jets of a class, are evaluated (the JSON standard: null, never NaN)."""
    one_line_error(
        cli("e2e-eval", "a/tagged.root", "--pt", "5000", "6000", "--plot", "x.png", cwd=tagged),
        "0 signal (Jet_label 1) and 0 background (Jet_label 0) jets",
        "5000 < pT < 6000 GeV",
    )
    proc = cli(
        "e2e-eval", "a/tagged.root", "--pt-bins", "20", "100", "--plot", "one.png", "--json", "one.json", cwd=tagged
    )
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads((tagged / "one.json").read_text())["tauShapes"]) == {"all", "20-100"}
    proc = cli(
        "e2e-eval", "a/tagged.root", "--pt-bins", "20", "100", "5000", "--plot", "two.png", "--json", "two.json",
        cwd=tagged,
    )  # fmt: skip
    assert proc.returncode == 0 and "(no signal jets)" in proc.stdout, proc.stdout + proc.stderr
    text = (tagged / "two.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["tauShapes"]["100-5000"]["auc"] is None


def test_eval_of_a_file_without_entries(work):
    write_hits(work / "empty.root", read_events(SAMPLE, 0))
    assert run_job(work, "-i", "empty.root", "-o", "tagged.root").returncode == 0
    one_line_error(cli("e2e-eval", "tagged.root", cwd=work), "0 entries")


def test_eval_output_paths(tagged):
    proc = cli("e2e-eval", "a/tagged.root", "--plot", "new/dir/roc.png", "--json", "new/other/eval.json", cwd=tagged)
    assert proc.returncode == 0, proc.stderr
    assert (tagged / "new" / "dir" / "roc.png").stat().st_size > 0
    results = json.loads((tagged / "new" / "other" / "eval.json").read_text())
    errors = [m["auc_error"] for r in results.values() for m in r.values() if m["n_signal"] and m["n_background"]]
    assert errors and min(errors) > 0  # DeLong with a floor: never +-0 even for a perfectly separated bin
    one_line_error(
        cli("e2e-eval", "a/tagged.root", "--json", "a", "--plot", "x.png", cwd=tagged), "--json a is a directory"
    )
    one_line_error(cli("e2e-eval", "a/tagged.root", "--plot", "a/in.root", cwd=tagged), "is an input")
    one_line_error(cli("e2e-eval", "a/tagged.root", "--plot", "roc.nope", cwd=tagged), "unknown plot format")
    assert not temporaries(tagged)


# --------------------------------------------------------------------------------------------- handler
def test_every_console_script_has_the_one_line_handler(work):
    (work / "binary.yaml").write_bytes(b"root\x00\xff\xfe\x00")
    (work / "control.yaml").write_bytes(b"process: T\nmodules: \x00\n")  # UTF-8, but not YAML text
    for prog in ("e2e-run", "e2e-generate", "e2e-train"):
        one_line_error(cli(prog, "missing.yaml", cwd=work), "missing.yaml: configuration file not found")
        one_line_error(cli(prog, "binary.yaml", cwd=work), "binary.yaml: configuration file is not UTF-8 text")
        one_line_error(cli(prog, "control.yaml", cwd=work), "control.yaml: line 2: invalid YAML: character U+0000")
        one_line_error(cli(prog, "shapes.yaml", "--no-such-option", cwd=work), "unrecognized arguments")
    one_line_error(cli("e2e-validate", "missing.root", cwd=work), "missing.root: no such file")
    one_line_error(cli("e2e-eval", "missing.root", cwd=work), "missing.root: no such file")


@pytest.mark.parametrize(("executor", "exits"), [("iterative", False), ("futures", False), ("iterative", True),
                                                 ("futures", True)])  # fmt: skip
def test_a_failure_in_a_module_of_ones_own_is_not_called_a_bug_in_e2e(work, executor, exits):
    """A module given by package.module:Class that raises, in the process or in a worker, or calls sys.exit(0): its
    file and line are named as the user's code (with the traceback), not 'a bug in e2e' nor a success; e2e's own
    failures still say internal error."""
    config = yaml.safe_load((work / "shapes.yaml").read_text())
    config["modules"]["mine"] = {"type": "faulty_modules:RaiseAt", "at_entry": 0, "exits": exits}
    config["outputs"][0]["keep"] = ["tauShapes", "mine"]
    (work / "mine.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests" / "helpers")}
    workers = ["--workers", "1"] if executor == "futures" else []
    args = ["mine.yaml", "--no-progress", "--executor", executor, *workers]
    r = subprocess.run([sys.executable, "-m", "e2e.cli.run", *args], cwd=work, env=env,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    raised = "SystemExit: 0" if exits else "RuntimeError: a bug in the user's module"
    assert r.returncode == 70 and raised in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "error in code of your own (" in last and "faulty_modules.py:" in last and "bug in e2e" not in last
    assert ("it called sys.exit(0) during the run" in last) == exits, last
    assert not (work / "out.root").exists()


def test_top_level_handler_classes(capsys):
    import errno

    from e2e.cli.common import run_main
    from e2e.errors import ConfigError

    def raising(exc: BaseException):
        def body() -> int:
            raise exc

        return body

    assert run_main("e2e-x", raising(ConfigError("a.yaml: bad")), False) == 2
    assert capsys.readouterr().err == "e2e-x: error: a.yaml: bad\n"
    assert run_main("e2e-x", raising(PermissionError(errno.EACCES, "Permission denied", "/p/x")), False) == 2
    assert capsys.readouterr().err == "e2e-x: error: /p/x: Permission denied\n"
    assert run_main("e2e-x", raising(OSError(errno.ENOSPC, "No space left on device")), False) == 2
    assert capsys.readouterr().err == "e2e-x: error: No space left on device\n"
    assert run_main("e2e-x", raising(ConfigError("x: " + "y" * 100_000)), False) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 1100 and err.rstrip().endswith("(message shortened)")
    import functools

    from e2e.params import build

    assert run_main("e2e-x", functools.partial(build, int, None, "x"), False) == 70  # a TypeError inside e2e
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal error" in err and "please report it" in err
    assert run_main("e2e-x", raising(KeyError("internal")), False) == 70  # raised here: code of one's own
    err = capsys.readouterr().err
    assert "Traceback" in err and "error in code of your own (" in err and "test_bad_input.py:" in err
    compiled = compile("raise ValueError('seed')", "numpy/random/bit_generator.pyx", "exec")  # (no such file here)
    assert run_main("e2e-x", functools.partial(exec, compiled), False) == 70  # a library frame without a file
    err = capsys.readouterr().err
    assert "internal error" in err and "code of your own" not in err


@pytest.mark.parametrize(
    ("command", "config", "expected"),
    [
        ("run", "train_tau_gnn.yaml", "a training configuration (top-level keys model, optimizer, product, split)"),
        ("run", "generate_qcd.yaml", "a generation configuration"),
        ("train", "tau_gnn.yaml", "a process configuration (top-level keys modules, outputs, source)"),
        ("train", "generate_sample.yaml", "a generation configuration"),
        ("generate", "tau_cnn.yaml", "a process configuration"),
        ("generate", "train_jet_mass.yaml", "a training configuration"),
    ],
)
def test_a_configuration_of_another_kind_names_its_command(capsys, command, config, expected):
    """A shipped configuration given to the wrong command is refused in one line naming the right one."""
    import importlib

    main = importlib.import_module(f"e2e.cli.{command}").main
    assert main([str(REPO / "process_configs" / config)]) == 2
    err = capsys.readouterr().err.strip()
    right = {"training": "e2e-train", "generation": "e2e-generate", "process": "e2e-run"}
    kind = expected.split()[1]
    assert expected in err and err.endswith(f"run it with {right[kind]}") and "\n" not in err, err


def test_every_shipped_configuration_is_of_one_kind():
    """Each shipped YAML has the own keys of exactly one kind (so the check above never refuses a right one)."""
    from e2e.cli.common import CONFIG_KINDS

    paths = sorted((REPO / "process_configs").glob("*.yaml")) + sorted((REPO / "examples").glob("*/*.yaml"))
    assert len(paths) > 30
    for path in paths:
        keys = set(yaml.safe_load(path.read_text()))
        kinds = [kind for kind, (own, _) in CONFIG_KINDS.items() if keys & own]
        assert len(kinds) == 1, (path.name, kinds)


# ------------------------------------------------------------------------------------- all or none commits
def test_commits_of_a_run_are_all_or_none(tmp_path):
    """Renames in an all_or_none block take effect together: a rename that fails (a directory in the way) or an
    interruption meanwhile puts back every file already replaced, and leaves no temporary (moved-aside files too)."""
    from e2e import interrupts
    from e2e.paths import all_or_none, atomic_file

    a, b = tmp_path / "a.root", tmp_path / "b.root"
    a.write_bytes(b"OLD-A")
    new_a, new_b = atomic_file(a), atomic_file(b)
    b.mkdir()  # (made in the way after the output began: one named at the start is refused at once)
    new_a.tmp.write_bytes(b"NEW-A")
    new_b.tmp.write_bytes(b"NEW-B")
    with pytest.raises(OSError), all_or_none():
        new_a.commit()
        new_b.commit()
    assert a.read_bytes() == b"OLD-A" and b.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.root", "b.root"]

    b.rmdir()
    c = tmp_path / "c.root"  # a new file: removed again
    files = {a: b"NEW-A", b: b"NEW-B", c: b"NEW-C"}
    pending = {path: atomic_file(path) for path in files}
    for path, out in pending.items():
        out.tmp.write_bytes(files[path])
    try:
        with pytest.raises(KeyboardInterrupt), all_or_none():
            pending[a].commit()
            interrupts.on_sigint(2, None)  # a Ctrl-C during the commits: recorded, raised at the next one
            pending[c].commit()
            pending[b].commit()
    finally:
        interrupts.clear()
    assert a.read_bytes() == b"OLD-A" and not b.exists() and not c.exists()
    for out in pending.values():  # their owner discards those it did not commit, as RootOutput.abort does
        out.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.root"]

    pending = {path: atomic_file(path) for path in files}
    for path, out in pending.items():
        out.tmp.write_bytes(files[path])
    with all_or_none():
        for out in pending.values():
            out.commit()
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == files  # no moved-aside file left


def test_a_failing_commit_replaces_no_output_and_leaves_no_temporary(work, monkeypatch):
    """Two outputs (one per_file) of a run that already wrote them once: the third of four renames fails (as an
    immutable file makes it fail even for root), and every output file is the earlier run's, with no temporary."""
    from e2e.cli.run import main as run_main
    from e2e.io import treewriter

    config = yaml.safe_load((work / "shapes.yaml").read_text())
    config["source"]["files"] = ["in.root", "second.root"]
    config["outputs"].append({"file": "pf/{stem}_tagged.root", "keep": ["tauShapes"], "per_file": True})
    shutil.copy(work / "in.root", work / "second.root")
    (work / "two.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(work)
    assert run_main(["two.yaml", "--no-progress"]) == 0
    outputs = [work / "out.root", work / "pf" / "in_tagged.root", work / "pf" / "second_tagged.root"]
    before = digests(*outputs)
    calls = []
    commit = treewriter.AtomicTreeWriter.commit

    def failing(self):
        calls.append(self.path)
        if len(calls) == 3:
            raise OSError(1, "Operation not permitted", str(self.path))
        return commit(self)

    monkeypatch.setattr(treewriter.AtomicTreeWriter, "commit", failing)
    assert run_main(["two.yaml", "--no-progress"]) == 2
    assert len(calls) == 3 and digests(*outputs) == before
    assert not temporaries(work) and not list(work.rglob("*.tmp"))


@pytest.mark.parametrize(
    ("fault", "at_entry", "expected"),
    [
        ("repeat", -1, "put 'mine': column names ['a', 'a'] repeat a name"),
        ("space", -1, "put 'mine': column names ['a b'] are not branch names"),
        ("rows", 3, "put 'mine': values has 9 rows for 8 jets"),  # entries 3-5 of the sample: 8 jets
        ("type", -1, "put 'mine': a dict, not a JetTable"),
        ("nothing", 3, "did not put 'mine', which produces() declares"),
        ("half", -1, "put 'mine': values are float16: expected numbers"),
    ],
)
def test_a_module_of_ones_own_that_puts_a_broken_product_is_named_in_one_line(
    work, capsys, monkeypatch, fault, at_entry, expected
):
    """What a module of one's own puts is checked against its declaration (type, jets, column names) as it is put:
    one line naming the module and its class, not a writer's traceback, a lost column or 'a bug in e2e'."""
    monkeypatch.syspath_prepend(str(REPO / "tests" / "helpers"))
    monkeypatch.chdir(work)
    config = yaml.safe_load((work / "shapes.yaml").read_text())
    config["source"]["step_size"] = 3
    config["modules"]["mine"] = {"type": "faulty_modules:PutsWrong", "fault": fault, "at_entry": at_entry}
    config["outputs"][0]["keep"] = ["tauShapes", "mine"]
    (work / "mine.yaml").write_text(yaml.safe_dump(config))
    rc, _, err = run_cli(["mine.yaml", "-n", "6", "--no-progress"], capsys)
    assert rc == 2 and err.count("\n") == 1, err
    assert "modules.mine (faulty_modules:PutsWrong)" in err and expected in err, err
    assert err.count("mine") == 2, err  # the module named once, and its product
    if at_entry >= 0:
        assert "modules.mine (faulty_modules:PutsWrong) on in.root:Events entries 3-5: " in err, err
    assert not (work / "out.root").exists()


def test_a_module_of_ones_own_with_a_broken_declaration_or_import(work, capsys, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "tests" / "helpers"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(work)
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "declared.py").write_text(
        "from dataclasses import dataclass\n"
        "from faulty_modules import RaiseAt\n"
        "from e2e.params import param\n"
        "class BadDefault(RaiseAt):\n"
        "    @dataclass\n"
        "    class Params(RaiseAt.Params):\n"
        "        scale: float = param(-1.0, 'a scale', minimum=0.0)\n"
        "class BadAnnotation(RaiseAt):\n"
        "    @dataclass\n"
        "    class Params(RaiseAt.Params):\n"
        "        scale: 'Floaty' = param(1.0, 'a scale')\n"
    )
    config = yaml.safe_load((work / "shapes.yaml").read_text())
    config["outputs"][0]["keep"] = ["tauShapes", "mine"]
    for module_type, expected in [
        ("faulty_modules:DeclaresJunk", "modules.mine (faulty_modules:DeclaresJunk): produces() must return"),
        (
            "exits_on_import:Mine",
            "importing module 'exits_on_import' for type 'exits_on_import:Mine' failed (SystemExit",
        ),
        (
            "declared:BadDefault",
            "modules.mine.scale: got -1.0, expected a value >= 0.0 (the default BadDefault.Params declares for it",
        ),
        (
            "declared:BadAnnotation",
            "the parameter declarations of declared.BadAnnotation.Params cannot be read: an annotation names "
            "something undefined (NameError: name 'Floaty' is not defined)",
        ),
    ]:
        config["modules"]["mine"] = {"type": module_type}
        (work / "mine.yaml").write_text(yaml.safe_dump(config))
        rc, _, err = run_cli(["mine.yaml", "-n", "3", "--no-progress"], capsys)
        assert rc == 2 and err.count("\n") == 1 and expected in err, err


def test_a_product_branch_that_the_output_writes_otherwise_is_refused(work, capsys, monkeypatch):
    """A module labelled ``gen`` with a ``pt`` column writes Jet_gen_pt: over the input's truth in a copy
    (copy_input), refused in one line before anything is written; in a friend it is that module's own branch."""
    monkeypatch.syspath_prepend(str(REPO / "tests" / "helpers"))
    monkeypatch.chdir(work)
    config = yaml.safe_load((work / "shapes.yaml").read_text())
    config["modules"]["gen"] = {"type": "faulty_modules:PutsWrong", "at_entry": 10**9}  # a plain pt table
    config["outputs"][0].update(keep=["tauShapes", "gen"], copy_input=True)
    (work / "gen.yaml").write_text(yaml.safe_dump(config))
    rc, _, err = run_cli(["gen.yaml", "-n", "6", "--no-progress"], capsys)
    assert rc == 2 and err.count("\n") == 1, err
    assert "branch Jet_gen_pt of 'gen' is a branch of the input, which this output copies (copy_input)" in err, err
    assert not (work / "out.root").exists()
    config["outputs"][0]["copy_input"] = False
    (work / "gen.yaml").write_text(yaml.safe_dump(config))
    rc, _, err = run_cli(["gen.yaml", "-n", "6", "--no-progress"], capsys)
    assert rc == 0, err
    with uproot.open(work / "out.root") as f:
        assert "Jet_gen_pt" in f["Events"].keys() and "Jet_pt" in f["Events"].keys()


def test_output_tree_names_that_read_back_and_eval_finds_them(work, capsys, monkeypatch):
    """RootOutput.tree: a name with a cycle (';'), empty path parts or the provenance's key is refused; any other
    name (in a directory too) is recorded in the provenance, where e2e-eval and e2e-display find it."""
    from e2e.cli.display import main as display_main
    from e2e.cli.eval import main as eval_main

    monkeypatch.chdir(work)
    for tree in ("Events;1", "/Events", "Events/", "a//b", "e2e_products"):
        rc, _, err = run_cli(["shapes.yaml", "-s", f"outputs.0.tree='{tree}'", "--no-progress"], capsys)
        assert rc == 2 and err.count("\n") == 1 and "is not a name ROOT and uproot read back" in err, err
    assert not (work / "out.root").exists()
    rc, _, err = run_cli(["shapes.yaml", "-s", "outputs.0.tree=friends/Tagged", "--no-progress"], capsys)
    assert rc == 0, err
    with uproot.open(work / "out.root") as f:
        assert f["friends/Tagged"].num_entries == 150 and json.loads(str(f["e2e_products"]))["tree"] == "friends/Tagged"
    assert eval_main(["out.root", "--plot", "roc.png"]) == 0
    assert "tauShapes" in capsys.readouterr().out
    assert display_main(["in.root", "--tagged", "out.root", "--score", "Jet_tauShapes_tau", "-o", "d.png"]) == 0
    assert (work / "d.png").exists()


def test_a_module_of_ones_own_that_puts_graphs_of_other_features_is_named(work, capsys, monkeypatch, tmp_path):
    """JetGraphs whose x has more columns than feature names: one line, not an IndexError deep in the writer."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(work)
    (tmp_path / "regraph.py").write_text(
        "import dataclasses\n"
        "from dataclasses import dataclass\n"
        "from dataformats.products import JetGraphs\n"
        "from e2e.module import Producer\n"
        "from e2e.params import input_tag\n"
        "class ReGraph(Producer):\n"
        "    @dataclass\n"
        "    class Params:\n"
        "        graphs: str = input_tag('jetGraphs', 'graphs', product=JetGraphs)\n"
        "    def produces(self):\n"
        "        return {'': JetGraphs}\n"
        "    def produce(self, batch):\n"
        "        g = batch.get(self.params.graphs)\n"
        "        batch.put(self.label, dataclasses.replace(g, feature_names=(*g.feature_names, 'extra')))\n"
    )
    config = yaml.safe_load((work / "shapes.yaml").read_text())
    config["modules"]["jetGraphs"] = {"type": "JetGraphProducer", "window": 33}
    config["modules"]["regraph"] = {"type": "regraph:ReGraph"}
    config["outputs"][0]["keep"] = ["regraph"]
    (work / "g.yaml").write_text(yaml.safe_dump(config))
    rc, _, err = run_cli(["g.yaml", "-n", "3", "--no-progress"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "modules.regraph (regraph:ReGraph) put 'regraph': x has shape" in err
    for names in ("('row', *g.feature_names[1:])", "(g.feature_names[0], *g.feature_names[:-1])"):
        (tmp_path / "regraph.py").write_text(
            (tmp_path / "regraph.py").read_text().replace("(*g.feature_names, 'extra')", names)
        )
        __import__("sys").modules.pop("regraph", None)
        rc, _, err = run_cli(["g.yaml", "-n", "3", "--no-progress"], capsys)
        assert rc == 2 and "repeat a name or use one of ['jet', 'row', 'col']" in err, err
        (tmp_path / "regraph.py").write_text(
            (tmp_path / "regraph.py").read_text().replace(names, "(*g.feature_names, 'extra')")
        )
