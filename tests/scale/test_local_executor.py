"""liftlab's local executor (``liftlab.defs.execution``): what a run launched from the UI, a schedule or
a sensor runs under when no Celery workers are configured.

The light jobs run their steps in the run's own process; the heavy ones fork one process per step
from a forkserver that preloaded liftlab and built the code location once (``liftlab.preload``).
Both must write exactly what the in-process build wrote, and keep per-step retries."""

from __future__ import annotations

import multiprocessing.forkserver
import os
import socket

import dagster as dg
import pytest
from dagster import DagsterEventType

from liftlab.defs.execution import LIGHT_JOBS, execute_run, preload_modules
from liftlab.pipeline import day_range_tags
from tests.conftest import drop_database
from tests.pipeline_helpers import assert_as_built, clear_outputs

pytestmark = pytest.mark.heavy


def step_pids(instance: dg.DagsterInstance, run_id: str) -> dict[str, int]:
    """Step key → the process that ran it (every Dagster event carries its process's pid)."""
    return {r.step_key: r.dagster_event.pid for r in instance.all_logs(run_id, of_type=DagsterEventType.STEP_SUCCESS)}


def test_a_warmed_code_location_is_reused_only_under_the_same_environment(monkeypatch):
    from liftlab import definitions

    monkeypatch.setattr(definitions, "_WARM", {})
    cold = definitions.defs()
    assert definitions.defs() is not cold  # nothing warmed: loaded on every call, as before
    warmed = definitions.warm()
    assert definitions.defs() is warmed
    monkeypatch.setenv("LIFTLAB_EXECUTOR", "celery")  # another environment: loaded again, with its executor
    other = definitions.defs()
    assert other is not warmed
    assert other.resolve_job_def("decide").executor_def.name == "liftlab_celery"
    assert warmed.resolve_job_def("decide").executor_def.name == "liftlab_local"


def test_light_jobs_run_in_the_run_process_heavy_ones_in_forked_steps_and_write_the_same(built, runs_home, monkeypatch):
    monkeypatch.setenv("LIFTLAB_REPORTS_DIR", str(built.reports))  # plots where the build wrote them (paths are stored)
    monkeypatch.delenv("LIFTLAB_EXECUTOR", raising=False)
    experiment = "aa_check"
    assert {"analyse_experiment", "daily_stats"} <= set(LIGHT_JOBS)
    info = built.copy(prefix="liftlab_local")
    try:
        deleted = clear_outputs(info, [built.result.run_ids["daily_stats"], built.result.run_ids[experiment]])
        assert {"results.daily_stats", "results.effects", "gates.check_results"} <= set(deleted), deleted
        run_config = {"resources": {"postgres": {"config": {"database_url": info.url()}}},
                      "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
        with dg.DagsterInstance.from_config(str(runs_home)) as instance:
            # the statistics of every day first (the analysis reads them), with no in-process jobs: each
            # step in a process forked from the forkserver
            forked = execute_run("daily_stats", instance, {**run_config, "execution": {"config": {"in_process_jobs": []}}},
                                 tags=day_range_tags(), executor="liftlab_local")
            assert forked.success
            pids = step_pids(instance, forked.run_id)
            assert pids and os.getpid() not in pids.values(), pids
            # the forkserver preloaded liftlab and built its code location (liftlab.preload)
            assert multiprocessing.forkserver._forkserver._preload_modules[-len(preload_modules("daily_stats")):] == \
                preload_modules("daily_stats")
            # one experiment's analysis, a light job: every step in this process
            analysis = execute_run("analyse_experiment", instance, run_config, tags={"dagster/partition": experiment},
                                   executor="liftlab_local")
            assert analysis.success
            pids = step_pids(instance, analysis.run_id)
            assert len(pids) >= 5 and set(pids.values()) == {os.getpid()}, pids  # every step in the run's process

        assert_as_built(info, built)
    finally:
        drop_database(info)


def test_steps_run_in_the_run_process_keep_their_retries(runs_home):
    """``decide`` is a light job: its first step, unable to reach the database, is retried by its
    retry policy (twice) in the run's own process, then the run fails naming the database."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends
    url = f"postgresql://nobody@127.0.0.1:{port}/liftlab_nowhere"
    with dg.DagsterInstance.from_config(str(runs_home)) as instance:
        result = execute_run("decide", instance, {"resources": {"postgres": {"config": {"database_url": url}}},
                                                  "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
                             executor="liftlab_local")
        assert not result.success
        retried = [r for r in instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)]
        failed = instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_FAILURE)
    assert [r.step_key for r in retried] == ["results__decisions"] * 2
    assert {r.dagster_event.pid for r in retried} == {os.getpid()}
    assert [r.step_key for r in failed] == ["results__decisions"]
    error = failed[0].dagster_event.step_failure_data.error
    while error.cause is not None and "liftlab_nowhere" not in error.message:
        error = error.cause
    assert error.cls_name == "DatabaseUnavailable" and "liftlab_nowhere" in error.message, error.to_string()
