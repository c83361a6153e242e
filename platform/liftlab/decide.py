"""Decision rules: from gate results and effect estimates to SHIP / ROLLBACK / HOLD / HALTED.

The rules, in order (each leaves a line in the rule trace):

1. **Gates** — any gate with status FAIL halts the experiment: ``HALTED`` with the gate's
   reason. Nothing else is considered.
2. **Design** — a non-randomized design (observational study, staggered rollout) is never
   decided on a difference in means. It is decided on its preferred causal estimate from
   ``results.causal_effects`` (cross-fitted AIPW for an opt-in, the imputation DiD estimator
   for a staggered rollout), whose interval is at the spec's level 1 − α: ``SHIP`` when it lies
   in the good direction and every guardrail, estimated with the same estimator, is
   non-inferior (rule 4), ``ROLLBACK`` when it lies in the harmful one or a guardrail is
   breached, ``HOLD`` otherwise or while no causal estimate exists. Its reasons say how robust
   the estimate is (omitted-variable bound and placebo for an observational design, trends
   and placebo adoption for a rollout).
3. **Primary metric** — per non-baseline arm, on the best available estimate (CUPED when the
   metric has a pre-period covariate, else Welch / the delta method for ratios), under the
   spec's inference policy (:func:`inference_policy`):

   * ``sequential`` (default for sources with daily looks): at every look, before and after
     ``end_date``, an effect is significant when its always-valid confidence sequence excludes
     0, each arm's sequence at ``α/m`` for ``m`` arms (``cs_*_adj``, Bonferroni), so the chance
     that any arm is ever wrongly declared, over all looks, stays ≤ α. Nothing conclusive
     before ``end_date`` → ``KEEP RUNNING``;
   * ``fixed_horizon``: nothing is decided before ``end_date`` (``KEEP RUNNING``); from then on
     the effect is significant when its Holm-adjusted p value (across arms) is below α.

   A *win* moves in the metric's good direction and, when the spec sets
   ``practical_threshold``, by at least that relative amount.
4. **Guardrails** — for each winning arm every guardrail must be non-inferior: the bound of
   the relative effect on the harmful side must stay within the tolerance (Schuirmann-style
   one-sided non-inferiority). The interval is the guardrail's own family's (Bonferroni over
   the arms) and of the same policy: its always-valid sequence under ``sequential``, its
   fixed-horizon CI otherwise. A guardrail vetoes: it is never outvoted by the primary metric.
5. ``SHIP`` the winning arm with the largest relative primary effect whose guardrails all
   hold; ``HOLD`` when a winner is vetoed by an inconclusive guardrail; ``ROLLBACK`` when a
   guardrail is significantly harmed beyond its tolerance, or when an arm significantly harms
   the primary metric and none wins; ``KEEP RUNNING`` when nothing is significant but the
   experiment has not reached the power its spec asks for at its MDE (``results.power``);
   otherwise ``HOLD`` (no significant effect at adequate power).
"""

from __future__ import annotations

import datetime as dt
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


def guardrail_status(row: Mapping, direction: str, tolerance: float, policy: str = "fixed_horizon",
                     alpha: float | None = None) -> tuple[str, str]:
    """PASS (non-inferior), BREACH (significantly worse beyond tolerance) or INCONCLUSIVE, on
    the relative interval the policy reads (:func:`interval`)."""
    low, high, label = interval(row, policy, relative=True, alpha=alpha)
    if not (_finite(low) and _finite(high)):
        return "INCONCLUSIVE", f"{row['metric']}: no relative {label}"
    harmful_bound, best_bound = (low, high) if direction == "higher_is_better" else (-high, -low)
    text = f"{row['metric']} {_fmt_pct(row.get('rel_effect'))} ({label} {_fmt_pct(low)} to {_fmt_pct(high)}, tolerance {tolerance:.0%})"
    if harmful_bound >= -tolerance:
        return "PASS", f"{text} is within its non-inferiority margin"
    if best_bound < -tolerance:
        return "BREACH", f"{text} is significantly worse than the tolerance allows"
    return "INCONCLUSIVE", f"{text} cannot rule out harm beyond the tolerance"


def _pct_level(level: float) -> str:
    return f"{level * 100:.4g} %"


def interval(row: Mapping, policy: str, relative: bool = False, alpha: float | None = None) -> tuple[float, float, str]:
    """(low, high, label) of the interval a policy decides on, with its level in the label.

    ``sequential``: the always-valid confidence sequence at the family's adjusted level
    (``cs_*_adj``); ``fixed_horizon``: the multiplicity-adjusted CI (``*_ci_*_adj``). Rows
    without adjusted columns (a causal estimate, a hand-made row) give the unadjusted interval
    at ``1 − alpha`` (the row's ``level`` when it has one)."""
    sequential = policy == "sequential"
    stem = ("rel_cs" if relative else "cs") if sequential else ("rel_ci" if relative else "abs_ci")
    kind = "always-valid CS" if sequential else "CI"
    low, high = row.get(f"{stem}_low_adj"), row.get(f"{stem}_high_adj")
    if _finite(low) and _finite(high) and _finite(row.get("alpha_adj")):
        return float(low), float(high), f"{_pct_level(1 - float(row['alpha_adj']))} {kind}"
    low, high = row.get(f"{stem}_low"), row.get(f"{stem}_high")
    level = row.get("level")
    level = float(level) if _finite(level) else (1 - alpha if alpha is not None else 0.95)
    return (float(low) if _finite(low) else float("nan"), float(high) if _finite(high) else float("nan"),
            f"{_pct_level(level)} {kind}")


def inference_policy(spec: ExperimentSpec) -> str:
    """The spec's ``inference``, else sequential for a source with exposure times (daily looks)
    and fixed_horizon for one without (a single look at the data)."""
    if spec.inference is not None:
        return spec.inference
    from liftlab.sources import adapter

    return "sequential" if adapter(spec).timestamped else "fixed_horizon"


#: The causal estimate a non-randomized design is decided on, in order of preference.
PREFERRED_CAUSAL = {
    "observational": [("aipw_logistic_gbm", "ATE"), ("aipw_logistic_linear", "ATE"), ("ipw_hajek_logistic", "ATE")],
    "staggered_rollout": [("imputation_did", "ATT"), ("synthetic_control", "ATT")],
}


def _diagnostics(row: Mapping) -> dict:
    import json

    d = row.get("diagnostics") or {}
    return json.loads(d) if isinstance(d, str) else dict(d)


def decision_estimate(design: str, metric: str, causal: Sequence[Mapping]) -> Mapping | None:
    """The causal row a design is decided on for ``metric`` (first preferred estimator present)."""
    from liftlab.causal.result import metric_label

    label = metric_label(design, metric)
    rows = [r for r in causal if r["metric"] == label]
    for estimator, estimand in PREFERRED_CAUSAL.get(design, []):
        chosen = next((r for r in rows if r["estimator"] == estimator and r["estimand"] == estimand), None)
        if chosen is not None:
            return chosen
    return None


def _level(row: Mapping, spec: ExperimentSpec) -> str:
    level = row.get("level")
    level = 1 - spec.alpha if not _finite(level) else float(level)
    return f"{level * 100:g} %"


def _with_relative(row: Mapping) -> dict:
    from liftlab.causal.result import relative

    out = dict(row)
    if not _finite(out.get("rel_ci_low")) and _finite(out.get("baseline")):
        out["rel_effect"], out["rel_ci_low"], out["rel_ci_high"] = relative(
            out["estimate"], out["ci_low"], out["ci_high"], out["baseline"])
    return out


def robustness_text(design: str, row: Mapping, causal: Sequence[Mapping]) -> str | None:
    """How robust a causal estimate is (omitted-variable bound, trends, placebo), one sentence."""
    from liftlab.causal import sensitivity

    diag = _diagnostics(row)
    if design == "observational":
        sens = diag.get("sensitivity")
        if not sens:
            return None
        text = sensitivity.describe(sens)
        placebo = next((r for r in causal if r["estimator"] == "placebo_permuted_treatment"
                        and r["metric"] == row["metric"]), None)
        if placebo is not None and _finite(placebo.get("ci_low")):
            covers = placebo["ci_low"] <= 0 <= placebo["ci_high"]
            text += (f"; placebo treatment (labels permuted): {placebo['estimate']:+.4g} "
                     f"({placebo['ci_low']:+.4g} to {placebo['ci_high']:+.4g}) {'covers' if covers else 'EXCLUDES'} 0")
        return text
    if "sensitivity" in diag or "placebo_adoption" in diag:
        return sensitivity.describe_trend(diag.get("sensitivity") or {}, diag.get("placebo_adoption"),
                                          diag.get("pretrend_p"))
    return None


def _decide_causal(spec: ExperimentSpec, causal: Sequence[Mapping], trace: list[dict]) -> Decision:
    """Rule 2: the design's preferred causal estimate of the primary metric decides, at the
    spec's α; guardrails, each estimated with the same estimator, veto a SHIP as in rule 4."""
    primary = spec.primary_metric
    chosen = decision_estimate(spec.design, primary, causal)
    design = spec.design.replace("_", " ")
    if chosen is None:
        reason = f"{design} design: a difference in means is not a causal effect; no causal estimate of {primary} yet"
        trace.append({"rule": "design", "passed": False, "detail": reason})
        return Decision(spec.id, "HOLD", None, [reason], primary, trace)
    low, high, est = chosen["ci_low"], chosen["ci_high"], chosen["estimate"]
    sign = 1.0 if spec.direction(primary) == "higher_is_better" else -1.0
    naive = next((r for r in causal if r["metric"] == chosen["metric"] and r["estimator"] == "naive_difference"
                  and r["estimand"] == chosen["estimand"]), None)
    text = (
        f"{chosen['estimator']} {chosen['estimand']} of {chosen['metric']}: {est:+.4g} "
        f"({_level(chosen, spec)} CI {low:+.4g} to {high:+.4g})"
        + (f"; the naive difference {naive['estimate']:+.4g} is confounded" if naive else "")
    )
    trace.append({"rule": "causal", "estimator": chosen["estimator"], "estimand": chosen["estimand"],
                  "estimate": est, "ci_low": low, "ci_high": high, "level": chosen.get("level")})
    robust = robustness_text(spec.design, chosen, causal)
    extra = [robust] if robust else []
    if robust:
        trace.append({"rule": "sensitivity", "detail": robust})
    variant = spec.treated_variant
    if not (_finite(low) and _finite(high)):
        return Decision(spec.id, "HOLD", None, [f"{design} design: {text} has no interval", *extra], primary, trace)
    if sign * low < 0 and sign * high < 0:
        return Decision(spec.id, "ROLLBACK", None, [f"{design} design, causal estimate shows harm: {text}", *extra],
                        primary, trace)
    if not (sign * low > 0 and sign * high > 0):
        return Decision(spec.id, "HOLD", None, [f"{design} design, causal estimate inconclusive: {text}", *extra],
                        primary, trace)
    vetoes, breaches = [], []
    for guardrail in spec.guardrails:
        row = next((r for r in causal if r["metric"] == _label(spec, guardrail.metric)
                    and r["estimator"] == chosen["estimator"] and r["estimand"] == chosen["estimand"]), None)
        status, detail = ("INCONCLUSIVE", f"{guardrail.metric}: no {chosen['estimator']} estimate") if row is None else \
            guardrail_status(_with_relative(row), spec.guardrail_direction(guardrail), guardrail.tolerance,
                             alpha=spec.alpha)
        trace.append({"rule": "guardrail", "variant": variant, "metric": guardrail.metric, "status": status,
                      "estimator": chosen["estimator"], "detail": detail})
        if status == "BREACH":
            breaches.append(f"guardrail {detail}")
        elif status != "PASS":
            vetoes.append(f"guardrail {detail}")
    if breaches:
        return Decision(spec.id, "ROLLBACK", None, [*breaches, f"{design} design: {text}", *extra], primary, trace)
    if vetoes:
        return Decision(spec.id, "HOLD", None, [*vetoes, f"{design} design: {text}", *extra], primary, trace)
    guard = ["all guardrails within their non-inferiority margins (same estimator)"] if spec.guardrails else []
    return Decision(spec.id, "SHIP", variant, [f"{design} design, decided on its causal estimate: {text}", *guard, *extra],
                    primary, trace)


def _label(spec: ExperimentSpec, metric: str) -> str:
    from liftlab.causal.result import metric_label

    return metric_label(spec.design, metric)


#: Which estimate of a (metric, arm) the rules use, in order of preference.
METHOD_PREFERENCE = ("cuped", "welch_t", "delta_method", "quantile", "naive_welch_t")


def preferred_method(methods) -> str | None:
    """The method the rules read among those available (CUPED first), or None."""
    available = set(methods)
    return next((m for m in METHOD_PREFERENCE if m in available), None)


def preferred_estimates(effects: Sequence[Mapping]) -> dict[tuple[str, str], Mapping]:
    """(metric, variant) → the row of the most precise valid method (CUPED first)."""
    rank = {m: i for i, m in enumerate(METHOD_PREFERENCE)}
    chosen: dict[tuple[str, str], Mapping] = {}
    for row in effects:
        key = (row["metric"], row["variant"])
        if key not in chosen or rank.get(row.get("method"), 99) < rank.get(chosen[key].get("method"), 99):
            chosen[key] = row
    return chosen


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def decide(
    spec: ExperimentSpec,
    gates: Sequence[Mapping],
    effects: Sequence[Mapping],
    causal: Sequence[Mapping] = (),
    power: Sequence[Mapping] = (),
    today: dt.date | None = None,
) -> Decision:
    """Apply the rules above to one experiment's gate results, effects, causal estimates and power."""
    trace: list[dict] = []
    primary = spec.primary_metric

    failed = [g for g in gates if g.get("status") == "FAIL"]
    trace.append({"rule": "gates", "passed": not failed, "detail": [f"{g['check']}: {g['status']}" for g in gates]})
    if failed:
        reasons = [f"gate {g['check']} failed: {_gate_reason(g)}".strip() for g in failed]
        return Decision(spec.id, "HALTED", None, reasons + warnings_of(gates), primary, trace)
    if not gates:
        trace.append({"rule": "gates", "passed": False, "detail": "no gate results yet"})
        return Decision(spec.id, "HOLD", None, ["gates have not run yet"], primary, trace)

    if spec.design != "randomized":
        decision = _decide_causal(spec, causal, trace)
    else:
        trace.append({"rule": "design", "passed": True, "detail": "randomized"})
        decision = _decide_randomized(spec, effects, power, today, trace)
    warned = warnings_of(gates)
    if not warned:
        return decision
    return Decision(decision.experiment_id, decision.decision, decision.variant, [*decision.reasons, *warned],
                    decision.primary_metric, decision.rule_trace)


def _gate_reason(gate: Mapping) -> str:
    """The gate's reason: its own ``reason``, else the one in ``details`` (a dict, or JSON text as
    gates.check_results returns it)."""
    import json

    details = gate.get("details") or {}
    if isinstance(details, str):
        details = json.loads(details)
    return gate.get("reason") or (details.get("reason", "") if isinstance(details, Mapping) else "")


def warnings_of(gates: Sequence[Mapping]) -> list[str]:
    """One reason per gate that warned: a WARN never halts, but a reader must see it."""
    return [f"warning — gate {g['check']}: {_gate_reason(g)}".rstrip(": ") for g in gates if g.get("status") == "WARN"]


def _significance_text(row: Mapping, spec: ExperimentSpec, policy: str, arms: int, days: int | None) -> str:
    """Which rule made the primary effect significant, worded with the level it holds at."""
    if policy == "sequential":
        low, high, label = interval(row, policy, alpha=spec.alpha)
        after = f" after {days} day{'s' if days != 1 else ''}" if days is not None else ""
        family = f"; {_pct_level(1 - spec.alpha)} family-wise over {arms} arms" if arms > 1 else ""
        return f"the {label.replace('CS', 'confidence sequence')} excludes 0{after} ({low:+.4g} to {high:+.4g}{family})"
    low, high, label = interval(row, policy, relative=True, alpha=spec.alpha)
    ci = f", {label} {_fmt_pct(low)} to {_fmt_pct(high)}" if _finite(low) and _finite(high) else ""
    holm = "Holm-adjusted " if arms > 1 else ""
    return f"{holm}p={_p(row):.2g} < α={spec.alpha:g} at the fixed horizon{ci}"


def _arm_summary(arm: str, row: Mapping, spec: ExperimentSpec, policy: str) -> str:
    """One arm's primary effect with the evidence the policy reads (sequence or adjusted p)."""
    if policy == "sequential":
        low, high, label = interval(row, policy, relative=True, alpha=spec.alpha)
        return f"{arm} {_fmt_pct(row.get('rel_effect'))} ({label} {_fmt_pct(low)} to {_fmt_pct(high)})"
    return f"{arm} {_fmt_pct(row.get('rel_effect'))} (adjusted p={_p(row):.2g})"


def significant_by_policy(row: Mapping, spec: ExperimentSpec, policy: str) -> bool:
    """The primary effect is significant under the policy (sequence excludes 0 / adjusted p < α)."""
    if policy == "sequential":
        low, high, _ = interval(row, policy, alpha=spec.alpha)
        return (_finite(low) and low > 0) or (_finite(high) and high < 0)
    return _p(row) < spec.alpha


def _decide_randomized(spec: ExperimentSpec, effects: Sequence[Mapping], power: Sequence[Mapping],
                       today: dt.date | None, trace: list[dict]) -> Decision:
    """Rules 3–5 for a randomized design."""
    primary = spec.primary_metric

    by_metric = preferred_estimates(effects)
    today = today or dt.date.today()
    ended = spec.end_date is None or today > spec.end_date
    policy = inference_policy(spec)
    # Days of exposures the looks hold: up to yesterday (a look reads complete days), at most the
    # experiment's own days.
    last_day = today - dt.timedelta(days=1) if spec.end_date is None else min(today - dt.timedelta(days=1), spec.end_date)
    days = (last_day - spec.start_date).days + 1 if spec.start_date is not None and last_day >= spec.start_date else None
    arms = [v.name for v in spec.variants if v.name != spec.baseline]
    trace.append({"rule": "inference", "policy": policy, "ended": ended, "days": days})
    missing = [a for a in arms if (primary, a) not in by_metric]
    if missing:
        reason = f"no estimate of {primary} for {missing}"
        trace.append({"rule": "primary", "passed": False, "detail": reason})
        return Decision(spec.id, "HOLD", None, [reason], primary, trace)
    if policy == "fixed_horizon" and not ended:
        left = (spec.end_date - today).days + 1
        reason = (f"fixed-horizon inference: {primary} is tested once, after {spec.end_date} "
                  f"({left} day{'s' if left != 1 else ''} left); no earlier look counts")
        trace.append({"rule": "primary", "passed": False, "detail": reason})
        return Decision(spec.id, "KEEP RUNNING", None, [reason], primary, trace)

    sign = 1.0 if spec.direction(primary) == "higher_is_better" else -1.0
    winners, losers = [], []
    for arm in arms:
        row = by_metric[(primary, arm)]
        significant = significant_by_policy(row, spec, policy)
        good = sign * float(row["abs_effect"]) > 0
        practical = spec.practical_threshold is None or sign * float(row.get("rel_effect") or 0.0) >= spec.practical_threshold
        trace.append({
            "rule": "primary", "variant": arm, "metric": primary, "method": row.get("method"), "p_value_adj": _p(row),
            "rel_effect": row.get("rel_effect"), "significant": significant, "good_direction": good,
            "practical": practical, "policy": policy,
        })
        if significant and good and practical:
            winners.append(arm)
        elif significant and not good:
            losers.append(arm)

    vetoes: list[str] = []
    breaches: list[str] = []
    shippable: list[str] = []
    vetoed: dict[str, list[str]] = {}  # winning arm → why a guardrail stopped it
    for arm in winners:
        for guardrail in spec.guardrails:
            row = by_metric.get((guardrail.metric, arm))
            status, text = ("INCONCLUSIVE", f"{guardrail.metric}: no estimate") if row is None else guardrail_status(
                row, spec.guardrail_direction(guardrail), guardrail.tolerance, policy, spec.alpha
            )
            trace.append({"rule": "guardrail", "variant": arm, "metric": guardrail.metric, "status": status,
                          "policy": policy, "detail": text})
            if status != "PASS":
                vetoed.setdefault(arm, []).append(f"guardrail {text}")
                (breaches if status == "BREACH" else vetoes).append(f"{arm}: guardrail {text}")
        if arm not in vetoed:
            shippable.append(arm)

    if shippable:
        best = max(shippable, key=lambda a: sign * float(by_metric[(primary, a)].get("rel_effect") or 0.0))
        row = by_metric[(primary, best)]
        reasons = [
            f"{best} improves {primary} by {_fmt_pct(row.get('rel_effect'))} "
            f"(abs {float(row['abs_effect']):+.4g}; {_significance_text(row, spec, policy, len(arms), days)})",
            "all guardrails within their non-inferiority margins" if spec.guardrails else "no guardrails declared",
        ]
        # Arms that also won on the primary metric but were stopped by a guardrail: the reader
        # must not have to open the rule trace to see why the larger lift was not shipped.
        for arm, why in vetoed.items():
            reasons.append(f"{arm} also improves {primary} ({_fmt_pct(by_metric[(primary, arm)].get('rel_effect'))}) "
                           f"but is not shipped: {'; '.join(why)}")
        return Decision(spec.id, "SHIP", best, reasons, primary, trace)
    if breaches:
        return Decision(spec.id, "ROLLBACK", None, breaches, primary, trace)
    if vetoes:
        return Decision(spec.id, "HOLD", None, vetoes, primary, trace)
    if losers:
        reasons = [
            f"{arm} harms {primary}: {_fmt_pct(by_metric[(primary, arm)].get('rel_effect'))} "
            f"({_significance_text(by_metric[(primary, arm)], spec, policy, len(arms), days)})"
            for arm in losers
        ]
        return Decision(spec.id, "ROLLBACK", None, reasons, primary, trace)
    summary = ", ".join(_arm_summary(arm, by_metric[(primary, arm)], spec, policy) for arm in arms)
    if not ended:
        return Decision(spec.id, "KEEP RUNNING", None, [
            f"no effect on {primary} is conclusive yet under always-valid inference ({summary}); "
            f"the experiment runs until {spec.end_date}"], primary, trace)
    underpowered = [
        r for r in power
        if r.get("metric") == primary and _finite(r.get("power_at_mde")) and r["power_at_mde"] < spec.power
    ]
    if underpowered:
        worst = min(underpowered, key=lambda r: r["power_at_mde"])
        days_needed = worst.get("days_needed")
        more = f"; about {math.ceil(days_needed)} more days at current traffic" if _finite(days_needed) and days_needed > 0 else ""
        return Decision(spec.id, "KEEP RUNNING", None, [
            f"no significant effect on {primary} ({summary}), but power at the MDE is only "
            f"{worst['power_at_mde']:.0%} < {spec.power:.0%}{more}"], primary, trace)
    reasons = [f"no significant effect on {primary}: {summary}"]
    return Decision(spec.id, "HOLD", None, reasons, primary, trace)


def targeting_recommendation(decision: Decision, policies: Sequence[Mapping]) -> Decision:
    """Add whom to treat to a SHIP decision when an uplift model's policy beats the blanket rollout.

    ``policies`` are the ``results.targeting_policy`` rows of the experiment's best learner. The
    rule fixed in advance (``break_even``: treat a unit when value × predicted uplift exceeds the
    cost) is preferred over the best k chosen on the same out-of-fold data; it is recommended only
    when its profit beats treating everyone with the bootstrap CI of the difference above 0.
    """
    if decision.decision != "SHIP" or not policies:
        return decision
    rows = [p for p in policies if p.get("arm") == decision.variant] or list(policies)
    for name in ("break_even", "best_k"):
        row = next((p for p in rows if p.get("policy") == name), None)
        if row is None or not _finite(row.get("vs_all_ci_low")) or row["vs_all_ci_low"] <= 0 or row["k_pct"] <= 0:
            continue  # no better than the blanket rollout, or "treat no one" (that is not a SHIP)
        everyone = next((p for p in rows if p.get("policy") == "treat_all"), None)
        reason = (
            f"target, don't blanket: treat the {row['k_pct']:.0f} % with the highest predicted uplift "
            f"({row['learner']}, {name.replace('_', '-')} rule) — profit {row['profit']:,.0f} vs "
            f"{everyone['profit']:,.0f} for everyone" if everyone else ""
        ) + f", difference {row['profit_vs_all']:+,.0f} (95 % CI {row['vs_all_ci_low']:+,.0f} to {row['vs_all_ci_high']:+,.0f})"
        trace = [*decision.rule_trace, {"rule": "targeting", "policy": name, "k_pct": row["k_pct"],
                                        "profit_vs_all": row["profit_vs_all"], "ci_low": row["vs_all_ci_low"]}]
        return Decision(decision.experiment_id, decision.decision, decision.variant,
                        [*decision.reasons, reason], decision.primary_metric, trace)
    return decision
