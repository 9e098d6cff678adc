"""Tagger metrics against simple cases."""

from __future__ import annotations

import numpy as np

from training.metrics import background_efficiency_at, roc_curve, summary


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
