"""Unit-level analysis data for one experiment, wherever its rows live.

Experiments on the event stream read ``marts.fct_unit_metrics`` / ``marts.fct_exposures``
(built by dbt); experiments on a declared file read ``raw.src_<experiment_id>``. Either way
the analysis code receives the same shape: ``unit_id``, ``variant`` and one column per
metric. Identifiers are validated and quoted; values are parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import psycopg
from psycopg import sql

from liftlab.db import check_identifier, qualified, read_frame
from liftlab.specs import ExperimentSpec


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
    """``unit_id``, ``variant`` and the requested metric columns as Float64."""
    columns = [sql.Identifier(check_identifier(m, "metric")) for m in metrics]
    # Ordered, so that float aggregation sees the same order on every run (identical results).
    if spec.source.kind == "file":
        query = sql.SQL("select unit_id, variant, {} from {} order by unit_id").format(
            sql.SQL(", ").join(columns), qualified(source_table(spec))
        )
        params: tuple = ()
    else:
        query = sql.SQL(
            "select user_id::text as unit_id, variant, {} from marts.fct_unit_metrics "
            "where experiment_id = %s order by user_id"
        ).format(sql.SQL(", ").join(columns))
        params = (spec.id,)
    frame = read_frame(conn, query, params)
    if frame.is_empty():
        return pl.DataFrame(schema={"unit_id": pl.Utf8, "variant": pl.Utf8, **{m: pl.Float64 for m in metrics}})
    return frame.with_columns([pl.col(m).cast(pl.Float64) for m in metrics])
