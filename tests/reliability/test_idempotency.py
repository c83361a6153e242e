"""Idempotency: every asset of the built world materialized again, each alone (on a copy of the
built database), leaves every table byte-identical, with no duplicates.

Tables come from the database catalogue (every base table outside the system schemas, see
``tests.pipeline_helpers.catalogue_tables``), compared by the md5 of their ordered dumps without
the volatile columns (run ids, write times, fit timings: ``VOLATILE`` says why each). The two
append-only logs (``raw.load_log``, ``results.decision_history``) grow by design: each run must
add exactly one run's worth of rows, identical to the first run's.
"""

from __future__ import annotations

import pytest

from liftlab import db
from tests.pipeline_helpers import HISTORY_TABLES, VOLATILE, table_fingerprint
from tests.reliability.conftest import ON_DEMAND, ON_DEMAND_TABLES

#: Tables the graph certainly writes: the catalogue-derived list must include them (a guard
#: against a catalogue query that silently finds nothing).
MUST_BE_COVERED = {"raw.events", "raw.users", "raw.exposures", "raw.experiment_specs", "raw.src_hillstrom",
                   "raw.world_settings", "marts.fct_user_daily", "units.aa_check", "units.ai_assistant_optin",
                   "units.builds", "gates.check_results", "gates.quality_results", "gates.aa_calibration",
                   "results.daily_stats", "results.sufficient_stats", "results.effects", "results.slice_effects",
                   "results.power", "results.decisions", "results.causal_effects", "results.uplift_models",
                   "results.uplift_scores", "results.targeting_policy", "results.daily_looks", "truth.effects"}


def _diff(a: dict, b: dict) -> dict:
    return {t: (a.get(t), b.get(t)) for t in sorted(set(a) | set(b)) if a.get(t) != b.get(t)}


def test_the_built_world_fills_every_table_it_must(built):
    assert MUST_BE_COVERED <= set(built.snapshot), MUST_BE_COVERED - set(built.snapshot)
    assert all(rows > 0 for table, (rows, _) in built.snapshot.items() if table in MUST_BE_COVERED)


def _rows_of_run(conn, table: str, run_id: str) -> list[tuple]:
    columns = [r[0] for r in conn.execute(
        "select column_name from information_schema.columns where table_schema || '.' || table_name = %s "
        "and column_name <> all(%s) order by ordinal_position", (table, list(VOLATILE))).fetchall()]
    from psycopg import sql

    query = sql.SQL("select {} from {} where run_id = %s order by 1, 2, 3").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(*table.split(".")))
    return conn.execute(query, (run_id,)).fetchall()


def test_every_asset_materialized_alone_once_more_changes_nothing(built, asset_by_asset):
    """After the full run, each asset alone (with its checks) rewrites its tables to exactly what
    they were; no row count anywhere changes (no duplicates, nothing lost)."""
    reference = built.snapshot
    counts = {t: rows for t, (rows, _) in reference.items()}
    failures = []
    for p in asset_by_asset["passes"]:
        if any(tuple(k.path) in ON_DEMAND for k in p.keys):
            continue  # first materialized here; compared with its own second run below
        assert p.success, f"{p.name} [{p.partition}] failed"
        changed = {t: (reference.get(t), f) for t, f in p.written.items() if t not in HISTORY_TABLES and reference.get(t) != f}
        recounted = {t: (counts[t], n) for t, n in p.counts.items()
                     if t in counts and t not in ON_DEMAND_TABLES and counts[t] != n}
        if changed or recounted:
            failures.append((p.name, p.partition, changed, recounted))
    assert failures == []


def test_every_asset_writes_tables_and_all_were_checked(asset_by_asset):
    """Each asset's writes were seen (xmin newer than the run's start), so the comparison above
    covered them; the one asset that writes only files (the reports) writes no table."""
    passes = asset_by_asset["passes"]
    silent = sorted({p.name for p in passes} - {p.name for p in passes if p.written})
    assert silent == ["reports__experiment_reports"]
    covered = set().union(*(p.written for p in passes))
    assert MUST_BE_COVERED <= covered, MUST_BE_COVERED - covered
    by_asset: dict[str, list[str]] = {}
    for p in passes:  # a partitioned asset: every partition's writes
        by_asset[p.name] = sorted(set(by_asset.get(p.name, [])) | set(p.written))
    assert "raw.events" in by_asset["synthetic_world"] and "gates.quality_results" in by_asset["synthetic_world"]
    assert "marts.fct_user_daily" in by_asset["dbt_models"]
    assert {"units.aa_check", "units.builds", "raw.src_hillstrom"} <= set(by_asset["units__unit_metrics"])
    assert by_asset["causal__estimates"] == ["results.causal_effects"]
    assert by_asset["results__effects"] == ["results.effects"]
    assert by_asset["results__daily_stats"] == ["results.daily_stats"]  # the whole day range, one run


def test_on_demand_calibration_twice_is_identical(asset_by_asset):
    runs = [p for p in asset_by_asset["passes"] if any(tuple(k.path) in ON_DEMAND for k in p.keys)]
    assert len(runs) == 2 and all(p.success for p in runs)
    assert runs[0].written["results.calibration"] == runs[1].written["results.calibration"]
    assert runs[0].written["results.calibration"][0] > 0


def test_the_second_pass_leaves_the_whole_database_as_the_build(built, asset_by_asset):
    with db.connect(asset_by_asset["info"]) as conn:
        now = {t: table_fingerprint(conn, t) for t in built.snapshot}
    expected = dict(built.snapshot)
    for table in ON_DEMAND_TABLES:  # materialized for the first time here
        now.pop(table), expected.pop(table)
    assert _diff(expected, now) == {}


@pytest.mark.parametrize("table", sorted(HISTORY_TABLES))
def test_logs_of_the_second_pass_repeat_the_build(built, asset_by_asset, table):
    """The asset-by-asset pass appends to the logs exactly what the build did (the world's load
    and the user file's; one decision per experiment)."""
    assert HISTORY_TABLES == {"raw.load_log", "results.decision_history"}
    runs = built.result.run_ids
    jobs = ["build_data", "units:hillstrom"] if table == "raw.load_log" else ["decide"]
    passes = asset_by_asset["passes"]
    with db.connect(asset_by_asset["info"]) as conn:
        first = sorted(row for job in jobs for row in _rows_of_run(conn, table, runs[job]))
        second = sorted(row for p in passes for row in _rows_of_run(conn, table, p.run_id))
    assert first and second == first
