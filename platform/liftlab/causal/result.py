"""The common result of every estimator."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

def metric_label(design: str, metric: str) -> str:
    """The ``results.causal_effects.metric`` of a spec metric: a staggered rollout estimates it
    per unit and day on its group × day panel, an observational design per unit."""
    return f"{metric}_per_unit_day" if design == "staggered_rollout" else metric


def relative(estimate: float, ci_low: float, ci_high: float, baseline: float) -> tuple[float, float, float]:
    """Effect and interval relative to the counterfactual baseline (NaN unless it is > 0); the
    baseline is treated as known — its error is small next to the effect's for a mean over
    all units, as in a relative CI on a fixed control mean."""
    if not (isinstance(baseline, int | float) and math.isfinite(baseline) and baseline > 0):
        return math.nan, math.nan, math.nan
    return estimate / baseline, ci_low / baseline, ci_high / baseline


#: Two-sided 95 % normal quantile.
Z95 = 1.959963984540054


def critical_value(alpha: float, df: float | None = None) -> float:
    """Two-sided critical value at level 1 − α: Student's t on ``df`` degrees of freedom when
    given (few clusters), else the normal quantile."""
    from scipy import stats

    if df is not None and math.isfinite(df) and df > 0:
        return float(stats.t.ppf(1 - alpha / 2, df))
    return float(stats.norm.ppf(1 - alpha / 2))


@dataclass
class Estimate:
    """A point estimate with its standard error and 1 − α interval (95 % unless rescaled; NaN
    when not defined). ``baseline`` is the counterfactual mean of the estimand's population
    (E[Y(0)] for an ATE, E[Y(0) | treated] for an ATT): relative effects are estimate/baseline."""

    estimator: str
    estimand: str
    estimate: float
    se: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n: int = 0
    diagnostics: dict[str, Any] = field(default_factory=dict)
    baseline: float = float("nan")
    level: float = 0.95

    @classmethod
    def normal(cls, estimator: str, estimand: str, estimate: float, se: float, n: int,
               diagnostics: dict[str, Any] | None = None, z: float = Z95, baseline: float = float("nan")) -> Estimate:
        """Wald interval estimate ± z·se."""
        return cls(estimator, estimand, float(estimate), float(se), float(estimate - z * se),
                   float(estimate + z * se), int(n), dict(diagnostics or {}), float(baseline))

    def at_level(self, alpha: float) -> Estimate:
        """The same estimate with its interval at level 1 − α: estimate ± c·se, c from t on the
        estimator's ``df`` (``diagnostics['df']``, e.g. G − 1 clusters) or the normal. An estimate
        without a standard error (synthetic control: a placebo p-value instead) keeps its NaN CI."""
        if not math.isfinite(self.se):
            return replace(self, level=1 - alpha, diagnostics=dict(self.diagnostics))
        c = critical_value(alpha, self.diagnostics.get("df"))
        return replace(self, ci_low=float(self.estimate - c * self.se), ci_high=float(self.estimate + c * self.se),
                       level=1 - alpha, diagnostics={**self.diagnostics, "critical_value": c})

    def covers(self, value: float) -> bool:
        return bool(self.ci_low <= value <= self.ci_high)

    def as_row(self) -> dict[str, Any]:
        return {"estimator": self.estimator, "estimand": self.estimand, "estimate": self.estimate,
                "se": self.se, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n,
                "baseline": self.baseline, "level": self.level, "diagnostics": self.diagnostics}
