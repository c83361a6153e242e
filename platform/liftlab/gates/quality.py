"""Data-quality suites (great-expectations 1.x) for the tables the experiments read.

Each suite is a list of :class:`Rule` — a great-expectations expectation with a liftlab
*severity*: ``ERROR`` (the tables cannot be trusted: every experiment reading them is halted
by the ``data_quality`` gate) or ``WARN`` (recorded and shown). Suites are validated
**in-database**: an ephemeral great-expectations context with a Postgres data source, so the
expectations compile to SQL and no table is pulled into memory. Outcomes are stored in
``gates.quality_results`` (one row per asset × expectation, replaced per run).

The day-over-day drift of ``raw.events`` (row count and event-type PSI against the previous
partition, see ``liftlab.gates.drift``) is computed with one SQL aggregate and stored in the
same table, so the UI and the gate see one list.

``great_expectations`` takes ~11 s to import: it is imported inside :func:`validate` only.
No Dagster here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import polars as pl
import psycopg

from liftlab.db import copy_frame, read_frame

ERROR, WARN = "ERROR", "WARN"


class ValidationInterrupted(RuntimeError):
    """The database connection failed while a suite was validated.

    great-expectations records a failed query as a failed expectation ("observed None"); stored
    as such, a server restart would halt every experiment through its data_quality gate. Raised
    instead, nothing is recorded and the check's retry policy runs the suite again.
    """


#: Text of exceptions that mean "the connection failed", not "the data is bad".
_CONNECTION_FAILURES = ("OperationalError", "InterfaceError", "AdminShutdown", "server closed the connection",
                        "terminating connection", "connection refused", "connection is closed")


def _connection_failure(exception_info) -> str | None:
    """The first line of a connection failure recorded in a result's exception info, else None."""
    text = json.dumps(exception_info, default=str) if exception_info else ""
    if '"raised_exception": true' not in text:
        return None
    for marker in _CONNECTION_FAILURES:
        at = text.find(marker)
        if at >= 0:
            return text[at:at + 200].split("\\n")[0]
    return None


@dataclass(frozen=True)
class Rule:
    """One expectation: ``build(gxe)`` returns the expectation from the ``great_expectations.expectations`` module."""

    name: str
    severity: str
    build: Callable
    describe: str


@dataclass(frozen=True)
class QualityResult:
    asset: str
    expectation: str
    expectation_type: str
    severity: str
    success: bool
    unexpected_count: int | None
    observed: dict = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class Contract:
    """What the suites need from the experiment specs: variants, ids and the overall time range."""

    experiments: Sequence[str]
    variants: Sequence[str]
    first_day: dt.date
    last_day: dt.date

    @classmethod
    def from_specs(cls, specs) -> Contract:
        events = [s for s in specs if s.source.kind == "demo"]
        days = [s.pre_start_date or s.start_date for s in events if s.start_date] + [s.end_date for s in events if s.end_date]
        today = dt.date.today()
        return cls(
            experiments=sorted(s.id for s in events),
            variants=sorted({v.name for s in events for v in s.variants}),
            first_day=min(days) if days else today,
            last_day=max(days) if days else today,
        )

    def ts_bounds(self) -> tuple[str, str]:
        """Inclusive lower / exclusive upper bound of event and exposure timestamps (UTC)."""
        return f"{self.first_day} 00:00:00+00", f"{self.last_day + dt.timedelta(days=1)} 00:00:00+00"


EVENT_TYPES = ("session", "ai_call", "task_completed", "upgrade", "payment", "support_ticket")


def suites(contract: Contract) -> dict[str, tuple[str, list[Rule]]]:
    """asset → (table, rules). Schema and types, nulls, uniqueness, sets, windows, ranges."""
    lo, hi = contract.ts_bounds()

    def not_null(column: str, severity: str = ERROR) -> Rule:
        return Rule(f"{column}_not_null", severity, lambda g: g.ExpectColumnValuesToNotBeNull(column=column), f"{column} is never null")

    def types(spec: dict[str, list[str]]) -> list[Rule]:
        return [
            Rule(f"{c}_type", ERROR, lambda g, c=c, t=t: g.ExpectColumnValuesToBeInTypeList(column=c, type_list=t),
                 f"{c} has type {' or '.join(t)}")
            for c, t in spec.items()
        ]

    def columns(names: list[str]) -> Rule:
        return Rule("columns", ERROR, lambda g: g.ExpectTableColumnsToMatchSet(column_set=names, exact_match=True),
                    f"exactly the columns {names}")

    non_empty = Rule("row_count", ERROR, lambda g: g.ExpectTableRowCountToBeBetween(min_value=1), "at least one row")
    bigint, ts, text, double = ["BIGINT"], ["TIMESTAMP", "TIMESTAMP WITH TIME ZONE"], ["TEXT", "VARCHAR"], ["DOUBLE_PRECISION", "DOUBLE PRECISION", "FLOAT"]
    return {
        "raw/events": ("raw.events", [
            columns(["event_id", "user_id", "event_ts", "event_type", "value"]),
            *types({"event_id": bigint, "user_id": bigint, "event_ts": ts, "event_type": text, "value": double}),
            non_empty,
            not_null("event_id"), not_null("user_id"), not_null("event_ts"), not_null("event_type"),
            Rule("event_id_unique", ERROR, lambda g: g.ExpectColumnValuesToBeUnique(column="event_id"), "event_id is unique"),
            Rule("event_type_in_set", ERROR,
                 lambda g: g.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
                 f"event_type in {list(EVENT_TYPES)}"),
            Rule("value_non_negative", ERROR, lambda g: g.ExpectColumnValuesToBeBetween(column="value", min_value=0),
                 "revenue and latency are never negative"),
            Rule("event_ts_in_range", WARN,
                 lambda g: g.ExpectColumnValuesToBeBetween(column="event_ts", min_value=lo, max_value=hi, strict_max=True),
                 f"event_ts inside the experiments' range {contract.first_day}…{contract.last_day}"),
        ]),
        "raw/exposures": ("raw.exposures", [
            columns(["experiment_id", "user_id", "variant", "exposed_at"]),
            *types({"experiment_id": text, "user_id": bigint, "variant": text, "exposed_at": ts}),
            non_empty,
            not_null("experiment_id"), not_null("user_id"), not_null("variant"), not_null("exposed_at"),
            Rule("variant_in_declared_set", ERROR,
                 lambda g: g.ExpectColumnValuesToBeInSet(column="variant", value_set=list(contract.variants)),
                 f"variant is one of the declared variants {list(contract.variants)}"),
            Rule("experiment_declared", WARN,
                 lambda g: g.ExpectColumnValuesToBeInSet(column="experiment_id", value_set=list(contract.experiments)),
                 "every exposure names a declared experiment"),
            Rule("exposed_at_in_range", WARN,
                 lambda g: g.ExpectColumnValuesToBeBetween(column="exposed_at", min_value=lo, max_value=hi, strict_max=True),
                 f"exposed_at inside the experiments' range {contract.first_day}…{contract.last_day}"),
        ]),
        "raw/users": ("raw.users", [
            non_empty, not_null("user_id"),
            Rule("user_id_unique", ERROR, lambda g: g.ExpectColumnValuesToBeUnique(column="user_id"), "user_id is unique"),
            Rule("plan_in_set", WARN,
                 lambda g: g.ExpectColumnValuesToBeInSet(column="plan", value_set=["trial", "basic", "pro", "enterprise"]),
                 "plan is trial, basic, pro or enterprise"),
            Rule("device_in_set", WARN,
                 lambda g: g.ExpectColumnValuesToBeInSet(column="device", value_set=["desktop", "mobile", "tablet"]),
                 "device is desktop, mobile or tablet"),
        ]),
    }


def _observed(result: dict) -> dict:
    keep = ("observed_value", "element_count", "unexpected_count", "unexpected_percent", "partial_unexpected_list",
            "missing_count")
    from liftlab.gates.store import json_safe

    return json.loads(json.dumps(json_safe({k: result[k] for k in keep if k in result}), default=str))


def validate(sqlalchemy_url: str, asset: str, table: str, rules: Sequence[Rule]) -> list[QualityResult]:
    """Validate ``rules`` against ``table`` in Postgres with an ephemeral great-expectations context."""
    import warnings

    with warnings.catch_warnings():
        # the generic SQL data source is deliberate: the Postgres one rejects socket URLs (no
        # host), which the embedded server uses
        warnings.filterwarnings("ignore", message="You are using a generic SQLDatasource")
        return _validate(sqlalchemy_url, asset, table, rules)


def _validate(sqlalchemy_url: str, asset: str, table: str, rules: Sequence[Rule]) -> list[QualityResult]:
    import great_expectations as gx
    import great_expectations.expectations as gxe

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    schema, _, name = table.partition(".")
    source = context.data_sources.add_sql(name="liftlab", connection_string=sqlalchemy_url)
    batch_definition = source.add_table_asset(name=name, table_name=name, schema_name=schema).add_batch_definition_whole_table("all")
    suite = context.suites.add(gx.ExpectationSuite(name=asset.replace("/", "__")))
    for rule in rules:
        expectation = rule.build(gxe)
        expectation.meta = {"liftlab_name": rule.name, "liftlab_severity": rule.severity}
        expectation.severity = "critical" if rule.severity == ERROR else "warning"
        suite.add_expectation(expectation)
    outcome = batch_definition.get_batch().validate(suite, result_format="SUMMARY")
    for item in outcome.results:
        failure = _connection_failure(item.exception_info)
        if failure:
            raise ValidationInterrupted(f"{asset}: the database connection failed during validation ({failure}); "
                                        "nothing was recorded, the check is retried")
    by_name = {r.name: r for r in rules}
    results = []
    for item in outcome.results:
        config = item.expectation_config
        rule = by_name[config.meta["liftlab_name"]]
        observed = _observed(item.result or {})
        if item.exception_info and item.exception_info.get("raised_exception"):
            observed["exception"] = str(item.exception_info.get("exception_message"))[:500]
        unexpected = observed.get("unexpected_count")
        if item.success:
            reason = f"{rule.name}: {rule.describe}"
        elif unexpected is not None:
            sample = observed.get("partial_unexpected_list") or []
            reason = f"{rule.name} failed: expected {rule.describe}; {unexpected:,} rows do not" + (
                f" (e.g. {sample[:3]})" if sample else "")
        else:
            reason = f"{rule.name} failed: expected {rule.describe}; observed {observed.get('observed_value', observed.get('exception'))}"
        results.append(QualityResult(asset, rule.name, config.type, rule.severity, bool(item.success),
                                     None if unexpected is None else int(unexpected), observed, reason))
    return results


def events_drift(conn: psycopg.Connection, contract: Contract, max_ratio: float | None = None,
                 psi_warn: float | None = None) -> list[QualityResult]:
    """Row count and event-type mix of each UTC day of raw.events vs the same weekday a week before (WARN)."""
    from liftlab.gates.drift import COUNT_MAX_RATIO, PSI_WARN, daily_drift

    counts = read_frame(
        conn,
        "select (event_ts at time zone 'UTC')::date as day, event_type as category, count(*)::bigint as n "
        "from raw.events where event_ts >= %s::timestamptz and event_ts < %s::timestamptz group by 1, 2",
        contract.ts_bounds(),
    )
    if counts.is_empty():
        return []
    drift = daily_drift(counts.with_columns(pl.col("n").cast(pl.Int64)), max_ratio=max_ratio or COUNT_MAX_RATIO,
                        psi_warn=psi_warn or PSI_WARN)
    flagged = drift.filter(pl.col("drift"))
    observed = {"days": drift.height, "max_psi": float(drift["psi"].max() or 0.0),
                "flagged": [{"day": str(r["day"]), "rows": r["rows"], "previous_rows": r["previous_rows"],
                             "ratio": r["ratio"], "psi": r["psi"]} for r in flagged.to_dicts()]}
    if flagged.is_empty():
        reason = (f"daily_drift: row counts within ×{max_ratio or COUNT_MAX_RATIO:g} and event mix PSI ≤ "
                  f"{psi_warn or PSI_WARN:g} of the same weekday a week before on all {drift.height} days")
    else:
        days = ", ".join(f"{r['day']} (×{r['ratio']:.2f}, PSI {r['psi']:.3f})" for r in observed["flagged"][:5])
        reason = f"daily_drift: {flagged.height} day(s) drift from the same weekday a week before: {days}"
    return [QualityResult("raw/events", "daily_drift", "liftlab_daily_drift_psi", WARN, flagged.is_empty(),
                          flagged.height, observed, reason)]


def record_quality(conn: psycopg.Connection, asset: str, results: Sequence[QualityResult], run_id: str | None,
                   names: Sequence[str] | None = None) -> None:
    """Replace the asset's rows (or only ``names``) of gates.quality_results, in one transaction."""
    from liftlab.gates.store import json_safe

    frame = pl.DataFrame(
        [{"asset": r.asset, "expectation": r.expectation, "expectation_type": r.expectation_type, "severity": r.severity,
          "success": r.success, "unexpected_count": r.unexpected_count,
          "observed": json.dumps(json_safe(r.observed), default=str),
          "reason": r.reason, "run_id": run_id} for r in results],
        schema={"asset": pl.Utf8, "expectation": pl.Utf8, "expectation_type": pl.Utf8, "severity": pl.Utf8,
                "success": pl.Boolean, "unexpected_count": pl.Int64, "observed": pl.Utf8, "reason": pl.Utf8, "run_id": pl.Utf8},
    )
    with conn.transaction():
        if names is None:
            conn.execute("delete from gates.quality_results where asset = %s", (asset,))
        else:
            conn.execute("delete from gates.quality_results where asset = %s and expectation = any(%s)", (asset, list(names)))
        with conn.cursor() as cur:
            copy_frame(cur, "gates.quality_results", frame)
