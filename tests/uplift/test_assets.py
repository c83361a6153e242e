"""The uplift assets against real Postgres, on a copy of the session's built world (the demo
seed, 20k users; Hillstrom as a declared file): the `uplift` group materialized twice (a rerun
replaces), cross-fitted over the specs' default two folds."""

from __future__ import annotations

import dagster as dg
import pytest

from liftlab import db
from liftlab.defs.jobs import uplift_models_job
from liftlab.defs.resources import PostgresResource
from liftlab.defs.uplift import targeting_policy, uplift_learners, uplift_segments
from liftlab.uplift.learners import LEARNERS

from .helpers import write_specs

FAST = ["class_transformation", "single_feature_rule"]  # no causalml: fast


@pytest.fixture()
def conn(built_copy):
    with db.connect(built_copy) as connection:
        yield connection


@pytest.fixture(scope="module")
def loaded(built_copy, tmp_path_factory):
    folder = write_specs(tmp_path_factory.mktemp("experiments"), {
        # a fast Hillstrom configuration for CI: one arm, one outcome, two learners
        "hillstrom": {"arms": ["Mens E-Mail"], "outcomes": ["visit"], "value_per_conversion": {"visit": 0.5},
                      "learners": ["t_learner", "class_transformation"], "n_bootstrap": 50},
        "winback_email": {"n_bootstrap": 50},
    })
    mp = pytest.MonkeyPatch()
    mp.setenv("LIFTLAB_EXPERIMENTS_DIR", str(folder))
    yield {"postgres": PostgresResource(database_url=built_copy.url())}
    mp.undo()


def _materialize(resources):
    result = dg.materialize([uplift_learners, targeting_policy, uplift_segments], resources=resources)
    assert result.success
    return result


def test_uplift_group_materializes_and_reruns_replace(loaded, conn):
    result = _materialize(loaded)
    models = db.read_frame(conn, "select * from results.uplift_models order by experiment_id, arm, metric, learner")
    winback = models.filter(models["experiment_id"] == "winback_email")
    assert set(winback["learner"]) == {*LEARNERS, "oracle", "covariate_ceiling"}
    # cross-fitted: every unit of the experiment is scored out of fold and evaluated
    n_units = conn.execute("select count(*) from units.winback_email where n_variants = 1").fetchone()[0]
    assert n_units > 1000 and (winback["n_test"] == n_units).all() and (winback["n_folds"] == 2).all()
    assert (winback["n_repeats"] == 3).all()  # the specs repeat the 2-fold deal three times
    assert (abs(winback["n_train"] - n_units / 2) <= 1).all()  # each fold model saw the other half
    # every CI brackets its point estimate; the simultaneous band (learners only) contains the marginal one
    for r in models.to_dicts():
        assert r["qini_ci_low"] <= r["qini"] <= r["qini_ci_high"], r
        assert r["auuc_ci_low"] <= r["auuc"] <= r["auuc_ci_high"], r
        if r["learner"] in LEARNERS:
            assert r["qini_simul_ci_low"] < r["qini"] < r["qini_simul_ci_high"], r
        else:
            assert r["qini_simul_ci_low"] is None, r
    oracle = winback.filter(winback["learner"] == "oracle").row(0, named=True)
    assert oracle["oracle_share"] == pytest.approx(1.0) and oracle["qini"] > 0
    learned = winback.filter(winback["learner"].is_in(LEARNERS))
    assert (learned["oracle_share"] > 0).all()  # every learner ranks better than random
    assert learned["is_best"].sum() == 1
    hill = models.filter(models["experiment_id"] == "hillstrom")
    assert set(hill["arm"]) == {"Mens E-Mail"} and set(hill["learner"]) == {"t_learner", "class_transformation"}
    assert hill["oracle_share"].is_null().all()

    n_scores = conn.execute(
        "select count(*), count(distinct unit_id) from results.uplift_scores where experiment_id = 'winback_email'"
    ).fetchone()
    n_test = int(winback["n_test"][0])
    assert n_scores == (n_test * (len(LEARNERS) + 2), n_test)  # every unit once per learner and per reference
    folds = conn.execute("select fold, count(*) from results.uplift_scores where experiment_id = 'winback_email' "
                         "and learner = 't_learner' group by fold order by fold").fetchall()
    assert [f for f, _ in folds] == [0, 1] and abs(folds[0][1] - folds[1][1]) <= 2

    policy = db.read_frame(conn, "select * from results.targeting_policy where experiment_id = 'winback_email'")
    top_k = policy.filter((policy["policy"] == "top_k") & (policy["learner"] == "t_learner"))
    assert top_k.height == 101 and top_k["k_pct"].min() == 0 and top_k["k_pct"].max() == 100
    assert top_k.filter(top_k["k_pct"] == 0)["profit"][0] == 0
    summary = policy.filter((policy["policy"] != "top_k") & (policy["learner"] == "t_learner"))
    assert set(summary["policy"]) == {"treat_none", "treat_all", "break_even", "best_k"}
    all_ = summary.filter(summary["policy"] == "treat_all").row(0, named=True)
    assert all_["profit"] == pytest.approx(top_k.filter(top_k["k_pct"] == 100)["profit"][0])
    assert all_["cost_per_contact"] == 0.5 and all_["value_per_conversion"] == 20.0

    segments = db.read_frame(conn, "select * from results.uplift_segments where experiment_id = 'winback_email'")
    t_seg = segments.filter(segments["learner"] == "t_learner")
    assert t_seg["n"].sum() == n_test and set(t_seg["segment"]) == {"persuadable", "sure_thing", "lost_cause", "sleeping_dog"}
    assert t_seg["true_precision"].is_not_null().any()
    explanations = db.read_frame(conn, "select * from results.uplift_explanations where experiment_id = 'winback_email'")
    assert explanations.height == 13 and explanations["importance"].max() > 0

    metadata = result.asset_materializations_for_node("uplift_learners")[0].metadata
    plot = next(v for k, v in metadata.items() if k.startswith("qini_plot/winback_email")).value
    import re
    from pathlib import Path

    assert "](data:image/png;base64," in plot  # shown inline in the UI, its file's path as text below
    assert Path(re.search(r"`([^`]+\.png)`", plot).group(1)).stat().st_size > 1000

    before = {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in (
        "results.uplift_models", "results.uplift_scores", "results.targeting_policy", "results.uplift_segments")}
    conn.commit()
    _materialize(loaded)
    after = {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in before}
    assert after == before
    again = db.read_frame(conn, "select experiment_id, arm, metric, learner, qini from results.uplift_models "
                                "order by experiment_id, arm, metric, learner")
    assert again["qini"].to_list() == models["qini"].to_list()  # seeded: identical on a rerun


def test_one_step_per_cell_writes_what_one_call_over_the_experiment_computes(built):
    """The build fitted Hillstrom's two arms × two outcomes in four steps (narrowed by the
    environment, as the tests' pipeline runs it), and the four tables hold what one
    ``analyse_experiment`` call over the whole experiment computes — the asset before the fits were
    split — except the run id and the fit times."""
    from polars.testing import assert_frame_equal

    from liftlab.defs import uplift as assets
    from liftlab.uplift.analysis import analyse_experiment
    from liftlab.uplift_io import load_units, uplift_features
    from tests.pipeline_helpers import FAST_UPLIFT_ENV

    spec = assets.uplift_specs(["hillstrom"])[0]
    arms, outcomes = [v.name for v in spec.variants if v.name != spec.baseline], spec.uplift.outcomes
    assert len(arms) == 2 and len(outcomes) == 2
    with dg.DagsterInstance.from_config(str(built.home)) as instance:
        steps = {r.step_key for r in instance.all_logs(built.result.run_ids["uplift_models"],
                                                      of_type=dg.DagsterEventType.STEP_SUCCESS)}
    fits = {k for k in steps if ".fit_uplift_cell[hillstrom__" in k}
    assert fits == {f"uplift_learners.fit_uplift_cell[hillstrom__{a.replace(' ', '_').replace('-', '_')}__{o}]"
                    for a in arms for o in outcomes}
    assert {"uplift_learners.plan_uplift_cells", "uplift_learners.write_uplift_tables"} <= steps

    up = spec.uplift
    with db.connect(built.info) as conn:
        whole = analyse_experiment(
            load_units(conn, spec), experiment_id=spec.id, baseline=spec.baseline, arms=arms, outcomes=outcomes,
            features=list(uplift_features(spec)), learners=FAST_UPLIFT_ENV["LIFTLAB_UPLIFT_LEARNERS"].split(","),
            backend=up.base_model, n_folds=up.folds, n_repeats=int(FAST_UPLIFT_ENV["LIFTLAB_UPLIFT_REPEATS"]),
            seed=up.seed, n_boot=int(FAST_UPLIFT_ENV["LIFTLAB_UPLIFT_BOOTSTRAP"]), min_uplift=up.segment_min_uplift)
        for table, name, columns, keys in (
            ("uplift_models", "models", assets.MODEL_COLUMNS, ["arm", "metric", "learner"]),
            ("uplift_scores", "scores", assets.SCORE_COLUMNS, ["arm", "metric", "learner", "unit_id"]),
            ("uplift_deciles", "deciles", assets.DECILE_COLUMNS, ["arm", "metric", "learner", "bin"]),
            ("uplift_explanations", "explanations", assets.EXPLAIN_COLUMNS, ["arm", "metric", "feature"]),
        ):
            kept = [c for c in columns if c not in ("run_id", "fit_seconds")]
            stored = db.read_frame(conn, f"select * from results.{table} where experiment_id = 'hillstrom'")
            expected = assets._with(whole.frame(name), columns, "")
            assert stored.height == expected.height > 0, table
            assert_frame_equal(stored.select(kept).sort(keys), expected.select(kept).sort(keys), check_dtypes=False,
                               check_exact=True)


def test_job_selects_the_uplift_group():
    assert uplift_models_job.name == "uplift_models"
