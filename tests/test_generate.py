"""e2e-generate: output schema, reproducibility, jobs, configuration errors."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from dataformats import schema
from e2e.cli.generate import main as generate_main
from e2e.errors import ConfigError
from simulation.generate import generate, job_ranges, load_config

pytestmark = pytest.mark.gen

SMALL = {
    "samples": [{"process": "ztautau", "events": 6}, {"process": "qcd", "events": 4, "pt_hat": [30, 80]}],
    "seed": 5,
    "pileup": {"mu": 40, "library_size": 20},
    "chunk_size": 4,
}


def _generate(tmp: Path, name: str, **over) -> Path:
    data = {**SMALL, **over, "output": str(tmp / name)}
    out, stats, _ = generate(load_config(data), progress_bar=False)
    return out


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory.mktemp("gen"), "a.root")


def _arrays(path: Path) -> ak.Array:
    with uproot.open(path) as f:
        return f["Events"].arrays()


def test_output_passes_schema_and_has_the_design_layout(sample: Path) -> None:
    assert schema.validate_file(sample, truth=True) == 10
    with uproot.open(sample) as f:  # validate_file checked the dtypes; here the on-disk order
        assert list(f["Events"].keys()) == list(schema.branch_dtypes(truth=True))
    a = _arrays(sample)
    np.testing.assert_array_equal(a.event, np.arange(1, 11))  # ids run through the file in order
    np.testing.assert_array_equal(a.luminosityBlock, [1] * 6 + [2] * 4)  # one block per sample
    np.testing.assert_array_equal(a.run, [5] * 10)  # the seed: files of other seeds never share an id
    for coll in schema.collections(truth=False):
        for f in coll.fields:
            np.testing.assert_array_equal(ak.num(a[coll.branch(f.name)]), a[coll.counter])
    # pileup at mu = 40 gives thousands of hits per event; jets are sorted by pT
    assert np.all(a.nEcalHit > 1000) and np.all(a.nTrack > 50)
    assert ak.all(a.Jet_pt[:, :-1] >= a.Jet_pt[:, 1:])
    assert ak.all(a.Jet_pt >= 20) and ak.all(abs(a.Jet_eta) < 2.5)
    assert set(np.unique(ak.flatten(a.Jet_label))) <= {0, 1}


def test_same_seed_gives_identical_arrays_and_other_seed_differs(sample: Path, tmp_path: Path) -> None:
    again = _arrays(_generate(tmp_path, "b.root"))
    first = _arrays(sample)
    for field in first.fields:
        assert ak.all(first[field] == again[field]), field
    other = _arrays(_generate(tmp_path, "c.root", seed=6))
    assert not ak.all(ak.num(other.EcalHit_energy) == ak.num(first.EcalHit_energy))


def test_jobs_split_events_and_merge_in_order(tmp_path: Path) -> None:
    out = _generate(tmp_path, "j.root", jobs=2, pileup={"mu": 0}, chunk_size=2)
    a = _arrays(out)
    assert schema.validate_file(out) == 10
    np.testing.assert_array_equal(a.event, np.arange(1, 11))
    with uproot.open(out) as f:  # merged in chunk_size pieces: baskets as small as with one job
        starts = f["Events"]["EcalHit_energy"].entry_offsets
    assert max(np.diff(starts)) <= 2
    assert not list(tmp_path.glob(".*part*")) and not list(tmp_path.glob("*.tmp"))
    assert job_ranges(10, 3) == [(0, 3), (3, 6), (6, 10)]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"process": "ztautua", "events": 5}, "did you mean 'ztautau'"),
        ({"process": "ztautau", "events": -1}, "expected a value >= 0"),
        ({"process": "ztautau", "events": 5, "pileup": {"muu": 3}}, "unknown key 'muu' (did you mean 'mu'?)"),
        ({"process": "ztautau", "events": "many"}, "expected an integer (or null)"),
        ({"process": "ztautau"}, "missing `process` and `events`"),
        ({"process": "qcd", "events": 5, "pt_hat": [100, 20]}, "pt_hat"),
        ({"process": "ztautau", "events": 1, "samples": [{"process": "qcd", "events": 1}]}, "not both"),
        ({"samples": [{"process": "qcd"}]}, "samples[0].events: missing required key"),
        ({"process": "qcd", "events": 5, "pileup": {"mu": 40, "mu_max": 20}}, "mu_max: 20 is below mu = 40"),
        ({"process": "qcd", "events": 5, "pileup": {"refresh": -1}}, "refresh"),
        ({"process": "qcd", "events": 5, "pileup": {"reuse": 1, "refresh": 0.5}}, "drop refresh"),
        ({"process": "qcd", "events": 5, "pileup": {"reuse": -1}}, "reuse"),
        ({"process": "qcd", "events": 5, "tree": ""}, "tree: '': expected a plain TTree name"),
        ({"samples": [{"process": "qcd", "events": 5, "pt_hat": [1, "x"]}]}, "pt_hat[1]: got 'x', expected a number"),
        ({"process": "qcd", "events": 5, "tree": "a/b"}, "tree: 'a/b': expected a plain TTree name"),
        ({"process": "qcd", "events": 5, "jobs": 99999}, "jobs: got 99999, expected a value <= 1024"),
        ({"process": "qcd", "events": 5, "tree": "Events;1"}, "tree: 'Events;1': expected a plain TTree name"),
        (
            {"process": "qcd", "events": 5, "pt_hat": [7000, 8000]},
            "generate.pt_hat: [7000.0, 8000.0] for process qcd: its",
        ),
        (
            {
                "process": "ztautau",
                "events": 5,
                "detector": {"hadrons": {"ecal_fraction_min": 0.9, "ecal_fraction_max": 0.1}},
            },
            "generate.detector.hadrons: ecal_fraction_min 0.9 is above ecal_fraction_max 0.1",
        ),  # fmt: skip
        (
            {"process": "qcd", "events": 5, "pileup": {"sigma_z_cm": 300}},
            "sigma_z_cm: got 300.0, expected a value <= 50",
        ),
        ({"process": "qcd", "events": 5, "sqrt_s_gev": 100000}, "sqrt_s_gev: got 100000.0, expected a value <= 14000"),
        (
            {"process": "qcd", "events": 5, "detector": {"tracking": {"d0_constant_um": 2e6}}},
            "d0_constant_um: got 2000000.0, expected a value <= 10000",
        ),
        ({"process": "qcdd", "events": 5}, "allowed: ztautau, "),
        (
            {"samples": [{"process": "ztautau", "events": 2, "pt_hat": [500, 600]}]},
            "generate.samples.0.pt_hat: [500.0, 600.0] for process ztautau, which has no pT-hat range",
        ),
    ],
)
def test_config_errors_are_one_clear_line(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(data)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_cli_reports_bad_config_in_one_line_with_nonzero_exit(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("process: ztautau\nevents: 5\njobz: 2\n")
    assert generate_main([str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown key 'jobz' (did you mean 'jobs'?)" in err
    assert generate_main([str(tmp_path / "missing.yaml")]) == 2
    cfg.write_text("process: [unclosed\n")
    assert generate_main([str(cfg)]) == 2
    assert "invalid YAML" in capsys.readouterr().err


def test_cli_events_of_a_mixture_are_refused(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "mix.yaml"
    cfg.write_text("samples: [{process: qcd, events: 3}, {process: zqq, events: 2}]\n")
    assert generate_main([str(cfg), "-n", "2", "--dump-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "-n 2: " in err and "is a mixture of samples" in err, err


def test_cli_dump_config_expands_defaults(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "g.yaml"
    cfg.write_text("process: zqq\nevents: 3\n")
    assert generate_main([str(cfg), "--dump-config", "-s", "pileup.mu=0", "-s", "detector.ecal.noise_barrel=0.04"]) == 0
    out = capsys.readouterr().out
    assert "mu: 0" in out and "noise_barrel: 0.04" in out and "threshold_barrel: 0.08" in out


@pytest.mark.parametrize("config", sorted(Path("process_configs").glob("generate_*.yaml")), ids=lambda p: p.stem)
def test_shipped_generate_configs_load(config: Path) -> None:
    import yaml

    cfg = load_config(yaml.safe_load(config.read_text()), where=str(config))
    assert sum(s.events for s in cfg.plan()) > 0


@pytest.mark.parametrize(
    ("process", "jets", "label"),
    [
        ("zprime_ttbar", {"radius": 0.8, "pt_min": 200}, 4),
        ("zprime_tautau", {}, 1),
        ("zqq", {}, 0),
        ("wjets", {}, 0),
        ("ttbar", {}, 0),
        ("zee", {}, 2),
        ("gammajet", {}, 3),
    ],
)
def test_every_process_generates_labelled_jets(tmp_path: Path, process: str, jets: dict, label: int) -> None:
    out = _generate(
        tmp_path, f"{process}.root", samples=[{"process": process, "events": 4}], jets=jets, pileup={"mu": 0}
    )
    a = _arrays(out)
    assert schema.validate_file(out, truth=True) == 4
    assert np.any(ak.flatten(a.Jet_label) == label)


def test_a_failed_run_leaves_no_output_and_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    from simulation import generate as g

    calls = {"n": 0}
    real = g.ChunkGenerator._chunk

    def failing(self, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return real(self, *args)

    monkeypatch.setattr(g.ChunkGenerator, "_chunk", failing)
    with pytest.raises(RuntimeError):
        _generate(tmp_path, "crash.root", pileup={"mu": 0})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("library", [{"refresh": 1.0}, {"reuse": 1}], ids=["refresh", "reuse"])
def test_mixed_pileup_and_refreshed_library_are_reproducible(tmp_path: Path, library: dict) -> None:
    """Each event's mean uniform in [mu, mu_max]; the library refreshed after each chunk, or consumed without
    replacement (reuse 1); same seed, same file."""
    pileup = {"mu": 0, "mu_max": 60, "library_size": 10, **library}
    stats = {}
    outs = []
    for name in ("m1.root", "m2.root"):
        data = {**SMALL, "pileup": pileup, "output": str(tmp_path / name)}
        out, stats[name], _ = generate(load_config(data), progress_bar=False)
        outs.append(_arrays(out))
    for field in outs[0].fields:
        assert ak.all(outs[0][field] == outs[1][field]), field
    per_event = stats["m1.root"].pileup_interactions / 10
    assert 10 < per_event < 50  # mean 30 over 10 events, not 0 and not 60
    if library.get("reuse"):  # a distinct minimum-bias event for every interaction (the rest of a library unused)
        assert stats["m1.root"].minbias_events >= stats["m1.root"].pileup_interactions


def test_reused_library_overlays_each_event_exactly_k_times() -> None:
    """reuse = k: every library event is used k times in random order, then the library is replaced by new
    events; an overlay larger than the library gets a library large enough."""
    from simulation.processes import PROCESSES
    from simulation.pythia import MinBiasLibrary, PythiaGenerator

    lib = MinBiasLibrary(PythiaGenerator(PROCESSES["minbias"], 3, 13000.0, None, ()), 5, reuse=2, seed=4)
    first = [e["px"].copy() for e in lib.events]
    used = np.concatenate([lib._take(3), lib._take(3), lib._take(4)])
    assert sorted(used.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4] and used.tolist() != sorted(used.tolist())
    assert lib.generated == 5 and lib.refreshed == 0
    lib._take(1)  # the first library is used up: five new events
    assert lib.generated == 10 and lib.refreshed == 5
    assert not any(np.array_equal(a, e["px"]) for a, e in zip(first, lib.events, strict=True))
    assert len(lib._take(12)) == 12 and lib.size == 6  # 12 interactions at reuse 2 need 6 events
    rng = np.random.default_rng(0)
    pu, n = lib.overlay(rng, 4.0, 4.0)
    assert n > 0 and len(pu["px"]) > 0


def test_library_refresh_replaces_events() -> None:
    from simulation.processes import PROCESSES
    from simulation.pythia import MinBiasLibrary, PythiaGenerator

    lib = MinBiasLibrary(PythiaGenerator(PROCESSES["minbias"], 3, 13000.0, None, ()), 6)
    before = [e["px"].copy() for e in lib.events]
    lib.refresh(np.random.default_rng(1), 3)
    changed = sum(not np.array_equal(a, e["px"]) for a, e in zip(before, lib.events, strict=True))
    assert changed == 3 and lib.refreshed == 3
    assert lib.offsets[-1] == len(lib.particles["px"]) == sum(len(e["px"]) for e in lib.events)


def test_an_element_of_an_optional_list_is_not_offered_null() -> None:
    """pt_hat is a list or null: its element's message says what the element takes, not '(or null)'."""
    with pytest.raises(ConfigError) as err:
        load_config({"samples": [{"process": "qcd", "events": 5, "pt_hat": [1, None]}]})
    assert str(err.value).endswith("pt_hat[1]: got null, expected a number")


def test_a_pt_hat_that_no_sample_takes_is_refused() -> None:
    """A top-level pt_hat applies to the samples of pT-hat processes without their own: given otherwise it did
    nothing, silently; its default, as --dump-config writes it, is accepted."""
    with pytest.raises(ConfigError, match=r"generate.pt_hat: given, but no sample takes it"):
        load_config({"process": "ztautau", "events": 3, "pt_hat": [30, 80]})
    with pytest.raises(ConfigError, match=r"no sample takes it"):
        load_config({**SMALL, "pt_hat": [30, 80]})  # (its qcd sample has its own)
    assert load_config({"process": "ztautau", "events": 3, "pt_hat": [15.0, 200.0]}).pt_hat == [15.0, 200.0]
    assert load_config({"process": "qcd", "events": 3, "pt_hat": [30, 80]}).pt_hat == [30.0, 80.0]


def test_the_run_number_is_the_seed_unless_given() -> None:
    assert load_config({**SMALL, "seed": 2**32 + 7}).run_number == 7
    assert load_config({**SMALL, "run": 1}).run_number == 1
    with pytest.raises(ConfigError, match="run"):
        load_config({**SMALL, "run": 2**32})


def test_the_jobs_run_are_at_most_the_events_of_the_largest_sample() -> None:
    from simulation.generate import jobs_run

    assert jobs_run(load_config({"process": "qcd", "events": 3, "jobs": 5})) == 3
    assert jobs_run(load_config({"samples": [{"process": "qcd", "events": 2}, {"process": "zqq", "events": 7}],
                                 "jobs": 4})) == 4  # fmt: skip
