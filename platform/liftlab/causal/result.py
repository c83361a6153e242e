"""The common result of every estimator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Two-sided 95 % normal quantile.
Z95 = 1.959963984540054


@dataclass
class Estimate:
    """A point estimate with its standard error and 95 % interval (NaN when not defined)."""

    estimator: str
    estimand: str
    estimate: float
    se: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n: int = 0
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def normal(cls, estimator: str, estimand: str, estimate: float, se: float, n: int,
               diagnostics: dict[str, Any] | None = None, z: float = Z95) -> Estimate:
        """Wald interval estimate ± z·se."""
        return cls(estimator, estimand, float(estimate), float(se), float(estimate - z * se),
                   float(estimate + z * se), int(n), dict(diagnostics or {}))

    def covers(self, value: float) -> bool:
        return bool(self.ci_low <= value <= self.ci_high)

    def as_row(self) -> dict[str, Any]:
        return {"estimator": self.estimator, "estimand": self.estimand, "estimate": self.estimate,
                "se": self.se, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n,
                "diagnostics": self.diagnostics}
