"""Pre-treatment confounders of a unit frame as a numeric design matrix.

Only columns fixed before the launch are allowed — unit attributes, dimensions and pre-period
twins ``pre_<metric>`` (the spec checks this, naming the key): conditioning on a
post-treatment variable would block part of the effect (Rosenbaum 1984, "The consequences of
adjustment for a concomitant variable that has been affected by the treatment", JRSS A 147).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def covariate_matrix(units: pd.DataFrame, confounders: Sequence[str], outcomes: Sequence[str] = ()) -> pd.DataFrame:
    """Numeric design (no intercept): text and boolean columns one-hot (levels sorted, first
    dropped, so the coding is deterministic); numeric columns as they are, except pre-period
    twins (``pre_*``), which are counts and sums of skewed activity: ``log1p`` of their
    non-negative values. Missing numbers become the column mean plus a ``<column>__missing``
    indicator; a missing category is its own level."""
    bad = [c for c in confounders if c in set(outcomes) or c == "variant"]
    if bad:
        raise ValueError(f"post-treatment columns cannot be confounders: {bad}")
    parts = []
    numbers = pd.DataFrame(index=units.index)
    for c in confounders:
        column = units[c]
        if column.dtype == bool or not pd.api.types.is_numeric_dtype(column):
            values = column.astype(str).where(column.notna(), "(missing)")
            cat = pd.Categorical(values, categories=sorted(values.unique()))
            dummies = pd.get_dummies(cat, prefix=c, drop_first=True, dtype=float)
            dummies.index = units.index
            parts.append(dummies)
            continue
        x = column.to_numpy(float)
        missing = np.isnan(x)
        if missing.any():
            numbers[f"{c}__missing"] = missing.astype(float)
            x = np.where(missing, np.nanmean(x) if (~missing).any() else 0.0, x)
        if c.startswith("pre_") and (x >= 0).all():
            numbers[f"log1p_{c}"] = np.log1p(x)
        else:
            numbers[c] = x
    return pd.concat([numbers, *parts], axis=1)
