"""How strong would an unobserved confounder have to be to explain a causal estimate away?

Next to every estimate of a design that was not randomized:

* **Robustness value** (Cinelli & Hazlett 2020, "Making sense of sensitivity: extending omitted
  variable bias", JRSS B 82(1), §4.3): for the regression-adjusted estimate with t statistic
  ``t`` on ``df`` degrees of freedom, the partial Cohen's ``f = t/√df`` and

      RV_q = ½ (√(f_q⁴ + 4 f_q²) − f_q²),  f_q = q·|f|

  — a confounder that explains ``RV_1`` of the residual variance of both the treatment and the
  outcome would bring the estimate to 0; ``RV_{1,α}`` (``f_q = |f| − |t*_{α, df−1}|/√(df−1)``,
  0 when ``f_q ≤ 0``) would make it statistically indistinguishable from 0 at level α.
  :func:`adjusted_estimate` gives the estimate corrected for a confounder of given partial
  R² with the treatment (``r2_dz``) and the outcome (``r2_yz``): |bias| = se·√df·√(r2_yz·r2_dz/(1−r2_dz))
  (their eq. 4.4/Thm 2), for the sensitivity contour.
* **E-value** (VanderWeele & Ding 2017, "Sensitivity analysis in observational research:
  introducing the E-value", Ann. Intern. Med. 167): the minimum risk ratio an unmeasured
  confounder would need with both treatment and outcome to explain the estimate away,
  E = RR + √(RR(RR − 1)); a difference of means is converted with RR ≈ exp(0.91·d), d the
  standardised difference (VanderWeele 2017, "On a square-root transformation of the odds
  ratio …", and the E-value paper's supplement for continuous outcomes). Also for the CI bound
  closest to the null (1 when the CI includes 0).
* **Placebo treatment** (as DoWhy's refuter): the treatment labels permuted at random — the
  estimator must find nothing; an interval excluding 0 says the estimator or its interval is
  biased.

Pure functions (numpy, scipy); no Dagster, no database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Robustness:
    """Omitted-variable sensitivity of one estimate."""

    t: float
    df: int
    partial_r2: float  # R² of the treatment with the outcome, given the covariates: t²/(t² + df)
    rv: float  # robustness value to bring the estimate to 0
    rv_alpha: float  # … to make it not significant at α
    e_value: float  # for the point estimate
    e_value_ci: float  # for the CI bound closest to 0 (1: the CI includes 0)

    def as_dict(self) -> dict:
        return {"t": self.t, "df": self.df, "partial_r2": self.partial_r2, "robustness_value": self.rv,
                "robustness_value_alpha": self.rv_alpha, "e_value": self.e_value, "e_value_ci": self.e_value_ci}


def robustness_value(t: float, df: int, q: float = 1.0, alpha: float | None = None) -> float:
    """Cinelli & Hazlett's RV_q (``alpha`` None) or RV_{q,α}; in [0, 1]."""
    if not (math.isfinite(t) and df > 1):
        return math.nan
    f = q * abs(t) / math.sqrt(df)
    if alpha is not None:
        f -= abs(stats.t.ppf(alpha / 2, df - 1)) / math.sqrt(df - 1)
        if f <= 0:
            return 0.0
    return 0.5 * (math.sqrt(f**4 + 4 * f**2) - f**2)


def adjusted_estimate(estimate: float, se: float, df: int, r2_dz, r2_yz):
    """The estimate after removing the largest bias a confounder with these partial R² values
    could cause (towards 0), Cinelli & Hazlett (2020) eq. (4.4). Vectorised over the R²s."""
    r2_dz = np.asarray(r2_dz, float)
    r2_yz = np.asarray(r2_yz, float)
    bias = se * math.sqrt(df) * np.sqrt(r2_yz * r2_dz / (1 - r2_dz))
    return estimate - np.sign(estimate) * bias


def e_value_rr(rr: float) -> float:
    """VanderWeele & Ding's E-value of a risk ratio (its inverse when below 1)."""
    if not math.isfinite(rr) or rr <= 0:
        return math.nan
    rr = rr if rr >= 1 else 1 / rr
    return rr + math.sqrt(rr * (rr - 1))


def e_value_difference(estimate: float, ci_low: float, ci_high: float, sd: float) -> tuple[float, float]:
    """E-values of a difference of means and of its CI bound closest to 0, through the
    standardised difference ``d = estimate / sd`` and RR ≈ exp(0.91·d)."""
    if not (math.isfinite(sd) and sd > 0):
        return math.nan, math.nan
    point = e_value_rr(math.exp(0.91 * estimate / sd))
    if ci_low <= 0 <= ci_high:
        return point, 1.0
    bound = ci_low if estimate > 0 else ci_high
    return point, e_value_rr(math.exp(0.91 * bound / sd))


def robustness(t: float, df: int, estimate: float, ci_low: float, ci_high: float, sd: float,
               alpha: float = 0.05) -> Robustness:
    """Both measures for one estimate: RV from the regression's t, E-values from the estimate."""
    e_point, e_ci = e_value_difference(estimate, ci_low, ci_high, sd)
    return Robustness(float(t), int(df), float(t * t / (t * t + df)) if df > 0 else math.nan,
                      robustness_value(t, df), robustness_value(t, df, alpha=alpha), e_point, e_ci)


def permuted_treatment(d: np.ndarray, seed: int) -> np.ndarray:
    """The treatment labels in a random order (same number treated): a placebo treatment."""
    return np.random.default_rng(seed).permutation(np.asarray(d))


def _finite(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def describe(sens: dict) -> str:
    """One sentence a product manager reads next to an observational decision, from an
    estimate's ``diagnostics['sensitivity']`` (:meth:`Robustness.as_dict` plus ``alpha``)."""
    rv, rv_a = sens.get("robustness_value"), sens.get("robustness_value_alpha")
    if not _finite(rv):
        return "robustness to unobserved confounding not computed"
    alpha = sens.get("alpha", 0.05)
    text = (f"robustness: an unobserved confounder would have to explain {rv:.0%} of the residual variance of both "
            f"the treatment and the outcome to erase the effect ({rv_a:.0%} to make it not significant at "
            f"α = {alpha:g}; Cinelli–Hazlett robustness value)")
    if _finite(sens.get("e_value")):
        text += (f", or be tied to both by a risk ratio of {sens['e_value']:.2f} "
                 f"(E-value; {sens.get('e_value_ci', float('nan')):.2f} for the interval's bound)")
    return text


def describe_trend(sens: dict, placebo: dict | None = None, pretrend_p: float | None = None) -> str:
    """The same sentence for a staggered rollout: the differential trend that would erase the
    effect next to the trend the pre-period shows, the pre-trend test and the placebo adoption."""
    parts = []
    if _finite(sens.get("breakdown_trend_per_period")):
        text = f"a differential trend of {sens['breakdown_trend_per_period']:+.4g} per period since adoption would erase the effect"
        lo, hi = sens.get("pretrend_slope_ci", [None, None])
        if _finite(sens.get("pretrend_slope")) and _finite(lo) and _finite(hi):
            text += f"; the pre-period trend is {sens['pretrend_slope']:+.4g} ({lo:+.4g} to {hi:+.4g})"
        parts.append(text)
    if pretrend_p is not None and _finite(pretrend_p):
        parts.append(f"pre-trend test p = {pretrend_p:.2g}")
    if placebo:
        verdict = "covers 0" if placebo.get("passed") else "excludes 0"
        parts.append(f"placebo adoption {placebo.get('shift_periods')} periods early: {placebo['estimate']:+.4g} "
                     f"({placebo['ci_low']:+.4g} to {placebo['ci_high']:+.4g}) {verdict}")
    return "robustness: " + "; ".join(parts) if parts else "robustness of the trends not computed"
