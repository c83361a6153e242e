"""Arm-versus-baseline comparisons on a long sufficient-statistics frame.

:func:`compare_arms` is the frame-level entry point of the frequentist engine:
it takes the output of :func:`liftlab.stats.sufficient.aggregate` (or the
equivalent SQL rollup) and returns one Welch test per (keys…, metric,
variant ≠ baseline) — computed in one vectorised call of
:func:`liftlab.stats.engine.two_sample` (through :func:`liftlab.stats.welch.welch_arrays`),
the platform's one Welch / delta-method kernel — with Holm-adjusted p values across the
variant arms of each metric (Holm 1979) so that "any treatment beats control" claims control
the family-wise error rate.  Pure function: no I/O, no Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from .multiple_testing import holm
from .sufficient import SampleStats
from .welch import welch_arrays

__all__ = ["compare_arms", "RESULT_COLUMNS"]

_STAT_COLS = ("metric", "n", "sum", "sum_sq")

#: Output columns after the key columns, in order.
RESULT_COLUMNS: dict[str, pl.DataType] = {
    "metric": pl.String(),
    "variant": pl.String(),
    "baseline": pl.String(),
    "n_baseline": pl.Int64(),
    "n_variant": pl.Int64(),
    "mean_baseline": pl.Float64(),
    "mean_variant": pl.Float64(),
    "abs_effect": pl.Float64(),
    "abs_se": pl.Float64(),
    "abs_ci_low": pl.Float64(),
    "abs_ci_high": pl.Float64(),
    "rel_effect": pl.Float64(),
    "rel_ci_low": pl.Float64(),
    "rel_ci_high": pl.Float64(),
    "t_stat": pl.Float64(),
    "df": pl.Float64(),
    "p_value": pl.Float64(),
    "p_value_holm": pl.Float64(),
    "method": pl.String(),
}


def compare_arms(
    stats: pl.DataFrame,
    baseline: str,
    variant_col: str = "variant",
    alpha: float = 0.05,
    keys: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Welch-test every non-baseline arm against ``baseline``, per metric.

    Parameters
    ----------
    stats:
        Long sufficient statistics with columns ``variant_col``, ``metric``,
        ``n``, ``sum``, ``sum_sq`` and optionally grouping keys (e.g.
        ``experiment_id``).  Duplicate rows for the same (keys, metric, arm) —
        e.g. several daily partitions — are summed first, which is valid
        because the statistics are additive.
    baseline:
        Value of ``variant_col`` identifying the control arm.  It must occur
        somewhere in ``stats`` (a typo raises ``ValueError``); a (keys, metric)
        group that lacks it yields rows with NaN statistics.
    keys:
        Grouping columns carried to the output; by default every column other
        than ``variant_col`` and the four statistics columns.

    Returns
    -------
    One row per (keys…, metric, variant ≠ baseline), sorted by those columns,
    with the key columns followed by :data:`RESULT_COLUMNS`.  The arm column is
    always named ``variant`` in the output.  ``p_value_holm`` is the Holm (1979)
    adjustment of ``p_value`` across the variant arms of the same (keys,
    metric); ``method`` is ``"welch_t"``.
    """
    required = [variant_col, *_STAT_COLS]
    missing = [c for c in required if c not in stats.columns]
    if missing:
        raise ValueError(f"compare_arms: missing columns {missing}")
    if keys is None:
        keys = [c for c in stats.columns if c not in required]
    keys = list(keys)
    clash = set(keys) & set(RESULT_COLUMNS)
    if clash:
        raise ValueError(f"compare_arms: key columns clash with output columns: {sorted(clash)}")

    baseline = str(baseline)
    frame = stats.with_columns(pl.col(variant_col).cast(pl.String))
    if frame.filter(pl.col(variant_col) == baseline).height == 0:
        raise ValueError(f"compare_arms: baseline arm {baseline!r} not present in column {variant_col!r}")

    group_keys = [*keys, "metric"]
    merged = (
        frame.group_by([*group_keys, variant_col])
        .agg(pl.col("n").sum().cast(pl.Int64), pl.col("sum").cast(pl.Float64).sum(), pl.col("sum_sq").cast(pl.Float64).sum())
        .sort([*group_keys, variant_col], nulls_last=True)
    )

    # Collect every (group, arm ≠ baseline) pair, then one vectorised call of the engine's
    # Welch / delta-method kernel (``welch_arrays`` → ``engine.two_sample``) for all of them.
    meta: list[dict[str, object]] = []
    bases: list[SampleStats] = []
    variants: list[SampleStats] = []
    groups: list[int] = []
    for g, (gkey, part) in enumerate(merged.partition_by(group_keys, as_dict=True, maintain_order=True).items()):
        arms = {
            v: SampleStats(int(n), float(s), float(q))
            for v, n, s, q in part.select(variant_col, "n", "sum", "sum_sq").iter_rows()
        }
        base = arms.get(baseline, SampleStats.empty())
        for arm, st in arms.items():
            if arm == baseline:
                continue
            meta.append({**dict(zip(group_keys, gkey, strict=True)), "variant": arm, "baseline": baseline,
                         "n_baseline": base.n, "n_variant": st.n})
            bases.append(base)
            variants.append(st)
            groups.append(g)

    rows: list[dict[str, object]] = []
    if meta:
        res = welch_arrays(bases, variants, alpha=alpha)
        cols = ("abs_effect", "abs_se", "abs_ci_low", "abs_ci_high", "rel_effect", "rel_ci_low", "rel_ci_high",
                "t_stat", "df", "p_value")
        group = np.asarray(groups)
        holm_p = np.empty(len(meta))
        for g in np.unique(group):  # Holm (1979) across the variant arms of one (keys, metric)
            at = np.flatnonzero(group == g)
            holm_p[at] = holm(res["p_value"][at].astype(np.float64))
        for i, row in enumerate(meta):
            row.update(mean_baseline=float(res["baseline_mean"][i]), mean_variant=float(res["variant_mean"][i]),
                       **{k: float(res[k][i]) for k in cols}, p_value_holm=float(holm_p[i]), method="welch_t")
            rows.append(row)

    schema: dict[str, pl.DataType] = {k: stats.schema[k] for k in keys}
    schema.update(RESULT_COLUMNS)
    out = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    return out.select(list(schema))
