"""``make bench``: the whole liftlab pipeline at sizes S, M (L on demand), each stage next to a baseline.

    .venv/bin/python bench/pipeline.py --sizes S,M          # what `make bench` runs
    .venv/bin/python bench/pipeline.py --sizes L            # on demand (~300M events)

Sizes are synthetic worlds of ``users`` users (~64 events per user): XS 20k (the CI smoke run),
S 156k (~10M events), M 1.56M (~100M events), L 4.7M (~300M events). For each size, in a fresh
database on liftlab's server (embedded, or ``DATABASE_URL``):

1. **The pipeline**, job by job as ``make demo`` runs it (build_data, build_units per experiment,
   daily_stats over the day range, uplift_models, analyse_experiment per experiment, decide), each
   run in a fresh process of its own as the UI or the daemon launches it, under each job's own
   executor (liftlab's local executor: the light jobs in-process, the heavy ones one step at a
   time in processes forked from a forkserver with preloaded modules). The pipeline's wall time
   (every run process, start-up included) is reported against the sum of its steps, and every
   ``analyse_experiment`` run's wall time. A sampler thread reads each process's peak RSS
   (``VmHWM``, and that of its children such as dbt) from ``/proc``; a step run in-process gets
   its run process's peak. Steps are grouped into the stages generate, ingest,
   transform, gates, sufficient statistics, effects, causal, uplift fit and report; each gets
   wall time, rows/s and peak RSS.
2. **Baselines, in the same run, on the same rows**:
   - ingestion vs ``psql \\copy`` of the same events (CSV files) into an identical table;
   - events → unit metrics: dbt (the marts' own model times from ``run_results.json``) vs polars
     (lazy, streaming) vs pandas, on the same events; the three results are compared;
   - sufficient statistics (liftlab's ``aggregate_joint``, bit-deterministic) vs a bare polars
     ``group_by`` vs pandas vs a Postgres ``GROUP BY`` of the same 10M-row unit frame;
   - the statistics engine vs GrowthBook's gbstats on the same sufficient statistics (1,000
     metrics × 4 arms), with the largest difference between their estimates.

Results: ``bench/results/pipeline_<size>.json`` (with the machine's details) and
``bench/results/pipeline.json`` + ``pipeline.png`` across the sizes of the run (log-log slope of
the pipeline's time against events). Scratch data lives in ``bench/work/`` (ignored).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
WORK = BENCH / "work"
GBSTATS_PYTHON = REPO / ".venv-gbstats" / "bin" / "python"

#: users per size (~64 events per user in the synthetic world)
SIZES = {"XS": 20_000, "S": 156_000, "M": 1_560_000, "L": 4_700_000}
SUFFSTATS_ROWS = {"XS": 1_000_000}  # the sufficient-statistics comparison: 10M rows, 1M in the smoke run
SUFFSTATS_DEFAULT_ROWS = 10_000_000

STAGES = ["generate", "ingest", "transform", "gates", "sufficient statistics", "effects", "causal", "uplift fit", "report"]


def stage_of(step: str) -> str:
    """The stage a Dagster step belongs to."""
    if step in ("synthetic_world", "raw__experiment_specs"):
        return "ingest"
    if step == "units__unit_metrics":
        return "transform"
    if step == "dbt_models":
        return "transform"
    if step.endswith("_ge_suite") or step.endswith("_daily_drift") or step in ("trust_gates", "gates__aa_calibration"):
        return "gates"
    if step in ("results__daily_stats", "results__sufficient_stats"):
        return "sufficient statistics"
    if step in ("results__effects", "results__power", "results__daily_looks", "results__slice_effects"):
        return "effects"
    if step.startswith("causal__"):
        return "causal"
    if step.startswith("uplift") or step in ("results__targeting_policy", "results__uplift_segments"):
        return "uplift fit"
    if step in ("results__decisions", "reports__experiment_reports"):
        return "report"
    return "other"


# --------------------------------------------------------------------------------------------
# memory: the peak RSS of every process under this one, sampled from /proc


class RssSampler:
    """Samples ``VmHWM`` (the kernel's own peak-RSS mark) of every descendant process."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak_kb, self.parent, self._stop = interval, {}, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        me = os.getpid()
        while not self._stop.is_set():
            children: dict[int, list[int]] = {}
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        stat = Path(f"/proc/{entry}/stat").read_text()
                        ppid = int(stat.rsplit(")", 1)[1].split()[1])
                    except (OSError, ValueError, IndexError):
                        continue
                    children.setdefault(ppid, []).append(int(entry))
            todo = [me]
            while todo:
                pid = todo.pop()
                for child in children.get(pid, []):
                    self.parent[child] = pid
                    todo.append(child)
                    try:
                        for line in Path(f"/proc/{child}/status").read_text().splitlines():
                            if line.startswith("VmHWM:"):
                                kb = int(line.split()[1])
                                self.peak_kb[child] = max(kb, self.peak_kb.get(child, 0))
                    except OSError:
                        pass
            self._stop.wait(self.interval)

    def peak_mb(self, pid: int) -> float:
        """Largest peak among ``pid`` and its descendants (each process on its own)."""
        pids = {pid} | {p for p in self.peak_kb if self._ancestor(p, pid)}
        return max((self.peak_kb.get(p, 0) for p in pids), default=0) / 1024

    def _ancestor(self, pid: int, ancestor: int) -> bool:
        while pid in self.parent:
            pid = self.parent[pid]
            if pid == ancestor:
                return True
        return False


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Run a command; wall seconds, peak RSS in MB (the child and its waited-for children), stdout."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} … failed with exit code {proc.returncode}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024, out


# --------------------------------------------------------------------------------------------
# the pipeline's jobs, each run in a process of its own as the UI or the daemon launches it


def cmd_run_job(args) -> None:
    """One run of liftlab's code location in this process, with the job's own executor (what a
    run worker does for a run launched from the UI): prints the run id and outcome as JSON."""
    import dagster as dg

    from liftlab.defs.execution import execute_run

    tags = dict(pair.split("=", 1) for pair in args.tag)
    run_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}, **json.loads(args.run_config)}
    with dg.DagsterInstance.get() as instance:
        result = execute_run(args.job, instance, run_config=run_config, tags=tags)
        print(json.dumps({"run_id": result.run_id, "success": result.success, "pid": os.getpid()}), flush=True)


#: The local executor (liftlab.defs.execution): in-process for the light jobs, and for the heavy
#: ones a forkserver with preloaded modules, one step at a time so stages do not overlap.
RUN_CONFIG = {"execution": {"config": {"max_concurrent": 1}}}


def launch_run(job: str, tags: dict[str, str], run_config: dict | None = None) -> dict:
    """Run ``job`` in a fresh process (import, code location, executor, steps); its outcome and wall time."""
    command = [sys.executable, str(Path(__file__).resolve()), "run-job", job,
               "--run-config", json.dumps(RUN_CONFIG if run_config is None else run_config),
               *(arg for k, v in tags.items() for arg in ("--tag", f"{k}={v}"))]
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"{job} {tags}: exit code {out.returncode}\n{out.stderr[-3000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "wall_seconds": wall}


def run_jobs(sampler: RssSampler) -> tuple[list[dict], dict, list[dict]]:
    """The pipeline's jobs in order, each in its own run process; per step: job, seconds, pid,
    peak RSS; the materializations' metadata; per run: job, partition, wall seconds, its steps."""
    import dagster as dg

    from liftlab.pipeline import day_range_tags
    from liftlab.specs import load_specs

    ids = [item.spec.id for item in load_specs()]
    plan = [("build_data", {})] + [("build_units", {"dagster/partition": i}) for i in ids]
    plan += [("daily_stats", day_range_tags()), ("uplift_models", {})]
    plan += [("analyse_experiment", {"dagster/partition": i}) for i in ids]
    plan += [("decide", {})]
    steps, metadata, runs = [], {}, []
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("experiment", ids)
    for job, tags in plan:
        outcome = launch_run(job, tags)
        # a halting gate fails its run, by design
        if not outcome["success"] and job != "analyse_experiment":
            raise RuntimeError(f"{job} failed (run {outcome['run_id']})")
        with dg.DagsterInstance.get() as instance:
            mine = _step_records(instance, outcome, job, sampler)
            steps += mine
            for record in instance.all_logs(outcome["run_id"], of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
                mat = record.dagster_event.event_specific_data.materialization
                metadata[mat.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        runs.append({"job": job, "partition": tags.get("dagster/partition"), "wall_seconds": outcome["wall_seconds"],
                     "steps": len(mine), "steps_seconds": sum(st["seconds"] for st in mine),
                     "step_processes": "forked" if any(st["own_process"] for st in mine) else "in-process",
                     "success": outcome["success"]})
        print(f"  {job} {tags.get('dagster/partition', '')}: {outcome['wall_seconds']:.1f} s", flush=True)
    return steps, metadata, runs


def _step_records(instance, outcome: dict, job: str, sampler: RssSampler) -> list[dict]:
    """Steps of one run; a step run in the run's own process (in-process executor) gets that
    process's peak RSS over the whole run (an upper bound of its own)."""
    start, end, pid = {}, {}, {}
    for record in instance.all_logs(outcome["run_id"]):
        event = record.dagster_event
        if event is None:
            continue
        key = event.step_key
        if event.event_type_value == "STEP_START":
            start[key] = record.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            end[key] = record.timestamp
        elif key and event.message and "in subprocess" in event.message:
            meta = getattr(event.event_specific_data, "metadata", None) or {}
            if "pid" in meta:
                pid[key] = int(meta["pid"].value)
    return [{"job": job, "step": k, "stage": stage_of(k), "seconds": end[k] - start[k],
             "pid": pid.get(k, outcome["pid"]), "own_process": k in pid,
             "peak_rss_mb": sampler.peak_mb(pid.get(k, outcome["pid"]))}
            for k in start if k in end]


# --------------------------------------------------------------------------------------------
# stage: generate (the world alone), and the files the baselines read


def cmd_generate(args) -> None:
    """Generate the world chunk by chunk; time generation apart from writing the baselines' files."""

    from liftlab.defs.resources import SyntheticWorldResource
    from liftlab.synth import WorldStream

    out = Path(args.out)
    for sub in ("events", "csv"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    # the world the pipeline's asset generates (seed and faults from the same environment)
    config = SyntheticWorldResource(n_users=args.users).world_config()
    stream, gen_s, events = WorldStream(config), 0.0, 0
    iterator = iter(stream)
    while True:
        t = time.perf_counter()
        chunk = next(iterator, None)
        gen_s += time.perf_counter() - t
        if chunk is None:
            break
        events += chunk.events.height
        chunk.events.write_parquet(out / "events" / f"part-{chunk.index:05d}.parquet")
        chunk.events.write_csv(out / "csv" / f"part-{chunk.index:05d}.csv", include_header=False, null_value="")
    stream.tail().exposures.write_parquet(out / "exposures.parquet")
    print(json.dumps({"events": events, "generate_seconds": gen_s}))


# --------------------------------------------------------------------------------------------
# baseline: psql \copy of the same events


def _psql_copy(dsn: str, csv_dir: Path) -> float:
    """``psql \copy`` of every events CSV file into bench.events (emptied first), one transaction."""
    cmds = ["begin", "truncate bench.events"] + [
        f"\\copy bench.events (event_id, user_id, event_ts, event_type, value) from '{f}' with (format csv, null '')"
        for f in sorted(csv_dir.glob("*.csv"))] + ["commit"]
    argv = ["psql", dsn, "-v", "ON_ERROR_STOP=1", "-q"] + [a for c in cmds for a in ("-c", c)]
    seconds, _, _ = run_measured(argv)
    return seconds


def cmd_ingest(args) -> None:
    """liftlab's loader (row rules, cross-chunk event_id uniqueness, quarantine, COPY) vs psql
    ``\copy`` on the same events, alternately, ``--repeats`` times each; medians."""
    import polars as pl
    import psycopg

    from liftlab.ingest.loaders import SliceLoad
    from liftlab.ingest.validate import EVENT_RULES

    world = Path(args.world)
    chunks = [pl.read_parquet(f) for f in sorted((world / "events").glob("*.parquet"))]
    rows = sum(c.height for c in chunks)
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute("create schema if not exists bench; drop table if exists bench.events; "
                     "create table bench.events (like raw.events)")
    ours, theirs = [], []
    for _ in range(args.repeats):
        theirs.append(_psql_copy(args.dsn, world / "csv"))
        with psycopg.connect(args.dsn) as conn:
            started = time.perf_counter()
            with conn.transaction():
                load = SliceLoad(conn, source="bench:events", table="bench.events", rules=EVENT_RULES,
                                 unique=("event_id", "duplicate event_id"))
                for chunk in chunks:
                    load.add(chunk)
                report = load.finish()
            ours.append(time.perf_counter() - started)
        assert report.accepted == rows, report
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute("drop table bench.events")
    print(json.dumps({"rows": rows, "liftlab_s": statistics.median(ours), "psql_copy_s": statistics.median(theirs),
                      "liftlab_times": ours, "psql_times": theirs}))


# --------------------------------------------------------------------------------------------
# baseline: events → unit metrics in polars and pandas (the dbt marts' logic)


def cmd_transform(args) -> None:
    """Events → user-day → first exposures → unit metrics, in polars (lazy, streaming) or pandas."""
    import polars as pl

    from liftlab.specs import load_specs

    specs = [s.spec for s in load_specs() if s.spec.source.kind == "demo"]
    windows = pl.DataFrame({
        "experiment_id": [s.id for s in specs], "start_date": [s.start_date for s in specs],
        "end_date": [s.end_date for s in specs], "pre_days": [s.pre_period_days for s in specs],
    })
    world = Path(args.world)
    # the same rows in memory first (untimed): both engines are timed on the computation alone;
    # --scan: polars reads the files lazily inside the timed query (for worlds too big for memory)
    if args.scan:
        events, exposures = pl.scan_parquet(world / "events" / "*.parquet"), pl.scan_parquet(world / "exposures.parquet")
    else:
        events, exposures = pl.read_parquet(world / "events" / "*.parquet"), pl.read_parquet(world / "exposures.parquet")
    if args.engine == "pandas":
        import pandas as pd

        def to_pandas(frame):  # without pyarrow: column by column through numpy (UTC, naive)
            return pd.DataFrame({c: frame[c].dt.replace_time_zone(None).to_numpy() if frame[c].dtype == pl.Datetime("us", "UTC")
                                 else frame[c].to_numpy() for c in frame.columns})

        events, exposures = to_pandas(events), to_pandas(exposures)
    started = time.perf_counter()
    result = (_polars_unit_metrics if args.engine == "polars" else _pandas_unit_metrics)(events, exposures, windows)
    seconds = time.perf_counter() - started
    sums = (result.group_by("experiment_id").agg(pl.len().alias("units"), *[pl.col(c).sum().round(2) for c in CHECKED])
            .sort("experiment_id"))
    check = {r.pop("experiment_id"): {k: float(v) for k, v in r.items()} for r in sums.to_dicts()}
    print(json.dumps({"engine": args.engine, "seconds": seconds, "reads_files_in_timed_part": bool(args.scan), "check": check}))


#: Unit-level columns whose sums the transform baselines and liftlab's unit tables are checked on.
CHECKED = ("sessions", "revenue", "converted", "active_days", "pre_sessions", "pre_revenue")


COUNTS = ("session", "ai_call", "task_completed", "support_ticket", "upgrade")
OUTCOMES = {"session": "sessions", "ai_call": "ai_calls", "task_completed": "tasks_completed",
            "support_ticket": "support_tickets", "upgrade": "upgrades"}


def _polars_unit_metrics(events, exposures, windows):
    import polars as pl

    ev = events.lazy()
    daily = ev.group_by("user_id", pl.col("event_ts").dt.date().alias("day")).agg(
        *[(pl.col("event_type") == t).sum().alias(OUTCOMES[t]) for t in COUNTS],
        pl.col("value").filter(pl.col("event_type") == "payment").sum().alias("revenue"),
    )
    first = (exposures.lazy()
             .sort("exposed_at", "variant")
             .group_by("experiment_id", "user_id").agg(pl.col("variant").first(), pl.col("exposed_at").min().dt.date().alias("exposure_date"),
                                                       pl.col("variant").n_unique().alias("n_variants")))
    units = first.join(windows.lazy(), on="experiment_id")
    joined = units.join(daily, on="user_id", how="left").with_columns(
        (pl.col("day").is_between(pl.col("exposure_date"), pl.col("end_date"))).fill_null(False).alias("w"),
        ((pl.col("day") >= pl.col("exposure_date") - pl.duration(days=pl.col("pre_days")))
         & (pl.col("day") < pl.col("exposure_date"))).fill_null(False).alias("p"))
    agg = joined.group_by("experiment_id", "user_id", "variant", "exposure_date").agg(
        *[pl.col(c).filter(pl.col("w")).sum().alias(c) for c in ("sessions", "ai_calls", "tasks_completed", "support_tickets", "revenue")],
        (pl.col("upgrades").filter(pl.col("w")).sum() > 0).cast(pl.Int32).alias("converted"),
        (pl.col("sessions").filter(pl.col("w")).sum() > 0).cast(pl.Int32).alias("reactivated"),
        (pl.col("w") & (pl.col("sessions") > 0)).sum().alias("active_days"),
        *[pl.col(c).filter(pl.col("p")).sum().alias(f"pre_{c}") for c in ("sessions", "ai_calls", "tasks_completed", "support_tickets", "revenue")],
        (pl.col("p") & (pl.col("sessions") > 0)).sum().alias("pre_active_days"),
    )
    return agg.collect(engine="streaming")


def _pandas_unit_metrics(ev, ex, windows):
    import pandas as pd
    import polars as pl

    ev["day"] = ev["event_ts"].dt.normalize()
    for t in COUNTS:
        ev[OUTCOMES[t]] = (ev["event_type"] == t).astype("int32")
    ev["revenue"] = ev["value"].where(ev["event_type"] == "payment", 0.0)
    daily = ev.groupby(["user_id", "day"], sort=False)[[*OUTCOMES.values(), "revenue"]].sum().reset_index()
    del ev
    ex = ex.sort_values(["exposed_at", "variant"])
    first = ex.groupby(["experiment_id", "user_id"], sort=False).agg(
        variant=("variant", "first"), exposed_at=("exposed_at", "min"), n_variants=("variant", "nunique")).reset_index()
    first["exposure_date"] = first["exposed_at"].dt.normalize()
    w = pd.DataFrame({c: windows[c].to_numpy() for c in windows.columns})
    for c in ("start_date", "end_date"):
        w[c] = pd.to_datetime(w[c])
    units = first.merge(w, on="experiment_id")
    j = units.merge(daily, on="user_id", how="left")
    inw = (j["day"] >= j["exposure_date"]) & (j["day"] <= j["end_date"])
    pre = (j["day"] >= j["exposure_date"] - pd.to_timedelta(j["pre_days"], unit="D")) & (j["day"] < j["exposure_date"])
    cols = ["sessions", "ai_calls", "tasks_completed", "support_tickets", "revenue"]
    for c in cols:
        j[f"w_{c}"] = j[c].where(inw, 0)
        j[f"pre_{c}"] = j[c].where(pre, 0)
    j["w_upgrades"] = j["upgrades"].where(inw, 0)
    j["active_days"] = (inw & (j["sessions"] > 0)).astype("int64")
    j["pre_active_days"] = (pre & (j["sessions"] > 0)).astype("int64")
    keys = ["experiment_id", "user_id", "variant", "exposure_date"]
    agg = j.groupby(keys, sort=False)[[f"w_{c}" for c in cols] + ["w_upgrades", "active_days", "pre_active_days"]
                                      + [f"pre_{c}" for c in cols]].sum().reset_index()
    agg = agg.rename(columns={f"w_{c}": c for c in cols})
    agg["converted"] = (agg["w_upgrades"] > 0).astype("int32")
    agg["reactivated"] = (agg["sessions"] > 0).astype("int32")
    agg = agg.drop(columns=["w_upgrades"])
    return pl.DataFrame({c: agg[c].to_numpy() for c in agg.columns})


MARTS = ("marts/fct_user_daily",)


def dbt_mart_seconds(metadata: dict) -> dict[str, float]:
    """Execution time of each marts model in the pipeline's dbt build (dagster-dbt's metadata)."""
    return {key.split("/")[-1]: float(metadata[key]["Execution Duration"]) for key in MARTS}


def mart_check(info) -> dict:
    """Per demo experiment: its units and the sums of the checked columns its unit table holds."""
    import psycopg
    from psycopg import sql

    from liftlab.specs import load_specs

    out = {}
    with psycopg.connect(info.url()) as conn:
        for item in load_specs():
            if item.spec.source.kind != "demo":
                continue
            columns = {r[0] for r in conn.execute("select column_name from information_schema.columns "
                                                  "where table_schema = 'units' and table_name = %s", (item.spec.id,))}
            present = [c for c in CHECKED if c in columns]
            row = conn.execute(sql.SQL("select count(*){} from {}").format(
                sql.SQL("").join(sql.SQL(", round(sum({})::numeric, 2)").format(sql.Identifier(c)) for c in present),
                sql.Identifier("units", item.spec.id))).fetchone()
            out[item.spec.id] = dict(zip(["units", *present], [float(v) for v in row], strict=True))
    return out


# --------------------------------------------------------------------------------------------
# baseline: sufficient statistics vs a bare group_by (polars), pandas and Postgres


def cmd_suffstats(args) -> None:
    """One 10M-row unit frame (3 arms × 28 exposure days; a count, a flag and revenue, each with
    its pre-period covariate for CUPED): liftlab's
    aggregation, a bare polars ``group_by`` of the same sums, pandas, and Postgres ``GROUP BY``."""
    import numpy as np
    import pandas as pd
    import polars as pl

    from liftlab.stats.moments import aggregate_joint

    n, rng = args.rows, np.random.default_rng(7)
    day0 = np.datetime64("2026-09-01")
    variant, day = rng.choice(["control", "b", "c"], n), rng.integers(0, 28, n)
    values = {
        # what unit metrics hold: a count, a flag and an amount of money (with their pre-period values)
        "y0": rng.poisson(12, n).astype(float), "x0": rng.poisson(10, n).astype(float),
        "y1": (rng.random(n) < 0.1).astype(float), "x1": (rng.random(n) < 0.1).astype(float),
        "y2": np.round(rng.exponential(40, n) * (rng.random(n) < 0.3), 2), "x2": np.round(rng.exponential(35, n), 2),
    }

    def build(index):  # from numpy, as a frame read from Postgres: no sortedness flags for either engine
        return pl.DataFrame({"variant": variant[index], "day": pl.Series(day0 + day[index].astype("timedelta64[D]")).cast(pl.Date),
                             **{k: v[index] for k, v in values.items()}})

    # in the order liftlab's SQL delivers unit frames (grouped by variant and exposure day), and shuffled
    frame, shuffled = build(np.lexsort((day, variant))), build(np.arange(n))
    plan = {f"m{i}": (f"y{i}", f"x{i}", None) for i in range(3)}

    def bare(data):
        aggs = [pl.len().alias("n")]
        for i in range(3):
            y, x = pl.col(f"y{i}"), pl.col(f"x{i}")
            aggs += [y.sum().alias(f"s{i}"), (y * y).sum().alias(f"ss{i}"), x.sum().alias(f"sx{i}"),
                     (x * x).sum().alias(f"sxx{i}"), (x * y).sum().alias(f"sxy{i}")]
        return data.group_by("variant", "day").agg(aggs)

    pdf = pd.DataFrame({c: frame[c].to_numpy() for c in frame.columns})

    def pandas_():
        d = pdf.copy(deep=False)
        for i in range(3):
            d[f"yy{i}"], d[f"xx{i}"], d[f"xy{i}"] = d[f"y{i}"] ** 2, d[f"x{i}"] ** 2, d[f"x{i}"] * d[f"y{i}"]
        return d.groupby(["variant", "day"], sort=False).sum(numeric_only=True)

    def timed(fn, repeats=3):
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    ours = timed(lambda: aggregate_joint(frame, ["variant", "day"], plan))
    # the comparison is fair only if both compute the same sums
    mine = aggregate_joint(frame, ["variant", "day"], plan)
    theirs = bare(frame)
    worst = 0.0
    for i in range(3):
        m = mine.filter(pl.col("metric") == f"m{i}").join(theirs, on=["variant", "day"])
        for a, b in (("sum", f"s{i}"), ("sum_sq", f"ss{i}"), ("sum_x", f"sx{i}"), ("sum_x_sq", f"sxx{i}"), ("sum_xy", f"sxy{i}")):
            worst = max(worst, float(((m[a] - m[b]).abs() / m[b].abs().clip(lower_bound=1e-300)).max()))
    result = {"rows": n, "liftlab_s": ours, "polars_group_by_s": timed(lambda: bare(frame)), "pandas_s": timed(pandas_),
              "max_rel_difference_vs_polars": worst,
              # the same rows in random order: liftlab sorts them first (stably), polars does not care
              "shuffled": {"liftlab_s": timed(lambda: aggregate_joint(shuffled, ["variant", "day"], plan)),
                           "polars_group_by_s": timed(lambda: bare(shuffled))}}
    if args.dsn:
        import psycopg

        from liftlab.db import copy_frame

        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute("create schema if not exists bench; drop table if exists bench.units; create table bench.units "
                         "(variant text, day date, y0 float8, y1 float8, y2 float8, x0 float8, x1 float8, x2 float8)")
            with conn.cursor() as cur:
                copy_frame(cur, "bench.units", frame)
            conn.execute("analyze bench.units")
            sums = ", ".join(f"sum(y{i}), sum(y{i}*y{i}), sum(x{i}), sum(x{i}*x{i}), sum(x{i}*y{i})" for i in range(3))
            query = f"select variant, day, count(*), {sums} from bench.units group by 1, 2"
            result["postgres_s"] = timed(lambda: conn.execute(query).fetchall())
            conn.execute("drop table bench.units")
    print(json.dumps(result))


# --------------------------------------------------------------------------------------------
# baseline: the statistics engine vs gbstats on the same sufficient statistics


def unit_level_statistics(n_metrics: int, arms: int = 4, units: int = 2_000, seed: int = 11):
    """Joint sufficient statistics of simulated unit data (so every moment is consistent): per
    metric and arm, ``units`` units with an outcome y, a pre-period covariate x correlated with it
    and a positive ratio denominator d; arm a lifts y by 1 % × a."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    shape = (n_metrics, arms, units)
    mu = rng.uniform(1, 100, (n_metrics, 1, 1))
    x = mu * rng.gamma(4.0, 0.25, shape)
    y = (0.6 * x + 0.4 * mu * rng.gamma(4.0, 0.25, shape)) * (1 + 0.01 * np.arange(arms))[None, :, None]
    d = rng.poisson(3.0, shape) + 1.0
    sums = {"sum": y.sum(-1), "sum_sq": (y * y).sum(-1), "sum_x": x.sum(-1), "sum_x_sq": (x * x).sum(-1),
            "sum_xy": (x * y).sum(-1), "sum_d": d.sum(-1), "sum_d_sq": (d * d).sum(-1), "sum_yd": (y * d).sum(-1),
            "sum_xd": (x * d).sum(-1)}
    m, a = np.meshgrid(np.arange(n_metrics), np.arange(arms), indexing="ij")
    return pl.DataFrame({"variant": [f"arm{i}" for i in a.ravel()], "metric": [f"m{i:04d}" for i in m.ravel()],
                         "n": np.full(m.size, units, dtype=np.int64), **{k: v.ravel() for k, v in sums.items()}})


def engine_vs_gbstats(work: Path, n_metrics: int = 1000) -> dict:
    """liftlab's engine and gbstats on the same ``n_metrics`` metrics × 4 arms (a tenth ratio
    metrics, another tenth with CUPED): timings, and the largest difference between them."""
    import numpy as np
    import polars as pl

    from liftlab.stats.engine import analyze

    if not GBSTATS_PYTHON.exists():
        return {"skipped": f"{GBSTATS_PYTHON} missing (make bench creates it)"}
    stats = unit_level_statistics(n_metrics)
    metrics = stats["metric"].unique().sort().to_list()
    ratio, cuped = set(metrics[::10]), set(metrics[1::10])  # gbstats has no CUPED for ratio metrics
    mean = ~pl.col("metric").is_in(sorted(ratio))  # a mean metric's denominator is d ≡ 1
    stats = stats.with_columns(
        pl.when(mean).then(pl.col("n").cast(pl.Float64)).otherwise(pl.col("sum_d")).alias("sum_d"),
        pl.when(mean).then(pl.col("n").cast(pl.Float64)).otherwise(pl.col("sum_d_sq")).alias("sum_d_sq"),
        pl.when(mean).then(pl.col("sum")).otherwise(pl.col("sum_yd")).alias("sum_yd"),
        pl.when(mean).then(pl.col("sum_x")).otherwise(pl.col("sum_xd")).alias("sum_xd"),
    )
    kinds = {m: "ratio" for m in ratio}
    times = []
    for _ in range(5):
        t = time.perf_counter()
        ours = analyze(stats, "arm0", kinds=kinds, cuped=sorted(cuped))
        times.append(time.perf_counter() - t)
    rows = [{**r, "kind": "ratio" if r["metric"] in ratio else "mean"} for r in stats.to_dicts()]
    rows += [{**r, "kind": "cuped"} for r in stats.to_dicts() if r["metric"] in cuped]
    payload, out = work / "gbstats_in.json", work / "gbstats_out.json"
    payload.write_text(json.dumps({"baseline": "arm0", "rows": rows, "repeats": 5}))
    subprocess.run([str(GBSTATS_PYTHON), str(BENCH / "gbstats_run.py"), str(payload), str(out)], check=True)
    theirs = pl.DataFrame(json.loads(out.read_text())["results"]).with_columns(
        pl.col("kind").replace({"mean": "welch_t", "ratio": "delta_method"}).alias("method"))
    joined = theirs.join(ours, on=["metric", "variant", "method"], how="inner", suffix="_ours")
    diff = {c: float(np.max(np.abs(joined[a].to_numpy() - joined[b].to_numpy())))
            for c, (a, b) in {"abs_effect": ("abs_effect", "abs_effect_ours"), "ci_low": ("ci_low", "abs_ci_low"),
                              "ci_high": ("ci_high", "abs_ci_high"), "p_value": ("p_value", "p_value_ours")}.items()}
    gb = json.loads(out.read_text())["median_s"]
    return {"comparisons": joined.height, "liftlab_s": statistics.median(times), "gbstats_s": gb,
            "speedup": gb / statistics.median(times), "max_abs_difference": diff,
            "note": "liftlab's rows also carry confidence sequences, the Bayesian summary and relative effects"}


# --------------------------------------------------------------------------------------------


def table_sizes(info) -> dict:
    """On-disk size (with indexes) of liftlab's largest tables: the basis of Postgres sizing."""
    import psycopg

    with psycopg.connect(info.url()) as conn:
        rows = conn.execute(
            "select n.nspname || '.' || c.relname, pg_total_relation_size(c.oid) / 1048576.0 from pg_class c "
            "join pg_namespace n on n.oid = c.relnamespace where c.relkind in ('r', 'm') "
            "and n.nspname in ('raw', 'marts', 'results', 'gates', 'truth') order by 2 desc limit 12").fetchall()
        total = conn.execute("select pg_database_size(current_database()) / 1048576.0").fetchone()[0]
    return {"database": float(total), **{name: float(mb) for name, mb in rows}}


def machine_info(server_url: str) -> dict:
    import psycopg

    with psycopg.connect(server_url) as conn:
        pg = conn.execute("show server_version").fetchone()[0]
        settings = dict(conn.execute("select name, setting || coalesce(unit, '') from pg_settings where name in "
                                     "('shared_buffers', 'work_mem', 'max_wal_size', 'wal_level', 'max_worker_processes')").fetchall())
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")))
    import numpy
    import polars

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1), "os": platform.platform(),
            "python": platform.python_version(), "postgres": pg, "postgres_settings": settings,
            "polars": polars.__version__, "numpy": numpy.__version__, "commit": commit}


def bench_size(size: str, users: int, baselines: bool) -> dict:
    from liftlab import db

    work = WORK / size
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server = db.resolve()
    name = f"liftlab_bench_{size.lower()}"
    with db.connect(server.with_db("postgres"), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
    db.ensure_database(server, name)
    info = server.with_db(name)
    env = {"DATABASE_URL": info.url(), "LIFTLAB_WORLD_USERS": str(users), "DAGSTER_HOME": str(work / "dagster_home"),
           "LIFTLAB_REPORTS_DIR": str(work / "reports")}
    (work / "dagster_home").mkdir()
    (work / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ.update(env)
    print(f"== {size}: {users:,} users → {info.label}", flush=True)

    me = [sys.executable, str(Path(__file__).resolve())]
    gen_s, gen_rss, out = run_measured(me + ["generate", "--users", str(users), "--out", str(work / "world")])
    generated = json.loads(out.strip().splitlines()[-1])
    print(f"  generate: {generated['events']:,} events in {generated['generate_seconds']:.1f} s", flush=True)

    wall = time.perf_counter()
    with RssSampler() as sampler:
        steps, metadata, runs = run_jobs(sampler)
    pipeline_wall = time.perf_counter() - wall
    events = int(metadata["raw/events"]["received"])
    if events != generated["events"]:  # the pipeline must have loaded this size's world, not another's
        raise RuntimeError(f"the pipeline loaded {events:,} events, the generator made {generated['events']:,}")
    world_meta = metadata["raw/events"]
    units = sum((metadata.get("results/daily_stats", {}).get("units_by_experiment") or {}).values())

    stages = {}
    for stage in STAGES[1:]:
        mine = [s for s in steps if s["stage"] == stage]
        seconds = sum(s["seconds"] for s in mine)
        rss = max((s["peak_rss_mb"] or 0 for s in mine), default=0)
        stages[stage] = {"seconds": seconds, "peak_rss_mb": rss, "steps": len(mine)}
    ingest_world = next(s for s in steps if s["step"] == "synthetic_world")
    stages["generate"] = {"seconds": world_meta["generate_seconds"], "peak_rss_mb": ingest_world["peak_rss_mb"],
                          "note": "inside the ingest step (generated and COPYed chunk by chunk); the standalone "
                                  f"generator took {generated['generate_seconds']:.1f} s with {gen_rss:.0f} MB"}
    stages["ingest"]["seconds"] -= world_meta["generate_seconds"]
    rows = {"generate": events, "ingest": events, "transform": events, "gates": events,
            "sufficient statistics": units, "effects": units, "causal": users, "uplift fit": users, "report": 7}
    for stage, r in rows.items():
        stages[stage]["rows"] = r
        stages[stage]["rows_per_s"] = r / stages[stage]["seconds"] if stages[stage]["seconds"] else None
    result = {"size": size, "users": users, "events": events, "pipeline_wall_seconds": pipeline_wall,
              "steps_seconds": sum(s["seconds"] for s in steps),
              "peak_rss_mb_any_process": max(s["peak_rss_mb"] or 0 for s in steps),
              "stages": {s: stages[s] for s in STAGES}, "steps": steps, "runs": runs}
    # start-up cost: each run is a process of its own (import, code location, executor), as the UI launches it
    result["wall_over_steps"] = pipeline_wall / result["steps_seconds"]
    analyses = {r["partition"]: r["wall_seconds"] for r in runs if r["job"] == "analyse_experiment"}
    result["analyse_experiment_run_seconds"] = {"by_experiment": analyses, "median": statistics.median(analyses.values()),
                                                "max": max(analyses.values())}
    print(f"  pipeline: wall {pipeline_wall:.1f} s, steps {result['steps_seconds']:.1f} s "
          f"(×{result['wall_over_steps']:.2f}); analyse_experiment runs {min(analyses.values()):.1f}–"
          f"{max(analyses.values()):.1f} s (median {result['analyse_experiment_run_seconds']['median']:.1f} s)", flush=True)

    if baselines:
        base = {}
        _, rss, out = run_measured(me + ["ingest", "--world", str(work / "world"), "--dsn", info.url(), "--repeats", "3"])
        ingest = json.loads(out.strip().splitlines()[-1])
        ingest |= {"liftlab_rows_per_s": ingest["rows"] / ingest["liftlab_s"], "psql_rows_per_s": ingest["rows"] / ingest["psql_copy_s"],
                   "ratio": ingest["psql_copy_s"] / ingest["liftlab_s"], "peak_rss_mb": rss,
                   "in_pipeline_events_per_s": events / world_meta["events_load_seconds"]}
        base["ingest_vs_psql_copy"] = ingest
        print(f"  ingest: liftlab {ingest['liftlab_rows_per_s']:,.0f} rows/s vs psql \\copy {ingest['psql_rows_per_s']:,.0f} "
              f"rows/s (ratio {ingest['ratio']:.2f})", flush=True)

        marts = dbt_mart_seconds(metadata)
        compiled = sum(st["seconds"] for st in steps if st["step"] == "units__unit_metrics")
        # liftlab's events → unit metrics: dbt's daily rollup, then the catalogue's compiled SQL per experiment
        transform = {"liftlab_postgres": {"seconds": sum(marts.values()) + compiled, "dbt_models": marts,
                                          "compiled_unit_metrics_seconds": compiled, "check": mart_check(info)}}
        for engine in ("polars", "pandas"):
            if engine == "pandas" and users > SIZES["S"]:
                transform[engine] = {"skipped": "not run above size S: pandas holds every event in memory"}
                continue
            scan = ["--scan"] if engine == "polars" and users > SIZES["S"] else []
            seconds, rss, out = run_measured(me + ["transform", "--engine", engine, "--world", str(work / "world"), *scan])
            transform[engine] = {**json.loads(out.strip().splitlines()[-1]), "wall_seconds": seconds, "peak_rss_mb": rss}
        base["events_to_unit_metrics"] = transform
        print("  transform: " + ", ".join(f"{k} {v.get('seconds', 0):.1f} s" for k, v in transform.items()), flush=True)

        rows_n = SUFFSTATS_ROWS.get(size, SUFFSTATS_DEFAULT_ROWS)
        _, rss, out = run_measured(me + ["suffstats", "--rows", str(rows_n), "--dsn", info.url()])
        suff = json.loads(out.strip().splitlines()[-1]) | {"peak_rss_mb": rss}
        suff["ratio_to_polars_group_by"] = suff["liftlab_s"] / suff["polars_group_by_s"]
        base["sufficient_statistics"] = suff
        print(f"  sufficient statistics: liftlab {suff['liftlab_s']:.3f} s, polars {suff['polars_group_by_s']:.3f} s, "
              f"pandas {suff['pandas_s']:.3f} s, postgres {suff.get('postgres_s', float('nan')):.3f} s", flush=True)

        base["engine_vs_gbstats"] = engine_vs_gbstats(work)
        result["baselines"] = base
    result["database_sizes_mb"] = table_sizes(info)
    result["machine"] = machine_info(info.url())
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return result


def slope(results: list[dict], key: str) -> float | None:
    """Log-log slope of time against events between the smallest and the largest size."""
    if len(results) < 2:
        return None
    a, b = min(results, key=lambda r: r["events"]), max(results, key=lambda r: r["events"])
    return math.log(b[key] / a[key]) / math.log(b["events"] / a["events"])


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / max(len(results), 1)
    for i, r in enumerate(results):
        secs = [r["stages"][s]["seconds"] for s in STAGES]
        ax1.bar([j + i * width for j in range(len(STAGES))], secs, width, label=f"{r['size']} ({r['events'] / 1e6:.1f}M events)")
    ax1.set_xticks([j + width * (len(results) - 1) / 2 for j in range(len(STAGES))], STAGES, rotation=30, ha="right", fontsize=8)
    ax1.set_yscale("log")
    ax1.set_ylabel("seconds (log)")
    ax1.legend(fontsize=8)
    ax1.set_title("pipeline stages per size", fontsize=10)
    ev = [r["events"] for r in results]
    ax2.loglog(ev, [r["steps_seconds"] for r in results], "o-", label="sum of step times")
    ax2.loglog(ev, [r["pipeline_wall_seconds"] for r in results], "s--", label="wall time of the jobs")
    ax2.set_xlabel("events")
    ax2.set_ylabel("seconds")
    ax2.legend(fontsize=8)
    ax2.set_title("time against size (log-log)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    g = sub.add_parser("generate")
    g.add_argument("--users", type=int, required=True)
    g.add_argument("--out", required=True)
    t = sub.add_parser("transform")
    t.add_argument("--engine", choices=["polars", "pandas"], required=True)
    t.add_argument("--world", required=True)
    t.add_argument("--scan", action="store_true", help="polars: scan the Parquet files inside the timed query")
    i = sub.add_parser("ingest")
    i.add_argument("--world", required=True)
    i.add_argument("--dsn", required=True)
    i.add_argument("--repeats", type=int, default=3)
    s = sub.add_parser("suffstats")
    s.add_argument("--rows", type=int, default=SUFFSTATS_DEFAULT_ROWS)
    s.add_argument("--dsn")
    rj = sub.add_parser("run-job", help="one run of a job in this process, with the job's own executor")
    rj.add_argument("job")
    rj.add_argument("--tag", action="append", default=[], help="KEY=VALUE")
    rj.add_argument("--run-config", default="{}")
    one = sub.add_parser("size", help="one size, in this process (main() runs each size this way)")
    one.add_argument("size", choices=sorted(SIZES))
    one.add_argument("--no-baselines", action="store_true")
    summ = sub.add_parser("summary", help="the slope and plot from sizes already in bench/results/")
    summ.add_argument("sizes")
    parser.add_argument("--sizes", default="S,M", help="comma-separated: XS, S, M, L")
    parser.add_argument("--no-baselines", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "generate":
        cmd_generate(args)
        return 0
    if args.command == "transform":
        cmd_transform(args)
        return 0
    if args.command == "ingest":
        cmd_ingest(args)
        return 0
    if args.command == "suffstats":
        cmd_suffstats(args)
        return 0
    if args.command == "run-job":
        cmd_run_job(args)
        return 0
    RESULTS.mkdir(exist_ok=True)
    if args.command == "size":
        result = bench_size(args.size, SIZES[args.size], baselines=not args.no_baselines)
        (RESULTS / f"pipeline_{args.size}.json").write_text(json.dumps(result, indent=2, default=str))
        return 0
    # Every size in a fresh process: Dagster's forkserver (and any settings cached on import) would
    # otherwise keep the first size's environment — its database and world size — for the next.
    sizes = args.sizes.split(",")
    if args.command != "summary":
        for size in sizes:
            flags = ["--no-baselines"] if args.no_baselines else []
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "size", size, *flags], check=True)
    results = [json.loads((RESULTS / f"pipeline_{size}.json").read_text()) for size in sizes]
    summary = {
        "sizes": {r["size"]: {"events": r["events"], "steps_seconds": r["steps_seconds"],
                              "pipeline_wall_seconds": r["pipeline_wall_seconds"],
                              "peak_rss_mb_any_process": r["peak_rss_mb_any_process"]} for r in results},
        "loglog_slope_steps": slope(results, "steps_seconds"),
        "loglog_slope_wall": slope(results, "pipeline_wall_seconds"),
    }
    print(json.dumps(summary, indent=2))
    if len(results) > 1:
        (RESULTS / "pipeline.json").write_text(json.dumps(summary, indent=2))
        plot(results, RESULTS / "pipeline.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
