"""Physics validation of the generator (simulation.validation) and the e2e-validate command."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulation.validation import (
    Check,
    auc,
    ecal_closure_checks,
    format_checks,
    pileup_checks,
    pileup_dz_reference,
    tau_checks,
)

pytestmark = pytest.mark.gen


def _assert_all_pass(checks: list[Check]) -> None:
    failed = [c for c in checks if not c.passed]
    assert not failed, "\n".join(format_checks(checks))


def test_tau_decay_modes_and_d0() -> None:
    checks = tau_checks(300, seed=1)
    names = [c.name for c in checks]
    assert any("mode 1 " in n for n in names) and any("d0" in n for n in names)
    _assert_all_pass(checks)


def test_ecal_closure() -> None:
    checks = ecal_closure_checks(1000, seed=2)
    assert len(checks) == 6
    _assert_all_pass(checks)


def test_pileup_dz_fraction() -> None:
    checks = pileup_checks(15, mu=40, seed=3, library_size=50)
    dz = next(c for c in checks if "dz" in c.name)
    assert dz.reference == pytest.approx(1.0 - math.erf(0.1 / 8.0))
    assert dz.reference == pytest.approx(pileup_dz_reference(4.0))
    _assert_all_pass(checks)


def test_auc_known_cases() -> None:
    rng = np.random.default_rng(0)
    a, err = auc(rng.normal(size=4000), rng.normal(size=4000))
    assert abs(a - 0.5) < 0.03 and 0 < err < 0.01
    # perfectly separated: DeLong's variance vanishes, the quoted error is the floor 1 / (2 (n_min + 1))
    assert auc(np.arange(10.0) + 100, np.arange(10.0)) == (1.0, pytest.approx(1 / 22))
    assert auc(np.arange(10.0), np.arange(10.0) + 100)[0] == 0.0
    # pairs (s, b): (1, 0) > ; (1, 2) < ; (3, 0) > ; (3, 2) > ; ties count 1/2: (2, 2) with s = 2
    assert auc([1.0, 3.0], [0.0, 2.0])[0] == pytest.approx(3 / 4)
    assert auc([2.0], [2.0, 1.0])[0] == pytest.approx((0.5 + 1.0) / 2)
    # DeLong at A = 0.75, n1 = n0 = 2: components V10 = (1/2, 1), V01 = (1, 1/2), each of variance 1/8
    assert auc([1.0, 3.0], [0.0, 2.0])[1] == pytest.approx(math.sqrt(1 / 8 / 2 + 1 / 8 / 2))
    assert all(math.isnan(x) for x in auc([], [1.0]))


def test_check_passed_and_table() -> None:
    ok = Check("x", 1.015, 0.01, 1.0, 0.0)  # within 2 sigma
    bad = Check("y", 1.10, 0.01, 1.0, 0.05)
    assert ok.passed and not bad.passed and not Check("z", math.nan, 0.0, 1.0, 1.0).passed
    lines = format_checks([ok, bad])
    assert "PASS" in lines[2] and "FAIL" in lines[3]
    assert len({len(line.split("  (")[0]) for line in lines[2:]}) == 1


def test_cli_on_file(tmp_path, capsys) -> None:
    from e2e.cli.validate import main
    from simulation.generate import generate, load_config

    out = tmp_path / "x.root"
    generate(
        load_config({"process": "ztautau", "events": 5, "seed": 7, "pileup": {"mu": 0}, "output": str(out)}),
        progress_bar=False,
    )
    assert main([str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"OK {out}: 5 events (schema DESIGN §4.1)"

    bad = tmp_path / "bad.root"
    bad.write_text("not a ROOT file\n")
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("e2e-validate: error:") and "bad.root" in err[0]

    assert main([]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
