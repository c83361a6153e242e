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

Each group's sums are taken over its own rows only, in their order (``numpy.add.reduceat`` over
contiguous groups, :func:`aggregate_joint`) — never a multi-threaded hash ``group_by``, whose
partial sums meet in a scheduling-dependent order — so recomputing a partition gives
bit-identical sums.
Centred (co)moments are computed from the power sums with the exact-rational fallback of
:mod:`liftlab.stats.sufficient` when cancellation is severe.
"""

from __future__ import annotations

import math
import os
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


def _run_starts(frame: pl.DataFrame, by: list[str]) -> np.ndarray:
    """First row of every run of equal keys."""
    change = frame.select(
        pl.any_horizontal([pl.col(k).ne_missing(pl.col(k).shift(1)) for k in by]).fill_null(True).alias("c")
    )["c"].to_numpy()
    change[0] = True
    return np.flatnonzero(change)


def _group_order(frame: pl.DataFrame, by: list[str]) -> np.ndarray:
    """A stable permutation that brings each group's rows together, in their input order.

    Each key becomes a small integer (a string through polars' categorical codes, a number or
    date as its offset from the minimum, null as one past the largest) and the keys one mixed-
    radix code; numpy's stable sort is a radix sort on 16-bit codes, so this is one fast pass."""
    code, radix = np.zeros(frame.height, dtype=np.int64), 1
    for k in by:
        col = frame[k]
        if col.dtype in (pl.Utf8, pl.Categorical, pl.Enum):
            c = col.cast(pl.Utf8).cast(pl.Categorical).to_physical().cast(pl.Int64)
        elif col.dtype == pl.Boolean:
            c = col.cast(pl.Int64)
        else:
            c = col.to_physical().cast(pl.Int64)
            c = c - (c.min() or 0)
        size = int(c.max() or 0) + 2
        code += c.fill_null(size - 1).to_numpy() * radix
        radix *= size
    for dtype in (np.int16, np.int32):
        if radix <= np.iinfo(dtype).max:
            code = code.astype(dtype)
            break
    return np.argsort(code, kind="stable")


def grouped_starts(frame: pl.DataFrame, by: list[str]) -> np.ndarray | None:
    """First row of every group if the frame is sorted by the keys (byte order for strings,
    as SQL's ``collate "C"``), else None. A key that is null on every row is constant; other
    nulls send the frame to the sort."""
    if frame.height == 0:
        return np.zeros(0, dtype=np.int64)
    keys = [k for k in by if frame[k].null_count() < frame.height]
    if not keys:
        return np.zeros(1, dtype=np.int64)
    if any(frame[k].null_count() for k in keys):
        return None
    starts = _run_starts(frame, keys)
    # keys are equal within a run: the frame is sorted iff the runs' keys strictly increase
    increasing = pl.col(keys[-1]) > pl.col(keys[-1]).shift(1)
    for k in reversed(keys[:-1]):
        increasing = (pl.col(k) > pl.col(k).shift(1)) | ((pl.col(k) == pl.col(k).shift(1)) & increasing)
    for head in (starts[:1000], starts):  # a shuffled frame fails on its first runs already
        heads = frame.select(keys).gather(pl.Series(head))
        if not heads.select(increasing.fill_null(True).all()).item():
            return None
    return starts


def aggregate_joint(
    frame: pl.DataFrame,
    by: Sequence[str],
    metrics: Mapping[str, tuple[str, str | None, str | None]],
) -> pl.DataFrame:
    """Reduce unit rows to long :class:`JointStats` rows: one per (``*by``, metric).

    ``metrics`` maps a metric name to ``(y_column, x_column or None, d_column or None)``.
    Rows where ``y`` (or the given ``x``/``d``) is null/NaN are dropped for that metric.
    Returns columns ``*by, metric, n, sum, sum_sq, sum_x, sum_x_sq, sum_xy, sum_d, sum_d_sq,
    sum_yd, sum_xd``, sorted by the keys (nulls last), metrics in the given order.

    Each group's rows are summed as one contiguous segment (``numpy.add.reduceat``), in input
    order: the result depends only on a group's own rows and their order, never on other
    groups, threads or scheduling — so a rerun, or the same group inside a larger frame (one
    day partition vs a range of days), gives the same bits. A frame not sorted by the keys is
    first reordered by a stable sort (:func:`_group_order`: row order within a group kept);
    liftlab's own frames come from SQL already sorted by variant and day. Metrics are computed
    in parallel threads (numpy releases the GIL), each on its own arrays. Trivial moments are not
    summed: without a covariate the x-moments are 0, and a mean metric's denominator is d ≡ 1
    (``Σd = Σd² = n``, ``Σyd = Σy``, ``Σxd = Σx``).
    """
    by, metrics = list(by), dict(metrics)
    if not by and frame.height == 0:  # no rows, no keys: the empty statistics of each metric
        return pl.DataFrame([{"metric": m, **JointStats.empty().as_row()} for m in metrics],
                            schema={"metric": pl.Utf8, "n": pl.Int64, **{c: pl.Float64 for c in MOMENT_COLUMNS}})
    starts = grouped_starts(frame, by)
    if starts is None:  # bring each group's rows together (stable), then its runs are the groups
        frame = frame[_group_order(frame, by)]
        starts = _run_starts(frame, by)
    keys = frame.select(by).gather(pl.Series(starts)) if by else pl.DataFrame()
    groups = len(starts)
    sizes = np.diff(np.append(starts, frame.height)).astype(np.int64)

    def column(name: str) -> np.ndarray:
        return frame[name].cast(pl.Float64).fill_null(np.nan).to_numpy()

    def total(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, starts) if groups else np.zeros(0)

    def block(item) -> pl.DataFrame:
        metric, (ycol, xcol, dcol) = item
        y = column(ycol)
        x = column(xcol) if xcol else None
        d = column(dcol) if dcol else None
        missing = np.isnan(y) | (np.isnan(x) if x is not None else False) | (np.isnan(d) if d is not None else False)
        n = sizes
        if missing.any():  # excluded from this metric: counted 0, added as 0
            y = np.where(missing, 0.0, y)
            x = np.where(missing, 0.0, x) if x is not None else None
            d = np.where(missing, 0.0, d) if d is not None else None
            n = total((~missing).astype(np.int64))
        zeros = np.zeros(groups)
        sums = {"sum": total(y), "sum_sq": total(y * y)}
        sums |= ({"sum_x": total(x), "sum_x_sq": total(x * x), "sum_xy": total(x * y)} if x is not None
                 else {"sum_x": zeros, "sum_x_sq": zeros, "sum_xy": zeros})
        if d is not None:
            sums |= {"sum_d": total(d), "sum_d_sq": total(d * d), "sum_yd": total(y * d),
                     "sum_xd": total(x * d) if x is not None else zeros}
        else:
            sums |= {"sum_d": n.astype(np.float64), "sum_d_sq": n.astype(np.float64), "sum_yd": sums["sum"],
                     "sum_xd": sums["sum_x"]}
        out = pl.DataFrame({"metric": [metric] * groups, "n": n, **{c: sums[c] for c in MOMENT_COLUMNS}},
                           schema={"metric": pl.Utf8, "n": pl.Int64, **{c: pl.Float64 for c in MOMENT_COLUMNS}})
        return pl.concat([keys, out], how="horizontal") if by else out

    if frame.height >= 1_000_000 and len(metrics) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(len(metrics), os.cpu_count() or 1)) as pool:
            blocks = list(pool.map(block, metrics.items()))
    else:
        blocks = [block(item) for item in metrics.items()]
    long = pl.concat(blocks, how="vertical")
    if by and long.height:
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
