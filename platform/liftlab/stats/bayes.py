"""Bayesian summary: chance to beat control and expected loss under a weak normal prior.

As GrowthBook's ``gbstats`` Bayesian engine (``EffectBayesianABTest``): the likelihood of the
effect is normal, ``δ̂ ~ N(δ, V)`` (relative lift with its delta-method variance), the prior is
``δ ~ N(0, τ²)`` (weak: τ = 0.3, i.e. a ±60 % lift is a 2-σ prior event), so the posterior is

    precision = 1/V + 1/τ²,   mean = (δ̂/V) / precision,   sd = precision^−½

(conjugate normal–normal; Gelman et al., *Bayesian Data Analysis*, 3rd ed., §2.5).  With
``good = +1`` for higher-is-better metrics (``−1`` otherwise) and ``g = good·δ``:

* chance to beat control: ``P(g > 0) = Φ(μ_g/σ)``;
* expected loss of shipping the variant: ``E[max(0, −g)] = σφ(μ_g/σ) − μ_g Φ(−μ_g/σ)``;
* expected loss of keeping the baseline: ``E[max(0, g)] = σφ(μ_g/σ) + μ_g Φ(μ_g/σ)``

(the normal partial expectations; gbstats' ``risk``).  Vectorised; NaN where ``V`` is not finite.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as _st

__all__ = ["posterior", "bayes_summary", "DEFAULT_PRIOR_SD"]

DEFAULT_PRIOR_SD = 0.3


def posterior(estimate, var, prior_sd: float = DEFAULT_PRIOR_SD, prior_mean: float = 0.0):
    est = np.asarray(estimate, dtype=np.float64)
    v = np.asarray(var, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = 1.0 / v + 1.0 / prior_sd**2
        mean = (est / v + prior_mean / prior_sd**2) / prec
        sd = 1.0 / np.sqrt(prec)
    ok = np.isfinite(est) & np.isfinite(v) & (v > 0)
    return np.where(ok, mean, np.nan), np.where(ok, sd, np.nan)


def bayes_summary(estimate, var, good=1.0, prior_sd: float = DEFAULT_PRIOR_SD) -> dict[str, np.ndarray]:
    """``chance_to_win``, ``expected_loss`` (ship) and ``expected_loss_baseline`` (keep)."""
    mean, sd = posterior(estimate, var, prior_sd)
    mg = mean * np.asarray(good, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = mg / sd
        pdf, cdf = _st.norm.pdf(z), _st.norm.cdf(z)
        return {
            "post_mean": mean,
            "post_sd": sd,
            "chance_to_win": cdf,
            "expected_loss": sd * pdf - mg * (1.0 - cdf),
            "expected_loss_baseline": sd * pdf + mg * cdf,
        }
