"""Celery workers for the scale-out tests: a Redis of their own and two ``dagster-celery`` workers
(real processes, started with ``liftlab.workers`` — the code behind ``make workers``), and runs
whose steps execute on them.

``python -m tests.scale.celery_helpers JOB DATABASE_URL [KEY=VALUE tags …]`` orchestrates one run
in a process of its own (as a run worker would) and prints its id and outcome as JSON; the
environment must point at the cluster (``Cluster.env``) and at ``DAGSTER_HOME``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import dagster as dg
import yaml

from liftlab import config
from liftlab.workers import RedisServer, Worker, free_port, start_worker, wait_until_ready

#: A database the workers must never use: every run names its database in its run config
#: (``resources.postgres``), so a run that did not would fail instead of writing elsewhere.
NO_DATABASE = "postgresql://nobody@127.0.0.1:1/no_database_given_by_the_run"


def celery_test_config(path: Path, visibility_timeout: int) -> Path:
    """``deploy/celery.yaml`` with another visibility timeout and a 1 s restore sweep; a worker
    whose broker is gone (its test process was killed, and the Redis with it) exits after a
    few reconnection attempts instead of a hundred."""
    settings = yaml.safe_load((config.REPO_ROOT / "deploy" / "celery.yaml").read_text())
    source = settings["execution"]["config"]["config_source"]
    source["broker_transport_options"].update(visibility_timeout=visibility_timeout, unacked_restore_interval=1,
                                              unacked_restore_throttle=1)
    source["broker_connection_max_retries"] = 3
    path.write_text(yaml.safe_dump(settings))
    return path


@dataclass
class Cluster:
    """Redis and the workers; ``env``: what a run's orchestrating process needs to use them."""

    directory: Path
    redis: RedisServer
    env: dict[str, str]
    workers: list[Worker] = field(default_factory=list)

    def start_workers(self, count: int = 2) -> None:
        worker_env = {**os.environ, **self.env, "DATABASE_URL": NO_DATABASE}
        self.workers = [start_worker(f"worker{i + 1}", worker_env, self.directory / "logs") for i in range(count)]
        wait_until_ready(self.workers, self.env["LIFTLAB_CELERY_BROKER"])

    def worker(self, hostname: str) -> Worker:
        return next(w for w in self.workers if w.hostname == hostname)

    def orchestrator_log(self) -> str:
        """The tail of the last orchestrating process's stderr."""
        logs = sorted(self.directory.glob("orchestrator-*.log"))
        return logs[-1].read_text()[-4000:] if logs else ""

    def logs(self) -> str:
        return "\n".join(f"--- {w.name} (pid {w._pid})\n{w.log_tail(4000)}" for w in self.workers)

    def stop(self) -> None:
        """Every worker's warm shutdown at once (each waits for its broker connection to close), then Redis."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max(len(self.workers), 1)) as pool:
            list(pool.map(Worker.stop, self.workers))
        self.redis.stop()

    def execute(self, job_name: str, instance: dg.DagsterInstance, database_url: str,
                tags: dict[str, str] | None = None, from_failure_of: str | None = None) -> dg.JobExecutionResult:
        """Run ``job_name`` of liftlab's code location with the Celery executor: this process
        orchestrates, the workers run every step (on the database ``database_url``)."""
        # the orchestrating process reads the broker from its environment (see `orchestrating`):
        # a stale or missing one would send steps where no worker listens
        assert all(os.environ.get(k) == v for k, v in self.env.items()), "call inside cluster.orchestrating()"
        return execute_on_celery(job_name, instance, database_url, tags, from_failure_of)

    def launch(self, job_name: str, database_url: str, tags: dict[str, str],
               partitions: list[str] | None = None) -> subprocess.Popen:
        """The same run orchestrated by a process of its own, or one run per partition, one after
        the other (stdout: a line ``{"partition", "run_id", "success"}`` per run)."""
        command = [sys.executable, "-m", "tests.scale.celery_helpers", job_name, database_url,
                   *(["--partitions", ",".join(partitions)] if partitions else []),
                   *(f"{k}={v}" for k, v in tags.items())]
        log = self.directory / f"orchestrator-{len(list(self.directory.glob('orchestrator-*.log')))}.log"
        return subprocess.Popen(command, env={**os.environ, **self.env}, cwd=config.REPO_ROOT,
                                stdout=subprocess.PIPE, stderr=log.open("wb"), text=True)

    @contextmanager
    def orchestrating(self) -> Iterator[None]:
        """This process's environment pointed at the cluster, once for all the runs it
        orchestrates (patching it per run from several threads would restore it under the others)."""
        with mock.patch.dict(os.environ, self.env):
            yield


def execute_on_celery(job_name: str, instance: dg.DagsterInstance, database_url: str,
                      tags: dict[str, str] | None = None, from_failure_of: str | None = None) -> dg.JobExecutionResult:
    """One run of liftlab's code location with the Celery executor (``LIFTLAB_EXECUTOR=celery``
    in this process's environment); the run config points liftlab's database at ``database_url``."""
    from celery.exceptions import DuplicateTaskNameWarning

    from liftlab.defs.execution import execute_run
    run_config = {"resources": {"postgres": {"config": {"database_url": database_url}}},
                  "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    with warnings.catch_warnings():
        # dagster-celery registers its one task anew for every step it submits (same name, same
        # code) and Celery 5.7 warns each time: noise, not a fault
        warnings.simplefilter("ignore", DuplicateTaskNameWarning)
        return execute_run(job_name, instance, run_config=run_config, tags=tags, executor="liftlab_celery",
                           from_failure_of=from_failure_of)


def start_cluster(directory: Path, dagster_home: Path, visibility_timeout: int, workers: int = 2) -> Cluster:
    redis = RedisServer(directory / "redis", free_port()).start()
    env = {"DAGSTER_HOME": str(dagster_home), "LIFTLAB_EXECUTOR": "celery",
           "LIFTLAB_CELERY_CONFIG": str(celery_test_config(directory / "celery.yaml", visibility_timeout)),
           "LIFTLAB_CELERY_BROKER": redis.url(0), "LIFTLAB_CELERY_BACKEND": redis.url(1)}
    cluster = Cluster(directory, redis, env)
    try:
        cluster.start_workers(workers)
    except BaseException:
        cluster.stop()
        raise
    return cluster


if __name__ == "__main__":
    job_name, url, *rest = sys.argv[1:]
    partitions: list[str | None] = [None]
    if rest[:1] == ["--partitions"]:
        partitions, rest = rest[1].split(","), rest[2:]
    tags = dict(pair.split("=", 1) for pair in rest)
    with dg.DagsterInstance.get() as instance:
        for partition in partitions:
            outcome = execute_on_celery(job_name, instance, url,
                                        {**tags, **({"dagster/partition": partition} if partition else {})})
            print(json.dumps({"partition": partition, "run_id": outcome.run_id, "success": outcome.success}), flush=True)
