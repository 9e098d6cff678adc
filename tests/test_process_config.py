"""Process configuration: validation errors (one per class), registry, schedule, overrides, --dump-config."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml
from conftest import SAMPLE, run_cli

from dataformats.products import JetGraphs, JetTable
from e2e.config import load_process
from e2e.errors import ConfigError
from e2e.module import Producer
from e2e.params import input_tag, param
from e2e.process import build_schedule


class Echo(Producer):
    """Test module: consumes any product by tag, produces a JetTable."""

    @dataclass
    class Params:
        model: str = param(help="a required parameter")
        src: str = input_tag("source:Jet", "what to consume")

    def produces(self) -> dict[str, type]:
        return {"": JetTable}


class NeedsGraphs(Producer):
    """Test module: needs JetGraphs."""

    @dataclass
    class Params:
        graphs: str = input_tag("jetGraphs", "graphs", product=JetGraphs)

    def produces(self) -> dict[str, type]:
        return {"": JetTable}


def config(**modules) -> dict:
    return {
        "process": "Test",
        "source": {"type": "RootSource", "files": [str(SAMPLE)]},
        "modules": modules or {"jetShapes": {"type": "JetShapeProducer"}},
        "outputs": [{"type": "RootOutput", "file": "out.root"}],
    }


def error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        build_schedule(load_process(data, where="cfg.yaml"))
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_unknown_top_level_key():
    data = config()
    data["modles"] = {}
    assert "unknown key 'modles' (did you mean 'modules'?)" in error(data)


def test_unknown_module_type_names_label_and_closest():
    msg = error(config(jetGraphs={"type": "JetGraphProducr"}))
    assert "modules.jetGraphs" in msg and "did you mean 'JetGraphProducer'" in msg


def test_unknown_parameter_names_label_key_allowed_and_closest():
    msg = error(config(jetGraphs={"type": "JetGraphProducer", "kk": 8}))
    assert "modules.jetGraphs" in msg and "'kk'" in msg and "did you mean 'k'" in msg and "allowed:" in msg


def test_wrong_type():
    msg = error(config(jetGraphs={"type": "JetGraphProducer", "k": "many"}))
    assert "modules.jetGraphs.k" in msg and "expected an integer" in msg


def test_out_of_range_and_bad_choice():
    assert "expected a value >= 1" in error(config(jetGraphs={"type": "JetGraphProducer", "k": 0}))
    msg = error(config(jetGraphs={"type": "JetGraphProducer", "edges": "knnn"}))
    assert "modules.jetGraphs.edges" in msg and "did you mean 'knn'" in msg


def test_unknown_channel():
    msg = error(config(jetFrames={"type": "JetFrameProducer", "channels": ["track_pt", "ecall"]}))
    assert "modules.jetFrames.channels" in msg and "did you mean 'ecal'" in msg


def test_missing_required_key():
    msg = error(config(echo={"type": "test_process_config:Echo"}))
    assert "modules.echo.model: missing required key" in msg


def test_import_path_errors():
    assert "cannot import module 'nope.mod'" in error(config(x={"type": "nope.mod:Cls"}))
    assert "has no class 'Missing'" in error(config(x={"type": "test_process_config:Missing"}))
    assert "is not an e2e module" in error(config(x={"type": "test_process_config:config"}))


def test_missing_label_and_instance():
    msg = error(config(g={"type": "test_process_config:NeedsGraphs", "graphs": "jetGrafs"}))
    assert "modules.g consumes 'jetGrafs' but no module is labelled 'jetGrafs'" in msg
    msg = error(config(e={"type": "test_process_config:Echo", "model": "m", "src": "source:Jets"}))
    assert "'source' produces" in msg and "did you mean 'source:Jet'" in msg


def test_wrong_product_type():
    msg = error(config(jetGraphs={"type": "JetFrameProducer"}, g={"type": "test_process_config:NeedsGraphs"}))
    assert "consumes 'jetGraphs', a JetFrames, but needs a JetGraphs" in msg


def test_cycle_is_an_error():
    msg = error(
        config(
            a={"type": "test_process_config:Echo", "model": "m", "src": "b"},
            b={"type": "test_process_config:Echo", "model": "m", "src": "a"},
        )
    )
    assert "cycle" in msg and ("a -> b -> a" in msg or "b -> a -> b" in msg)


def test_bad_label_and_reserved_label():
    assert "label" in error(config(**{"2x": {"type": "JetShapeProducer"}}))
    assert "reserved" in error(config(source={"type": "JetShapeProducer"}))


def test_keep_pattern_without_match():
    data = config()
    data["outputs"][0]["keep"] = ["jetShape"]
    assert "keep: 'jetShape' matches no module product" in error(data)


def test_no_outputs_is_an_error():
    data = config()
    data["outputs"] = []
    assert "without an output nothing would run" in error(data)


def test_schedule_runs_only_what_outputs_need_in_dependency_order():
    data = config(
        e={"type": "test_process_config:Echo", "model": "m", "src": "jetGraphs"},
        jetGraphs={"type": "JetGraphProducer"},
        jetFrames={"type": "JetFrameProducer"},
    )
    data["outputs"][0]["keep"] = ["e"]
    sched = build_schedule(load_process(data))
    assert sched.order == ["jetGraphs", "e"]
    assert sched.unscheduled == ["jetFrames"]
    # only the collections (and fields) the scheduled modules need are read
    assert "TrackerHit" not in sched.plan
    assert sched.plan["Track"] is not None and "charge" not in sched.plan["Track"]


def test_overrides_and_dump_config_round_trip(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config(jetGraphs={"type": "JetGraphProducer"})))
    rc, out, _ = run_cli(
        [str(cfg), "--dump-config", "-s", "modules.jetGraphs.k=8", "-n", "5", "-o", str(tmp_path / "o.root")], capsys
    )
    assert rc == 0
    dumped = yaml.safe_load(out)
    g = dumped["modules"]["jetGraphs"]
    assert g["k"] == 8 and g["window"] == 125 and g["channels"][0] == "track_pt"  # defaults filled in
    assert dumped["source"]["max_events"] == 5 and dumped["outputs"][0]["file"] == str(tmp_path / "o.root")
    again = load_process(dumped).to_dict()
    assert again == dumped


def test_cli_errors_are_one_line(tmp_path, capsys):
    rc, _, err = run_cli([str(tmp_path / "missing.yaml")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "configuration file not found" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("modules: [\n")
    rc, _, err = run_cli([str(bad)], capsys)
    assert rc == 2 and err.count("\n") == 1 and "invalid YAML" in err
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config()))
    rc, _, err = run_cli([str(cfg), "-s", "modules.jetShapes.cone=wide"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "modules.jetShapes.cone" in err
    assert "Traceback" not in err


def test_yaml_1_1_numbers_are_read_as_meant_or_refused(tmp_path, capsys):
    """YAML 1.1 (PyYAML) reads a leading zero as octal and a colon as base 60: such a plain number is refused with
    what it would read as; ``1e-1`` (no dot: text in YAML 1.1) is a number for a float parameter, and for an
    integer one the message says what to write."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(config(jetGraphs={"type": "JetGraphProducer"}, jetShapes={"type": "JetShapeProducer"}))
    )
    for value, read in (("016", "reads as 14"), ("-012", "reads as -10"), ("1:30", "reads as 90"), ("1:30.5", "90.5")):
        rc, _, err = run_cli([str(cfg), "--dump-config", "-s", f"modules.jetGraphs.k={value}"], capsys)
        assert rc == 2 and err.count("\n") == 1 and read in err and "base 8" in err, err
    rc, _, err = run_cli([str(cfg), "--dump-config", "-s", "modules.jetGraphs.k='016'"], capsys)
    assert rc == 2 and "got '016', expected an integer" in err  # quoted: text
    octal = tmp_path / "octal.yaml"
    octal.write_text(cfg.read_text().replace("type: JetGraphProducer", "type: JetGraphProducer\n    window: 063"))
    rc, _, err = run_cli([str(octal), "--dump-config"], capsys)
    assert rc == 2 and "line " in err and "'063' reads as 51" in err and "write 63 for the decimal number" in err, err
    rc, out, err = run_cli(
        [str(cfg), "--dump-config", "-s", "modules.jetShapes.cone=4e-1", "-s", "modules.jetGraphs.k=10"], capsys
    )
    assert rc == 0, err
    dumped = yaml.safe_load(out)["modules"]
    assert dumped["jetShapes"]["cone"] == 0.4 and dumped["jetGraphs"]["k"] == 10
    rc, out, err = run_cli([str(cfg), "--dump-config", "-s", "modules.jetGraphs.k=00"], capsys)
    assert rc == 2 and "expected a value >= 1" in err  # 00 is 0 either way: not refused as base 8, but as k
    rc, _, err = run_cli([str(cfg), "--dump-config", "-s", "source.step_size=1e3"], capsys)
    assert rc == 2 and "expected an integer (write 1000)" in err


def test_list_and_help_module(capsys):
    rc, out, _ = run_cli(["--list-modules"], capsys)
    assert rc == 0 and "JetGraphProducer" in out.split()
    rc, out, _ = run_cli(["--help-module", "JetGraphProducer"], capsys)
    assert rc == 0 and "k: int = 16" in out


@pytest.mark.parametrize(("module", "key"), [("train", "max_jets"), ("generate", "pileup")])
def test_help_config_lists_every_parameter_and_exits(module, key, capsys):
    import importlib

    main = importlib.import_module(f"e2e.cli.{module}").main
    with pytest.raises(SystemExit) as exc:
        main(["--help-config"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert any(line.startswith(f"{key}:") for line in out.splitlines()), out[:500]


def test_with_inputs_adds_the_blocks_a_partial_configuration_reads() -> None:
    """A partial configuration (the display, a benchmark) gets the modules its chosen blocks name, transitively,
    by label or ``label:instance``; other strings and the source are left alone."""
    from e2e.config import with_inputs

    modules = {
        "graphs": {"type": "HitGraphProducer", "shapes": "shapes", "jets": "source:Jet"},
        "shapes": {"type": "JetShapeProducer", "jets": "calib:Jet"},
        "calib": {"type": "X", "note": "graphs?"},
        "unused": {"type": "Y"},
    }
    got = with_inputs({"graphs": modules["graphs"]}, modules)
    assert list(got) == ["graphs", "shapes", "calib"]
    assert with_inputs({"unused": modules["unused"]}, modules) == {"unused": modules["unused"]}


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"type": "JetShapeProducer", "cone": float("nan")}, "modules.s.cone: got .nan, expected a finite number"),
        ({"type": "JetShapeProducer", "cone": float("inf")}, "modules.s.cone: got .inf, expected a finite number"),
        ({"type": "HitGraphProducer", "k": 10**20}, "modules.s.k: got 100000000000000000000, expected a signed 64-bit"),
        ({"type": "HitGraphProducer", "k": 5000}, "modules.s.k: got 5000, expected a value <= 1024"),
        ({"type": "HitGraphProducer", "max_ecal": 10**7}, "modules.s.max_ecal: got 10000000, expected a value <="),
        ({"type": "JetShapeProducer", "jets": "source:EcalHit"}, "this input takes the source's collection source:Jet"),
        (
            {"type": "GNNTagger", "graphs": "source:Jet", "model": "zoo:tau_gnn_fast"},
            "modules.s consumes 'source:Jet', a JaggedCollection, but needs a JetGraphs",
        ),
        ({"type": "GNNTagger", "jets": "source:Bogus", "model": "zoo:tau_gnn_fast"}, "did you mean 'source:Jet'?"),
    ],
)
def test_values_no_range_check_would_catch(block, message):
    """NaN passes every comparison, integers beyond 64 bits overflow in numpy or C, a huge k or node cap allocates
    without bound, and the ECAL hits are a JaggedCollection as the jets are: each was an internal error."""
    assert message in error(config(s=block))


def test_options_threads_and_workers_are_bounded():
    for key, value in (("threads", 10**20), ("threads", 5000), ("workers", 10**6)):
        data = config()
        data["options"] = {key: value}
        assert f"options.{key}: got {value}" in error(data)


def test_output_and_executor_settings_that_would_be_ignored():
    """A {stem} output name without per_file (a file literally named so), an empty tree name, and a dask scheduler
    for another executor are refused instead of being taken as they are or ignored."""
    data = config()
    data["outputs"][0]["file"] = "{stem}_tagged.root"
    assert "which only per_file: true fills" in error(data)
    data = config()
    data["outputs"][0]["tree"] = ""
    assert "tree: an empty name" in error(data)
    data = config()
    data["options"] = {"executor": "futures", "scheduler": "tcp://localhost:8786"}
    assert "options.scheduler (--scheduler) is the address of a dask scheduler" in error(data)


def test_long_overrides_and_labels_are_quoted_short(capsys):
    """A 900-character override or module label is quoted with at most 80 characters (it was quoted whole)."""
    from e2e.cli.common import apply_override

    long = "x" * 900
    with pytest.raises(ConfigError) as info:
        apply_override({}, long)
    assert len(str(info.value)) < 200 and "..." in str(info.value)
    data = config()
    data["modules"][long] = {"type": "JetShapeProducer"}
    assert "at most 64" in error(data) and len(error(data)) < 300


def test_command_line_values_go_into_blocks_that_are_null_or_refuse_other_values(tmp_path, capsys):
    """-n / -i / --executor set values in the source and options blocks: an empty block (its lines commented out:
    null) is taken as {} by e2e-run as by load_process; a block that is not a mapping is one line, not a bug."""
    base = {
        "process": "M",
        "source": {"files": [str(SAMPLE)]},
        "modules": {"g": {"type": "JetShapeProducer"}},
        "outputs": [{"file": str(tmp_path / "m.root"), "keep": ["g"]}],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**base, "options": None}))
    rc, _, err = run_cli([str(path), "-n", "2", "--no-progress", "--executor", "iterative"], capsys)
    assert rc == 0, err
    path.write_text(yaml.safe_dump({**base, "source": None}))
    rc, _, err = run_cli([str(path), "-i", str(SAMPLE), "-n", "2", "--no-progress"], capsys)
    assert rc == 0, err  # the files from -i
    rc, _, err = run_cli([str(path), "-n", "2", "--no-progress"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "no input files" in err, err
    for block, value in [("source", str(SAMPLE)), ("options", [1])]:
        path.write_text(yaml.safe_dump({**base, block: value}))
        for args in (["-n", "2"], ["-i", str(SAMPLE)]):
            rc, _, err = run_cli([str(path), *args, "--no-progress"], capsys)
            assert rc == 2 and err.count("\n") == 1 and f"{block}: expected a mapping" in err, err


def test_small_mistakes_say_what_they_are(tmp_path, capsys):
    from e2e.yamlio import load_yaml_text

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "source": {"files": [str(SAMPLE)]},
                "modules": {"g": {"type": "JetShapeProducer"}},
                "outputs": [{"file": str(tmp_path / "m.root"), "keep": ["g"]}],
            }
        )
    )
    for override, message in [
        ('source.files=[""]', "source.files: an empty file name ''; expected a path or a glob pattern"),
        ("source.read_threads=99999", "source.read_threads: got 99999, expected a value <= 1024"),
    ]:
        rc, _, err = run_cli([str(cfg), "-s", override, "--no-progress"], capsys)
        assert rc == 2 and err.count("\n") == 1 and message in err, err
    with pytest.raises(ConfigError, match="expected a single document in the stream, but found another document"):
        load_yaml_text("a: 1\n---\nb: 2\n", "x.yaml")
    with pytest.raises(ConfigError, match=r"holds more than 100,000 values \(aliases expanded\)"):
        load_yaml_text("[" + ", ".join(["1"] * 100_001) + "]", "x.yaml")


def test_an_override_of_a_block_shared_by_an_alias_changes_that_block_only(tmp_path, capsys):
    """YAML gives every use of an alias (and what a merge key brings) one object: -s on one block changed the
    others that share it, silently."""
    cfg = tmp_path / "alias.yaml"
    cfg.write_text(
        f"source: {{files: [{SAMPLE}]}}\n"
        "modules:\n"
        "  narrow: &s {type: JetShapeProducer, cone: 0.3}\n"
        "  wide: *s\n"
        "  graphsA: &g {type: JetGraphProducer, window: 33, thresholds: {ecal: 0.2}}\n"
        "  graphsB: {<<: *g, k: 8}\n"
        "outputs: [{file: out.root}]\n"
    )
    rc, out, err = run_cli([str(cfg), "--dump-config", "-s", "modules.wide.cone=0.5",
                            "-s", "modules.graphsB.thresholds.ecal=0.5"], capsys)  # fmt: skip
    assert rc == 0, err
    modules = yaml.safe_load(out)["modules"]
    assert modules["narrow"]["cone"] == 0.3 and modules["wide"]["cone"] == 0.5
    assert modules["graphsA"]["thresholds"]["ecal"] == 0.2 and modules["graphsB"]["thresholds"]["ecal"] == 0.5


def test_labels_tags_indices_and_blocks_that_slipped_through(tmp_path, capsys):
    """A label with a trailing newline, a tag with nothing after ':', a list index in other digits, a null block
    under -s, a dump of a job that cannot run, and a modules list with a parallel executor: each one line (or
    the job as meant), not a failure mid-run or an internal error."""
    assert "label" in error(config(**{"jetShapes\n": {"type": "JetShapeProducer"}}))
    msg = error(config(jetGraphs={"type": "JetGraphProducer"}, g={"type": "test_process_config:NeedsGraphs",
                                                                  "graphs": "jetGraphs:"}))  # fmt: skip
    assert "modules.g consumes 'jetGraphs:': nothing after ':'; write 'jetGraphs' for its main product" in msg
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config()) + "options:\n  # threads: 2\n")
    rc, out, err = run_cli([str(cfg), "--dump-config", "-s", "options.threads=2"], capsys)
    assert rc == 0 and yaml.safe_load(out)["options"]["threads"] == 2, err
    rc, _, err = run_cli([str(cfg), "--dump-config", "-s", "outputs.\u00b2.file=x"], capsys)
    assert rc == 2 and "is not an index of a list of 1" in err, err
    cycle = config(a={"type": "test_process_config:Echo", "model": "m", "src": "b"},
                   b={"type": "test_process_config:Echo", "model": "m", "src": "a"})  # fmt: skip
    cfg.write_text(yaml.safe_dump(cycle))
    rc, out, err = run_cli([str(cfg), "--dump-config"], capsys)
    assert rc == 2 and "cycle" in err and out == "", err
    cfg.write_text(yaml.safe_dump(config()))
    rc, _, err = run_cli([str(cfg), "-n", "2", "--executor", "futures", "--workers", "1", "-s", "modules=[1]"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "modules: expected a mapping" in err, err
