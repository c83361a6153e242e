"""Ground truth against the generated data (one 60k-user world).

truth.effects holds exact expectations of the DGP; the difference of unit-level means
computed from the events (through a polars mirror of fct_unit_metrics) must agree with
them within sampling noise.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from liftlab.synth import EXPERIMENTS, World
from liftlab.synth.experiments import optin_propensity
from tests.synth.marts import first_exposures, unit_metrics, user_daily

RANDOMIZED = [k for k, v in EXPERIMENTS.items() if v["randomized"]]


@pytest.fixture(scope="module")
def daily(big_world: World) -> pl.DataFrame:
    return user_daily(big_world)


@pytest.fixture(scope="module")
def units(big_world: World, daily: pl.DataFrame) -> dict[str, pl.DataFrame]:
    return {e: unit_metrics(big_world, big_world.config.experiment_id(e), daily) for e in EXPERIMENTS}


def _arm_stats(frame: pl.DataFrame, metric: str) -> dict[str, tuple[float, float, int]]:
    agg = frame.group_by("variant").agg(
        pl.col(metric).mean().alias("m"), pl.col(metric).var().alias("v"), pl.len().alias("n"))
    return {r["variant"]: (r["m"], r["v"], r["n"]) for r in agg.iter_rows(named=True)}


def test_randomized_truth_within_four_standard_errors(big_world, units):
    truth = big_world.truth_effects.filter(pl.col("estimand") == "ATE")
    checked, bad, zs = 0, [], []
    for exp in RANDOMIZED:
        rows = truth.filter(pl.col("experiment_id") == big_world.config.experiment_id(exp))
        assert rows.height == len(EXPERIMENTS[exp]["metrics"]) * (len(EXPERIMENTS[exp]["variants"]) - 1)
        for r in rows.iter_rows(named=True):
            st = _arm_stats(units[exp], r["metric"])
            mv, vv, nv = st[r["variant"]]
            mb, vb, nb = st[r["baseline"]]
            se = math.sqrt(vv / nv + vb / nb)
            assert se > 0, (exp, r["metric"])
            z = (mv - mb - r["true_effect"]) / se
            zs.append(z)
            checked += 1
            if abs(z) > 4:
                bad.append((exp, r["variant"], r["metric"], mv - mb, r["true_effect"], z))
    assert checked >= 35
    assert not bad, bad
    # the truth is not just inside wide bands: the z-scores are calibrated on average
    assert float(np.mean(np.square(zs))) < 4.0, zs


def test_truth_means_match_arm_means(big_world, units):
    """Expected arm means (not only differences) agree with the realised baseline means."""
    truth = big_world.truth_effects.filter(pl.col("estimand") == "ATE")
    for exp in ("onboarding_adaptive", "winback_email"):
        rows = truth.filter(pl.col("experiment_id") == exp)
        for r in rows.iter_rows(named=True):
            mb, vb, nb = _arm_stats(units[exp], r["metric"])[r["baseline"]]
            # the baseline arm is a random subset of all units: its mean estimates the
            # all-unit expected baseline mean
            assert abs(mb - r["true_mean_baseline"]) < 4 * math.sqrt(vb / nb) + 1e-12, (exp, r)


def test_aa_truth_is_exactly_zero(big_world):
    aa = big_world.truth_effects.filter(pl.col("experiment_id") == "aa_check")
    assert aa.height == len(EXPERIMENTS["aa_check"]["metrics"])
    assert (aa["true_effect"] == 0.0).all()
    assert (aa["true_mean_baseline"] == aa["true_mean_variant"]).all()


def test_effect_sizes_are_as_designed(big_world):
    t = big_world.truth_effects
    get = lambda e, m, v, est="ATE": t.filter(  # noqa: E731
        (pl.col("experiment_id") == e) & (pl.col("metric") == m) & (pl.col("variant") == v)
        & (pl.col("estimand") == est)).row(0, named=True)
    c1 = get("onboarding_adaptive", "converted", "adaptive_v1")
    c2 = get("onboarding_adaptive", "converted", "adaptive_v2")
    assert 0.11 < c1["true_mean_baseline"] < 0.16
    assert 0.012 < c1["true_effect"] < 0.028 and 0.025 < c2["true_effect"] < 0.05
    a1 = get("onboarding_adaptive", "ai_calls", "adaptive_v1")
    a2 = get("onboarding_adaptive", "ai_calls", "adaptive_v2")
    assert 0.07 < a1["true_effect"] / a1["true_mean_baseline"] < 0.12
    assert 0.15 < a2["true_effect"] / a2["true_mean_baseline"] < 0.23
    assert get("onboarding_adaptive", "sessions", "adaptive_v2")["true_effect"] == 0.0
    assert get("onboarding_adaptive", "support_tickets", "adaptive_v1")["true_effect"] == 0.0
    assert get("onboarding_adaptive", "support_tickets", "adaptive_v2")["true_effect"] < 0
    assert get("checkout_redesign", "revenue", "treatment")["true_effect"] > 0
    assert get("checkout_redesign", "sessions", "treatment")["true_effect"] == 0.0
    wb = get("winback_email", "reactivated", "email")
    assert 0.01 < wb["true_effect"] < 0.10
    ate = get("ai_assistant_optin", "ai_calls", "opted_in")
    att = get("ai_assistant_optin", "ai_calls", "opted_in", "ATT")
    assert att["true_effect"] > 1.3 * ate["true_effect"] > 0
    assert att["n_units"] < ate["n_units"]


def test_onboarding_effect_is_heterogeneous():
    """Per-segment truth is not in the contract; check the segment factor's spread instead."""
    from liftlab.synth import design as D
    from liftlab.synth.experiments import onboarding_segment_factor
    from liftlab.synth.population import draw_population

    pop = draw_population(np.random.default_rng(0), 50_000, 0, 0, 14)
    s = onboarding_segment_factor(pop, 14)[pop.plan == D.TRIAL]
    assert abs(s.mean() - 1.0) < 0.02  # normalised to mean 1 over trial users
    assert s.max() / s.min() > 5


def test_optin_naive_comparison_is_biased(big_world, units):
    t = big_world.truth_effects.filter(
        (pl.col("experiment_id") == "ai_assistant_optin") & (pl.col("metric") == "ai_calls"))
    ate = t.filter(pl.col("estimand") == "ATE")["true_effect"][0]
    st = _arm_stats(units["ai_assistant_optin"], "ai_calls")
    naive = st["opted_in"][0] - st["not_opted_in"][0]
    assert naive - ate >= 2 * ate, (naive, ate)


def test_optin_ipw_with_true_propensity_recovers_ate(big_world, units):
    """Selection on observables holds exactly: IPW with the true propensity is unbiased."""
    u = units["ai_assistant_optin"].join(big_world.users, on="user_id")
    e = optin_propensity(u).to_numpy()
    d = (u["variant"] == "opted_in").to_numpy().astype(float)
    truth = big_world.truth_effects.filter(
        (pl.col("experiment_id") == "ai_assistant_optin") & (pl.col("estimand") == "ATE"))
    for metric in ("ai_calls", "tasks_completed", "sessions"):
        y = u[metric].to_numpy()
        w1, w0 = d / e, (1 - d) / (1 - e)
        est = (w1 * y).sum() / w1.sum() - (w0 * y).sum() / w0.sum()
        psi = w1 * (y - (w1 * y).sum() / w1.sum()) - w0 * (y - (w0 * y).sum() / w0.sum())
        se = psi.std() / math.sqrt(len(y))
        true = truth.filter(pl.col("metric") == metric)["true_effect"][0]
        assert abs(est - true) < 4 * se, (metric, est, true, se)


def test_winback_types_and_cates(big_world, units):
    cate = big_world.truth_unit_effects.filter(
        (pl.col("experiment_id") == "winback_email") & (pl.col("metric") == "reactivated"))
    n_units = units["winback_email"].height
    assert cate.height == n_units
    assert 0.10 < n_units / big_world.users.height < 0.15
    shares = cate.group_by("true_type").agg(pl.len() / cate.height, pl.col("true_cate").mean())
    shares = {r["true_type"]: r for r in shares.iter_rows(named=True)}
    assert set(shares) == {"persuadable", "sure_thing", "lost_cause", "sleeping_dog"}
    for typ, r in shares.items():
        assert 0.12 < r["len"] < 0.40, (typ, r)
    assert shares["persuadable"]["true_cate"] > 0.3
    assert shares["sleeping_dog"]["true_cate"] < -0.3
    zero = cate.filter(pl.col("true_type").is_in(["sure_thing", "lost_cause"]))
    assert (zero["true_cate"] == 0.0).all()
    ate = cate["true_cate"].mean()
    assert ate > 0
    # targeting persuadables only beats sending to everyone
    assert (cate["true_cate"] * (cate["true_type"] == "persuadable")).mean() > 2 * ate
    # per-unit CATEs average to the truth_effects ATE
    t = big_world.truth_effects.filter(
        (pl.col("experiment_id") == "winback_email") & (pl.col("metric") == "reactivated"))
    assert ate == pytest.approx(t["true_effect"][0], rel=1e-9)

    # realised effect by type has the designed sign
    u = units["winback_email"].join(cate.select("user_id", "true_type"), on="user_id")
    for typ, sign in (("persuadable", 1), ("sleeping_dog", -1)):
        st = _arm_stats(u.filter(pl.col("true_type") == typ), "reactivated")
        diff = st["email"][0] - st["control"][0]
        se = math.sqrt(st["email"][1] / st["email"][2] + st["control"][1] / st["control"][2])
        assert sign * diff > 4 * se, (typ, diff, se)


def test_winback_type_is_learnable_from_covariates(big_world):
    cate = big_world.truth_unit_effects.filter(
        (pl.col("experiment_id") == "winback_email") & (pl.col("metric") == "reactivated"))
    u = cate.join(big_world.users, on="user_id")
    p_all = (u["true_type"] == "persuadable").mean()
    seg = u.filter((pl.col("device") == "mobile") & (pl.col("tenure_days") < 180))
    assert (seg["true_type"] == "persuadable").mean() > 2.5 * p_all
    d_all = (u["true_type"] == "sleeping_dog").mean()
    seg = u.filter((pl.col("device") == "desktop") & (pl.col("tenure_days") > 730)
                   & pl.col("company_size").is_in(["51-200", "201+"]))
    assert (seg["true_type"] == "sleeping_dog").mean() > 3.0 * d_all


def test_winback_targeting_is_learnable_but_not_deterministic(big_world):
    """The covariates carry most of the targeting signal (docs §5.4), yet the type stays random.

    Ranking at-risk units by the type model's own P(persuadable | x) − P(sleeping_dog | x)
    captures > 80 % of the oracle's noise-free gain-curve area (ranking by the true CATE);
    the most likely type given x is right for most units but far from all.
    """
    from liftlab.synth import design as D
    from liftlab.synth.population import winback_type_scores

    cate = big_world.truth_unit_effects.filter(
        (pl.col("experiment_id") == "winback_email") & (pl.col("metric") == "reactivated"))
    u = cate.join(big_world.users, on="user_id")

    def code(col, levels):
        return u[col].replace_strict({lv: i for i, lv in enumerate(levels)}, return_dtype=pl.Int64).to_numpy()

    v = winback_type_scores(code("plan", D.PLANS), code("company_size", D.COMPANY_SIZES),
                            code("device", D.DEVICES), u["tenure_days"].to_numpy(),
                            u["engagement_score"].to_numpy())
    prob = np.exp(v - v.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    tau = u["true_cate"].to_numpy()

    def gain_area(score):
        order = np.argsort(-score, kind="stable")
        c = np.concatenate([[0.0], np.cumsum(tau[order])])
        return float((c - np.arange(len(c)) / len(tau) * c[-1]).mean())

    share = gain_area(prob[:, 0] - prob[:, 3]) / gain_area(tau)
    assert share > 0.8, share
    most_likely = np.asarray(D.WINBACK_TYPES)[prob.argmax(axis=1)]
    hit = float((most_likely == u["true_type"].to_numpy()).mean())
    assert 0.7 < hit < 0.95, hit


def test_optin_unit_effects_average_to_ate_and_att(big_world):
    cate = big_world.truth_unit_effects.filter(
        (pl.col("experiment_id") == "ai_assistant_optin") & (pl.col("metric") == "ai_calls"))
    t = big_world.truth_effects.filter(
        (pl.col("experiment_id") == "ai_assistant_optin") & (pl.col("metric") == "ai_calls"))
    assert cate["true_cate"].mean() == pytest.approx(
        t.filter(pl.col("estimand") == "ATE")["true_effect"][0], rel=1e-9)
    treated = first_exposures(big_world, "ai_assistant_optin").filter(pl.col("variant") == "opted_in")
    att = cate.join(treated.select("user_id"), on="user_id")["true_cate"].mean()
    assert att == pytest.approx(t.filter(pl.col("estimand") == "ATT")["true_effect"][0], rel=1e-9)


# --------------------------------------------------------------------------- regional
def _fe_design(frame: pl.DataFrame) -> np.ndarray:
    _, ri = np.unique(frame["region"].to_numpy(), return_inverse=True)
    _, di = np.unique(frame["activity_date"].to_physical().to_numpy(), return_inverse=True)
    X = np.zeros((frame.height, ri.max() + 1 + di.max() + 1))
    X[np.arange(frame.height), ri] = 1
    X[np.arange(frame.height), ri.max() + 1 + di] = 1
    return np.delete(X, ri.max() + 1, axis=1)  # drop one day dummy


def _wls(X, y, w):
    sw = np.sqrt(w)
    coef = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0]
    return coef, y - X @ coef


@pytest.fixture(scope="module")
def regional_panel(big_world, daily):
    """Region x day revenue per user over pre-period and window, with the true effect."""
    n_r = big_world.users.group_by("region").len()
    rev = daily.join(big_world.users.select("user_id", "region"), on="user_id").group_by(
        "region", "activity_date").agg(pl.col("revenue").sum())
    return (
        big_world.truth_regional.join(rev, on=["region", "activity_date"], how="left")
        .join(n_r, on="region")
        .with_columns((pl.col("revenue").fill_null(0.0) / pl.col("len")).alias("y"),
                      (pl.col("activity_date") >= pl.col("adoption_date")).fill_null(False)
                      .cast(pl.Float64).alias("D"))
        .sort("region", "activity_date")
    )


def test_regional_truth_frame(big_world):
    tr = big_world.truth_regional
    cfg = big_world.config
    assert tr.height == 16 * (cfg.pre_days + cfg.experiment_days)
    before = tr.filter(pl.col("adoption_date").is_null()
                       | (pl.col("activity_date") < pl.col("adoption_date")))
    assert (before["true_effect"] == 0.0).all()
    after = tr.filter(pl.col("activity_date") >= pl.col("adoption_date"))
    assert (after["true_effect"] > 0).all()
    assert tr.filter(pl.col("adoption_date").is_null())["region"].n_unique() >= 4
    de = tr.filter((pl.col("region") == "DE") & (pl.col("activity_date") >= cfg.start_date))
    assert de["adoption_date"][0] == cfg.start_date
    assert tr.filter(pl.col("adoption_date") == cfg.start_date)["region"].n_unique() == 1
    assert de["true_effect"].tail(7).mean() > 5 * de["true_effect"].head(7).mean()


def test_regional_att_matches_truth_frame(big_world):
    tr = big_world.truth_regional.join(big_world.users.group_by("region").len(), on="region")
    post = tr.filter(pl.col("activity_date") >= pl.col("adoption_date"))
    att = (post["true_effect"] * post["len"]).sum() / post["len"].sum()
    t = big_world.truth_effects.filter(pl.col("experiment_id") == "regional_pricing").row(0, named=True)
    assert t["estimand"] == "ATT" and t["metric"] == "revenue_per_unit_day"
    assert t["true_effect"] == pytest.approx(att, rel=1e-9)


def test_twfe_is_biased_for_regional_pricing(big_world, regional_panel):
    p = regional_panel
    att = big_world.truth_effects.filter(pl.col("experiment_id") == "regional_pricing")["true_effect"][0]
    X = _fe_design(p)
    Xd = np.column_stack([X, p["D"].to_numpy()])
    w = p["len"].to_numpy().astype(float)
    # noise-free: TWFE applied to the true effect panel alone (dynamic effects, staggered adoption)
    coef_true, _ = _wls(Xd, p["true_effect"].to_numpy(), w)
    assert coef_true[-1] < 0.8 * att
    # on the data: TWFE differs from the ATT by more than its noise ...
    y = p["y"].to_numpy()
    coef, res = _wls(Xd, y, w)
    sw = np.sqrt(w)
    sigma2 = (res**2 * w).sum() / (len(y) - Xd.shape[1])
    se = math.sqrt(sigma2 * np.linalg.pinv((Xd * sw[:, None]).T @ (Xd * sw[:, None]))[-1, -1])
    assert att - coef[-1] > 3 * se, (att, coef[-1], se)
    # ... while an imputation estimator (FE fitted on untreated cells only) is not biased
    un = p["D"].to_numpy() == 0
    fe, _ = _wls(X[un], y[un], w[un])
    imp = ((y - X @ fe)[~un] * w[~un]).sum() / w[~un].sum()
    assert abs(imp - att) < 3 * se, (imp, att, se)
