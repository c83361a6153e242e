"""Drift of a table against its previous partition: row counts, PSI and KS.

The event stream is partitioned by UTC day; each day is compared with the *previous comparable*
partition — the same weekday one week earlier (``lag=7``, product usage is strongly weekly: a
Monday has ~1.8× the events of the Sunday before it), or the previous day with ``lag=1``:

* **Row count** — ``ratio = n_d / n_{d−lag}``; outside ``[1/max_ratio, max_ratio]`` it warns.
  A replayed (duplicated) day shows up as a ratio near 2.
* **Population Stability Index** of a categorical mix (event types)::

      PSI = Σ_i (a_i − e_i) · ln(a_i / e_i)

  with ``e_i``, ``a_i`` the shares of category ``i`` in the previous and current partition,
  floored at ``eps`` so an empty category does not give infinity (Siddiqi, N. 2006, *Credit
  Risk Scorecards*, Wiley, ch. 8; Yurdakul, B. 2018, "Statistical properties of population
  stability index", PhD thesis, Western Michigan University). Customary reading: < 0.1 stable,
  0.1–0.25 moderate shift, > 0.25 major shift.
* **Two-sample Kolmogorov–Smirnov** for a continuous column (``scipy.stats.ks_2samp``):
  ``D = sup_x |F_prev(x) − F_cur(x)|``; with large samples tiny shifts are significant, so the
  statistic ``D`` is compared with a threshold rather than its p-value.

Pure module: no Dagster, no database.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

PSI_WARN = 0.1
PSI_MAJOR = 0.25
COUNT_MAX_RATIO = 1.5
KS_MAX_D = 0.1


def psi(expected: Mapping[str, float] | np.ndarray, actual: Mapping[str, float] | np.ndarray, eps: float = 1e-4) -> float:
    """PSI of two categorical distributions given as counts or shares (normalised here)."""
    if isinstance(expected, Mapping) or isinstance(actual, Mapping):
        keys = sorted(set(expected) | set(actual))  # type: ignore[arg-type]
        e = np.array([float(expected.get(k, 0.0)) for k in keys])  # type: ignore[union-attr]
        a = np.array([float(actual.get(k, 0.0)) for k in keys])  # type: ignore[union-attr]
    else:
        e, a = np.asarray(expected, float), np.asarray(actual, float)
    if e.sum() <= 0 or a.sum() <= 0:
        return float("nan")
    e = np.maximum(e / e.sum(), eps)
    a = np.maximum(a / a.sum(), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_drift(previous: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic ``D`` and p-value (``scipy.stats.ks_2samp``)."""
    from scipy import stats

    res = stats.ks_2samp(np.asarray(previous, float), np.asarray(current, float))
    return float(res.statistic), float(res.pvalue)


def daily_drift(
    counts: pl.DataFrame,
    *,
    day: str = "day",
    category: str = "category",
    n: str = "n",
    max_ratio: float = COUNT_MAX_RATIO,
    psi_warn: float = PSI_WARN,
    lag: int = 7,
) -> pl.DataFrame:
    """Drift of each day against the day ``lag`` days before (vectorised over days).

    ``counts`` has one row per day × category. Days are put on a complete calendar (a missing
    day has 0 rows, so a lost day is flagged, not skipped). Returns one row per day that has a
    comparison day: ``day``, ``rows``, ``previous_rows``, ``ratio``, ``psi`` (category mix vs
    the comparison day) and ``drift`` (True when the ratio is outside ``[1/max_ratio,
    max_ratio]`` or PSI > ``psi_warn``).
    """
    wide = counts.pivot(on=category, index=day, values=n, aggregate_function="sum").fill_null(0).sort(day)
    if wide.height:
        calendar = pl.DataFrame({day: pl.date_range(wide[day].min(), wide[day].max(), "1d", eager=True)})
        wide = calendar.join(wide, on=day, how="left").fill_null(0)
    cats = [c for c in wide.columns if c != day]
    m = wide.select(cats).to_numpy().astype(float)
    if m.shape[0] <= lag:
        return pl.DataFrame(schema={day: wide.schema[day], "rows": pl.Int64, "previous_rows": pl.Int64,
                                    "ratio": pl.Float64, "psi": pl.Float64, "drift": pl.Boolean})
    rows = m.sum(axis=1)
    share = np.maximum(m / np.where(rows[:, None] > 0, rows[:, None], 1.0), 1e-4)
    shares_prev, shares_cur = share[:-lag], share[lag:]
    psi_values = np.sum((shares_cur - shares_prev) * np.log(shares_cur / shares_prev), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = rows[lag:] / rows[:-lag]
    drift = (ratio > max_ratio) | (ratio < 1 / max_ratio) | (psi_values > psi_warn)
    return pl.DataFrame({
        day: wide[day][lag:],
        "rows": rows[lag:].astype(np.int64),
        "previous_rows": rows[:-lag].astype(np.int64),
        "ratio": ratio,
        "psi": psi_values,
        "drift": drift,
    })
