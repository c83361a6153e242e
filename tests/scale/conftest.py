"""Fixtures of the scale-out tests: Celery clusters (``tests/scale/celery_helpers.py``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scale.celery_helpers import Cluster, start_cluster


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
