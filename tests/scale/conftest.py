"""Fixtures of the scale-out tests: Celery clusters (``tests/scale/celery_helpers.py``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from tests.scale.celery_helpers import Cluster, start_cluster


@pytest.fixture(scope="module")
def runs_home(tmp_path_factory, server, built) -> Iterator[Path]:
    """A Dagster home of the module's own (storage in a fresh Postgres database, as every process
    of a run shares it) for the runs these tests launch on the world's copies: the world's own home
    keeps only the build's runs, which other tests read (the latest check result of a partition
    must be the build's). The world's experiments are registered as partitions."""
    import json

    from tests.conftest import create_scratch_database, drop_database

    storage = create_scratch_database(server, prefix="dagster_runs")
    home = tmp_path_factory.mktemp("runs_home")
    (home / "dagster.yaml").write_text("storage:\n  postgres:\n    postgres_url: "
                                       + json.dumps(storage.url(driver="psycopg2")) + "\ntelemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("experiment", sorted(built.result.decisions["experiment_id"]))
    yield home
    drop_database(storage)


@pytest.fixture()
def celery_cluster_factory(tmp_path_factory) -> Iterator:
    """``start(dagster_home, visibility_timeout)`` → a :class:`Cluster`, stopped after the test."""
    started: list[Cluster] = []

    def start(dagster_home: Path, visibility_timeout: int) -> Cluster:
        cluster = start_cluster(tmp_path_factory.mktemp("celery"), dagster_home, visibility_timeout)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()
        shutil.rmtree(cluster.directory, ignore_errors=True)
