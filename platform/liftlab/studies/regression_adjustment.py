"""Multi-covariate regression adjustment (``cuped_multi``): coverage and variance reduction.

Two studies of :mod:`liftlab.stats.regression_adjustment`:

1. :func:`coverage` — simulated experiments from a SaaS-like model with a known average effect:
   a latent engagement drives Poisson pre-period twins of three metrics and the outcome; plan,
   region and device shift the outcome; a share of new users has no pre-period (their twins are
   missing: they keep the attribute adjustment through the ``has_pre_period`` indicator). The
   treatment multiplies the outcome's rate by ``1 + effect``, so the effect is heterogeneous
   (larger for engaged users) and the noise heteroskedastic; the true average effect is exact
   (lognormal moments). Per simulation: the 95 % CI of ``cuped_multi``, of single CUPED (the
   engine's :func:`~liftlab.stats.cuped.cuped_adjust`, own twin, a missing twin read as 0 as
   the warehouse reads it) and of the unadjusted Welch test, all through
   :func:`liftlab.stats.engine.two_sample`; coverage with its Wilson interval and the mean
   variance reduction ``1 − V/V_raw`` of each.
2. :func:`demo_variance_reduction` — the demo's randomized experiments in a seeded world built
   by :mod:`liftlab.synth` (unit frames computed in polars, as the catalogue defines the
   metrics: outcome over [first exposure day, end date], twin over the ``pre_period_days``
   before): per metric and arm ``1 − V_cuped/V_raw`` (engine) vs ``1 − V_multi/V_raw``.

``python -m liftlab.studies.regression_adjustment --sims 10000`` (coverage) and ``--demo``
(variance reduction on a 100,000-user world, seed of the demo).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from liftlab.stats.regression_adjustment import GramStats, multi_effects, regression_adjust

__all__ = ["CoverageResult", "coverage", "demo_units", "demo_variance_reduction", "RANDOMIZED_DEMO"]

#: The demo's randomized experiments (experiments/*.yaml with ``source: demo``).
RANDOMIZED_DEMO = ("aa_check", "checkout_redesign", "onboarding_adaptive", "winback_email")

# ---------------------------------------------------------------- simulation model
PLAN_P = np.array([0.5, 0.35, 0.15])        # basic, pro, enterprise
PLAN_SHIFT = np.array([0.0, 0.5, 0.9])      # log-rate shift of the outcome
REGION_P = np.array([0.4, 0.3, 0.2, 0.1])
REGION_SHIFT = np.array([0.0, 0.15, -0.2, 0.3])
DEVICE_P = np.array([0.5, 0.35, 0.15])
DEVICE_SHIFT = np.array([0.0, -0.25, 0.1])
LATENT_SLOPE = 0.7                          # outcome log-rate per sd of latent engagement
BASE_LOG_RATE = 0.8
PRE_SLOPES = np.array([0.7, 0.5, 0.3])      # pre twins' log-rate per sd of engagement
PRE_BASE = np.array([1.2, 0.5, -0.3])


def true_control_mean() -> float:
    """E[rate] of the control outcome: E exp(b + s·g + plan + region + device), g ~ N(0, 1)."""
    return float(math.exp(BASE_LOG_RATE + LATENT_SLOPE**2 / 2) * (PLAN_P @ np.exp(PLAN_SHIFT))
                 * (REGION_P @ np.exp(REGION_SHIFT)) * (DEVICE_P @ np.exp(DEVICE_SHIFT)))


def simulate_arm(rng: np.random.Generator, n: int, multiplier: float, new_share: float):
    """One arm's units: outcome ``y`` (n,), covariates ``X`` (n, 12) for cuped_multi (3 twins,
    has-pre indicator, one-hot plan/region/device without their first level) and the own twin
    ``x`` (missing read as 0) for single CUPED."""
    g = rng.standard_normal(n)
    plan = np.searchsorted(np.cumsum(PLAN_P)[:-1], rng.random(n), side="right")
    region = np.searchsorted(np.cumsum(REGION_P)[:-1], rng.random(n), side="right")
    device = np.searchsorted(np.cumsum(DEVICE_P)[:-1], rng.random(n), side="right")
    pre = rng.poisson(np.exp(PRE_BASE[None, :] + PRE_SLOPES[None, :] * g[:, None])).astype(np.float64)
    new = rng.random(n) < new_share
    pre[new] = 0.0  # missing twins of new users read 0 …
    has_pre = (~new & (pre.sum(axis=1) > 0)).astype(np.float64)  # … and the indicator tells them apart
    rate = np.exp(BASE_LOG_RATE + LATENT_SLOPE * g + PLAN_SHIFT[plan] + REGION_SHIFT[region] + DEVICE_SHIFT[device])
    y = rng.poisson(rate * multiplier).astype(np.float64)
    onehot = [(plan == j) for j in (1, 2)] + [(region == j) for j in (1, 2, 3)] + [(device == j) for j in (1, 2)]
    X = np.column_stack([pre, has_pre, *onehot]).astype(np.float64)
    return y, X, pre[:, 0]


@dataclass(frozen=True)
class CoverageResult:
    method: str
    sims: int
    coverage: float
    wilson_low: float
    wilson_high: float
    mean_variance_reduction: float
    mean_abs_se: float


def coverage(sims: int = 10_000, n_per_arm: int = 1_000, arms: int = 2, effect: float = 0.05,
             new_share: float = 0.2, alpha: float = 0.05, seed: int = 2024) -> list[CoverageResult]:
    """Coverage of the (1 − α) CIs of ``cuped_multi``, ``cuped`` and ``welch_t`` (see module
    docstring); every non-baseline arm has the true relative effect ``effect`` (arm j:
    ``effect · j``) and each arm × simulation counts once."""
    from liftlab.stats.cuped import cuped_adjust
    from liftlab.stats.engine import two_sample
    from liftlab.stats.ratio import arm_moments
    from liftlab.studies.error_rates import wilson

    rng = np.random.default_rng(seed)
    mu0 = true_control_mean()
    truth = np.array([mu0 * effect * j for j in range(1, arms)])
    multi, single = [], []
    for _ in range(sims):
        arm_stats, arm_joint = [], []
        for j in range(arms):
            y, X, x = simulate_arm(rng, n_per_arm, 1.0 + effect * j, new_share)
            arm_stats.append(GramStats.from_values(y, X))
            arm_joint.append({"n": float(y.size), "sum": y.sum(), "sum_sq": y @ y, "sum_x": x.sum(), "sum_x_sq": x @ x,
                              "sum_xy": x @ y, "sum_d": float(y.size), "sum_d_sq": float(y.size), "sum_yd": y.sum(),
                              "sum_xd": x.sum()})
        multi.append(GramStats.stack(arm_stats))
        single.append(arm_joint)
    res = regression_adjust(GramStats.stack(multi), 0, alpha)  # (sims, arms − 1)
    # single CUPED and Welch through the engine's kernels, vectorised over simulations
    cols = list(single[0][0])
    a = [{c: np.array([s[j][c] for s in single]) for c in cols} for j in range(arms)]
    m = [arm_moments(x) for x in a]
    rows = []
    out_single, out_raw = [], []
    for j in range(1, arms):
        pooled = arm_moments({c: a[0][c] + a[j][c] for c in cols})
        _, _, e0, e1, v0, v1, vr = cuped_adjust(m[0], m[j], pooled)
        out_single.append((two_sample(e0, e1, v0, v1, m[0]["n"], m[j]["n"], alpha, "t"), vr))
        out_raw.append(two_sample(m[0]["est"], m[j]["est"], m[0]["var"], m[j]["var"], m[0]["n"], m[j]["n"], alpha, "t"))

    def summary(method, lo, hi, vr, se):
        hits = int(((lo <= truth) & (truth <= hi)).sum())
        total = lo.size
        wl, wh = wilson(hits, total)
        return CoverageResult(method, total, hits / total, wl, wh, float(np.nanmean(vr)), float(np.nanmean(se)))

    rows.append(summary("cuped_multi", res["abs_ci_low"], res["abs_ci_high"], res["variance_reduction"], res["abs_se"]))
    lo = np.column_stack([r["abs_ci_low"] for r, _ in out_single])
    hi = np.column_stack([r["abs_ci_high"] for r, _ in out_single])
    rows.append(summary("cuped", lo, hi, np.column_stack([v for _, v in out_single]),
                        np.column_stack([r["abs_se"] for r, _ in out_single])))
    lo = np.column_stack([r["abs_ci_low"] for r in out_raw])
    hi = np.column_stack([r["abs_ci_high"] for r in out_raw])
    rows.append(summary("welch_t", lo, hi, np.zeros_like(lo), np.column_stack([r["abs_se"] for r in out_raw])))
    return rows


# ---------------------------------------------------------------- demo world
def demo_units(world, experiment_id: str, pre_days: int) -> pl.DataFrame:
    """Unit frame of a demo experiment from a generated world, as the catalogue defines the
    metrics (metrics/saas_world.yaml): ``unit_id``, ``variant``, ``day`` (first exposure), the
    unit-level metrics over [first exposure day, end date], their ``pre_*`` twins over the
    ``pre_days`` days before the first exposure day (0 without activity), and the users-table
    attributes. Units exposed in more than one variant are left out."""
    cfg = world.config
    ex = world.exposures.filter(pl.col("experiment_id") == experiment_id)
    one = ex.group_by("user_id").agg(pl.col("variant").n_unique().alias("k")).filter(pl.col("k") == 1)
    units = (ex.join(one.select("user_id"), on="user_id").sort("exposed_at", "user_id")
             .group_by("user_id", maintain_order=True)
             .agg(pl.col("variant").first(), pl.col("exposed_at").first().dt.date().alias("day")))
    t = pl.col("event_type")
    daily = (world.events.join(units.select("user_id"), on="user_id")
             .with_columns(pl.col("event_ts").dt.date().alias("date"))
             .group_by("user_id", "date").agg(
                 (t == "session").sum().alias("sessions"), (t == "ai_call").sum().alias("ai_calls"),
                 (t == "task_completed").sum().alias("tasks_completed"),
                 (t == "support_ticket").sum().alias("support_tickets"),
                 (t == "upgrade").sum().alias("upgrades"),
                 pl.col("value").filter(t == "payment").sum().alias("revenue")))
    j = daily.join(units.select("user_id", "day"), on="user_id")
    win = (pl.col("date") >= pl.col("day")) & (pl.col("date") <= cfg.end_date)
    pre = (pl.col("date") >= pl.col("day") - pl.duration(days=pre_days)) & (pl.col("date") < pl.col("day"))
    sums = ["sessions", "ai_calls", "tasks_completed", "support_tickets", "revenue"]

    def metrics(mask, prefix):
        return [*[pl.col(c).filter(mask).sum().cast(pl.Float64).alias(prefix + c) for c in sums],
                (pl.col("upgrades") > 0).filter(mask).any().cast(pl.Float64).alias(prefix + "converted"),
                (pl.col("sessions") > 0).filter(mask).any().cast(pl.Float64).alias(prefix + "reactivated"),
                ((pl.col("sessions") > 0) & mask).sum().cast(pl.Float64).alias(prefix + "active_days")]

    agg = j.group_by("user_id").agg(*metrics(win, ""), *metrics(pre, "pre_"))
    names = [c for c in agg.columns if c != "user_id"]
    attrs = ["plan", "company_size", "region", "device", "tenure_days", "engagement_score", "engagement_level"]
    return (units.join(agg, on="user_id", how="left").with_columns(pl.col(c).fill_null(0.0) for c in names)
            .join(world.users.select("user_id", *attrs), on="user_id")
            .with_columns(pl.col("user_id").cast(pl.Utf8).alias("unit_id"))
            .sort("variant", "day", "unit_id").drop("user_id"))


def demo_variance_reduction(n_users: int = 100_000, seed: int | None = None, experiments=RANDOMIZED_DEMO,
                            all_metrics: bool = False) -> pl.DataFrame:
    """Per demo experiment × metric (primary only unless ``all_metrics``) × arm: the variance
    reduction of single CUPED (engine) and of ``cuped_multi`` against the unadjusted variance,
    with the covariates :func:`liftlab.stats.regression_adjustment.covariate_plan` takes for the
    spec. Ratio and quantile metrics are skipped (single CUPED only / no statistics)."""
    from liftlab.experiment_stats import engine_options, metric_plan
    from liftlab.specs import load_specs
    from liftlab.stats.engine import analyze
    from liftlab.stats.moments import aggregate_joint
    from liftlab.stats.regression_adjustment import covariate_plan
    from liftlab.synth import WorldConfig, generate_world

    cfg = WorldConfig(n_users=n_users, **({"seed": seed} if seed is not None else {}))  # the demo's world
    world = generate_world(cfg)
    specs = {item.spec.id: item.spec for item in load_specs()}
    rows = []
    for exp in experiments:
        spec = specs[exp]
        units = demo_units(world, cfg.experiment_id(exp), spec.pre_period_days)
        plan = {m: p for m, p in metric_plan(spec).items() if p[2] is None}
        wanted = list(plan) if all_metrics else [spec.primary_metric]
        wanted = [m for m in wanted if m in plan]
        single = analyze(aggregate_joint(units, ["variant"], {m: plan[m] for m in wanted}), keys=[],
                         **engine_options(spec, wanted))
        pre, numeric, categorical = covariate_plan(spec)
        multi = multi_effects(units, [plan[m][0] for m in wanted], spec.baseline, pre=pre, numeric=numeric,
                              categorical=categorical, alpha=spec.alpha)
        multi = multi.with_columns(pl.col("metric").replace(dict(zip([plan[m][0] for m in wanted], wanted))))
        raw = single.filter(pl.col("method") == "welch_t").select("metric", "variant", pl.col("abs_se").alias("se_raw"),
                                                                   pl.col("abs_effect").alias("effect_raw"))
        cup = single.filter(pl.col("method") == "cuped").select("metric", "variant", pl.col("abs_se").alias("se_cuped"),
                                                                 pl.col("variance_reduction").alias("vr_cuped"))
        mul = multi.select("metric", "variant", pl.col("abs_se").alias("se_multi"), pl.col("abs_effect").alias("effect_multi"),
                           pl.col("variance_reduction").alias("vr_multi"), pl.col("rho2").alias("r2_multi"))
        rows.append(raw.join(cup, on=["metric", "variant"], how="left").join(mul, on=["metric", "variant"], how="left")
                    .with_columns(pl.lit(exp).alias("experiment"),
                                  pl.lit(len(pre) + len(numeric) + len(categorical)).alias("covariate_columns"),
                                  pl.lit(units.height).alias("units")))
    out = pl.concat(rows, how="vertical_relaxed")
    return out.select("experiment", "metric", "variant", "units", "vr_cuped", "vr_multi", "r2_multi", "se_raw",
                      "se_cuped", "se_multi", "effect_raw", "effect_multi")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sims", type=int, default=10_000)
    p.add_argument("--n-per-arm", type=int, default=1_000)
    p.add_argument("--arms", type=int, default=2)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--demo", action="store_true", help="variance reduction on the demo world instead")
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--all-metrics", action="store_true")
    args = p.parse_args(argv)
    if args.demo:
        with pl.Config(tbl_rows=100, tbl_cols=20, tbl_width_chars=200, float_precision=4):
            print(demo_variance_reduction(args.users, all_metrics=args.all_metrics))
        return
    for r in coverage(args.sims, args.n_per_arm, args.arms, seed=args.seed):
        print(f"{r.method:12s} coverage {r.coverage:.4f} (Wilson {r.wilson_low:.4f}–{r.wilson_high:.4f}) over "
              f"{r.sims:,} intervals; mean variance reduction {r.mean_variance_reduction:.3f}; mean SE {r.mean_abs_se:.4f}")


if __name__ == "__main__":
    main()
