"""Gate layer: trust checks that must pass before an experiment's effects are computed.

The SRM gate is a **blocking** asset check on a per-experiment partition: when it fails, the
experiment's downstream analysis does not run (and its previously published effects are
withdrawn), while every other experiment's partition is analysed normally.
"""


import dagster as dg

from liftlab.defs.common import OWNER, spec_for_partition
from liftlab.defs.partitions import experiment_partitions
from liftlab.defs.resources import PostgresResource
from liftlab.gates.store import record_check
from liftlab.units import exposure_counts

def not_applicable(counts: dict[str, int], design: str):
    """SRM needs planned arm sizes; a non-randomized design has none (e.g. who opted in)."""
    from liftlab.gates.srm import SrmResult

    return SrmResult(
        statistic=float("nan"), p_value=float("nan"), df=0, observed=counts, expected={},
        status="PASS", reason=f"not applicable: {design.replace('_', ' ')} design has no planned allocation",
    )


SRM_FAIL_BELOW = 0.001
SRM_WARN_BELOW = 0.01


@dg.asset(
    key=["gates", "srm"],
    partitions_def=experiment_partitions,
    deps=[["marts", "fct_exposures"], ["raw", "user_files"], ["raw", "experiment_specs"]],
    group_name="gates",
    kinds={"python", "postgres"},
    owners=[OWNER],
    check_specs=[
        dg.AssetCheckSpec(
            "srm_passed",
            asset=["gates", "srm"],
            blocking=True,
            description=f"Sample ratio matches the planned allocation (chi-square p ≥ {SRM_FAIL_BELOW}); "
            "a failure halts this experiment's analysis.",
        )
    ],
    description="Sample Ratio Mismatch: units per arm vs the spec's planned allocation "
    "(Pearson chi-square goodness of fit), written to gates.check_results.",
)
def srm_gate(context: dg.AssetExecutionContext, postgres: PostgresResource):
    from liftlab.gates.srm import srm_test  # scipy: imported when the asset runs, not at load

    spec = spec_for_partition(context.partition_key).spec
    with postgres.connect() as conn:
        counts = exposure_counts(conn, spec)
        if spec.design == "randomized":
            result = srm_test(counts, spec.allocation, fail_below=SRM_FAIL_BELOW, warn_below=SRM_WARN_BELOW)
        else:
            result = not_applicable(counts, spec.design)
        details = {
            "reason": result.reason,
            "observed": result.observed,
            "expected": result.expected,
            "planned": spec.allocation,
            "df": result.df,
        }
        record_check(
            conn,
            experiment_id=spec.id,
            check="srm",
            status=result.status,
            statistic=result.statistic,
            p_value=result.p_value,
            details=details,
            run_id=context.run_id,
        )
    metadata = {
        "status": result.status,
        "chi2": float(result.statistic),
        "p_value": float(result.p_value),
        "reason": result.reason,
        "observed": dg.MetadataValue.json(result.observed),
    }
    yield dg.MaterializeResult(metadata=metadata)
    yield dg.AssetCheckResult(
        check_name="srm_passed",
        passed=result.status == "PASS",
        severity=dg.AssetCheckSeverity.ERROR if result.status == "FAIL" else dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description=result.reason,
    )
