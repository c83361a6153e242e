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
    "metric_plan", "engine_options", "unit_columns", "winsorize_caps", "winsorize_units", "daily_statistics", "merge_days",
    "experiment_effects", "quantile_effects", "power_table", "slice_effects", "look_plan", "daily_look_statistics", "windowed_look_statistics",
    "look_effects", "EFFECT_COLUMNS", "LOOK_COLUMNS",
]

EFFECT_COLUMNS = [
    "experiment_id", "metric", "metric_role", "variant", "baseline", "n_baseline", "n_variant",
    "mean_baseline", "mean_variant", "abs_effect", "abs_se", "abs_ci_low", "abs_ci_high",
    "rel_effect", "rel_ci_low", "rel_ci_high", "t_stat", "df", "p_value", "p_value_adj", "alpha", "method", "run_id",
    # 003_stats
    "metric_kind", "rel_se", "alpha_adj", "abs_ci_low_adj", "abs_ci_high_adj", "rel_ci_low_adj", "rel_ci_high_adj",
    "cs_low", "cs_high", "rel_cs_low", "rel_cs_high", "chance_to_win", "expected_loss", "expected_loss_baseline",
    "theta", "variance_reduction", "rho2",
    # 010_own_data
    "n_window_incomplete",
    # 012_one_estimate
    "is_decision_estimate",
    # 014_exact_error_rates
    "cs_low_adj", "cs_high_adj", "rel_cs_low_adj", "rel_cs_high_adj", "inference",
]


def metric_plan(spec: ExperimentSpec) -> dict[str, tuple[str, str | None, str | None]]:
    """metric → (y column, CUPED covariate column or None, denominator column or None), for every
    metric with sufficient statistics (quantile metrics are estimated from their rows)."""
    plan = {}
    for metric in spec.metric_roles():
        if spec.metric_kind(metric) == "quantile":
            continue
        ratio = spec.ratio(metric)
        y, d = ratio if ratio else (metric, None)
        plan[metric] = (y, spec.pre_period_column(metric), d)
    return plan


def unit_columns(spec: ExperimentSpec) -> list[str]:
    cols: list[str] = []
    for y, x, d in metric_plan(spec).values():
        cols += [c for c in (y, x, d) if c is not None]
    return list(dict.fromkeys(cols))


def window_scale(spec: ExperimentSpec, metric: str | None = None) -> float:
    """Metric-window length / pre-period length (converts a pre-period cap to the window): the
    catalogue's ``window_days`` where the metric has one, else the experiment's length."""
    if spec.pre_period_days <= 0:
        return 1.0
    if metric is not None and spec.uses_catalogue and metric in spec.catalogue.metrics:
        days = spec.catalogue.metrics[metric].window_days
        if days:
            return days / spec.pre_period_days
    if spec.start_date and spec.end_date:
        return ((spec.end_date - spec.start_date).days + 1) / spec.pre_period_days
    return 1.0


def winsorize_caps(units: pl.DataFrame, spec: ExperimentSpec) -> dict[str, float]:
    """Cap of each capped metric: ``scale × q_p`` of its pre-period values over all units of the
    experiment for a percentile cap (``spec.caps()``; ``units`` needs only the pre-period
    columns), or the catalogue's fixed ``cap_value``.

    Fixed before any outcome is seen, and computed from every unit, so the cohorts of each day
    are capped alike whether they are aggregated together or one daily partition at a time.
    """
    from liftlab.stats.winsorize import pre_period_cap

    caps = {
        metric: pre_period_cap(units[spec.pre_period_column(metric)].to_numpy(), pct, window_scale(spec, metric))
        for metric, pct in spec.caps().items()
    }
    return caps | {metric: float(value) for metric, value in spec.cap_values().items() if metric not in caps}


def capped_covariates(spec: ExperimentSpec) -> list[str]:
    """The pre-period columns :func:`winsorize_caps` reads."""
    return list(dict.fromkeys(spec.pre_period_column(m) for m in spec.caps()))


def winsorize_units(
    units: pl.DataFrame, spec: ExperimentSpec, caps: dict[str, float] | None = None
) -> tuple[pl.DataFrame, dict[str, float]]:
    """Cap each capped metric at its cap (:func:`winsorize_caps`, from ``units`` unless given) and
    its pre-period covariate at ``cap / scale`` (the same cap, per day of the pre-period)."""
    caps = winsorize_caps(units, spec) if caps is None else caps
    for metric, cap in caps.items():
        if not math.isnan(cap) and metric in units.columns:
            units = units.with_columns(pl.col(metric).clip(upper_bound=cap))
            pre = spec.pre_period_column(metric)
            if pre in units.columns:
                units = units.with_columns(pl.col(pre).clip(upper_bound=cap / window_scale(spec, metric)))
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
    plan = metric_plan(spec)
    metrics = list(plan) if metrics is None else metrics
    randomized = spec.design == "randomized"
    return {
        "baseline": spec.baseline, "alpha": spec.alpha,
        "kinds": {m: "ratio" if spec.ratio(m) else "mean" for m in metrics},
        "cuped": [m for m in metrics if plan[m][1] is not None] if (spec.cuped and randomized) else [],
        "directions": {m: 1 if spec.direction(m) == "higher_is_better" else -1 for m in metrics},
        "tau": spec.sequential_tuning, "prior_sd": spec.prior_sd,
        "base_method": None if randomized else "naive_welch_t",
    }


def quantile_effects(rows: dict[str, pl.DataFrame], spec: ExperimentSpec) -> pl.DataFrame:
    """Effect rows (method ``quantile``) of event-level quantile metrics: per metric, the pooled
    rows of each arm (``unit_id``, ``variant``, ``value``) give the arm's quantile with a
    cluster-robust CI (:mod:`liftlab.stats.quantile`, Woodruff's interval with the delta-method
    variance of the CDF, Deng et al. 2018), each arm against the baseline with the normal
    reference; the confidence sequence and the Bayesian summary come from the same estimate and
    variance, as for every other method. Unit counts are the arms' units with at least one row."""
    import numpy as np

    from liftlab.stats.bayes import bayes_summary
    from liftlab.stats.engine import ENGINE_COLUMNS
    from liftlab.stats.quantile import quantile_effect, quantile_stats
    from liftlab.stats.sequential import confidence_sequence

    out = []
    for metric, frame in rows.items():
        q = spec.catalogue.metric(metric).q
        arms = {v: quantile_stats(g["value"].to_numpy(), g["unit_id"].to_numpy(), q, spec.alpha)
                for (v,), g in frame.group_by("variant")}
        base = arms.get(spec.baseline)
        for arm in [v.name for v in spec.variants if v.name != spec.baseline]:
            if base is None or arm not in arms:
                continue
            e = quantile_effect(base, arms[arm], spec.alpha)
            ntot = np.array([base.n_units + arms[arm].n_units], dtype=float)
            cs = confidence_sequence(np.array([e.abs_effect]), np.array([e.abs_se ** 2]), ntot, spec.alpha, spec.sequential_tuning)
            rcs = confidence_sequence(np.array([e.rel_effect]), np.array([e.rel_se ** 2]), ntot, spec.alpha, spec.sequential_tuning)
            good = np.array([1.0 if spec.direction(metric) == "higher_is_better" else -1.0])
            bayes = bayes_summary(np.array([e.rel_effect]), np.array([e.rel_se ** 2]), good, spec.prior_sd)
            out.append({
                "metric": metric, "variant": arm, "baseline": spec.baseline, "method": "quantile",
                "n_baseline": base.n_units, "n_variant": arms[arm].n_units, "mean_baseline": e.control_quantile,
                "mean_variant": e.treatment_quantile, "abs_effect": e.abs_effect, "abs_se": e.abs_se,
                "abs_ci_low": e.abs_ci_low, "abs_ci_high": e.abs_ci_high, "rel_effect": e.rel_effect, "rel_se": e.rel_se,
                "rel_ci_low": e.rel_ci_low, "rel_ci_high": e.rel_ci_high, "t_stat": e.z_stat, "df": math.nan,
                "p_value": e.p_value, "cs_low": float(cs[0][0]), "cs_high": float(cs[1][0]),
                "rel_cs_low": float(rcs[0][0]), "rel_cs_high": float(rcs[1][0]),
                "chance_to_win": float(bayes["chance_to_win"][0]), "expected_loss": float(bayes["expected_loss"][0]),
                "expected_loss_baseline": float(bayes["expected_loss_baseline"][0]),
                "theta": math.nan, "variance_reduction": math.nan, "rho2": math.nan,
            })
    return pl.DataFrame(out, schema=ENGINE_COLUMNS)


def experiment_effects(daily: pl.DataFrame, spec: ExperimentSpec, window_incomplete: dict[str, int] | None = None,
                       quantile_rows: dict[str, pl.DataFrame] | None = None) -> pl.DataFrame:
    """Effect rows (one per metric × variant × method) with adjusted p values and CIs.

    ``window_incomplete``: unit-level metric → units of the experiment left out because their
    window was not complete at the cut-off (a ratio counts its parts' largest).
    ``quantile_rows``: quantile metric → its pooled rows (:func:`quantile_effects`); the quantile
    rows join the same multiple-testing families as the other metrics."""
    from liftlab.decide import inference_policy
    from liftlab.stats.engine import adjust, analyze

    options = engine_options(spec)
    table = analyze(merge_days(daily), keys=[], **options) if options["kinds"] else pl.DataFrame()
    if quantile_rows:
        table = pl.concat([t for t in (table, quantile_effects(quantile_rows, spec)) if t.height], how="vertical_relaxed")
    table = adjust(table, spec.metric_roles(), alpha=spec.alpha, tau=spec.sequential_tuning)
    options["kinds"] |= {m: "quantile" for m in (quantile_rows or {})}
    left_out = {}
    if window_incomplete is not None:
        for metric, (y, _, d) in metric_plan(spec).items():
            left_out[metric] = max(int(window_incomplete.get(c, 0)) for c in (y, d) if c is not None)
    return mark_decision_estimates(table.with_columns(
        pl.lit(spec.id).alias("experiment_id"),
        pl.lit(spec.alpha).alias("alpha"),
        pl.lit(inference_policy(spec)).alias("inference"),
        pl.col("metric").replace_strict(options["kinds"], default="mean").alias("metric_kind"),
        pl.col("metric").replace_strict(left_out, default=None, return_dtype=pl.Int64).alias("n_window_incomplete"),
    ), spec)


def mark_decision_estimates(table: pl.DataFrame, spec: ExperimentSpec) -> pl.DataFrame:
    """``is_decision_estimate``: the one row per metric × arm the decision reads (the first
    method of ``decide.METHOD_PREFERENCE`` present) — what reports, plots and the scorecard show.
    A design that was not randomized is decided on its causal estimate: none of its rows is."""
    from liftlab.decide import METHOD_PREFERENCE

    if table.is_empty():
        return table.with_columns(pl.lit(False).alias("is_decision_estimate"))
    rank = {m: i for i, m in enumerate(METHOD_PREFERENCE)}
    ranked = table.with_columns(pl.col("method").replace_strict(rank, default=len(rank), return_dtype=pl.Int64).alias("_rank"))
    best = pl.col("_rank") == pl.col("_rank").min().over("metric", "variant")
    return ranked.with_columns(
        (best & (pl.col("_rank") < len(rank)) & pl.lit(spec.design == "randomized")).alias("is_decision_estimate")
    ).drop("_rank")


LOOK_COLUMNS = [
    "experiment_id", "look_date", "metric", "metric_role", "variant", "baseline", "method", "n_baseline", "n_variant",
    "mean_baseline", "mean_variant", "abs_effect", "abs_se", "abs_ci_low", "abs_ci_high", "rel_effect", "rel_ci_low",
    "rel_ci_high", "p_value", "cs_low", "cs_high", "rel_cs_low", "rel_cs_high", "run_id",
    # 014_exact_error_rates: the sequences at the family's level, as the decision reads them
    "alpha_adj", "cs_low_adj", "cs_high_adj", "rel_cs_low_adj", "rel_cs_high_adj",
]


def look_days(spec: ExperimentSpec, first_exposure, last_activity) -> list:
    """Every day from the start (or first exposure) to the end date (or the last day with data),
    and on past the end date while windows that started before it complete (``last_activity``)."""
    from datetime import timedelta

    first = spec.start_date or first_exposure
    last = max(d for d in (spec.end_date, last_activity, first) if d is not None) if first is not None else None
    if first is None:
        return []
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


#: How a unit-level aggregate accumulates day by day in the looks (:mod:`liftlab.stats.looks` kinds).
LOOK_KINDS = {"count": "sum", "sum": "sum", "any": "any", "count_distinct_days": "count_days"}


def look_plan(spec: ExperimentSpec) -> tuple[dict, dict, list[str]]:
    """:func:`metric_plan` split for the daily looks: metrics that accumulate day by day from
    exposure (no ``window_days``), metrics that enter when their window is complete (with their
    final value, as in the final analysis), and metrics without looks (maxima and quantiles)."""
    daily, windowed, none = {}, {}, []
    for metric, (y, x, d) in metric_plan(spec).items():
        if spec.metric_kind(metric) == "quantile":
            none.append(metric)
            continue
        parts = [spec.catalogue.metric(c) for c in (y, d) if c is not None]
        if any(p.aggregate == "max" for p in parts):
            none.append(metric)
        elif any(p.window_days for p in parts):
            windowed[metric] = (y, x, d)
        else:
            daily[metric] = (y, x, d)
    return daily, windowed, none


def look_rules(spec: ExperimentSpec, plan: dict) -> dict:
    """outcome → :class:`~liftlab.stats.looks.OutcomeRule` reading the outcome's daily column."""
    from liftlab.stats.looks import OutcomeRule

    outcomes = dict.fromkeys(c for y, _, d in plan.values() for c in (y, d) if c is not None)
    return {o: OutcomeRule(o, LOOK_KINDS[spec.catalogue.metric(o).aggregate]) for o in outcomes}


def _capped_pre(units: pl.DataFrame, spec: ExperimentSpec, caps: dict[str, float]) -> pl.DataFrame:
    """Pre-period covariates capped as :func:`winsorize_units` caps them."""
    return units.with_columns(
        pl.col(spec.pre_period_column(m)).clip(upper_bound=cap / window_scale(spec, m))
        for m, cap in caps.items() if not math.isnan(cap) and spec.pre_period_column(m) in units.columns
    )


def daily_look_statistics(batches, spec: ExperimentSpec, arms: list[str], days: list, caps: dict[str, float]) -> dict:
    """Look sums (not yet accumulated) of the metrics that accumulate day by day.

    ``batches`` yields disjoint ``(units, activity)`` pairs — :func:`liftlab.units.analysis_frame`
    rows with the metrics' covariates, and per unit and UTC day its contribution to each outcome
    (:meth:`liftlab.sources.compile.ExperimentSQL.daily`) — so memory is one batch.
    Winsorization as in :func:`daily_statistics` (same ``caps``), so the last look equals it.
    """
    from liftlab.stats.looks import add_sums, look_sums, running_values

    plan, _, _ = look_plan(spec)
    rules = look_rules(spec, plan)
    sums: dict = {}
    for units, activity in batches:
        sums = add_sums(sums, look_sums(_capped_pre(units, spec, caps), running_values(activity, rules), plan, arms,
                                        days, caps))
    return sums


def windowed_look_statistics(units: pl.DataFrame, spec: ExperimentSpec, arms: list[str], days: list,
                             caps: dict[str, float]) -> dict:
    """Look sums of the metrics with a window: a unit enters on the day its window completes
    (``done__<metric>`` in ``units``), with its final value — as the final analysis counts it;
    a unit whose window is not complete (NaN) never enters."""
    from liftlab.stats.looks import look_sums

    _, plan, _ = look_plan(spec)
    units = _capped_pre(units, spec, caps)
    sums: dict = {}
    for metric, (y, x, d) in plan.items():
        outcomes = [c for c in (y, d) if c is not None]
        part = units.filter(*[pl.col(c).is_not_nan() & pl.col(c).is_not_null() for c in outcomes]).with_columns(
            pl.col(f"done__{metric}").alias("day"))
        running = part.select("unit_id", "day", *[pl.col(c) for c in outcomes],
                              *[pl.lit(0.0).alias(f"{c}__prev") for c in outcomes])
        sums |= look_sums(part, running, {metric: (y, x, d)}, arms, days, caps)
    return sums


def look_effects(stats: pl.DataFrame, spec: ExperimentSpec) -> pl.DataFrame:
    """Effects per look day (Welch / delta method and CUPED, as :func:`experiment_effects`) with the
    confidence sequences, per arm (``cs_*``) and at the family's level (``cs_*_adj``, what the
    sequential decision reads). Not multiplicity-adjusted across days: the confidence sequence is
    the interval that stays valid over all looks."""
    from liftlab.stats.engine import adjust, analyze

    table = analyze(stats, keys=["look_date"], **engine_options(spec))
    return adjust(table, spec.metric_roles(), alpha=spec.alpha, keys=["look_date"], tau=spec.sequential_tuning
                  ).with_columns(pl.lit(spec.id).alias("experiment_id"))


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


SLICE_COLUMNS = [
    "experiment_id", "dimension", "slice", "metric", "metric_role", "variant", "baseline", "method", "estimated", "note",
    "n_baseline", "n_variant", "mean_baseline", "mean_variant", "abs_effect", "abs_se", "abs_ci_low", "abs_ci_high",
    "rel_effect", "rel_ci_low", "rel_ci_high", "p_value", "p_value_adj", "alpha", "run_id",
]


def slice_effects(units: pl.DataFrame, spec: ExperimentSpec, caps: dict[str, float] | None = None) -> pl.DataFrame:
    """Effects of every metric within each slice (level) of each of the spec's ``dimensions``.

    ``units``: :func:`liftlab.units.analysis_frame` rows with the metrics' columns plus one text
    column per dimension (a missing level reads ``(missing)``). Statistics are the same joint
    sufficient statistics as the whole experiment's (:func:`aggregate_joint`: the slices of a
    dimension sum to it), winsorized with the experiment's caps, analysed by the same engine
    (Welch / delta method and CUPED). A slice × arm with fewer than ``spec.slice_min_units``
    units in either arm is reported with its counts, not estimated. Multiplicity: one
    Benjamini–Hochberg family per metric × method across every estimated dimension × slice ×
    arm (Benjamini & Hochberg 1995) — a slice table is exploration, its discoveries are
    controlled for the false-discovery rate, not treated as pre-registered tests.
    """
    from liftlab.stats.engine import adjust, analyze

    plan = metric_plan(spec)
    if not spec.dimensions or not plan or units.is_empty():
        return pl.DataFrame(schema={c: pl.Utf8 for c in SLICE_COLUMNS})
    units, _ = winsorize_units(units, spec, caps)
    stats = pl.concat([
        aggregate_joint(units.with_columns(pl.col(dim).cast(pl.Utf8).fill_null("(missing)").alias("slice")),
                        ["slice", "variant"], plan).with_columns(pl.lit(dim).alias("dimension"))
        for dim in spec.dimensions
    ], how="vertical_relaxed").select("dimension", "slice", "variant", "metric", "n", *MOMENT_COLUMNS)
    table = analyze(stats, keys=["dimension", "slice"], **engine_options(spec))
    small = (pl.col("n_baseline") < spec.slice_min_units) | (pl.col("n_variant") < spec.slice_min_units)
    estimated = table.filter(~small)
    adjusted = adjust(estimated, {m: "secondary" for m in plan}, alpha=spec.alpha, keys=["metric"], tau=spec.sequential_tuning) if estimated.height else None
    reported = table.filter(small).with_columns(
        pl.lit(False).alias("estimated"),
        pl.format("fewer than {} units per arm: reported, not estimated", pl.lit(spec.slice_min_units)).alias("note"),
        *[pl.lit(None, dtype=pl.Float64).alias(c) for c in (
            "abs_effect", "abs_se", "abs_ci_low", "abs_ci_high", "rel_effect", "rel_ci_low", "rel_ci_high", "p_value")],
        pl.lit(None, dtype=pl.Float64).alias("p_value_adj"),
    )
    parts = [reported.select(_slice_select())]
    if adjusted is not None:
        parts.append(adjusted.with_columns(pl.lit(True).alias("estimated"), pl.lit(None, dtype=pl.Utf8).alias("note"))
                     .select(_slice_select()))
    roles = spec.metric_roles()
    return pl.concat(parts, how="vertical_relaxed").with_columns(
        pl.lit(spec.id).alias("experiment_id"), pl.lit(spec.alpha).alias("alpha"),
        pl.col("metric").replace_strict(roles, default="secondary").alias("metric_role"),
    ).sort("dimension", "slice", "metric", "variant", "method")


def _slice_select() -> list[str]:
    return ["dimension", "slice", "metric", "variant", "baseline", "method", "estimated", "note", "n_baseline",
            "n_variant", "mean_baseline", "mean_variant", "abs_effect", "abs_se", "abs_ci_low", "abs_ci_high",
            "rel_effect", "rel_ci_low", "rel_ci_high", "p_value", "p_value_adj"]
