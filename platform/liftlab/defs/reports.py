"""Report layer: an HTML and a Markdown report per experiment, from the result tables."""

import dagster as dg

from liftlab import config as liftlab_config
from liftlab.defs.common import OWNER, inline_png, io_retry
from liftlab.defs.decisions import decisions
from liftlab.defs.resources import PostgresResource
from liftlab.specs import load_specs


class ReportsConfig(dg.Config):
    """Optional narrowing to some experiments (``liftlab run --experiment``): the other reports
    are left as they are."""

    experiments: list[str] = []


@dg.asset(
    retry_policy=io_retry,
    key=["reports", "experiment_reports"],
    deps=[decisions],
    group_name="reports",
    kinds={"html", "markdown"},
    owners=[OWNER],
    description="One self-contained HTML report (plots embedded) and one Markdown report per "
    "experiment under reports/: decision and reasons, gates, effects with a forest plot.",
)
def experiment_reports(context: dg.AssetExecutionContext, config: ReportsConfig,
                       postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab.reports.render import write_report

    out_dir = liftlab_config.reports_dir()
    rows, previews = [], []
    with postgres.connect() as conn:
        for item in [i for i in load_specs() if not config.experiments or i.spec.id in config.experiments]:
            paths = write_report(conn, item.spec.id, out_dir)
            decided = conn.execute("select decision from results.decisions where experiment_id = %s",
                                   (item.spec.id,)).fetchone()  # (collect() again would redraw every plot)
            label = decided[0] if decided else "PENDING"
            # paths as plain text: the UI cannot open a file:// link (it renders javascript:void(0))
            rows.append(f"| {item.spec.id} | {label} | `{paths['html']}` | `{paths['markdown']}` |")
            if "forest" in paths:
                previews.append(f"**{item.spec.id}: {label}**\n\n"
                                + inline_png(paths["forest"], f"forest plot {item.spec.id}").value)
    index = "| experiment | decision | HTML report | Markdown report |\n|---|---|---|---|\n" + "\n".join(rows)
    return dg.MaterializeResult(
        metadata={
            "reports_dir": dg.MetadataValue.path(str(out_dir)),
            "index": dg.MetadataValue.md(index),
            "forest_plots": dg.MetadataValue.md("\n\n".join(previews)),
            "dagster/row_count": len(rows),
        }
    )
