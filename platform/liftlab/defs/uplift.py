"""Uplift layer: who to target, not only whether the treatment works on average.

For every spec with an ``uplift:`` block, each non-baseline arm is modelled against the
baseline with S/T/X/R/DR meta-learners (causalml) and a class-transformation baseline,
cross-fitted over K folds (``liftlab.uplift.analysis``): every unit is scored by models that
never saw it, and all units give Qini/AUUC with bootstrap CIs (and a simultaneous band over
the learners, for the best one), the oracle share (synthetic data), calibration by decile,
the targeting economics and the segments.
causalml and scikit-learn are imported inside the asset functions only.
"""

import os

import dagster as dg
import polars as pl

from liftlab import config
from liftlab.db import read_frame, replace_slice
from liftlab.defs.common import OWNER, inline_png, io_retry, markdown_table
from liftlab.defs.resources import PostgresResource
from liftlab.specs import load_specs

MODEL_COLUMNS = [
    "experiment_id", "arm", "baseline", "metric", "learner", "base_model", "is_best", "qini", "qini_ci_low",
    "qini_ci_high", "qini_simul_ci_low", "qini_simul_ci_high", "auuc", "auuc_ci_low", "auuc_ci_high", "oracle_qini", "oracle_share", "expected_oracle_share",
    "uplift_at_10", "uplift_at_20", "uplift_at_30", "uplift_at_50", "calibration_slope", "calibration_gap",
    "n_train", "n_test", "n_folds", "n_repeats", "fit_seconds", "n_base_fits", "run_id",
    # 014_exact_error_rates: the best learner's Qini chosen on one half, estimated on the other
    "qini_heldout", "qini_heldout_se", "qini_heldout_ci_low", "qini_heldout_ci_high", "heldout_learners",
]
SCORE_COLUMNS = [
    "experiment_id", "arm", "metric", "learner", "unit_id", "variant", "fold", "treated", "outcome",
    "predicted_uplift", "predicted_control", "segment", "run_id",
]
DECILE_COLUMNS = [
    "experiment_id", "arm", "metric", "learner", "bin", "n", "n_treated", "n_control", "predicted_uplift",
    "mean_treated", "mean_control", "realised_uplift", "se", "run_id",
]
EXPLAIN_COLUMNS = ["experiment_id", "arm", "metric", "learner", "feature", "importance", "importance_sd", "run_id"]
POLICY_COLUMNS = [
    "experiment_id", "arm", "metric", "learner", "policy", "k_pct", "n_targeted", "n_units", "uplift",
    "incremental_conversions", "revenue", "cost", "profit", "roi", "profit_per_1000", "profit_ci_low",
    "profit_ci_high", "profit_vs_all", "vs_all_ci_low", "vs_all_ci_high", "cost_per_contact",
    "value_per_conversion", "run_id",
]
SEGMENT_COLUMNS = [
    "experiment_id", "arm", "metric", "learner", "segment", "n", "share", "n_treated", "mean_treated",
    "mean_control", "realised_uplift", "ci_low", "ci_high", "true_precision", "true_recall", "run_id",
]


class UpliftRunConfig(dg.Config):
    """Optional narrowing of a run (tests, ad-hoc reruns); the defaults come from the specs."""

    experiments: list[str] = []  # empty → every spec with an uplift block
    learners: list[str] = []  # empty → the spec's learners
    n_bootstrap: int | None = None  # None → the spec's n_bootstrap
    n_folds: int | None = None  # None → the spec's folds
    n_repeats: int | None = None  # None → the spec's repeats


def uplift_specs(experiments: list[str] | None = None):
    out = [item.spec for item in load_specs() if item.spec.uplift is not None]
    if experiments:
        unknown = set(experiments) - {s.id for s in out}
        if unknown:
            raise dg.Failure(f"no spec with an uplift block for {sorted(unknown)}", allow_retries=False)
        out = [s for s in out if s.id in experiments]
    return out


def _reports_dir():
    path = config.reports_dir() / "uplift"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _with(frame: pl.DataFrame, columns: list[str], run_id: str) -> pl.DataFrame:
    frame = frame.with_columns(pl.lit(run_id).alias("run_id"))
    return frame.select([pl.col(c) if c in frame.columns else pl.lit(None).alias(c) for c in columns])


def _plot_qini(curves: pl.DataFrame, title: str, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for learner, part in curves.group_by("learner", maintain_order=True):
        name = learner[0]
        style = dict(color="k", lw=2) if name == "oracle" else dict(ls=":", color="grey") if name == "covariate_ceiling" else {}
        n = part["n_top"].max()
        axes[0].plot(part["fraction"], part["qini"] / n, label=name, **style)
        axes[1].plot(part["fraction"], part["gain"] / n, label=name, **style)
    first = curves.filter(pl.col("learner") == curves["learner"][0])
    n = first["n_top"].max()
    axes[0].plot(first["fraction"], first["random_qini"] / n, "k--", lw=1, label="random")
    axes[1].plot([0, 1], [0, first["gain"][-1] / n], "k--", lw=1, label="random")
    axes[0].set(title="Qini curve", xlabel="share of units targeted (by predicted uplift)", ylabel="incremental outcomes per unit")
    axes[1].set(title="Uplift (gain) curve", xlabel="share of units targeted", ylabel="gain per unit")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


@dg.multi_asset(
    retry_policy=io_retry,
    specs=[
        dg.AssetSpec(["results", "uplift_models"], group_name="uplift", kinds={"python", "postgres"}, owners=[OWNER],
                     deps=[dg.AssetDep(dg.AssetKey(["units", "unit_metrics"]), partition_mapping=dg.AllPartitionMapping()),
                           ["truth", "unit_effects"], ["raw", "experiment_specs"]],
                     description="Per experiment × arm × outcome × learner (S/T/X/R/DR, class transformation, "
                     "single-feature rule): cross-fitted (out-of-fold) Qini coefficient and AUUC with bootstrap CIs, the simultaneous "
                     "band over learners, uplift at k, calibration, oracle share."),
        dg.AssetSpec(["results", "uplift_scores"], group_name="uplift", kinds={"postgres"}, owners=[OWNER],
                     description="Out-of-fold predicted uplift and segment of every unit by every learner (and the fold that scored it)."),
        dg.AssetSpec(["results", "uplift_deciles"], group_name="uplift", kinds={"postgres"}, owners=[OWNER],
                     description="Calibration: mean predicted vs realised uplift per decile of the ranking."),
        dg.AssetSpec(["results", "uplift_explanations"], group_name="uplift", kinds={"postgres"}, owners=[OWNER],
                     description="Grouped permutation importance of the features for the best learner's predicted uplift."),
    ],
    name="uplift_learners",
)
def uplift_learners(context: dg.AssetExecutionContext, config: UpliftRunConfig, postgres: PostgresResource):
    from liftlab.uplift.analysis import analyse_experiment
    from liftlab.uplift_io import load_units, uplift_features
    from liftlab.units import unit_table_exists

    # The environment can narrow every run too (tests and quick demos): LIFTLAB_UPLIFT_LEARNERS
    # (comma-separated), LIFTLAB_UPLIFT_BOOTSTRAP, LIFTLAB_UPLIFT_FOLDS and LIFTLAB_UPLIFT_REPEATS;
    # run config wins.
    env_learners = [x for x in os.environ.get("LIFTLAB_UPLIFT_LEARNERS", "").split(",") if x]
    env_boot = os.environ.get("LIFTLAB_UPLIFT_BOOTSTRAP")
    env_folds = os.environ.get("LIFTLAB_UPLIFT_FOLDS")
    learners_override = config.learners or env_learners
    boot_override = config.n_bootstrap if config.n_bootstrap is not None else (int(env_boot) if env_boot else None)
    folds_override = config.n_folds if config.n_folds is not None else (int(env_folds) if env_folds else None)
    env_repeats = os.environ.get("LIFTLAB_UPLIFT_REPEATS")
    repeats_override = config.n_repeats if config.n_repeats is not None else (int(env_repeats) if env_repeats else None)
    specs = uplift_specs(config.experiments)
    tables = {"models": [], "scores": [], "deciles": [], "explanations": []}
    plots = {}
    run_id = context.run_id
    with postgres.connect() as conn:
        for spec in specs:
            up = spec.uplift
            if not unit_table_exists(conn, spec):
                context.log.warning(f"{spec.id}: its units were never built (see its units/unit_metrics run): skipped")
                continue
            units = load_units(conn, spec)
            if units.is_empty():
                context.log.warning(f"{spec.id}: no units, skipped")
                continue
            arms = up.arms or [v.name for v in spec.variants if v.name != spec.baseline]
            result = analyse_experiment(
                units, experiment_id=spec.id, baseline=spec.baseline, arms=arms, outcomes=up.outcomes,
                features=list(uplift_features(spec)), learners=learners_override or up.learners,
                backend=up.base_model, n_folds=folds_override or up.folds,
                n_repeats=repeats_override or up.repeats, seed=up.seed,
                n_boot=boot_override if boot_override is not None else up.n_bootstrap,
                min_uplift=up.segment_min_uplift, log=context.log.info,
            )
            models = _with(result.frame("models"), MODEL_COLUMNS, run_id)
            scores = _with(result.frame("scores"), SCORE_COLUMNS, run_id)
            deciles = _with(result.frame("deciles"), DECILE_COLUMNS, run_id)
            explanations = _with(result.frame("explanations"), EXPLAIN_COLUMNS, run_id)
            where = {"experiment_id": spec.id}
            replace_slice(conn, "results.uplift_models", models, where=where)
            replace_slice(conn, "results.uplift_scores", scores, where=where)
            replace_slice(conn, "results.uplift_deciles", deciles, where=where)
            replace_slice(conn, "results.uplift_explanations", explanations, where=where)
            conn.commit()
            curves = result.frame("curves")
            for (arm, metric), part in curves.group_by("arm", "metric", maintain_order=True):
                path = _reports_dir() / f"qini_{spec.id}_{arm}_{metric}.png".replace(" ", "_")
                _plot_qini(part, f"{spec.id}: {arm} vs {spec.baseline}, {metric}", path)
                plots[f"qini_plot/{spec.id}/{arm}/{metric}"] = inline_png(path, f"Qini and gain curves, {spec.id}: {arm}, {metric}")
            for key, frame in zip(tables, (models, scores, deciles, explanations)):
                tables[key].append(frame)
    frames = {k: pl.concat(v, how="vertical_relaxed") if v else pl.DataFrame() for k, v in tables.items()}
    models = frames["models"]
    preview = models.select("experiment_id", "arm", "metric", "learner", "qini", "qini_ci_low", "qini_ci_high",
                            "qini_simul_ci_low", "qini_simul_ci_high", "auuc", "oracle_share", "uplift_at_30", "fit_seconds") if not models.is_empty() else models
    best = models.filter(pl.col("is_best")) if not models.is_empty() else models
    yield dg.MaterializeResult(asset_key=["results", "uplift_models"], metadata={
        "dagster/row_count": models.height, "experiments": [s.id for s in specs],
        "models": dg.MetadataValue.md(markdown_table(preview, max_rows=60)),
        **{f"best/{r['experiment_id']}/{r['arm']}/{r['metric']}": f"{r['learner']} qini={r['qini']:.5f} "
           f"[{r['qini_ci_low']:.5f}, {r['qini_ci_high']:.5f}], simultaneous over learners "
           f"[{r['qini_simul_ci_low']:.5f}, {r['qini_simul_ci_high']:.5f}]"
           + (f"; held out (chosen on one half, estimated on the other) {r['qini_heldout']:.5f} "
              f"[{r['qini_heldout_ci_low']:.5f}, {r['qini_heldout_ci_high']:.5f}]" if r.get("qini_heldout") is not None else "")
           + (f" oracle share {r['oracle_share']:.2f}" if r["oracle_share"] is not None else "")
           for r in best.to_dicts()},
        **plots,
    })
    yield dg.MaterializeResult(asset_key=["results", "uplift_scores"], metadata={"dagster/row_count": frames["scores"].height})
    yield dg.MaterializeResult(asset_key=["results", "uplift_deciles"], metadata={"dagster/row_count": frames["deciles"].height})
    ex = frames["explanations"]
    yield dg.MaterializeResult(asset_key=["results", "uplift_explanations"], metadata={
        "dagster/row_count": ex.height,
        "importance": dg.MetadataValue.md(markdown_table(ex.drop("run_id") if not ex.is_empty() else ex, max_rows=40)),
    })


def _plot_policy(tables: dict[str, pl.DataFrame], title: str, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for learner, table in tables.items():
        style = dict(color="k", lw=2) if learner == "oracle" else {}
        ax.plot(table["k_pct"], table["profit_per_1000"], label=learner, **style)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="top k % targeted", ylabel="profit per 1,000 units")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


@dg.asset(
    retry_policy=io_retry,
    key=["results", "targeting_policy"],
    deps=[["results", "uplift_scores"]],
    group_name="uplift",
    kinds={"python", "postgres"},
    owners=[OWNER],
    description="Incremental conversions, revenue, cost, profit and ROI of targeting the top k % by each "
    "learner (every k), the best k, the break-even rule, treating everyone and no one (spec economics).",
)
def targeting_policy(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab.uplift.evaluation import bootstrap_count_matrix
    from liftlab.uplift.policy import compare_with_blanket, policy_table
    from liftlab.uplift_io import load_scores

    specs = {s.id: s for s in uplift_specs()}
    summaries, metadata = [], {}
    n_rows = 0
    with postgres.connect() as conn:
        done = read_frame(conn, "select distinct experiment_id from results.uplift_scores")
        for experiment_id in (done["experiment_id"].to_list() if not done.is_empty() else []):
            if experiment_id not in specs:
                continue
            up = specs[experiment_id].uplift
            scores = load_scores(conn, experiment_id)
            parts = []
            for (arm, metric), group in scores.group_by("arm", "metric", maintain_order=True):
                value, cost = up.value_of(metric), up.cost_per_contact
                curves_for_plot = {}
                # every learner scored the same units (sorted by unit_id): one set of draws for all
                units = group.filter(pl.col("learner") == group["learner"][0])["unit_id"]
                counts = bootstrap_count_matrix(units.len(), up.n_bootstrap, up.seed)
                for (learner,), g in group.group_by("learner", maintain_order=True):
                    if not g["unit_id"].equals(units):
                        raise dg.Failure(f"{experiment_id} {arm} {metric}: {learner} scored other units than "
                                         f"{group['learner'][0]}", allow_retries=False)
                    args = (g["predicted_uplift"].to_numpy(), g["treated"].to_numpy(), g["outcome"].to_numpy())
                    table = policy_table(*args, value=value, cost=cost)
                    summary = compare_with_blanket(*args, value=value, cost=cost, n_boot=up.n_bootstrap, seed=up.seed,
                                                   counts=counts)
                    curves_for_plot[learner] = table
                    n = g.height
                    key = dict(experiment_id=experiment_id, arm=arm, metric=metric, learner=learner, n_units=n,
                               cost_per_contact=cost, value_per_conversion=value)
                    parts.append(table.with_columns(pl.lit("top_k").alias("policy"), *[pl.lit(v).alias(k) for k, v in key.items()]))
                    full = summary.with_columns(*[pl.lit(v).alias(k) for k, v in key.items()])
                    parts.append(full)
                    summaries.append(full)
                path = _reports_dir() / f"policy_{experiment_id}_{arm}_{metric}.png".replace(" ", "_")
                _plot_policy(curves_for_plot, f"{experiment_id}: {arm}, {metric} (cost {cost:g}, value {value:g})", path)
                metadata[f"policy_plot/{experiment_id}/{arm}/{metric}"] = inline_png(
                    path, f"profit of targeting the top k %, {experiment_id}: {arm}, {metric}")
            frame = _with(pl.concat(parts, how="diagonal_relaxed"), POLICY_COLUMNS, context.run_id).with_columns(
                pl.col("k_pct").cast(pl.Float64))
            replace_slice(conn, "results.targeting_policy", frame, where={"experiment_id": experiment_id})
            conn.commit()
            n_rows += frame.height
    if summaries:
        s = pl.concat(summaries, how="diagonal_relaxed").filter(pl.col("policy") != "treat_none")
        metadata["summary"] = dg.MetadataValue.md(markdown_table(s.select(
            "experiment_id", "arm", "metric", "learner", "policy", "k_pct", "profit", "profit_vs_all", "vs_all_ci_low",
            "vs_all_ci_high"), max_rows=80))
    return dg.MaterializeResult(metadata={"dagster/row_count": n_rows, **metadata})


@dg.asset(
    retry_policy=io_retry,
    key=["results", "uplift_segments"],
    deps=[["results", "uplift_scores"], ["truth", "unit_effects"]],
    group_name="uplift",
    kinds={"python", "postgres"},
    owners=[OWNER],
    description="Persuadables, sure things, lost causes and sleeping dogs per learner: counts, realised "
    "out-of-fold uplift with CI and, on synthetic data, agreement with the true types.",
)
def uplift_segments(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab.uplift import segments as seg
    from liftlab.uplift_io import load_scores, true_types

    out = []
    with postgres.connect() as conn:
        done = read_frame(conn, "select distinct experiment_id from results.uplift_scores")
        for experiment_id in (done["experiment_id"].to_list() if not done.is_empty() else []):
            scores = load_scores(conn, experiment_id)
            parts = []
            for (arm, metric, learner), g in scores.group_by("arm", "metric", "learner", maintain_order=True):
                summary = seg.summary(g["segment"].to_numpy(), g["treated"].to_numpy(), g["outcome"].to_numpy())
                truth = true_types(conn, experiment_id, metric)
                if not truth.is_empty():
                    joined = g.join(truth, on="unit_id", how="inner")
                    agree = seg.agreement(joined["segment"].to_numpy(), joined["true_type"].to_numpy())
                    summary = summary.with_columns(
                        pl.col("segment").replace_strict({s: agree[f"precision_{s}"] for s in seg.SEGMENTS}, return_dtype=pl.Float64).alias("true_precision"),
                        pl.col("segment").replace_strict({s: agree[f"recall_{s}"] for s in seg.SEGMENTS}, return_dtype=pl.Float64).alias("true_recall"),
                    )
                parts.append(summary.with_columns(pl.lit(experiment_id).alias("experiment_id"), pl.lit(arm).alias("arm"),
                                                  pl.lit(metric).alias("metric"), pl.lit(learner).alias("learner")))
            frame = _with(pl.concat(parts, how="diagonal_relaxed"), SEGMENT_COLUMNS, context.run_id)
            replace_slice(conn, "results.uplift_segments", frame, where={"experiment_id": experiment_id})
            conn.commit()
            out.append(frame)
    frame = pl.concat(out, how="vertical_relaxed") if out else pl.DataFrame()
    preview = frame.select("experiment_id", "arm", "metric", "learner", "segment", "n", "realised_uplift", "ci_low",
                           "ci_high", "true_precision") if not frame.is_empty() else frame
    return dg.MaterializeResult(metadata={"dagster/row_count": frame.height,
                                          "segments": dg.MetadataValue.md(markdown_table(preview, max_rows=80))})
