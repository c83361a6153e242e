"""The held-out, selection-honest interval (liftlab.uplift.honest): the learner is chosen on the
other folds only, the interval is the fold-wise fixed-ranking bootstrap combined by the
dependence-free bound, and on data with nothing to find it keeps its level where the fixed-model
interval of the best learner does not.

The full-size check (≥ 50 null Hillstrom-shaped data sets, seven learners) is on demand:
``python -m liftlab.studies.uplift_power --sims 50 --levels 0 --repeats 1 ...`` (README, docs/uplift.md).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from liftlab.uplift import evaluation as ev
from liftlab.uplift import honest
from liftlab.uplift.analysis import analyse_experiment, crossfit_folds
from liftlab.uplift.learners import fit_learner

from .helpers import simulate

LEARNERS = ["class_transformation", "single_feature_rule"]  # no causalml import: fast


def null_frame(n: int, seed: int) -> pl.DataFrame:
    """A randomized test with a constant effect (+5 points on a 30 % base) and a prognostic x2:
    no ranking can beat random, but learners can overfit the outcome's structure."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    t = rng.random(n) < 0.5
    y = (rng.random(n) < 0.3 + 0.1 * np.tanh(X[:, 2]) + 0.05 * t).astype(float)
    return pl.DataFrame({"unit_id": [f"u{i:05d}" for i in range(n)], "variant": np.where(t, "b", "a"),
                         "x0": X[:, 0], "x1": X[:, 1], "x2": X[:, 2], "y": y})


def _arrays(frame: pl.DataFrame):
    ordered = frame.sort("unit_id")
    X = ordered.select("x0", "x1", "x2").to_numpy()
    t = (ordered["variant"] == "b").to_numpy().astype(int)
    return ordered, X, t, ordered["y"].to_numpy()


def test_the_learner_is_chosen_on_the_other_folds_only(monkeypatch):
    """Selection sees exactly the units outside the evaluation fold, and changing the evaluation
    fold's outcomes changes its Qini but neither its choice nor the inner Qinis it was chosen by."""
    frame = simulate(2400, seed=21)
    _, X, t, y = _arrays(frame)
    fold = crossfit_folds(t.astype(str), [y], 2, seed=5)
    preds = {}
    for name in LEARNERS:
        preds[name] = np.zeros(len(t))
        for k in range(2):
            tr = fold != k
            preds[name][fold == k] = fit_learner(name, X[tr], t[tr], y[tr], seed=5).predict(X[fold == k])
    seen = []
    real_select = honest.select_learner

    def spy(Xs, ts, ys, learners, **kw):
        seen.append(Xs.copy())
        return real_select(Xs, ts, ys, learners, **kw)

    monkeypatch.setattr(honest, "select_learner", spy)
    out = honest.heldout_evaluation(X, t, y, fold, preds, LEARNERS, seed=5, n_boot=50)
    assert len(seen) == 2
    for k, Xs in enumerate(seen):
        np.testing.assert_array_equal(Xs, X[fold != k])  # the other fold's units, all of them, nothing else

    # flip the outcomes of fold 1: fold 1's choice (made on fold 0) cannot move, fold 0's may
    y2 = y.copy()
    y2[fold == 1] = 1 - y2[fold == 1]
    seen.clear()
    out2 = honest.heldout_evaluation(X, t, y2, fold, preds, LEARNERS, seed=5, n_boot=50)
    f1, f1b = out["folds"][1], out2["folds"][1]
    assert f1["learner"] == f1b["learner"] and f1["inner_qini"] == f1b["inner_qini"]
    assert f1["qini"] != pytest.approx(f1b["qini"])
    # and each fold's figure is the plain Qini of the chosen model's scores on that fold alone
    for part in out["folds"]:
        k = part["fold"]
        assert part["qini"] == pytest.approx(ev.qini_coefficient(preds[part["learner"]][fold == k],
                                                                 t[fold == k], y[fold == k]), rel=1e-12)


def test_pipeline_interval_is_the_fold_combination_and_wider_than_the_fixed_model_one():
    frame = null_frame(3000, seed=2)
    result = analyse_experiment(frame, experiment_id="null", baseline="a", arms=["b"], outcomes=["y"],
                                features=["x0", "x1", "x2"], learners=LEARNERS, n_folds=2, n_repeats=2,
                                n_boot=100, seed=4, explain=False, economics={"y": (1.0, 0.02)})
    models = result.frame("models")
    best = models.filter(pl.col("is_best")).row(0, named=True)
    others = models.filter(~pl.col("is_best"))
    assert others["qini_heldout"].null_count() == others.height  # only the best learner's row carries it
    h = result.frame("heldout").row(0, named=True)
    assert h["best_learner"] == best["learner"] and best["qini_heldout"] == h["qini"]
    assert set(h["fold_learner"]) <= set(LEARNERS) and sorted(h["fold_n_eval"]) and sum(h["fold_n_eval"]) == 3000
    # θ̄ = mean of the fold Qinis, s̄ = mean of their bootstrap sds, interval θ̄ ± 1.96·s̄
    assert h["qini"] == pytest.approx(np.mean(h["fold_qini"]), rel=1e-12)
    assert h["qini_se"] == pytest.approx(np.mean(h["fold_qini_se"]), rel=1e-12)
    assert h["qini_ci_low"] == pytest.approx(h["qini"] - 1.959964 * h["qini_se"], rel=1e-6)
    # the fixed-model bootstrap of the pooled best learner is narrower: it ignores the refits
    assert (best["qini_heldout_ci_high"] - best["qini_heldout_ci_low"]) > 1.2 * (best["qini_ci_high"] - best["qini_ci_low"])
    # the break-even policy's figures add up over the folds and bracket their estimate
    assert h["vs_all_ci_low"] < h["vs_all"] < h["vs_all_ci_high"] and 0 <= h["n_targeted"] <= 3000


def test_small_null_study_keeps_the_level_where_the_fixed_model_interval_does_not():
    """16 null data sets of 2,000 units, two learners: the best learner's fixed-model marginal CI
    is above 0 in several (selection + refitting variance ignored); the held-out interval in at
    most one, and its standard error covers the spread of its estimate across data sets."""
    fixed, held, est, ses = 0, 0, [], []
    for i in range(16):
        result = analyse_experiment(null_frame(2000, seed=100 + i), experiment_id="null", baseline="a", arms=["b"],
                                    outcomes=["y"], features=["x0", "x1", "x2"], learners=LEARNERS, n_folds=2,
                                    n_repeats=1, n_boot=100, seed=i, explain=False)
        best = result.frame("models").filter(pl.col("is_best")).row(0, named=True)
        fixed += best["qini_ci_low"] > 0
        held += best["qini_heldout_ci_low"] > 0 or best["qini_heldout_ci_high"] < 0
        est.append(best["qini_heldout"])
        ses.append(best["qini_heldout_se"])
    assert held <= 1 < fixed and held < fixed
    assert np.std(est, ddof=1) < 1.25 * np.mean(ses)


def test_break_even_draws_match_the_policy_table():
    """The per-fold policy figures are compare_with_blanket's break_even row, draw for draw."""
    from liftlab.uplift.policy import break_even_vs_all, compare_with_blanket

    rng = np.random.default_rng(8)
    n = 1500
    score = rng.normal(0.05, 0.05, n)
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.2 + t * np.clip(score, 0, None)).astype(float)
    m, diff, draws = break_even_vs_all(score, t, y, value=2.0, cost=0.1, n_boot=80, seed=3)
    row = compare_with_blanket(score, t, y, value=2.0, cost=0.1, n_boot=80, seed=3).filter(
        pl.col("policy") == "break_even").row(0, named=True)
    assert m == row["n_targeted"] == int((score > 0.05).sum())
    assert diff == pytest.approx(row["profit_vs_all"], rel=1e-12)
    assert (np.quantile(draws, 0.025), np.quantile(draws, 0.975)) == pytest.approx(
        (row["vs_all_ci_low"], row["vs_all_ci_high"]), rel=1e-12)


def test_combine_bound_holds_for_perfectly_correlated_folds():
    """sd(mean) ≤ mean of the sds, with equality at correlation 1: two copies of one estimate
    get exactly that estimate's interval."""
    out = honest.combine([0.01, 0.01], [0.002, 0.002], mean=True)
    assert out["se"] == pytest.approx(0.002) and out["ci_low"] == pytest.approx(0.01 - 1.959964 * 0.002, rel=1e-6)
    total = honest.combine([3.0, 5.0], [1.0, 2.0], mean=False)
    assert total["estimate"] == 8.0 and total["se"] == 3.0
