"""Decision layer: one decision per experiment with its reasons and rule trace."""


import json

import dagster as dg
import polars as pl

from liftlab.db import read_frame, replace_slice
from liftlab.decide import decide, targeting_recommendation
from liftlab.defs.causal import causal_estimates
from liftlab.defs.common import DAILY_FRESHNESS, OWNER, io_retry
from liftlab.defs.effects import effects, power
from liftlab.defs.gates import aa_calibration, srm_gate
from liftlab.defs.resources import PostgresResource
from liftlab.defs.uplift import targeting_policy
from liftlab.gates.store import gate_results
from liftlab.specs import load_specs

#: Everything ``decide_all`` reads, so the lineage shows every input of a decision:
#: gates.check_results (the trust gates, and the A/A calibration's informational row),
#: results.effects, results.power, results.causal_effects, and results.targeting_policy joined
#: with results.uplift_models (the best learner's policies).
DECISION_INPUTS = [srm_gate, aa_calibration, effects, power, causal_estimates, ["results", "uplift_models"],
                   targeting_policy]


def decide_all(conn, run_id: str | None) -> pl.DataFrame:
    """Decide every experiment in experiments/ from the current gate and effect tables."""
    gates = gate_results(conn)
    effect_rows = read_frame(conn, "select * from results.effects")
    policy_rows = read_frame(
        conn,
        "select p.experiment_id, p.arm, p.metric, p.learner, p.policy, p.k_pct, p.profit, p.profit_vs_all, "
        "p.vs_all_ci_low, p.vs_all_ci_high from results.targeting_policy p join results.uplift_models m "
        "on m.experiment_id = p.experiment_id and m.arm = p.arm and m.metric = p.metric and m.learner = p.learner "
        "where m.is_best and p.policy in ('break_even', 'best_k', 'treat_all')",
    )
    power_rows = read_frame(conn, "select experiment_id, metric, variant, power_at_mde, days_needed from results.power")
    causal_rows = read_frame(
        conn, "select study, metric, estimand, estimator, estimate, ci_low, ci_high, level, baseline, rel_effect, "
        "rel_ci_low, rel_ci_high, diagnostics::text as diagnostics from results.causal_effects"
    )
    rows = []
    for item in load_specs():
        spec = item.spec
        spec_gates = gates.filter(pl.col("experiment_id") == spec.id).to_dicts() if not gates.is_empty() else []
        spec_effects = effect_rows.filter(pl.col("experiment_id") == spec.id).to_dicts() if not effect_rows.is_empty() else []
        spec_causal = causal_rows.filter(pl.col("study") == spec.id).to_dicts() if not causal_rows.is_empty() else []
        spec_power = power_rows.filter(pl.col("experiment_id") == spec.id).to_dicts() if not power_rows.is_empty() else []
        decision = decide(spec, spec_gates, spec_effects, spec_causal, spec_power)
        if not policy_rows.is_empty():
            outcomes = spec.uplift.outcomes if spec.uplift else []
            primary_outcome = spec.primary_metric if spec.primary_metric in outcomes or not outcomes else outcomes[0]
            policies = policy_rows.filter(
                (pl.col("experiment_id") == spec.id) & (pl.col("metric") == primary_outcome)
            ).to_dicts()
            decision = targeting_recommendation(decision, policies)
        rows.append(
            {
                "experiment_id": decision.experiment_id,
                "decision": decision.decision,
                "variant": decision.variant,
                "reasons": json.dumps(decision.reasons, ensure_ascii=False),
                "primary_metric": decision.primary_metric,
                "rule_trace": json.dumps(decision.rule_trace, default=str, ensure_ascii=False),
                "run_id": run_id,
            }
        )
    frame = pl.DataFrame(rows, schema={
        "experiment_id": pl.Utf8, "decision": pl.Utf8, "variant": pl.Utf8, "reasons": pl.Utf8,
        "primary_metric": pl.Utf8, "rule_trace": pl.Utf8, "run_id": pl.Utf8,
    })
    with conn.transaction():
        replace_slice(conn, "results.decisions", frame)
        # History keeps one row per experiment per run; rerunning the same run replaces its rows.
        if run_id:
            replace_slice(conn, "results.decision_history", frame, where={"run_id": run_id})
    return frame


@dg.asset(
    retry_policy=io_retry,
    key=["results", "decisions"],
    deps=DECISION_INPUTS,
    freshness_policy=DAILY_FRESHNESS,
    group_name="decisions",
    kinds={"python", "postgres"},
    owners=[OWNER],
    description="SHIP / ROLLBACK / HOLD / HALTED per experiment with reasons and the rule trace "
    "(gates first, then the primary metric after Holm correction, then guardrails as vetoes).",
)
def decisions(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    with postgres.connect() as conn:
        frame = decide_all(conn, context.run_id)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "decisions": dg.MetadataValue.md(decisions_markdown(frame)),
            **{f"decision/{r['experiment_id']}": r["decision"] for r in frame.to_dicts()},
        }
    )


def decisions_markdown(frame: pl.DataFrame) -> str:
    """The decisions as people read them: a summary table, then each experiment's reasons as bullets."""
    if frame.is_empty():
        return "_(no experiments)_"
    rows = frame.to_dicts()
    lines = ["| experiment | decision | variant | primary metric |", "|---|---|---|---|"]
    lines += [f"| {r['experiment_id']} | **{r['decision']}** | {r['variant'] or '–'} | {r['primary_metric']} |" for r in rows]
    for r in rows:
        reasons = json.loads(r["reasons"]) if isinstance(r["reasons"], str) else list(r["reasons"] or [])
        variant = f" · {r['variant']}" if r["variant"] else ""
        lines += ["", f"#### {r['experiment_id']}: {r['decision']}{variant}", ""]
        lines += [f"- {' '.join(str(reason).split())}" for reason in reasons] or ["- _(no reasons recorded)_"]
    return "\n".join(lines)
