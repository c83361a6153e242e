"""The uplift "done when" figures, end to end on real Postgres (not a test; a few minutes).

    .venv/bin/python bench/uplift_acceptance.py [n_users]

Creates a fresh database on the server liftlab uses (DATABASE_URL or the embedded one),
loads the synthetic world (default 100,000 users, the demo seed), runs dbt, loads Hillstrom
from its declared file, materializes the `uplift` asset group with the specs in
experiments/, then prints the figures from the result tables and writes
bench/results/uplift_acceptance.json. The database is dropped at the end.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg
from psycopg import sql

from liftlab import config, db, migrations


def main() -> None:
    n_users = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    from liftlab.defs.ingest import experiment_specs, user_files
    from liftlab.defs.resources import PostgresResource
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
        assert dg.materialize([experiment_specs, user_files], resources=resources).success
        with db.connect(info) as conn:
            load_world(conn, generate_world(WorldConfig(n_users=n_users, seed=config.world_seed())))
            conn.commit()
        run_dbt_build(info)
        timings["data_s"] = time.perf_counter() - start
        start = time.perf_counter()
        assert dg.materialize([uplift_learners, targeting_policy, uplift_segments], resources=resources).success
        timings["uplift_s"] = time.perf_counter() - start
        with db.connect(info) as conn:
            models = db.read_frame(conn, "select * from results.uplift_models order by experiment_id, arm, metric, qini desc")
            policy = db.read_frame(conn, "select * from results.targeting_policy where policy <> 'top_k' or k_pct = 30")
            segments = db.read_frame(conn, "select * from results.uplift_segments")
    finally:
        with psycopg.connect(info.url(dbname="postgres"), autocommit=True) as c:
            c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(info.dbname)))

    cfg = pl.Config(tbl_cols=20, tbl_width_chars=220, tbl_rows=60, float_precision=5)
    cfg.__enter__()
    print(f"\nworld {n_users:,} users; data {timings['data_s']:.0f} s, uplift group {timings['uplift_s']:.0f} s\n")
    print(models.select("experiment_id", "arm", "metric", "learner", "qini", "qini_ci_low", "qini_ci_high", "auuc",
                        "oracle_share", "expected_oracle_share", "uplift_at_30", "calibration_slope", "n_train", "n_test",
                        "fit_seconds"))
    best = models.filter(pl.col("is_best"))
    keys = best.select("experiment_id", "arm", "metric", "learner")
    pol = policy.join(keys, on=["experiment_id", "arm", "metric", "learner"], how="inner").sort(
        "experiment_id", "arm", "metric", "policy")
    print("\ntargeting policy of the best learner per experiment × arm × outcome (held-out units):")
    print(pol.select("experiment_id", "arm", "metric", "learner", "policy", "k_pct", "n_targeted", "incremental_conversions",
                     "revenue", "cost", "profit", "roi", "profit_vs_all", "vs_all_ci_low", "vs_all_ci_high"))
    seg = segments.join(keys, on=["experiment_id", "arm", "metric", "learner"], how="inner")
    print("\nsegments of the best learner:")
    print(seg.select("experiment_id", "arm", "metric", "segment", "n", "share", "realised_uplift", "ci_low", "ci_high",
                     "true_precision", "true_recall"))
    report = {
        "n_users": n_users, "timings": timings,
        "models": models.drop("run_id", "computed_at").to_dicts(),
        "policy": pol.drop("run_id", "computed_at").to_dicts(),
        "segments": seg.drop("run_id").to_dicts(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "uplift_acceptance.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {out / 'uplift_acceptance.json'}")


if __name__ == "__main__":
    main()
