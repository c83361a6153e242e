"""Frames as people read them: one cell format for the terminal (``liftlab scorecard``, ``plan``)
and the Dagster UI's Markdown previews, so a number looks the same wherever it is shown."""

from __future__ import annotations

import decimal
import math

import polars as pl


def cell(value, column: str = "", digits: int = 4) -> str:
    """One readable cell: no ``nan``, p-values that underflowed shown as a bound, booleans as ✓,
    large numbers with thousands separators, small ones to ``digits`` significant digits."""
    if isinstance(value, decimal.Decimal):
        value = float(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "✓" if value else ""
    if isinstance(value, float):
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if column.startswith(("p_value", "p_adj")) and value < 10 ** -digits:
            return "<1e-16" if value < 1e-16 else f"{value:.1e}"
        if column.endswith("_pct"):
            return f"{value:+.{max(digits - 2, 1)}f} %"
        if abs(value) >= 10 ** digits:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}" if value != 0 and abs(value) < 10 ** -digits else f"{round(value, digits):g}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 1_000 else str(value)
    return str(value)


def markdown_table(frame: pl.DataFrame, max_rows: int = 30, float_digits: int = 4) -> str:
    """A small Markdown preview of a frame (asset metadata)."""
    if frame.is_empty():
        return "_(no rows)_"
    shown = frame.head(max_rows)
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    rows = ["| " + " | ".join(cell(v, c, float_digits).replace("|", "\\|") for c, v in zip(shown.columns, row)) + " |"
            for row in shown.iter_rows()]
    more = [f"\n_{frame.height - max_rows} more rows_"] if frame.height > max_rows else []
    return "\n".join([header, rule, *rows, *more])


def text_table(frame: pl.DataFrame, float_digits: int = 4, max_width: int = 40) -> str:
    """An aligned plain-text table for the terminal: numbers right-aligned, text left-aligned,
    long text cut at ``max_width`` characters."""
    if frame.is_empty():
        return "(no rows)"
    numeric = {c for c, t in frame.schema.items() if t.is_numeric()}
    body = [[cell(v, c, float_digits) for c, v in zip(frame.columns, row)] for row in frame.iter_rows()]
    body = [[v if len(v) <= max_width else v[: max_width - 1] + "…" for v in row] for row in body]
    widths = [max(len(c), *(len(row[i]) for row in body)) for i, c in enumerate(frame.columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if c in numeric else v.ljust(w)
                         for c, v, w in zip(frame.columns, values, widths)).rstrip()

    return "\n".join([line(list(frame.columns)), "  ".join("-" * w for w in widths), *(line(r) for r in body)])
