"""Unit-level analysis data for one experiment, read from its unit table whatever the source.

Every source gives the analysis a unit table (:func:`liftlab.sources.unit_table`): a declared
file's ``raw.src_<id>``, a team's table read in place, or the ``units.<id>`` built from a
warehouse or the demo world. These readers return the same shape from any of them —
``unit_id``, ``variant`` (and ``day``, the exposure date, where the source has exposure
times) and the requested columns — ordered so that sums are identical on every run. Units
seen in more than one variant are left out (the contamination gate counts them).
Identifiers are validated and quoted; values are parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import polars as pl
import psycopg
from psycopg import sql

from liftlab.db import check_identifier, copy_out, qualified
from liftlab.sources import UnitTable, reading, unit_table
from liftlab.specs import ExperimentSpec


def _number(table: UnitTable, column: str, what: str) -> sql.Composable:
    """A column in a numeric select list: a declared boolean reads as 0/1."""
    ident = sql.Identifier(check_identifier(column, what))
    if column in table.booleans:
        return sql.SQL("{}::int as {}").format(ident, ident)
    return sql.SQL("{}::double precision as {}").format(ident, ident)


def _analysed(table: UnitTable) -> sql.Composable:
    """Units the analysis keeps: seen in one variant only (where the source can tell)."""
    return sql.SQL("{} = 1").format(sql.Identifier(table.crossover)) if table.crossover else sql.SQL("true")


def _keys(table: UnitTable) -> sql.Composable:
    return sql.SQL("{}::text as unit_id, {}::text as variant").format(sql.Identifier(table.unit), sql.Identifier(table.variant))


def unit_table_exists(conn: psycopg.Connection, spec: ExperimentSpec) -> bool:
    """The experiment's unit table is there to read (its source was brought in at least once)."""
    table = unit_table(spec)
    with reading(conn, table) as src:
        return src.execute("select to_regclass(%s) is not null", (table.relation,)).fetchone()[0]


def exposure_counts(conn: psycopg.Connection, spec: ExperimentSpec) -> dict[str, int]:
    """Units per variant (each unit in the variant of its first exposure) — the SRM gate's input."""
    table = unit_table(spec)
    query = sql.SQL("select {}::text, count(*) from {} group by 1").format(sql.Identifier(table.variant),
                                                                          qualified(table.relation))
    with reading(conn, table) as src, src.cursor() as cur:
        cur.execute(query)
        return {variant: int(n) for variant, n in cur.fetchall()}


def unit_frame(conn: psycopg.Connection, spec: ExperimentSpec, columns: Sequence[str]) -> pl.DataFrame:
    """``unit_id``, ``variant`` and the requested columns (metrics, twins, covariates) as Float64.

    A ratio metric (``spec.ratio``) is returned as the unit-level quotient numerator /
    denominator (NaN when the denominator is 0); the statistics engine does not use this
    column — it analyses Σ numerator / Σ denominator with the delta method
    (:func:`analysis_frame`).
    """
    ratios = {m: spec.ratio(m) for m in columns if spec.ratio(m) is not None}
    if ratios:
        base = list(dict.fromkeys([m for m in columns if m not in ratios] + [c for pair in ratios.values() for c in pair]))
        frame = unit_frame(conn, spec, base)
        frame = frame.with_columns(
            (pl.col(num) / pl.when(pl.col(den) != 0).then(pl.col(den)).otherwise(None)).fill_null(float("nan")).alias(name)
            for name, (num, den) in ratios.items()
        )
        return frame.select("unit_id", "variant", *columns)
    table = unit_table(spec)
    query = sql.SQL("select {}, {} from {} where {} order by {}").format(
        _keys(table), sql.SQL(", ").join(_number(table, c, "column") for c in columns), qualified(table.relation),
        _analysed(table), sql.Identifier(table.unit))
    with reading(conn, table) as src:
        return copy_out(src, query, None, {"unit_id": pl.Utf8, "variant": pl.Utf8, **{c: pl.Float64 for c in columns}})


def analysis_frame(
    conn: psycopg.Connection, spec: ExperimentSpec, columns: Sequence[str], days: tuple[date, date] | None = None
) -> pl.DataFrame:
    """``unit_id``, ``variant``, ``day`` (the unit's exposure date; null without exposure times) and
    the requested unit-level columns (metrics and pre-period covariates) as Float64, sorted by
    variant (byte order) and day with the units in order within each group — the order in which
    :func:`liftlab.stats.moments.aggregate_joint` sums them, so reruns give the same bits.

    ``days`` (first, last), both inclusive, keeps the units exposed on those days only: the
    cohorts of one daily partition (sources with exposure times)."""
    columns = list(dict.fromkeys(columns))
    table = unit_table(spec)
    day, where, params = analysed_cohorts(table, days)
    query = sql.SQL("select {keys}, {day} as day{cols} from {rel} where {where} "
                    "order by {variant}::text collate \"C\", {day}, {unit}").format(
        keys=_keys(table), day=day, cols=sql.SQL("").join(sql.SQL(", {}").format(_number(table, c, "column")) for c in columns),
        rel=qualified(table.relation), where=where, variant=sql.Identifier(table.variant),
        unit=sql.Identifier(table.unit))
    with reading(conn, table) as src:
        return copy_out(src, query, params, {"unit_id": pl.Utf8, "variant": pl.Utf8, "day": pl.Date,
                                             **{c: pl.Float64 for c in columns}})


def analysed_cohorts(table: UnitTable, days: tuple[date, date] | None = None
                     ) -> tuple[sql.Composable, sql.Composable, tuple]:
    """(the exposure-day expression, the condition, its parameters) selecting the units the
    analysis keeps — of the cohorts of ``days`` only (both inclusive) when given."""
    day = sql.Identifier(table.day) if table.day else sql.SQL("null::date")
    where = [_analysed(table)]
    params: tuple = ()
    if days and table.day:
        where.append(sql.SQL("{} between %s and %s").format(sql.Identifier(table.day)))
        params = tuple(days)
    return day, sql.SQL(" and ").join(where), params


def attribute_frame(conn: psycopg.Connection, spec: ExperimentSpec, columns: Sequence[str]) -> pl.DataFrame:
    """``unit_id``, ``variant`` and columns read with their own types (text stays text): dimensions
    and uplift features, for the analysed units, ordered by unit."""
    table = unit_table(spec)
    cols = [sql.Identifier(check_identifier(c, "column")) for c in dict.fromkeys(columns)]
    query = sql.SQL("select {}{} from {} where {} order by {}").format(
        _keys(table), sql.SQL("").join(sql.SQL(", {}").format(c) for c in cols), qualified(table.relation),
        _analysed(table), sql.Identifier(table.unit))
    from liftlab.db import read_frame

    with reading(conn, table) as src:
        return read_frame(src, query)


def day_counts(conn: psycopg.Connection, spec: ExperimentSpec) -> pl.DataFrame:
    """Analysed units per exposure day (``day``, ``units``) — what the daily partitions must hold."""
    from liftlab.db import read_frame

    table = unit_table(spec)
    if not table.day:
        return pl.DataFrame(schema={"day": pl.Date, "units": pl.Int64})
    query = sql.SQL("select {} as day, count(*)::bigint as units from {} where {} group by 1").format(
        sql.Identifier(table.day), qualified(table.relation), _analysed(table))
    with reading(conn, table) as src:
        return read_frame(src, query)


def dimension_cells(conn: psycopg.Connection, spec: ExperimentSpec, dimensions: Sequence[str]) -> pl.DataFrame:
    """Units per variant × level of every dimension (as text) × exposure day (``day``, where the
    source has exposure times), all units included — the SRM gate's breakdown."""
    from liftlab.db import read_frame

    table = unit_table(spec)
    dims = [sql.SQL("{}::text as {}").format(sql.Identifier(check_identifier(d, "dimension")), sql.Identifier(d))
            for d in dimensions]
    if table.day:
        dims.append(sql.SQL("{}::text as day").format(sql.Identifier(table.day)))
    query = sql.SQL("select {}::text as variant, {}, count(*)::bigint as n from {} group by {}").format(
        sql.Identifier(table.variant), sql.SQL(", ").join(dims), qualified(table.relation),
        sql.SQL(", ").join(sql.Literal(i) for i in range(1, len(dims) + 2)))
    with reading(conn, table) as src:
        return read_frame(src, query)


def crossover_counts(conn: psycopg.Connection, spec: ExperimentSpec) -> list[tuple[str, int, int]]:
    """(first variant, units, units seen in more than one variant) — the contamination gate's input."""
    table = unit_table(spec)
    query = sql.SQL("select {v}::text, count(*), count(*) filter (where {x} > 1) from {rel} group by 1 order by 1").format(
        v=sql.Identifier(table.variant), x=sql.Identifier(table.crossover), rel=qualified(table.relation))
    with reading(conn, table) as src:
        return [(v, int(n), int(m)) for v, n, m in src.execute(query).fetchall()]


def experiment_caps(conn: psycopg.Connection, spec: ExperimentSpec) -> dict[str, float]:
    """The winsorization caps of the spec's capped metrics, fixed from every unit's pre-period
    (:func:`liftlab.experiment_stats.winsorize_caps`)."""
    from liftlab.experiment_stats import capped_covariates, winsorize_caps

    if not spec.caps() and not spec.cap_values():
        return {}
    columns = capped_covariates(spec)
    return winsorize_caps(analysis_frame(conn, spec, columns) if columns else pl.DataFrame(), spec)


def window_done_days(conn: psycopg.Connection, spec: ExperimentSpec, metrics: Sequence[str]) -> pl.DataFrame:
    """``unit_id`` and ``done__<metric>``: the UTC day on which each unit's window of each windowed
    metric (a ratio: its numerator's) is complete (its last day), as recorded when the unit table
    was built."""
    table = unit_table(spec)
    windows = conn.execute("select windows from units.builds where experiment_id = %s", (spec.id,)).fetchone()
    windows = windows[0] if windows else {}
    exprs = []
    for metric in metrics:
        part = spec.catalogue.parts(metric)[0]
        window = windows.get(part) or {"days": spec.catalogue.metric(part).window_days, "dated": False}
        days = sql.Literal(int(window["days"]))
        expr = (sql.SQL("exposure_date + {} - 1") if window["dated"] else
                sql.SQL("((first_exposed_at + make_interval(days => {}) - interval '1 microsecond') at time zone 'UTC')::date"))
        exprs.append(sql.SQL("{} as {}").format(expr.format(days), sql.Identifier(f"done__{metric}")))
    query = sql.SQL("select unit_id, {} from {} where {}").format(sql.SQL(", ").join(exprs), qualified(table.relation),
                                                               _analysed(table))
    return copy_out(conn, query, None, {"unit_id": pl.Utf8, **{f"done__{m}": pl.Date for m in metrics}})


def daily_activity(conn: psycopg.Connection, spec: ExperimentSpec, outcomes: Sequence[str],
                   units_between: tuple[str, str] | None = None) -> pl.DataFrame:
    """``unit_id``, ``day`` and each outcome's contribution per unit and UTC day inside its window
    (the metrics without a window), read from the source's fact tables with the catalogue's
    compiled SQL — what the daily looks accumulate. Sorted by unit and day."""
    from liftlab.sources.base import connection_info, read_only
    from liftlab.sources.warehouse import check_source, connection_of, experiment_sql

    info = connection_info(connection_of(spec), conn)
    frames = []
    with read_only(info) as src:
        q = experiment_sql(spec, check_source(src, spec, spec.id))
        by_fact: dict[str, list[str]] = {}
        for outcome in outcomes:
            by_fact.setdefault(spec.catalogue.metric(outcome).fact, []).append(outcome)
        for fact, names in by_fact.items():
            compiled = q.daily(fact, names, units_between)
            frames.append(copy_out(src, compiled.statement, compiled.params,
                                   {"unit_id": pl.Utf8, "day": pl.Date, **{n: pl.Float64 for n in names}}))
    out = frames[0]
    for frame in frames[1:]:
        out = out.join(frame, on=["unit_id", "day"], how="full", coalesce=True)
    return out.with_columns(pl.col(o).fill_null(0.0) for o in outcomes).sort("unit_id", "day")


def quantile_rows(conn: psycopg.Connection, spec: ExperimentSpec) -> dict[str, pl.DataFrame]:
    """quantile metric → its rows (``unit_id``, ``variant``, ``value``) inside each unit's window,
    read from the source's fact table with the catalogue's compiled SQL."""
    from liftlab.sources.base import connection_info, read_only
    from liftlab.sources.warehouse import check_source, connection_of, experiment_sql

    metrics = spec.quantile_metrics()
    if not metrics:
        return {}
    out = {}
    with read_only(connection_info(connection_of(spec), conn)) as src:
        q = experiment_sql(spec, check_source(src, spec, spec.id))
        for metric in metrics:
            compiled = q.quantile_rows(metric)
            out[metric] = copy_out(src, compiled.statement, compiled.params,
                                   {"unit_id": pl.Utf8, "variant": pl.Utf8, "value": pl.Float64})
    return out
