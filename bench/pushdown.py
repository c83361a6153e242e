"""Aggregation where the data live vs on the machine that runs the step, side by side.

    .venv/bin/python bench/pushdown.py --sizes S,M        # S 156k units, M 1.56M units per experiment

For each size a unit table with the experiment's shape (two arms, four metrics — counts, a sum, a
0/1 flag — each with its pre-period twin, and a ratio metric) is generated inside Postgres
(``generate_series``, seeded) in a scratch database on liftlab's server, declared as a
``kind: table`` source, and its joint sufficient statistics are computed both ways, each in a
fresh process so its peak RSS is its own:

* ``polars`` — :func:`liftlab.units.analysis_frame` copies the unit frame out (``COPY … TO
  STDOUT``), :func:`liftlab.experiment_stats.daily_statistics` sums it (the default mode);
* ``pushdown`` — :func:`liftlab.pushdown.daily_statistics`: one ``GROUP BY`` in Postgres with
  numeric sums; only the statistics rows leave the database.

Reported per size and mode: wall time of the step (median of ``--repeats``), the process's peak
RSS, bytes moved out of Postgres (the COPY text of the unit frame, measured with
``octet_length`` of the same rows; the statistics rows' for pushdown), and the largest relative
difference between the two results. Results: ``bench/results/pushdown.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
SIZES = {"XS": 20_000, "S": 156_000, "M": 1_560_000}
METRICS = ("sessions", "revenue", "converted", "orders")


def spec_for(table: str):
    from liftlab.specs import ExperimentSpec

    columns = {"unit_id": "integer", "arm": "string", "sessions": "integer", "revenue": "float",
               "converted": "boolean", "orders": "integer", "pre_sessions": "integer", "pre_revenue": "float",
               "pre_orders": "integer"}
    return ExperimentSpec.model_validate({
        "id": "bench_pushdown", "hypothesis": "bench", "baseline": "control",
        "variants": [{"name": "control", "allocation": 0.5}, {"name": "treatment", "allocation": 0.5}],
        "primary_metric": "revenue", "secondary_metrics": ["sessions", "converted", "orders", "revenue_per_order"],
        "covariates": ["pre_sessions", "pre_revenue", "pre_orders"],
        "ratio_metrics": [{"name": "revenue_per_order", "numerator": "revenue", "denominator": "orders"}],
        "source": {"kind": "table", "table": table, "unit_column": "unit_id", "variant_column": "arm",
                   "columns": columns, "outcomes": list(METRICS)},
    })


def make_table(url: str, table: str, units: int) -> None:
    import psycopg

    schema, name = table.split(".")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"create schema if not exists {schema}")
        conn.execute(f"drop table if exists {table}")
        conn.execute("select setseed(0.42)")
        conn.execute(f"""
            create table {table} as
            select g as unit_id,
                   case when random() < 0.5 then 'control' else 'treatment' end as arm,
                   s as pre_sessions, (s * 1.7 + random() * 40)::float8 as pre_revenue, (s / 3)::int as pre_orders,
                   (s + floor(random() * 5))::int as sessions, (s * 1.8 + random() * 45)::float8 as revenue,
                   random() < 0.3 as converted, (s / 3 + floor(random() * 2))::int as orders
            from (select g, floor(random() * 20)::int as s from generate_series(1, {units}) g) t""")
        conn.execute(f"analyze {table}")


def measure(url: str, table: str, mode: str) -> dict:
    """One aggregation in this process: wall seconds, peak RSS, bytes moved, the statistics."""
    from liftlab import db, pushdown
    from liftlab.experiment_stats import daily_statistics, unit_columns
    from liftlab.units import analysis_frame

    spec = spec_for(table)
    info = db.ConnInfo.parse(url)
    with db.connect(info) as conn:
        start = time.perf_counter()
        if mode == "pushdown":
            stats, _ = pushdown.daily_statistics(conn, spec, {})
        else:
            stats = daily_statistics(analysis_frame(conn, spec, unit_columns(spec)), spec, {})
        seconds = time.perf_counter() - start
        cols = ", ".join(unit_columns(spec))
        moved = conn.execute(f"select sum(octet_length(concat_ws(E'\\t', unit_id, arm, {cols})) + 1) from {table}"
                             ).fetchone()[0] if mode == "polars" else stats.estimated_size()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"mode": mode, "seconds": seconds, "peak_rss_bytes": rss, "bytes_moved": int(moved),
            "stats": stats.to_dicts()}


def run_size(url: str, size: str, repeats: int) -> dict:
    table = f"bench_pushdown.units_{size.lower()}"
    started = time.perf_counter()
    make_table(url, table, SIZES[size])
    generate = time.perf_counter() - started
    out = {"size": size, "units": SIZES[size], "generate_seconds": generate, "modes": {}}
    for mode in ("polars", "pushdown"):
        runs = []
        for _ in range(repeats):
            proc = subprocess.run([sys.executable, __file__, "--measure", mode, "--url", url, "--table", table],
                                  capture_output=True, text=True, check=True)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        out["modes"][mode] = {
            "seconds_median": statistics.median(r["seconds"] for r in runs),
            "seconds": [r["seconds"] for r in runs],
            "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs), "bytes_moved": runs[0]["bytes_moved"],
            "stats": runs[0]["stats"],
        }
    a, b = out["modes"]["polars"]["stats"], out["modes"]["pushdown"]["stats"]
    worst = 0.0
    for ra, rb in zip(a, b, strict=True):
        assert (ra["variant"], ra["metric"], ra["n"]) == (rb["variant"], rb["metric"], rb["n"])
        for key, value in ra.items():
            if isinstance(value, float):
                worst = max(worst, abs(value - rb[key]) / max(abs(value), 1e-300))
    out["max_relative_difference"] = worst
    for mode in out["modes"].values():
        mode.pop("stats")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="S,M")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--url", help="a database URL (default: a scratch database on liftlab's server)")
    parser.add_argument("--table", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.url, args.table, args.measure), default=str))
        return
    from liftlab import db

    server = db.resolve()
    scratch = f"liftlab_bench_pushdown_{int(time.time())}"
    db.ensure_database(server, scratch)
    url = server.with_db(scratch).url()
    results = []
    try:
        for size in args.sizes.split(","):
            result = run_size(url, size.strip().upper(), args.repeats)
            results.append(result)
            p, q = result["modes"]["polars"], result["modes"]["pushdown"]
            print(f"{result['size']} ({result['units']:,} units): polars {p['seconds_median']:.2f} s, "
                  f"{p['peak_rss_bytes'] / 2**20:.0f} MiB peak, {p['bytes_moved'] / 2**20:.1f} MiB moved | pushdown "
                  f"{q['seconds_median']:.2f} s, {q['peak_rss_bytes'] / 2**20:.0f} MiB peak, {q['bytes_moved'] / 2**10:.1f} KiB "
                  f"moved | pushdown/polars time {q['seconds_median'] / p['seconds_median']:.2f}x | max rel diff "
                  f"{result['max_relative_difference']:.1e}", flush=True)
    finally:
        import psycopg

        with psycopg.connect(server.url(dbname="postgres"), autocommit=True) as conn:
            conn.execute(f'drop database if exists "{scratch}" with (force)')
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pushdown.json").write_text(json.dumps(
        {"machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()}, "results": results},
        indent=2))


if __name__ == "__main__":
    main()
