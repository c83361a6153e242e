"""Unit-level analysis data for one experiment, wherever its rows live.

Experiments on the event stream read ``marts.fct_unit_metrics`` / ``marts.fct_exposures``
(built by dbt); experiments on a declared file read ``raw.src_<experiment_id>``. Either way
the analysis code receives the same shape: ``unit_id``, ``variant`` and one column per
metric. Identifiers are validated and quoted; values are parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import polars as pl
import psycopg
from psycopg import sql

from liftlab.db import check_identifier, copy_out, qualified
from liftlab.specs import ExperimentSpec
from liftlab.stats.looks import OutcomeRule


#: Units of an event-stream experiment, excluding contaminated ones (exposed to more than one
#: variant: the contamination gate counts them and halts above its threshold). Ordered by unit
#: so that float sums are identical on every run.
_EVENT_UNITS = (
    "select m.user_id::text as unit_id, m.variant, {}{} from marts.fct_unit_metrics m "
    "join marts.fct_exposures e on e.experiment_id = m.experiment_id and e.user_id = m.user_id "
    "where m.experiment_id = %s and e.n_variants = 1{} order by {}"
)


def _as_number(spec: ExperimentSpec, column: str, what: str) -> sql.Composable:
    """A file column in a numeric select list: a declared boolean reads as 0/1."""
    ident = sql.Identifier(check_identifier(column, what))
    if spec.source.kind == "file" and spec.source.columns.get(column) == "boolean":
        return sql.SQL("{}::int as {}").format(ident, ident)
    return ident


def source_table(spec: ExperimentSpec) -> str:
    if spec.source.kind == "file":
        return f"raw.src_{check_identifier(spec.id, 'experiment id')}"
    return "marts.fct_unit_metrics"


def exposure_counts(conn: psycopg.Connection, spec: ExperimentSpec) -> dict[str, int]:
    """Units per variant (first exposure per unit) — the input of the SRM gate."""
    if spec.source.kind == "file":
        query = sql.SQL("select variant, count(*) from {} group by variant").format(qualified(source_table(spec)))
        params: tuple = ()
    else:
        query = sql.SQL("select variant, count(*) from marts.fct_exposures where experiment_id = %s group by variant")
        params = (spec.id,)
    with conn.cursor() as cur:
        cur.execute(query, params)
        return {variant: int(n) for variant, n in cur.fetchall()}


def unit_frame(conn: psycopg.Connection, spec: ExperimentSpec, metrics: Sequence[str]) -> pl.DataFrame:
    """``unit_id``, ``variant`` and the requested metric columns as Float64.

    A ratio metric (``spec.ratio``) is returned as the unit-level quotient numerator /
    denominator (NaN when the denominator is 0); the statistics engine does not use this
    column — it analyses Σ numerator / Σ denominator with the delta method
    (:func:`analysis_frame`).
    """
    ratios = {m: spec.ratio(m) for m in metrics if spec.ratio(m) is not None}
    if ratios:
        base = list(dict.fromkeys([m for m in metrics if m not in ratios] + [c for pair in ratios.values() for c in pair]))
        frame = unit_frame(conn, spec, base)
        frame = frame.with_columns(
            (pl.col(num) / pl.when(pl.col(den) != 0).then(pl.col(den)).otherwise(None)).fill_null(float("nan")).alias(name)
            for name, (num, den) in ratios.items()
        )
        return frame.select("unit_id", "variant", *metrics)
    columns = [_as_number(spec, m, "metric") for m in metrics]
    # Ordered, so that float aggregation sees the same order on every run (identical results).
    if spec.source.kind == "file":
        query = sql.SQL("select unit_id, variant, {} from {} order by unit_id").format(
            sql.SQL(", ").join(columns), qualified(source_table(spec))
        )
        params: tuple = ()
    else:
        query = sql.SQL(_EVENT_UNITS).format(
            sql.SQL(""), sql.SQL(", ").join(sql.Identifier("m", check_identifier(name, "metric")) for name in metrics),
            sql.SQL(""), sql.SQL("m.user_id"),
        )
        params = (spec.id,)
    return copy_out(conn, query, params, {"unit_id": pl.Utf8, "variant": pl.Utf8, **{m: pl.Float64 for m in metrics}})


def analysis_frame(
    conn: psycopg.Connection, spec: ExperimentSpec, columns: Sequence[str], days: tuple[date, date] | None = None
) -> pl.DataFrame:
    """``unit_id``, ``variant``, ``day`` (the unit's exposure date; null for a file source) and
    the requested unit-level columns (metrics and pre-period covariates) as Float64, sorted by
    variant (byte order) and day with the units in order within each group — the order in which
    :func:`liftlab.stats.moments.aggregate_joint` sums them, so reruns give the same bits.

    ``days`` (first, last), both inclusive, keeps the units exposed on those days only: the
    cohorts of one daily partition (event-stream experiments; a file source has no days)."""
    columns = list(dict.fromkeys(columns))
    idents = sql.SQL(", ").join(_as_number(spec, c, "column") for c in columns)
    if spec.source.kind == "file":
        # grouped by variant (the aggregation's keys), units in order within: see aggregate_joint
        query = sql.SQL('select unit_id, variant, null::date as day, {} from {} order by variant collate "C", unit_id').format(
            idents, qualified(source_table(spec))
        )
        params: tuple = ()
    else:
        query = sql.SQL(_EVENT_UNITS).format(
            sql.SQL("m.exposure_date as day, "),
            sql.SQL(", ").join(sql.Identifier("m", check_identifier(c, "column")) for c in columns),
            sql.SQL(" and m.exposure_date between %s and %s") if days else sql.SQL(""),
            # grouped by the aggregation's keys (variant, day), units in order within each group
            sql.SQL('m.variant collate "C", m.exposure_date, m.user_id'),
        )
        params = (spec.id, *days) if days else (spec.id,)
    return copy_out(conn, query, params, {"unit_id": pl.Utf8, "variant": pl.Utf8, "day": pl.Date, **{c: pl.Float64 for c in columns}})


#: How each outcome of ``marts.fct_unit_metrics`` accumulates from ``marts.fct_user_daily`` day by
#: day — the same definitions as ``dbt_project/models/marts/fct_unit_metrics.sql`` (the tests check
#: that the last daily look equals the mart). Used for the daily looks.
EVENT_OUTCOME_RULES: dict[str, OutcomeRule] = {
    "sessions": OutcomeRule("sessions"),
    "ai_calls": OutcomeRule("ai_calls"),
    "tasks_completed": OutcomeRule("tasks_completed"),
    "support_tickets": OutcomeRule("support_tickets"),
    "revenue": OutcomeRule("revenue"),
    "converted": OutcomeRule("upgrades", "any"),
    "reactivated": OutcomeRule("sessions", "any"),
    "active_days": OutcomeRule("sessions", "count_days"),
}


def activity_frame(
    conn: psycopg.Connection, spec: ExperimentSpec, daily_columns: Sequence[str], users: tuple[int, int] | None = None
) -> pl.DataFrame:
    """``unit_id``, ``day`` and the requested ``marts.fct_user_daily`` columns (Float64) of every
    analysed unit (as :func:`analysis_frame`: not contaminated) on its active days inside
    ``[exposure_date, end_date]``, ordered by unit and day; ``users`` (first, last) keeps a range
    of user ids (a batch)."""
    daily_columns = list(dict.fromkeys(daily_columns))
    query = sql.SQL(
        "select d.user_id::text, d.activity_date, {} from marts.fct_exposures e "
        "join marts.fct_user_daily d on d.user_id = e.user_id and d.activity_date >= e.exposure_date "
        "and d.activity_date <= coalesce(%s::date, 'infinity'::date) "
        "where e.experiment_id = %s and e.n_variants = 1{} order by d.user_id, d.activity_date"
    ).format(sql.SQL(", ").join(sql.Identifier("d", check_identifier(c, "column")) for c in daily_columns),
             sql.SQL(" and e.user_id between %s and %s") if users else sql.SQL(""))
    params = (spec.end_date, spec.id, *(users or ()))
    return copy_out(conn, query, params, {"unit_id": pl.Utf8, "day": pl.Date, **{c: pl.Float64 for c in daily_columns}})
