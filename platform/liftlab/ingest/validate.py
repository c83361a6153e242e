"""Row-level validation that splits a batch into accepted rows and quarantined rows.

Rules are polars boolean expressions evaluated over the whole batch at once (no Python loop
over rows). A row failing several rules is quarantined once, with every reason joined. The
split is exhaustive by construction: ``received == accepted + quarantined``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class Split:
    accepted: pl.DataFrame
    quarantined: pl.DataFrame  # columns: row_number, reason, record (JSON text)

    @property
    def received(self) -> int:
        return self.accepted.height + self.quarantined.height


def split_valid(frame: pl.DataFrame, rules: Mapping[str, pl.Expr]) -> Split:
    """Apply ``rules`` (reason → expression that is True for *bad* rows).

    ``row_number`` in the quarantine is the 1-based position of the row in ``frame``.
    """
    if not rules:
        return Split(frame, pl.DataFrame(schema={"row_number": pl.Int64, "reason": pl.Utf8, "record": pl.Utf8}))
    flags = [pl.when(expr.fill_null(True)).then(pl.lit(reason)).otherwise(None) for reason, expr in rules.items()]
    checked = frame.with_row_index("__row", offset=1).with_columns(
        pl.concat_str(flags, separator="; ", ignore_nulls=True).alias("__reason")
    )
    bad = pl.col("__reason").is_not_null() & (pl.col("__reason") != "")
    accepted = checked.filter(~bad).drop("__row", "__reason")
    quarantined = checked.filter(bad).select(
        pl.col("__row").cast(pl.Int64).alias("row_number"),
        pl.col("__reason").alias("reason"),
        pl.struct(frame.columns).struct.json_encode().alias("record"),
    )
    return Split(accepted, quarantined)


EVENT_TYPES = ("session", "ai_call", "task_completed", "upgrade", "payment", "support_ticket")

#: Rules for ``raw.events``: a row matching any of them is quarantined with that reason.
EVENT_RULES: dict[str, pl.Expr] = {
    "event_id is null": pl.col("event_id").is_null(),
    # The second and later copies of an event_id (an upstream replay, e.g. a day delivered
    # twice) are quarantined; the first copy is kept. Counting a replayed event twice would
    # inflate every count metric of that day.
    "duplicate event_id": pl.col("event_id").is_not_null() & ~pl.col("event_id").is_first_distinct(),
    "user_id is null": pl.col("user_id").is_null(),
    "event_ts is null": pl.col("event_ts").is_null(),
    "unknown event_type": ~pl.col("event_type").is_in(list(EVENT_TYPES)),
    "payment without amount": (pl.col("event_type") == "payment") & pl.col("value").is_null(),
    "negative revenue": (pl.col("event_type") == "payment") & (pl.col("value") < 0),
    "non-finite value": pl.col("value").is_not_null() & ~pl.col("value").is_finite(),
}

EXPOSURE_RULES: dict[str, pl.Expr] = {
    "user_id is null": pl.col("user_id").is_null(),
    "experiment_id is null": pl.col("experiment_id").is_null(),
    "variant is null": pl.col("variant").is_null(),
    "exposed_at is null": pl.col("exposed_at").is_null(),
}
