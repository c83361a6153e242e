"""Where a run's steps execute: on the machine that starts the run (default) or on Celery workers.

``LIFTLAB_EXECUTOR=celery`` makes ``dagster_celery``'s ``celery_executor`` the executor of every
job: the run worker sends each step to the broker (``LIFTLAB_CELERY_BROKER``, Redis) and any
worker started with the same settings (``deploy/celery.yaml``, or the file in
``LIFTLAB_CELERY_CONFIG``) runs it. No asset changes; ``execute_in_process`` (``make demo``, the
tests' pipeline) is in-process whatever this says. Unset, ``multiprocess`` or ``default``:
liftlab's local executor, ``liftlab_local`` below.

**Start-up cost.** Dagster's default executor spawns a fresh interpreter per step, which imports
Dagster and liftlab and loads the code location again (~3–4 s per step, 43 % of the pipeline's wall
time at size S, and 41–47 s for one experiment's analysis with under 6 s of compute). The local
executor keeps that cost where it buys something:

- the light jobs (``LIGHT_JOBS``: one experiment's units, the daily statistics, one experiment's
  analysis, the decisions — each step seconds of SQL and arithmetic) run their steps in the run's
  own process (Dagster's in-process executor: per-step events, metadata and retry policies are the
  same; steps run one after another);
- the heavy jobs (the build with dbt and the great-expectations suites, the uplift fits) keep one
  process per step, forked from a *forkserver* that imported liftlab, built the code location once
  (``liftlab.preload``) and imported the heavy libraries the job's steps need (``PRELOAD``), so a
  step starts in a fraction of a second and the imports are paid once per run, not once per step.

Run config can change either choice (``execution: config: in_process_jobs / preload_modules /
max_concurrent``), e.g. ``in_process_jobs: []`` for one process per step everywhere.

Each worker records itself on the step: dagster-celery logs an engine event "Executing steps …
in celery worker" with the worker's name (``Celery worker``) before running the step, so the
Dagster UI's event log of the run says which worker ran what (``docs/scaling.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster._core.execution.retries import get_retries_config

from liftlab import config

EXECUTORS = ("multiprocess", "celery")

#: Jobs whose steps are light enough that a process per step costs more than it isolates.
LIGHT_JOBS = ("build_units", "daily_stats", "analyse_experiment", "decide")
#: Modules the forkserver of a heavy job imports once for all its steps (each takes 5–13 s to
#: import; the steps import them inside the asset functions).
PRELOAD = {
    "build_data": ("great_expectations",),
    "uplift_models": ("sklearn.ensemble", "causalml.inference.meta"),
}


def preload_modules(job_name: str) -> list[str]:
    """What the forkserver of ``job_name``'s run imports before forking its steps."""
    return ["liftlab.preload", *PRELOAD.get(job_name, ())]


@dg.executor(
    name="liftlab_local",
    config_schema={
        "in_process_jobs": dg.Field([str], default_value=list(LIGHT_JOBS), description=(
            "Jobs whose steps run in the run's own process, one after another.")),
        "max_concurrent": dg.Field(int, default_value=0, description=(
            "Step processes at once for the other jobs (0: one per CPU).")),
        "preload_modules": dg.Field(dg.Noneable([str]), default_value=None, description=(
            "Modules the forkserver imports before forking steps (default: liftlab.preload and the job's "
            "heavy libraries).")),
        "retries": get_retries_config(),
    },
)
def local_executor(init_context: dg.InitExecutorContext):
    """In-process for the light jobs, a forkserver with preloaded modules for the others."""
    from dagster._core.definitions.reconstruct import ReconstructableJob
    from dagster._core.execution.retries import RetryMode
    from dagster._core.executor.in_process import InProcessExecutor
    from dagster._core.executor.multiprocess import MultiprocessExecutor

    config_ = init_context.executor_config
    retries = RetryMode.from_config(config_["retries"])
    job = init_context.job
    name = job.get_definition().name
    # a job that cannot be rebuilt in another process, or an ephemeral instance, runs in-process
    if (name in config_["in_process_jobs"] or not isinstance(job, ReconstructableJob)
            or init_context.instance.is_ephemeral):
        return InProcessExecutor(retries=retries)
    preload = config_["preload_modules"]
    return MultiprocessExecutor(retries=retries, max_concurrent=config_["max_concurrent"] or None,
                                start_method="forkserver",
                                explicit_forkserver_preload=preload_modules(name) if preload is None else preload)


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
        return dg.Definitions(executor=local_executor)
    import dagster_celery.core_execution_loop as loop

    # The orchestrating process looks for finished steps and submits the next ones once per tick
    # (dagster-celery: 1 s). A run's steps form a chain of a few levels, so a light run spent most
    # of its time waiting for the tick; a Redis poll costs well under a millisecond.
    loop.TICK_SECONDS = celery_poll_seconds()
    return dg.Definitions(executor=liftlab_celery_executor().configured(celery_config(), name="liftlab_celery"))


class BrokerUnavailable(RuntimeError):
    """The Celery broker or result backend went away while a run was orchestrating its steps."""


def liftlab_celery_executor() -> dg.ExecutorDefinition:
    """dagster-celery's executor, whose run fails naming the broker when the broker goes away
    mid-run (a restart, a network cut) instead of with the Redis client's "Connection closed by
    server"; it says what is kept and how to resume."""
    from dagster._core.executor.base import Executor
    from dagster_celery import celery_executor

    class BrokerCheckedExecutor(Executor):
        def __init__(self, inner: Executor, broker: str):
            self._inner, self._broker = inner, broker

        def __getattr__(self, name: str):  # the Celery settings the step submission reads (app_args, …)
            return getattr(self.__dict__["_inner"], name)

        @property
        def retries(self):
            return self._inner.retries

        @property
        def step_dependency_config(self):
            return self._inner.step_dependency_config

        def execute(self, plan_context, execution_plan):
            import kombu.exceptions
            import redis.exceptions

            try:
                yield from self._inner.execute(plan_context, execution_plan)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, kombu.exceptions.OperationalError,
                    ConnectionError) as exc:
                raise BrokerUnavailable(
                    f"the Celery broker {self._broker} stopped answering while this run was orchestrating its steps "
                    f"({type(exc).__name__}: {exc}). The run stops here: steps that finished keep their results (each "
                    "writes its tables in one transaction); steps waiting in the broker may have been lost with it. "
                    "Once the broker answers again, re-execute the run from its failure (Dagster UI: Re-execute → "
                    "From failure); the steps rerun replace what they write.") from exc

    def create(init_context: dg.InitExecutorContext) -> Executor:
        from kombu.utils.url import maybe_sanitize_url

        inner = celery_executor.executor_creation_fn(init_context)
        return BrokerCheckedExecutor(inner, maybe_sanitize_url(str(init_context.executor_config.get("broker") or "")))

    return dg.ExecutorDefinition(name="liftlab_celery_unconfigured", config_schema=celery_executor.config_schema,
                                 requirements=celery_executor._requirements_fn, executor_creation_fn=create,
                                 description="dagster-celery's executor, failing with the broker named when it goes away")


def celery_poll_seconds() -> float:
    """``LIFTLAB_CELERY_POLL_SECONDS`` (default 0.2): how often a run under the Celery executor checks
    its steps' results."""
    value = os.environ.get("LIFTLAB_CELERY_POLL_SECONDS", "0.2")
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"LIFTLAB_CELERY_POLL_SECONDS={value!r} is not a number of seconds") from None
    if not 0.01 <= seconds <= 60:
        raise ValueError(f"LIFTLAB_CELERY_POLL_SECONDS={value!r} must be between 0.01 and 60 seconds")
    return seconds


def execute_run(job_name: str, instance: dg.DagsterInstance, run_config: dict | None = None,
                tags: dict[str, str] | None = None, executor: str | None = None,
                from_failure_of: str | None = None) -> dg.JobExecutionResult:
    """One run of the code location's ``job_name`` orchestrated by this process under the job's own
    executor — what a run worker does for a run launched from the UI, a schedule or a sensor
    (``execute_in_process`` would ignore the executor). The result is returned closed: read its
    ``run_id`` and ``success``, and the events from the instance. ``executor``: the executor the
    job must have (a run meant for workers must not quietly run here). ``from_failure_of``: a failed
    run of the job to re-execute from its failure, with its config (the UI's "Re-execute → From
    failure")."""
    from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository

    # Dagster keeps the last job it rebuilt per process, keyed by its code pointer only: a process
    # that runs jobs under several environments (another LIFTLAB_EXECUTOR) must rebuild them
    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()
    repository = ReconstructableRepository.for_module("liftlab.definitions", "defs",
                                                      working_directory=str(config.REPO_ROOT))
    job = repository.get_reconstructable_job(job_name)
    if executor is not None and job.get_definition().executor_def.name != executor:
        raise ValueError(f"{job_name} has the executor {job.get_definition().executor_def.name!r}, not {executor!r} "
                         f"(LIFTLAB_EXECUTOR={os.environ.get('LIFTLAB_EXECUTOR', '')!r})")
    if from_failure_of is not None:
        options = dg.ReexecutionOptions.from_failure(from_failure_of, instance)
        parent = instance.get_run_by_id(from_failure_of)
        # the partition (or range) the failed run was for: execute_job does not carry it over
        partition = {k: v for k, v in parent.tags.items()
                     if k.startswith(("dagster/partition", "dagster/asset_partition_range"))}
        with dg.execute_job(job, instance, tags={**partition, **(tags or {})}, reexecution_options=options) as result:
            return result
    with dg.execute_job(job, instance, run_config=run_config, tags=tags) as result:
        return result
