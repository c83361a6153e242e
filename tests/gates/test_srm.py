"""SRM gate: chi-square parity with scipy, thresholds, bad arms, real data."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError

import numpy as np
import polars as pl
import pytest
from scipy import stats

from liftlab.gates.srm import SrmResult, srm_test
from tests.stats.conftest import HILLSTROM_CSV



@pytest.mark.parametrize(
    ("counts", "weights"),
    [
        ({"control": 50_123, "treatment": 49_877}, {"control": 0.5, "treatment": 0.5}),
        ({"control": 9_050, "treatment": 1_010}, {"control": 0.9, "treatment": 0.1}),
        ({"a": 3_310, "b": 3_402, "c": 3_288}, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}),
        ({"a": 5_200, "b": 2_390, "c": 2_410}, {"a": 0.5, "b": 0.25, "c": 0.25}),
        ({f"arm{i}": c for i, c in enumerate([2_010, 1_950, 2_044, 1_990, 4_100])}, {f"arm{i}": w for i, w in enumerate([1, 1, 1, 1, 2])}),
    ],
)
def test_equals_scipy_chisquare(counts, weights):
    res = srm_test(counts, weights)
    obs = np.array([counts[k] for k in weights], dtype=float)
    w = np.array(list(weights.values()), dtype=float)
    ref = stats.chisquare(obs, obs.sum() * w / w.sum())
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert res.df == len(weights) - 1
    assert sum(res.expected.values()) == pytest.approx(obs.sum())


@pytest.mark.parametrize(
    ("treatment", "status"),
    [(4_950, "PASS"), (4_859, "WARN"), (4_800, "FAIL")],  # chi2 ≈ 2.0, 7.95, 16.0 at N ≈ 10k
)
def test_status_thresholds(treatment, status):
    res = srm_test({"control": 10_000 - treatment, "treatment": treatment}, {"control": 0.5, "treatment": 0.5})
    assert res.status == status
    if status == "PASS":
        assert res.p_value >= 0.01
    elif status == "WARN":
        assert 0.001 <= res.p_value < 0.01
    else:
        assert res.p_value < 0.001


def test_custom_thresholds_and_validation():
    counts, planned = {"c": 5_141, "t": 4_859}, {"c": 1, "t": 1}  # p ≈ 0.0048
    assert srm_test(counts, planned, fail_below=0.01, warn_below=0.05).status == "FAIL"
    assert srm_test(counts, planned, fail_below=1e-4, warn_below=1e-3).status == "PASS"
    with pytest.raises(ValueError):
        srm_test(counts, planned, fail_below=0.05, warn_below=0.01)
    with pytest.raises(ValueError):
        srm_test(counts, {"c": -1.0, "t": 2.0})
    with pytest.raises(ValueError):
        srm_test(counts, {"c": 0.0, "t": 0.0})
    with pytest.raises(ValueError):
        srm_test({"c": -3, "t": 4}, planned)


def test_weights_are_renormalised():
    counts = {"c": 1_020, "t": 980}
    a = srm_test(counts, {"c": 0.5, "t": 0.5})
    b = srm_test(counts, {"c": 50, "t": 50})
    c = srm_test(counts, {"c": 0.333, "t": 0.333})
    assert a.p_value == pytest.approx(b.p_value, rel=1e-12) == pytest.approx(c.p_value, rel=1e-12)


def test_unknown_arm_fails_and_is_named():
    res = srm_test({"control": 5_000, "treatment": 5_010, "treatmnet": 7}, {"control": 0.5, "treatment": 0.5})
    assert res.status == "FAIL"
    assert "treatmnet" in res.reason and "not in the planned allocation" in res.reason
    assert math.isnan(res.p_value)
    assert res.observed["treatmnet"] == 7


def test_zero_weight_arm_with_units_fails():
    res = srm_test({"c": 500, "t": 500, "holdout": 3}, {"c": 0.5, "t": 0.5, "holdout": 0.0})
    assert res.status == "FAIL" and "holdout" in res.reason


def test_zero_and_missing_arm():
    planned = {"control": 0.5, "treatment": 0.5}
    missing = srm_test({"control": 10_000}, planned)
    explicit = srm_test({"control": 10_000, "treatment": 0}, planned)
    assert missing.observed == {"control": 10_000, "treatment": 0}
    assert missing.status == explicit.status == "FAIL"
    assert missing.statistic == explicit.statistic == pytest.approx(10_000.0)
    assert "observed 0 vs expected 5,000 in treatment" in missing.reason


def test_too_few_units_warns():
    res = srm_test({"c": 7, "t": 1}, {"c": 0.5, "t": 0.5})
    assert res.status == "WARN" and "too few units for SRM" in res.reason
    assert math.isfinite(res.p_value)
    empty = srm_test({}, {"c": 0.5, "t": 0.5})
    assert empty.status == "WARN" and "too few units for SRM" in empty.reason
    # Small *expected* count in a minority arm also triggers it.
    assert srm_test({"c": 990, "t": 3}, {"c": 0.996, "t": 0.004}).status == "WARN"


def test_single_arm_is_not_testable():
    res = srm_test({"c": 100}, {"c": 1.0})
    assert res.status == "WARN" and "not testable" in res.reason


def test_three_percent_loss_fails_with_readable_reason():
    res = srm_test({"control": 50_000, "treatment": 48_500}, {"control": 0.5, "treatment": 0.5})
    assert res.status == "FAIL"
    assert res.p_value < 1e-5
    assert res.reason.startswith("sample ratio mismatch")
    assert "observed 48,500 vs expected 49,250 in treatment" in res.reason
    assert "chi2=22.84" in res.reason and "df=1" in res.reason


def test_result_is_frozen():
    res = srm_test({"c": 10, "t": 10}, {"c": 1, "t": 1})
    assert isinstance(res, SrmResult)
    with pytest.raises(FrozenInstanceError):
        res.status = "FAIL"  # type: ignore[misc]


def test_hillstrom_three_arms_pass():
    counts = dict(pl.read_csv(HILLSTROM_CSV, columns=["segment"])["segment"].value_counts().iter_rows())
    res = srm_test(counts, {"No E-Mail": 1 / 3, "Mens E-Mail": 1 / 3, "Womens E-Mail": 1 / 3})
    assert res.status == "PASS"
    assert res.p_value == pytest.approx(0.90, abs=0.01)
    assert res.p_value == pytest.approx(stats.chisquare(list(counts.values())).pvalue, rel=1e-12)
    assert sum(res.observed.values()) == 64_000
