"""Jobs: build the data (ingest + dbt), analyse one experiment partition, decide."""

import dagster as dg

from liftlab.defs.partitions import day_partitions, experiment_partitions

DAILY_STATS = dg.AssetKey(["results", "daily_stats"])

build_data_job = dg.define_asset_job(
    "build_data",
    selection=dg.AssetSelection.groups("ingest", "transform"),
    description="Load specs, the synthetic world and user files; run dbt (staging, marts, tests).",
)
daily_stats_job = dg.define_asset_job(
    "daily_stats",
    selection=dg.AssetSelection.assets(DAILY_STATS),
    partitions_def=day_partitions,
    description="Sufficient statistics of each day's exposure cohorts (one day per run, or a range in one run).",
)
analyse_experiment_job = dg.define_asset_job(
    "analyse_experiment",
    selection=dg.AssetSelection.groups("gates", "effects") - dg.AssetSelection.assets(DAILY_STATS),
    partitions_def=experiment_partitions,
    description="Gates, then (if they pass) sufficient statistics and effects for one experiment.",
)
decide_job = dg.define_asset_job(
    "decide",
    selection=dg.AssetSelection.groups("decisions", "reports"),
    description="Write results.decisions from the current gate and effect tables, then the reports.",
)
causal_studies_job = dg.define_asset_job(
    "causal_studies",
    selection=dg.AssetSelection.groups("causal"),
    description="Causal estimates of the launches that were not randomized (opt-in, regional roll-out).",
)

uplift_models_job = dg.define_asset_job(
    "uplift_models",
    selection=dg.AssetSelection.groups("uplift"),
    description="Fit the uplift learners for every spec with an uplift block, evaluate them out of fold "
    "(cross-fitted, every unit), and write the targeting policy and the segments.",
)

#: Unpartitioned study jobs that run after each build, before the decisions.
STUDY_JOBS = [causal_studies_job, uplift_models_job]
