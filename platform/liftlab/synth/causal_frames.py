"""The demo's causal inputs computed straight from a generated world (no database).

Mirrors of :func:`liftlab.causal_inputs.observational_units` and
:func:`liftlab.causal_inputs.rollout_panel` for the world's opt-in and regional-rollout
experiments, in polars: the simulation studies (``liftlab.studies.causal_coverage``,
``causal_demo``) fit hundreds of worlds without loading any, and the tests check that the two
paths give the same frames.
"""

from __future__ import annotations

import polars as pl

#: The opt-in study's outcomes and confounders, as the demo spec declares them
#: (experiments/ai_assistant_optin.yaml).
OPTIN = "ai_assistant_optin"
ROLLOUT = "regional_pricing"
#: The region that adopts the new price alone (the synthetic-control case of the world design).
ROLLOUT_ALONE = "DE"
#: The opt-in study's outcomes estimated by the simulation studies.
OPTIN_METRICS = ("ai_calls", "tasks_completed")
OUTCOMES = ["sessions", "ai_calls", "tasks_completed", "support_tickets", "revenue", "active_days"]
ATTRIBUTES = ["plan", "company_size", "region", "device", "tenure_days", "engagement_score"]
PRE = ["pre_sessions", "pre_ai_calls", "pre_tasks_completed", "pre_support_tickets", "pre_active_days", "pre_revenue"]
CONFOUNDERS = [*ATTRIBUTES, *PRE]


def optin_units_from_world(world, experiment_id: str | None = None):
    """``unit_id``, ``variant``, the outcomes, the attributes and the pre-period twins of the
    opt-in experiment's units (first exposure; outcomes over [exposure day, end date], twins over
    the ``pre_days`` before the exposure day), as a pandas frame ordered by unit."""
    from liftlab.causal_inputs import to_pandas

    cfg = world.config
    exp = experiment_id or cfg.experiment_id(OPTIN)
    units = (world.exposures.filter(pl.col("experiment_id") == exp).sort("exposed_at", "user_id")
             .group_by("user_id", maintain_order=True)
             .agg(pl.col("variant").first(), pl.col("exposed_at").first().dt.date().alias("exposure_date")))
    t = pl.col("event_type")
    daily = (world.events.filter(pl.col("user_id").is_in(units["user_id"].implode()))
             .with_columns(pl.col("event_ts").dt.date().alias("day"))
             .group_by("user_id", "day").agg(
                 (t == "session").sum().alias("sessions"), (t == "ai_call").sum().alias("ai_calls"),
                 (t == "task_completed").sum().alias("tasks_completed"),
                 (t == "support_ticket").sum().alias("support_tickets"),
                 pl.col("value").filter(t == "payment").sum().alias("revenue")))
    j = daily.join(units.select("user_id", "exposure_date"), on="user_id")
    win = (pl.col("day") >= pl.col("exposure_date")) & (pl.col("day") <= cfg.end_date)
    pre = (pl.col("day") >= pl.col("exposure_date") - pl.duration(days=cfg.pre_days)) & (pl.col("day") < pl.col("exposure_date"))
    base = ["sessions", "ai_calls", "tasks_completed", "support_tickets", "revenue"]
    agg = j.group_by("user_id").agg(
        *[pl.col(c).filter(win).sum().alias(c) for c in base],
        ((pl.col("sessions") > 0) & win).sum().alias("active_days"),
        *[pl.col(c).filter(pre).sum().alias(f"pre_{c}") for c in base],
        ((pl.col("sessions") > 0) & pre).sum().alias("pre_active_days"))
    out = (units.join(agg, on="user_id", how="left")
           .with_columns([pl.col(c).fill_null(0).cast(pl.Float64) for c in OUTCOMES + PRE])
           .join(world.users.select("user_id", *ATTRIBUTES), on="user_id")
           .with_columns(pl.col("user_id").cast(pl.Utf8).alias("unit_id")).sort("unit_id"))
    return to_pandas(out.select("unit_id", "variant", *OUTCOMES, *CONFOUNDERS))


def regional_panel_from_world(world):
    """The regional rollout's region × day panel of revenue per user (see ``rollout_panel``)."""
    from liftlab.causal_inputs import panel_frame

    cfg = world.config
    exp = cfg.experiment_id(ROLLOUT)
    groups = world.users.group_by("region").agg(pl.len().cast(pl.Int64).alias("weight")).rename({"region": "grp"})
    ex = world.exposures.filter((pl.col("experiment_id") == exp) & (pl.col("variant") == "new_price"))
    adopt = (ex.join(world.users.select("user_id", "region"), on="user_id")
             .group_by("region").agg(pl.col("exposed_at").min().dt.date().alias("adoption_date")).rename({"region": "grp"}))
    values = (world.events.filter(pl.col("event_type") == "payment")
              .join(world.users.select("user_id", "region"), on="user_id")
              .with_columns(pl.col("event_ts").dt.date().alias("day"))
              .group_by("region", "day").agg(pl.col("value").sum().alias("value")).rename({"region": "grp"}))
    truth = world.truth_regional.select(pl.col("region").alias("grp"), pl.col("activity_date").alias("day"), "true_effect")
    return panel_frame(groups, adopt, values, truth, cfg.pre_start_date, cfg.end_date, cfg.start_date)
