"""Running the whole asset graph in order, in-process: what ``make demo`` and the tests do.

1. ``build_data``: the spec registry; the synthetic world and dbt where a spec uses the demo.
2. ``build_units`` for each experiment partition: its units from its source (file, table,
   warehouse, demo). A source that cannot be read as declared fails that experiment only:
   nothing of it is written, its previous results stay, the others go on.
3. ``daily_stats``: one run over the range of day partitions (each day's exposure cohorts).
4. The study jobs (``uplift_models``): uplift models and targeting policies.
5. ``analyse_experiment`` for each experiment partition (one run each): gates, effects, slices,
   and the causal estimates of a launch that was not randomized. A run whose blocking gate
   fails is the gate doing its job: the experiment is halted, the others go on.
6. ``decide``: the decision table and the reports.

Runs are recorded in the given Dagster instance, so the UI shows them.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg
import polars as pl

from liftlab.db import read_frame
from liftlab.specs import load_specs


class PipelineError(RuntimeError):
    pass



@dataclass
class PipelineResult:
    decisions: pl.DataFrame
    halted: list[str] = field(default_factory=list)
    run_ids: dict[str, str] = field(default_factory=dict)
    #: experiment → why its units could not be built (nothing of it was written this run)
    failed: dict[str, str] = field(default_factory=dict)


def definitions_with(resources: Mapping[str, object] | None = None) -> dg.Definitions:
    """liftlab's definitions, with some resources replaced (tests point them at their database)."""
    from liftlab.definitions import defs

    loaded = defs()
    if not resources:
        return loaded
    return dg.Definitions(
        assets=loaded.assets,
        asset_checks=loaded.asset_checks,
        jobs=loaded.jobs,
        schedules=loaded.schedules,
        sensors=loaded.sensors,
        resources={**(loaded.resources or {}), **resources},
        executor=loaded.executor,
    )


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The first failed step and its error; after exhausted retries, the error that caused them
    (not Dagster's "Exceeded max_retries")."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cls_name == "RetryRequestedFromPolicy" and error.cause is not None:
                error = error.cause
            return f"{event.step_key}: {error.message.strip()}"
    return "run failed"


def _experiment_days(ids: list[str]) -> dict[str, str] | None:
    """Range tags covering the exposure days of these experiments (None: none has exposure days)."""
    from liftlab.defs.partitions import day_partitions
    from liftlab.sources import adapter

    keys = day_partitions.get_partition_keys()
    specs = [item.spec for item in load_specs() if item.spec.id in ids and adapter(item.spec).timestamped]
    if not specs or not keys:
        return None
    first = max(min(str(s.start_date) for s in specs), keys[0])
    last = min(max(str(s.end_date) for s in specs), keys[-1])
    return day_range_tags(first, last) if first <= last else None


def _execute(job, instance: dg.DagsterInstance, quiet: bool, **kwargs) -> dg.ExecuteInProcessResult:
    """Run a job in-process; ``quiet`` keeps Dagster's and dbt's console chatter out of the terminal.

    Nothing is lost: every event is in Dagster's event log (``make dev`` shows it), and a
    failure is reported by the caller with the step's error message.
    """
    if not quiet:
        return job.execute_in_process(instance=instance, raise_on_error=False, run_config=kwargs.pop("run_config", None) or {},
                                      **kwargs)
    run_config = {**(kwargs.pop("run_config", None) or {}), "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    with contextlib.redirect_stdout(io.StringIO()):
        return job.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config, **kwargs)


def day_range_tags(first: str | None = None, last: str | None = None) -> dict[str, str]:
    """Tags that make one run materialize a range of day partitions (a partition-range run);
    by default every day from the first partition to today."""
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from liftlab.defs.partitions import day_partitions

    keys = day_partitions.get_partition_keys()
    return {ASSET_PARTITION_RANGE_START_TAG: first or keys[0], ASSET_PARTITION_RANGE_END_TAG: last or keys[-1]}


def run_pipeline(
    instance: dg.DagsterInstance,
    resources: Mapping[str, object] | None = None,
    experiments: list[str] | None = None,
    log=print,
    quiet: bool = True,
    studies: bool = True,
    reports: bool = True,
) -> PipelineResult:
    """Run the jobs in order (module docstring). ``experiments`` narrows every step to those
    experiments (their units, their days' statistics, their uplift models, their analyses);
    ``studies=False`` leaves the uplift models as they are, ``reports=False`` the reports."""
    # One process runs every job here: keep one pooled connection to Dagster's storage instead of
    # a new one per event (dagster-postgres defaults to NullPool; the webserver pools the same way).
    # No statement timeout (0): a long event-log write must not fail a run.
    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=4)
    defs = definitions_with(resources)
    postgres = defs.resources["postgres"]
    run_ids: dict[str, str] = {}

    log("• build_data: specs; the demo world and dbt where a spec uses it …")
    world_config = {"ops": {"synthetic_world": {"config": {"experiments": experiments}}}} if experiments else {}
    built = _execute(defs.resolve_job_def("build_data"), instance, quiet, run_config=world_config)
    run_ids["build_data"] = built.run_id
    if not built.success:
        raise PipelineError(f"build_data failed — {_failure_message(built)}")

    ids = experiments or [item.spec.id for item in load_specs()]
    missing = [i for i in ids if not instance.has_dynamic_partition("experiment", i)]
    if missing:
        instance.add_dynamic_partitions("experiment", missing)
    failed: dict[str, str] = {}
    units_job = defs.resolve_job_def("build_units")
    for experiment_id in ids:
        result = _execute(units_job, instance, quiet, partition_key=experiment_id)
        run_ids[f"units:{experiment_id}"] = result.run_id
        if not result.success:
            failed[experiment_id] = _failure_message(result)
            log(f"• FAILED {experiment_id}: its units could not be built — {failed[experiment_id]}")

    stats_config, days = {}, day_range_tags()
    if experiments:
        stats_config = {"ops": {"results__daily_stats": {"config": {"experiments": ids}}}}
        days = _experiment_days(ids)  # None: no experiment with exposure days (files, tables)
    if days is not None:
        log("• daily_stats: sufficient statistics of every day's exposure cohorts …")
        stats = _execute(defs.resolve_job_def("daily_stats"), instance, quiet, tags=days, run_config=stats_config)
        run_ids["daily_stats"] = stats.run_id
        if not stats.success:
            raise PipelineError(f"daily_stats failed — {_failure_message(stats)}")

    from liftlab.defs.jobs import STUDY_JOBS

    for study in (job.name for job in STUDY_JOBS) if studies else ():
        run_config = {}
        if experiments:
            modelled = [item.spec.id for item in load_specs() if item.spec.id in ids and item.spec.uplift is not None]
            if not modelled:
                continue
            run_config = {"ops": {"uplift_learners": {"config": {"experiments": modelled}}}}
        log(f"• {study} …")
        result = _execute(defs.resolve_job_def(study), instance, quiet, run_config=run_config)
        run_ids[study] = result.run_id
        if not result.success:
            raise PipelineError(f"{study} failed — {_failure_message(result)}")

    halted: list[str] = []
    analyse = defs.resolve_job_def("analyse_experiment")
    for experiment_id in [i for i in ids if i not in failed]:
        result = _execute(analyse, instance, quiet, partition_key=experiment_id)
        run_ids[experiment_id] = result.run_id
        if result.success:
            log(f"• analysed {experiment_id}")
            continue
        with postgres.connect() as conn:
            gates = read_frame(
                conn, "select \"check\", status, details->>'reason' as reason from gates.check_results "
                "where experiment_id = %s and status = 'FAIL'", (experiment_id,)
            )
        if gates.is_empty():
            raise PipelineError(f"analysis of {experiment_id} failed — {_failure_message(result)}")
        halted.append(experiment_id)
        for row in gates.iter_rows(named=True):
            log(f"• HALTED {experiment_id}: gate {row['check']} failed — {row['reason']}")

    log("• decide …")
    selection = None if reports else [dg.AssetKey(["results", "decisions"])]
    # every experiment is decided (one cheap pass); only the analysed experiments' reports are rewritten
    report_config = {"ops": {"reports__experiment_reports": {"config": {"experiments": ids}}}} if experiments and reports else {}
    decided = _execute(defs.resolve_job_def("decide"), instance, quiet, asset_selection=selection, run_config=report_config)
    run_ids["decide"] = decided.run_id
    if not decided.success:
        raise PipelineError(f"decide failed — {_failure_message(decided)}")
    with postgres.connect() as conn:
        decisions = read_frame(
            conn,
            "select experiment_id, decision, variant, primary_metric, reasons from results.decisions order by experiment_id",
        )
    return PipelineResult(decisions=decisions, halted=halted, run_ids=run_ids, failed=failed)


def format_decisions(decisions: pl.DataFrame) -> str:
    """The decision table as plain text for the terminal."""
    import json
    import textwrap

    width = max([22, *(len(e) for e in decisions["experiment_id"])]) if decisions.height else 22
    arm = max([13, *(len(v or "-") for v in decisions["variant"])]) if decisions.height else 13
    indent = width + 12 + arm + 3  # "KEEP RUNNING" is the longest decision (12)
    lines = [f"{'experiment':<{width}} {'decision':<12} {'variant':<{arm}} reasons", "-" * (indent + 60)]
    for row in decisions.iter_rows(named=True):
        reasons = row["reasons"] if isinstance(row["reasons"], list) else json.loads(row["reasons"])
        text = textwrap.wrap("; ".join(reasons), 60) or [""]
        lines.append(f"{row['experiment_id']:<{width}} {row['decision']:<12} {row['variant'] or '-':<{arm}} {text[0]}")
        lines.extend(f"{'':<{indent - 1}} {more}" for more in text[1:])
    return "\n".join(lines)
