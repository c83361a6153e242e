"""Inputs of the causal analyses, read through the source layer (any source kind).

* observational units: one row per unit with ``variant``, the outcome metrics and the
  confounders (pre-treatment only: unit-table attributes, dimensions, pre-period twins, or a
  file's declared columns) — :func:`observational_units`;
* rollout panel: one row per group × day over the pre-period and the window with ``y`` = the
  metric per unit and day in the group (units without activity count as 0), ``weight`` = units
  of the group, ``time`` = day relative to the start date and ``first_treat`` = the group's
  adoption day (NaN if never treated: the first exposure of a treated unit in the group), plus
  ``true_effect`` where ground truth exists (the demo world) — :func:`rollout_panel`.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import polars as pl


def to_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    """polars → pandas without pyarrow (column by column through numpy)."""
    return pd.DataFrame({c: frame[c].to_numpy() for c in frame.columns})


def outcome_metrics(spec) -> list[str]:
    """The unit-level metrics a non-randomized design estimates: primary first, then secondary
    metrics and guardrails (the spec refuses ratios and quantiles for these designs)."""
    return [m for m in spec.metric_roles() if spec.metric_kind(m) == "mean"]


def observational_units(conn, spec) -> pd.DataFrame:
    """``unit_id``, ``variant``, the outcome metrics (float) and the confounders, ordered by unit."""
    from liftlab.units import attribute_frame, unit_frame

    frame = unit_frame(conn, spec, outcome_metrics(spec))
    confounders = spec.causal_confounders()
    if confounders:
        frame = frame.join(attribute_frame(conn, spec, confounders).drop("variant"), on="unit_id", how="left",
                           maintain_order="left")
    return to_pandas(frame)


def rollout_panel(conn, spec, metric: str | None = None) -> pd.DataFrame:
    """The group × day panel of a staggered rollout's ``metric`` (default: the primary; see the
    module docstring)."""
    from psycopg import sql

    from liftlab.db import copy_out, qualified, read_frame
    from liftlab.sources import adapter, unit_table
    from liftlab.sources.base import connection_info, read_only
    from liftlab.sources.warehouse import check_source, connection_of, experiment_sql

    group, metric = spec.causal.group, metric or spec.primary_metric
    table = unit_table(spec)
    g = sql.Identifier(group)
    groups = read_frame(conn, sql.SQL("select {}::text as grp, count(*)::bigint as weight from {} group by 1").format(
        g, qualified(table.relation)))
    adopt = read_frame(conn, sql.SQL(
        "select {}::text as grp, min(exposure_date) filter (where variant = %s) as adoption_date from {} group by 1"
    ).format(g, qualified(table.relation)), (spec.treated_variant,))
    first = spec.pre_start_date or spec.start_date
    with read_only(connection_info(connection_of(spec), conn)) as src:
        q = experiment_sql(spec, check_source(src, spec, spec.id))
        compiled = q.panel(metric, group, first, spec.end_date)
        values = copy_out(src, compiled.statement, compiled.params, {"grp": pl.Utf8, "day": pl.Date, "value": pl.Float64})
    truth = None
    if adapter(spec).has_truth and metric == spec.primary_metric:
        from liftlab.synth.tables import truth_panel

        truth = truth_panel(conn, spec)
    return panel_frame(groups, adopt, values, truth, first, spec.end_date, spec.start_date)


def panel_frame(groups: pl.DataFrame, adopt: pl.DataFrame, values: pl.DataFrame, truth: pl.DataFrame | None,
                first: dt.date, last: dt.date, start: dt.date) -> pd.DataFrame:
    """Assemble the panel: every group × every day of [first, last], the value per unit and day.

    ``groups`` (grp, weight), ``adopt`` (grp, adoption_date), ``values`` (grp, day, value summed
    over the group's units), ``truth`` (grp, day, true_effect) or None."""
    days = pl.DataFrame({"day": pl.date_range(first, last, "1d", eager=True)})
    truth = truth if truth is not None else pl.DataFrame(schema={"grp": pl.Utf8, "day": pl.Date, "true_effect": pl.Float64})
    p = (groups.join(days, how="cross")
         .join(values, on=["grp", "day"], how="left")
         .join(adopt, on="grp", how="left")
         .join(truth, on=["grp", "day"], how="left")
         .with_columns(pl.col("value").fill_null(0.0).cast(pl.Float64),
                       (pl.col("day") - pl.lit(start)).dt.total_days().cast(pl.Int64).alias("time"))
         .with_columns((pl.col("value") / pl.col("weight")).alias("y"),
                       (pl.col("adoption_date") - pl.lit(start)).dt.total_days().cast(pl.Float64).alias("first_treat"))
         .sort("grp", "day")
         .rename({"grp": "unit", "day": "activity_date"}))
    out = to_pandas(p.select("unit", "activity_date", "time", "y", "weight", "first_treat", "adoption_date", "true_effect"))
    out["first_treat"] = out["first_treat"].astype(float)
    out["weight"] = out["weight"].astype(float)
    out["true_effect"] = out["true_effect"].astype(float)
    return out


def true_att(panel: pd.DataFrame) -> float:
    """Unit-weighted mean true effect over treated cells (the truth.effects definition)."""
    post = panel[~np.isnan(panel["first_treat"]) & (panel["time"] >= panel["first_treat"])]
    return float((post["true_effect"] * post["weight"]).sum() / post["weight"].sum())
