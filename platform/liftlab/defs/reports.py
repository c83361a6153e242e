"""Report layer: an HTML and a Markdown report per experiment, from the result tables."""

import dagster as dg

from liftlab import config
from liftlab.defs.common import OWNER, io_retry
from liftlab.defs.decisions import decisions
from liftlab.defs.resources import PostgresResource
from liftlab.specs import load_specs


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
def experiment_reports(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab.reports.plots import data_uri
    from liftlab.reports.render import collect, write_report

    out_dir = config.reports_dir()
    rows, previews = [], []
    with postgres.connect() as conn:
        for item in load_specs():
            paths = write_report(conn, item.spec.id, out_dir)
            data = collect(conn, item.spec.id)
            label = data.decision["decision"] if data.decision else "PENDING"
            rows.append(f"| {item.spec.id} | {label} | [{paths['html'].name}](file://{paths['html']}) |")
            forest = next((f for f in data.figures if f.name == "forest"), None)
            if forest is not None:
                previews.append(f"**{item.spec.id}: {label}**\n\n![forest plot {item.spec.id}]({data_uri(forest.png)})")
    index = "| experiment | decision | report |\n|---|---|---|\n" + "\n".join(rows)
    return dg.MaterializeResult(
        metadata={
            "reports_dir": dg.MetadataValue.path(str(out_dir)),
            "index": dg.MetadataValue.md(index),
            "forest_plots": dg.MetadataValue.md("\n\n".join(previews)),
            "dagster/row_count": len(rows),
        }
    )
