"""Load batches into ``raw`` with COPY, quarantining invalid rows and logging the accounting.

Every load writes, in one transaction: the accepted rows (replacing the previous contents of
the target slice), the quarantined rows with their reasons, and a ``raw.load_log`` row whose
``received = accepted + quarantined`` is enforced by a table constraint. A large source is
loaded chunk by chunk (:class:`SliceLoad`), so memory does not grow with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl
import psycopg
from psycopg import sql

from liftlab.db import copy_frame, qualified, replace_slice
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


class SliceLoad:
    """Load one slice of a table from a stream of chunks, inside the caller's transaction.

    Opening replaces the slice (``where``; the whole table if None) and the source's quarantine;
    each :meth:`add` validates a chunk with the row rules (vectorised) and COPYs its accepted and
    quarantined rows; :meth:`finish` writes the ``raw.load_log`` line whose
    ``received = accepted + quarantined`` a table constraint enforces. Quarantine row numbers
    are 1-based positions in the whole stream. Memory is one chunk, whatever the stream's size.

    ``unique=(column, reason)`` quarantines the second and later rows of a key across chunks too
    (the rules see one chunk at a time): a chunk whose key range is disjoint from every earlier
    accepted range — an append-only log, the synthetic world — costs nothing more; a chunk that
    overlaps one is checked exactly against the rows already loaded.
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        *,
        source: str,
        table: str,
        rules: Mapping[str, pl.Expr] | None = None,
        where: Mapping[str, object] | None = None,
        unique: tuple[str, str] | None = None,
        experiment_id: str | None = None,
        file: str | None = None,
        sha256: str | None = None,
        run_id: str | None = None,
    ) -> None:
        self.conn, self.source, self.table, self.rules = conn, source, table, dict(rules or {})
        self.unique, self.experiment_id, self.file, self.sha256, self.run_id = unique, experiment_id, file, sha256, run_id
        self.received = self.accepted = self.quarantined = 0
        self._ranges: list[tuple[int, int]] = []
        replace_slice(conn, table, pl.DataFrame(), where=where)
        conn.execute(
            "delete from raw.quarantine where source = %s and coalesce(experiment_id, '') = coalesce(%s, '')",
            (source, experiment_id),
        )

    def _seen_before(self, keys: pl.Series) -> pl.Series | None:
        """Rows whose key an earlier chunk already loaded (None when no range overlaps)."""
        column, _ = self.unique
        present = keys.drop_nulls()
        if present.is_empty():
            return None
        lo, hi = present.min(), present.max()
        overlapping = [(a, b) for a, b in self._ranges if a <= hi and lo <= b]
        if not overlapping:
            return None
        query = sql.SQL("select distinct {} from {} where {} between %s and %s").format(
            sql.Identifier(column), qualified(self.table), sql.Identifier(column))
        loaded = [row[0] for row in self.conn.execute(query, (lo, hi)).fetchall()]
        return keys.is_in(pl.Series(loaded, dtype=keys.dtype)).fill_null(False)

    def add(self, frame: pl.DataFrame) -> None:
        rules = self.rules
        if self.unique and frame.height:
            column, reason = self.unique
            seen = self._seen_before(frame[column])
            if seen is not None and seen.any():
                earlier = pl.lit(seen)
                rules = {**rules, reason: (rules[reason] | earlier) if reason in rules else earlier}
        split: Split = split_valid(frame, rules)
        with self.conn.cursor() as cur:
            copy_frame(cur, self.table, split.accepted)
            if split.quarantined.height:
                copy_frame(cur, "raw.quarantine", split.quarantined.with_columns(
                    pl.col("row_number") + self.received,
                    pl.lit(self.source).alias("source"),
                    pl.lit(self.experiment_id, dtype=pl.Utf8).alias("experiment_id"),
                    pl.lit(self.file, dtype=pl.Utf8).alias("file"),
                    pl.lit(self.run_id, dtype=pl.Utf8).alias("run_id"),
                ).select("source", "experiment_id", "file", "row_number", "reason", "record", "run_id"))
        if self.unique and split.accepted.height:
            keys = split.accepted[self.unique[0]].drop_nulls()
            if not keys.is_empty():
                self._ranges.append((keys.min(), keys.max()))
        self.received += split.received
        self.accepted += split.accepted.height
        self.quarantined += split.quarantined.height

    def finish(self) -> LoadReport:
        self.conn.execute(
            "insert into raw.load_log (source, experiment_id, file, sha256, received, accepted, quarantined, run_id)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s)",
            (self.source, self.experiment_id, self.file, self.sha256, self.received, self.accepted, self.quarantined,
             self.run_id),
        )
        return LoadReport(self.source, self.table, self.received, self.accepted, self.quarantined)


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
    """Validate ``frame`` and replace the ``where`` slice of ``table`` with its valid rows: a
    :class:`SliceLoad` of one chunk, in its own transaction (or the caller's)."""
    with conn.transaction():
        load = SliceLoad(conn, source=source, table=table, rules=rules, where=where, experiment_id=experiment_id,
                         file=file, sha256=sha256, run_id=run_id)
        load.add(frame)
        return load.finish()
