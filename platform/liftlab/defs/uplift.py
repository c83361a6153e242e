"""Uplift layer: who to target, not only whether the treatment works on average.

For every spec with an ``uplift:`` block, each non-baseline arm is modelled against the
baseline with S/T/X/R/DR meta-learners (causalml) and a class-transformation baseline,
cross-fitted over K folds (``liftlab.uplift.analysis``): every unit is scored by models that
never saw it, and all units give Qini/AUUC with bootstrap CIs (and a simultaneous band over
the learners, for the best one), the oracle share (synthetic data), calibration by decile,
the targeting economics and the segments.

The fits run as separate steps of the ``uplift_learners`` graph asset, so that the executor (one
process per step, or Celery workers) runs them in parallel: ``plan_uplift_cells`` lists one cell
per experiment × arm × outcome, ``fit_uplift_cell`` runs each (the experiment's folds, seeds and
bootstrap: exactly that cell's rows of the whole experiment's fit) and ``write_uplift_tables``
writes each experiment's slice of the four tables in one transaction, as one step did before.
The cells' results reach the write step through the IO manager (Dagster's default: pickles in the
instance's storage directory, which every process that runs a step must share).
causalml and scikit-learn are imported inside the op and asset functions only.
"""

import os
import re

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


def _narrowing() -> tuple[list[str], int | None, int | None, int | None]:
    """The environment's narrowing of every run (tests and quick demos): LIFTLAB_UPLIFT_LEARNERS
    (comma-separated), LIFTLAB_UPLIFT_BOOTSTRAP, LIFTLAB_UPLIFT_FOLDS and LIFTLAB_UPLIFT_REPEATS."""
    learners = [x for x in os.environ.get("LIFTLAB_UPLIFT_LEARNERS", "").split(",") if x]
    boot, folds, repeats = (os.environ.get(f"LIFTLAB_UPLIFT_{name}") for name in ("BOOTSTRAP", "FOLDS", "REPEATS"))
    return learners, int(boot) if boot else None, int(folds) if folds else None, int(repeats) if repeats else None


def _mapping_key(experiment_id: str, arm: str, outcome: str, taken: set[str]) -> str:
    """The cell's Dagster mapping key (letters, digits and ``_`` only: an arm may be "Mens E-Mail"),
    made unique within the run when two cells sanitize to the same name."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", f"{experiment_id}__{arm}__{outcome}")
    key, n = base, 2
    while key in taken:
        key, n = f"{base}_{n}", n + 1
    taken.add(key)
    return key


@dg.op(
    retry_policy=io_retry,
    ins={name: dg.In(dg.Nothing) for name in ("unit_metrics", "unit_effects", "experiment_specs")},
    out={"cells": dg.DynamicOut(dict, description="One arm × outcome of one experiment, with every setting of its fit."),
         "plan": dg.Out(dict, description="The experiments of the run; the baseline and number of cells of each one "
                        "planned.")},
)
def plan_uplift_cells(context: dg.OpExecutionContext, config: UpliftRunConfig, postgres: PostgresResource):
    """One cell per experiment × arm × outcome of the specs with an uplift block (narrowed by the
    run config, then the environment), in the order the experiment's tables are written: arms,
    then outcomes. Each cell carries the resolved settings, so its step does not read them again;
    ``fold_outcomes`` is every outcome of the spec, so each cell is dealt the experiment's folds."""
    from liftlab.units import unit_table_exists
    from liftlab.uplift_io import uplift_features

    env_learners, env_boot, env_folds, env_repeats = _narrowing()
    learners_override = config.learners or env_learners
    boot_override = config.n_bootstrap if config.n_bootstrap is not None else env_boot
    folds_override = config.n_folds if config.n_folds is not None else env_folds
    repeats_override = config.n_repeats if config.n_repeats is not None else env_repeats
    specs = uplift_specs(config.experiments)
    plan = {"experiments": [s.id for s in specs], "baselines": {}, "n_cells": {}}
    cells, taken = [], set()
    with postgres.connect() as conn:
        for spec in specs:
            up = spec.uplift
            if not unit_table_exists(conn, spec):
                context.log.warning(f"{spec.id}: its units were never built (see its units/unit_metrics run): skipped")
                continue
            plan["baselines"][spec.id] = spec.baseline
            settings = dict(
                experiment_id=spec.id, baseline=spec.baseline, fold_outcomes=list(up.outcomes),
                features=list(uplift_features(spec)), learners=list(learners_override or up.learners),
                backend=up.base_model, n_folds=folds_override or up.folds, n_repeats=repeats_override or up.repeats,
                seed=up.seed, n_boot=boot_override if boot_override is not None else up.n_bootstrap,
                min_uplift=up.segment_min_uplift,
            )
            for arm in up.arms or [v.name for v in spec.variants if v.name != spec.baseline]:
                for outcome in up.outcomes:
                    key = _mapping_key(spec.id, arm, outcome, taken)
                    cells.append(dg.DynamicOutput(
                        {"index": len(cells), "key": key, "settings": {**settings, "arms": [arm], "outcomes": [outcome]}},
                        output_name="cells", mapping_key=key))
                    plan["n_cells"][spec.id] = plan["n_cells"].get(spec.id, 0) + 1
    context.log.info(f"{len(cells)} uplift fits (experiment × arm × outcome) over {len(plan['baselines'])} experiment(s)")
    yield dg.Output(plan, output_name="plan")
    yield from cells


@dg.op(retry_policy=io_retry)
def fit_uplift_cell(context: dg.OpExecutionContext, cell: dict, postgres: PostgresResource) -> dict:
    """Cross-fit, evaluate and explain one experiment × arm × outcome on the experiment's units:
    :func:`liftlab.uplift.analysis.analyse_experiment` restricted to the cell, which gives exactly
    that cell's rows of the whole experiment's call. ``result`` is None when the unit table is
    empty."""
    from liftlab.uplift.analysis import analyse_experiment
    from liftlab.uplift_io import load_units

    settings = cell["settings"]
    spec = uplift_specs([settings["experiment_id"]])[0]
    with postgres.connect() as conn:
        units = load_units(conn, spec)
    result = None
    if not units.is_empty():
        result = analyse_experiment(units, **settings, log=context.log.info)
    return {"index": cell["index"], "key": cell["key"], "experiment_id": spec.id, "result": result}


@dg.op(
    retry_policy=io_retry,
    out={name: dg.Out(dg.Nothing) for name in ("models", "scores", "deciles", "explanations")},
)
def write_uplift_tables(context: dg.OpExecutionContext, plan: dict, fits: list[dict], postgres: PostgresResource):
    """Each experiment's cells combined in plan order (the result of one call over all its arms
    and outcomes) and written as its slice of the four tables, in one transaction per experiment;
    then its Qini plots and the materialization metadata of the four assets."""
    from liftlab.uplift.analysis import UpliftResult

    by_experiment: dict[str, list[dict]] = {}
    for fit in sorted(fits, key=lambda f: f["index"]):
        by_experiment.setdefault(fit["experiment_id"], []).append(fit)
    tables = {"models": [], "explanations": []}
    n_scores = n_deciles = 0
    plots = {}
    run_id = context.run_id
    with postgres.connect() as conn:
        for experiment_id, baseline in plan["baselines"].items():
            cells = by_experiment.get(experiment_id, [])
            if len(cells) != plan["n_cells"][experiment_id]:  # the tables of an experiment are written whole
                raise dg.Failure(f"{experiment_id}: {len(cells)} of its {plan['n_cells'][experiment_id]} uplift fits "
                                 "reached the write step", allow_retries=False)
            if any(c["result"] is None for c in cells):
                context.log.warning(f"{experiment_id}: no units, skipped")
                continue
            result = UpliftResult.combine([c["result"] for c in cells])
            models = _with(result.frame("models"), MODEL_COLUMNS, run_id)
            scores = _with(result.frame("scores"), SCORE_COLUMNS, run_id)
            deciles = _with(result.frame("deciles"), DECILE_COLUMNS, run_id)
            explanations = _with(result.frame("explanations"), EXPLAIN_COLUMNS, run_id)
            where = {"experiment_id": experiment_id}
            replace_slice(conn, "results.uplift_models", models, where=where)
            replace_slice(conn, "results.uplift_scores", scores, where=where)
            replace_slice(conn, "results.uplift_deciles", deciles, where=where)
            replace_slice(conn, "results.uplift_explanations", explanations, where=where)
            conn.commit()
            curves = result.frame("curves")
            for (arm, metric), part in curves.group_by("arm", "metric", maintain_order=True):
                path = _reports_dir() / f"qini_{experiment_id}_{arm}_{metric}.png".replace(" ", "_")
                _plot_qini(part, f"{experiment_id}: {arm} vs {baseline}, {metric}", path)
                plots[f"qini_plot/{experiment_id}/{arm}/{metric}"] = inline_png(
                    path, f"Qini and gain curves, {experiment_id}: {arm}, {metric}")
            tables["models"].append(models)
            tables["explanations"].append(explanations)
            n_scores += scores.height
            n_deciles += deciles.height
    frames = {k: pl.concat(v, how="vertical_relaxed") if v else pl.DataFrame() for k, v in tables.items()}
    models = frames["models"]
    preview = models.select("experiment_id", "arm", "metric", "learner", "qini", "qini_ci_low", "qini_ci_high",
                            "qini_simul_ci_low", "qini_simul_ci_high", "auuc", "oracle_share", "uplift_at_30", "fit_seconds") if not models.is_empty() else models
    best = models.filter(pl.col("is_best")) if not models.is_empty() else models
    yield dg.Output(None, output_name="models", metadata={
        "dagster/row_count": models.height, "experiments": plan["experiments"],
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
    yield dg.Output(None, output_name="scores", metadata={"dagster/row_count": n_scores})
    yield dg.Output(None, output_name="deciles", metadata={"dagster/row_count": n_deciles})
    ex = frames["explanations"]
    yield dg.Output(None, output_name="explanations", metadata={
        "dagster/row_count": ex.height,
        "importance": dg.MetadataValue.md(markdown_table(ex.drop("run_id") if not ex.is_empty() else ex, max_rows=40)),
    })


@dg.config_mapping
def _run_config(config: UpliftRunConfig) -> dict:
    """The run config of the asset (``ops: uplift_learners: config: …``, its shape before the fits
    were split into steps) is the planning step's."""
    return {"plan_uplift_cells": {"config": config.model_dump()}}


#: The upstreams of results/uplift_models, as declared when the four tables came from one op.
MODELS = dg.AssetKey(["results", "uplift_models"])
MODEL_DEPS = [dg.AssetDep(dg.AssetKey(["units", "unit_metrics"]), partition_mapping=dg.AllPartitionMapping()),
              dg.AssetDep(["truth", "unit_effects"]), dg.AssetDep(["raw", "experiment_specs"])]


def _uplift_steps(unit_metrics, unit_effects, experiment_specs):
    """Plan the cells, fit each one in its own step (the executor runs them in parallel: processes
    or Celery workers), then write the experiments' tables from the collected fits."""
    cells, plan = plan_uplift_cells(unit_metrics=unit_metrics, unit_effects=unit_effects,
                                    experiment_specs=experiment_specs)
    models, scores, deciles, explanations = write_uplift_tables(plan, cells.map(fit_uplift_cell).collect())
    return {"models": models, "scores": scores, "deciles": deciles, "explanations": explanations}


def _as_declared(spec: dg.AssetSpec) -> dg.AssetSpec:
    """A graph's inputs become deps of every asset it outputs, and ``graph_multi_asset`` drops an
    ``AllPartitionMapping`` (it tests the mapping's truth, and that one is an empty tuple:
    dagster-io/dagster#30787, still so in 1.13): the models get their upstreams back as declared,
    the three other tables (by-products of the same fits) none, as before."""
    return spec.replace_attributes(deps=MODEL_DEPS if spec.key == MODELS else [])


# The upstreams are graph inputs of type Nothing: they order the steps after them, nothing is loaded.
uplift_learners = dg.graph_multi_asset(
    name="uplift_learners",
    group_name="uplift",
    ins={"unit_metrics": dg.AssetIn(["units", "unit_metrics"], partition_mapping=dg.AllPartitionMapping(),
                                    dagster_type=dg.Nothing),
         "unit_effects": dg.AssetIn(["truth", "unit_effects"], dagster_type=dg.Nothing),
         "experiment_specs": dg.AssetIn(["raw", "experiment_specs"], dagster_type=dg.Nothing)},
    config=_run_config,
    outs={
        "models": dg.AssetOut(
            key=MODELS, kinds={"python", "postgres"}, owners=[OWNER],
            description="Per experiment × arm × outcome × learner (S/T/X/R/DR, class transformation, "
            "single-feature rule): cross-fitted (out-of-fold) Qini coefficient and AUUC with bootstrap CIs, the simultaneous "
            "band over learners, uplift at k, calibration, oracle share."),
        "scores": dg.AssetOut(
            key=["results", "uplift_scores"], kinds={"postgres"}, owners=[OWNER],
            description="Out-of-fold predicted uplift and segment of every unit by every learner (and the fold that scored it)."),
        "deciles": dg.AssetOut(
            key=["results", "uplift_deciles"], kinds={"postgres"}, owners=[OWNER],
            description="Calibration: mean predicted vs realised uplift per decile of the ranking."),
        "explanations": dg.AssetOut(
            key=["results", "uplift_explanations"], kinds={"postgres"}, owners=[OWNER],
            description="Grouped permutation importance of the features for the best learner's predicted uplift."),
    },
)(_uplift_steps).map_asset_specs(_as_declared)


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
