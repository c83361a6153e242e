"""Estimates agree with the truth: 95 % CIs cover the true effect 92–98 % of the time.

20 small synthetic worlds (seeds 1–20, none picked; 480 intervals) go through the real ingest,
dbt and statistics code; every randomized experiment × metric × arm interval is checked against
the exact expected effect in ``truth.effects``. At this size the 92–98 % band is about ±3
binomial standard deviations around 95 %: an interval too narrow by a fifth (coverage ~89 %)
fails it. The statistics engine's own coverage and error rates are measured at a larger size,
without the pipeline, in tests/calibration/test_error_rates.py. ``LIFTLAB_STUDY_WORLDS`` /
``LIFTLAB_STUDY_USERS`` change the size (the defaults are what CI runs;
``LIFTLAB_STUDY_WORLDS=50`` is the earlier CI size).
"""

from __future__ import annotations

import json
import os

import polars as pl
import pytest

from liftlab.config import REPO_ROOT
from liftlab.studies.coverage import run_coverage_study
from tests.conftest import create_scratch_database, drop_database


@pytest.mark.slow
def test_ci_coverage_of_true_effects_over_seeded_worlds(server):
    n_worlds = int(os.environ.get("LIFTLAB_STUDY_WORLDS", "20"))
    n_users = int(os.environ.get("LIFTLAB_STUDY_USERS", "2000"))
    info = create_scratch_database(server, prefix="liftlab_coverage")
    try:
        result = run_coverage_study(info, n_worlds=n_worlds, n_users=n_users)
    finally:
        drop_database(info)
    coverage = result["covered"].mean()
    by_experiment = result.group_by("experiment").agg(pl.col("covered").mean(), pl.len()).sort("experiment")
    summary = {
        "worlds": n_worlds, "users_per_world": n_users, "intervals": result.height, "coverage": coverage,
        "by_experiment": by_experiment.to_dicts(),
    }
    out = REPO_ROOT / "artifacts"
    out.mkdir(exist_ok=True)
    (out / "coverage_study.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str))
    assert result.height >= n_worlds * 20
    assert 0.92 <= coverage <= 0.98, summary
