"""Launches that were not randomized, simulated with known effects: the ground truth of the
causal layer outside the demo world.

* :func:`opt_in_launch` — an observational opt-in: users (plan, tenure), an eligibility date,
  orders before and after it. Heavier buyers, paying plans and older accounts opt in more;
  the effect on orders differs by plan, so the ATE, the ATT and the naive difference all
  differ. Who opts in depends only on what is recorded before the date (plan, tenure, orders in
  the 14 days before): the confounders are observed, and the true ATE is known in closed form.
* :func:`staggered_launch` — a change rolled out store by store on three dates (plus stores
  that never adopt), with an effect on daily orders per customer that grows with time since
  adoption: TWFE is biased, the imputation estimator is not.

Each returns the unit-level frame (or the store × day panel) the estimators read *and*, on
request, the rows a team's warehouse would hold (customers, assignments, orders), so the
same world can be loaded into Postgres and read back through the source layer.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

PLANS = ("free", "pro", "team")
PLAN_SHARE = (0.6, 0.3, 0.1)
#: Mean orders per 14 days by plan (before any effect).
PLAN_RATE = (0.8, 1.6, 2.4)
#: Effect of opting in on orders per 14 days, by plan.
PLAN_EFFECT = (0.3, 0.6, 1.0)
#: Effect of opting in on refunds per 14 days (a guardrail the launch harms).
REFUND_EFFECT = 0.08
WINDOW_DAYS = 14


@dataclass(frozen=True)
class OptInLaunch:
    units: pd.DataFrame  # unit_id, variant, plan, tenure_days, pre_orders_14d, orders_14d, refunds_14d, amount_14d
    true_ate: float  # population ATE of orders per 14 days: Σ share·effect
    true_att: float  # mean effect over the treated units of this sample (expected, not realised)
    customers: pd.DataFrame | None = None  # user_id, plan, tenure_days
    assignments: pd.DataFrame | None = None  # user_id, variant, eligible_at
    orders: pd.DataFrame | None = None  # user_id, ordered_at, amount, refunded


def opt_in_launch(seed: int, n_users: int = 4_000, start: dt.date = dt.date(2026, 3, 2),
                  rows: bool = False) -> OptInLaunch:
    """One simulated opt-in (see the module docstring); ``rows`` adds the warehouse rows."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(len(PLANS), size=n_users, p=PLAN_SHARE)
    tenure = rng.integers(30, 1_000, size=n_users)
    rate = rng.gamma(2.0, np.take(PLAN_RATE, plan) / 2.0) * (0.8 + 0.4 * tenure / 1_000)
    pre = rng.poisson(rate)
    logit = -1.6 + 0.9 * np.log1p(pre) + 0.5 * (plan == 1) + 1.0 * (plan == 2) + 0.6 * tenure / 1_000
    d = rng.random(n_users) < 1 / (1 + np.exp(-logit))
    tau = np.take(PLAN_EFFECT, plan)
    post = rng.poisson(rate + d * tau)
    refunds = rng.poisson(0.1 * rate + d * REFUND_EFFECT)
    later = rng.poisson(rate / 2)  # orders in the week after the window (keep the window complete)
    units = pd.DataFrame({
        "unit_id": np.arange(1, n_users + 1), "variant": np.where(d, "opted_in", "not_opted_in"),
        "plan": np.take(PLANS, plan), "tenure_days": tenure.astype(float), "pre_orders_14d": pre.astype(float),
        "orders_14d": post.astype(float), "refunds_14d": np.minimum(refunds, post).astype(float)})
    true_ate = float(np.dot(PLAN_SHARE, PLAN_EFFECT))
    out = OptInLaunch(units, true_ate, float(tau[d].mean()))
    if not rows:
        return out
    eligible = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(rng.uniform(0, 14 * 86_400, n_users), unit="s")
    uid = units["unit_id"].to_numpy()
    refunded = units["refunds_14d"].to_numpy(int)

    def orders_in(counts, lo_days, hi_days, refunds=None):
        who = np.repeat(np.arange(n_users), counts)
        at = eligible[who] + pd.to_timedelta(rng.uniform(lo_days * 86_400, hi_days * 86_400, who.size), unit="s")
        flag = np.zeros(who.size, bool)
        if refunds is not None:  # the first refunds[i] orders of user i in the window are refunded
            rank = np.arange(who.size) - np.repeat(np.cumsum(counts) - counts, counts)
            flag = rank < np.repeat(refunds, counts)
        return pd.DataFrame({"user_id": uid[who], "ordered_at": at, "amount": np.round(rng.gamma(2.0, 15.0, who.size), 2),
                             "refunded": flag})

    orders = pd.concat([orders_in(pre, -WINDOW_DAYS, 0), orders_in(post, 0, WINDOW_DAYS, refunded),
                        orders_in(later, WINDOW_DAYS, WINDOW_DAYS + 7)], ignore_index=True)
    # window sums as the catalogue computes them: [eligible, eligible + 14 d)
    in_window = (orders["ordered_at"] >= eligible[orders["user_id"].to_numpy() - 1]) & (
        orders["ordered_at"] < eligible[orders["user_id"].to_numpy() - 1] + pd.Timedelta(days=WINDOW_DAYS))
    amount = orders[in_window].groupby("user_id")["amount"].sum()
    units["amount_14d"] = units["unit_id"].map(amount).fillna(0.0).astype(float)
    customers = pd.DataFrame({"user_id": uid, "plan": units["plan"], "tenure_days": tenure})
    assignments = pd.DataFrame({"user_id": uid, "variant": units["variant"], "eligible_at": eligible})
    return OptInLaunch(units, true_ate, float(tau[d].mean()), customers, assignments, orders)


#: Adoption day (from the start) of the three cohorts of stores; the rest never adopt.
COHORTS = (7, 14, 21)


def rollout_effect(h: np.ndarray) -> np.ndarray:
    """Effect on orders per customer-day at ``h`` days since adoption: grows for three weeks."""
    return 0.01 + 0.004 * np.minimum(np.asarray(h, float), 21)


@dataclass(frozen=True)
class StaggeredLaunch:
    panel: pd.DataFrame  # unit (store), time, y, weight, first_treat, true_effect (the estimators' panel)
    true_att: float  # customer-weighted mean true effect over treated store-days
    customers: pd.DataFrame | None = None  # customer_id, store
    assignments: pd.DataFrame | None = None  # customer_id, arm, seen_at
    orders: pd.DataFrame | None = None  # customer_id, ordered_at


def staggered_launch(seed: int, stores_per_cohort: int = 5, never_treated: int = 9, customers_per_store: int = 150,
                     pre_days: int = 14, days: int = 42, start: dt.date = dt.date(2026, 3, 2),
                     rows: bool = False) -> StaggeredLaunch:
    """One simulated rollout (see the module docstring). Time 0 is ``start``; the panel spans
    ``[−pre_days, days)``. ``rows`` adds the warehouse rows (one per order)."""
    rng = np.random.default_rng(seed)
    adopt = [g for g in COHORTS for _ in range(stores_per_cohort)] + [None] * never_treated
    n_stores = len(adopt)
    sizes = rng.integers(customers_per_store // 2, customers_per_store * 3 // 2 + 1, size=n_stores)
    store_of = np.repeat(np.arange(n_stores), sizes)
    rate = rng.gamma(2.0, 0.15, size=store_of.size) * np.exp(rng.normal(0, 0.2, n_stores))[store_of]
    times = np.arange(-pre_days, days)
    # common to every store (parallel trends hold in expectation): a weekly cycle and a slow rise
    season = 0.03 * (1 + np.sin(2 * np.pi * times / 7)) + 0.0005 * (times + pre_days)
    first = np.array([np.nan if g is None else float(g) for g in adopt])
    h = times[None, :] - first[:, None]  # store × day
    effect = np.where(np.isnan(h) | (h < 0), 0.0, rollout_effect(np.nan_to_num(h)))
    expected = rate[:, None] + season[None, :] + effect[store_of]  # customer × day
    counts = rng.poisson(expected)
    totals = np.zeros((n_stores, times.size))
    np.add.at(totals, store_of, counts)
    names = np.array([f"S{i:02d}" for i in range(n_stores)])
    panel = pd.DataFrame({
        "unit": np.repeat(names, times.size), "time": np.tile(times, n_stores),
        "y": (totals / sizes[:, None]).ravel(), "weight": np.repeat(sizes.astype(float), times.size),
        "first_treat": np.repeat(first, times.size), "true_effect": effect.ravel()})
    post = panel["time"] >= panel["first_treat"]
    true_att = float((panel.loc[post, "true_effect"] * panel.loc[post, "weight"]).sum() / panel.loc[post, "weight"].sum())
    if not rows:
        return StaggeredLaunch(panel, true_att)
    t0 = pd.Timestamp(start, tz="UTC")
    cid = np.arange(1, store_of.size + 1)
    customers = pd.DataFrame({"customer_id": cid, "store": names[store_of]})
    adopted = ~np.isnan(first[store_of])
    seen = t0 + pd.to_timedelta(np.where(adopted, np.nan_to_num(first[store_of]), 0) * 86_400
                                + rng.uniform(0, 3_600, store_of.size), unit="s")
    assignments = pd.DataFrame({"customer_id": cid, "arm": np.where(adopted, "new_price", "old_price"), "seen_at": seen})
    who, day = np.nonzero(counts)
    reps = counts[who, day]
    who, day = np.repeat(who, reps), np.repeat(day, reps)
    at = t0 + pd.to_timedelta(times[day] * 86_400 + rng.uniform(0, 86_399, who.size), unit="s")
    orders = pd.DataFrame({"customer_id": cid[who], "ordered_at": at})
    return StaggeredLaunch(panel, true_att, customers, assignments, orders)
