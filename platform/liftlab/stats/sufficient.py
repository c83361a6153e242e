"""Sufficient statistics for per-unit metrics: ``(n, sum, sum_sq)``.

Why sufficient statistics
-------------------------
Every test in :mod:`liftlab.stats` that compares means (Welch's t test, the
delta-method relative lift) only needs,
per arm and metric, the count ``n``, the sum ``Σx`` and the sum of squares
``Σx²``.  These three numbers are *additive*: the statistics of the union of two
disjoint samples are the element-wise sums of their statistics.  That makes
them the natural storage format for an experimentation warehouse — daily
partitions, shards or SQL ``GROUP BY`` results can be aggregated once and merged
later without revisiting unit-level rows.  This is the design GrowthBook's
``gbstats`` uses (``SampleMeanStatistic(n, sum, sum_squares)``).

Numerical precision
-------------------
The sample variance is recovered from the power sums as

    s² = (Σx² − (Σx)²/n) / (n − 1)

(the "textbook" one-pass formula; see Chan, Golub & LeVeque 1983, "Algorithms
for computing the sample variance: analysis and recommendations", The American
Statistician 37(3)).  The subtraction itself is done here in exact rational
arithmetic on the stored float64 values, so the only error left is the
rounding already present in the stored ``sum`` and ``sum_sq``.  That residual
is inherent to storing raw power sums: the relative error of ``s²`` is of
order ``ε · log2(n) · (1 + mean²/s²)`` with ``ε = 2.2e-16``, whatever the
magnitude of the values.  For a coefficient of variation ``s/mean`` above
1e-2 (revenue, counts, conversion flags, latencies, values around 1e6 with
realistic spread) that is below 1e-9; at CV 1e-3 it is still ~5e-9.  A metric
with a tiny CV around a huge offset (e.g. raw epoch timestamps) should be
centred before aggregation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import polars as pl

__all__ = ["SampleStats", "aggregate", "merge_aggregates", "STATS_COLUMNS"]

#: Column names of the long sufficient-statistics frame, after the key columns.
STATS_COLUMNS: tuple[str, ...] = ("metric", "n", "sum", "sum_sq")


@dataclass(frozen=True, slots=True)
class SampleStats:
    """Additive sufficient statistics of one sample: count, sum, sum of squares.

    Instances are immutable and form a commutative monoid under ``+`` with
    :meth:`empty` as identity, so ``sum(parts, SampleStats.empty())`` (or plain
    ``sum(parts)``) gives the statistics of the pooled sample.
    """

    n: int
    sum: float
    sum_sq: float

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"SampleStats.n must be >= 0, got {self.n}")

    # --- construction -------------------------------------------------------
    @classmethod
    def empty(cls) -> SampleStats:
        """The identity element: no observations."""
        return cls(0, 0.0, 0.0)

    @classmethod
    def from_values(cls, values: np.ndarray | Sequence[float]) -> SampleStats:
        """Statistics of a 1-D array of values (NaN entries are treated as missing)."""
        x = np.asarray(values, dtype=np.float64).ravel()
        x = x[~np.isnan(x)]
        return cls(int(x.size), float(np.sum(x)), float(np.sum(x * x)))

    # --- monoid -------------------------------------------------------------
    def __add__(self, other: object) -> SampleStats:
        if not isinstance(other, SampleStats):
            return NotImplemented
        return SampleStats(self.n + other.n, self.sum + other.sum, self.sum_sq + other.sum_sq)

    def __radd__(self, other: object) -> SampleStats:
        # Lets builtin ``sum(iterable_of_stats)`` work (it starts from the int 0).
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    # --- moments ------------------------------------------------------------
    @property
    def mean(self) -> float:
        """Sample mean ``Σx / n`` (NaN when ``n == 0``)."""
        return self.sum / self.n if self.n > 0 else math.nan

    @property
    def variance(self) -> float:
        """Unbiased sample variance ``(Σx² − (Σx)²/n) / (n − 1)``; NaN when ``n < 2``.

        The centred sum of squares is evaluated exactly (rational arithmetic on
        the stored doubles) and clamped at 0, so cancellation in the final
        subtraction costs nothing and rounding can never yield a negative
        variance.  See the module docstring for the remaining precision bound.
        """
        if self.n < 2:
            return math.nan
        if not (math.isfinite(self.sum) and math.isfinite(self.sum_sq)):
            return math.nan
        m2 = Fraction(self.sum_sq) - Fraction(self.sum) ** 2 / self.n
        return max(float(m2), 0.0) / (self.n - 1)

    @property
    def std(self) -> float:
        """Sample standard deviation ``sqrt(variance)``."""
        return math.sqrt(self.variance) if self.n >= 2 else math.nan


def _group_codes(df: pl.DataFrame, by: list[str]) -> tuple[np.ndarray, pl.DataFrame]:
    """Dense 0-based group code per row, and the key values of each code (sorted, nulls last)."""
    if not by:
        return np.zeros(df.height, dtype=np.int64), pl.DataFrame()
    keys = df.select(by).unique().sort(by, nulls_last=True)
    coded = df.select(by).join(keys.with_row_index("_code"), on=by, how="left", nulls_equal=True, maintain_order="left")
    return coded["_code"].to_numpy().astype(np.int64), keys


def aggregate(
    frame: pl.DataFrame | pl.LazyFrame,
    by: Sequence[str],
    metrics: Sequence[str],
) -> pl.DataFrame:
    """Reduce unit-level rows to long-format sufficient statistics.

    Returns one row per (``*by``, ``metric``) with columns ``*by, metric, n,
    sum, sum_sq`` (``n`` Int64, sums Float64).  Null (and NaN) metric values are
    excluded, so ``n`` is counted per metric.  Rows are ordered by the key
    columns and, within a key, by the order of ``metrics``.

    The sums are accumulated with ``numpy.bincount`` over dense group codes: one
    vectorised pass per metric, in row order, so the same input always gives
    bit-identical sums (a multi-threaded hash ``group_by`` adds partial sums in
    a scheduling-dependent order, which changes the last bits from run to run).

    The output is mergeable: ``aggregate(concat([a, b]))`` equals
    :func:`merge_aggregates` of ``aggregate(a)`` and ``aggregate(b)`` up to
    floating-point rounding of the sums.
    """
    by = list(by)
    metrics = list(dict.fromkeys(metrics))
    if not metrics:
        raise ValueError("aggregate() needs at least one metric")
    overlap = set(by) & set(metrics) | set(by) & set(STATS_COLUMNS)
    if overlap:
        raise ValueError(f"columns used both as key and metric/reserved name: {sorted(overlap)}")

    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    codes, keys = _group_codes(df, by)
    groups = max(keys.height, 1) if by else 1
    if by and df.height == 0:
        groups = 0
    blocks = []
    for metric in metrics:
        values = df[metric].cast(pl.Float64).fill_null(np.nan).to_numpy()
        keep = ~np.isnan(values)
        kept_codes, kept = codes[keep], values[keep]
        block = pl.DataFrame(
            {
                "metric": [metric] * groups,
                "n": np.bincount(kept_codes, minlength=groups).astype(np.int64)[:groups],
                "sum": np.bincount(kept_codes, weights=kept, minlength=groups)[:groups],
                "sum_sq": np.bincount(kept_codes, weights=kept * kept, minlength=groups)[:groups],
            },
            schema={"metric": pl.Utf8, "n": pl.Int64, "sum": pl.Float64, "sum_sq": pl.Float64},
        )
        blocks.append(pl.concat([keys, block], how="horizontal") if by else block)
    long = pl.concat(blocks, how="vertical")
    if by:
        # Blocks are stacked in `metrics` order; a stable sort on the keys keeps that order inside each key.
        long = long.sort(by, nulls_last=True, maintain_order=True)
    return long.select(*by, "metric", "n", "sum", "sum_sq")


def merge_aggregates(frames: Iterable[pl.DataFrame], by: Sequence[str] = ()) -> pl.DataFrame:
    """Sum several long sufficient-statistics frames over (``*by``, ``metric``).

    This is the monoid operation of :class:`SampleStats` lifted to frames: use
    it to combine daily partitions or shards produced by :func:`aggregate`.
    Sums are accumulated in row order (``numpy.bincount``), so merging the same
    frames in the same order always gives bit-identical results.
    """
    keys = [*by, "metric"]
    stacked = pl.concat(list(frames), how="vertical_relaxed")
    codes, key_values = _group_codes(stacked, keys)
    groups = key_values.height
    merged = key_values.with_columns(
        pl.Series("n", np.bincount(codes, weights=stacked["n"].to_numpy().astype(np.float64), minlength=groups)).cast(pl.Int64),
        pl.Series("sum", np.bincount(codes, weights=stacked["sum"].to_numpy(), minlength=groups)),
        pl.Series("sum_sq", np.bincount(codes, weights=stacked["sum_sq"].to_numpy(), minlength=groups)),
    )
    return merged.sort(keys, nulls_last=True).select(*keys, "n", "sum", "sum_sq")
