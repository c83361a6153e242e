"""Always-valid confidence sequences for A/B tests (daily looks keep the error rate).

Asymptotic confidence sequence of Waudby-Smith, Arnold, Wu, Howard & Ramdas (2023) "Time-
uniform central limit theory and asymptotic confidence sequences", Annals of Statistics
(arXiv:2103.06476), Theorem 2.2 / eq. (15) — the two-sided normal-mixture boundary of
Robbins (1970) and Howard, Ramdas, McAuliffe & Sekhon (2021) "Time-uniform, nonparametric,
nonasymptotic confidence sequences", Annals of Statistics 49(2), applied to the CLT-scaled
estimate.  With ``N`` units so far and the estimator variance ``V`` (so ``σ² = N·V``)::

    half-width = σ · sqrt( 2(Nρ² + 1)/(N²ρ²) · log( sqrt(Nρ² + 1)/α ) )

This is the formula GrowthBook's ``gbstats`` uses for its sequential tests
(``sequential_interval_halfwidth``), with the mixture parameter ``ρ`` tuned so the boundary
is tightest at ``N = τ`` units (``sequential_rho``; gbstats' ``sequential_tuning_parameter``,
default 5000)::

    ρ = sqrt( (−2 log α + log(−2 log α + 1)) / τ )

The interval holds *simultaneously over all N* with probability ≥ 1 − α (asymptotically), so
an analyst may look every day and stop as soon as it excludes 0.  Vectorised.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sequential_rho", "cs_halfwidth", "confidence_sequence"]

DEFAULT_TAU = 5_000.0


def sequential_rho(alpha, tau: float = DEFAULT_TAU):
    """Mixture parameter ρ optimising the boundary width at ``tau`` units (gbstats); ``alpha``
    may be an array (one level per row, e.g. a Bonferroni share of α)."""
    la = -2.0 * np.log(alpha)
    rho = np.sqrt((la + np.log(la + 1.0)) / tau)
    return float(rho) if np.ndim(rho) == 0 else rho


def cs_halfwidth(var, n_total, alpha=0.05, tau: float = DEFAULT_TAU) -> np.ndarray:
    """Half-width of the two-sided asymptotic CS for an estimate with variance ``var`` at ``n_total``
    units; ``alpha`` a level or an array of levels (one per row)."""
    var = np.asarray(var, dtype=np.float64)
    n = np.asarray(n_total, dtype=np.float64)
    alpha = np.asarray(alpha, dtype=np.float64)
    rho2 = np.asarray(sequential_rho(alpha, tau)) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        s2 = var * n
        w = np.sqrt(s2) * np.sqrt(2.0 * (n * rho2 + 1.0) / (n * n * rho2) * np.log(np.sqrt(n * rho2 + 1.0) / alpha))
    return np.where(n > 0, w, np.nan)


def confidence_sequence(estimate, var, n_total, alpha=0.05, tau: float = DEFAULT_TAU):
    """(low, high) of the always-valid CS around ``estimate``."""
    w = cs_halfwidth(var, n_total, alpha, tau)
    est = np.asarray(estimate, dtype=np.float64)
    return est - w, est + w
