"""examples/custom_module: a module in its own package, used through e2e-run by import path and by entry point."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import awkward as ak
import numpy as np
import pytest
import uproot
from conftest import REPO, SAMPLE, read_events, run_cli

EXAMPLE = REPO / "examples" / "custom_module"
N = 12


def reference_charge(ev: ak.Array, kappa: float = 0.5, cone: float = 0.4, dz_max: float = 0.1) -> list[float]:
    """Slow, obviously-correct jet charge: loop over events, jets and tracks."""
    out = []
    for e in ev:
        for j in range(len(e.Jet_pt)):
            q = 0.0
            for t in range(len(e.Track_pt)):
                dphi = (e.Track_phi[t] - e.Jet_phi[j] + math.pi) % (2 * math.pi) - math.pi
                if (e.Track_eta[t] - e.Jet_eta[j]) ** 2 + dphi**2 < cone**2 and abs(e.Track_dz[t]) < dz_max:
                    q += e.Track_charge[t] * float(e.Track_pt[t]) ** kappa
            out.append(q / float(e.Jet_pt[j]) ** kappa)
    return out


def check_output(path) -> None:
    ev = read_events(SAMPLE, N)
    with uproot.open(path) as f:
        o = f["Events"].arrays()
    assert np.array_equal(ak.to_numpy(ak.num(o.Jet_jetCharge_charge)), ak.to_numpy(ev.nJet))
    np.testing.assert_allclose(
        ak.to_numpy(ak.flatten(o.Jet_jetCharge_charge)), reference_charge(ev), rtol=1e-5, atol=1e-6
    )


def test_by_import_path(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.chdir(REPO)
    rc, out, err = run_cli(
        [str(EXAMPLE / "jet_charge_import_path.yaml"), "-n", str(N), "-o", str(tmp_path / "q.root"), "--no-progress"],
        capsys,
    )
    assert rc == 0, err
    assert "jetCharge" in out
    check_output(tmp_path / "q.root")


def test_by_entry_point(tmp_path):
    site = tmp_path / "site"
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(EXAMPLE),
        ],
        capture_output=True,
        text=True,
    )
    if pip.returncode != 0:
        pytest.fail(f"installing the example package failed: {pip.stderr[-2000:]}")
    env = {**os.environ, "PYTHONPATH": str(site)}
    cmd = [
        sys.executable,
        "-m",
        "e2e.cli.run",
        str(EXAMPLE / "jet_charge.yaml"),
        "-n",
        str(N),
        "-o",
        str(tmp_path / "q.root"),
        "--no-progress",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    assert run.returncode == 0, run.stderr
    check_output(tmp_path / "q.root")
    listed = subprocess.run(
        [sys.executable, "-m", "e2e.cli.run", "--list-modules"], capture_output=True, text=True, env=env
    )
    assert "JetChargeProducer" in listed.stdout.split()
