"""Assignment of users to the six experiments and the treatment effects.

An experiment's effect is a set of multiplicative factors on the daily rate
channels of rates.py (sessions, AI calls and tasks per active day, support
tickets, add-on purchases, add-on price, conversion hazard) over the
experiment window.  ``factors(asg, arm_codes, ...)`` returns them for any arm
vector, which lets truth.py evaluate every unit under every arm with all
other experiments held at their realised assignment.
Formulas: docs/synthetic_world.md, "Experiments".  The win-back types follow
the uplift taxonomy of Radcliffe & Surry (2011) / Kane, Lo & Zheng (2014); the
regional roll-out's growing effects are the case in which two-way fixed effects
is biased (Goodman-Bacon 2021; de Chaisemartin & D'Haultfoeuille 2020; Sun &
Abraham 2021).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from . import design as D
from .population import Population, categorical
from .rates import Calendar

EXPERIMENT_IDS = tuple(D.EXPERIMENTS)
RANDOMIZED_IDS = tuple(k for k, v in D.EXPERIMENTS.items() if v["randomized"])


@dataclass
class Assignment:
    """Units of one experiment within a chunk.

    ``rows`` index the chunk's users, ``arm`` are codes into ``arms``,
    ``eday`` the relative day of the first exposure (effects act on days
    >= eday), ``n_rows`` the number of exposure rows of the unit.
    ``extra`` holds per-unit quantities the effect needs (segment factor,
    opt-in propensity and effect size, ...).
    """

    exp: str
    arms: tuple[str, ...]
    baseline: int
    rows: np.ndarray
    arm: np.ndarray
    eday: np.ndarray
    n_rows: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def m(self) -> int:
        return len(self.rows)


def onboarding_segment_factor(pop: Population, pre_days: int) -> np.ndarray:
    """Heterogeneity factor s_i of onboarding_adaptive, mean 1 over trial users.

    s_i = size[c_i] * tenure[new_i] * device[d_i] / E[...], where the
    normaliser is the exact expectation over the trial population: size,
    device and tenure are independent given plan, so E[product] = product of
    expectations; P(new) = P(pre_days + floor(X) < 30), X ~ Exp(mean 25).
    """
    new_thr = D.ONB_SEG_NEW_TENURE
    p_new = 1.0 - np.exp(-max(0, new_thr - pre_days) / D.TRIAL_TENURE_MEAN)
    ten_new, ten_old = D.ONB_SEG_TENURE
    norm = (float(D.SIZE_P_BY_PLAN[D.TRIAL] @ D.ONB_SEG_SIZE)
            * float(D.DEVICE_P @ D.ONB_SEG_DEVICE)
            * (p_new * ten_new + (1 - p_new) * ten_old))
    ten = np.where(pop.tenure < new_thr, ten_new, ten_old)
    return D.ONB_SEG_SIZE[pop.size] * D.ONB_SEG_DEVICE[pop.device] * ten / norm


def optin_logit(score, plan, size, tenure) -> np.ndarray:
    """Linear predictor of the opt-in model (observed covariates only):
    eta = -1.15 + 1.4 score + plan[p] + size[c] - 0.25 log(max(tenure, 1) / 365)."""
    return (D.OPTIN_INTERCEPT + D.OPTIN_SCORE * score + D.OPTIN_PLAN[plan] + D.OPTIN_SIZE[size]
            + D.OPTIN_LOG_TENURE * np.log(np.maximum(np.asarray(tenure, dtype=float), 1.0) / 365.0))


def optin_propensity(users: pl.DataFrame) -> pl.Series:
    """True opt-in propensity P(opted_in | X) of each row of a ``users``
    frame (meaningful for non-trial users, the eligible population)."""
    plan = users["plan"].replace_strict(list(D.PLANS), list(range(4)), return_dtype=pl.Int64)
    size = users["company_size"].replace_strict(list(D.COMPANY_SIZES), list(range(4)),
                                                return_dtype=pl.Int64)
    eta = optin_logit(users["engagement_score"].to_numpy(), plan.to_numpy(), size.to_numpy(),
                      users["tenure_days"].to_numpy())
    return pl.Series("propensity", 1.0 / (1.0 + np.exp(-eta)))


def assign(pop: Population, rng: np.random.Generator, cal: Calendar) -> dict[str, Assignment]:
    """Assign the chunk's users to all experiments.

    Draws are made for every user of the chunk (and then subset), so each
    experiment's draws do not depend on the others' eligibility rules.
    """
    n = pop.n
    out: dict[str, Assignment] = {}

    def randomized(exp_id: str, eligible: np.ndarray, day0: bool) -> Assignment:
        spec = D.EXPERIMENTS[exp_id]
        arms = tuple(spec["variants"])
        alloc = np.array([spec["variants"][a] for a in arms])
        arm = categorical(rng, alloc, n)
        eday = rng.integers(0, D.EXPOSURE_DAY_MAX + 1, n)
        n_rows = categorical(rng, D.EXPOSURE_ROWS_P, n) + 1
        rows = np.flatnonzero(eligible)
        return Assignment(exp=exp_id, arms=arms, baseline=arms.index(spec["baseline"]), rows=rows,
                          arm=arm[rows], eday=np.zeros(len(rows), np.int64) if day0 else eday[rows],
                          n_rows=n_rows[rows])

    trial = pop.plan == D.TRIAL
    onb = randomized("onboarding_adaptive", trial, day0=False)
    onb.extra["seg"] = onboarding_segment_factor(pop, cal.pre_days)[onb.rows]
    out[onb.exp] = onb
    out["aa_check"] = randomized("aa_check", np.ones(n, bool), day0=False)
    out["checkout_redesign"] = randomized("checkout_redesign", np.ones(n, bool), day0=False)
    wb = randomized("winback_email", pop.at_risk, day0=True)
    wb.extra["type"] = pop.wb_type[wb.rows]
    out[wb.exp] = wb

    # observational opt-in: selection on observed covariates only
    u = rng.random(n)
    rows = np.flatnonzero(~trial)
    p = 1.0 / (1.0 + np.exp(-optin_logit(pop.score, pop.plan, pop.size, pop.tenure)))
    spec = D.EXPERIMENTS["ai_assistant_optin"]
    arms = tuple(spec["variants"])
    out["ai_assistant_optin"] = Assignment(
        exp="ai_assistant_optin", arms=arms, baseline=arms.index(spec["baseline"]), rows=rows,
        arm=(u[rows] < p[rows]).astype(np.int8) * arms.index("opted_in")
        + (u[rows] >= p[rows]).astype(np.int8) * arms.index("not_opted_in"),
        eday=np.zeros(len(rows), np.int64), n_rows=np.ones(len(rows), np.int8),
        extra={"propensity": p[rows],
               "tau": D.OPTIN_TAU_BASE * np.exp(D.OPTIN_TAU_SCORE * pop.score[rows])})

    # regional roll-out: every user, treatment by region
    spec = D.EXPERIMENTS["regional_pricing"]
    arms = tuple(spec["variants"])
    adopt = np.array([-1 if D.REGIONAL_ADOPTION_DAY[r] is None else D.REGIONAL_ADOPTION_DAY[r]
                      for r in D.REGIONS])
    adopt_u = adopt[pop.region]
    treated = adopt_u >= 0
    out["regional_pricing"] = Assignment(
        exp="regional_pricing", arms=arms, baseline=arms.index("old_price"), rows=np.arange(n),
        arm=np.where(treated, arms.index("new_price"), arms.index("old_price")).astype(np.int8),
        eday=np.where(treated, adopt_u, 0).astype(np.int64), n_rows=np.ones(n, np.int8),
        extra={"adopt": adopt_u})
    return out


def regional_multiplier(s: np.ndarray) -> np.ndarray:
    """Add-on purchase-rate multiplier s >= 0 days after adoption:
    m(s) = 20/15 + kappa * min(s + 1, cap); the price falls 20 -> 15, so the
    add-on revenue effect 15 m(s) - 20 = 15 kappa min(s + 1, cap) grows
    linearly with days since adoption until the cap."""
    return (D.ADDON_PRICE / D.REGIONAL_NEW_PRICE
            + D.REGIONAL_KAPPA * np.minimum(s + 1, D.REGIONAL_CAP_DAYS))


def factors(asg: Assignment, arm: np.ndarray, W: int) -> dict[str, np.ndarray]:
    """Multiplicative effect factors, channel -> (m, W) array over the window
    days 0..W-1, for the units of ``asg`` placed in arms ``arm`` (codes).

    Factors are 1 before the unit's exposure day and in the baseline arm;
    channels an experiment does not touch are omitted.
    """
    day = np.arange(W)[None, :]
    on = day >= asg.eday[:, None]  # effect window per unit, (m, W)
    exp = asg.exp

    def is_(arm_name: str) -> np.ndarray:
        return arm == asg.arms.index(arm_name)

    def per_unit(mult: np.ndarray) -> np.ndarray:
        return np.where(on, mult[:, None], 1.0)

    if exp == "onboarding_adaptive":
        seg = asg.extra["seg"]
        dh = np.array([D.ONB_HAZARD_DELTA[a] for a in asg.arms])[arm]
        dai = np.array([D.ONB_AI_DELTA[a] for a in asg.arms])[arm]
        mt = np.array([D.ONB_TASK_MULT[a] for a in asg.arms])[arm]
        ms = np.array([D.ONB_SUPPORT_MULT[a] for a in asg.arms])[arm]
        return {"hazard": per_unit(1.0 + dh * seg), "ai": per_unit(1.0 + dai * seg),
                "task": per_unit(mt), "sup": per_unit(ms)}
    if exp == "aa_check":
        return {}
    if exp == "checkout_redesign":
        return {"addon": per_unit(np.where(is_("treatment"), D.CHECKOUT_ADDON_MULT, 1.0))}
    if exp == "winback_email":
        mult = np.where(is_("email"), D.WINBACK_EMAIL_MULT[asg.extra["type"]], 1.0)
        return {"sess": per_unit(mult)}
    if exp == "ai_assistant_optin":
        tau = np.where(is_("opted_in"), asg.extra["tau"], 0.0)
        return {"ai": per_unit(1.0 + tau), "task": per_unit(1.0 + D.OPTIN_TASK_SHARE * tau),
                "sup": per_unit(np.where(is_("opted_in"), D.OPTIN_SUPPORT_MULT, 1.0))}
    if exp == "regional_pricing":
        adopt = asg.extra["adopt"]
        new = is_("new_price") & (adopt >= 0)
        post = on & new[:, None]
        s = np.maximum(day - adopt[:, None], 0)
        return {"addon": np.where(post, regional_multiplier(s), 1.0),
                "price": np.where(post, D.REGIONAL_NEW_PRICE / D.ADDON_PRICE, 1.0)}
    raise KeyError(exp)
