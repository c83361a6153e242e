"""Real learners on simulated data with a known CATE (small sizes, fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest

from liftlab.uplift import evaluation as ev
from liftlab.uplift.analysis import analyse_experiment, honest_split
from liftlab.uplift.learners import LEARNERS, ClassTransformation, base_model, fit_learner

from .helpers import simulate


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
    assert model.fit_seconds > 0 and model.n_base_fits >= 1


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


def test_honest_split_is_stratified_and_seeded():
    rng = np.random.default_rng(0)
    variant = rng.choice(["a", "b", "c"], 3000)
    y = rng.integers(0, 2, 3000).astype(float)
    mask = honest_split(variant, y, 0.4, seed=5)
    assert (mask == honest_split(variant, y, 0.4, seed=5)).all()
    for v in "abc":
        for outcome in (0, 1):
            cell = (variant == v) & (y == outcome)
            assert mask[cell].mean() == pytest.approx(0.4, abs=0.01)


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
    # the held-out units are the same for every arm and learner
    held = scores.filter(scores["variant"] == "a")
    assert held.group_by("arm", "learner").len()["len"].n_unique() == 1
