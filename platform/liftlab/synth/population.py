"""User attributes of one chunk of the synthetic population.

All draws are vectorised over the users of a chunk and come from the chunk's
own population stream, so a chunk's users depend only on (seed, chunk index,
chunk size).  Formulas: docs/synthetic_world.md, section "Users".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import design as D


@dataclass
class Population:
    """Attributes of the users of one chunk (arrays of equal length ``n``).

    Categorical attributes are integer codes into the tuples of ``design``.
    ``latent`` (g) is the latent engagement that drives the rates; the
    observed ``score`` is a noisy standardised measurement of it.
    ``wb_type`` is the latent win-back type (codes into
    ``design.WINBACK_TYPES``); it only matters for ``at_risk`` users.
    """

    user_id: np.ndarray
    plan: np.ndarray
    size: np.ndarray
    region: np.ndarray
    device: np.ndarray
    tenure: np.ndarray
    latent: np.ndarray
    score: np.ndarray
    level: np.ndarray
    billing_offset: np.ndarray
    at_risk: np.ndarray
    wb_type: np.ndarray

    @property
    def n(self) -> int:
        return len(self.user_id)


def categorical(rng: np.random.Generator, p: np.ndarray, n: int) -> np.ndarray:
    """n draws from the categorical distribution p (inverse-CDF method)."""
    cdf = np.cumsum(p)
    cdf[-1] = 1.0
    return np.searchsorted(cdf, rng.random(n), side="right").astype(np.int8)


def conditional_categorical(rng: np.random.Generator, p_rows: np.ndarray,
                            given: np.ndarray) -> np.ndarray:
    """One draw per element of ``given`` from row ``p_rows[given]``."""
    cdf = np.cumsum(p_rows, axis=1)
    cdf[:, -1] = 1.0
    u = rng.random(len(given))
    return (u[:, None] >= cdf[given]).sum(axis=1).astype(np.int8)


def winback_type_scores(plan, size, device, tenure, score) -> np.ndarray:
    """Observable part of the multinomial-logit win-back type model, (n, 4):
    ``WINBACK_TYPE_INTERCEPT + WINBACK_TYPE_SIGNAL * x'beta`` (the type is the argmax of
    these scores plus standard Gumbel noise, so SIGNAL sets how learnable it is).

    Columns follow ``design.WINBACK_TYPES``: persuadables are new, mobile,
    small-company users; sure things are the more engaged; lost causes the
    least engaged basic-plan users; sleeping dogs long-tenured desktop users
    of larger companies (who resent marketing email).
    """
    new = (tenure < 180).astype(float)
    long_ = (tenure > 730).astype(float)
    mobile = (device == D.MOBILE).astype(float)
    desktop = (device == D.DESKTOP).astype(float)
    small = (size == 0).astype(float)
    big = (size >= 2).astype(float)
    basic = (plan == D.BASIC).astype(float)
    pro_ent = (plan >= D.PRO).astype(float)
    eng = score + 1.2
    s = np.empty((len(plan), 4))
    s[:, 0] = 1.0 * new + 0.8 * mobile + 0.5 * small - 0.4 * big
    s[:, 1] = 1.2 * eng + 0.4 * pro_ent
    s[:, 2] = -1.2 * eng + 0.5 * basic
    s[:, 3] = 1.0 * long_ + 0.7 * big + 0.4 * desktop
    return D.WINBACK_TYPE_SIGNAL * s + D.WINBACK_TYPE_INTERCEPT


def draw_population(rng: np.random.Generator, n: int, first_index: int,
                    user_id_offset: int, pre_days: int) -> Population:
    """Draw the attributes of ``n`` users whose 0-based world index starts at
    ``first_index``; user_id = user_id_offset + index + 1."""
    user_id = np.arange(first_index + 1, first_index + n + 1, dtype=np.int64) + user_id_offset
    plan = categorical(rng, D.PLAN_P, n)
    size = conditional_categorical(rng, D.SIZE_P_BY_PLAN, plan)
    region = categorical(rng, D.REGION_P, n)
    device = categorical(rng, D.DEVICE_P, n)

    trial = plan == D.TRIAL
    x_trial = np.minimum(np.floor(rng.exponential(D.TRIAL_TENURE_MEAN, n)), D.TRIAL_TENURE_CAP)
    x_paid = np.minimum(np.floor(rng.lognormal(D.PAID_TENURE_LOG_MEDIAN, D.PAID_TENURE_LOG_SD, n)),
                        D.PAID_TENURE_CAP)
    tenure = (pre_days + np.where(trial, x_trial, x_paid)).astype(np.int32)

    u = rng.standard_normal(n)
    eps = rng.standard_normal(n)
    latent = D.PLAN_ENGAGEMENT_SHIFT[plan] + D.ENGAGEMENT_LATENT_SD * u
    score = (latent + D.ENGAGEMENT_NOISE_SD * eps - D.ENGAGEMENT_MEAN) / D.ENGAGEMENT_SD
    level = np.searchsorted(D.ENGAGEMENT_CUTS, score, side="right").astype(np.int8)

    billing_offset = rng.integers(0, 30, n).astype(np.int16)

    gumbel = rng.gumbel(size=(n, 4))
    wb_type = np.argmax(winback_type_scores(plan, size, device, tenure, score) + gumbel,
                        axis=1).astype(np.int8)
    at_risk = (plan != D.TRIAL) & (score < D.WINBACK_SCORE_THRESHOLD)

    return Population(user_id=user_id, plan=plan, size=size, region=region, device=device,
                      tenure=tenure, latent=latent, score=score, level=level,
                      billing_offset=billing_offset, at_risk=at_risk, wb_type=wb_type)
