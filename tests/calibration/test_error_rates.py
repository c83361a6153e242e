"""Error rates of decide() itself, through the engine, CUPED and the Holm/Bonferroni adjustment,
under 28 daily looks (liftlab.studies.error_rates), at CI size.

Full size on demand (figures in the README):
``python -m liftlab.studies.error_rates --sims 20000 --arms 2`` (and ``--arms 3``; ``--effect 0.05``
for power; ``--coverage --sims 20000`` for the intervals). The bands here are α + 2·MC se at the
CI size, so each test fails for a rule that spends α twice (the peeking reference shows the
study sees that error at this size).
"""

from __future__ import annotations

import math
import os

import pytest

from liftlab.studies.error_rates import coverage, run

SIMS = int(os.environ.get("LIFTLAB_ERROR_RATE_SIMS", "800"))


def _bound(alpha: float, n: int) -> float:
    return alpha + 2 * math.sqrt(alpha * (1 - alpha) / n)


@pytest.mark.slow
@pytest.mark.parametrize("arms", [2, 3])
def test_false_decisions_stay_within_alpha_under_daily_looks(arms):
    results = {r.policy: r for r in run(SIMS, arms=arms, seed=100 + arms)}
    seq, fixed, peek = results["sequential"], results["fixed_horizon"], results["peeking"]
    assert seq.rate <= _bound(0.05, SIMS), seq
    assert fixed.rate <= _bound(0.05, SIMS), fixed
    assert fixed.early_decisions == 0  # nothing is decided before the end date
    assert math.isnan(fixed.mean_decision_look) or fixed.mean_decision_look == 28.0
    # The study can see the error it guards against: the fixed-horizon test at every look.
    assert peek.rate > 3 * 0.05, peek


@pytest.mark.slow
def test_power_at_a_true_five_percent_lift_is_reported_for_both_policies():
    results = {r.policy: r for r in run(300, arms=2, effect=0.05, policies=("sequential", "fixed_horizon"), seed=7)}
    seq, fixed = results["sequential"], results["fixed_horizon"]
    # 5,600 units per arm, CUPED removes about half the variance: the fixed horizon has high power,
    # the sequence trades a little of it for stopping early.
    assert fixed.rate > 0.85 and seq.rate > 0.6, results
    assert seq.mean_decision_look < fixed.mean_decision_look == 28.0
    assert seq.rollback == 0 and fixed.rollback == 0


@pytest.mark.slow
def test_engine_and_cuped_intervals_cover_the_truth():
    n = 2_000
    table = {r["method"]: r for r in coverage(n).iter_rows(named=True)}
    half = 2.6 * math.sqrt(0.05 * 0.95 / n)
    for method in ("welch_t", "cuped"):
        row = table[method]
        assert abs(row["ci"] - 0.95) <= half and abs(row["rel_ci"] - 0.95) <= half, row
        assert row["cs_all_looks"] >= 0.95 - half, row  # the sequence's promise: all looks at once
        assert abs(row["bias"]) < 3 * math.sqrt(row["mc_variance"] / n), row
    # CUPED's Monte-Carlo variance is 1 − ρ² ≈ 0.505 of Welch's (Deng et al. 2013).
    assert table["cuped"]["mc_variance"] / table["welch_t"]["mc_variance"] == pytest.approx(0.505, abs=0.06)
