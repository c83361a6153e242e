"""Coverage of the causal intervals the decisions use, over simulated worlds with known truth
(``liftlab.studies.causal_coverage``: the asset's own pure functions, at α = 0.05).

CI runs small sizes (the defaults below); the full studies are
``python -m liftlab.studies.causal_coverage --design staggered --worlds 2000`` and
``--design observational --worlds 500`` (results in ``bench/results/causal_coverage_*.json``).
The bands are the nominal 95 % ± about two binomial standard deviations at the size run.
"""

from __future__ import annotations

import json
import os

import pytest

from liftlab.config import REPO_ROOT
from liftlab.studies.causal_coverage import run, summarise


def _record(name: str, n: int, summary) -> None:
    out = REPO_ROOT / "artifacts"
    out.mkdir(exist_ok=True)
    (out / f"causal_coverage_{name}.json").write_text(json.dumps(
        {"worlds": n, "summary": summary.to_dict(orient="records")}, indent=2))


def _band(n: int) -> tuple[float, float]:
    sd = (0.95 * 0.05 / n) ** 0.5
    return 0.95 - 2.2 * sd, min(0.95 + 2.2 * sd, 1.0)


@pytest.mark.slow
def test_imputation_did_covers_and_twfe_does_not():
    n = int(os.environ.get("LIFTLAB_CAUSAL_WORLDS_STAGGERED", "200"))
    summary = summarise(run("staggered", n)).set_index("estimator")
    _record("staggered", n, summary.reset_index())
    low, high = _band(n)
    assert low <= summary.loc["imputation_did", "coverage"] <= high, summary.to_string()
    assert abs(summary.loc["imputation_did", "mean_error"]) < 0.2 * summary.loc["imputation_did", "sd_estimate"]
    assert summary.loc["twfe", "coverage"] < 0.8 and summary.loc["twfe", "mean_error"] < 0  # biased towards 0
    assert summary.loc["placebo_imputation_did", "coverage"] >= low


@pytest.mark.slow
def test_aipw_covers_the_true_ate_of_a_confounded_opt_in():
    n = int(os.environ.get("LIFTLAB_CAUSAL_WORLDS", "24"))
    summary = summarise(run("observational", n, n_users=2_000)).set_index(["estimator", "estimand"])
    _record("observational", n, summary.reset_index())
    low, high = _band(n)
    for estimator in ("aipw_logistic_gbm", "aipw_logistic_linear"):
        row = summary.loc[(estimator, "ATE")]
        assert low <= row["coverage"] <= high, summary.to_string()
    naive = summary.loc[("naive_difference", "ATE")]
    aipw = summary.loc[("aipw_logistic_gbm", "ATE")]
    assert naive["coverage"] == 0 and abs(aipw["mean_error"]) < 0.2 * abs(naive["mean_error"])
