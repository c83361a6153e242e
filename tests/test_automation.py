"""Daily operation: the sensors chain build → units → statistics and studies → analyses → decide,
and react to changed specs, catalogue and data files."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from liftlab.config import REPO_ROOT
from dagster._core.storage.tags import PARTITION_NAME_TAG

from liftlab.defs.automation import (
    BUILD_TAG,
    analyse_after_daily_stats,
    decide_after_analyses,
    spec_and_catalogue_sensor,
    stats_after_units,
    units_after_build,
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


@dg.op
def _maybe_fail(context):
    if context.run.tags.get("fail"):
        raise RuntimeError("the source could not be read")


@dg.job(name="build_units")
def fake_units():
    _maybe_fail()


def _units(instance, build_run_id: str, key: str, fail: bool = False):
    tags = {BUILD_TAG: build_run_id, PARTITION_NAME_TAG: key, **({"fail": "1"} if fail else {})}
    return fake_units.execute_in_process(instance=instance, tags=tags, raise_on_error=False)


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
    metrics = tmp_path / "metrics"
    shutil.copytree(REPO_ROOT / "metrics", metrics)
    monkeypatch.setenv("LIFTLAB_EXPERIMENTS_DIR", str(specs))
    monkeypatch.setenv("LIFTLAB_METRICS_DIR", str(metrics))
    return specs, metrics


def test_spec_sensor_requests_a_build_on_change_and_registers_partitions(workspace):
    specs, metrics = workspace
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance)
        first = spec_and_catalogue_sensor(context)
        assert isinstance(first, dg.SensorResult) and len(first.run_requests) == 1
        added = first.dynamic_partitions_requests[0].partition_keys
        assert set(added) == {"aa_check", "winback_email"}
        instance.add_dynamic_partitions("experiment", list(added))

        again = spec_and_catalogue_sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor))
        assert isinstance(again, dg.SkipReason)

        (metrics / "saas_world.yaml").write_text((metrics / "saas_world.yaml").read_text() + "\n# a new metric soon\n")
        changed = spec_and_catalogue_sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor))
        assert len(changed.run_requests) == 1
        assert "saas_world.yaml" in changed.run_requests[0].tags["liftlab/changed"]
        assert not changed.dynamic_partitions_requests  # no new spec, no new partition


def test_a_build_chains_units_then_statistics_then_one_analysis_per_built_partition():
    from liftlab.defs.jobs import STUDY_JOBS
    from liftlab.defs.partitions import day_partitions

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("experiment", ["a", "b"])
        build = fake_build.execute_in_process(instance=instance)
        units = units_after_build(_status_context(instance, build, "units_after_build"))
        assert sorted(r.partition_key for r in units) == ["a", "b"] and {r.tags[BUILD_TAG] for r in units} == {build.run_id}

        assert isinstance(stats_after_units(dg.build_sensor_context(instance=instance)), dg.SkipReason)  # none built yet
        _units(instance, build.run_id, "a")
        waiting = stats_after_units(dg.build_sensor_context(instance=instance))
        assert isinstance(waiting, dg.SkipReason) and "1/2" in waiting.skip_message
        _units(instance, build.run_id, "b", fail=True)  # a source that failed counts as finished
        context = dg.build_sensor_context(instance=instance)
        requests = stats_after_units(context)
        assert sorted(r.job_name for r in requests) == sorted(["daily_stats", *(j.name for j in STUDY_JOBS)])
        daily = next(r for r in requests if r.job_name == "daily_stats")
        keys = day_partitions.get_partition_keys()
        assert (daily.partition_key_range.start, daily.partition_key_range.end) == (keys[0], keys[-1])
        assert all(r.tags[BUILD_TAG] == build.run_id for r in requests)
        assert isinstance(stats_after_units(dg.build_sensor_context(instance=instance, cursor=context.cursor)),
                          dg.SkipReason)  # once per build

        stats = fake_daily_stats.execute_in_process(instance=instance, tags={BUILD_TAG: build.run_id})
        analyses = analyse_after_daily_stats(_status_context(instance, stats, "analyse_after_daily_stats"))
        assert [r.partition_key for r in analyses] == ["a"]  # b's units failed: its previous results stay
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
        _units(instance, build.run_id, "a")
        assert "still being built" in decide_after_analyses(dg.build_sensor_context(instance=instance)).skip_message
        _units(instance, build.run_id, "b")
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
    assert {"units_after_build", "stats_after_units", "analyse_after_daily_stats", "decide_after_analyses",
            "spec_and_catalogue_sensor"} <= {s.name for s in defs.sensors}
