"""Calibration layer: simulated experiments on the synthetic world prove the statistics.

Unpartitioned asset ``results/calibration`` (group ``calibration``, in no job: materialize it on
demand).  Size: run config, else ``LIFTLAB_CALIBRATION_SIMS`` / ``LIFTLAB_CALIBRATION_USERS``,
else the CI size (300 simulations of a 5,000-user world, a few seconds).  Full size, e.g.
``LIFTLAB_CALIBRATION_SIMS=10000 LIFTLAB_CALIBRATION_USERS=20000``.
"""

import os

import dagster as dg

from liftlab.defs.common import OWNER, inline_png, io_retry, markdown_table
from liftlab.defs.resources import PostgresResource


class CalibrationSize(dg.Config):
    n_sims: int | None = None
    n_users: int | None = None
    lift: float = 0.03


@dg.asset(
    retry_policy=io_retry,
    key=["results", "calibration"],
    group_name="calibration",
    kinds={"python", "postgres"},
    owners=[OWNER],
    description="≥1,000 simulated experiments (on demand; small in CI) on the synthetic world: CI "
    "coverage of the true effect, A/A false-positive rate at a fixed horizon and with 28 daily looks "
    "(naive vs confidence sequence), power at the true effect, CUPED variance reduction vs 1 − ρ². "
    "Rows in results.calibration with their acceptance bands; plot in reports/calibration.png.",
)
def calibration(context: dg.AssetExecutionContext, config: CalibrationSize, postgres: PostgresResource) -> dg.MaterializeResult:
    import polars as pl

    from liftlab import config as settings
    from liftlab.db import replace_slice
    from liftlab.studies.calibration import CalibrationConfig, plot, run_calibration, summary_frame

    cfg = CalibrationConfig(
        n_sims=config.n_sims or int(os.environ.get("LIFTLAB_CALIBRATION_SIMS", "300")),
        n_users=config.n_users or int(os.environ.get("LIFTLAB_CALIBRATION_USERS", "5000")),
        lift=config.lift,
    )
    result = run_calibration(cfg)
    table = summary_frame(result).with_columns(pl.lit(context.run_id).alias("run_id"))
    with postgres.connect() as conn:
        replace_slice(conn, "results.calibration", table, where={"study": "synthetic_world"})
    out = settings.reports_dir()
    out.mkdir(parents=True, exist_ok=True)
    png = out / "calibration.png"
    plot(result, png)
    return dg.MaterializeResult(
        metadata={
            "n_sims": cfg.n_sims, "n_users": cfg.n_users, "all_passed": bool(table["passed"].all()),
            "plot": inline_png(png, "calibration of the statistics on simulated experiments"),
            "summary": dg.MetadataValue.md(markdown_table(table.select("measure", "method", "value", "target", "lower_bound", "upper_bound", "passed"))),
        }
    )
