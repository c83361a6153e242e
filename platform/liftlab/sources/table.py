"""Table sources: a team's unit-level table or view, checked where it is and never copied.

The twin of a file source: the spec declares the table, the unit and variant columns, the
columns with their types and the outcomes. :func:`check_table` verifies the declaration with
set-based queries in a read-only transaction (columns exist with a usable type, unit ids are
present and unique, every variant is declared, numbers are finite) and raises
:class:`~liftlab.sources.base.SourceError` naming the spec file, the key, the table and the
column of the first problem of each kind.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from liftlab.db import qualified
from liftlab.sources.base import SourceError, connection_info, read_only
from liftlab.specs import ExperimentSpec

#: Postgres types a declared column type accepts.
ACCEPTS = {
    "integer": {"int2", "int4", "int8", "numeric"},
    "float": {"int2", "int4", "int8", "float4", "float8", "numeric"},
    "boolean": {"bool"},
    "string": None,  # anything reads as text
}


def check_table(conn: psycopg.Connection, spec: ExperimentSpec, spec_path: Path | str) -> dict:
    """Check a table source against its declaration; returns its row and unit counts."""
    from liftlab.sources.warehouse import _describe

    s = spec.source
    info = connection_info(s.connection, conn, f"{spec_path}: source.connection")
    with read_only(info) as src:
        types = _describe(src, qualified(s.table), s.table, f"{spec_path}: source.table")
        problems = []
        for column, kind in s.columns.items():
            if column not in types:
                problems.append(f"{spec_path}: source.columns.{column}: column {column!r} not in {s.table} "
                                f"(columns: {sorted(types)})")
            elif ACCEPTS[kind] is not None and types[column] not in ACCEPTS[kind]:
                problems.append(f"{spec_path}: source.columns.{column}: column {column!r} of {s.table} is "
                                f"{types[column]}, declared {kind}")
        if problems:
            raise SourceError("\n".join(problems))
        rel, unit, variant = qualified(s.table), sql.Identifier(s.unit_column), sql.Identifier(s.variant_column)
        declared = list(spec.allocation)
        with src.transaction():
            rows, null_units, duplicates, unknown, example = src.execute(
                sql.SQL("select count(*), count(*) filter (where {u} is null), count({u}) - count(distinct {u}), "
                        "count(*) filter (where {v} is null or not ({v}::text = any(%s))), "
                        "min({v}::text) filter (where not ({v}::text = any(%s))) from {rel}").format(u=unit, v=variant, rel=rel),
                (declared, declared)).fetchone()
            floats = [c for c, k in s.columns.items() if k == "float" and types[c] in ("float4", "float8")]
            bad = {}
            if floats:
                counts = src.execute(sql.SQL("select {} from {}").format(sql.SQL(", ").join(
                    sql.SQL("count(*) filter (where {c} in ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8))")
                    .format(c=sql.Identifier(c)) for c in floats), rel)).fetchone()
                bad = {c: int(n) for c, n in zip(floats, counts, strict=True) if n}
            by_variant = dict(src.execute(sql.SQL("select {v}::text, count(*) from {rel} group by 1 order by 1")
                                          .format(v=variant, rel=rel)).fetchall())
    where = f"{spec_path}: source"
    if rows == 0:
        raise SourceError(f"{where}.table: {s.table} has no rows")
    if null_units:
        raise SourceError(f"{where}.unit_column: {null_units:,} row(s) of {s.table} have no unit id ({s.unit_column} is null)")
    if duplicates:
        raise SourceError(f"{where}.unit_column: {duplicates:,} unit id(s) appear more than once in {s.table}.{s.unit_column}: "
                          "a table source has one row per unit")
    if unknown:
        raise SourceError(f"{where}.variant_column: {unknown:,} row(s) of {s.table} have a variant that is null or not "
                          f"declared (e.g. {example!r}; declared: {declared})")
    if bad:
        column, n = next(iter(bad.items()))
        raise SourceError(f"{where}.columns.{column}: {n:,} row(s) of {s.table}.{column} are NaN or infinite; "
                          "use NULL for a missing value")
    return {"table": s.table, "rows": int(rows), "units_by_variant": {k: int(v) for k, v in by_variant.items()}}
