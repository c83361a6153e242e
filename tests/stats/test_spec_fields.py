"""Spec fields of the statistics engine: optional, validated, errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from liftlab.experiment_stats import metric_plan
from liftlab.specs import SpecError, load_specs, parse_spec

BASE = """
id: x
hypothesis: h
variants: [{name: c, allocation: 0.5}, {name: t, allocation: 0.5}]
baseline: c
start_date: 2026-09-01
end_date: 2026-09-28
primary_metric: sessions
"""


def test_existing_specs_stay_valid_with_defaults():
    for item in load_specs():
        assert item.spec.cuped is True and item.spec.winsorize == {} and item.spec.sequential_tuning == 5000.0


def test_ratio_cuped_and_winsorize_fields():
    spec = parse_spec(BASE + """
secondary_metrics: [revenue_per_session, tasks_per_session, converted]
ratio_metrics: [{name: tasks_per_session, numerator: tasks_completed, denominator: sessions}]
winsorize: {revenue: 0.99}
""", Path("x.yaml"))
    plan = metric_plan(spec)
    assert plan["sessions"] == ("sessions", "pre_sessions", None)
    assert plan["revenue_per_session"] == ("revenue", "pre_revenue", "sessions")
    assert plan["tasks_per_session"] == ("tasks_completed", "pre_tasks_completed", "sessions")
    assert plan["converted"] == ("converted", None, None)  # no own pre-period value: no CUPED row


@pytest.mark.parametrize(("extra", "key"), [
    ("winsorize: {converted: 0.99}", "winsorize.converted"),
    ("winsorize: {revenue: 0.3}", "winsorize.revenue"),
    ("cuped_covariates: {revenue: nope}", "cuped_covariates.revenue"),
    ("ratio_metrics: [{name: r, numerator: zzz, denominator: sessions}]", "ratio_metrics.0.numerator"),
    ("ratio_metrics: [{name: sessions, numerator: revenue, denominator: sessions}]", "ratio_metrics.0.name"),
])
def test_bad_fields_name_the_key(extra, key):
    with pytest.raises(SpecError) as err:
        parse_spec(BASE + extra + "\n", Path("x.yaml"))
    assert f"x.yaml: {key}" in str(err.value)
