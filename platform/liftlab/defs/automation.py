"""Daily operation: a schedule, sensors that chain the jobs and react to new specs, freshness checks.

The daily chain, with no one pressing a button:

1. ``daily_build`` (06:00 UTC) runs ``build_data`` (the spec registry; the demo world and dbt only
   where a spec uses the demo, and the world only when its settings changed).
2. ``units_after_build`` sees it succeed and requests one ``build_units`` run per experiment
   partition (each experiment's units from its source), tagged with the build's run id.
3. ``stats_after_units`` waits until every one of those runs has finished (a source that failed
   counts as finished) and requests the study jobs (causal estimates, uplift models) and one
   ``daily_stats`` run over every day partition (a partition-range run).
4. ``analyse_after_daily_stats`` sees that run succeed and requests one ``analyse_experiment``
   run per experiment whose units were built.
5. ``decide_after_analyses`` waits until every one of those runs has finished — a run halted
   by a blocking gate counts as finished — and requests ``decide`` once per build.

``spec_and_catalogue_sensor`` starts the same chain when an experiment spec, a catalogue file
(``metrics/``) or a declared data file changes, and registers partitions for new specs.
The marts and the decision table carry a freshness policy (``common.DAILY_FRESHNESS``) that the UI
shows as stale when the chain has not completed for a day.
"""

import hashlib
import json
from pathlib import Path

import dagster as dg

from liftlab import config
from liftlab.defs.jobs import (
    STUDY_JOBS, analyse_experiment_job, build_data_job, build_units_job, daily_stats_job, decide_job,
)
from liftlab.defs.partitions import experiment_partitions

BUILD_TAG = "liftlab/build_run_id"
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}

daily_build = dg.ScheduleDefinition(
    name="daily_build",
    job=build_data_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    description="Every morning: reload specs and data and rebuild the marts; the sensors take it from there.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[build_data_job],
    request_job=build_units_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After a successful build, bring in every experiment's units from its source.",
)
def units_after_build(context: dg.RunStatusSensorContext):
    build_run_id = context.dagster_run.run_id
    keys = context.instance.get_dynamic_partitions(experiment_partitions.name)
    return [dg.RunRequest(run_key=f"{build_run_id}:units:{key}", partition_key=key, tags={BUILD_TAG: build_run_id})
            for key in keys]


def _latest_build(context) -> str | None:
    builds = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=build_data_job.name, statuses=[dg.DagsterRunStatus.SUCCESS]), limit=1)
    return builds[0].run_id if builds else None


def _runs_of(context, build_run_id: str, job_name: str) -> list:
    return context.instance.get_runs(filters=dg.RunsFilter(job_name=job_name, tags={BUILD_TAG: build_run_id}))


@dg.sensor(
    jobs=[daily_stats_job, *STUDY_JOBS],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Once every experiment's units of the latest build are in (or failed), run the studies and the "
    "daily cohort statistics of every day.",
)
def stats_after_units(context: dg.SensorEvaluationContext):
    from liftlab.pipeline import day_range_tags

    build_run_id = _latest_build(context)
    if build_run_id is None:
        return dg.SkipReason("no successful build yet")
    if context.cursor == build_run_id:
        return dg.SkipReason(f"statistics already requested for build {build_run_id}")
    expected = len(context.instance.get_dynamic_partitions(experiment_partitions.name))
    done = [r for r in _runs_of(context, build_run_id, build_units_job.name) if r.status in FINISHED]
    if len(done) < expected:
        return dg.SkipReason(f"{len(done)}/{expected} unit builds of build {build_run_id} finished")
    context.update_cursor(build_run_id)
    tags = {BUILD_TAG: build_run_id}
    studies = [dg.RunRequest(run_key=f"{build_run_id}:{job.name}", job_name=job.name, tags=tags) for job in STUDY_JOBS]
    daily = dg.RunRequest(run_key=f"{build_run_id}:{daily_stats_job.name}", job_name=daily_stats_job.name,
                          tags={**tags, **day_range_tags()})
    return [*studies, daily]


def _built_units(context, build_run_id: str) -> list[str]:
    """Experiments whose units were built by this build (the others keep their previous results)."""
    from dagster._core.storage.tags import PARTITION_NAME_TAG

    return sorted(r.tags.get(PARTITION_NAME_TAG) for r in _runs_of(context, build_run_id, build_units_job.name)
                  if r.status == dg.DagsterRunStatus.SUCCESS)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[daily_stats_job],
    request_job=analyse_experiment_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After the daily cohort statistics of a build, analyse every experiment whose units were built.",
)
def analyse_after_daily_stats(context: dg.RunStatusSensorContext):
    build_run_id = context.dagster_run.tags.get(BUILD_TAG)
    if build_run_id is None:
        return dg.SkipReason("daily_stats run outside the daily chain (no build tag): nothing to chain")
    return [
        dg.RunRequest(run_key=f"{build_run_id}:{key}", partition_key=key, tags={BUILD_TAG: build_run_id})
        for key in _built_units(context, build_run_id)
    ]


@dg.sensor(
    job=decide_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Once all analyses of the latest build have finished (halted ones included), decide.",
)
def decide_after_analyses(context: dg.SensorEvaluationContext):
    build_run_id = _latest_build(context)
    if build_run_id is None:
        return dg.SkipReason("no successful build yet")
    if context.cursor == build_run_id:
        return dg.SkipReason(f"already decided for build {build_run_id}")
    units = _runs_of(context, build_run_id, build_units_job.name)
    if len([r for r in units if r.status in FINISHED]) < len(context.instance.get_dynamic_partitions(experiment_partitions.name)):
        return dg.SkipReason(f"the units of build {build_run_id} are still being built")
    # every study, the daily_stats run and one analysis per experiment whose units were built
    expected = len(STUDY_JOBS) + 1 + len(_built_units(context, build_run_id))
    runs = [r for r in context.instance.get_runs(filters=dg.RunsFilter(tags={BUILD_TAG: build_run_id}))
            if r.job_name != build_units_job.name]
    done = [r for r in runs if r.status in FINISHED]
    if len(done) < expected:
        return dg.SkipReason(f"{len(done)}/{expected} analyses of build {build_run_id} finished")
    context.update_cursor(build_run_id)
    return dg.RunRequest(run_key=f"decide:{build_run_id}", tags={BUILD_TAG: build_run_id})


def watched_files() -> dict[str, str]:
    """sha256 of every spec, every catalogue file and every file a spec declares."""
    from liftlab.specs import SpecError, load_specs

    files: set[Path] = set(config.experiments_dir().glob("*.y*ml")) | set(config.metrics_dir().glob("*.y*ml"))
    try:
        for item in load_specs():
            if item.spec.source.kind == "file":
                files.add(item.spec.source.resolved_path(item.path))
    except SpecError:
        pass  # the build run reports the bad spec with its file and key
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(files) if path.is_file()
    }


@dg.sensor(
    job=build_data_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A new or changed experiment spec, metric catalogue file or declared data file starts a build "
    "(and with it the analyses and decisions); new specs get their partition.",
)
def spec_and_catalogue_sensor(context: dg.SensorEvaluationContext):
    current = watched_files()
    previous = json.loads(context.cursor) if context.cursor else {}
    changed = sorted(path for path in current.keys() | previous.keys() if current.get(path) != previous.get(path))
    if not changed:
        return dg.SkipReason("no spec, catalogue or data file changed")
    from liftlab.specs import SpecError, load_specs

    try:
        ids = [item.spec.id for item in load_specs()]
    except SpecError:
        ids = []
    known = set(context.instance.get_dynamic_partitions(experiment_partitions.name))
    new_ids = [i for i in ids if i not in known]
    context.update_cursor(json.dumps(current))
    digest = hashlib.sha256(json.dumps(current, sort_keys=True).encode()).hexdigest()[:16]
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"files:{digest}", tags={"liftlab/changed": ", ".join(Path(p).name for p in changed)[:200]})],
        dynamic_partitions_requests=[experiment_partitions.build_add_request(new_ids)] if new_ids else [],
    )


