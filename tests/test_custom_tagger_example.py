"""examples/custom_tagger: a new tagger class + one YAML block, through e2e-run and e2e-eval."""

from __future__ import annotations

import numpy as np
import uproot
from conftest import REPO, run_cli

EXAMPLE = REPO / "examples" / "custom_tagger"


def test_isolation_tagger_runs_and_evaluates(tmp_path, capsys, monkeypatch):
    from e2e.cli.eval import main as eval_main

    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.chdir(REPO)
    out = tmp_path / "iso.root"
    rc, stdout, err = run_cli([str(EXAMPLE / "tau_isolation.yaml"), "-o", str(out), "--no-progress"], capsys)
    assert rc == 0, err
    with uproot.open(out) as f:
        tau = np.concatenate(f["Events"]["Jet_tauIso_tau"].array(library="np"))
    assert np.all((tau >= 0) & (tau <= 1)) and tau.max() > 0
    assert eval_main([str(out), "--plot", str(tmp_path / "roc.png")]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("tauIso") and "20-100" in line)
    assert float(row.split()[2].split("+-")[0]) > 0.7  # isolation separates taus from QCD jets on the sample
