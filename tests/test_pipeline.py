"""The whole asset graph, materialized in-process against a real Postgres (the session's ``built`` world)."""

from __future__ import annotations

import json

import polars as pl
import pytest
from scipy import stats as sps

from liftlab import db

EXPECTED_EXPERIMENTS = {
    "onboarding_adaptive", "aa_check", "checkout_redesign", "winback_email",
    "ai_assistant_optin", "regional_pricing", "hillstrom",
}


@pytest.fixture(scope="module")
def pipeline(built):
    return {"result": built.result, "info": built.info, "snapshot": built.snapshot}


def decisions(pipeline) -> dict[str, dict]:
    return {r["experiment_id"]: r for r in pipeline["result"].decisions.to_dicts()}


def test_every_experiment_gets_a_decision(pipeline):
    assert set(decisions(pipeline)) == EXPECTED_EXPERIMENTS


def test_checkout_redesign_is_halted_by_srm(pipeline):
    row = decisions(pipeline)["checkout_redesign"]
    assert row["decision"] == "HALTED"
    reasons = json.loads(row["reasons"]) if isinstance(row["reasons"], str) else row["reasons"]
    assert any("srm" in r for r in reasons)
    assert pipeline["result"].halted == ["checkout_redesign"] and pipeline["result"].failed == {}
    with db.connect(pipeline["info"]) as conn:
        # The halted experiment publishes no effects; the gate row says why.
        assert conn.execute("select count(*) from results.effects where experiment_id = 'checkout_redesign'").fetchone()[0] == 0
        status, p = conn.execute(
            "select status, p_value from gates.check_results where experiment_id = 'checkout_redesign' and \"check\" = 'srm'"
        ).fetchone()
    assert status == "FAIL" and p < 0.001


def test_other_experiments_are_analysed_in_the_same_run(pipeline):
    with db.connect(pipeline["info"]) as conn:
        analysed = {r[0] for r in conn.execute("select distinct experiment_id from results.effects").fetchall()}
    assert analysed == EXPECTED_EXPERIMENTS - {"checkout_redesign"}


def test_aa_check_is_not_shipped(pipeline):
    assert decisions(pipeline)["aa_check"]["decision"] != "SHIP"


def test_non_randomized_designs_are_decided_on_their_causal_estimate(pipeline):
    """Both launches have a positive true effect, which their causal estimates find: SHIP."""
    expected = {"ai_assistant_optin": "aipw_logistic_gbm ATE", "regional_pricing": "imputation_did ATT"}
    for experiment, estimator in expected.items():
        row = decisions(pipeline)[experiment]
        reasons = " ".join(json.loads(row["reasons"]))
        assert estimator in reasons, reasons
        assert row["decision"] == "SHIP", (experiment, reasons)
    with db.connect(pipeline["info"]) as conn:
        methods = {r[0] for r in conn.execute(
            "select distinct method from results.effects where experiment_id in ('ai_assistant_optin', 'regional_pricing')"
        ).fetchall()}
        # The causal estimate must cover the truth where the naive difference does not.
        aipw = conn.execute(
            "select ci_low, ci_high, true_effect from results.causal_effects where study = 'ai_assistant_optin' "
            "and metric = 'ai_calls' and estimator = 'aipw_logistic_gbm' and estimand = 'ATE'"
        ).fetchone()
    assert methods == {"naive_welch_t"}
    assert aipw[0] <= aipw[2] <= aipw[1]


def test_one_row_per_key(pipeline):
    """(Reruns replacing every slice: tests/reliability/test_idempotency.py.)"""
    assert pipeline["snapshot"]["results.decisions"][0] == len(EXPECTED_EXPERIMENTS)
    with db.connect(pipeline["info"]) as conn:
        dupes = conn.execute(
            "select count(*) from (select experiment_id, metric, variant, method from results.effects "
            "group by 1, 2, 3, 4 having count(*) > 1) d"
        ).fetchone()[0]
    assert dupes == 0


def test_load_accounting_holds_for_every_load(pipeline):
    with db.connect(pipeline["info"]) as conn:
        rows = conn.execute("select source, received, accepted, quarantined from raw.load_log").fetchall()
        events = conn.execute("select count(*) from raw.events").fetchone()[0]
    assert rows and all(r[1] == r[2] + r[3] for r in rows)
    assert any(r[0] == "synthetic:raw.events" and r[2] == events for r in rows)


def test_hillstrom_matches_published_figures_and_scipy(pipeline, hillstrom_frame):
    with db.connect(pipeline["info"]) as conn:
        effects = db.read_frame(
            conn,
            "select metric, abs_effect, abs_ci_low, abs_ci_high, p_value from results.effects "
            "where experiment_id = 'hillstrom' and variant = 'Mens E-Mail' and method = 'welch_t'",
        )
    got = {r["metric"]: r for r in effects.to_dicts()}
    assert got["conversion"]["abs_effect"] == pytest.approx(0.006805, abs=1e-6)
    assert got["visit"]["abs_effect"] == pytest.approx(0.076590, abs=1e-6)
    assert got["spend"]["abs_effect"] == pytest.approx(0.7698, abs=1e-4)
    for metric in ("conversion", "visit", "spend"):
        treated = hillstrom_frame.filter(pl.col("segment") == "Mens E-Mail")[metric].to_numpy().astype(float)
        control = hillstrom_frame.filter(pl.col("segment") == "No E-Mail")[metric].to_numpy().astype(float)
        ref = sps.ttest_ind(treated, control, equal_var=False)
        ci = ref.confidence_interval(0.95)
        assert got[metric]["p_value"] == pytest.approx(ref.pvalue, abs=1e-8, rel=1e-8)
        assert got[metric]["abs_ci_low"] == pytest.approx(ci.low, abs=1e-8)
        assert got[metric]["abs_ci_high"] == pytest.approx(ci.high, abs=1e-8)


def test_dbt_tests_and_the_srm_gate_are_asset_checks():
    from liftlab.pipeline import definitions_with

    defs = definitions_with()
    checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert any("unique" in name for name in checks)
    assert "srm_passed" in checks


@pytest.fixture(scope="session")
def hillstrom_frame():
    from liftlab.config import REPO_ROOT

    return pl.read_csv(REPO_ROOT / "experiments" / "data" / "hillstrom.csv", infer_schema_length=None)
