"""Inputs of the causal studies, from the database (marts) or straight from a generated world.

Both paths give the same frames:

* opt-in units: one row per eligible user with ``variant``, the outcomes, the ``pre_*``
  covariates (pre-period activity) and the user attributes of ``raw.users`` — pre-treatment
  only;
* regional panel: one row per region × day over the pre-period and the window with
  ``y`` = revenue per user-day (users without activity count as 0), ``weight`` = users of the
  region, ``time`` = day relative to the start date and ``first_treat`` = adoption day
  (NaN if never treated, from the exposure log), plus ``true_effect`` where the truth is known.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import polars as pl

USER_COLUMNS = ["user_id", "plan", "company_size", "region", "device", "tenure_days", "engagement_score"]
OUTCOMES = ["sessions", "ai_calls", "tasks_completed", "support_tickets", "revenue", "active_days"]
PRE = ["pre_sessions", "pre_ai_calls", "pre_tasks_completed", "pre_support_tickets", "pre_revenue",
       "pre_active_days"]


def to_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    """polars → pandas without pyarrow (column by column through numpy)."""
    return pd.DataFrame({c: frame[c].to_numpy() for c in frame.columns})


# ---------------------------------------------------------------------------- database
def optin_units_from_db(conn, experiment_id: str = "ai_assistant_optin") -> pd.DataFrame:
    from liftlab.db import read_frame

    from psycopg import sql

    cols = [sql.Identifier("m", c) for c in ["user_id", "variant", *OUTCOMES, *PRE]]
    cols += [sql.Identifier("u", c) for c in USER_COLUMNS[1:]]
    query = sql.SQL("select {} from marts.fct_unit_metrics m join raw.users u using (user_id) "
                    "where m.experiment_id = %s order by m.user_id").format(sql.SQL(", ").join(cols))
    frame = read_frame(conn, query, (experiment_id,))
    return to_pandas(frame)


def regional_panel_from_db(conn, experiment_id: str = "regional_pricing") -> pd.DataFrame:
    from liftlab.db import read_frame

    spec = read_frame(conn, "select start_date, end_date, pre_start_date from raw.experiment_specs "
                            "where experiment_id = %s", (experiment_id,)).row(0, named=True)
    start, end, pre = spec["start_date"], spec["end_date"], spec["pre_start_date"] or spec["start_date"]
    users = read_frame(conn, "select region, count(*)::bigint as weight from raw.users group by region")
    adopt = read_frame(conn, "select u.region, min(e.exposure_date) as adoption_date from marts.fct_exposures e "
                             "join raw.users u using (user_id) where e.experiment_id = %s "
                             "and e.variant <> (select baseline from raw.experiment_specs where experiment_id = %s) "
                             "group by u.region", (experiment_id, experiment_id))
    revenue = read_frame(conn, "select u.region, d.activity_date, sum(d.revenue)::float8 as revenue "
                               "from marts.fct_user_daily d join raw.users u using (user_id) "
                               "where d.activity_date between %s and %s group by 1, 2", (pre, end))
    truth = read_frame(conn, "select region, activity_date, true_effect from truth.regional_pricing")
    return _panel(users, adopt, revenue, truth, pre, end, start)


# ---------------------------------------------------------------------------- world
def optin_units_from_world(world, experiment_id: str | None = None) -> pd.DataFrame:
    """The opt-in unit frame computed from a world's events in polars (mirror of the marts)."""
    cfg = world.config
    exp = experiment_id or cfg.experiment_id("ai_assistant_optin")
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
    pre = (pl.col("day") >= cfg.pre_start_date) & (pl.col("day") < cfg.start_date)
    base = ["sessions", "ai_calls", "tasks_completed", "support_tickets", "revenue"]
    agg = j.group_by("user_id").agg(
        *[pl.col(c).filter(win).sum().alias(c) for c in base],
        ((pl.col("sessions") > 0) & win).sum().alias("active_days"),
        *[pl.col(c).filter(pre).sum().alias(f"pre_{c}") for c in base],
        ((pl.col("sessions") > 0) & pre).sum().alias("pre_active_days"))
    out = (units.join(agg, on="user_id", how="left")
           .with_columns([pl.col(c).fill_null(0).cast(pl.Float64) for c in OUTCOMES + PRE])
           .join(world.users.select(USER_COLUMNS), on="user_id").sort("user_id"))
    return to_pandas(out.select("user_id", "variant", *OUTCOMES, *PRE, *USER_COLUMNS[1:]))


def regional_panel_from_world(world) -> pd.DataFrame:
    cfg = world.config
    exp = cfg.experiment_id("regional_pricing")
    users = world.users.group_by("region").agg(pl.len().cast(pl.Int64).alias("weight"))
    ex = world.exposures.filter((pl.col("experiment_id") == exp) & (pl.col("variant") == "new_price"))
    adopt = (ex.join(world.users.select("user_id", "region"), on="user_id")
             .group_by("region").agg(pl.col("exposed_at").min().dt.date().alias("adoption_date")))
    revenue = (world.events.filter(pl.col("event_type") == "payment")
               .join(world.users.select("user_id", "region"), on="user_id")
               .with_columns(pl.col("event_ts").dt.date().alias("activity_date"))
               .group_by("region", "activity_date").agg(pl.col("value").sum().alias("revenue")))
    truth = world.truth_regional.select("region", "activity_date", "true_effect")
    return _panel(users, adopt, revenue, truth, cfg.pre_start_date, cfg.end_date, cfg.start_date)


def _panel(users: pl.DataFrame, adopt: pl.DataFrame, revenue: pl.DataFrame, truth: pl.DataFrame,
           first: dt.date, last: dt.date, start: dt.date) -> pd.DataFrame:
    days = pl.DataFrame({"activity_date": pl.date_range(first, last, "1d", eager=True)})
    grid = users.join(days, how="cross")
    p = (grid.join(revenue, on=["region", "activity_date"], how="left")
         .join(adopt, on="region", how="left")
         .join(truth, on=["region", "activity_date"], how="left")
         .with_columns(pl.col("revenue").fill_null(0.0).cast(pl.Float64),
                       (pl.col("activity_date") - pl.lit(start)).dt.total_days().cast(pl.Int64).alias("time"))
         .with_columns((pl.col("revenue") / pl.col("weight")).alias("y"),
                       (pl.col("adoption_date") - pl.lit(start)).dt.total_days().cast(pl.Float64).alias("first_treat"))
         .sort("region", "activity_date")
         .rename({"region": "unit"}))
    out = to_pandas(p.select("unit", "activity_date", "time", "y", "weight", "first_treat", "adoption_date",
                   "true_effect"))
    out["first_treat"] = out["first_treat"].astype(float)
    out["weight"] = out["weight"].astype(float)
    return out


def true_att(panel: pd.DataFrame) -> float:
    """User-weighted mean true effect over treated cells (the truth.effects definition)."""
    post = panel[~np.isnan(panel["first_treat"]) & (panel["time"] >= panel["first_treat"])]
    return float((post["true_effect"] * post["weight"]).sum() / post["weight"].sum())
