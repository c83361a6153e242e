"""Data-quality asset checks: great-expectations suites beside the tables they guard.

One asset check per table of the synthetic world (``raw/events``, ``raw/exposures``,
``raw/users``; they exist only where a spec uses the demo) validates its suite in-database
(``liftlab.gates.quality``) and stores every expectation's outcome in
``gates.quality_results``; ``raw/events`` also gets a day-over-day drift check (row count and
event-type PSI against the same weekday a week before).

The checks are **not** blocking at the table level: a global table feeds every experiment, and
one bad table must not stop the analysis of experiments that do not read it (e.g. a user
file). Instead each experiment's blocking ``data_quality`` gate (``liftlab.defs.gates``) halts
it when an ERROR expectation failed on a table it reads. great-expectations is imported inside
the check functions only (it costs ~11 s), so loading the definitions stays fast.
"""


import dagster as dg

from liftlab.defs.common import io_retry
from liftlab.defs.resources import PostgresResource

QUALITY_ASSETS = {
    "raw/events": ["raw", "events"],
    "raw/exposures": ["raw", "exposures"],
    "raw/users": ["raw", "users"],
}


def _contract():
    from liftlab.gates.quality import Contract
    from liftlab.specs import load_specs

    return Contract.from_specs([item.spec for item in load_specs()])


def _report(asset: str, results) -> dg.AssetCheckResult:
    errors = [r for r in results if not r.success and r.severity == "ERROR"]
    warns = [r for r in results if not r.success and r.severity == "WARN"]
    failed = errors + warns
    table = "\n".join(
        ["| expectation | severity | success | unexpected |", "|---|---|---|---|"]
        + [f"| {r.expectation} | {r.severity} | {'✅' if r.success else '❌'} | {'' if r.unexpected_count is None else r.unexpected_count} |"
           for r in results]
    )
    description = "; ".join(r.reason for r in failed) if failed else f"all {len(results)} expectations met"
    return dg.AssetCheckResult(
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN,
        description=description[:2000],
        metadata={
            "expectations": len(results),
            "errors": len(errors),
            "warnings": len(warns),
            "results": dg.MetadataValue.md(table),
        },
    )


def _make_suite_check(asset: str, key: list[str]):
    @dg.asset_check(
        asset=key,
        name="ge_suite",
        blocking=False,
        retry_policy=io_retry,
        description=f"great-expectations suite of {asset} (schema and types, nulls, uniqueness, value sets, "
        "ranges, time window); ERROR failures halt the experiments that read it via their data_quality gate.",
    )
    def _check(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> dg.AssetCheckResult:
        from liftlab.gates.quality import record_quality, suites, validate

        contract = _contract()
        table, rules = suites(contract)[asset]
        info = postgres.conn_info()
        results = validate(info.url(driver="psycopg"), asset, table, rules)
        with postgres.connect() as conn:
            record_quality(conn, asset, results, context.run.run_id, names=[r.name for r in rules])
        return _report(asset, results)

    return _check


ge_checks = [_make_suite_check(asset, key) for asset, key in QUALITY_ASSETS.items()]


@dg.asset_check(
    asset=["raw", "events"],
    name="daily_drift",
    blocking=False,
    retry_policy=io_retry,
    description="Row count and event-type mix (PSI) of each UTC day vs the same weekday a week before; drift warns.",
)
def events_daily_drift(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> dg.AssetCheckResult:
    from liftlab.gates.quality import events_drift, record_quality

    with postgres.connect() as conn:
        results = events_drift(conn, _contract())
        record_quality(conn, "raw/events", results, context.run.run_id, names=["daily_drift"])
    return _report("raw/events", results)
