"""The deployment files: the Celery settings, the `celery` compose profile, the Helm values.

No Docker engine, no Kubernetes and no chart download here: the files are loaded and checked
against what their readers expect — dagster-celery's config schema, the compose file's own
references, and the key paths the official Dagster chart reads (its values schema in
``helm/dagster/schema`` of the dagster repository: run launcher, run coordinator, user
deployments, Postgres). Memory limits are checked against the peaks ``make bench`` measured.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from liftlab import config

ROOT = config.REPO_ROOT
VALUES = ROOT / "deploy" / "helm" / "values.yaml"


def _values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def _bytes(quantity: str) -> float:
    """A Kubernetes memory quantity (``512Mi``, ``4Gi``, ``3G``) in bytes."""
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(quantity)).groups()
    scale = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[unit]
    return float(number) * scale


def _peaks_mb() -> dict[str, float]:
    """Peak RSS of each job's largest step at size M (bench/results/pipeline_M.json), by the job
    that runs the step today (the bench ran the causal studies as a job of their own,
    ``causal_studies``, one step per study; they are one step, ``causal__estimates``, of
    ``analyse_experiment`` now)."""
    from liftlab.pipeline import definitions_with

    defs = definitions_with()
    owner = {}
    for job in defs.jobs:
        for node in defs.resolve_job_def(job.name).graph.node_dict:
            owner.setdefault(node, job.name)
    steps = json.loads((ROOT / "bench" / "results" / "pipeline_M.json").read_text())["steps"]
    peaks: dict[str, float] = {}
    for step in steps:
        name = "causal__estimates" if step["step"].startswith("causal__") else step["step"]
        job = owner.get(name, step["job"])
        if step["job"] == "causal_studies":
            assert job == "analyse_experiment", step
        peaks[job] = max(peaks.get(job, 0.0), float(step["peak_rss_mb"]))
    return peaks


# ── Celery ────────────────────────────────────────────────────────────────────────────────────


def test_the_celery_settings_are_valid_for_the_executor_and_the_workers(monkeypatch):
    from dagster_celery.cli import get_validated_config

    monkeypatch.setenv("LIFTLAB_CELERY_BROKER", "redis://127.0.0.1:6399/0")
    monkeypatch.setenv("LIFTLAB_CELERY_BACKEND", "redis://127.0.0.1:6399/1")
    # what `dagster-celery worker start -y deploy/celery.yaml` validates and writes for the worker
    validated = get_validated_config(str(ROOT / "deploy" / "celery.yaml"))
    assert validated["broker"] == "redis://127.0.0.1:6399/0" and validated["backend"] == "redis://127.0.0.1:6399/1"
    source = validated["config_source"]
    assert source["task_acks_late"] is True and source["task_reject_on_worker_lost"] is True
    assert source["worker_prefetch_multiplier"] == 1
    # the visibility timeout must exceed the longest step measured, or a running step is handed out twice
    longest = max(step["seconds"] for step in json.loads((ROOT / "bench" / "results" / "pipeline_M.json").read_text())["steps"])
    assert source["broker_transport_options"]["visibility_timeout"] > 2 * longest


def test_the_executor_follows_liftlab_executor(monkeypatch):
    from liftlab.defs.execution import celery_config, executor_name

    monkeypatch.delenv("LIFTLAB_EXECUTOR", raising=False)
    assert executor_name() == "multiprocess"
    monkeypatch.setenv("LIFTLAB_EXECUTOR", "celery")
    assert executor_name() == "celery"
    assert celery_config()["broker"] == {"env": "LIFTLAB_CELERY_BROKER"}
    monkeypatch.setenv("LIFTLAB_EXECUTOR", "kubernetes")
    with pytest.raises(ValueError, match="not one of"):
        executor_name()


def test_every_job_gets_the_celery_executor_when_asked_and_only_then():
    """In a fresh process (the definitions are loaded once per process, as a code server does)."""
    script = ("from liftlab.pipeline import definitions_with\n"
              "d = definitions_with()\n"
              "print(sorted({d.resolve_job_def(j.name).executor_def.name for j in d.jobs}))")
    names = {}
    for value in ("celery", ""):
        env = {k: v for k, v in __import__("os").environ.items() if k != "LIFTLAB_EXECUTOR"}
        if value:
            env["LIFTLAB_EXECUTOR"] = value
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180, cwd=ROOT)
        assert out.returncode == 0, out.stderr[-3000:]
        names[value] = out.stdout.strip().splitlines()[-1]
    assert names["celery"] == "['liftlab_celery']"
    assert "liftlab_celery" not in names[""]


# ── docker compose: the `celery` profile ──────────────────────────────────────────────────────


def test_the_compose_celery_profile_has_a_broker_and_workers_that_match_the_code_location():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("postgres", "code", "webserver", "daemon"):
        assert "profiles" not in services[name], f"{name} must run without a profile"
    redis, worker = services["redis"], services["worker"]
    assert redis["profiles"] == ["celery"] and worker["profiles"] == ["celery"]
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])
    command = worker["command"]
    assert command[:5] == ["dagster-celery", "worker", "start", "-A", "dagster_celery.app"]
    settings = command[command.index("-y") + 1]
    assert settings == "/opt/liftlab/deploy/celery.yaml"
    # the image has that file (Dockerfile), and the code location reads the same one
    assert "COPY deploy/celery.yaml ./deploy/celery.yaml" in (ROOT / "Dockerfile").read_text()
    assert "--pool=solo" in command
    # liftlab's code location built once per worker (liftlab.preload), before the first step
    assert command[command.index("-i") + 1] == "liftlab.preload" and command.index("-i") < command.index("--")
    assert re.fullmatch(r"\$\{LIFTLAB_CELERY_WORKERS:-[1-9][0-9]*\}", str(worker["deploy"]["replicas"]))
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    # workers, code location, webserver and daemon share one environment: broker, database, Dagster storage
    env = worker["environment"]
    for name in ("code", "webserver", "daemon"):
        assert services[name]["environment"] == env
    # the values steps pass to each other (the uplift fits) are pickled under $DAGSTER_HOME/storage:
    # the run worker's container and every worker share that folder
    storage = f"dagster_storage:{env['DAGSTER_HOME']}/storage"
    assert storage in services["code"]["volumes"] and storage in worker["volumes"]
    assert "dagster_storage" in compose["volumes"]
    assert env["LIFTLAB_CELERY_BROKER"].startswith("redis://redis:6379/")
    assert env["LIFTLAB_CELERY_BACKEND"].startswith("redis://redis:6379/")
    assert env["LIFTLAB_EXECUTOR"].startswith("${LIFTLAB_EXECUTOR:-")
    assert {"DATABASE_URL", "DAGSTER_PG_URL", "DAGSTER_HOME"} <= set(env)
    # every named volume used is declared
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith(".")}
    assert used <= set(compose["volumes"])


def test_make_workers_starts_the_local_workers():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\.PHONY:.*\bworkers\b", makefile, re.M)
    recipe = re.search(r"^workers:.*\n\t(.+)$", makefile, re.M).group(1)
    assert "-m liftlab.workers --workers 2" in recipe


# ── Kubernetes: the Helm values of the official Dagster chart ─────────────────────────────────

#: Keys the chart's values schema allows (pydantic models with ``extra = forbid`` in the chart).
K8S_RUN_LAUNCHER_KEYS = {"image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
                         "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
                         "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig"}
RUN_K8S_CONFIG_KEYS = {"containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig", "jobMetadata"}
QUEUED_COORDINATOR_KEYS = {"maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds", "dequeueNumWorkers",
                           "dequeueUseThreads"}
USER_DEPLOYMENT_KEYS = {"name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns",
                        "deploymentNamespace", "port", "env", "envConfigMaps", "envSecrets", "annotations",
                        "nodeSelector", "affinity", "tolerations", "podSecurityContext", "securityContext", "resources",
                        "livenessProbe", "readinessProbe", "startupProbe", "labels", "volumeMounts", "volumes",
                        "schedulerName", "initContainers", "sidecarContainers", "replicaCount", "service"}
POSTGRESQL_KEYS = {"image", "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword", "postgresqlDatabase",
                   "postgresqlParams", "postgresqlScheme", "service"}


def test_helm_values_launch_every_run_as_a_kubernetes_job():
    launcher = _values()["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    k8s = launcher["config"]["k8sRunLauncher"]
    assert set(k8s) <= K8S_RUN_LAUNCHER_KEYS, set(k8s) - K8S_RUN_LAUNCHER_KEYS
    assert isinstance(k8s["loadInclusterConfig"], bool) and k8s["imagePullPolicy"] in {"Always", "IfNotPresent", "Never"}
    assert set(k8s["runK8sConfig"]) <= RUN_K8S_CONFIG_KEYS
    assert all(set(item) == {"name"} for item in k8s["envSecrets"])


def test_helm_values_queue_runs_with_limits():
    daemon = _values()["dagsterDaemon"]
    assert daemon["enabled"] is True
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] is True and coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert set(queued) <= QUEUED_COORDINATOR_KEYS
    assert isinstance(queued["maxConcurrentRuns"], int) and queued["maxConcurrentRuns"] > 0
    for limit in queued["tagConcurrencyLimits"]:
        assert set(limit) <= {"key", "value", "limit"} and isinstance(limit["limit"], int)
        assert limit["limit"] < queued["maxConcurrentRuns"]


def test_helm_values_serve_the_dockerfile_code_location():
    values = _values()
    users = values["dagster-user-deployments"]
    assert users["enabled"] is True and users["enableSubchart"] is True
    (deployment,) = users["deployments"]
    assert set(deployment) <= USER_DEPLOYMENT_KEYS, set(deployment) - USER_DEPLOYMENT_KEYS
    assert set(deployment["image"]) <= {"repository", "tag", "pullPolicy"} and deployment["image"]["repository"]
    assert isinstance(deployment["port"], int)
    # the module the Dockerfile's code server loads, under the location name every launcher uses
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M).group(1))
    args = deployment["dagsterApiGrpcArgs"]
    module = args[args.index("--module-name") + 1]
    assert module == cmd[cmd.index("-m") + 1] == "liftlab.definitions"
    assert args[args.index("--location-name") + 1] == cmd[cmd.index("--location-name") + 1] == "liftlab"
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert {"name": "liftlab-postgres"} in deployment["envSecrets"]
    shlex.join(args)  # plain strings


def test_helm_values_take_postgres_from_a_secret():
    values = _values()
    postgres = values["postgresql"]
    assert set(postgres) <= POSTGRESQL_KEYS
    assert postgres["enabled"] is False and postgres["postgresqlHost"] and isinstance(postgres["service"]["port"], int)
    assert "postgresqlPassword" not in postgres  # never in the values: the Secret has it
    assert values["generatePostgresqlPasswordSecret"] is False
    secret = values["global"]["postgresqlSecretName"]
    assert {"name": secret} in values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]


def test_pod_memory_covers_the_measured_peaks():
    """Every run pod's limit ≥ its job's largest step at size M + 25 %; the analysis runs get
    their own through the ``dagster-k8s/config`` tag of their job."""
    from liftlab.defs.jobs import ANALYSIS_POD, analyse_experiment_job

    peaks = _peaks_mb()
    default = _values()["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]["resources"]
    tag = json.loads(analyse_experiment_job.tags["dagster-k8s/config"])
    assert tag == ANALYSIS_POD
    for job, peak in peaks.items():
        resources = tag["container_config"]["resources"] if job == "analyse_experiment" else default
        limit = _bytes(resources["limits"]["memory"])
        assert limit >= 1.25 * peak * 2**20, (job, peak, resources)
        assert _bytes(resources["requests"]["memory"]) <= limit
    assert peaks["analyse_experiment"] > _bytes(default["limits"]["memory"]) / 2**20 / 1.25  # why it needs its own
