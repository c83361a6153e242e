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
4. :func:`power_table` — sample size for the spec's MDE, power and MDE now, days still needed;
5. :func:`daily_look_statistics` / :func:`look_effects` — the statistics and effects as they
   stood at the end of each day (:mod:`liftlab.stats.looks`), for the cumulative-effect plot.
"""

from __future__ import annotations

import math

import polars as pl

from liftlab.specs import ExperimentSpec
from liftlab.stats.moments import MOMENT_COLUMNS, aggregate_joint, merge_joint

__all__ = [
    "metric_plan", "engine_options", "unit_columns", "winsorize_caps", "winsorize_units", "daily_statistics", "merge_days", "experiment_effects", "power_table",
    "segment_effects", "daily_look_statistics", "look_effects", "EFFECT_COLUMNS", "LOOK_COLUMNS", "SEGMENT_DIMENSIONS",
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


def winsorize_caps(units: pl.DataFrame, spec: ExperimentSpec) -> dict[str, float]:
    """Cap of each metric in ``spec.winsorize``: ``scale × q_p`` of its pre-period values over all
    units of the experiment (``units`` needs only the pre-period columns).

    Fixed before any outcome is seen, and computed from every unit, so the cohorts of each day
    are capped alike whether they are aggregated together or one daily partition at a time.
    """
    from liftlab.stats.winsorize import pre_period_cap

    scale = _window_scale(spec)
    return {
        metric: pre_period_cap(units[spec.pre_period_column(metric)].to_numpy(), pct, scale)
        for metric, pct in spec.winsorize.items()
    }


def winsorize_units(
    units: pl.DataFrame, spec: ExperimentSpec, caps: dict[str, float] | None = None
) -> tuple[pl.DataFrame, dict[str, float]]:
    """Cap each metric in ``spec.winsorize`` at its cap (:func:`winsorize_caps`, from ``units``
    unless given) and its pre-period covariate at ``cap / scale``."""
    caps = winsorize_caps(units, spec) if caps is None else caps
    scale = _window_scale(spec)
    for metric, cap in caps.items():
        if not math.isnan(cap):
            pre = spec.pre_period_column(metric)
            units = units.with_columns(pl.col(metric).clip(upper_bound=cap), pl.col(pre).clip(upper_bound=cap / scale))
    return units, caps


def daily_statistics(units: pl.DataFrame, spec: ExperimentSpec, caps: dict[str, float] | None = None) -> pl.DataFrame:
    """Joint sufficient statistics per variant × day (exposure date) × metric, after winsorizing
    (``caps`` from :func:`winsorize_caps` when ``units`` holds only some days' cohorts)."""
    units, _ = winsorize_units(units, spec, caps)
    return aggregate_joint(units, by=["variant", "day"], metrics=metric_plan(spec))


def merge_days(daily: pl.DataFrame) -> pl.DataFrame:
    """Sum the daily partitions: the statistics of the whole experiment per variant × metric."""
    return merge_joint([daily.select("variant", "metric", "n", *MOMENT_COLUMNS)], by=["variant"])


def engine_options(spec: ExperimentSpec, metrics: list[str] | None = None) -> dict:
    """Keyword arguments of :func:`liftlab.stats.engine.analyze` for a spec's metrics: kind (mean or
    ratio), CUPED where a covariate exists (randomized designs only), good direction, sequential
    tuning, prior, and the name of the unadjusted method (``naive_welch_t`` when not randomized)."""
    metrics = list(spec.metric_roles()) if metrics is None else metrics
    randomized = spec.design == "randomized"
    plan = metric_plan(spec)
    return {
        "baseline": spec.baseline, "alpha": spec.alpha,
        "kinds": {m: "ratio" if spec.ratio(m) else "mean" for m in metrics},
        "cuped": [m for m in metrics if plan[m][1] is not None] if (spec.cuped and randomized) else [],
        "directions": {m: 1 if spec.direction(m) == "higher_is_better" else -1 for m in metrics},
        "tau": spec.sequential_tuning, "prior_sd": spec.prior_sd,
        "base_method": None if randomized else "naive_welch_t",
    }


def experiment_effects(daily: pl.DataFrame, spec: ExperimentSpec) -> pl.DataFrame:
    """Effect rows (one per metric × variant × method) with adjusted p values and CIs."""
    from liftlab.stats.engine import adjust, analyze

    options = engine_options(spec)
    table = analyze(merge_days(daily), keys=[], **options)
    table = adjust(table, spec.metric_roles(), alpha=spec.alpha)
    return table.with_columns(
        pl.lit(spec.id).alias("experiment_id"),
        pl.lit(spec.alpha).alias("alpha"),
        pl.col("metric").replace_strict(options["kinds"], default="mean").alias("metric_kind"),
    )


LOOK_COLUMNS = [
    "experiment_id", "look_date", "metric", "metric_role", "variant", "baseline", "method", "n_baseline", "n_variant",
    "mean_baseline", "mean_variant", "abs_effect", "abs_se", "abs_ci_low", "abs_ci_high", "rel_effect", "rel_ci_low",
    "rel_ci_high", "p_value", "cs_low", "cs_high", "rel_cs_low", "rel_cs_high", "run_id",
]


def look_days(spec: ExperimentSpec, first_exposure, last_activity) -> list:
    """Every day from the start (or first exposure) to the end date (or the last day with data)."""
    from datetime import timedelta

    first = spec.start_date or first_exposure
    last = spec.end_date or last_activity or first
    if first is None:
        return []
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def daily_look_statistics(batches, spec: ExperimentSpec, arms: list[str], days: list, caps: dict[str, float]) -> pl.DataFrame:
    """Joint statistics per look day × variant × metric (:mod:`liftlab.stats.looks`).

    ``batches`` yields disjoint ``(units, activity)`` pairs — :func:`liftlab.units.analysis_frame`
    rows with the metrics' covariates and their :func:`liftlab.units.activity_frame` rows — so
    memory is one batch. Winsorization as in :func:`daily_statistics` (same ``caps``), so the
    last look equals it.
    """
    from liftlab.stats.looks import add_sums, cumulate_looks, look_sums, running_values
    from liftlab.units import EVENT_OUTCOME_RULES

    plan = metric_plan(spec)
    scale = _window_scale(spec)
    outcomes = dict.fromkeys(c for y, _, d in plan.values() for c in (y, d) if c is not None)
    rules = {o: EVENT_OUTCOME_RULES[o] for o in outcomes}
    sums: dict = {}
    for units, activity in batches:
        units = units.with_columns(
            pl.col(spec.pre_period_column(m)).clip(upper_bound=cap / scale) for m, cap in caps.items() if not math.isnan(cap)
        )
        sums = add_sums(sums, look_sums(units, running_values(activity, rules), plan, arms, days, caps))
    return cumulate_looks(sums, arms, days)


def look_effects(stats: pl.DataFrame, spec: ExperimentSpec) -> pl.DataFrame:
    """Effects per look day (Welch / delta method and CUPED, as :func:`experiment_effects`) with the
    confidence sequence. Not multiplicity-adjusted across days: the confidence sequence is the
    interval that stays valid over all looks."""
    from liftlab.stats.engine import analyze

    table = analyze(stats, keys=["look_date"], **engine_options(spec))
    return table.with_columns(
        pl.lit(spec.id).alias("experiment_id"),
        pl.col("metric").replace_strict(spec.metric_roles(), default="secondary").alias("metric_role"),
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
    table = analyze(stats, keys=["dimension", "segment"], **engine_options(spec, [primary]))
    # one BH family per method: every dimension × segment × arm
    return adjust(table, {primary: "secondary"}, alpha=spec.alpha).with_columns(
        pl.lit(spec.id).alias("experiment_id"), pl.lit("segment").alias("metric_role"))
