"""Sufficient statistics computed where the data live: one SQL ``GROUP BY`` over the unit table.

The default aggregation reads the experiment's unit frame out of Postgres and sums it with
polars/numpy (:func:`liftlab.experiment_stats.daily_statistics`) — on one machine that is the
fastest path. On a distributed Postgres (Citus with the unit table distributed on the unit id)
moving the unit frame out is what costs; there the same statistics can be computed inside the
database, each worker summing its shards, and only (variant × day × metric) rows leave it.

:func:`daily_statistics` here returns exactly the frame of
:func:`liftlab.experiment_stats.daily_statistics` (same rows, columns, order and winsorization;
values equal to ~1e-13 relative, ``tests/own_data/test_pushdown.py``): per metric ``(y, x, d)``
of :func:`~liftlab.experiment_stats.metric_plan`, the units whose y (and x, d where declared)
are not null/NaN count, and the ten moments are sums over them. Sums are taken in ``numeric``
(exact decimal arithmetic on each value's float8 → numeric conversion), so they do not depend
on the order in which parallel workers meet: a rerun gives the same bits. CUPED's θ and the
delta method need only these sums, so nothing else has to leave the database.

Selected with ``LIFTLAB_AGGREGATION=pushdown`` (default ``polars``): :func:`mode`.
"""

from __future__ import annotations

import math
import os
from datetime import date

import polars as pl
import psycopg
from psycopg import sql

from liftlab.db import check_identifier, qualified
from liftlab.sources import reading, unit_table
from liftlab.specs import ExperimentSpec
from liftlab.stats.moments import MOMENT_COLUMNS

__all__ = ["MODES", "mode", "daily_statistics"]

MODES = ("polars", "pushdown")


def mode() -> str:
    """The aggregation mode, ``LIFTLAB_AGGREGATION`` (``polars`` or ``pushdown``)."""
    value = os.environ.get("LIFTLAB_AGGREGATION", "polars").strip().lower() or "polars"
    if value not in MODES:
        raise ValueError(f"LIFTLAB_AGGREGATION must be one of {', '.join(MODES)}, got {value!r}")
    return value


def _value(table, column: str, caps: dict[str, float], spec: ExperimentSpec) -> sql.Composable:
    """A unit column as float8 with NaN read as NULL, capped as winsorize_units caps it."""
    from liftlab.experiment_stats import window_scale

    ident = sql.Identifier(check_identifier(column, "column"))
    raw = sql.SQL("{}::int::float8").format(ident) if column in table.booleans else sql.SQL("{}::float8").format(ident)
    value = sql.SQL("nullif({}, 'NaN'::float8)").format(raw)
    cap = None
    for metric, metric_cap in caps.items():
        if math.isnan(metric_cap):
            continue
        if column == metric:
            cap = metric_cap
        elif column == spec.pre_period_column(metric):
            cap = metric_cap / window_scale(spec, metric)
    if cap is None:
        return value
    # least() skips NULLs (least(NULL, c) = c): cap only values that are there
    return sql.SQL("case when {v} is null then null else least({v}, {c}) end").format(v=value, c=sql.Literal(float(cap)))


def daily_statistics(conn: psycopg.Connection, spec: ExperimentSpec, caps: dict[str, float],
                     days: tuple[date, date] | None = None) -> tuple[pl.DataFrame, int]:
    """Joint sufficient statistics per variant × day × metric of the analysed units (the cohorts of
    ``days`` only, when given), computed by Postgres, and the number of units they summarise; see
    the module docstring."""
    from liftlab.db import read_frame
    from liftlab.experiment_stats import metric_plan
    from liftlab.units import analysed_cohorts

    table = unit_table(spec)
    plan = metric_plan(spec)
    columns = list(dict.fromkeys(c for triple in plan.values() for c in triple if c is not None))
    names = {c: f"c{i}" for i, c in enumerate(columns)}
    day, where, params = analysed_cohorts(table, days)
    inner = sql.SQL("select {variant}::text as variant, {day} as day{cols} from {rel} where {where}").format(
        variant=sql.Identifier(table.variant), day=day, rel=qualified(table.relation),
        where=where,
        cols=sql.SQL("").join(sql.SQL(", ({})::numeric as {}").format(_value(table, c, caps, spec), sql.Identifier(names[c]))
                              for c in columns))
    aggregates = [sql.SQL("count(*) as units")]
    for i, (y, x, d) in enumerate(plan.values()):
        cy, cx, cd = (sql.Identifier(names[c]) if c else None for c in (y, x, d))
        valid = sql.SQL(" and ").join(sql.SQL("{} is not null").format(c) for c in (cy, cx, cd) if c is not None)

        def total(expr: sql.Composable, alias: str) -> sql.Composable:
            return sql.SQL("coalesce(sum({}) filter (where {}), 0)::float8 as {}").format(
                expr, valid, sql.Identifier(f"m{i}_{alias}"))

        parts = [sql.SQL("count(*) filter (where {}) as {}").format(valid, sql.Identifier(f"m{i}_n")),
                 total(cy, "sum"), total(sql.SQL("{c} * {c}").format(c=cy), "sum_sq")]
        if cx is not None:
            parts += [total(cx, "sum_x"), total(sql.SQL("{c} * {c}").format(c=cx), "sum_x_sq"),
                      total(sql.SQL("{} * {}").format(cx, cy), "sum_xy")]
        if cd is not None:
            parts += [total(cd, "sum_d"), total(sql.SQL("{c} * {c}").format(c=cd), "sum_d_sq"),
                      total(sql.SQL("{} * {}").format(cy, cd), "sum_yd")]
            if cx is not None:
                parts.append(total(sql.SQL("{} * {}").format(cx, cd), "sum_xd"))
        aggregates += parts
    query = sql.SQL("select variant, day, {aggs} from ({inner}) u group by variant, day "
                    "order by variant collate \"C\", day").format(aggs=sql.SQL(", ").join(aggregates), inner=inner)
    with reading(conn, table) as src:
        wide = read_frame(src, query, params)
    if wide.is_empty():
        return pl.DataFrame(schema={"variant": pl.Utf8, "day": pl.Date, "metric": pl.Utf8, "n": pl.Int64,
                                    **{c: pl.Float64 for c in MOMENT_COLUMNS}}), 0
    blocks = []
    for i, (metric, (y, x, d)) in enumerate(plan.items()):
        n = pl.col(f"m{i}_n").cast(pl.Int64)
        col = {c: pl.col(f"m{i}_{c}") for c in ("sum", "sum_sq", "sum_x", "sum_x_sq", "sum_xy", "sum_d", "sum_d_sq",
                                                  "sum_yd", "sum_xd") if f"m{i}_{c}" in wide.columns}
        zero = pl.lit(0.0)
        blocks.append(wide.select(
            pl.col("variant"), pl.col("day").cast(pl.Date), pl.lit(metric).alias("metric"), n.alias("n"),
            col["sum"].alias("sum"), col["sum_sq"].alias("sum_sq"),
            col.get("sum_x", zero).alias("sum_x"), col.get("sum_x_sq", zero).alias("sum_x_sq"),
            col.get("sum_xy", zero).alias("sum_xy"),
            col.get("sum_d", n.cast(pl.Float64)).alias("sum_d"), col.get("sum_d_sq", n.cast(pl.Float64)).alias("sum_d_sq"),
            col.get("sum_yd", col["sum"]).alias("sum_yd"),
            col.get("sum_xd", col.get("sum_x", zero) if d is None else zero).alias("sum_xd"),
        ))
    order = {m: i for i, m in enumerate(plan)}
    frame = (pl.concat(blocks).with_columns(pl.col("metric").replace_strict(order, return_dtype=pl.Int64).alias("_m"))
             .sort("variant", "day", "_m", nulls_last=True).drop("_m"))
    return frame, int(wide["units"].sum())
