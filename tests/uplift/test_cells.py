"""One arm × outcome of an experiment computed on its own (``fold_outcomes``) equals that cell
of the full computation, and the cells combined in order equal the full result: the uplift
assets fit every cell in its own Dagster step (``liftlab.defs.uplift``), and the tables must not
depend on how the fits were split."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from liftlab.uplift.analysis import UpliftResult, analyse_experiment

from .helpers import simulate

FRAMES = ("models", "scores", "curves", "deciles", "explanations", "heldout")
ARMS, OUTCOMES = ["b", "c"], ["y", "z"]
CELLS = [(arm, outcome) for arm in ARMS for outcome in OUTCOMES]  # the full call's order


@pytest.fixture(scope="module")
def experiment():
    """Two arms against baseline ``a`` and two binary outcomes (``y`` and a rarer ``z``), so the
    folds are stratified on variant × y × z; the oracle columns make the references run too, and
    the economics of ``y`` only give the cells different held-out columns."""
    frame = simulate(2400, seed=31, arms=("b", "c"), p_treat=2 / 3)
    rng = np.random.default_rng(32)
    z = (rng.random(frame.height) < 0.15 + 0.1 * (frame["x1"].to_numpy() > 0)).astype(float)
    frame = frame.with_columns(pl.Series("z", z), pl.col("true_cate__y").alias("true_cate__z"))
    kwargs = dict(experiment_id="sim", baseline="a", features=["x0", "x1", "x2", "colour"],
                  learners=["t_learner", "class_transformation", "single_feature_rule"], n_folds=2, n_repeats=2,
                  seed=5, n_boot=20, economics={"y": (1.0, 0.1)})
    full = analyse_experiment(frame, arms=ARMS, outcomes=OUTCOMES, **kwargs)
    cells = {(arm, outcome): analyse_experiment(frame, arms=[arm], outcomes=[outcome], fold_outcomes=OUTCOMES, **kwargs)
             for arm, outcome in CELLS}
    return frame, kwargs, full, cells


def _comparable(result: UpliftResult, name: str) -> pl.DataFrame:
    frame = result.frame(name)
    # wall-clock time of the fits: the only column that is not a function of the data and the seeds
    return frame.drop("fit_seconds") if name == "models" else frame


@pytest.mark.parametrize(("arm", "outcome"), CELLS)
def test_a_cell_on_its_own_gives_exactly_the_rows_of_the_full_call(experiment, arm, outcome):
    _, _, full, cells = experiment
    for name in FRAMES:
        expected = _comparable(full, name).filter((pl.col("arm") == arm) & (pl.col("metric") == outcome))
        got = _comparable(cells[arm, outcome], name)
        assert expected.height > 0, name
        # the full call's frame of row dicts has the union of the cells' keys: the keys only another
        # cell has (the economics of outcome y) are null in this cell's rows
        extra = [c for c in expected.columns if c not in got.columns]
        assert all(expected[c].is_null().all() for c in extra), (name, extra)
        assert_frame_equal(got, expected.select(got.columns), check_exact=True)


def test_the_cells_combined_in_order_are_the_full_result(experiment):
    """What the asset writes: every cell's result combined in the full call's order."""
    _, _, full, cells = experiment
    combined = UpliftResult.combine([cells[cell] for cell in CELLS])
    for name in FRAMES:
        assert_frame_equal(_comparable(combined, name), _comparable(full, name), check_exact=True)


def test_without_fold_outcomes_a_cell_deals_other_folds(experiment):
    """The folds are stratified on every outcome of the call: a cell that stratified on its own
    outcome alone would be dealt other folds, hence other scores — why ``fold_outcomes`` exists."""
    frame, kwargs, _, cells = experiment
    alone = analyse_experiment(frame, arms=["b"], outcomes=["y"], **{**kwargs, "heldout": False, "explain": False})

    def folds(result):
        return result.frame("scores").filter(pl.col("learner") == "t_learner")["fold"]

    assert not folds(alone).equals(folds(cells["b", "y"]))
