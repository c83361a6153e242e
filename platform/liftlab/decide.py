"""Decision rules: from gate results and effect estimates to SHIP / ROLLBACK / HOLD / HALTED.

The rules, in order (each leaves a line in the rule trace):

1. **Gates** — any gate with status FAIL halts the experiment: ``HALTED`` with the gate's
   reason. Nothing else is considered.
2. **Design** — a non-randomized design (observational study, staggered rollout) is never
   decided on a difference in means. It is decided on its preferred causal estimate from
   ``results.causal_effects`` (cross-fitted AIPW for an opt-in, the imputation DiD estimator
   for a staggered rollout): ``SHIP`` when the CI lies in the good direction, ``ROLLBACK``
   when it lies in the harmful one, ``HOLD`` otherwise or while no causal estimate exists.
3. **Primary metric** — per non-baseline arm, the effect is significant when its
   multiplicity-adjusted p-value (Holm across arms) is below α, and it is a *win* when it moves
   in the metric's good direction, a *loss* otherwise.
4. **Guardrails** — for each winning arm every guardrail must be non-inferior: the confidence
   bound of the relative effect on the harmful side must stay within the tolerance
   (Schuirmann-style one-sided non-inferiority at the CI's level). A guardrail vetoes: it is
   never outvoted by the primary metric.
5. ``SHIP`` the winning arm with the largest relative primary effect whose guardrails all
   hold; ``HOLD`` when a winner is vetoed by an inconclusive guardrail; ``ROLLBACK`` when a
   guardrail is significantly harmed beyond its tolerance, or when an arm significantly harms
   the primary metric and none wins; otherwise ``HOLD`` (no significant effect).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from liftlab.specs import ExperimentSpec


@dataclass(frozen=True)
class Decision:
    experiment_id: str
    decision: str
    variant: str | None
    reasons: list[str]
    primary_metric: str
    rule_trace: list[dict] = field(default_factory=list)


def _fmt_pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.2%}"


def _p(row: Mapping) -> float:
    p = row.get("p_value_adj")
    if p is None or (isinstance(p, float) and math.isnan(p)):
        p = row.get("p_value")
    return float("nan") if p is None else float(p)


def guardrail_status(row: Mapping, direction: str, tolerance: float) -> tuple[str, str]:
    """PASS (non-inferior), BREACH (significantly worse beyond tolerance) or INCONCLUSIVE."""
    low, high = row.get("rel_ci_low"), row.get("rel_ci_high")
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "INCONCLUSIVE", f"{row['metric']}: no relative confidence interval"
    harmful_bound, best_bound = (low, high) if direction == "higher_is_better" else (-high, -low)
    text = f"{row['metric']} {_fmt_pct(row.get('rel_effect'))} (CI {_fmt_pct(low)} to {_fmt_pct(high)}, tolerance {tolerance:.0%})"
    if harmful_bound >= -tolerance:
        return "PASS", f"{text} is within its non-inferiority margin"
    if best_bound < -tolerance:
        return "BREACH", f"{text} is significantly worse than the tolerance allows"
    return "INCONCLUSIVE", f"{text} cannot rule out harm beyond the tolerance"


#: The causal estimate a non-randomized design is decided on, in order of preference.
PREFERRED_CAUSAL = {
    "observational": [("aipw_logistic_gbm", "ATE"), ("aipw_logistic_linear", "ATE"), ("ipw_hajek_logistic", "ATE")],
    "staggered_rollout": [("imputation_did", "ATT"), ("synthetic_control", "ATT")],
}


def _decide_causal(spec: ExperimentSpec, causal: Sequence[Mapping], trace: list[dict]) -> Decision:
    primary = spec.primary_metric
    rows = [r for r in causal if str(r["metric"]).startswith(primary)]
    chosen = None
    for estimator, estimand in PREFERRED_CAUSAL.get(spec.design, []):
        chosen = next((r for r in rows if r["estimator"] == estimator and r["estimand"] == estimand), None)
        if chosen is not None:
            break
    design = spec.design.replace("_", " ")
    if chosen is None:
        reason = f"{design} design: a difference in means is not a causal effect; no causal estimate of {primary} yet"
        trace.append({"rule": "design", "passed": False, "detail": reason})
        return Decision(spec.id, "HOLD", None, [reason], primary, trace)
    low, high, est = chosen["ci_low"], chosen["ci_high"], chosen["estimate"]
    sign = 1.0 if spec.primary_direction == "higher_is_better" else -1.0
    naive = next((r for r in rows if r["estimator"] == "naive_difference" and r["estimand"] == chosen["estimand"]), None)
    text = (
        f"{chosen['estimator']} {chosen['estimand']} of {chosen['metric']}: {est:+.4g} (95 % CI {low:+.4g} to {high:+.4g})"
        + (f"; the naive difference {naive['estimate']:+.4g} is confounded" if naive else "")
    )
    trace.append({"rule": "causal", "estimator": chosen["estimator"], "estimand": chosen["estimand"],
                  "estimate": est, "ci_low": low, "ci_high": high})
    variant = next(v.name for v in spec.variants if v.name != spec.baseline)
    if sign * low > 0 and sign * high > 0:
        return Decision(spec.id, "SHIP", variant, [f"{design} design, decided on its causal estimate: {text}"], primary, trace)
    if sign * low < 0 and sign * high < 0:
        return Decision(spec.id, "ROLLBACK", None, [f"{design} design, causal estimate shows harm: {text}"], primary, trace)
    return Decision(spec.id, "HOLD", None, [f"{design} design, causal estimate inconclusive: {text}"], primary, trace)


def decide(
    spec: ExperimentSpec, gates: Sequence[Mapping], effects: Sequence[Mapping], causal: Sequence[Mapping] = ()
) -> Decision:
    """Apply the rules above to one experiment's gate results, effect rows and causal estimates."""
    trace: list[dict] = []
    primary = spec.primary_metric

    failed = [g for g in gates if g.get("status") == "FAIL"]
    trace.append({"rule": "gates", "passed": not failed, "detail": [f"{g['check']}: {g['status']}" for g in gates]})
    if failed:
        reasons = [f"gate {g['check']} failed: {g.get('reason') or g.get('details', {}).get('reason', '')}".strip() for g in failed]
        return Decision(spec.id, "HALTED", None, reasons, primary, trace)
    if not gates:
        trace.append({"rule": "gates", "passed": False, "detail": "no gate results yet"})
        return Decision(spec.id, "HOLD", None, ["gates have not run yet"], primary, trace)

    if spec.design != "randomized":
        return _decide_causal(spec, causal, trace)
    trace.append({"rule": "design", "passed": True, "detail": "randomized"})

    by_metric: dict[tuple[str, str], Mapping] = {(e["metric"], e["variant"]): e for e in effects}
    arms = [v.name for v in spec.variants if v.name != spec.baseline]
    missing = [a for a in arms if (primary, a) not in by_metric]
    if missing:
        reason = f"no estimate of {primary} for {missing}"
        trace.append({"rule": "primary", "passed": False, "detail": reason})
        return Decision(spec.id, "HOLD", None, [reason], primary, trace)

    sign = 1.0 if spec.primary_direction == "higher_is_better" else -1.0
    winners, losers = [], []
    for arm in arms:
        row = by_metric[(primary, arm)]
        p = _p(row)
        significant = p < spec.alpha
        good = sign * float(row["abs_effect"]) > 0
        trace.append({
            "rule": "primary", "variant": arm, "metric": primary, "p_value_adj": p,
            "rel_effect": row.get("rel_effect"), "significant": significant, "good_direction": good,
        })
        if significant and good:
            winners.append(arm)
        elif significant:
            losers.append(arm)

    vetoes: list[str] = []
    breaches: list[str] = []
    shippable: list[str] = []
    for arm in winners:
        arm_ok = True
        for guardrail in spec.guardrails:
            row = by_metric.get((guardrail.metric, arm))
            status, text = ("INCONCLUSIVE", f"{guardrail.metric}: no estimate") if row is None else guardrail_status(
                row, guardrail.direction, guardrail.tolerance
            )
            trace.append({"rule": "guardrail", "variant": arm, "metric": guardrail.metric, "status": status, "detail": text})
            if status != "PASS":
                arm_ok = False
                (breaches if status == "BREACH" else vetoes).append(f"{arm}: guardrail {text}")
        if arm_ok:
            shippable.append(arm)

    if shippable:
        best = max(shippable, key=lambda a: sign * float(by_metric[(primary, a)].get("rel_effect") or 0.0))
        row = by_metric[(primary, best)]
        reasons = [
            f"{best} improves {primary} by {_fmt_pct(row.get('rel_effect'))} "
            f"(abs {float(row['abs_effect']):+.4g}, adjusted p={_p(row):.2g} < α={spec.alpha})",
            "all guardrails within their non-inferiority margins" if spec.guardrails else "no guardrails declared",
        ]
        return Decision(spec.id, "SHIP", best, reasons, primary, trace)
    if breaches:
        return Decision(spec.id, "ROLLBACK", None, breaches, primary, trace)
    if vetoes:
        return Decision(spec.id, "HOLD", None, vetoes, primary, trace)
    if losers:
        reasons = [
            f"{arm} harms {primary}: {_fmt_pct(by_metric[(primary, arm)].get('rel_effect'))} "
            f"(adjusted p={_p(by_metric[(primary, arm)]):.2g})"
            for arm in losers
        ]
        return Decision(spec.id, "ROLLBACK", None, reasons, primary, trace)
    reasons = [
        f"no significant effect on {primary}: "
        + ", ".join(f"{arm} {_fmt_pct(by_metric[(primary, arm)].get('rel_effect'))} (adjusted p={_p(by_metric[(primary, arm)]):.2g})" for arm in arms)
    ]
    return Decision(spec.id, "HOLD", None, reasons, primary, trace)
