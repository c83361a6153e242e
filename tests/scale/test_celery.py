"""Steps on Celery workers (``LIFTLAB_EXECUTOR=celery``, ``deploy/celery.yaml``, docs/scaling.md).

Real processes: a ``redis-server`` of the test's own on a free port and two ``dagster-celery``
workers (``tests/scale/conftest.py``), stopped by the test. The runs go to the session's world
(``built``) in a copy of its own whose outputs of those runs were deleted first, and every table
of the copy must then equal the in-process build's byte for byte (``snapshot``: every table
without run ids and write times).
"""

from __future__ import annotations

import os
import signal
import json
import time
import uuid

import dagster as dg
import pytest
from dagster import DagsterEventType

from liftlab.pipeline import day_range_tags
from liftlab.workers import step_workers, worker_of
from tests.conftest import drop_database
from tests.pipeline_helpers import assert_as_built, clear_outputs, snapshot

pytestmark = pytest.mark.heavy

#: Runs of the built world that are not analyses of one experiment.
NOT_ANALYSES = {"build_data", "daily_stats", "uplift_models", "decide"}
#: The kill test's visibility timeout: longer than any of aa_check's steps (≤ 5 s in the build,
#: on a loaded machine), so no step is handed out twice while it runs; the dead worker's step
#: comes back after it.
KILL_VISIBILITY = 15


def analysed(built) -> list[str]:
    return sorted(k for k in built.result.run_ids if ":" not in k and k not in NOT_ANALYSES)


def reap(process) -> None:
    """Kill an orchestrating process the test left running (it failed before the run ended)."""
    if process.poll() is None:
        process.kill()
        process.wait()


def step_events(instance: dg.DagsterInstance, run_id: str, event_type: DagsterEventType) -> list[str]:
    return [r.step_key for r in instance.all_logs(run_id, of_type=event_type)]


@pytest.mark.timeout(900)
def test_daily_stats_and_every_analysis_on_two_workers_equal_the_in_process_run(built, runs_home, celery_cluster_factory,
                                                                                 monkeypatch):
    monkeypatch.setenv("LIFTLAB_REPORTS_DIR", str(built.reports))  # plots where the build wrote them (paths are stored)
    experiments = analysed(built)
    assert len(experiments) >= 5, experiments
    run_ids = [built.result.run_ids["daily_stats"], *(built.result.run_ids[e] for e in experiments)]
    info = built.copy(prefix="liftlab_celery")
    try:
        deleted = clear_outputs(info, run_ids)
        assert {"results.daily_stats", "results.effects", "gates.check_results"} <= set(deleted), deleted
        cleared = snapshot(info)
        assert {t for t in cleared if cleared[t] != built.snapshot[t]} >= set(deleted)

        started = time.monotonic()
        # long enough for every step here (the longest took 23 s in a loaded build): none is handed out twice
        cluster = celery_cluster_factory(runs_home, visibility_timeout=600)
        ready = time.monotonic()
        with cluster.orchestrating(), dg.DagsterInstance.from_config(str(runs_home)) as instance:
            stats = cluster.execute("daily_stats", instance, info.url(), tags=day_range_tags())
            assert stats.success, cluster.logs()
            stats_done = time.monotonic()
            runs = {"daily_stats": stats.run_id}

            # one run per experiment, two at a time (as the run queue of dagster.yaml runs them, each
            # orchestrated by a process of its own): the steps of two runs keep both workers busy
            launched = [cluster.launch("analyse_experiment", info.url(), {}, partitions=experiments[i::2]) for i in (0, 1)]
            outcomes = {}
            for process in launched:
                out, _ = process.communicate(timeout=600)
                assert process.returncode == 0, (out, cluster.logs())
                outcomes.update({o["partition"]: o for o in map(json.loads, out.strip().splitlines())})
            assert sorted(outcomes) == experiments
            for experiment, outcome in outcomes.items():
                # a halted experiment's run fails on its blocking gate, in-process and on the workers alike
                assert outcome["success"] == (experiment not in built.result.halted), (experiment, cluster.logs())
                runs[experiment] = outcome["run_id"]
            finished = time.monotonic()

            hosts = {w.hostname for w in cluster.workers}
            ran_on: dict[str, int] = {}
            for name, run_id in runs.items():
                workers = step_workers(instance, run_id)
                ended = step_events(instance, run_id, DagsterEventType.STEP_SUCCESS) + step_events(
                    instance, run_id, DagsterEventType.STEP_FAILURE)
                assert ended, name
                # every step that ran was run by one of the two workers, once, and the event log says which
                assert set(ended) <= set(workers), (name, ended, workers)
                for step, names in workers.items():
                    assert len(names) == 1 and names[0] in hosts, (name, step, names)
                    ran_on[names[0]] = ran_on.get(names[0], 0) + 1
                if name in built.result.halted:
                    assert "trust_gates" in step_events(instance, run_id, DagsterEventType.STEP_FAILURE)
            assert set(ran_on) == hosts, ran_on  # both workers ran steps

        assert_as_built(info, built)
        print(f"\ncelery: workers ready in {ready - started:.1f} s; daily_stats + {len(experiments)} analyses "
              f"in {stats_done - ready:.1f} + {finished - stats_done:.1f} s; steps per worker {ran_on}; {sum(deleted.values())} rows rewritten identically")
    finally:
        drop_database(info)


@pytest.mark.timeout(600)
def test_a_worker_killed_mid_step_its_step_reruns_on_the_other_worker(built, runs_home, celery_cluster_factory, monkeypatch):
    """SIGKILL the worker running a step: its message was not acknowledged (``task_acks_late``),
    Redis hands it out again after the visibility timeout, the other worker runs the step, the
    run succeeds and the tables equal the in-process run's — nothing lost, nothing doubled."""
    monkeypatch.setenv("LIFTLAB_REPORTS_DIR", str(built.reports))  # plots where the build wrote them (paths are stored)
    experiment = "aa_check"
    assert experiment in analysed(built) and experiment not in built.result.halted
    with dg.DagsterInstance.from_config(str(built.home)) as instance:
        # the step to kill: the longest of this experiment's analysis in the build
        durations = {st.step_key: st.end_time - st.start_time
                     for st in instance.get_run_step_stats(built.result.run_ids[experiment]) if st.end_time}
        target = max(durations, key=durations.get)
        assert durations[target] < KILL_VISIBILITY / 2, durations

    info = built.copy(prefix="liftlab_celery_kill")
    try:
        assert clear_outputs(info, [built.result.run_ids[experiment]])
        cluster = celery_cluster_factory(runs_home, visibility_timeout=KILL_VISIBILITY)
        marker = uuid.uuid4().hex
        # the run is orchestrated by a process of its own (as a run worker would); this one watches
        # the run's event log and kills the worker that runs the target step
        orchestrator = cluster.launch("analyse_experiment", info.url(), {"dagster/partition": experiment, "liftlab/test": marker})
        try:
            with dg.DagsterInstance.from_config(str(runs_home)) as instance:
                deadline = time.monotonic() + 120
                run_id = victim = killed_at = None
                while killed_at is None:
                    assert time.monotonic() < deadline and orchestrator.poll() is None, cluster.logs()
                    if run_id is None:
                        runs = instance.get_runs(filters=dg.RunsFilter(tags={"liftlab/test": marker}))
                        run_id = runs[0].run_id if runs else None
                    else:
                        records = instance.all_logs(run_id)
                        taken = [(i, worker_of(r)) for i, r in enumerate(records) if r.step_key == target and worker_of(r)]
                        # the step has started on a worker: kill that worker, mid-step
                        if taken and any(r.step_key == target and r.dagster_event.event_type == DagsterEventType.STEP_START
                                         for r in records[taken[0][0]:] if r.dagster_event):
                            victim = taken[0][1]
                            os.kill(cluster.worker(victim).pid, signal.SIGKILL)
                            killed_at = time.time()
                            done = [r.step_key for r in instance.all_logs(run_id, of_type=DagsterEventType.STEP_SUCCESS)]
                            assert target not in done, "the step finished before the kill: not mid-step"
                    time.sleep(0.05)

                out, _ = orchestrator.communicate(timeout=KILL_VISIBILITY + 120)
                outcome = json.loads(out.strip().splitlines()[-1])
                assert outcome["run_id"] == run_id
                assert not cluster.worker(victim).alive()
                assert outcome["success"], cluster.logs()

                workers = step_workers(instance, run_id)
                survivor = next(w.hostname for w in cluster.workers if w.hostname != victim)
                # the killed step: started on the victim, then run again on the survivor; every other step once
                assert workers[target] == [victim, survivor], workers
                assert all(len(names) == 1 for step, names in workers.items() if step != target), workers
                successes = step_events(instance, run_id, DagsterEventType.STEP_SUCCESS)
                assert sorted(successes) == sorted(set(successes)) == sorted(workers), (successes, workers)
                assert step_events(instance, run_id, DagsterEventType.STEP_START).count(target) == 2
                rerun = next(r.timestamp for r in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
                             if r.step_key == target and worker_of(r) == survivor)
                # handed out again by the visibility timeout (counted from when the victim took the message)
                assert rerun - killed_at <= KILL_VISIBILITY + 10, rerun - killed_at

        finally:
            reap(orchestrator)

        assert_as_built(info, built)
        print(f"\ncelery kill: {target} of {experiment} killed on {victim} (pid SIGKILL), rerun on {survivor} "
              f"{rerun - killed_at:.1f} s later; run succeeded; tables identical")
    finally:
        drop_database(info)


def _run_failure(instance: dg.DagsterInstance, run_id: str):
    record = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)[-1]
    error = record.dagster_event.event_specific_data.error
    chain = [error]
    while error.cause is not None:
        error = error.cause
        chain.append(error)
    return chain


@pytest.mark.timeout(600)
def test_the_broker_restarting_mid_run_fails_the_run_naming_it_and_a_reexecution_completes_it(
        built, runs_home, celery_cluster_factory, monkeypatch):
    """Redis restarted (stopped, started again on its port, empty) while a run's steps are on the
    workers: the run fails with a message that names the broker and says how to resume, not with
    the Redis client's "Connection closed by server"; once the workers are back, re-executing the
    run from its failure completes it, and the tables equal the in-process run's."""
    from liftlab.workers import wait_until_ready

    monkeypatch.setenv("LIFTLAB_REPORTS_DIR", str(built.reports))  # plots where the build wrote them (paths are stored)
    experiment = "aa_check"
    info = built.copy(prefix="liftlab_celery_broker")
    try:
        assert clear_outputs(info, [built.result.run_ids[experiment]])
        cluster = celery_cluster_factory(runs_home, visibility_timeout=600)
        marker = uuid.uuid4().hex
        orchestrator = cluster.launch("analyse_experiment", info.url(), {"dagster/partition": experiment, "liftlab/test": marker})
        try:
            with dg.DagsterInstance.from_config(str(runs_home)) as instance:
                deadline, run_id = time.monotonic() + 120, None
                while True:  # the first steps are on the workers: restart the broker under them
                    assert time.monotonic() < deadline and orchestrator.poll() is None, cluster.orchestrator_log()
                    runs = instance.get_runs(filters=dg.RunsFilter(tags={"liftlab/test": marker}))
                    if runs and instance.all_logs(runs[0].run_id, of_type=DagsterEventType.STEP_START):
                        run_id = runs[0].run_id
                        break
                    time.sleep(0.05)
                cluster.redis.stop()
                time.sleep(1)
                cluster.redis.start()
                out, _ = orchestrator.communicate(timeout=180)
                outcome = json.loads(out.strip().splitlines()[-1])
                assert outcome["run_id"] == run_id and not outcome["success"]
                chain = _run_failure(instance, run_id)
                broker = cluster.env["LIFTLAB_CELERY_BROKER"]
                named = [e for e in chain if e.cls_name == "BrokerUnavailable"]
                assert named, [f"{e.cls_name}: {e.message}" for e in chain]
                assert f"the Celery broker {broker} stopped answering" in named[0].message
                assert "re-execute the run from its failure" in named[0].message

                # the workers reconnect to the restarted broker (a step they held when it went away may
                # run again for the failed run: every step replaces what it writes)
                wait_until_ready(cluster.workers, broker)
                with cluster.orchestrating():
                    again = cluster.execute("analyse_experiment", instance, info.url(), from_failure_of=run_id)
                failures = [(r.step_key, r.dagster_event.step_failure_data.error.message[-400:]) for r in
                            instance.all_logs(again.run_id, of_type=DagsterEventType.STEP_FAILURE)]
                assert again.success, (failures, [f"{e.cls_name}: {e.message[-400:]}" for e in _run_failure(instance, again.run_id)])
        finally:
            reap(orchestrator)
        assert_as_built(info, built)
    finally:
        drop_database(info)
