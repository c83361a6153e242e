"""One report per experiment, rendered from the result tables only.

The HTML report is self-contained (plots embedded as data URIs) so it can be mailed or
attached to a ticket; the Markdown report (for pull requests) references PNG files written
next to it. Neither reads raw data: what a report shows is exactly what ``results`` and
``gates`` hold, so a report can always be traced back to SQL.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import psycopg

from liftlab.db import read_frame
from liftlab.reports import plots


@dataclass
class Figure:
    name: str
    title: str
    png: bytes


@dataclass
class ReportData:
    experiment_id: str
    spec: dict
    decision: dict | None
    gates: pl.DataFrame
    effects: pl.DataFrame
    figures: list[Figure] = field(default_factory=list)
    extra_tables: list[tuple[str, pl.DataFrame]] = field(default_factory=list)
    #: The estimates drawn on the forest plot: the ones the decision read (one per metric × arm).
    plotted: pl.DataFrame | None = None


def _table_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (name,)).fetchone()[0]


def collect(conn: psycopg.Connection, experiment_id: str) -> ReportData:
    """Read everything the report shows about one experiment."""
    spec_row = conn.execute("select spec from raw.experiment_specs where experiment_id = %s", (experiment_id,)).fetchone()
    spec = spec_row[0] if spec_row else {"id": experiment_id}
    decisions = read_frame(
        conn, "select decision, variant, reasons, rule_trace, decided_at, run_id from results.decisions where experiment_id = %s",
        (experiment_id,),
    )
    gates = read_frame(
        conn,
        "select \"check\", status, statistic, p_value, details->>'reason' as reason from gates.check_results "
        "where experiment_id = %s order by \"check\"",
        (experiment_id,),
    )
    effects = read_frame(
        conn,
        "select metric, metric_role, variant, baseline, method, is_decision_estimate, n_baseline, n_variant, "
        "mean_baseline, mean_variant, abs_effect, abs_ci_low, abs_ci_high, rel_effect, rel_ci_low, rel_ci_high, "
        "p_value, p_value_adj, alpha from results.effects where experiment_id = %s "
        "order by array_position(array['primary','secondary','guardrail'], metric_role), metric, variant, "
        "is_decision_estimate desc, method",
        (experiment_id,),
    )
    data = ReportData(
        experiment_id=experiment_id,
        spec=spec,
        decision=decisions.to_dicts()[0] if not decisions.is_empty() else None,
        gates=gates,
        effects=effects,
    )
    model = _spec_model(spec)
    plotted = decision_estimates(conn, experiment_id, model, effects)
    if plotted is not None and not plotted.is_empty():
        data.plotted = plotted
        level = plots.levels_label(plots.alphas_of(plotted)) or "unstated"
        causal = model is not None and model.design != "randomized"
        what = (f"the causal estimates the decision reads ({plotted['method'][0]}); a difference in means of this "
                f"design is confounded" if causal else "the estimate each decision reads (method per metric)")
        tolerances = {g.metric: (g.tolerance, model.guardrail_direction(g)) for g in model.guardrails} if model else {}
        title = f"{experiment_id}: effects vs {plotted['baseline'][0]}"
        data.figures.append(Figure("forest", f"Relative effects with {level} confidence intervals: {what}; guardrail "
                                             "tolerances dashed", plots.forest_plot(
                                                 plotted, title, _directions(model, plotted["metric"].unique().to_list()),
                                                 tolerances)))
        primary = spec.get("primary_metric")
        if not causal and primary and primary in plotted["metric"].to_list():
            data.figures.append(
                Figure("primary_means", f"{primary}: mean per arm", plots.arm_means_plot(plotted, primary, plotted["baseline"][0]))
            )
    for section in EXTRA_SECTIONS:
        section(conn, data)
    return data


def _spec_model(spec: dict):
    """The spec as stored in the registry, validated (None when it no longer validates)."""
    from liftlab.specs import ExperimentSpec

    try:
        return ExperimentSpec.model_validate(spec)
    except ValueError:
        return None


def spec_alpha(data: ReportData) -> float | None:
    """The spec's α (its intervals are at 1 − α): the stored spec's, else the model's default."""
    alpha = data.spec.get("alpha")
    if alpha is None:
        model = _spec_model(data.spec)
        alpha = model.alpha if model is not None else None
    return float(alpha) if alpha is not None else None


def _directions(model, metrics: list[str]) -> dict[str, str]:
    """metric → good direction."""
    return {metric: model.direction(metric) for metric in metrics} if model is not None else {}


def decision_estimates(conn: psycopg.Connection, experiment_id: str, model, effects: pl.DataFrame) -> pl.DataFrame | None:
    """One row per metric × arm: what the decision read. Randomized: the ``is_decision_estimate``
    rows of ``results.effects``; not randomized: the design's preferred causal estimate of each
    outcome metric (relative to its counterfactual baseline), never the confounded difference."""
    if model is None or model.design == "randomized":
        return effects.filter(pl.col("is_decision_estimate")) if not effects.is_empty() else None
    from liftlab.decide import decision_estimate

    if not _table_exists(conn, "results.causal_effects"):
        return None
    rows = read_frame(conn, "select * from results.causal_effects where study = %s", (experiment_id,)).to_dicts()
    out = []
    roles = model.metric_roles()
    for metric, role in roles.items():
        row = decision_estimate(model.design, metric, rows)
        if row is None:
            continue
        out.append({"metric": metric, "metric_role": role, "variant": model.treated_variant, "baseline": model.baseline,
                    "method": f"{row['estimator']} {row['estimand']}", "abs_effect": row["estimate"],
                    "abs_ci_low": row["ci_low"], "abs_ci_high": row["ci_high"], "rel_effect": row["rel_effect"],
                    "rel_ci_low": row["rel_ci_low"], "rel_ci_high": row["rel_ci_high"], "p_value": None,
                    "p_value_adj": None, "alpha": 1 - (row["level"] if row["level"] is not None else 1 - model.alpha)})
    return pl.DataFrame(out, schema={
        "metric": pl.Utf8, "metric_role": pl.Utf8, "variant": pl.Utf8, "baseline": pl.Utf8, "method": pl.Utf8,
        "abs_effect": pl.Float64, "abs_ci_low": pl.Float64, "abs_ci_high": pl.Float64, "rel_effect": pl.Float64,
        "rel_ci_low": pl.Float64, "rel_ci_high": pl.Float64, "p_value": pl.Float64, "p_value_adj": pl.Float64,
        "alpha": pl.Float64}) if out else None


#: Functions (conn, ReportData) -> None that add figures/tables from other result tables
#: (sequential looks, CUPED, uplift, causal studies) when those tables exist.
EXTRA_SECTIONS: list = []


def _reasons(decision: dict | None) -> list[str]:
    if not decision:
        return ["no decision yet"]
    reasons = decision["reasons"]
    return reasons if isinstance(reasons, list) else json.loads(reasons)


def gate_warnings(data: ReportData) -> list[str]:
    """One line per gate that warned, worded as the decision's reasons word it
    (:func:`liftlab.decide.warnings_of`): a WARN never halts, but it heads the report."""
    from liftlab.decide import warnings_of

    return warnings_of(data.gates.to_dicts()) if not data.gates.is_empty() else []


def _decision_reasons(data: ReportData) -> list[str]:
    """The decision's reasons without the gate warnings already listed in the report's header."""
    shown = set(gate_warnings(data))
    return [r for r in _reasons(data.decision) if r not in shown]


def effects_note(data: ReportData) -> str:
    """What level the effect table's intervals are at (the rows' ``alpha``)."""
    alphas = plots.alphas_of(data.effects)
    if not alphas:
        return ""
    stated = ", ".join(f"α = {a:g}" for a in alphas)
    return (f"Intervals (abs_ci_*, rel_ci_*) at {plots.levels_label(alphas)} (1 − α, {stated}), not adjusted for "
            "multiplicity; p_value_adj is the multiplicity-adjusted p-value.")


GATES_NOTE = ("FAIL halts the experiment; WARN does not halt and is listed at the top; N/A: the gate does not "
              "apply to this experiment (its reason says why) and checked nothing.")


def _html_table(frame: pl.DataFrame, digits: int = 4) -> str:
    if frame.is_empty():
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.iter_rows():
        cells = []
        for v in row:
            text = f"{v:.{digits}g}" if isinstance(v, float) else ("" if v is None else str(v))
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def _md_table(frame: pl.DataFrame, digits: int = 4) -> str:
    if frame.is_empty():
        return "_none_"
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.iter_rows():
        lines.append("| " + " | ".join(f"{v:.{digits}g}" if isinstance(v, float) else ("" if v is None else str(v)) for v in row) + " |")
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1000px;color:#222}
h1{margin-bottom:.2rem} .meta{color:#666} table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.85rem}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:right} th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
.decision{font-size:1.6rem;font-weight:700;padding:.4rem .8rem;border-radius:.3rem;display:inline-block;color:#fff}
.SHIP{background:#1b7837}.ROLLBACK{background:#b2182b}.HOLD{background:#8c6d1f}.HALTED{background:#542788}.KEEP{background:#2166ac}
.warnings{background:#fff4e5;border-left:4px solid #e08214;padding:.3rem .8rem;margin:.5rem 0}
figure{margin:1rem 0} figure img{max-width:100%;border:1px solid #eee} .wide{overflow-x:auto}
"""


def to_html(data: ReportData) -> str:
    spec, decision = data.spec, data.decision
    label = decision["decision"] if decision else "PENDING"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>liftlab · {html.escape(data.experiment_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(spec.get('name') or data.experiment_id)}</h1>",
        f"<p class='meta'>{html.escape(data.experiment_id)} · {html.escape(spec.get('design', ''))} · owner "
        f"{html.escape(spec.get('owner', ''))}</p>",
        f"<p><strong>Hypothesis.</strong> {html.escape(spec.get('hypothesis', ''))}</p>",
        f"<h2>Decision</h2><p><span class='decision {label.split()[0]}'>{html.escape(label)}"
        + (f" · {html.escape(decision['variant'])}" if decision and decision.get("variant") else "")
        + "</span></p>",
    ]
    warned = gate_warnings(data)
    if warned:
        parts.append("<div class='warnings' id='gate-warnings'><strong>Gate warnings</strong><ul>"
                     + "".join(f"<li>{html.escape(w)}</li>" for w in warned) + "</ul></div>")
    parts += [
        "<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in _decision_reasons(data)) + "</ul>",
        "<h2>Trust gates</h2>",
        f"<p class='meta'>{html.escape(GATES_NOTE)}</p>",
        _html_table(data.gates),
        "<h2>Effects</h2>",
    ]
    for fig in data.figures:
        parts.append(
            f"<figure id='fig-{fig.name}'><img alt='{html.escape(fig.title)}' src='{plots.data_uri(fig.png)}'>"
            f"<figcaption>{html.escape(fig.title)}</figcaption></figure>"
        )
    note = effects_note(data)
    if note:
        parts.append(f"<p class='meta'>{html.escape(note)}</p>")
    parts.append(_html_table(data.effects.drop("alpha") if "alpha" in data.effects.columns else data.effects))
    for title, table in data.extra_tables:
        parts += [f"<h2>{html.escape(title)}</h2>", _html_table(table)]
    if decision:
        parts.append(f"<p class='meta'>decided {decision['decided_at']} · run {decision['run_id']}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def to_markdown(data: ReportData, figure_dir: str) -> str:
    decision = data.decision
    label = decision["decision"] if decision else "PENDING"
    lines = [
        f"# {data.spec.get('name') or data.experiment_id}",
        "",
        f"`{data.experiment_id}` · {data.spec.get('design', '')} · owner {data.spec.get('owner', '')}",
        "",
        f"**Decision: {label}**" + (f" ({decision['variant']})" if decision and decision.get("variant") else ""),
        "",
        *(["**Gate warnings:**", "", *[f"- ⚠ {w}" for w in gate_warnings(data)], ""] if gate_warnings(data) else []),
        *[f"- {r}" for r in _decision_reasons(data)],
        "",
        "## Trust gates",
        "",
        f"_{GATES_NOTE}_",
        "",
        _md_table(data.gates),
        "",
        "## Effects",
        "",
        *[f"![{fig.title}]({figure_dir}/{fig.name}.png)\n" for fig in data.figures],
        *([f"_{effects_note(data)}_", ""] if effects_note(data) else []),
        _md_table(data.effects.drop("alpha") if "alpha" in data.effects.columns else data.effects),
    ]
    for title, table in data.extra_tables:
        lines += ["", f"## {title}", "", _md_table(table)]
    return "\n".join(lines) + "\n"


def write_report(conn: psycopg.Connection, experiment_id: str, out_dir: Path) -> dict[str, Path]:
    """Write ``<id>.html``, ``<id>.md`` and ``<id>/*.png`` under ``out_dir``."""
    import liftlab.reports.sections  # noqa: F401 - registers the sections fed by other result tables

    data = collect(conn, experiment_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure_dir = out_dir / experiment_id
    figure_dir.mkdir(exist_ok=True)
    for fig in data.figures:
        (figure_dir / f"{fig.name}.png").write_bytes(fig.png)
    html_path = out_dir / f"{experiment_id}.html"
    md_path = out_dir / f"{experiment_id}.md"
    html_path.write_text(to_html(data), encoding="utf-8")
    md_path.write_text(to_markdown(data, experiment_id), encoding="utf-8")
    return {"html": html_path, "markdown": md_path, **{f.name: figure_dir / f"{f.name}.png" for f in data.figures}}
