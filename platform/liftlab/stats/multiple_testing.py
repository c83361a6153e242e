"""Multiplicity-adjusted p values: Holm (FWER) and Benjamini–Hochberg (FDR).

Both return *adjusted* p values — reject ``H_i`` at level ``q`` iff
``adjusted[i] <= q`` — which are monotone in the raw p values and capped at 1.
NaN entries (untestable hypotheses, e.g. a degenerate arm) are passed through
as NaN and do not count towards the number of hypotheses ``m``.  Results agree
with ``statsmodels.stats.multitest.multipletests(method="holm" | "fdr_bh")``
on the non-NaN entries.

Sources: Holm, S. (1979) "A simple sequentially rejective multiple test
procedure", Scandinavian Journal of Statistics 6(2) 65–70; Benjamini, Y. &
Hochberg, Y. (1995) "Controlling the false discovery rate: a practical and
powerful approach to multiple testing", JRSS B 57(1) 289–300.  The adjusted-p
formulation follows Wright, S. P. (1992) "Adjusted p-values for simultaneous
inference", Biometrics 48(4).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["holm", "benjamini_hochberg", "bonferroni_alpha", "fcr_alpha", "adjust_in_groups"]


def _prepare(pvalues: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = np.asarray(pvalues, dtype=np.float64)
    flat = p.ravel()
    ok = ~np.isnan(flat)
    vals = flat[ok]
    if np.any((vals < 0.0) | (vals > 1.0)):
        raise ValueError("p values must lie in [0, 1] (NaN allowed)")
    return p, ok, vals


def _finish(p: np.ndarray, ok: np.ndarray, adjusted: np.ndarray) -> np.ndarray:
    out = np.full(p.size, np.nan)
    out[ok] = adjusted
    return out.reshape(p.shape)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p values (strong FWER control).

    ``adj_(i) = max_{j<=i} min(1, (m − j + 1)·p_(j))`` for sorted p values.
    """
    p, ok, vals = _prepare(pvalues)
    m = vals.size
    if m == 0:
        return _finish(p, ok, vals)
    order = np.argsort(vals, kind="mergesort")
    raw = vals[order] * np.arange(m, 0, -1, dtype=np.float64)
    adj_sorted = np.minimum(np.maximum.accumulate(raw), 1.0)
    adj = np.empty(m)
    adj[order] = adj_sorted
    return _finish(p, ok, adj)


def benjamini_hochberg(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg (1995) step-up adjusted p values (FDR control).

    ``adj_(i) = min_{j>=i} min(1, m·p_(j)/j)`` for sorted p values.
    """
    p, ok, vals = _prepare(pvalues)
    m = vals.size
    if m == 0:
        return _finish(p, ok, vals)
    order = np.argsort(vals, kind="mergesort")
    raw = vals[order] / (np.arange(1, m + 1, dtype=np.float64) / m)
    adj_sorted = np.minimum(np.minimum.accumulate(raw[::-1])[::-1], 1.0)
    adj = np.empty(m)
    adj[order] = adj_sorted
    return _finish(p, ok, adj)


def bonferroni_alpha(m: int, alpha: float) -> float:
    """Per-comparison level of simultaneous CIs for a Holm family of ``m`` hypotheses.

    Holm's step-down test has no exactly compatible intervals; the Bonferroni intervals at
    ``α/m`` give simultaneous coverage ≥ 1 − α and are what Holm-adjusted CIs are reported as
    (Dmitrienko, Tamhane & Bretz, *Multiple Testing Problems in Pharmaceutical Statistics*,
    2010, §2.6).
    """
    return alpha / max(int(m), 1)


def fcr_alpha(pvalues, alpha: float) -> float:
    """Level of FCR-adjusted CIs after Benjamini–Hochberg selection.

    Benjamini, Y. & Yekutieli, D. (2005) "False discovery rate–adjusted multiple confidence
    intervals for selected parameters", JASA 100(469) 71–81: with ``R`` of ``m`` hypotheses
    selected by BH at level ``α``, intervals at level ``1 − R·α/m`` keep the false coverage-
    statement rate ≤ α.  (``R = 0`` → ``α/m``, the most conservative choice.)
    """
    p = np.asarray(pvalues, dtype=np.float64)
    p = p[~np.isnan(p)]
    m = p.size
    if m == 0:
        return alpha
    r = int(np.sum(benjamini_hochberg(p) <= alpha))
    return alpha * max(r, 1) / m


def adjust_in_groups(pvalues, groups, holm_groups, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Adjusted p values and CI levels of many families at once (one per distinct ``groups`` value).

    A family whose ``holm_groups`` entry is true gets :func:`holm` with Bonferroni intervals
    (:func:`bonferroni_alpha`), any other :func:`benjamini_hochberg` with FCR intervals
    (:func:`fcr_alpha`) — exactly those functions' results, family by family (tested), computed
    set-wise so that a simulation of a million experiment × look families costs one sort.
    NaN p values stay NaN and do not count towards a family's size.
    """
    import polars as pl

    p = np.asarray(pvalues, dtype=np.float64)
    if np.any((p < 0.0) | (p > 1.0)):
        raise ValueError("p values must lie in [0, 1] (NaN allowed)")
    frame = pl.DataFrame({
        "row": np.arange(p.size), "g": np.asarray(groups), "holm": np.asarray(holm_groups, dtype=bool),
        "p": pl.Series(p).fill_nan(None),
    })
    valid = pl.col("p").is_not_null()
    m = valid.sum().over("g")
    j = valid.cast(pl.Int64).cum_sum().over("g")  # rank among the family's valid p values (sorted first)
    out = frame.sort("g", "p", nulls_last=True).with_columns(m.alias("m"), j.alias("j")).with_columns(
        pl.when(pl.col("holm"))
        .then(((pl.col("m") - pl.col("j") + 1) * pl.col("p")).cum_max().over("g"))
        .otherwise((pl.col("p") * pl.col("m") / pl.col("j")).cum_min(reverse=True).over("g"))
        .clip(upper_bound=1.0).alias("adj"),
    ).with_columns(
        pl.when(pl.col("m") == 0).then(pl.lit(alpha))
        .when(pl.col("holm")).then(alpha / pl.col("m"))
        .otherwise(alpha * pl.max_horizontal(((pl.col("adj") <= alpha) & valid).sum().over("g"), 1) / pl.col("m"))
        .alias("level"),
    ).sort("row")
    return out["adj"].fill_null(np.nan).to_numpy(), out["level"].cast(pl.Float64).to_numpy()
