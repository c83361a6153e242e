"""Jobs: build the data (registry, demo world, dbt), each experiment's units, the daily statistics,
the studies, one experiment's analysis, the decisions."""

import json

import dagster as dg

from liftlab.defs.partitions import day_partitions, experiment_partitions

DAILY_STATS = dg.AssetKey(["results", "daily_stats"])

#: Kubernetes resources of an ``analyse_experiment`` run pod (K8sRunLauncher reads the
#: ``dagster-k8s/config`` run tag; deploy/helm/values.yaml sizes every other run): its causal
#: studies are the largest step measured, 3.18 GB peak RSS at size M (bench/results/pipeline_M.json).
#: Elsewhere the tag is only a label.
ANALYSIS_POD = {"container_config": {"resources": {"requests": {"cpu": "1", "memory": "4Gi"},
                                                   "limits": {"memory": "5Gi"}}}}

build_data_job = dg.define_asset_job(
    "build_data",
    selection=dg.AssetSelection.groups("ingest", "transform"),
    description="Register the specs; where a spec uses the demo, generate the synthetic world (when its settings "
    "changed) and clean it with dbt.",
)
build_units_job = dg.define_asset_job(
    "build_units",
    selection=dg.AssetSelection.groups("units"),
    partitions_def=experiment_partitions,
    description="One experiment's units from its source: load its file, check its table, or compile its catalogue "
    "metrics to SQL and materialize units.<id>.",
)
daily_stats_job = dg.define_asset_job(
    "daily_stats",
    selection=dg.AssetSelection.assets(DAILY_STATS),
    partitions_def=day_partitions,
    description="Sufficient statistics of each day's exposure cohorts (one day per run, or a range in one run).",
)
analyse_experiment_job = dg.define_asset_job(
    "analyse_experiment",
    selection=dg.AssetSelection.groups("gates", "effects", "causal") - dg.AssetSelection.assets(DAILY_STATS),
    partitions_def=experiment_partitions,
    tags={"dagster-k8s/config": json.dumps(ANALYSIS_POD)},
    description="Gates, then (if they pass) sufficient statistics, effects, slices and — for a launch that was not "
    "randomized — its causal estimates, for one experiment.",
)
decide_job = dg.define_asset_job(
    "decide",
    selection=dg.AssetSelection.groups("decisions", "reports"),
    description="Write results.decisions from the current gate and effect tables, then the reports.",
)
uplift_models_job = dg.define_asset_job(
    "uplift_models",
    selection=dg.AssetSelection.groups("uplift"),
    description="Fit the uplift learners for every spec with an uplift block, evaluate them out of fold "
    "(cross-fitted, every unit), and write the targeting policy and the segments.",
)

#: Unpartitioned study jobs that run after each build, before the decisions.
STUDY_JOBS = [uplift_models_job]
