"""Small helpers shared by the asset modules (no business logic here)."""


from datetime import timedelta

import dagster as dg
import polars as pl

from liftlab.specs import LoadedSpec, load_specs

OWNER = "team:experimentation-platform"

#: Retry policy of every asset and check that touches Postgres or files. A dropped connection or
#: a restarting server raises (psycopg.OperationalError, or DatabaseUnavailable when it cannot
#: connect) and Dagster runs the step again after 2 s, then 4 s. Every write replaces its slice
#: in one transaction, so a retried step starts from the state before the failed attempt.
#: Errors that a retry cannot fix (a bad spec or file) raise ``Failure(allow_retries=False)``.
io_retry = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL)

#: Data older than this is stale: the daily chain runs every 24 h, plus slack for a slow day.
DAILY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=30), warn_window=timedelta(hours=26))


def specs_by_id() -> dict[str, LoadedSpec]:
    return {loaded.spec.id: loaded for loaded in load_specs()}


def spec_for_partition(partition_key: str) -> LoadedSpec:
    specs = specs_by_id()
    if partition_key not in specs:
        raise KeyError(f"no experiment spec with id {partition_key!r} in experiments/ (known: {sorted(specs)})")
    return specs[partition_key]


def _cell(value, column: str, digits: int) -> str:
    """One readable cell: no ``nan``, p-values that underflowed shown as a bound, booleans as ✓."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, bool):
        return "✓" if value else ""
    if isinstance(value, float):
        if column.startswith("p_value") and value < 10 ** -digits:
            return "<1e-16" if value < 1e-16 else f"{value:.1e}"
        if abs(value) >= 10 ** digits:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}" if value != 0 and abs(value) < 10 ** -digits else f"{round(value, digits):g}"
    return str(value).replace("|", "\\|")


def markdown_table(frame: pl.DataFrame, max_rows: int = 30, float_digits: int = 4) -> str:
    """A small Markdown preview of a frame for asset metadata."""
    if frame.is_empty():
        return "_(no rows)_"
    shown = frame.head(max_rows)
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    rows = ["| " + " | ".join(_cell(v, c, float_digits) for c, v in zip(shown.columns, row)) + " |"
            for row in shown.iter_rows()]
    more = [f"\n_{frame.height - max_rows} more rows_"] if frame.height > max_rows else []
    return "\n".join([header, rule, *rows, *more])
