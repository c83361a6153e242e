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
source: {kind: demo}
"""


def test_existing_specs_stay_valid_with_defaults():
    for item in load_specs():
        assert item.spec.cuped is True and item.spec.winsorize == {} and item.spec.sequential_tuning == 5000.0


FILE = """
id: x
hypothesis: h
variants: [{name: c, allocation: 0.5}, {name: t, allocation: 0.5}]
baseline: c
primary_metric: sessions
source:
  kind: file
  path: x.csv
  variant_column: arm
  columns: {arm: string, sessions: integer, revenue: float, tasks: integer, pre_sessions: integer}
  outcomes: [sessions, revenue, tasks]
"""


def test_ratio_cuped_and_winsorize_fields():
    spec = parse_spec(BASE + """
secondary_metrics: [revenue_per_session, converted]
winsorize: {revenue: 0.99}
""", Path("x.yaml"))
    plan = metric_plan(spec)
    assert plan["sessions"] == ("sessions", "pre_sessions", None)
    assert plan["revenue_per_session"] == ("revenue", "pre_revenue", "sessions")  # the numerator's twin
    assert plan["converted"] == ("converted", "pre_converted", None)  # every unit-level metric has a twin
    assert spec.caps() == {"revenue": 0.99}
    on_file = parse_spec(FILE + """
secondary_metrics: [tasks_per_session]
ratio_metrics: [{name: tasks_per_session, numerator: tasks, denominator: sessions}]
cuped_covariates: {sessions: pre_sessions}
""", Path("x.yaml"))
    assert metric_plan(on_file) == {"sessions": ("sessions", "pre_sessions", None),
                                    "tasks_per_session": ("tasks", None, "sessions")}


@pytest.mark.parametrize(("base", "extra", "key"), [
    (BASE, "winsorize: {converted: 0.99}", "winsorize.converted"),  # a 0/1 metric: nothing to cap
    (BASE, "winsorize: {revenue: 0.3}", "winsorize.revenue"),
    (BASE, "cuped_covariates: {revenue: nope}", "cuped_covariates.revenue"),
    (BASE, "ratio_metrics: [{name: r, numerator: revenue, denominator: sessions}]", "ratio_metrics.0"),
    (FILE, "ratio_metrics: [{name: r, numerator: zzz, denominator: sessions}]", "ratio_metrics.0.numerator"),
    (FILE, "ratio_metrics: [{name: sessions, numerator: revenue, denominator: sessions}]", "ratio_metrics.0.name"),
])
def test_bad_fields_name_the_key(base, extra, key):
    with pytest.raises(SpecError) as err:
        parse_spec(base + extra + "\n", Path("x.yaml"))
    assert f"x.yaml: {key}" in str(err.value)
