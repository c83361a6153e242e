"""Covariate balance: standardized mean differences (SMD) of pre-period covariates.

For a covariate with arm means ``x̄_v``, ``x̄_b`` and sample variances ``s_v²``, ``s_b²``::

    SMD = (x̄_v − x̄_b) / sqrt((s_v² + s_b²) / 2)

(Austin, P. C. 2009, "Balance diagnostics for comparing the distribution of baseline
covariates between treatment groups in propensity-score matched samples", *Statistics in
Medicine* 28(25) 3083–3107, eq. 1; Cohen's d with the average variance). Unlike a t-test it
does not grow with the sample size, so the customary threshold |SMD| > 0.1 flags an imbalance
that matters whatever N. In a randomized experiment an imbalance is chance or a broken
assignment: it WARNs (the decision is not halted; covariate adjustment handles chance
imbalance), with the table in the check's metadata. Pure module: no Dagster, no database.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from liftlab.gates.result import GateResult

DEFAULT_THRESHOLD = 0.1


def smd_table(frame: pl.DataFrame, *, variant: str = "variant", baseline: str, covariates: Sequence[str]) -> pl.DataFrame:
    """One row per covariate × non-baseline arm: means, SDs (ddof 1), sizes and the SMD.

    Aggregated with polars in one pass (no Python loop over rows). Zero variance in both arms
    gives SMD 0 when the means are equal and ±inf otherwise.
    """
    columns = ["covariate", "variant", "n_baseline", "n_variant", "mean_baseline", "mean_variant",
               "sd_baseline", "sd_variant", "smd"]
    if not covariates or frame.is_empty():
        return pl.DataFrame(schema={c: (pl.Utf8 if c in ("covariate", "variant") else pl.Float64) for c in columns})
    long = frame.select(pl.col(variant).cast(pl.Utf8).alias("variant"), *[pl.col(c).cast(pl.Float64) for c in covariates]).unpivot(
        index="variant", variable_name="covariate", value_name="__value"
    )
    agg = long.group_by("variant", "covariate").agg(
        pl.len().alias("n"), pl.col("__value").mean().alias("mean"), pl.col("__value").var(ddof=1).alias("var")
    )
    base = agg.filter(pl.col("variant") == baseline).drop("variant")
    other = agg.filter(pl.col("variant") != baseline)
    joined = other.join(base, on="covariate", suffix="_baseline")
    pooled = ((pl.col("var") + pl.col("var_baseline")) / 2).sqrt()
    diff = pl.col("mean") - pl.col("mean_baseline")
    out = joined.select(
        "covariate",
        "variant",
        pl.col("n_baseline").cast(pl.Float64),
        pl.col("n").cast(pl.Float64).alias("n_variant"),
        "mean_baseline",
        pl.col("mean").alias("mean_variant"),
        pl.col("var_baseline").sqrt().alias("sd_baseline"),
        pl.col("var").sqrt().alias("sd_variant"),
        pl.when(pooled > 0).then(diff / pooled)
        .when(diff == 0).then(0.0)
        .otherwise(diff.sign() * np.inf)
        .alias("smd"),
    )
    order = {c: i for i, c in enumerate(covariates)}
    return out.sort(pl.col("covariate").replace_strict(order, return_dtype=pl.Int64), "variant").select(columns)


def balance_check(table: pl.DataFrame, threshold: float = DEFAULT_THRESHOLD) -> GateResult:
    """WARN when any |SMD| exceeds ``threshold``; PASS otherwise (never FAIL: see module doc).

    An empty table (the spec declares no pre-period covariate) checks nothing: ``N/A``, never a
    PASS it did not earn."""
    if table.is_empty():
        return GateResult("balance", "N/A", "not applicable: the spec declares no pre-period covariates to compare "
                          "across arms", details={"threshold": threshold, "table": []})
    rows = table.to_dicts()
    finite = [abs(r["smd"]) for r in rows if r["smd"] is not None and not math.isnan(r["smd"])]
    max_abs = max(finite) if finite else math.nan
    bad = [r for r in rows if r["smd"] is not None and not math.isnan(r["smd"]) and abs(r["smd"]) > threshold]
    details = {"threshold": threshold, "max_abs_smd": max_abs, "table": rows}
    if bad:
        text = ", ".join(f"{r['covariate']} in {r['variant']} (SMD {r['smd']:+.3f})" for r in bad)
        return GateResult("balance", "WARN", f"covariate imbalance |SMD| > {threshold:g}: {text}", max_abs, details=details)
    return GateResult("balance", "PASS", f"covariates balanced: max |SMD| = {max_abs:.3f} ≤ {threshold:g}", max_abs, details=details)
