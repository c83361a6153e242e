"""Gate layer: trust checks that must pass before an experiment's effects are computed.

All per-experiment gates run in one step (``trust_gates``) on the ``experiment`` partition and
materialize one asset each — ``gates/srm``, ``gates/contamination``, ``gates/data_integrity``
and ``gates/balance`` — with their asset checks. The halting checks are **blocking**: when one
fails with ERROR severity the experiment's downstream analysis (sufficient statistics, effects)
does not run and its previously published effects are withdrawn, while every other
experiment's partition is analysed normally. Every gate writes its row in
``gates.check_results`` on every run (no stale rows). The logic lives in ``liftlab.gates``
(no Dagster there); this module only wires it.

``gates/aa_calibration`` re-randomizes the experiment's pre-period data to calibrate the effect
test; it is informational (non-blocking) and not upstream of the effects.
"""


import os
import zlib

import dagster as dg

from liftlab import config
from liftlab.defs.common import OWNER, inline_png, io_retry, markdown_table, partitioned_check, spec_for_partition
from liftlab.defs.partitions import experiment_partitions
from liftlab.defs.resources import PostgresResource
from liftlab.gates.store import record_check
from liftlab.units import exposure_counts


SRM_FAIL_BELOW = 0.001
SRM_WARN_BELOW = 0.01
CONTAMINATION_MAX_SHARE = 0.01
SMD_THRESHOLD = 0.1
AA_SIMULATIONS = 1000
AA_KS_ALPHA = 0.01

GATE_DEPS = [["units", "unit_metrics"], ["raw", "experiment_specs"]]

#: asset name → [(check name, blocking, description)]
GATE_CHECKS = {
    "srm": [("srm_passed", True, f"Sample ratio matches the planned allocation (chi-square p ≥ {SRM_FAIL_BELOW}); "
                                  "a failure halts this experiment's analysis.")],
    "contamination": [("contamination_passed", True, f"At most {CONTAMINATION_MAX_SHARE:.0%} of units were exposed to "
                                                     "more than one variant (they are excluded and counted).")],
    "data_integrity": [
        ("exposure_window_passed", False, "No assignment row of the experiment falls outside [start_date, end_date] "
                                           "(such rows are not analysed: a warning)."),
        ("quarantine_passed", True, "No row of the experiment's units inside its window was quarantined at ingest."),
        ("data_quality_passed", True, "No ERROR-severity data-quality expectation failed on a table the experiment reads."),
    ],
    "balance": [("balance_ok", False, f"Pre-period covariates balanced across arms (|SMD| ≤ {SMD_THRESHOLD}); "
                                      "an imbalance warns, it does not halt.")],
}
GATE_DESCRIPTIONS = {
    "srm": "Sample Ratio Mismatch: units per arm vs the spec's planned allocation (Pearson chi-square), with the "
           "per-level breakdown by the spec's dimensions and the exposure day to localise a mismatch.",
    "contamination": "Units exposed to more than one variant (crossover): counted and excluded; halts above "
                     f"{CONTAMINATION_MAX_SHARE:.0%} of units. N/A on a source with one row (one variant) per unit.",
    "data_integrity": "Assignment rows outside the experiment window (warn: not analysed), quarantined rows of its "
                      "units inside the window, and failed ERROR-level data-quality expectations of the tables it reads; "
                      "N/A where the source has no such thing.",
    "balance": "Standardized mean differences (Austin 2009) of the spec's pre-period covariates between each arm "
               "and the baseline; N/A when the spec declares none.",
}


def _check_result(check_name: str, asset: str, result, blocking: bool) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.ERROR if (result.status == "FAIL" and blocking) else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        asset_key=["gates", asset],
        check_name=check_name,
        passed=result.status in ("PASS", "N/A"),
        severity=severity,
        description=result.reason,
        metadata={"status": result.status, "reason": result.reason},
    )


def _srm(conn, spec):
    """Overall SRM (``srm_test``) plus the per-dimension breakdown in the details."""
    import polars as pl

    from liftlab.gates.result import GateResult
    from liftlab.gates.srm import describe_dimensions, srm_by_dimension, srm_test
    from liftlab.sources import adapter
    from liftlab.units import dimension_cells

    counts = exposure_counts(conn, spec)
    empty = [arm for arm in spec.allocation if counts.get(arm, 0) == 0]
    if empty:  # nothing to compare an arm with (and the statistics need the baseline): halt, say why
        reason = f"no units in arm(s) {empty}: nothing to compare (observed {counts})"
        return GateResult("srm", "FAIL", reason, details={"observed": counts, "planned": spec.allocation}), []
    if spec.design != "randomized":
        reason = f"not applicable: a {spec.design.replace('_', ' ')} design has no planned allocation"
        return GateResult("srm", "N/A", reason, details={"observed": counts, "planned": spec.allocation}), []
    res = srm_test(counts, spec.allocation, fail_below=SRM_FAIL_BELOW, warn_below=SRM_WARN_BELOW)
    dims = [*spec.dimensions, *(["day"] if adapter(spec).timestamped else [])]
    cells = dimension_cells(conn, spec, spec.dimensions) if dims else pl.DataFrame()
    found = []
    if not cells.is_empty():
        found = srm_by_dimension(cells.with_columns(pl.col("n").cast(pl.Int64)), spec.allocation, dims,
                                 fail_below=SRM_FAIL_BELOW)
    reason = res.reason
    if found and res.status != "PASS":
        reason += "; " + describe_dimensions(found, SRM_FAIL_BELOW)
    details = {
        "observed": res.observed, "expected": res.expected, "planned": spec.allocation, "df": res.df,
        "by_dimension": {
            d.dimension: {"independence_chi2": d.independence_chi2, "independence_p": d.independence_p,
                          "flagged": d.flagged, "cells": d.cells}
            for d in found
        },
    }
    return GateResult("srm", res.status, reason, res.statistic, res.p_value, details), found


def _contamination(conn, spec):
    from liftlab.gates.contamination import contamination_test
    from liftlab.gates.integrity import not_applicable
    from liftlab.sources import unit_table
    from liftlab.units import crossover_counts

    table = unit_table(spec)
    if table.crossover is None:
        return not_applicable("contamination", f"a {spec.source.kind} source has one row (one variant) per unit")
    rows = crossover_counts(conn, spec)
    n_units = sum(r[1] for r in rows)
    n_multi = sum(r[2] for r in rows)
    return contamination_test(n_units, n_multi, max_share=CONTAMINATION_MAX_SHARE,
                              by_first_variant={r[0]: int(r[2]) for r in rows})


def _balance(conn, spec):
    import polars as pl

    from liftlab.gates.balance import balance_check, smd_table
    from liftlab.units import unit_frame

    if not spec.covariates:
        return balance_check(pl.DataFrame()), pl.DataFrame()
    units = unit_frame(conn, spec, spec.covariates)
    table = smd_table(units, baseline=spec.baseline, covariates=spec.covariates)
    return balance_check(table, SMD_THRESHOLD), table


def aa_simulations() -> int:
    """Re-randomizations per covariate: ``LIFTLAB_AA_SIMULATIONS``, never fewer than 1,000."""
    return max(AA_SIMULATIONS, int(os.environ.get("LIFTLAB_AA_SIMULATIONS", AA_SIMULATIONS)))


@dg.multi_asset(
    retry_policy=io_retry,
    name="trust_gates",
    specs=[
        dg.AssetSpec(["gates", name], deps=GATE_DEPS, group_name="gates", kinds={"python", "postgres"},
                     owners=[OWNER], description=GATE_DESCRIPTIONS[name])
        for name in GATE_CHECKS
    ],
    check_specs=[  # one result per experiment partition (see partitioned_check)
        partitioned_check(check, asset=["gates", name], partitions_def=experiment_partitions, blocking=blocking,
                          description=text)
        for name, checks in GATE_CHECKS.items()
        for check, blocking, text in checks
    ],
    partitions_def=experiment_partitions,
)
def srm_gate(context: dg.AssetExecutionContext, postgres: PostgresResource):
    """Run every trust gate of one experiment, record each in gates.check_results, then report.

    The results are recorded before any check result is yielded, so a blocking failure of one
    gate never leaves another gate's row stale.
    """
    from liftlab.sources import adapter

    spec = spec_for_partition(context.partition_key).spec
    with postgres.connect() as conn:
        srm, dims = _srm(conn, spec)
        contamination = _contamination(conn, spec)
        window, quarantine, quality = adapter(spec).integrity(conn)
        balance, smd = _balance(conn, spec)
        results = [srm, contamination, window, quarantine, quality, balance]
        for result in results:
            record_check(conn, experiment_id=spec.id, check=result.check, status=result.status,
                         statistic=result.statistic, p_value=result.p_value, details=result.as_details(),
                         run_id=context.run_id)
    by_check = {r.check: r for r in results}
    asset_results = {
        "srm": [srm], "contamination": [contamination], "data_integrity": [window, quarantine, quality], "balance": [balance],
    }
    srm_meta = {"status": srm.status, "reason": srm.reason, "chi2": float(srm.statistic), "p_value": float(srm.p_value),
                "observed": dg.MetadataValue.json(srm.details.get("observed", {}))}
    if dims:
        import polars as pl

        dim_rows = pl.DataFrame([
            {"dimension": d.dimension, "levels": len(d.cells), "flagged": ", ".join(d.flagged[:8]),
             "independence_p": d.independence_p}
            for d in dims
        ])
        srm_meta["by_dimension"] = dg.MetadataValue.md(markdown_table(dim_rows))
    metadata = {
        "srm": srm_meta,
        "contamination": {"status": contamination.status, "reason": contamination.reason,
                          "contaminated_units": contamination.details.get("n_contaminated", 0),
                          "share": float(contamination.statistic)},
        "data_integrity": {f"{r.check}/status": r.status for r in asset_results["data_integrity"]}
        | {f"{r.check}/reason": r.reason for r in asset_results["data_integrity"]},
        "balance": {"status": balance.status, "reason": balance.reason,
                    "smd": dg.MetadataValue.md(markdown_table(smd)) if not smd.is_empty() else "_(no covariates)_"},
    }
    for name in GATE_CHECKS:
        yield dg.MaterializeResult(asset_key=["gates", name], metadata=metadata[name])
    check_of = {"srm_passed": "srm", "contamination_passed": "contamination", "exposure_window_passed": "exposure_window",
                "quarantine_passed": "quarantine", "data_quality_passed": "data_quality", "balance_ok": "balance"}
    for name, checks in GATE_CHECKS.items():
        for check, blocking, _ in checks:
            yield _check_result(check, name, by_check[check_of[check]], blocking)


@dg.asset(
    retry_policy=io_retry,
    key=["gates", "aa_calibration"],
    partitions_def=experiment_partitions,
    deps=[["units", "unit_metrics"], ["raw", "experiment_specs"]],
    group_name="gates",
    kinds={"numpy", "postgres"},
    owners=[OWNER],
    check_specs=[partitioned_check(
        "aa_calibrated", asset=["gates", "aa_calibration"], partitions_def=experiment_partitions, blocking=False,
        description="The Welch test's false-positive rate on re-randomized pre-period data is within "
        "α ± 2·sqrt(α(1−α)/B) and its p-values are uniform (KS).",
    )],
    description=f"A/A calibration: the experiment's pre-period covariates re-randomized {AA_SIMULATIONS:,}+ times "
    "(vectorised); false-positive rate of the Welch test vs α and KS uniformity of the p-values, with a histogram.",
)
def aa_calibration(context: dg.AssetExecutionContext, postgres: PostgresResource):
    import json

    import polars as pl

    from liftlab.db import replace_slice
    from liftlab.gates.aa import calibrate_columns, plot_histogram
    from liftlab.units import unit_frame

    spec = spec_for_partition(context.partition_key).spec
    n_sims = aa_simulations()
    arms = [v.name for v in spec.variants if v.name != spec.baseline]
    share = spec.allocation[arms[0]] / (spec.allocation[arms[0]] + spec.allocation[spec.baseline])
    covariates = list(spec.covariates)
    cals = []
    with postgres.connect() as conn:
        units = unit_frame(conn, spec, covariates) if covariates else pl.DataFrame()
        if covariates:
            # every covariate on the same re-randomizations; KS at 0.01 per experiment,
            # Bonferroni-split across its covariates
            cals = calibrate_columns({c: units[c].to_numpy() for c in covariates}, share=share, alpha=spec.alpha,
                                     n_simulations=n_sims, seed=zlib.crc32(spec.id.encode()),
                                     ks_alpha=AA_KS_ALPHA / len(covariates))
        plot_path = None
        if cals:
            folder = config.reports_dir() / "aa_calibration"
            folder.mkdir(parents=True, exist_ok=True)
            plot_path = folder / f"{spec.id}.png"
            plot_histogram(cals, plot_path)
        frame = pl.DataFrame(
            [{
                "experiment_id": spec.id, "metric": c.metric, "n_units": c.n_units, "n_simulations": c.n_simulations,
                "alpha": c.alpha, "false_positive_rate": c.false_positive_rate, "band_low": c.band_low,
                "band_high": c.band_high, "ks_statistic": c.ks_statistic, "ks_p_value": c.ks_p_value,
                "within_band": c.within_band, "uniform": c.uniform, "histogram": json.dumps(c.histogram()),
                "plot_path": str(plot_path), "seed": c.seed, "run_id": context.run_id,
            } for c in cals],
            schema={"experiment_id": pl.Utf8, "metric": pl.Utf8, "n_units": pl.Int64, "n_simulations": pl.Int32,
                    "alpha": pl.Float64, "false_positive_rate": pl.Float64, "band_low": pl.Float64, "band_high": pl.Float64,
                    "ks_statistic": pl.Float64, "ks_p_value": pl.Float64, "within_band": pl.Boolean, "uniform": pl.Boolean,
                    "histogram": pl.Utf8, "plot_path": pl.Utf8, "seed": pl.Int64, "run_id": pl.Utf8},
        )
        replace_slice(conn, "gates.aa_calibration", frame, where={"experiment_id": spec.id})
        passed = all(c.passed for c in cals)
        # Informational: never FAIL (the calibration tests the platform's test, not this experiment);
        # N/A without covariates: nothing was re-randomized, so nothing was calibrated.
        status = ("PASS" if passed else "WARN") if cals else "N/A"
        reason = (("A/A calibration: " + "; ".join(c.summary() for c in cals)) if cals
                  else "not applicable: the spec declares no pre-period covariates to re-randomize")
        record_check(conn, experiment_id=spec.id, check="aa_calibration", status=status,
                     statistic=max((abs(c.false_positive_rate - c.alpha) for c in cals), default=None),
                     p_value=min((c.ks_p_value for c in cals), default=None),
                     details={"reason": reason, "calibrations": frame.drop("run_id").to_dicts()}, run_id=context.run_id)
    table = frame.select("metric", "n_units", "false_positive_rate", "band_low", "band_high", "ks_p_value", "within_band", "uniform")
    metadata = {
        "dagster/row_count": frame.height,
        "status": status,
        "calibration": dg.MetadataValue.md(markdown_table(table)),
        "reason": reason,
    }
    if plot_path is not None:
        metadata["histogram"] = inline_png(plot_path, f"A/A p-values of {spec.id}")
    yield dg.MaterializeResult(metadata=metadata)
    yield dg.AssetCheckResult(check_name="aa_calibrated", passed=passed, severity=dg.AssetCheckSeverity.WARN,
                              description=reason, metadata={"status": status, "reason": reason})
