"""Exact (analytic) expected unit metrics, the basis of the ground truth.

Given a unit's daily rates over the window and its exposure day e, the
metrics of ``marts.fct_unit_metrics`` (sums over days e..end) have closed-form
expectations because every count is Poisson with a known rate:

* sessions          E = sum_t lam_s(t)
* active_days       E = sum_t (1 - exp(-lam_s(t)))          (P(Poisson > 0))
* reactivated       E = 1 - exp(-sum_t lam_s(t))            (sum of independent
                        Poissons is Poisson)
* ai_calls, tasks   E = sum_t lam_x(t) (1 - exp(-lam_s(t)))  (counts are
                        Poisson(lam_x) on active days and 0 otherwise)
* support_tickets   E = sum_t lam_sup(t)
* converted         E = sum_{t>=e} S(t-1) h(t), S(t) = prod_{u<=t} (1 - h(u))
                        (discrete-time hazard; S(-1) = 1 because nobody
                        converts in the pre-period)
* revenue           E = sum_t [billing(t) + a(t) p(t)] + price_conv * E[converted]
                        (deterministic subscription payments, add-on purchases
                        Poisson(a) at price p, and the expected plan price paid
                        on the conversion day)

No Monte-Carlo is involved.  Sources: Poisson superposition and
P(N > 0) = 1 - exp(-lambda) for N ~ Poisson(lambda); the discrete-time hazard
model of Singer & Willett (1993).  The target, a mean over units of expected
potential outcomes, is the finite-population estimand of Neyman (1923) /
Imbens & Rubin (2015, ch. 6).
"""

from __future__ import annotations

import numpy as np

UNIT_METRICS = ("sessions", "ai_calls", "tasks_completed", "support_tickets", "revenue",
                "converted", "reactivated", "active_days")


def conversion_pmf(hazard: np.ndarray) -> np.ndarray:
    """P(first conversion on day t) = S(t-1) h(t) for a (m, W) hazard array."""
    surv = np.cumprod(1.0 - hazard, axis=1)
    before = np.ones_like(hazard)
    before[:, 1:] = surv[:, :-1]
    return before * hazard


def expected_daily_revenue(r: dict[str, np.ndarray], billing: np.ndarray,
                           conv_price: np.ndarray) -> np.ndarray:
    """E[revenue of the user on day t], (m, W)."""
    return billing + r["addon"] * r["price"] + conversion_pmf(r["hazard"]) * conv_price[:, None]


def expected_metrics(r: dict[str, np.ndarray], billing: np.ndarray, conv_price: np.ndarray,
                     eday: np.ndarray) -> dict[str, np.ndarray]:
    """Expected unit metrics over the window days eday..W-1.

    ``r`` maps channel -> (m, W) rates over the window (days 0..W-1),
    ``billing`` (m, W) payments due, ``conv_price`` (m,) expected price at
    conversion, ``eday`` (m,) first exposure day.  Returns metric -> (m,).
    """
    W = r["sess"].shape[1]
    mask = np.arange(W)[None, :] >= eday[:, None]
    sess = r["sess"]
    act = -np.expm1(-sess)
    out: dict[str, np.ndarray] = {}
    out["sessions"] = np.where(mask, sess, 0.0).sum(axis=1)
    out["active_days"] = np.where(mask, act, 0.0).sum(axis=1)
    out["reactivated"] = -np.expm1(-out["sessions"])
    out["ai_calls"] = np.where(mask, r["ai"] * act, 0.0).sum(axis=1)
    out["tasks_completed"] = np.where(mask, r["task"] * act, 0.0).sum(axis=1)
    out["support_tickets"] = np.where(mask, r["sup"], 0.0).sum(axis=1)
    pmf = conversion_pmf(r["hazard"])
    out["converted"] = np.where(mask, pmf, 0.0).sum(axis=1)
    out["revenue"] = (np.where(mask, billing + r["addon"] * r["price"], 0.0).sum(axis=1)
                      + conv_price * out["converted"])
    return out
