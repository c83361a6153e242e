"""Load batches into ``raw`` with COPY, quarantining invalid rows and logging the accounting.

Every load writes, in one transaction: the accepted rows (replacing the previous contents of
the target slice), the quarantined rows with their reasons, and a ``raw.load_log`` row whose
``received = accepted + quarantined`` is enforced by a table constraint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl
import psycopg

from liftlab.db import copy_frame, replace_slice
from liftlab.ingest.validate import Split, split_valid


@dataclass(frozen=True)
class LoadReport:
    source: str
    table: str
    received: int
    accepted: int
    quarantined: int

    def as_metadata(self) -> dict[str, int]:
        return {"received": self.received, "accepted": self.accepted, "quarantined": self.quarantined}


def load_batch(
    conn: psycopg.Connection,
    *,
    source: str,
    table: str,
    frame: pl.DataFrame,
    rules: Mapping[str, pl.Expr] | None = None,
    where: Mapping[str, object] | None = None,
    experiment_id: str | None = None,
    file: str | None = None,
    sha256: str | None = None,
    run_id: str | None = None,
) -> LoadReport:
    """Validate ``frame`` and replace the ``where`` slice of ``table`` with its valid rows.

    Must be called inside the caller's transaction or opens its own; either way the rows,
    the quarantine entries and the load-log line commit together.
    """
    split: Split = split_valid(frame, rules or {})
    with conn.transaction():
        replace_slice(conn, table, split.accepted, where=where)
        conn.execute(
            "delete from raw.quarantine where source = %s and coalesce(experiment_id, '') = coalesce(%s, '')",
            (source, experiment_id),
        )
        if split.quarantined.height:
            quarantine = split.quarantined.with_columns(
                pl.lit(source).alias("source"),
                pl.lit(experiment_id, dtype=pl.Utf8).alias("experiment_id"),
                pl.lit(file, dtype=pl.Utf8).alias("file"),
                pl.lit(run_id, dtype=pl.Utf8).alias("run_id"),
            ).select("source", "experiment_id", "file", "row_number", "reason", "record", "run_id")
            with conn.cursor() as cur:
                copy_frame(cur, "raw.quarantine", quarantine)
        conn.execute(
            "insert into raw.load_log (source, experiment_id, file, sha256, received, accepted, quarantined, run_id)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s)",
            (source, experiment_id, file, sha256, split.received, split.accepted.height, split.quarantined.height, run_id),
        )
    return LoadReport(source, table, split.received, split.accepted.height, split.quarantined.height)
