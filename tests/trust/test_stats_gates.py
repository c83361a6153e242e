"""Pure gate statistics checked against scipy and hand computation: SRM by dimension,
contamination, SMD balance, PSI / KS / daily drift."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from liftlab.gates.balance import balance_check, smd_table
from liftlab.gates.contamination import contamination_test
from liftlab.gates.drift import daily_drift, ks_drift, psi
from liftlab.gates.srm import describe_dimensions, srm_by_dimension, srm_test

# ----------------------------------------------------------------------------- SRM by dimension


def _cells(rng, n=60_000, loss_device="mobile", loss=0.0, weights=(0.34, 0.33, 0.33)):
    arms = np.array(["control", "v1", "v2"])
    device = rng.choice(["desktop", "mobile", "tablet"], size=n, p=[0.6, 0.3, 0.1])
    region = rng.choice(["US", "DE", "FR", "BR"], size=n)
    variant = arms[rng.choice(3, size=n, p=list(weights))]
    keep = ~((device == loss_device) & (variant == "v2") & (rng.random(n) < loss))
    frame = pl.DataFrame({"variant": variant[keep], "device": device[keep], "region": region[keep]})
    return frame.group_by("variant", "device", "region").len("n")


def test_srm_by_dimension_matches_scipy_per_level():
    rng = np.random.default_rng(1)
    planned = {"control": 0.34, "v1": 0.33, "v2": 0.33}
    cells = _cells(rng)
    res = {r.dimension: r for r in srm_by_dimension(cells, planned, ["device", "region"])}
    w = np.array(list(planned.values()))
    for dim in ("device", "region"):
        for cell in res[dim].cells:
            obs = np.array([cell["observed"][a] for a in planned], float)
            ref = stats.chisquare(obs, obs.sum() * w / w.sum())
            assert cell["chi2"] == pytest.approx(ref.statistic, rel=1e-10)
            assert cell["p_value"] == pytest.approx(ref.pvalue, rel=1e-8)
        table = (cells.group_by(dim, "variant").agg(pl.col("n").sum())
                 .pivot(on="variant", index=dim, values="n").sort(dim).select(list(planned)).to_numpy())
        ref = stats.chi2_contingency(table, correction=False)
        assert res[dim].independence_p == pytest.approx(ref.pvalue, rel=1e-8)
        # the levels sum to the overall counts
        total = {a: sum(c["observed"][a] for c in res[dim].cells) for a in planned}
        assert total == dict(cells.group_by("variant").agg(pl.col("n").sum()).iter_rows())
    assert not res["device"].flagged and not res["region"].flagged


def test_srm_by_dimension_localises_a_loss_on_one_device():
    rng = np.random.default_rng(2)
    planned = {"control": 0.34, "v1": 0.33, "v2": 0.33}
    cells = _cells(rng, loss=0.4, loss_device="tablet")
    overall = srm_test(dict(cells.group_by("variant").agg(pl.col("n").sum()).iter_rows()), planned)
    assert overall.status == "FAIL"
    res = {r.dimension: r for r in srm_by_dimension(cells, planned, ["device", "region"])}
    assert res["device"].flagged == ["tablet"]
    assert res["device"].independence_p < 1e-6  # the split differs across devices
    assert res["region"].independence_p > 0.001  # and not across regions
    text = describe_dimensions(list(res.values()))
    assert "device: tablet" in text and "split differs across levels of device" in text


def test_srm_by_dimension_small_levels_are_never_flagged():
    cells = pl.DataFrame({"variant": ["control", "treatment"], "day": ["d1", "d1"], "n": [4, 0]})
    (res,) = srm_by_dimension(cells, {"control": 0.5, "treatment": 0.5}, ["day"])
    assert res.cells[0]["testable"] is False and res.flagged == []


# ----------------------------------------------------------------------------- contamination


@pytest.mark.parametrize(("n_multi", "status"), [(0, "PASS"), (50, "WARN"), (100, "WARN"), (101, "FAIL"), (400, "FAIL")])
def test_contamination_thresholds(n_multi, status):
    res = contamination_test(10_000, n_multi, by_first_variant={"a": n_multi})
    assert res.status == status
    assert res.details["excluded_units"] == n_multi
    assert res.statistic == pytest.approx(n_multi / 10_000)
    if status == "FAIL":
        assert "above the 1% limit" in res.reason and f"{n_multi:,} of 10,000" in res.reason


def test_contamination_rejects_impossible_counts():
    with pytest.raises(ValueError):
        contamination_test(10, 11)


# ----------------------------------------------------------------------------- SMD balance


def test_smd_matches_austin_formula():
    rng = np.random.default_rng(3)
    n = 4_000
    variant = rng.choice(["control", "t1", "t2"], size=n)
    x = rng.normal(10, 3, n) + np.where(variant == "t2", 0.6, 0.0)  # t2 is imbalanced by 0.2 SD
    z = rng.poisson(2.0, n).astype(float)
    frame = pl.DataFrame({"variant": variant, "x": x, "z": z})
    table = smd_table(frame, baseline="control", covariates=["x", "z"])
    assert table.height == 4
    for row in table.to_dicts():
        c = frame.filter(pl.col("variant") == "control")[row["covariate"]].to_numpy()
        v = frame.filter(pl.col("variant") == row["variant"])[row["covariate"]].to_numpy()
        expected = (v.mean() - c.mean()) / math.sqrt((v.var(ddof=1) + c.var(ddof=1)) / 2)
        assert row["smd"] == pytest.approx(expected, rel=1e-10)
    res = balance_check(table)
    assert res.status == "WARN"
    assert "x in t2" in res.reason and "z in" not in res.reason
    assert res.details["table"] and abs(res.statistic) > 0.1


def test_balanced_covariates_pass_and_degenerate_cases():
    frame = pl.DataFrame({"variant": ["a", "a", "b", "b"], "k": [1.0, 1.0, 1.0, 1.0], "m": [0.0, 0.0, 1.0, 1.0]})
    table = {r["covariate"]: r["smd"] for r in smd_table(frame, baseline="a", covariates=["k", "m"]).to_dicts()}
    assert table["k"] == 0.0 and table["m"] == math.inf
    rng = np.random.default_rng(4)
    ok = pl.DataFrame({"variant": rng.choice(["a", "b"], 20_000), "x": rng.normal(size=20_000)})
    assert balance_check(smd_table(ok, baseline="a", covariates=["x"])).status == "PASS"
    assert balance_check(pl.DataFrame()).status == "N/A"  # no covariates: nothing was checked


# ----------------------------------------------------------------------------- drift


def test_psi_by_hand_and_ks_matches_scipy():
    e = {"a": 50, "b": 30, "c": 20}
    a = {"a": 40, "b": 30, "c": 30}
    hand = (0.4 - 0.5) * math.log(0.4 / 0.5) + 0 + (0.3 - 0.2) * math.log(0.3 / 0.2)
    assert psi(e, a) == pytest.approx(hand, rel=1e-12)
    assert psi(e, e) == 0.0
    assert psi({"a": 1}, {"b": 1}) > 1  # disjoint supports: a major shift, not infinity
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=3_000), rng.normal(0.2, size=2_000)
    d, p = ks_drift(x, y)
    ref = stats.ks_2samp(x, y)
    assert (d, p) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))


def _daily(days=28, double_day=None, lose_day=None, shift_day=None):
    rows = []
    start = dt.date(2026, 9, 1)
    for i in range(days):
        day = start + dt.timedelta(days=i)
        weekly = 0.6 if day.weekday() >= 5 else 1.0  # strong weekly pattern, as in product data
        scale = 2.0 if i == double_day else 0.0 if i == lose_day else 1.0
        mix = {"session": 700, "ai_call": 250, "payment": 50}
        if i == shift_day:
            mix = {"session": 400, "ai_call": 550, "payment": 50}
        for cat, n in mix.items():
            if scale * weekly * n:
                rows.append({"day": day, "category": cat, "n": int(scale * weekly * n * 10)})
    return pl.DataFrame(rows)


def test_daily_drift_flags_a_doubled_a_lost_and_a_shifted_day_only():
    assert not daily_drift(_daily())["drift"].any()  # the weekly pattern alone is not drift
    assert not daily_drift(_daily(), lag=7).is_empty()
    doubled = daily_drift(_daily(double_day=10))
    assert doubled.filter(pl.col("drift"))["day"].to_list() == [dt.date(2026, 9, 11), dt.date(2026, 9, 18)]
    assert doubled.filter(pl.col("day") == dt.date(2026, 9, 11))["ratio"].item() == pytest.approx(2.0)
    lost = daily_drift(_daily(lose_day=12))
    assert dt.date(2026, 9, 13) in lost.filter(pl.col("drift"))["day"].to_list()
    shifted = daily_drift(_daily(shift_day=15))
    row = shifted.filter(pl.col("day") == dt.date(2026, 9, 16))
    assert row["drift"].item() and row["ratio"].item() == pytest.approx(1.0) and row["psi"].item() > 0.25
