"""Pre-treatment covariates of a unit frame as a numeric design matrix.

Only attributes fixed before the launch (``raw.users``) and pre-period activity
(``pre_*`` columns of ``marts.fct_unit_metrics``, summed before ``start_date``) are allowed:
conditioning on post-treatment variables would block part of the effect (Rosenbaum 1984,
"The consequences of adjustment for a concomitant variable that has been affected by the
treatment", JRSS A 147).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Categorical user attributes (one-hot, first level dropped).
CATEGORICAL = ("plan", "company_size", "region", "device")
#: Numeric user attributes.
NUMERIC = ("engagement_score",)
#: Pre-period activity counts (log1p-transformed).
PRE_COUNTS = ("pre_sessions", "pre_ai_calls", "pre_tasks_completed", "pre_support_tickets",
              "pre_active_days", "pre_revenue")
#: Column names that must never enter a covariate set (outcomes and treatment).
POST_TREATMENT = ("sessions", "ai_calls", "tasks_completed", "support_tickets", "revenue",
                  "converted", "reactivated", "active_days", "variant", "exposure_date")


def covariate_matrix(units: pd.DataFrame, categorical=CATEGORICAL, numeric=NUMERIC,
                     pre_counts=PRE_COUNTS) -> pd.DataFrame:
    """Numeric design (no intercept): one-hot categories, ``log_tenure``, numeric columns,
    ``log1p`` of the pre-period counts. Categories are sorted so the coding is deterministic."""
    cols = [*categorical, *numeric, *pre_counts]
    bad = [c for c in cols if c in POST_TREATMENT]
    if bad:
        raise ValueError(f"post-treatment columns cannot be covariates: {bad}")
    parts = []
    for c in categorical:
        cat = pd.Categorical(units[c].astype(str), categories=sorted(units[c].astype(str).unique()))
        dummies = pd.get_dummies(cat, prefix=c, drop_first=True, dtype=float)
        dummies.index = units.index
        parts.append(dummies)
    num = pd.DataFrame(index=units.index)
    if "tenure_days" in units:
        num["log_tenure"] = np.log(np.maximum(units["tenure_days"].to_numpy(float), 1.0))
    for c in numeric:
        num[c] = units[c].to_numpy(float)
    for c in pre_counts:
        num[f"log1p_{c}"] = np.log1p(np.maximum(units[c].to_numpy(float), 0.0))
    return pd.concat([num, *parts], axis=1)
