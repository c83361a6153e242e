"""Daily operation: the sensors chain build → analyses → decide and react to new files."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from liftlab.config import REPO_ROOT
from liftlab.defs.automation import (
    BUILD_TAG,
    analyse_after_daily_stats,
    decide_after_analyses,
    spec_and_inbox_sensor,
    stats_after_build,
)


@dg.op
def _noop():
    return None


@dg.job(name="build_data")
def fake_build():
    _noop()


@dg.job(name="analyse_experiment")
def fake_analysis():
    _noop()


@dg.job(name="daily_stats")
def fake_daily_stats():
    _noop()


def _status_context(instance, result, name):
    return dg.build_run_status_sensor_context(
        sensor_name=name, dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=result.get_run_success_event(),
    )


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    specs = tmp_path / "experiments"
    specs.mkdir()
    for name in ("aa_check.yaml", "winback_email.yaml"):
        shutil.copy(REPO_ROOT / "experiments" / name, specs / name)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("LIFTLAB_EXPERIMENTS_DIR", str(specs))
    monkeypatch.setenv("LIFTLAB_INBOX_DIR", str(inbox))
    return specs, inbox


def test_spec_sensor_requests_a_build_on_change_and_registers_partitions(workspace):
    specs, inbox = workspace
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance)
        first = spec_and_inbox_sensor(context)
        assert isinstance(first, dg.SensorResult) and len(first.run_requests) == 1
        added = first.dynamic_partitions_requests[0].partition_keys
        assert set(added) == {"aa_check", "winback_email"}
        instance.add_dynamic_partitions("experiment", list(added))

        again = spec_and_inbox_sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor))
        assert isinstance(again, dg.SkipReason)

        (inbox / "new_campaign.csv").write_text("arm,y\nA,1\n")
        changed = spec_and_inbox_sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor))
        assert len(changed.run_requests) == 1
        assert "new_campaign.csv" in changed.run_requests[0].tags["liftlab/changed"]
        assert not changed.dynamic_partitions_requests  # no new spec, no new partition


def test_a_build_chains_the_daily_stats_range_then_one_analysis_per_partition():
    from liftlab.defs.jobs import STUDY_JOBS
    from liftlab.defs.partitions import day_partitions

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("experiment", ["a", "b"])
        build = fake_build.execute_in_process(instance=instance)
        requests = stats_after_build(_status_context(instance, build, "stats_after_build"))
        assert sorted(r.job_name for r in requests) == sorted(["daily_stats", *(j.name for j in STUDY_JOBS)])
        daily = next(r for r in requests if r.job_name == "daily_stats")
        keys = day_partitions.get_partition_keys()
        assert (daily.partition_key_range.start, daily.partition_key_range.end) == (keys[0], keys[-1])
        assert all(r.tags[BUILD_TAG] == build.run_id for r in requests)

        stats = fake_daily_stats.execute_in_process(instance=instance, tags={BUILD_TAG: build.run_id})
        analyses = analyse_after_daily_stats(_status_context(instance, stats, "analyse_after_daily_stats"))
        assert sorted(r.partition_key for r in analyses) == ["a", "b"]
        assert {r.tags[BUILD_TAG] for r in analyses} == {build.run_id}

        untagged = fake_daily_stats.execute_in_process(instance=instance)  # a manual backfill: nothing to chain
        assert isinstance(analyse_after_daily_stats(_status_context(instance, untagged, "analyse_after_daily_stats")),
                          dg.SkipReason)


def test_decide_waits_for_every_analysis_of_the_latest_build():
    with dg.instance_for_test() as instance:
        from liftlab.defs.jobs import STUDY_JOBS

        instance.add_dynamic_partitions("experiment", ["a", "b"])
        expected = 2 + len(STUDY_JOBS) + 1  # analyses, studies and the daily_stats run
        assert isinstance(decide_after_analyses(dg.build_sensor_context(instance=instance)), dg.SkipReason)
        build = fake_build.execute_in_process(instance=instance)
        fake_analysis.execute_in_process(instance=instance, tags={BUILD_TAG: build.run_id})
        waiting = decide_after_analyses(dg.build_sensor_context(instance=instance))
        assert isinstance(waiting, dg.SkipReason) and f"1/{expected}" in waiting.skip_message
        for _ in range(expected - 1):
            fake_analysis.execute_in_process(instance=instance, tags={BUILD_TAG: build.run_id})
        context = dg.build_sensor_context(instance=instance)
        request = decide_after_analyses(context)
        assert isinstance(request, dg.RunRequest) and request.run_key == f"decide:{build.run_id}"
        # Decided once per build.
        assert isinstance(decide_after_analyses(dg.build_sensor_context(instance=instance, cursor=context.cursor)), dg.SkipReason)


def test_daily_schedule_and_sensors_are_defined():
    from liftlab.pipeline import definitions_with

    defs = definitions_with()
    assert {s.name for s in defs.schedules} == {"daily_build"}
    assert {"stats_after_build", "analyse_after_daily_stats", "decide_after_analyses", "spec_and_inbox_sensor"} <= {
        s.name for s in defs.sensors
    }
