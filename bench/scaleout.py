"""The study jobs on 1 and then 2 Celery workers, on the world ``bench/pipeline.py`` built at a size.

    .venv/bin/python bench/scaleout.py --size S          # what `make bench` runs after the pipeline

The study jobs are the uplift fits (``uplift_models``: one step per experiment × arm × outcome)
and the causal analyses of the launches that were not randomized (``analyse_experiment`` of each
observational spec), all launched at once, each run orchestrated by a process of its own as the
run queue launches them. They run on a Redis of their own (``redis-server``) and N
``dagster-celery`` workers started with ``liftlab.workers`` (the code behind ``make workers``),
first N = 1, then N = 2, on the database of the size (``liftlab_bench_<size>``) and a Dagster
storage in Postgres (the workers and the orchestrators share it). Reported per N: the wall time
of the batch, the sum of its steps, which worker ran how many steps, and the speed-up of 2 workers
over 1; the tables the two batches wrote must be the same (the fits are seeded).

Results: ``bench/results/scaleout_<size>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
WORK = BENCH / "work"

#: The tables the study jobs write, compared between the batches (their seeded columns).
COMPARED = {
    "results.uplift_models": "experiment_id, arm, metric, learner, qini, qini_ci_low, qini_ci_high, auuc",
    "results.uplift_scores": "experiment_id, arm, metric, learner, unit_id, predicted_uplift",
    "results.targeting_policy": "experiment_id, arm, metric, learner, policy, k_pct, profit",
    "results.causal_effects": "study, analysis, metric, estimand, estimator, estimate, ci_low, ci_high",
}


def observational_launches() -> list[str]:
    from liftlab.specs import load_specs

    return [item.spec.id for item in load_specs() if item.spec.design != "randomized"]


def fingerprint(url: str) -> dict[str, str]:
    """md5 of each compared table's seeded columns, rows in a fixed order."""
    import psycopg

    out = {}
    with psycopg.connect(url) as conn:
        for table, columns in COMPARED.items():
            out[table] = conn.execute(
                f"select count(*)::text || ':' || coalesce(md5(string_agg(t::text, '|' order by t::text)), '') "
                f"from (select {columns} from {table}) t").fetchone()[0]
    return out


def dagster_storage(server, name: str, home: Path) -> None:
    """A DAGSTER_HOME whose storage is a fresh Postgres database (workers and orchestrators share it)."""
    from liftlab import db

    with db.connect(server.with_db("postgres"), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
    db.ensure_database(server, name)
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("storage:\n  postgres:\n    postgres_url: "
                                       + json.dumps(server.with_db(name).url(driver="psycopg2"))
                                       + "\ntelemetry:\n  enabled: false\n")


def batch(n_workers: int, runs: list[tuple[str, dict]], env: dict[str, str], directory: Path) -> dict:
    """Start Redis and ``n_workers`` workers, launch every run at once, wait; the batch's figures."""
    import dagster as dg

    from liftlab.workers import RedisServer, free_port, start_worker, step_workers, wait_until_ready

    redis = RedisServer(directory / "redis", free_port()).start()
    env = {**env, "LIFTLAB_EXECUTOR": "celery", "LIFTLAB_CELERY_BROKER": redis.url(0),
           "LIFTLAB_CELERY_BACKEND": redis.url(1)}
    workers = []
    try:
        workers = [start_worker(f"worker{i + 1}", {**os.environ, **env}, directory / "logs") for i in range(n_workers)]
        wait_until_ready(workers, env["LIFTLAB_CELERY_BROKER"])
        started = time.perf_counter()
        processes = [subprocess.Popen(
            [sys.executable, str(BENCH / "pipeline.py"), "run-job", job, "--run-config", "{}",
             *(arg for k, v in tags.items() for arg in ("--tag", f"{k}={v}"))],
            env={**os.environ, **env}, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for job, tags in runs]
        outcomes = []
        for (job, tags), process in zip(runs, processes):
            out, err = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"{job} {tags}: exit {process.returncode}\n{err[-3000:]}")
            outcomes.append({"job": job, **tags, **json.loads(out.strip().splitlines()[-1])})
        wall = time.perf_counter() - started
    finally:
        for worker in workers:
            worker.stop()
        redis.stop()
    steps, by_worker = 0.0, {}
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        for outcome in outcomes:
            steps += sum(s.end_time - s.start_time for s in instance.get_run_step_stats(outcome["run_id"])
                         if s.end_time and s.start_time)
            for names in step_workers(instance, outcome["run_id"]).values():
                for name in names:
                    by_worker[name] = by_worker.get(name, 0) + 1
    if not all(o["success"] for o in outcomes):
        raise RuntimeError(f"a study run failed: {outcomes}")
    return {"workers": n_workers, "wall_seconds": wall, "steps_seconds": steps, "steps_by_worker": by_worker,
            "runs": outcomes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="S")
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")

    import dagster as dg

    from liftlab import db

    server = db.resolve()
    size = args.size.upper()
    info = server.with_db(f"liftlab_bench_{size.lower()}")
    with db.connect(server.with_db("postgres"), autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (info.dbname,)).fetchone():
            raise SystemExit(f"no database {info.dbname}: run `bench/pipeline.py --sizes {size}` first")
    work = WORK / f"scaleout_{size}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    launches = observational_launches()
    runs = [("uplift_models", {})] + [("analyse_experiment", {"dagster/partition": e}) for e in launches]
    results = {}
    for n in (1, 2):
        home = work / f"dagster_home_{n}"
        dagster_storage(server, f"liftlab_bench_scaleout_{n}", home)
        env = {"DATABASE_URL": info.url(), "DAGSTER_HOME": str(home), "LIFTLAB_REPORTS_DIR": str(work / "reports")}
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions("experiment", launches)
        print(f"== {size}: study jobs ({', '.join(j if not t else t['dagster/partition'] for j, t in runs)}) "
              f"on {n} worker(s)", flush=True)
        results[n] = batch(n, runs, env, work / f"celery_{n}")
        results[n]["tables"] = fingerprint(info.url())
        print(f"  wall {results[n]['wall_seconds']:.1f} s, steps {results[n]['steps_seconds']:.1f} s, "
              f"steps per worker {results[n]['steps_by_worker']}", flush=True)
    same = results[1]["tables"] == results[2]["tables"]
    summary = {"size": size, "study_runs": [j if not t else f"{j}:{t['dagster/partition']}" for j, t in runs],
               "one_worker": results[1], "two_workers": results[2],
               "speed_up": results[1]["wall_seconds"] / results[2]["wall_seconds"], "same_tables": same,
               "cores": os.cpu_count(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"scaleout_{size}.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"  speed-up of 2 workers over 1: ×{summary['speed_up']:.2f}; same tables: {same}", flush=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
