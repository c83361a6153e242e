"""Winsorization at a cap fixed from the pre-period.

Capping heavy-tailed outcomes (revenue) at a high percentile cuts variance at the price of
a small bias.  The cap must not depend on the treatment, so it is fixed from the pre-period
distribution of the same metric (the cap of Deng, Xu, Kohavi & Walker (2013) "Improving the
sensitivity of online controlled experiments by utilizing pre-experiment data", WSDM '13,
§5, and of GrowthBook's "capping" with a pre-computed value): ``cap = scale · q_p(pre)``,
where ``scale`` converts the pre-period window length to the metric window length (e.g.
28/14 days).  The same cap applies to both arms and, for CUPED, to the covariate.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pre_period_cap", "winsorize"]


def pre_period_cap(pre_values, percentile: float, scale: float = 1.0) -> float:
    """``scale ×`` the ``percentile`` (in (0, 1)) quantile of the pre-period values (NaN ignored)."""
    if not (0.0 < percentile < 1.0):
        raise ValueError(f"percentile must be in (0, 1), got {percentile!r}")
    x = np.asarray(pre_values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan")
    return float(scale * np.quantile(x, percentile, method="linear"))


def winsorize(values, cap: float) -> np.ndarray:
    """Values capped from above at ``cap`` (a NaN cap leaves them unchanged)."""
    v = np.asarray(values, dtype=np.float64)
    return v if np.isnan(cap) else np.minimum(v, cap)
