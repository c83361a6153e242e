"""Covariate balance: standardized mean differences (Austin 2009, "Balance diagnostics for
comparing the distribution of baseline covariates between treatment groups in
propensity-score matched samples", *Statistics in Medicine* 28). |SMD| < 0.1 is the usual
threshold of negligible imbalance."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _wmean_var(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = (w[:, None] * x).sum(0) / w.sum()
    v = (w[:, None] * (x - m) ** 2).sum(0) / w.sum()
    return m, v


def smd(X, d, w_after=None, names=None) -> pd.DataFrame:
    """SMD per covariate before (unweighted) and, with ``w_after`` (e.g. matching counts or
    weights, 0 = not used), after adjustment. The denominator is the pooled SD of the
    unadjusted sample, √((s²_t + s²_c)/2), in both columns so that only the means move."""
    X = np.asarray(X, float)
    d = np.asarray(d, bool)
    names = list(names) if names is not None else [f"x{j}" for j in range(X.shape[1])]
    ones = np.ones(len(d))
    m1, v1 = _wmean_var(X[d], ones[d])
    m0, v0 = _wmean_var(X[~d], ones[~d])
    sd = np.sqrt((v1 + v0) / 2)
    sd = np.where(sd > 0, sd, 1.0)
    out = pd.DataFrame({"covariate": names, "mean_treated": m1, "mean_control": m0,
                        "smd_before": (m1 - m0) / sd})
    if w_after is not None:
        w = np.asarray(w_after, float)
        a1, _ = _wmean_var(X[d & (w > 0)], w[d & (w > 0)])
        a0, _ = _wmean_var(X[~d & (w > 0)], w[~d & (w > 0)])
        out["mean_treated_after"] = a1
        out["mean_control_after"] = a0
        out["smd_after"] = (a1 - a0) / sd
    return out
