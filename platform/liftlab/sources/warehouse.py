"""Warehouse sources: a team's assignments and fact tables, compiled from the catalogue.

:func:`build_units` reads the source database (read-only), checks that every table and column
the spec and the catalogue name exists with a usable type, runs the statements of
:class:`liftlab.sources.compile.ExperimentSQL` and returns the unit table: one row per unit
with its variant, exposure, dimensions, attributes, metrics and pre-period twins. The caller
writes it to ``units.<experiment_id>`` in liftlab's own database (the team's tables are only
read). The demo world is a warehouse whose assignments are the world's exposure log
(:data:`liftlab.synth.tables.DEMO_ASSIGNMENTS`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import psycopg
from psycopg import errors, sql

from liftlab.db import copy_out, qualified
from liftlab.sources.base import SourceError, connection_info, read_only
from liftlab.sources.compile import (
    NUMERIC_TYPES, TIME_TYPES, UNIT_COLUMNS, Assign, Compiled, ExperimentSQL, Relations,
)
from liftlab.specs import ExperimentSpec


def assignments_of(spec: ExperimentSpec) -> Assign:
    """The spec's assignments (the demo world's exposure log for ``kind: demo``)."""
    if spec.source.kind == "demo":
        from liftlab.synth.tables import demo_assignments

        a = demo_assignments(spec.id)
    else:
        a = spec.source.assignments
    return Assign(table=a.table, sql_text=a.sql, unit=a.unit, variant=a.variant, timestamp=a.timestamp,
                  where=dict(a.where), label=a.table or "(assignments sql)")


def connection_of(spec: ExperimentSpec) -> str | None:
    return getattr(spec.source, "connection", None)


def attribute_columns(spec: ExperimentSpec) -> list[str]:
    """Unit-table columns the analysis needs: dimensions, covariates, uplift features."""
    declared = spec.catalogue.unit_column_names()
    wanted = [*spec.dimensions, *spec.covariates, *spec.causal_confounders()]
    if spec.causal is not None and spec.causal.group:
        wanted.append(spec.causal.group)
    if spec.uplift is not None:
        from liftlab.uplift.features import check_pre_treatment

        wanted += list(check_pre_treatment(spec, spec.uplift.features))
    return [c for c in dict.fromkeys(wanted) if c in declared]


def twins_of(spec: ExperimentSpec) -> list[str]:
    """Unit-level metrics whose pre-period twin the analysis needs (CUPED, caps, covariates, features)."""
    names = [x[len("pre_"):] for x in (spec.pre_period_column(m) for m in spec.metric_roles()) if x and x.startswith("pre_")]
    wanted = [*spec.covariates, *spec.cuped_covariates.values(), *spec.causal_confounders()]
    if spec.uplift is not None:
        from liftlab.uplift.features import check_pre_treatment

        wanted += list(check_pre_treatment(spec, spec.uplift.features))
    names += [c[len("pre_"):] for c in wanted if c.startswith("pre_") and c[len("pre_"):] in spec.catalogue.metrics]
    return list(dict.fromkeys(names))


def experiment_sql(spec: ExperimentSpec, types: Relations | None = None) -> ExperimentSQL:
    """The compiler for one warehouse or demo experiment."""
    return ExperimentSQL(
        spec.catalogue, assignments_of(spec), start=spec.start_date, end=spec.end_date, pre_days=spec.pre_period_days,
        metrics=spec.unit_metrics(), twins=twins_of(spec) if spec.pre_period_days > 0 else [],
        dimensions=_assignment_dimensions(spec), attributes=attribute_columns(spec), types=types,
    )


def _assignment_dimensions(spec: ExperimentSpec) -> list[str]:
    """Dimensions (and a rollout's group) that are not unit-table attributes: assignment columns."""
    declared = spec.catalogue.unit_column_names()
    group = [spec.causal.group] if spec.causal is not None and spec.causal.group else []
    return [d for d in dict.fromkeys([*spec.dimensions, *group]) if d not in declared]


# ---------------------------------------------------------------------------- describe
def _describe(conn: psycopg.Connection, relation: sql.Composable, label: str, where: str) -> dict[str, str]:
    """column → type name of a table, view or subquery, without reading a row."""
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(sql.SQL("select * from {} as r limit 0").format(relation))
            oids = {d.name: d.type_code for d in cur.description}
            names = dict(cur.execute("select oid::integer, typname::text from pg_type where oid = any(%s)",
                                     (list(set(oids.values())),)).fetchall())
    except errors.UndefinedTable:
        raise SourceError(f"{where}: table {label} does not exist (or is not visible to this database user)") from None
    except errors.InsufficientPrivilege:
        raise SourceError(f"{where}: no permission to read {label}: grant SELECT on it to liftlab's database user") from None
    except psycopg.errors.SyntaxError as exc:
        raise SourceError(f"{where}: {label} does not parse: {str(exc).splitlines()[0]}") from None
    except psycopg.DatabaseError as exc:
        raise SourceError(f"{where}: cannot read {label}: {str(exc).splitlines()[0]}") from None
    return {name: names.get(oid, "unknown") for name, oid in oids.items()}


@dataclass
class Checked:
    """The column types of every relation, and each problem found (with its file and key)."""

    types: Relations = field(default_factory=Relations)
    problems: list[str] = field(default_factory=list)


def check_source(src: psycopg.Connection, spec: ExperimentSpec, spec_path: Path | str) -> Relations:
    """Every table and column the spec and its catalogue metrics name exists with a usable type.

    Raises :class:`SourceError` listing every problem, each naming the spec or metric file, the
    key and the table/column. Reads only the catalogue of the database (``limit 0`` queries).
    """
    cat = spec.catalogue
    a = assignments_of(spec)
    where = f"{spec_path}: source.assignments" if spec.source.kind == "warehouse" else f"{spec_path}: source (demo world)"
    types: dict[str, dict[str, str]] = {}
    problems: list[str] = []

    def describe(relation, label, key) -> dict[str, str] | None:
        if label in types:
            return types[label]
        try:
            types[label] = _describe(src, relation, label, key)
        except SourceError as exc:
            problems.append(str(exc))
            return None
        return types[label]

    assign_cols = describe(a.relation(), a.label, f"{where}.{'table' if a.table else 'sql'}")
    if assign_cols is not None:
        for key in ("unit", "variant", "timestamp"):
            column = getattr(a, key)
            if column not in assign_cols:
                problems.append(f"{where}.{key}: column {column!r} not in {a.label} (columns: {sorted(assign_cols)})")
        if a.timestamp in assign_cols and assign_cols[a.timestamp] not in TIME_TYPES:
            problems.append(f"{where}.timestamp: column {a.timestamp!r} of {a.label} is {assign_cols[a.timestamp]}, "
                            "not a date or timestamp")
        for column in a.where:
            if column not in assign_cols:
                problems.append(f"{where}.where.{column}: column {column!r} not in {a.label} (columns: {sorted(assign_cols)})")
        for i, dim in enumerate(_assignment_dimensions(spec)):
            if dim not in assign_cols:
                problems.append(f"{spec_path}: dimensions.{i}: {dim!r} is neither a column of {a.label} nor of a "
                                f"catalogue unit table (unit tables declare: {sorted(cat.unit_column_names())})")
    compiler = experiment_sql(spec)
    for fact_name in compiler.facts():
        fact = cat.fact_tables[fact_name]
        key = cat.where_declared("fact_tables", fact_name)
        cols = describe(qualified(fact.table), fact.table, f"{key}.table")
        if cols is None:
            continue
        for part in ("unit", "timestamp"):
            if getattr(fact, part) not in cols:
                problems.append(f"{key}.{part}: column {getattr(fact, part)!r} not in {fact.table} (columns: {sorted(cols)})")
        if fact.timestamp in cols and cols[fact.timestamp] not in TIME_TYPES:
            problems.append(f"{key}.timestamp: column {fact.timestamp!r} of {fact.table} is {cols[fact.timestamp]}, "
                            "not a date or timestamp")
    for name in [*compiler.metrics, *compiler.twins, *spec.quantile_metrics()]:
        metric = cat.metric(name)
        fact = cat.fact_tables[metric.fact]
        cols = types.get(fact.table)
        if cols is None:
            continue
        key = cat.where_declared("metrics", name)
        if metric.column and metric.column not in cols:
            problems.append(f"{key}.column: column {metric.column!r} not in {fact.table} (columns: {sorted(cols)})")
        elif metric.column and cols[metric.column] not in NUMERIC_TYPES:
            problems.append(f"{key}.column: column {metric.column!r} of {fact.table} is {cols[metric.column]}, "
                            f"not a number ({metric.aggregate} needs numbers)")
        for column in metric.where:
            if column not in cols:
                problems.append(f"{key}.where.{column}: column {column!r} not in {fact.table} (columns: {sorted(cols)})")
    for name, table in cat.unit_tables.items():
        wanted = [c for c in attribute_columns(spec) if c in table.columns]
        if not wanted:
            continue
        key = cat.where_declared("unit_tables", name)
        cols = describe(qualified(table.table), table.table, f"{key}.table")
        if cols is None:
            continue
        for column in [table.unit, *wanted, *([table.timestamp] if table.timestamp else [])]:
            if column not in cols:
                problems.append(f"{key}: column {column!r} not in {table.table} (columns: {sorted(cols)})")
    clash = [c for c in [*compiler.dimensions, *compiler.attributes] if c in UNIT_COLUMNS]
    if clash:
        problems.append(f"{spec_path}: dimensions: {clash} are reserved column names of the unit table {UNIT_COLUMNS}")
    if problems:
        raise SourceError("\n".join(dict.fromkeys(problems)))
    return Relations(types)


# ---------------------------------------------------------------------------- build
def _polars_type(typname: str | None) -> pl.DataType:
    if typname in ("int2", "int4", "int8", "float4", "float8", "numeric"):
        return pl.Float64
    if typname == "bool":
        return pl.Boolean
    if typname == "date":
        return pl.Date
    return pl.Utf8


def _sql_type(dtype: pl.DataType) -> str:
    return {pl.Float64: "double precision", pl.Boolean: "boolean", pl.Date: "date"}.get(dtype, "text")


@dataclass
class Built:
    """A unit table ready to write, with what was run and counted on the way."""

    frame: pl.DataFrame
    column_types: dict[str, str]  # column → SQL type of units.<id>
    statements: list[Compiled]
    seconds: dict[str, float]
    assignment_summary: dict
    #: metric → {"days": k, "dated": the fact's time is a date}: windows from first exposure
    windows: dict


def _run(src: psycopg.Connection, compiled: Compiled, schema: dict[str, pl.DataType], spec_path) -> pl.DataFrame:
    try:
        return copy_out(src, compiled.statement, compiled.params, schema)
    except errors.InsufficientPrivilege as exc:
        raise SourceError(f"{spec_path}: {compiled.description}: no permission: {str(exc).splitlines()[0]}") from None
    except psycopg.DatabaseError as exc:
        raise SourceError(f"{spec_path}: {compiled.description}: {str(exc).splitlines()[0]}") from None


def build_units(conn: psycopg.Connection, spec: ExperimentSpec, spec_path: Path | str) -> Built:
    """Compile and run the experiment's statements on its (read-only) source database."""
    info = connection_info(connection_of(spec), conn, f"{spec_path}: source.connection")
    seconds: dict[str, float] = {}
    with read_only(info) as src:
        types = check_source(src, spec, spec_path)
        q = experiment_sql(spec, types)
        units_q = q.units()
        a = q.assign
        schema = {"unit_id": pl.Utf8, "variant": pl.Utf8, "first_exposed_at": pl.Utf8, "exposure_date": pl.Date,
                  "n_exposures": pl.Int64, "n_variants": pl.Int64}
        for d in q.dimensions:
            schema[d] = _polars_type(types.type_of(a.label, d))
        for c in units_q.columns[len(schema):]:
            table = spec.catalogue.unit_tables[spec.catalogue.unit_column_names()[c]]
            schema[c] = _polars_type(types.type_of(table.table, c))
        started = time.perf_counter()
        frame = _run(src, units_q, schema, spec_path)
        seconds["units"] = time.perf_counter() - started
        summary = assignment_summary(src, q, spec_path)
        if frame.is_empty():
            raise SourceError(
                f"{spec_path}: source.assignments: no units — {a.label} has {summary['rows']:,} row(s) for "
                f"{a.where or 'this experiment'}, none with a first exposure in {spec.start_date} … {spec.end_date}"
                + (f" ({summary['before_start']:,} before the start, {summary['after_end']:,} after the end)"
                   if summary["rows"] else ""))
        duplicated = frame["unit_id"].is_duplicated()
        if duplicated.any():
            unit = frame["unit_id"].filter(duplicated)[0]
            raise SourceError(f"{spec_path}: unit {unit!r} appears more than once after joining the unit tables "
                              f"{sorted(spec.catalogue.unit_tables)}: a unit table needs one row per unit (or a timestamp)")
        unknown = sorted(set(frame["variant"].unique().to_list()) - set(spec.allocation))
        if unknown:
            raise SourceError(f"{spec_path}: source.assignments.variant: {a.label} has variant(s) {unknown[:5]} that the "
                              f"spec does not declare (variants: {sorted(spec.allocation)})")
        statements = [units_q]
        for fact_name in q.facts():
            fq = q.fact(fact_name)
            started = time.perf_counter()
            part = _run(src, fq, {c: (pl.Utf8 if c == "unit_id" else pl.Float64) for c in fq.columns}, spec_path)
            seconds[fact_name] = time.perf_counter() - started
            frame = frame.join(part, on="unit_id", how="left", maintain_order="left")
            statements.append(fq)
    column_types = {c: ("timestamptz" if c == "first_exposed_at" else _sql_type(t)) for c, t in frame.schema.items()}
    column_types |= {"n_exposures": "bigint", "n_variants": "integer"}
    windows = {}
    for name in q.metrics:
        metric = spec.catalogue.metric(name)
        if metric.window_days:
            windows[name] = {"days": metric.window_days,
                             "dated": types.type_of(spec.catalogue.fact_tables[metric.fact].table,
                                                    spec.catalogue.fact_tables[metric.fact].timestamp) == "date"}
    return Built(frame, column_types, statements, seconds, summary, windows)


def assignment_summary(src: psycopg.Connection, q: ExperimentSQL, spec_path) -> dict:
    """Assignment rows of the experiment: all, outside the window, and invalid (null unit, variant or time)."""
    a = q.assign
    from liftlab.sources.compile import where_clause

    conds, params = where_clause("a", a.where)
    lo, hi = q._exposure_bounds()
    stmt = sql.SQL(
        "select count(*), count(*) filter (where a.{ts}::timestamptz < %s::timestamptz), "
        "count(*) filter (where a.{ts}::timestamptz >= %s::timestamptz), "
        "count(*) filter (where a.{unit} is null or a.{variant} is null or a.{ts} is null), "
        "min(a.{ts}::timestamptz)::text, max(a.{ts}::timestamptz)::text from {rel} a where {cond}"
    ).format(ts=sql.Identifier(a.timestamp), unit=sql.Identifier(a.unit), variant=sql.Identifier(a.variant),
             rel=a.relation(), cond=sql.SQL(" and ").join(conds) if conds else sql.SQL("true"))
    try:
        rows, before, after, invalid, first, last = src.execute(stmt, [lo, hi, *params]).fetchone()
    except psycopg.DatabaseError as exc:
        raise SourceError(f"{spec_path}: source.assignments: {str(exc).splitlines()[0]}") from None
    return {"rows": int(rows), "before_start": int(before), "after_end": int(after), "invalid": int(invalid),
            "first": first, "last": last, "window": [str(q.start), str(q.end)], "relation": a.label}
