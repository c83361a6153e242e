"""The uplift "done when" figures, end to end on real Postgres (not a test; about ten minutes).

    .venv/bin/python bench/uplift_acceptance.py [n_users] [--seeds N]

Creates a fresh database on the server liftlab uses (DATABASE_URL or the embedded one),
loads the synthetic world (default 100,000 users, the demo seed), runs dbt, loads Hillstrom
from its declared file, materializes the `uplift` asset group with the specs in
experiments/ (all seven learners, cross-fitted over the specs' folds and repeats), then prints the figures
from the result tables and writes bench/results/uplift_acceptance.json. The database is
dropped at the end.

Per experiment × arm × outcome it reports the learner with the highest out-of-fold Qini, its
marginal CI and the simultaneous band over all seven learners (valid after picking the best),
and how many learners' own CIs exclude 0. The bootstrap CIs hold the fitted fold models fixed,
so ``--seeds N`` (default 3) also re-runs the Hillstrom Mens E-Mail analysis (pure code, same
units) with N other sets of seeds — other folds, base-model seeds and draws — to show how much the
figures move when the models are refitted, which no interval above includes.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg
from psycopg import sql

from liftlab import config, db, migrations


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("n_users", nargs="?", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=3, help="extra seeds for the Hillstrom refit check")
    cli = parser.parse_args()
    n_users = cli.n_users
    from liftlab.specs import load_specs
    from liftlab.uplift.analysis import analyse_experiment
    from liftlab.uplift_io import load_units, uplift_features
    from liftlab.defs.ingest import experiment_specs
    from liftlab.defs.resources import PostgresResource
    from liftlab.sources import prepare
    from liftlab.defs.uplift import targeting_policy, uplift_learners, uplift_segments
    from liftlab.ingest.world import load_world
    from liftlab.studies.coverage import run_dbt_build
    from liftlab.synth import WorldConfig, generate_world

    server = db.resolve()
    info = server.with_db(f"liftlab_uplift_acceptance_{uuid.uuid4().hex[:8]}")
    db.ensure_database(server, info.dbname)
    timings = {}
    try:
        with db.connect(info) as conn:
            migrations.apply(conn)
            conn.commit()
        resources = {"postgres": PostgresResource(database_url=info.url())}
        start = time.perf_counter()
        assert dg.materialize([experiment_specs], resources=resources).success
        with db.connect(info) as conn:
            load_world(conn, generate_world(WorldConfig(n_users=n_users, seed=config.world_seed())))
            conn.commit()
        run_dbt_build(info)
        with db.connect(info) as conn:  # each uplift experiment's units (units.<id>, raw.src_<id>)
            for item in load_specs():
                if item.spec.uplift is not None:
                    prepare(conn, item)
                    conn.commit()
        timings["data_s"] = time.perf_counter() - start
        start = time.perf_counter()
        assert dg.materialize([uplift_learners, targeting_policy, uplift_segments], resources=resources).success
        timings["uplift_s"] = time.perf_counter() - start
        with db.connect(info) as conn:
            models = db.read_frame(conn, "select * from results.uplift_models order by experiment_id, arm, metric, qini desc")
            policy = db.read_frame(conn, "select * from results.targeting_policy where policy <> 'top_k' or k_pct = 30")
            segments = db.read_frame(conn, "select * from results.uplift_segments")
            hill = next(item.spec for item in load_specs() if item.spec.id == "hillstrom")
            hill_units = load_units(conn, hill)
    finally:
        with psycopg.connect(info.url(dbname="postgres"), autocommit=True) as c:
            c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(info.dbname)))

    cfg = pl.Config(tbl_cols=20, tbl_width_chars=220, tbl_rows=60, float_precision=5)
    cfg.__enter__()
    print(f"\nworld {n_users:,} users; data {timings['data_s']:.0f} s, uplift group {timings['uplift_s']:.0f} s\n")
    print(models.select("experiment_id", "arm", "metric", "learner", "qini", "qini_ci_low", "qini_ci_high",
                        "qini_simul_ci_low", "qini_simul_ci_high", "auuc", "oracle_share", "expected_oracle_share",
                        "uplift_at_30", "calibration_slope", "n_train", "n_test", "n_folds", "n_repeats", "fit_seconds"))
    best = models.filter(pl.col("is_best"))
    selection = _selection(models)
    print("\nbest learner per experiment × arm × outcome (highest out-of-fold Qini); 'simultaneous' is the band"
          " over all the learners, valid after picking the best; how many learners' own CIs exclude 0:")
    print(selection)
    keys = best.select("experiment_id", "arm", "metric", "learner")
    pol = policy.join(keys, on=["experiment_id", "arm", "metric", "learner"], how="inner").sort(
        "experiment_id", "arm", "metric", "policy")
    print("\ntargeting policy of the best learner per experiment × arm × outcome (every unit, scored out of fold):")
    print(pol.select("experiment_id", "arm", "metric", "learner", "policy", "k_pct", "n_targeted", "incremental_conversions",
                     "revenue", "cost", "profit", "roi", "profit_vs_all", "vs_all_ci_low", "vs_all_ci_high"))
    seg = segments.join(keys, on=["experiment_id", "arm", "metric", "learner"], how="inner")
    print("\nsegments of the best learner:")
    print(seg.select("experiment_id", "arm", "metric", "segment", "n", "share", "realised_uplift", "ci_low", "ci_high",
                     "true_precision", "true_recall"))
    refits = []
    arm = "Mens E-Mail"
    for i in range(1, cli.seeds + 1):
        up = hill.uplift
        start = time.perf_counter()
        result = analyse_experiment(
            hill_units, experiment_id=hill.id, baseline=hill.baseline, arms=[arm], outcomes=up.outcomes,
            features=list(uplift_features(hill)), learners=up.learners, backend=up.base_model, n_folds=up.folds,
            n_repeats=up.repeats, seed=up.seed + i * up.repeats, n_boot=up.n_bootstrap,
            min_uplift=up.segment_min_uplift, explain=False)  # seeds seed + i·R … : none shared with the run above
        refit = _selection(result.frame("models")).with_columns(pl.lit(up.seed + i * up.repeats).alias("seed"))
        refits.append(refit)
        print(f"refit with seed {up.seed + i * up.repeats}: {time.perf_counter() - start:.0f} s")
    if refits:
        refits = pl.concat(refits, how="diagonal_relaxed")
        print(f"\nHillstrom {arm}, refitted with other seeds (folds, base-model seeds, bootstrap draws):")
        print(refits)
    report = {
        "n_users": n_users, "timings": timings,
        "selection": selection.to_dicts(),
        "hillstrom_refits": refits.to_dicts() if len(refits) else [],
        "models": models.drop("run_id", "computed_at").to_dicts(),
        "policy": pol.drop("run_id", "computed_at").to_dicts(),
        "segments": seg.drop("run_id").to_dicts(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "uplift_acceptance.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {out / 'uplift_acceptance.json'}")


def _selection(models: pl.DataFrame) -> pl.DataFrame:
    """Per experiment × arm × outcome: the best learner, its marginal and simultaneous CIs,
    and how many of the learners have a marginal / simultaneous lower bound above 0."""
    learned = models.filter(pl.col("qini_simul_ci_low").is_not_null())
    counts = learned.group_by("experiment_id", "arm", "metric").agg(
        pl.len().alias("n_learners"),
        (pl.col("qini_ci_low") > 0).sum().alias("n_ci_above_0"),
        (pl.col("qini_simul_ci_low") > 0).sum().alias("n_simul_above_0"),
    )
    best = learned.filter(pl.col("is_best")).select(
        "experiment_id", "arm", "metric", "learner", "qini", "qini_ci_low", "qini_ci_high", "qini_simul_ci_low",
        "qini_simul_ci_high", "oracle_share")
    return best.join(counts, on=["experiment_id", "arm", "metric"]).sort("experiment_id", "arm", "metric")


if __name__ == "__main__":
    main()
