"""Calendar, region x day factors and untreated daily rates.

Every outcome of the world is a daily Poisson count (or, for conversion, a
daily hazard) whose rate is a product of user, calendar and region-day
factors; treatments multiply these rates (experiments.py).  Keeping the rates
multiplicative and the counts Poisson is what makes the exact expectations in
truth.py tractable.  Formulas: docs/synthetic_world.md, "Daily rates".
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np

from . import design as D
from .config import WorldConfig
from .population import Population

US_PER_DAY = 86_400_000_000
_EPOCH = datetime.date(1970, 1, 1)

# channel names of the rate arrays
CHANNELS = ("sess", "ai", "task", "sup", "addon", "price", "hazard")


@dataclass
class Calendar:
    """Day grid: column j of every (n, T) array is relative day ``day[j]``."""

    day: np.ndarray          # relative day, -pre_days .. experiment_days-1
    weekday: np.ndarray      # 0 = Monday
    day_start_us: np.ndarray  # microseconds since the Unix epoch, UTC
    pre_days: int
    experiment_days: int

    @property
    def T(self) -> int:
        return len(self.day)

    @property
    def window(self) -> slice:
        """Columns of the experiment window (days 0..experiment_days-1)."""
        return slice(self.pre_days, self.T)


def make_calendar(cfg: WorldConfig) -> Calendar:
    day = np.arange(-cfg.pre_days, cfg.experiment_days)
    start_ordinal = (cfg.start_date - _EPOCH).days
    weekday = (cfg.start_date.weekday() + day) % 7
    day_start_us = (start_ordinal + day).astype(np.int64) * US_PER_DAY
    return Calendar(day=day, weekday=weekday, day_start_us=day_start_us,
                    pre_days=cfg.pre_days, experiment_days=cfg.experiment_days)


def region_day_factors(rng: np.random.Generator, cal: Calendar) -> np.ndarray:
    """Multiplicative region x day activity factor R, shape (regions, T).

    log R[r, j] = level_r + trend * day_j + sum_f L[r, f] F[f, j] + eps[r, j]
    with two stationary AR(1) common factors F (phi 0.8), region loadings L
    and idiosyncratic noise eps: a low-rank structure in which every region's
    path is close to a combination of the others' (what synthetic control
    assumes).
    """
    n_r, T = len(D.REGIONS), cal.T
    level = rng.normal(0.0, D.REGION_LEVEL_SD, n_r)
    loading = rng.normal(D.REGION_LOADING_MEAN, D.REGION_LOADING_SD, (n_r, 2))
    phi, sd = D.REGION_FACTOR_PHI, D.REGION_FACTOR_SD
    F = np.empty((2, T))
    F[:, 0] = rng.normal(0.0, sd / np.sqrt(1 - phi**2), 2)
    innov = rng.normal(0.0, sd, (2, T))
    for j in range(1, T):  # loop over days
        F[:, j] = phi * F[:, j - 1] + innov[:, j]
    eps = rng.normal(0.0, D.REGION_IDIO_SD, (n_r, T))
    return np.exp(level[:, None] + D.TREND_PER_DAY * cal.day[None, :] + loading @ F + eps)


@dataclass
class BaseRates:
    """Untreated rates of one chunk, each (n, T), plus deterministic payments.

    ``sess``  sessions per day;  ``ai`` / ``task`` AI calls / completed tasks
    per *active* day (a day with >= 1 session); ``sup`` support tickets per
    day; ``addon`` AI add-on purchases per day at unit price ``price``;
    ``hazard`` daily trial->paid conversion hazard (0 outside the window and
    for paid users); ``billing`` subscription payment due on each day (USD);
    ``conv_price`` expected price paid at conversion (per user).
    """

    rates: dict[str, np.ndarray]
    billing: np.ndarray
    conv_price: np.ndarray


def base_rates(pop: Population, cal: Calendar, R: np.ndarray) -> BaseRates:
    g = pop.latent
    wd = cal.weekday
    Rr = R[pop.region]  # (n, T)
    dormancy = np.where(pop.at_risk, D.WINBACK_DORMANCY[pop.wb_type], 1.0)

    user_sess = (D.SESSION_BASE * D.SESSION_PLAN[pop.plan] * D.SESSION_SIZE[pop.size]
                 * D.SESSION_DEVICE[pop.device] * np.exp(D.SESSION_ENGAGEMENT * g) * dormancy)
    sess = user_sess[:, None] * D.WEEKDAY_ACTIVITY[wd][None, :] * Rr

    user_ai = D.AI_BASE * D.AI_PLAN[pop.plan] * np.exp(D.AI_ENGAGEMENT * g)
    ai = user_ai[:, None] * Rr ** D.AI_REGION_POWER

    user_task = (D.TASK_BASE * D.TASK_PLAN[pop.plan] * D.TASK_SIZE[pop.size]
                 * np.exp(D.TASK_ENGAGEMENT * g))
    task = np.repeat(user_task[:, None], cal.T, axis=1)

    user_sup = (D.SUPPORT_BASE * D.SUPPORT_PLAN[pop.plan] * D.SUPPORT_SIZE[pop.size]
                * np.exp(D.SUPPORT_ENGAGEMENT * g))
    sup = user_sup[:, None] * D.WEEKDAY_SUPPORT[wd][None, :]

    user_addon = D.ADDON_BASE * D.ADDON_PLAN[pop.plan] * np.exp(D.ADDON_ENGAGEMENT * g) * dormancy
    addon = user_addon[:, None] * Rr
    price = np.full((pop.n, cal.T), D.ADDON_PRICE)

    trial = pop.plan == D.TRIAL
    user_h = np.where(trial, D.CONVERSION_BASE * D.CONVERSION_SIZE[pop.size]
                      * np.exp(D.CONVERSION_ENGAGEMENT * g), 0.0)
    in_window = (cal.day >= 0).astype(float)
    hazard = user_h[:, None] * (D.WEEKDAY_CONVERSION[wd] * in_window)[None, :]

    # subscription billing: paid users pay their plan price on days d with
    # (d - billing_offset) mod 30 == 0
    due = ((cal.day[None, :] - pop.billing_offset[:, None].astype(np.int64)) % 30) == 0
    billing = due * D.PLAN_PRICE[pop.plan][:, None]

    conv_price = np.where(trial, D.CONVERSION_PRICE_BY_SIZE[pop.size], 0.0)
    return BaseRates(rates={"sess": sess, "ai": ai, "task": task, "sup": sup, "addon": addon,
                            "price": price, "hazard": hazard},
                     billing=billing, conv_price=conv_price)
