"""Tagger metrics against simple cases."""

from __future__ import annotations

import numpy as np
import pytest

from taggers.metrics import background_efficiency_at, roc_curve, summary


def test_roc_and_efficiencies_on_known_scores():
    rng = np.random.default_rng(0)
    s = rng.normal(1.0, 1.0, 20000)
    b = rng.normal(0.0, 1.0, 20000)
    es, eb = roc_curve(s, b)
    assert es[0] == eb[0] == 0 and es[-1] == eb[-1] == 1 and np.all(np.diff(es) >= 0) and np.all(np.diff(eb) >= 0)
    # two unit Gaussians 1 sigma apart: AUC = Phi(1/sqrt(2)) = 0.7602
    m = summary(s, b)
    assert abs(m["auc"] - 0.7602) < 3 * m["auc_error"] + 1e-3
    # at 60 % signal efficiency the cut is at 1 - 0.2533; background above it: 1 - Phi(0.7467) = 0.2276
    e, de = background_efficiency_at(s, b, 0.6)
    assert abs(e - 0.2276) < 4 * de + 2e-3
    assert abs(m["rejection_at_0.6"] - 1 / e) < 1e-9


def test_auc_error_is_delong_and_never_vanishes():
    from taggers.metrics import auc, auc_error_floor

    rng = np.random.default_rng(3)
    s, b = rng.normal(0.8, 1.0, 40), rng.normal(0.0, 1.0, 30)
    s[:5] = b[:5]  # ties count 1/2
    # DeLong from its definition: psi(s_i, b_j) = 1, 1/2, 0; V10 / V01 are its row / column means
    psi = (s[:, None] > b[None, :]) + 0.5 * (s[:, None] == b[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    a, err = auc(s, b)
    assert a == pytest.approx(psi.mean())
    assert err == pytest.approx(np.sqrt(v10.var(ddof=1) / len(s) + v01.var(ddof=1) / len(b)))
    # perfectly separated samples: a finite error, the floor, shrinking with the smaller class
    a, err = auc(np.arange(65.0) + 1000, np.arange(143.0))
    assert a == 1.0 and err == pytest.approx(auc_error_floor(65, 143)) and err > 0
    assert summary(np.arange(65.0) + 1000, np.arange(143.0))["auc_error"] > 0
