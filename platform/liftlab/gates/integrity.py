"""Per-experiment data-integrity gates: quarantined rows, assignments outside the window, and
data-quality (great-expectations) failures of the tables the experiment reads.

Global data faults are repaired or isolated at ingest (``liftlab.ingest.validate``: duplicate
event ids, negative revenue … go to ``raw.quarantine`` with the accounting in
``raw.load_log``), but an experiment whose units and window are touched by them is **halted**:
its metrics were computed on data that had to be repaired, and a person must confirm the repair
(a negative payment may be a refund the platform does not model; a replayed day may have lost
other rows). Experiments the fault does not touch are analysed normally.

Which of these apply depends on the source (:meth:`liftlab.sources.Adapter.integrity`): a gate
that does not apply is recorded as ``N/A`` with the reason, never as a PASS it did not check.
The queries read ``raw``, ``units`` and ``gates`` tables; values are parameters. No Dagster.
"""

from __future__ import annotations

import datetime as dt

import psycopg
from psycopg import sql

from liftlab.db import qualified
from liftlab.gates.result import GateResult
from liftlab.specs import ExperimentSpec

#: Quarantine reasons that corrupt only some metrics (the rest — duplicates, missing ids or
#: timestamps, unknown event types — can touch any metric of the unit).
REASON_METRICS: dict[str, frozenset[str]] = {
    "negative revenue": frozenset({"revenue", "pre_revenue"}),
    "payment without amount": frozenset({"revenue", "pre_revenue"}),
    "non-finite value": frozenset({"revenue", "pre_revenue"}),
}

#: Tables of the synthetic world a demo experiment reads; a failed ERROR expectation on any halts it.
WORLD_ASSETS = ("raw/events", "raw/exposures", "raw/users")


def not_applicable(check: str, why: str) -> GateResult:
    return GateResult(check, "N/A", f"not applicable: {why}", details={})


def _window(spec: ExperimentSpec) -> tuple[dt.date, dt.date] | None:
    if spec.start_date is None or spec.end_date is None:
        return None
    return spec.pre_start_date or spec.start_date, spec.end_date


def quarantine_gate(conn: psycopg.Connection, spec: ExperimentSpec, max_rows: int = 0) -> GateResult:
    """FAIL when more than ``max_rows`` quarantined rows of the world's ingest belong to the
    experiment's units, window and metrics (demo experiments).

    Events count when their user is a unit of the experiment, their timestamp falls in
    ``[pre_start_date, end_date]`` (pre-period covariates are metrics too) and their reason can
    affect a metric the experiment uses (``REASON_METRICS``: a negative payment matters only to
    an experiment that measures revenue); exposure rows count when they name the experiment.
    Quarantined rows of the units that none of its metrics use give a WARN. Reasons are grouped
    with their count and dates.
    """
    from liftlab.sources import unit_table

    window = _window(spec)
    lo, hi = window
    rows = conn.execute(sql.SQL(
        """
        with units as (select unit_id from {units})
        select 'events' as kind, q.reason, count(*),
               min((q.record->>'event_ts')::timestamptz at time zone 'UTC')::date,
               max((q.record->>'event_ts')::timestamptz at time zone 'UTC')::date
        from raw.quarantine q
        join units u on u.unit_id = q.record->>'user_id'
        where q.source like '%%raw.events'
          and (q.record->>'event_ts')::timestamptz >= (%(lo)s::date)::timestamp at time zone 'UTC'
          and (q.record->>'event_ts')::timestamptz < ((%(hi)s::date) + 1)::timestamp at time zone 'UTC'
        group by q.reason
        union all
        select 'exposures', q.reason, count(*),
               min((q.record->>'exposed_at')::timestamptz at time zone 'UTC')::date,
               max((q.record->>'exposed_at')::timestamptz at time zone 'UTC')::date
        from raw.quarantine q
        where q.source like '%%raw.exposures' and q.record->>'experiment_id' = %(e)s
        group by q.reason
        order by 3 desc, 2
        """).format(units=qualified(unit_table(spec).relation)),
        {"e": spec.id, "lo": lo, "hi": hi},
    ).fetchall()
    by_reason = [
        {"table": kind, "reason": reason, "rows": int(n), "first_date": str(first) if first else None,
         "last_date": str(last) if last else None}
        for kind, reason, n, first, last in rows
    ]
    used = _metrics_used(spec)
    for r in by_reason:
        r["affects_metrics"] = _affects(r["reason"], r["table"], used)
    relevant = [r for r in by_reason if r["affects_metrics"]]
    total = sum(r["rows"] for r in relevant)
    details = {"quarantined_rows": total, "by_reason": by_reason, "window": [str(lo), str(hi)], "max_rows": max_rows,
               "metrics_used": sorted(used)}
    if total <= max_rows and by_reason:
        n_all = sum(r["rows"] for r in by_reason)
        return GateResult(
            "quarantine", "WARN",
            f"{n_all:,} quarantined rows touch the experiment's units in {lo}…{hi}, {total:,} of them its metrics "
            f"(limit {max_rows:,}): {', '.join(r['reason'] for r in by_reason)}", float(total), details=details,
        )
    by_reason = relevant
    if total > max_rows:
        text = ", ".join(
            f"{r['reason']} ×{r['rows']:,} ({r['first_date']}" + (f"…{r['last_date']})" if r["last_date"] != r["first_date"] else ")")
            for r in by_reason
        )
        return GateResult(
            "quarantine", "FAIL",
            f"{total:,} rows of this experiment's units in its window {lo}…{hi} were quarantined at ingest: {text}",
            float(total), details=details,
        )
    return GateResult("quarantine", "PASS", f"no quarantined rows touch the experiment's units in {lo}…{hi}",
                      float(total), details=details)


def _metrics_used(spec: ExperimentSpec) -> set[str]:
    """Every column the experiment's analyses read: metrics (ratio parts included), covariates,
    causal confounders and uplift features."""
    used = set(spec.metric_roles()) | set(spec.covariates) | set(spec.causal_confounders())
    if spec.uplift is not None:
        used |= set(spec.uplift.outcomes) | set(spec.uplift.features)
    for metric in list(used):
        parts = spec.ratio(metric) if metric in spec.known_metrics() else None
        if parts:
            used |= set(parts)
    return used


def _affects(reason: str, table: str, used: set[str]) -> bool:
    """Can rows quarantined for ``reason`` change a metric in ``used``? (a row may carry several reasons)"""
    if table == "exposures":
        return True
    for part in reason.split(";"):
        metrics = REASON_METRICS.get(part.strip())
        if metrics is None or metrics & used:
            return True
    return False


def file_quarantine_gate(conn: psycopg.Connection, spec: ExperimentSpec) -> GateResult:
    """File sources are all-or-nothing (a bad file is rejected whole): report the last load."""
    row = conn.execute(
        "select received, accepted, quarantined, file from raw.load_log where experiment_id = %s "
        "order by loaded_at desc limit 1",
        (spec.id,),
    ).fetchone()
    if row is None:
        return not_applicable("quarantine", "no load of this experiment's file is recorded in raw.load_log "
                                            "(nothing was ingested, so nothing could be quarantined)")
    received, accepted, quarantined, file = row
    details = {"received": received, "accepted": accepted, "quarantined": quarantined, "file": file}
    if quarantined:
        return GateResult("quarantine", "FAIL", f"{quarantined:,} of {received:,} rows of {file} were quarantined",
                          float(quarantined), details=details)
    return GateResult("quarantine", "PASS", f"all {accepted:,} rows of {file} accepted", 0.0, details=details)


def assignment_window_gate(conn: psycopg.Connection, spec: ExperimentSpec) -> GateResult:
    """Assignment rows of the experiment outside ``[start_date, end_date]`` (UTC days), or without a
    unit, variant or time: WARN with the counts, as recorded when the unit table was built.

    Such rows are not analysed — a unit whose first row falls outside the window is not a unit,
    a later row is not a new unit — so they cannot bias the estimate; they say that the
    assignment service or its logging did not follow the experiment's schedule, which a person
    should look at.
    """
    row = conn.execute("select assignment_summary from units.builds where experiment_id = %s", (spec.id,)).fetchone()
    summary = row[0] if row else {}
    if not summary:
        return GateResult("exposure_window", "WARN", "no record of the assignments the units were built from", details={})
    outside = summary["before_start"] + summary["after_end"]
    details = {**summary, "rows_outside": outside}
    if outside or summary["invalid"]:
        parts = []
        if outside:
            parts.append(f"{outside:,} of {summary['rows']:,} assignment rows fall outside the experiment window "
                         f"{spec.start_date}…{spec.end_date} ({summary['before_start']:,} before the start, "
                         f"{summary['after_end']:,} after the end; first {summary['first']}, last {summary['last']} UTC)")
        if summary["invalid"]:
            parts.append(f"{summary['invalid']:,} rows have no unit, variant or time")
        return GateResult("exposure_window", "WARN", "; ".join(parts) + " — not analysed", float(outside), details=details)
    return GateResult("exposure_window", "PASS",
                      f"all {summary['rows']:,} assignment rows inside {spec.start_date}…{spec.end_date}", 0.0, details=details)


def data_quality_gate(conn: psycopg.Connection, spec: ExperimentSpec, assets: list[str]) -> GateResult:
    """FAIL on a failed ERROR expectation of a table the experiment reads (``assets``); WARN on WARN ones.

    The expectations themselves run as great-expectations asset checks beside the tables
    (``liftlab.defs.quality``) and store their outcome in ``gates.quality_results``.
    """
    rows = conn.execute(
        "select asset, expectation, severity, reason, unexpected_count from gates.quality_results "
        "where asset = any(%s) and not success order by severity, asset, expectation",
        (assets,),
    ).fetchall()
    n_checked = conn.execute("select count(*) from gates.quality_results where asset = any(%s)", (assets,)).fetchone()[0]
    failures = [{"asset": a, "expectation": e, "severity": s, "reason": r, "unexpected_count": u} for a, e, s, r, u in rows]
    errors = [f for f in failures if f["severity"] == "ERROR"]
    warns = [f for f in failures if f["severity"] == "WARN"]
    details = {"assets": assets, "expectations_checked": int(n_checked), "failures": failures}
    if errors:
        text = "; ".join(f"{f['asset']}: {f['reason']}" for f in errors)
        return GateResult("data_quality", "FAIL", f"data-quality expectation failed: {text}", float(len(errors)), details=details)
    if warns:
        text = "; ".join(f"{f['asset']}: {f['reason']}" for f in warns)
        return GateResult("data_quality", "WARN", f"data-quality warnings: {text}", float(len(warns)), details=details)
    if not n_checked:
        return GateResult("data_quality", "N/A", f"not applicable: no data-quality expectations ran on {', '.join(assets)}",
                          details=details)
    return GateResult("data_quality", "PASS", f"all {n_checked} data-quality expectations met", 0.0, details=details)
