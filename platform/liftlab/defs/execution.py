"""Where a run's steps execute: on the machine that starts the run (default) or on Celery workers.

``LIFTLAB_EXECUTOR=celery`` makes ``dagster_celery``'s ``celery_executor`` the executor of every
job: the run worker sends each step to the broker (``LIFTLAB_CELERY_BROKER``, Redis) and any
worker started with the same settings (``deploy/celery.yaml``, or the file in
``LIFTLAB_CELERY_CONFIG``) runs it. No asset changes; ``execute_in_process`` (``make demo``, the
tests' pipeline) is in-process whatever this says. Unset, ``multiprocess`` or ``default``:
Dagster's default executor (one process per step on this machine).

Each worker records itself on the step: dagster-celery logs an engine event "Executing steps …
in celery worker" with the worker's name (``Celery worker``) before running the step, so the
Dagster UI's event log of the run says which worker ran what (``docs/scaling.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from liftlab import config

EXECUTORS = ("multiprocess", "celery")


def executor_name() -> str:
    name = os.environ.get("LIFTLAB_EXECUTOR", "").strip().lower() or "multiprocess"
    if name == "default":
        name = "multiprocess"
    if name not in EXECUTORS:
        raise ValueError(f"LIFTLAB_EXECUTOR={name!r} is not one of {', '.join(EXECUTORS)}")
    return name


def celery_config_path() -> Path:
    value = os.environ.get("LIFTLAB_CELERY_CONFIG")
    return Path(value).expanduser().resolve() if value else config.REPO_ROOT / "deploy" / "celery.yaml"


def celery_config(path: Path | None = None) -> dict:
    """The ``execution: config:`` block of the workers' YAML: the executor is configured with it too."""
    import yaml

    path = path or celery_config_path()
    loaded = yaml.safe_load(path.read_text()) or {}
    block = (loaded.get("execution") or {}).get("config")
    if not isinstance(block, dict):
        raise ValueError(f"{path}: no `execution: config:` block (the dagster-celery worker's config format)")
    return block


@dg.definitions
def execution() -> dg.Definitions:
    if executor_name() == "multiprocess":
        return dg.Definitions()
    from dagster_celery import celery_executor

    return dg.Definitions(executor=celery_executor.configured(celery_config(), name="liftlab_celery"))
