"""Real learners on simulated data with a known CATE (small sizes, fixed seeds)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from liftlab.uplift import evaluation as ev
from liftlab.uplift.analysis import analyse_experiment, crossfit_folds
from liftlab.uplift.learners import LEARNERS, ClassTransformation, SingleFeatureRule, base_model, fit_learner

from .helpers import simulate
from .test_evaluation import _brute_force


@pytest.fixture(scope="module")
def data():
    frame = simulate(6000, seed=11)
    X = frame.select("x0", "x1", "x2").to_numpy()
    t = (frame["variant"] == "b").to_numpy().astype(int)
    return X, t, frame["y"].to_numpy(), frame["true_cate__y"].to_numpy()


@pytest.mark.parametrize("name", LEARNERS)
def test_learner_recovers_the_effect(data, name):
    X, t, y, tau = data
    train = np.arange(len(y)) < 4000
    model = fit_learner(name, X[train], t[train], y[train], seed=0)
    pred = model.predict(X[~train])
    assert pred.shape == (len(y) - 4000,) and np.isfinite(pred).all()
    assert np.corrcoef(pred, tau[~train])[0, 1] > 0.6
    assert ev.qini_coefficient(pred, t[~train], y[~train]) > 0.5 * ev.qini_coefficient(tau[~train], t[~train], y[~train])
    assert model.fit_seconds > 0 and model.n_base_fits >= (0 if name == "single_feature_rule" else 1)


def test_class_transformation_rebalances_unequal_allocation():
    frame = simulate(8000, seed=12, p_treat=0.2)  # 20 % treated
    X = frame.select("x0", "x1", "x2").to_numpy()
    t = (frame["variant"] == "b").to_numpy().astype(int)
    y = frame["y"].to_numpy()
    model = ClassTransformation(lambda kind: base_model(kind, seed=0)).fit(X, t, y, p=float(t.mean()))
    pred = model.predict(X)
    # τ = ±0.25 by the sign of x0; unweighted, the transformation would be biased by ≈ −0.3
    assert pred[X[:, 0] > 0.5].mean() == pytest.approx(0.25, abs=0.08)
    assert pred[X[:, 0] < -0.5].mean() == pytest.approx(-0.25, abs=0.08)


def test_single_feature_rule_finds_the_feature_and_its_shape():
    """The feature and the form are chosen on the training units: a monotone effect along x0
    is ranked by x0 itself, a bump in x1 (non-monotone) by x1's deciles; a feature that carries
    no effect is not chosen."""
    rng = np.random.default_rng(21)
    n = 40_000
    X = rng.standard_normal((n, 4))
    t = rng.integers(0, 2, n)
    for tau, feature, form in ((0.05 + 0.04 * X[:, 0], 0, "linear"), (0.15 * (np.abs(X[:, 1]) < 0.5), 1, "bins")):
        y = (rng.random(n) < 0.3 + 0.1 * np.tanh(X[:, 2]) + t * tau).astype(float)
        rule = SingleFeatureRule(seed=0).fit(X, t, y, p=0.5)
        assert (rule.feature, rule.form) == (feature, form), rule.cv_qini
        assert np.corrcoef(rule.predict(X), tau)[0, 1] > 0.9
    # the linear form is on the uplift scale: its mean prediction is the average effect
    y = (rng.random(n) < 0.3 + t * (0.05 + 0.04 * X[:, 0])).astype(float)
    rule = SingleFeatureRule(seed=0).fit(X, t, y, p=0.5)
    ate = y[t == 1].mean() - y[t == 0].mean()
    assert rule.predict(X).mean() == pytest.approx(ate, abs=0.01)


def test_crossfit_folds_are_stratified_seeded_and_partition_the_units():
    rng = np.random.default_rng(0)
    variant = rng.choice(["a", "b", "c"], 3000)
    y = rng.integers(0, 2, 3000).astype(float)
    rare = (rng.random(3000) < 0.03).astype(float)
    folds = crossfit_folds(variant, [y, rare], 3, seed=5)
    assert (folds == crossfit_folds(variant, [y, rare], 3, seed=5)).all()
    assert not (folds == crossfit_folds(variant, [y, rare], 3, seed=6)).all()
    assert set(folds) == {0, 1, 2}  # every unit in exactly one fold
    for v in "abc":
        for outcome in (0, 1):
            cell = (variant == v) & (y == outcome)
            for k in range(3):
                assert (folds[cell] == k).mean() == pytest.approx(1 / 3, abs=0.01)
        events = (variant == v) & (rare == 1)  # the rare outcome's events are dealt evenly too
        counts = np.bincount(folds[events], minlength=3)
        assert counts.max() - counts.min() <= 3


def test_every_unit_is_scored_by_the_model_fitted_on_the_other_folds():
    """Out-of-fold scores, checked against an independent refit, and the stored Qini against
    the brute-force definition on the pooled out-of-fold scores."""
    frame = simulate(3000, seed=14)
    result = analyse_experiment(
        frame, experiment_id="sim", baseline="a", arms=["b"], outcomes=["y"], features=["x0", "x1", "x2"],
        learners=["t_learner", "s_learner"], n_folds=3, n_repeats=1, n_boot=20, seed=3, explain=False,
    )
    scores = result.frame("scores").filter(pl.col("learner") == "t_learner").sort("unit_id")
    assert scores.height == 3000 and scores["unit_id"].n_unique() == 3000  # all units, once each
    ordered = frame.sort("unit_id")
    X = ordered.select("x0", "x1", "x2").to_numpy()
    t = (ordered["variant"] == "b").to_numpy().astype(int)
    y = ordered["y"].to_numpy()
    fold = scores["fold"].to_numpy()
    np.testing.assert_array_equal(fold, crossfit_folds(ordered["variant"].to_numpy(), [y], 3, seed=3))
    for k in range(3):
        model = fit_learner("t_learner", X[fold != k], t[fold != k], y[fold != k], seed=3, p=float(t[fold != k].mean()))
        np.testing.assert_allclose(scores.filter(pl.col("fold") == k)["predicted_uplift"].to_numpy(),
                                   model.predict(X[fold == k]), rtol=1e-12)
    row = result.frame("models").filter(pl.col("learner") == "t_learner").row(0, named=True)
    pooled = scores["predicted_uplift"].to_numpy()
    # the definition written as a loop (checked against causalml's qini_score in test_evaluation)
    assert row["qini"] == pytest.approx(_brute_force(pooled, t, y)[0], rel=1e-12)
    assert row["n_test"] == 3000 and row["n_folds"] == 3 and row["n_train"] == 2000
    assert row["n_base_fits"] == 3 * 2  # two base models per fold
    # the oracle is scored on the same units and outcomes as the learners
    oracle = result.frame("models").filter(pl.col("learner") == "oracle").row(0, named=True)
    assert oracle["qini"] == pytest.approx(ev.qini_coefficient(ordered["true_cate__y"].to_numpy(), t, y))
    assert row["oracle_share"] == pytest.approx(row["qini"] / oracle["qini"])
    # the simultaneous band over the two learners contains each marginal interval's centre and is wider
    for r in result.frame("models").filter(pl.col("learner").is_in(["t_learner", "s_learner"])).to_dicts():
        assert r["qini_simul_ci_low"] < r["qini"] < r["qini_simul_ci_high"]
    assert oracle["qini_simul_ci_low"] is None


def test_repeated_crossfitting_averages_the_out_of_fold_scores_of_each_repetition():
    frame = simulate(2000, seed=15)
    kwargs = dict(experiment_id="sim", baseline="a", arms=["b"], outcomes=["y"], features=["x0", "x1", "x2"],
                  learners=["s_learner"], n_folds=2, n_boot=10, explain=False)
    both = analyse_experiment(frame, n_repeats=2, seed=7, **kwargs)
    first = analyse_experiment(frame, n_repeats=1, seed=7, **kwargs)
    second = analyse_experiment(frame, n_repeats=1, seed=8, **kwargs)  # repetition r uses seed + r

    def score(result):
        s = result.frame("scores").filter(pl.col("learner") == "s_learner").sort("unit_id")
        return s["predicted_uplift"].to_numpy(), s["fold"].to_numpy()

    (avg, fold), (a, fold_a), (b, fold_b) = score(both), score(first), score(second)
    np.testing.assert_allclose(avg, (a + b) / 2, rtol=1e-12)
    assert (fold == fold_a).all() and not (fold_a == fold_b).all()  # other folds in the second repetition
    row = both.frame("models").filter(pl.col("learner") == "s_learner").row(0, named=True)
    assert row["n_repeats"] == 2 and row["n_base_fits"] == 2 * 2 and row["n_test"] == 2000


def test_multi_arm_each_arm_vs_control_with_explanations():
    frame = simulate(9000, seed=13, arms=("b", "c"), p_treat=2 / 3).drop("true_cate__y")
    result = analyse_experiment(
        frame, experiment_id="sim", baseline="a", arms=["b", "c"], outcomes=["y"],
        features=["x0", "x1", "x2", "colour"], learners=["t_learner", "x_learner"], n_boot=30, seed=1,
    )
    models = result.frame("models")
    assert sorted(set(models["arm"])) == ["b", "c"] and models.height == 4
    assert (models["qini_ci_low"] > 0).all()  # both arms have a real heterogeneous effect
    scores = result.frame("scores")
    assert set(scores.filter(scores["arm"] == "c")["variant"]) == {"a", "c"}  # arm ∪ baseline only
    imp = result.frame("explanations")
    top = {arm: imp.filter(imp["arm"] == arm).sort("importance", descending=True)["feature"][0] for arm in ("b", "c")}
    assert top == {"b": "x0", "c": "x1"}  # arm b's effect depends on x0, arm c's on x1
    # every baseline unit is scored for every arm and learner, in the same fold for every arm
    base = scores.filter(scores["variant"] == "a")
    assert base.group_by("arm", "learner").len()["len"].to_list() == [int((frame["variant"] == "a").sum())] * 4
    assert base.group_by("unit_id").agg(pl.col("fold").n_unique())["fold"].max() == 1
