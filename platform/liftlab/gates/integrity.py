"""Per-experiment data-integrity gates: quarantined rows, exposures outside the window, and
data-quality (great-expectations) failures of the tables the experiment reads.

Global data faults are repaired or isolated at ingest (``liftlab.ingest.validate``: duplicate
event ids, negative revenue … go to ``raw.quarantine`` with the accounting in
``raw.load_log``), but an experiment whose units and window are touched by them is **halted**:
its metrics were computed on data that had to be repaired, and a person must confirm the repair
(a negative payment may be a refund the platform does not model; a replayed day may have lost
other rows). Experiments the fault does not touch are analysed normally.

The queries read ``raw``, ``marts`` and ``gates`` tables; values are parameters. No Dagster.
"""

from __future__ import annotations

import datetime as dt

import psycopg

from liftlab.gates.result import GateResult
from liftlab.specs import ExperimentSpec

#: Quarantine reasons that corrupt only some metrics (the rest — duplicates, missing ids or
#: timestamps, unknown event types — can touch any metric of the unit).
REASON_METRICS: dict[str, frozenset[str]] = {
    "negative revenue": frozenset({"revenue", "pre_revenue"}),
    "payment without amount": frozenset({"revenue", "pre_revenue"}),
    "non-finite value": frozenset({"revenue", "pre_revenue"}),
}

#: Tables an experiment on the event stream reads; a failed ERROR expectation on any halts it.
EVENT_ASSETS = ("raw/events", "raw/exposures", "raw/users", "marts/fct_exposures", "marts/fct_unit_metrics")


def _window(spec: ExperimentSpec) -> tuple[dt.date, dt.date] | None:
    if spec.start_date is None or spec.end_date is None:
        return None
    return spec.pre_start_date or spec.start_date, spec.end_date


def quarantine_gate(conn: psycopg.Connection, spec: ExperimentSpec, max_rows: int = 0) -> GateResult:
    """FAIL when more than ``max_rows`` quarantined rows belong to the experiment's units, window and metrics.

    Events count when their user was exposed in the experiment, their timestamp falls in
    ``[pre_start_date, end_date]`` (pre-period covariates are metrics too) and their reason can
    affect a metric the experiment uses (``REASON_METRICS``: a negative payment matters only to
    an experiment that measures revenue); exposure rows count when they name the experiment.
    Quarantined rows of the units that none of its metrics use give a WARN. Reasons are grouped
    with their count and dates.
    """
    window = _window(spec)
    if spec.source.kind != "events" or window is None:
        return _file_quarantine(conn, spec)
    lo, hi = window
    rows = conn.execute(
        """
        with units as (select user_id from marts.fct_exposures where experiment_id = %(e)s)
        select 'events' as kind, q.reason, count(*),
               min((q.record->>'event_ts')::timestamptz at time zone 'UTC')::date,
               max((q.record->>'event_ts')::timestamptz at time zone 'UTC')::date
        from raw.quarantine q
        join units u on u.user_id = (q.record->>'user_id')::bigint
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
        """,
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
    """Metrics and covariates of the spec, with the numerator and denominator of ratio metrics."""
    used = set(spec.metric_roles()) | set(spec.covariates)
    ratio = getattr(spec, "ratio", None)  # ratio metrics, where the spec model has them
    if callable(ratio):
        for metric in list(used):
            parts = ratio(metric)
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


def _file_quarantine(conn: psycopg.Connection, spec: ExperimentSpec) -> GateResult:
    """File sources are all-or-nothing (a bad file is rejected whole): report the last load."""
    row = conn.execute(
        "select received, accepted, quarantined, file from raw.load_log where experiment_id = %s "
        "order by loaded_at desc limit 1",
        (spec.id,),
    ).fetchone()
    if row is None:
        return GateResult("quarantine", "PASS", "no load recorded for this experiment's source", 0.0, details={})
    received, accepted, quarantined, file = row
    details = {"received": received, "accepted": accepted, "quarantined": quarantined, "file": file}
    if quarantined:
        return GateResult("quarantine", "FAIL", f"{quarantined:,} of {received:,} rows of {file} were quarantined",
                          float(quarantined), details=details)
    return GateResult("quarantine", "PASS", f"all {accepted:,} rows of {file} accepted", 0.0, details=details)


def exposure_window_gate(conn: psycopg.Connection, spec: ExperimentSpec, max_rows: int = 0) -> GateResult:
    """FAIL when more than ``max_rows`` exposure rows fall outside ``[start_date, end_date]`` (UTC days).

    An exposure after the end (or before the start) means the assignment service or its
    logging did not follow the experiment's schedule: the logged population is not the one
    the spec describes. Checked on ``raw.exposures`` (every exposure row, not just the first).
    """
    if spec.source.kind != "events" or spec.start_date is None or spec.end_date is None:
        return GateResult("exposure_window", "PASS", "not applicable: the source has no exposure timestamps", details={})
    n_out, n_all, before, after, first_out, last_out = conn.execute(
        """
        select count(*) filter (where not inside), count(*),
               count(*) filter (where exposed_at < lo), count(*) filter (where exposed_at >= hi),
               min(exposed_at) filter (where not inside), max(exposed_at) filter (where not inside)
        from (
            select exposed_at, lo, hi, (exposed_at >= lo and exposed_at < hi) as inside
            from raw.exposures,
                 lateral (select (%(s)s::date)::timestamp at time zone 'UTC' as lo,
                                 ((%(e)s::date) + 1)::timestamp at time zone 'UTC' as hi) w
            where experiment_id = %(id)s and exposed_at is not null
        ) x
        """,
        {"s": spec.start_date, "e": spec.end_date, "id": spec.id},
    ).fetchone()
    details = {
        "rows_outside": int(n_out), "rows": int(n_all), "before_start": int(before), "after_end": int(after),
        "first_outside": str(first_out) if first_out else None, "last_outside": str(last_out) if last_out else None,
        "window": [str(spec.start_date), str(spec.end_date)], "max_rows": max_rows,
    }
    if n_out > max_rows:
        return GateResult(
            "exposure_window", "FAIL",
            f"{n_out:,} of {n_all:,} exposure rows fall outside the experiment window {spec.start_date}…{spec.end_date} "
            f"({before:,} before the start, {after:,} after the end; {first_out:%Y-%m-%d %H:%M} … {last_out:%Y-%m-%d %H:%M} UTC)",
            float(n_out), details=details,
        )
    return GateResult("exposure_window", "PASS",
                      f"all {n_all:,} exposure rows inside {spec.start_date}…{spec.end_date}", float(n_out), details=details)


def data_quality_gate(conn: psycopg.Connection, spec: ExperimentSpec) -> GateResult:
    """FAIL on a failed ERROR expectation of a table the experiment reads; WARN on WARN ones.

    The expectations themselves run as great-expectations asset checks beside the tables
    (``liftlab.defs.quality``) and store their outcome in ``gates.quality_results``.
    """
    assets = list(EVENT_ASSETS) if spec.source.kind == "events" else [f"raw/src_{spec.id}"]
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
        return GateResult("data_quality", "PASS", "no data-quality expectations recorded for this source", 0.0, details=details)
    return GateResult("data_quality", "PASS", f"all {n_checked} data-quality expectations met", 0.0, details=details)
