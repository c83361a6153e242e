"""A polars mirror of ``marts.fct_unit_metrics`` (docs/architecture.md), for the tests.

Unit = first exposure per experiment x user (variant of the first exposure,
exposure_date its UTC date); outcomes summed over [exposure_date, end_date].
"""

from __future__ import annotations

import polars as pl

from liftlab.synth import World

METRICS = ("sessions", "ai_calls", "tasks_completed", "support_tickets", "revenue",
           "converted", "reactivated", "active_days")


def user_daily(world: World) -> pl.DataFrame:
    """fct_user_daily: one row per user x activity_date with activity."""
    t = pl.col("event_type")
    return (
        world.events.with_columns(pl.col("event_ts").dt.date().alias("activity_date"))
        .group_by("user_id", "activity_date")
        .agg(
            (t == "session").sum().alias("sessions"),
            (t == "ai_call").sum().alias("ai_calls"),
            (t == "task_completed").sum().alias("tasks_completed"),
            (t == "support_ticket").sum().alias("support_tickets"),
            (t == "upgrade").sum().alias("upgrades"),
            pl.col("value").filter(t == "payment").sum().alias("revenue"),
        )
    )


def first_exposures(world: World, experiment_id: str) -> pl.DataFrame:
    """fct_exposures: first exposure per unit."""
    return (
        world.exposures.filter(pl.col("experiment_id") == experiment_id)
        .sort("exposed_at", "user_id")
        .group_by("user_id", maintain_order=True)
        .agg(
            pl.col("variant").first(),
            pl.col("exposed_at").first().dt.date().alias("exposure_date"),
            pl.len().alias("n_exposures"),
            pl.col("variant").n_unique().alias("n_variants"),
        )
    )


def unit_metrics(world: World, experiment_id: str, daily: pl.DataFrame) -> pl.DataFrame:
    """fct_unit_metrics for one experiment (outcomes only)."""
    end = world.config.end_date
    units = first_exposures(world, experiment_id)
    window = (
        daily.join(units.select("user_id", "exposure_date"), on="user_id")
        .filter((pl.col("activity_date") >= pl.col("exposure_date")) & (pl.col("activity_date") <= end))
        .group_by("user_id")
        .agg(
            pl.col("sessions", "ai_calls", "tasks_completed", "support_tickets", "revenue").sum(),
            (pl.col("upgrades").sum() > 0).cast(pl.Int64).alias("converted"),
            (pl.col("sessions").sum() > 0).cast(pl.Int64).alias("reactivated"),
            (pl.col("sessions") > 0).sum().cast(pl.Int64).alias("active_days"),
        )
    )
    return units.join(window, on="user_id", how="left").with_columns(
        [pl.col(m).fill_null(0).cast(pl.Float64) for m in METRICS]
    )
