"""Recording gate outcomes in ``gates.check_results`` (one current row per experiment × check)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import polars as pl
import psycopg

from psycopg import sql

from liftlab.db import qualified, read_frame, replace_slice


def json_safe(value):
    """``value`` with every non-finite float replaced by None (JSON, and so jsonb, has no NaN/inf)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    return value


def record_check(
    conn: psycopg.Connection,
    *,
    experiment_id: str,
    check: str,
    status: str,
    statistic: float | None,
    p_value: float | None,
    details: Mapping,
    run_id: str | None,
) -> None:
    """Replace the experiment's row for ``check``; a halting FAIL also withdraws its published results.

    Withdrawing in the same transaction means no reader can see effects of an experiment whose
    gate has just failed.
    """
    def finite(x: float | None) -> float | None:
        return float(x) if x is not None and math.isfinite(x) else None

    row = pl.DataFrame(
        {
            "experiment_id": [experiment_id],
            "check": [check],
            "status": [status],
            "statistic": [finite(statistic)],
            "p_value": [finite(p_value)],
            "details": [json.dumps(json_safe(details), default=str)],
            "run_id": [run_id],
        },
        schema_overrides={"statistic": pl.Float64, "p_value": pl.Float64},
    )
    with conn.transaction():
        replace_slice(conn, "gates.check_results", row, where={"experiment_id": experiment_id, "check": check})
        if status == "FAIL":
            for table in ("results.effects", "results.sufficient_stats"):
                conn.execute(sql.SQL("delete from {} where experiment_id = %s").format(qualified(table)), (experiment_id,))


def gate_results(conn: psycopg.Connection, experiment_id: str | None = None) -> pl.DataFrame:
    query = 'select experiment_id, "check", status, statistic, p_value, details, run_id, checked_at from gates.check_results'
    if experiment_id is None:
        return read_frame(conn, query + ' order by experiment_id, "check"')
    return read_frame(conn, query + ' where experiment_id = %s order by "check"', (experiment_id,))
