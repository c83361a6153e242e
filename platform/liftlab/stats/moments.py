"""Joint sufficient statistics: the moments CUPED and ratio metrics need, additive like :class:`SampleStats`.

Per arm (and experiment × metric × day × dimension) liftlab stores, for the unit-level
outcome ``y``, the pre-period covariate ``x`` (CUPED, Deng et al. 2013) and the denominator
``d`` of a ratio metric (delta method, Deng et al. 2018)::

    n, Σy, Σy², Σx, Σx², Σxy, Σd, Σd², Σyd, Σxd

All ten are sums over units, so the statistics of a union of disjoint partitions (days,
shards, segments) are the element-wise sums of the partitions' statistics: :class:`JointStats`
is a commutative monoid under ``+`` (property-tested with hypothesis in
``tests/stats/test_moments.py``).  A metric without a covariate stores ``x = 0`` (all
x-moments 0); a mean metric stores ``d = 1`` (``Σd = Σd² = n``, ``Σyd = Σy``), so every
metric is a ratio and a mean is the special case ``d ≡ 1``.

Sums are accumulated with ``numpy.bincount`` over dense group codes in row order — never a
multi-threaded hash ``group_by`` — so recomputing a partition gives bit-identical sums.
Centred (co)moments are computed from the power sums with the exact-rational fallback of
:mod:`liftlab.stats.sufficient` when cancellation is severe.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from fractions import Fraction

import numpy as np
import polars as pl

from .sufficient import SampleStats, _group_codes

__all__ = ["JointStats", "MOMENT_COLUMNS", "aggregate_joint", "merge_joint", "centered", "co_moment"]

#: Stored sum columns after ``n`` (names of the Postgres columns).  ``sum``/``sum_sq`` keep the
#: names of :data:`liftlab.stats.sufficient.STATS_COLUMNS` for backward compatibility.
MOMENT_COLUMNS: tuple[str, ...] = (
    "sum", "sum_sq", "sum_x", "sum_x_sq", "sum_xy", "sum_d", "sum_d_sq", "sum_yd", "sum_xd",
)


@dataclass(frozen=True, slots=True)
class JointStats:
    """Additive sufficient statistics of (y, x, d) for one sample (see module docstring)."""

    n: int
    sum: float
    sum_sq: float
    sum_x: float = 0.0
    sum_x_sq: float = 0.0
    sum_xy: float = 0.0
    sum_d: float = math.nan  # NaN = "mean metric": d ≡ 1 (resolved in __post_init__)
    sum_d_sq: float = math.nan
    sum_yd: float = math.nan
    sum_xd: float = math.nan

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"JointStats.n must be >= 0, got {self.n}")
        if math.isnan(self.sum_d):  # d ≡ 1
            object.__setattr__(self, "sum_d", float(self.n))
            object.__setattr__(self, "sum_d_sq", float(self.n))
            object.__setattr__(self, "sum_yd", float(self.sum))
            object.__setattr__(self, "sum_xd", float(self.sum_x))

    @classmethod
    def empty(cls) -> JointStats:
        return cls(0, 0.0, 0.0)

    @classmethod
    def from_values(cls, y, x=None, d=None) -> JointStats:
        """Statistics of unit-level arrays (rows with a NaN in any given array are dropped)."""
        y = np.asarray(y, dtype=np.float64).ravel()
        x = np.zeros_like(y) if x is None else np.asarray(x, dtype=np.float64).ravel()
        dd = np.ones_like(y) if d is None else np.asarray(d, dtype=np.float64).ravel()
        keep = ~(np.isnan(y) | np.isnan(x) | np.isnan(dd))
        y, x, dd = y[keep], x[keep], dd[keep]
        return cls(
            int(y.size), float(np.sum(y)), float(np.sum(y * y)), float(np.sum(x)), float(np.sum(x * x)),
            float(np.sum(x * y)), float(np.sum(dd)), float(np.sum(dd * dd)), float(np.sum(y * dd)), float(np.sum(x * dd)),
        )

    def __add__(self, other: object) -> JointStats:
        if not isinstance(other, JointStats):
            return NotImplemented
        return JointStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __radd__(self, other: object) -> JointStats:
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    @property
    def y(self) -> SampleStats:
        """The outcome alone, as the backward-compatible :class:`SampleStats`."""
        return SampleStats(self.n, self.sum, self.sum_sq)

    @property
    def x(self) -> SampleStats:
        return SampleStats(self.n, self.sum_x, self.sum_x_sq)

    def as_row(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def co_moment(sab: float, sa: float, sb: float, n: int) -> float:
    """Exact centred co-moment ``Σab − ΣaΣb/n`` of stored doubles (rational arithmetic)."""
    if n <= 0 or not all(math.isfinite(v) for v in (sab, sa, sb)):
        return math.nan
    return float(Fraction(sab) - Fraction(sa) * Fraction(sb) / n)


def centered(sab, sa, sb, n) -> np.ndarray:
    """Vectorised centred co-moments ``Σab − ΣaΣb/n``.

    Float formula, with the exact rational :func:`co_moment` recomputed where cancellation
    could cost more than ~1e-9 relative (|result| < 1e-6·|Σab|).  NaN where ``n <= 0``.
    """
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (sab, sa, sb, n)))
    shape = arrays[0].shape
    sab, sa, sb, n = (np.atleast_1d(a).ravel() for a in arrays)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = sab - sa * sb / n
    out = np.where(n > 0, out, np.nan)
    bad = (n > 0) & np.isfinite(out) & (np.abs(out) < 1e-6 * np.abs(sab))
    for i in np.flatnonzero(bad):
        out[i] = co_moment(float(sab[i]), float(sa[i]), float(sb[i]), int(n[i]))
    return out.reshape(shape)


def aggregate_joint(
    frame: pl.DataFrame,
    by: Sequence[str],
    metrics: Mapping[str, tuple[str, str | None, str | None]],
) -> pl.DataFrame:
    """Reduce unit rows to long :class:`JointStats` rows: one per (``*by``, metric).

    ``metrics`` maps a metric name to ``(y_column, x_column or None, d_column or None)``.
    Rows where ``y`` (or the given ``x``/``d``) is null/NaN are dropped for that metric.
    Sums use ``numpy.bincount`` in row order (bit-identical reruns).  Returns columns
    ``*by, metric, n, sum, sum_sq, sum_x, sum_x_sq, sum_xy, sum_d, sum_d_sq, sum_yd, sum_xd``.
    """
    by = list(by)
    codes, keys = _group_codes(frame, by)
    groups = keys.height if by else 1
    if by and frame.height == 0:
        groups = 0

    def col(name: str | None, default: float) -> np.ndarray:
        if name is None:
            return np.full(frame.height, default)
        return frame[name].cast(pl.Float64).fill_null(np.nan).to_numpy()

    blocks = []
    for metric, (ycol, xcol, dcol) in metrics.items():
        y, x, d = col(ycol, 0.0), col(xcol, 0.0), col(dcol, 1.0)
        keep = ~(np.isnan(y) | np.isnan(x) | np.isnan(d))
        c, y, x, d = codes[keep], y[keep], x[keep], d[keep]

        def s(w):
            return np.bincount(c, weights=w, minlength=groups)[:groups]

        data = {
            "metric": [metric] * groups,
            "n": np.bincount(c, minlength=groups).astype(np.int64)[:groups],
            "sum": s(y), "sum_sq": s(y * y), "sum_x": s(x), "sum_x_sq": s(x * x), "sum_xy": s(x * y),
            "sum_d": s(d), "sum_d_sq": s(d * d), "sum_yd": s(y * d), "sum_xd": s(x * d),
        }
        block = pl.DataFrame(data, schema={"metric": pl.Utf8, "n": pl.Int64, **{k: pl.Float64 for k in MOMENT_COLUMNS}})
        blocks.append(pl.concat([keys, block], how="horizontal") if by else block)
    long = pl.concat(blocks, how="vertical")
    if by:
        long = long.sort(by, nulls_last=True, maintain_order=True)
    return long.select(*by, "metric", "n", *MOMENT_COLUMNS)


def merge_joint(frames: Iterable[pl.DataFrame], by: Sequence[str] = ()) -> pl.DataFrame:
    """Sum long joint-statistics frames over (``*by``, metric) — the monoid lifted to frames.

    Accumulated with ``numpy.bincount`` in row order: the same frames in the same order give
    bit-identical sums.  ``n`` is summed in exact integer arithmetic.
    """
    keys = [*by, "metric"]
    stacked = pl.concat(list(frames), how="vertical_relaxed")
    codes, key_values = _group_codes(stacked, keys)
    groups = key_values.height
    n = np.zeros(groups, dtype=np.int64)
    np.add.at(n, codes, stacked["n"].to_numpy().astype(np.int64))
    merged = key_values.with_columns(
        pl.Series("n", n),
        *[pl.Series(c, np.bincount(codes, weights=stacked[c].cast(pl.Float64).to_numpy(), minlength=groups)) for c in MOMENT_COLUMNS],
    )
    return merged.sort(keys, nulls_last=True).select(*keys, "n", *MOMENT_COLUMNS)
