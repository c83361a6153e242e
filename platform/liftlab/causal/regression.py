"""OLS with heteroskedasticity- and cluster-robust covariance; regression adjustment.

* HC1: White (1980), *Econometrica* 48; MacKinnon & White (1985), *J. Econometrics* 29.
* Cluster-robust (CR1, small-sample factor G/(G−1)·(N−1)/(N−K)): Cameron & Miller (2015),
  "A practitioner's guide to cluster-robust inference", *J. Human Resources* 50(2).
* Regression adjustment with treatment × centred-covariate interactions: Imbens & Wooldridge
  (2009), *J. Econ. Literature* 47, §5.3; Lin (2013), *Annals of Applied Statistics* 7.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liftlab.causal.result import Estimate


@dataclass
class OlsFit:
    coef: np.ndarray
    cov: np.ndarray
    resid: np.ndarray
    n: int
    k: int
    n_clusters: int | None = None

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.maximum(np.diag(self.cov), 0))


def ols(y, X, weights=None, cov_type: str = "HC1", clusters=None) -> OlsFit:
    """(Weighted) least squares with ``HC1`` or ``cluster`` (CR1) covariance.

    With weights w the estimator is WLS, bread (X'WX)⁻¹ and meat Σ w²e²xx' (HC1) or
    Σ_g (Σ_{i∈g} w_i e_i x_i)(…)' (cluster), as in statsmodels' WLS robust covariances.
    """
    y = np.asarray(y, float)
    X = np.asarray(X, float)
    n, k = X.shape
    w = np.ones(n) if weights is None else np.asarray(weights, float)
    Xw = X * w[:, None]
    xtwx = X.T @ Xw
    bread = np.linalg.pinv(xtwx)
    coef = bread @ (Xw.T @ y)
    resid = y - X @ coef
    score = Xw * resid[:, None]
    if cov_type == "HC1":
        meat = score.T @ score * n / max(n - k, 1)
        g = None
    elif cov_type == "cluster":
        if clusters is None:
            raise ValueError("cluster covariance needs clusters")
        _, codes = np.unique(np.asarray(clusters), return_inverse=True)
        g = int(codes.max()) + 1
        summed = np.zeros((g, k))
        np.add.at(summed, codes, score)
        meat = summed.T @ summed * (g / max(g - 1, 1)) * ((n - 1) / max(n - k, 1))
    else:
        raise ValueError(f"unknown cov_type {cov_type!r}")
    return OlsFit(coef, bread @ meat @ bread, resid, n, k, g)


def regression_adjustment(y, d, X, estimand: str = "ATE") -> Estimate:
    """Y ~ 1 + D + (X − x̄) + D·(X − x̄), HC1 covariance; the coefficient of D is the ATE when
    x̄ is the sample mean and the ATT when x̄ is the treated units' mean (Imbens & Wooldridge
    2009). The SE treats x̄ as fixed (it ignores the small sampling error of the centring)."""
    y = np.asarray(y, float)
    d = np.asarray(d, float)
    X = np.asarray(X, float)
    centre = X.mean(axis=0) if estimand == "ATE" else X[d == 1].mean(axis=0)
    Xc = X - centre
    keep = Xc.std(axis=0) > 0
    Xc = Xc[:, keep]
    design = np.column_stack([np.ones_like(d), d, Xc, Xc * d[:, None]])
    fit = ols(y, design, cov_type="HC1")
    return Estimate.normal("regression_adjustment", estimand, fit.coef[1], fit.se[1], len(y),
                           {"covariates": int(keep.sum()), "cov_type": "HC1", "interacted": True,
                            "residual_df": int(fit.n - fit.k)}, baseline=float(fit.coef[0]))
