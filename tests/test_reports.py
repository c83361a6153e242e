"""What a report shows is what was decided: the forest plot draws, for every experiment, the
estimate the decision read (CUPED where the decision used it, the causal estimate of a design
that was not randomized, never its confounded difference in means)."""

from __future__ import annotations

import json

import pytest

from liftlab import db
from liftlab.reports.render import collect


def _decisions(info):
    with db.connect(info) as conn:
        return {r[0]: (r[1], r[2] if isinstance(r[2], list) else json.loads(r[2]), r[3])
                for r in conn.execute("select experiment_id, decision, rule_trace, primary_metric from results.decisions")}


def test_the_plotted_estimate_is_the_decisions_estimate(built):
    checked = {}
    with db.connect(built.info) as conn:
        for experiment_id, (decision, trace, primary) in _decisions(built.info).items():
            if decision == "HALTED":
                continue
            data = collect(conn, experiment_id)
            assert data.plotted is not None and any(f.name == "forest" for f in data.figures), experiment_id
            plotted = {(r["metric"], r["variant"]): r for r in data.plotted.iter_rows(named=True)}
            assert len(plotted) == data.plotted.height  # one estimate per metric × arm
            for rule in trace:
                if rule["rule"] == "primary" and "method" in rule:
                    row = plotted[(primary, rule["variant"])]
                    assert row["method"] == rule["method"], (experiment_id, row, rule)
                    assert row["rel_effect"] == pytest.approx(rule["rel_effect"], rel=1e-12)
                    checked[experiment_id] = rule["method"]
                elif rule["rule"] == "causal":
                    (row,) = [r for (m, _), r in plotted.items() if m == primary]
                    assert row["method"] == f"{rule['estimator']} {rule['estimand']}", (experiment_id, row)
                    assert row["abs_effect"] == pytest.approx(rule["estimate"], rel=1e-12)
                    assert "naive" not in row["method"]
                    checked[experiment_id] = row["method"]
    # CUPED decides where a pre-period exists; the two non-randomized designs on their causal estimate
    assert checked["onboarding_adaptive"] == "cuped" and checked["hillstrom"] == "welch_t"
    assert checked["ai_assistant_optin"] == "aipw_logistic_gbm ATE"
    assert checked["regional_pricing"] == "imputation_did ATT"


def test_every_effect_row_names_whether_the_decision_read_it(built):
    with db.connect(built.info) as conn:
        rows = conn.execute(
            "select e.experiment_id, e.metric, e.variant, count(*) filter (where e.is_decision_estimate), s.design "
            "from results.effects e join raw.experiment_specs s using (experiment_id) group by 1, 2, 3, 5").fetchall()
        notes = conn.execute("select distinct design, note from results.v_scorecard").fetchall()
    for experiment_id, metric, variant, decided, design in rows:
        assert decided == (1 if design == "randomized" else 0), (experiment_id, metric, variant, decided)
    assert all((note is None) == (design == "randomized") for design, note in notes), notes
