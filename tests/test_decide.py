"""Decision rules on hand-made inputs: every branch, with the reason a product manager reads."""

from __future__ import annotations

import datetime as dt

import pytest

from liftlab.decide import decide, preferred_estimates, targeting_recommendation
from liftlab.specs import ExperimentSpec

PASS = [{"check": "srm", "status": "PASS", "reason": "ok"}]
AFTER_END = dt.date(2026, 10, 15)


def spec(**changes) -> ExperimentSpec:
    base = {
        "id": "exp", "hypothesis": "h", "baseline": "control",
        "variants": [{"name": "control", "allocation": 0.5}, {"name": "treatment", "allocation": 0.5}],
        "start_date": "2026-09-01", "end_date": "2026-09-28", "primary_metric": "converted",
        "guardrails": [{"metric": "support_tickets", "direction": "lower_is_better", "tolerance": 0.05}],
        "mde": 0.05, "source": {"kind": "demo"},
    }
    return ExperimentSpec.model_validate({**base, **changes})


def effect(metric, rel, low, high, p, method="welch_t", variant="treatment", **extra):
    """A hand-made effect row whose interval is both its CI and its confidence sequence (so the
    branches below read the same under either inference policy; the policy tests set them apart)."""
    return {"metric": metric, "variant": variant, "method": method, "abs_effect": rel, "rel_effect": rel,
            "rel_ci_low": low, "rel_ci_high": high, "cs_low": low, "cs_high": high, "rel_cs_low": low,
            "rel_cs_high": high, "p_value": p, "p_value_adj": p, **extra}


WIN = effect("converted", 0.10, 0.05, 0.15, 0.001)
SAFE_GUARDRAIL = effect("support_tickets", 0.0, -0.02, 0.02, 0.9)


def test_a_clean_win_ships():
    d = decide(spec(), PASS, [WIN, SAFE_GUARDRAIL], today=AFTER_END)
    assert (d.decision, d.variant) == ("SHIP", "treatment")
    assert "improves converted" in d.reasons[0]


def test_a_failed_gate_halts_whatever_the_effects():
    gates = [{"check": "srm", "status": "FAIL", "reason": "sample ratio mismatch (p < 0.001)"}]
    d = decide(spec(), gates, [WIN, SAFE_GUARDRAIL], today=AFTER_END)
    assert d.decision == "HALTED" and "sample ratio mismatch" in d.reasons[0]


def test_guardrail_breach_turns_a_winner_into_rollback_with_the_reason():
    breach = effect("support_tickets", 0.20, 0.12, 0.28, 0.0001)
    d = decide(spec(), PASS, [WIN, breach], today=AFTER_END)
    assert d.decision == "ROLLBACK"
    assert "support_tickets" in d.reasons[0] and "significantly worse" in d.reasons[0]


def test_inconclusive_guardrail_holds_a_winner():
    unsure = effect("support_tickets", 0.03, -0.01, 0.07, 0.2)
    d = decide(spec(), PASS, [WIN, unsure], today=AFTER_END)
    assert d.decision == "HOLD" and "cannot rule out harm" in d.reasons[0]


def test_significant_harm_on_the_primary_rolls_back():
    loss = effect("converted", -0.10, -0.15, -0.05, 0.001)
    assert decide(spec(), PASS, [loss, SAFE_GUARDRAIL], today=AFTER_END).decision == "ROLLBACK"


def test_below_practical_threshold_is_not_a_win():
    small = effect("converted", 0.02, 0.01, 0.03, 0.001)
    d = decide(spec(practical_threshold=0.05), PASS, [small, SAFE_GUARDRAIL], today=AFTER_END)
    assert d.decision == "HOLD"


def test_before_the_end_only_the_confidence_sequence_counts():
    fixed_but_not_sequential = {**WIN, "cs_low": -0.01, "cs_high": 0.2}
    d = decide(spec(), PASS, [fixed_but_not_sequential, SAFE_GUARDRAIL], today=dt.date(2026, 9, 10))
    assert d.decision == "KEEP RUNNING"
    crossed = {**WIN, "cs_low": 0.01, "cs_high": 0.2}
    assert decide(spec(), PASS, [crossed, SAFE_GUARDRAIL], today=dt.date(2026, 9, 10)).decision == "SHIP"


def test_underpowered_null_keeps_running_and_says_how_long():
    null = effect("converted", 0.01, -0.05, 0.07, 0.6)
    power = [{"metric": "converted", "variant": "treatment", "power_at_mde": 0.4, "days_needed": 12.2}]
    d = decide(spec(), PASS, [null, SAFE_GUARDRAIL], power=power, today=AFTER_END)
    assert d.decision == "KEEP RUNNING" and "13 more days" in d.reasons[0]
    powered = [{**power[0], "power_at_mde": 0.95}]
    assert decide(spec(), PASS, [null, SAFE_GUARDRAIL], power=powered, today=AFTER_END).decision == "HOLD"


def test_cuped_estimate_is_preferred():
    rows = [effect("converted", 0.1, 0.0, 0.2, 0.06), effect("converted", 0.1, 0.05, 0.15, 0.001, method="cuped")]
    assert preferred_estimates(rows)[("converted", "treatment")]["method"] == "cuped"


def test_observational_design_is_decided_on_aipw_not_the_naive_difference():
    s = spec(design="observational", guardrails=[], covariates=["pre_sessions", "plan"])
    causal = [
        {"metric": "converted", "estimator": "naive_difference", "estimand": "ATE", "estimate": 0.3, "ci_low": 0.28, "ci_high": 0.32},
        {"metric": "converted", "estimator": "aipw_logistic_gbm", "estimand": "ATE", "estimate": 0.01, "ci_low": -0.01, "ci_high": 0.03},
    ]
    d = decide(s, PASS, [WIN], causal=causal, today=AFTER_END)
    assert d.decision == "HOLD" and "aipw_logistic_gbm" in d.reasons[0] and "confounded" in d.reasons[0]
    assert decide(s, PASS, [WIN], today=AFTER_END).decision == "HOLD"  # no causal estimate yet


def test_targeting_recommendation_only_when_it_beats_the_blanket_rollout():
    shipped = decide(spec(), PASS, [WIN, SAFE_GUARDRAIL], today=AFTER_END)
    policies = [
        {"arm": "treatment", "policy": "treat_all", "learner": "x_learner", "k_pct": 100.0, "profit": 2400.0,
         "profit_vs_all": 0.0, "vs_all_ci_low": 0.0, "vs_all_ci_high": 0.0},
        {"arm": "treatment", "policy": "break_even", "learner": "x_learner", "k_pct": 54.0, "profit": 12000.0,
         "profit_vs_all": 9600.0, "vs_all_ci_low": 7900.0, "vs_all_ci_high": 11600.0},
    ]
    targeted = targeting_recommendation(shipped, policies)
    assert targeted.decision == "SHIP" and "treat the 54 %" in targeted.reasons[-1]
    useless = [{**p, "vs_all_ci_low": -100.0} if p["policy"] == "break_even" else p for p in policies]
    assert targeting_recommendation(shipped, useless).reasons == shipped.reasons
    nobody = [{**p, "k_pct": 0.0} if p["policy"] == "break_even" else p for p in policies]
    assert targeting_recommendation(shipped, nobody).reasons == shipped.reasons


@pytest.mark.parametrize("status", ["WARN", "PASS"])
def test_warnings_do_not_halt(status):
    gates = [{"check": "balance", "status": status, "reason": "|SMD| > 0.1"}, *PASS]
    assert decide(spec(), gates, [WIN, SAFE_GUARDRAIL], today=AFTER_END).decision == "SHIP"


def test_a_warning_gate_is_listed_in_the_reasons():
    gates = [{"check": "srm", "status": "WARN", "reason": "possible sample ratio mismatch (p < 0.01): treatment −1.8 %"},
             {"check": "balance", "status": "PASS", "reason": "all |SMD| < 0.1"}]
    d = decide(spec(), gates, [WIN, SAFE_GUARDRAIL], today=AFTER_END)
    assert d.decision == "SHIP"
    assert d.reasons[-1] == "warning — gate srm: possible sample ratio mismatch (p < 0.01): treatment −1.8 %"
    assert not any("balance" in r for r in d.reasons)


def test_the_reasons_name_an_arm_a_guardrail_stopped():
    three = spec(variants=[{"name": "control", "allocation": 0.34}, {"name": "v1", "allocation": 0.33},
                           {"name": "v2", "allocation": 0.33}])
    rows = [effect("converted", 0.17, 0.08, 0.26, 0.001, variant="v1"), SAFE_GUARDRAIL | {"variant": "v1"},
            effect("converted", 0.23, 0.10, 0.36, 0.004, variant="v2"),
            effect("support_tickets", 0.03, -0.01, 0.07, 0.2, variant="v2")]
    d = decide(three, PASS, rows, today=AFTER_END)
    assert (d.decision, d.variant) == ("SHIP", "v1")
    vetoed = [r for r in d.reasons if r.startswith("v2")]
    assert len(vetoed) == 1 and "+23.00%" in vetoed[0] and "not shipped" in vetoed[0]
    assert "support_tickets" in vetoed[0] and "cannot rule out harm" in vetoed[0]


def test_the_reason_names_the_rule_that_made_the_effect_significant():
    fixed = decide(spec(alpha=0.1, inference="fixed_horizon"), PASS, [WIN, SAFE_GUARDRAIL], today=AFTER_END).reasons[0]
    assert "p=0.001 < α=0.1 at the fixed horizon" in fixed and "90 % CI +5.00% to +15.00%" in fixed
    crossed = {**WIN, "cs_low": 0.01, "cs_high": 0.2}
    running = decide(spec(), PASS, [crossed, SAFE_GUARDRAIL], today=dt.date(2026, 9, 10)).reasons[0]
    assert "95 % always-valid confidence sequence excludes 0 after 9 days" in running and "p=" not in running


# --- inference policies (issue #17): one policy per spec, from the first look to the last ----------

def test_the_default_policy_is_sequential_for_daily_looks_and_fixed_for_a_single_look():
    from liftlab.decide import inference_policy

    assert inference_policy(spec()) == "sequential"  # demo: exposure times, daily looks
    file_spec = spec(source={"kind": "file", "path": "x.csv", "unit_column": "user_id", "variant_column": "variant",
                             "columns": {"user_id": "string", "variant": "string", "converted": "float",
                                         "support_tickets": "float"},
                             "outcomes": ["converted", "support_tickets"]})
    assert inference_policy(file_spec) == "fixed_horizon"
    assert inference_policy(spec(inference="fixed_horizon")) == "fixed_horizon"


def test_sequential_stays_sequential_after_the_end_date():
    # Significant by the fixed-horizon p value, but the confidence sequence covers 0: under the
    # sequential policy the end date does not switch to the p value (that spent α twice).
    p_only = {**WIN, "cs_low": -0.01, "cs_high": 0.2}
    d = decide(spec(), PASS, [p_only, SAFE_GUARDRAIL], today=AFTER_END)
    assert d.decision == "HOLD" and "always-valid" in d.reasons[0]
    fixed = decide(spec(inference="fixed_horizon"), PASS, [p_only, SAFE_GUARDRAIL], today=AFTER_END)
    assert fixed.decision == "SHIP"


def test_fixed_horizon_decides_once_at_the_end_and_never_earlier():
    crossed = {**WIN, "cs_low": 0.01, "cs_high": 0.2}
    fixed = spec(inference="fixed_horizon")
    for day in (dt.date(2026, 9, 2), dt.date(2026, 9, 20), dt.date(2026, 9, 28)):
        d = decide(fixed, PASS, [crossed, SAFE_GUARDRAIL], today=day)
        assert d.decision == "KEEP RUNNING" and "tested once, after 2026-09-28" in d.reasons[0]
    assert decide(fixed, PASS, [crossed, SAFE_GUARDRAIL], today=dt.date(2026, 9, 29)).decision == "SHIP"


def test_the_sequences_split_alpha_over_the_arms():
    three = spec(variants=[{"name": "control", "allocation": 0.34}, {"name": "v1", "allocation": 0.33},
                           {"name": "v2", "allocation": 0.33}], guardrails=[])
    # Unadjusted sequence excludes 0, the sequence at α/2 does not: no win while the test runs.
    row = {**effect("converted", 0.10, 0.05, 0.15, 0.001, variant="v1"), "cs_low": 0.002, "cs_high": 0.2,
           "cs_low_adj": -0.004, "cs_high_adj": 0.21, "rel_cs_low_adj": -0.004, "rel_cs_high_adj": 0.21,
           "alpha_adj": 0.025}
    flat = effect("converted", 0.0, -0.05, 0.05, 0.9, variant="v2")
    d = decide(three, PASS, [row, flat], today=dt.date(2026, 9, 10))
    assert d.decision == "KEEP RUNNING" and "97.5 % always-valid CS" in d.reasons[0]
    won = {**row, "cs_low_adj": 0.001}
    d = decide(three, PASS, [won, flat], today=dt.date(2026, 9, 10))
    assert d.decision == "SHIP" and "97.5 % always-valid confidence sequence excludes 0" in d.reasons[0]
    assert "95 % family-wise over 2 arms" in d.reasons[0]


def test_guardrails_are_judged_on_their_own_family_and_the_policy_interval():
    # Within tolerance on the fixed-horizon CI, but the guardrail's always-valid sequence (its
    # Bonferroni share) reaches beyond the 5 % tolerance: a sequential SHIP waits for it.
    guard = {**effect("support_tickets", 0.0, -0.02, 0.02, 0.9), "rel_cs_low_adj": -0.09, "rel_cs_high_adj": 0.09,
             "cs_low_adj": -0.09, "cs_high_adj": 0.09, "alpha_adj": 0.05}
    d = decide(spec(), PASS, [WIN, guard], today=AFTER_END)
    assert d.decision == "HOLD" and "95 % always-valid CS" in d.reasons[0] and "cannot rule out harm" in d.reasons[0]
    fixed = decide(spec(inference="fixed_horizon"), PASS, [WIN, guard], today=AFTER_END)
    assert fixed.decision == "SHIP"
