"""From an experiment spec and its unit rows to statistics, effects and power (no Dagster, no I/O).

The effect assets (``defs/effects.py``) are thin wrappers around these functions:

1. :func:`metric_plan` — per metric the unit-level outcome ``y``, CUPED covariate ``x`` (the
   metric's own pre-period value) and ratio denominator ``d``;
2. :func:`daily_statistics` — winsorize (cap fixed from the pre-period), then
   :func:`liftlab.stats.moments.aggregate_joint` per variant × exposure day: the stored,
   mergeable daily partitions;
3. :func:`experiment_effects` — merge the days and run :func:`liftlab.stats.engine.analyze`
   (Welch / delta method, CUPED, confidence sequences, Bayesian summary) and
   :func:`liftlab.stats.engine.adjust` (Holm / BH with adjusted CIs);
4. :func:`power_table` — sample size for the spec's MDE, power and MDE now, days still needed.
"""

from __future__ import annotations

import math

import polars as pl

from liftlab.specs import ExperimentSpec
from liftlab.stats.moments import MOMENT_COLUMNS, aggregate_joint, merge_joint

__all__ = [
    "metric_plan", "unit_columns", "winsorize_units", "daily_statistics", "merge_days", "experiment_effects", "power_table",
    "segment_effects", "EFFECT_COLUMNS", "SEGMENT_DIMENSIONS",
]

EFFECT_COLUMNS = [
    "experiment_id", "metric", "metric_role", "variant", "baseline", "n_baseline", "n_variant",
    "mean_baseline", "mean_variant", "abs_effect", "abs_se", "abs_ci_low", "abs_ci_high",
    "rel_effect", "rel_ci_low", "rel_ci_high", "t_stat", "df", "p_value", "p_value_adj", "alpha", "method", "run_id",
    # 003_stats
    "metric_kind", "rel_se", "alpha_adj", "abs_ci_low_adj", "abs_ci_high_adj", "rel_ci_low_adj", "rel_ci_high_adj",
    "cs_low", "cs_high", "rel_cs_low", "rel_cs_high", "chance_to_win", "expected_loss", "expected_loss_baseline",
    "theta", "variance_reduction", "rho2",
]


def metric_plan(spec: ExperimentSpec) -> dict[str, tuple[str, str | None, str | None]]:
    """metric → (y column, CUPED covariate column or None, denominator column or None)."""
    plan = {}
    for metric in spec.metric_roles():
        ratio = spec.ratio(metric)
        y, d = ratio if ratio else (metric, None)
        plan[metric] = (y, spec.pre_period_column(metric), d)
    return plan


def unit_columns(spec: ExperimentSpec) -> list[str]:
    cols: list[str] = []
    for y, x, d in metric_plan(spec).values():
        cols += [c for c in (y, x, d) if c is not None]
    return list(dict.fromkeys(cols))


def _window_scale(spec: ExperimentSpec) -> float:
    """Metric-window length / pre-period length (converts a pre-period cap to the window)."""
    if spec.start_date and spec.end_date and spec.pre_period_days > 0:
        return ((spec.end_date - spec.start_date).days + 1) / spec.pre_period_days
    return 1.0


def winsorize_units(units: pl.DataFrame, spec: ExperimentSpec) -> tuple[pl.DataFrame, dict[str, float]]:
    """Cap each metric in ``spec.winsorize`` at ``scale × q_p(pre-period)``; its covariate at ``q_p``."""
    from liftlab.stats.winsorize import pre_period_cap

    caps: dict[str, float] = {}
    scale = _window_scale(spec)
    for metric, pct in spec.winsorize.items():
        pre = spec.pre_period_column(metric)
        cap = pre_period_cap(units[pre].to_numpy(), pct, scale)
        caps[metric] = cap
        if not math.isnan(cap):
            units = units.with_columns(pl.col(metric).clip(upper_bound=cap), pl.col(pre).clip(upper_bound=cap / scale))
    return units, caps


def daily_statistics(units: pl.DataFrame, spec: ExperimentSpec) -> pl.DataFrame:
    """Joint sufficient statistics per variant × day (exposure date) × metric, after winsorizing."""
    units, _ = winsorize_units(units, spec)
    return aggregate_joint(units, by=["variant", "day"], metrics=metric_plan(spec))


def merge_days(daily: pl.DataFrame) -> pl.DataFrame:
    """Sum the daily partitions: the statistics of the whole experiment per variant × metric."""
    return merge_joint([daily.select("variant", "metric", "n", *MOMENT_COLUMNS)], by=["variant"])


def experiment_effects(daily: pl.DataFrame, spec: ExperimentSpec) -> pl.DataFrame:
    """Effect rows (one per metric × variant × method) with adjusted p values and CIs."""
    from liftlab.stats.engine import adjust, analyze

    merged = merge_days(daily)
    kinds = {m: "ratio" if spec.ratio(m) else "mean" for m in spec.metric_roles()}
    randomized = spec.design == "randomized"
    plan = metric_plan(spec)
    cuped = [m for m, (_, x, _) in plan.items() if x is not None] if (spec.cuped and randomized) else []
    directions = {m: 1 if spec.direction(m) == "higher_is_better" else -1 for m in spec.metric_roles()}
    table = analyze(
        merged, baseline=spec.baseline, alpha=spec.alpha, kinds=kinds, cuped=cuped, directions=directions,
        keys=[], tau=spec.sequential_tuning, prior_sd=spec.prior_sd,
        base_method=None if randomized else "naive_welch_t",
    )
    table = adjust(table, spec.metric_roles(), alpha=spec.alpha)
    return table.with_columns(
        pl.lit(spec.id).alias("experiment_id"),
        pl.lit(spec.alpha).alias("alpha"),
        pl.col("metric").replace_strict(kinds, default="mean").alias("metric_kind"),
    )


def power_table(effects: pl.DataFrame, daily: pl.DataFrame, spec: ExperimentSpec) -> pl.DataFrame:
    """Power and MDE planning for the primary metric, per variant × method."""
    from liftlab.stats.power import days_needed, mde_at, power_at, sample_size_per_arm

    arms = len(spec.variants) - 1
    alpha_arm = spec.alpha / max(arms, 1)  # Bonferroni level: conservative for the Holm family
    days = daily.filter(pl.col("day").is_not_null())["day"]
    elapsed = (days.max() - days.min()).days + 1 if days.len() else None
    rows = []
    for r in effects.filter(pl.col("metric") == spec.primary_metric).iter_rows(named=True):
        n0, n1, se = r["n_baseline"], r["n_variant"], r["abs_se"]
        sd = se / math.sqrt(1 / n0 + 1 / n1) if (n0 and n1 and se is not None and math.isfinite(se)) else math.nan
        base = r["mean_baseline"]
        mde_abs = spec.mde * abs(base) if (spec.mde is not None and base is not None and math.isfinite(base)) else math.nan
        n_req = sample_size_per_arm(mde_abs, sd, alpha_arm, spec.power) if math.isfinite(mde_abs) else math.nan
        mde_now = mde_at(se, alpha_arm, spec.power) if se is not None and math.isfinite(se) else math.nan
        n_min = min(n0, n1)
        rows.append({
            "experiment_id": spec.id, "metric": r["metric"], "variant": r["variant"], "method": r["method"],
            "alpha": spec.alpha, "alpha_per_arm": alpha_arm, "target_power": spec.power,
            "mde_rel": spec.mde, "mde_abs": mde_abs, "baseline_mean": base, "sd_unit": sd,
            "n_baseline": n0, "n_variant": n1, "n_required_per_arm": n_req,
            "power_at_mde": float(power_at(mde_abs, se, alpha_arm)) if math.isfinite(mde_abs) else math.nan,
            "mde_rel_at_current": mde_now / abs(base) if base else math.nan,
            "days_elapsed": elapsed,
            "units_per_day": n_min / elapsed if elapsed else math.nan,
            "days_needed": days_needed(n_req, n_min, elapsed or 0),
        })
    schema = {
        "experiment_id": pl.Utf8, "metric": pl.Utf8, "variant": pl.Utf8, "method": pl.Utf8, "alpha": pl.Float64,
        "alpha_per_arm": pl.Float64, "target_power": pl.Float64, "mde_rel": pl.Float64, "mde_abs": pl.Float64,
        "baseline_mean": pl.Float64, "sd_unit": pl.Float64, "n_baseline": pl.Int64, "n_variant": pl.Int64,
        "n_required_per_arm": pl.Float64, "power_at_mde": pl.Float64, "mde_rel_at_current": pl.Float64,
        "days_elapsed": pl.Int64, "units_per_day": pl.Float64, "days_needed": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


#: raw.users attributes used as segment dimensions for event-stream experiments.
SEGMENT_DIMENSIONS = ("plan", "device", "engagement_level")


def segment_effects(units: pl.DataFrame, spec: ExperimentSpec, dimensions=SEGMENT_DIMENSIONS) -> pl.DataFrame:
    """Effects of the primary metric within each segment of each dimension (Welch / delta
    method and CUPED), with Benjamini–Hochberg adjusted p values and FCR-adjusted CIs across all
    dimension × segment × arm rows of a method (Benjamini & Hochberg 1995; Benjamini &
    Yekutieli 2005).  ``units`` is :func:`liftlab.units.analysis_frame` plus the dimension
    columns.  Segment statistics are computed with :func:`aggregate_joint`, so they are mergeable
    like the daily partitions (the segments of one dimension sum to the whole experiment).
    """
    from liftlab.stats.engine import adjust, analyze

    primary = spec.primary_metric
    plan = {primary: metric_plan(spec)[primary]}
    units, _ = winsorize_units(units, spec)
    stats = pl.concat([
        aggregate_joint(units.with_columns(pl.col(dim).cast(pl.Utf8).fill_null("(missing)").alias("segment")),
                        ["segment", "variant"], plan).with_columns(pl.lit(dim).alias("dimension"))
        for dim in dimensions
    ], how="vertical_relaxed").select("dimension", "segment", "variant", "metric", "n", *MOMENT_COLUMNS)
    randomized = spec.design == "randomized"
    x = plan[primary][1]
    table = analyze(
        stats, baseline=spec.baseline, alpha=spec.alpha, keys=["dimension", "segment"],
        kinds={primary: "ratio" if spec.ratio(primary) else "mean"},
        cuped=[primary] if (x is not None and spec.cuped and randomized) else [],
        directions={primary: 1 if spec.direction(primary) == "higher_is_better" else -1},
        tau=spec.sequential_tuning, prior_sd=spec.prior_sd, base_method=None if randomized else "naive_welch_t",
    )
    # one BH family per method: every dimension × segment × arm
    return adjust(table, {primary: "secondary"}, alpha=spec.alpha).with_columns(
        pl.lit(spec.id).alias("experiment_id"), pl.lit("segment").alias("metric_role"))
