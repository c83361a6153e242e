"""Coverage study: do the pipeline's 95 % confidence intervals cover the synthetic truth?

Many small worlds (one per seed) are generated and loaded *together* into one database, each
with its own experiment-id suffix (``__s07``) and user-id range, then pushed through the real
pipeline parts: COPY ingest, the dbt project, the catalogue's compiled SQL (each experiment's
unit table), the polars sufficient statistics and the Welch comparison. Every randomized experiment × metric × arm interval is compared with the exact
expected effect the generator wrote to ``truth.effects``.

No seed is picked: the seeds are ``first_seed … first_seed + n_worlds − 1``.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess

import polars as pl

from liftlab import config, db
from liftlab.ingest.world import load_world
from liftlab.specs import load_specs
from liftlab.stats.analysis import compare_arms
from liftlab.stats.sufficient import aggregate
from liftlab.units import unit_frame

#: Randomized synthetic experiments whose estimates are compared with the truth.
RANDOMIZED = ("onboarding_adaptive", "aa_check", "checkout_redesign", "winback_email")
#: Per-world user-id stride (worlds must not share users).
ID_STRIDE = 10_000_000


def _concat_worlds(n_worlds: int, n_users: int, first_seed: int):
    from liftlab.synth import FaultConfig, WorldConfig, generate_world

    worlds = []
    for i in range(n_worlds):
        seed = first_seed + i
        cfg = WorldConfig(
            seed=seed,
            n_users=n_users,
            user_id_offset=(i + 1) * ID_STRIDE,
            experiment_suffix=f"__s{i:03d}",
            # No logging bug here: the study measures the estimator, not the SRM gate.
            faults=FaultConfig(checkout_exposure_loss=0.0),
        )
        worlds.append(generate_world(cfg))
    merged = {
        field.name: pl.concat([getattr(w, field.name) for w in worlds], how="vertical_relaxed")
        for field in dataclasses.fields(worlds[0])
        if field.name != "config"
    }
    return dataclasses.replace(worlds[0], **merged), [w.config for w in worlds]


def run_dbt_build(info: db.ConnInfo) -> None:
    """``dbt build`` of the project against ``info`` (outside Dagster, for studies)."""
    env = {**os.environ, **info.dbt_env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    project = str(config.dbt_project_dir())
    proc = subprocess.run(
        [config.dbt_executable(), "build", "--project-dir", project, "--profiles-dir", project, "--quiet"],
        env=env, capture_output=True, text=True, cwd=project,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"dbt build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")


def run_coverage_study(info: db.ConnInfo, n_worlds: int = 50, n_users: int = 2_000, first_seed: int = 1) -> pl.DataFrame:
    """One row per world × experiment × metric × arm: the CI, the truth and whether it covers."""
    from liftlab.sources import prepare
    from liftlab.specs import LoadedSpec

    world, configs = _concat_worlds(n_worlds, n_users, first_seed)
    specs = {item.spec.id: item for item in load_specs()}
    with db.connect(info) as conn:
        load_world(conn, world)
        conn.commit()
    run_dbt_build(info)

    truth = world.truth_effects.select("experiment_id", "metric", "variant", "true_effect")
    rows = []
    with db.connect(info) as conn:
        for cfg in configs:
            for base in RANDOMIZED:
                spec = specs[base].spec.model_copy(update={"id": cfg.experiment_id(base)})
                prepare(conn, LoadedSpec(spec, specs[base].path, ""))
                conn.commit()
                metrics = [m for m in spec.metric_roles() if spec.metric_kind(m) == "mean"]
                stats = aggregate(unit_frame(conn, spec, metrics), by=["variant"], metrics=metrics)
                table = compare_arms(stats, baseline=spec.baseline, alpha=0.05)
                rows.append(table.with_columns(pl.lit(spec.id).alias("experiment_id"), pl.lit(cfg.seed).alias("seed")))
    estimates = pl.concat(rows, how="vertical_relaxed")
    joined = estimates.join(truth, on=["experiment_id", "metric", "variant"], how="inner")
    return joined.with_columns(
        ((pl.col("abs_ci_low") <= pl.col("true_effect")) & (pl.col("true_effect") <= pl.col("abs_ci_high"))).alias("covered"),
        pl.col("experiment_id").str.replace(r"__s\d+$", "").alias("experiment"),
    )
