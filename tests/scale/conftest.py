"""Fixtures of the scale-out tests: Celery clusters (``tests/scale/celery_helpers.py``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scale.celery_helpers import Cluster, start_cluster


@pytest.fixture(scope="module")
def celery_home(server, tmp_path_factory) -> Iterator[Path]:
    """A Dagster home of the scale-out tests' own (run/event storage in a fresh Postgres database):
    their runs must not land in the shared world's instance, whose latest materializations other
    tests read."""
    import json

    from tests.conftest import create_scratch_database, drop_database

    storage = create_scratch_database(server, prefix="dagster_celery")
    home = tmp_path_factory.mktemp("celery_dagster_home")
    (home / "dagster.yaml").write_text("storage:\n  postgres:\n    postgres_url: "
                                       + json.dumps(storage.url(driver="psycopg2")) + "\ntelemetry:\n  enabled: false\n")
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
