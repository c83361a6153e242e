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


#: Units of an event-stream experiment, excluding contaminated ones (exposed to more than one
#: variant: the contamination gate counts them and halts above its threshold). Ordered by unit
#: so that float sums are identical on every run.
_EVENT_UNITS = (
    "select m.user_id::text as unit_id, m.variant, {}{} from marts.fct_unit_metrics m "
    "join marts.fct_exposures e on e.experiment_id = m.experiment_id and e.user_id = m.user_id "
    "where m.experiment_id = %s and e.n_variants = 1 order by m.user_id"
)


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
    columns = [sql.Identifier(check_identifier(m, "metric")) for m in metrics]
    # Ordered, so that float aggregation sees the same order on every run (identical results).
    if spec.source.kind == "file":
        query = sql.SQL("select unit_id, variant, {} from {} order by unit_id").format(
            sql.SQL(", ").join(columns), qualified(source_table(spec))
        )
        params: tuple = ()
    else:
        query = sql.SQL(_EVENT_UNITS).format(
            sql.SQL(""), sql.SQL(", ").join(sql.Identifier("m", check_identifier(name, "metric")) for name in metrics)
        )
        params = (spec.id,)
    frame = read_frame(conn, query, params)
    if frame.is_empty():
        return pl.DataFrame(schema={"unit_id": pl.Utf8, "variant": pl.Utf8, **{m: pl.Float64 for m in metrics}})
    return frame.with_columns([pl.col(m).cast(pl.Float64) for m in metrics])


def analysis_frame(conn: psycopg.Connection, spec: ExperimentSpec, columns: Sequence[str]) -> pl.DataFrame:
    """``unit_id``, ``variant``, ``day`` (the unit's exposure date; null for a file source) and
    the requested unit-level columns (metrics and pre-period covariates) as Float64, ordered by
    unit so that float sums are identical on every run."""
    columns = list(dict.fromkeys(columns))
    idents = sql.SQL(", ").join(sql.Identifier(check_identifier(c, "column")) for c in columns)
    if spec.source.kind == "file":
        query = sql.SQL("select unit_id, variant, null::date as day, {} from {} order by unit_id").format(
            idents, qualified(source_table(spec))
        )
        params: tuple = ()
    else:
        query = sql.SQL(_EVENT_UNITS).format(
            sql.SQL("m.exposure_date as day, "),
            sql.SQL(", ").join(sql.Identifier("m", check_identifier(c, "column")) for c in columns),
        )
        params = (spec.id,)
    frame = read_frame(conn, query, params)
    if frame.is_empty():
        return pl.DataFrame(schema={"unit_id": pl.Utf8, "variant": pl.Utf8, "day": pl.Date, **{c: pl.Float64 for c in columns}})
    return frame.with_columns(pl.col("day").cast(pl.Date), *[pl.col(c).cast(pl.Float64) for c in columns])
