"""Naive difference, inverse-probability weighting and augmented IPW (doubly robust).

* IPW with estimated scores and normalised (Hajek) weights: Hirano, Imbens & Ridder (2003),
  *Econometrica* 71; Hájek (1971). Stabilized weights P(D=d)/P(D=d|X): Robins, Hernán &
  Brumback (2000), *Epidemiology* 11 (with Hajek normalisation they give the same point
  estimate; they are reported for their spread).
* AIPW: Robins, Rotnitzky & Zhao (1994), *JASA* 89; cross-fitted with an influence-function
  CI: Chernozhukov et al. (2018), *Econometrics Journal* 21 (ATE: eq. 5.3; ATT: §5.1).
"""

from __future__ import annotations

import numpy as np

from liftlab.causal.propensity import clip, fold_ids
from liftlab.causal.result import Estimate


def naive_difference(y, d) -> Estimate:
    """Difference of arm means with the Welch (unequal-variance) standard error."""
    y = np.asarray(y, float)
    d = np.asarray(d, bool)
    y1, y0 = y[d], y[~d]
    se = np.sqrt(y1.var(ddof=1) / len(y1) + y0.var(ddof=1) / len(y0))
    return Estimate.normal("naive_difference", "ATE", y1.mean() - y0.mean(), se, len(y),
                           {"mean_treated": float(y1.mean()), "mean_control": float(y0.mean())},
                           baseline=float(y0.mean()))


def ipw(y, d, e, estimand: str = "ATE", bounds=(0.01, 0.99)) -> Estimate:
    """Hajek IPW. ATE weights P(D)/e and (1−P(D))/(1−e) (stabilized); ATT weights 1 for the
    treated and e/(1−e) for controls. The SE is the influence function's with the scores
    treated as known, which is conservative for the ATE (Hirano, Imbens & Ridder 2003)."""
    y = np.asarray(y, float)
    d = np.asarray(d, float)
    e = clip(e, bounds)
    n = len(y)
    p = d.mean()
    if estimand == "ATE":
        w1, w0 = d * p / e, (1 - d) * (1 - p) / (1 - e)
    elif estimand == "ATT":
        w1, w0 = d, (1 - d) * e / (1 - e)
    else:
        raise ValueError(estimand)
    mu1, mu0 = (w1 * y).sum() / w1.sum(), (w0 * y).sum() / w0.sum()
    psi = w1 / w1.mean() * (y - mu1) - w0 / w0.mean() * (y - mu0)
    se = psi.std(ddof=1) / np.sqrt(n)
    nz = lambda w: w[w > 0]  # noqa: E731
    return Estimate.normal("ipw_hajek", estimand, mu1 - mu0, se, n, {
        "weights": "stabilized" if estimand == "ATE" else "att_odds",
        "max_weight_treated": float(nz(w1).max() / nz(w1).mean()),
        "max_weight_control": float(nz(w0).max() / nz(w0).mean()),
        "ess_treated": float(w1.sum() ** 2 / (w1 ** 2).sum()),
        "ess_control": float(w0.sum() ** 2 / (w0 ** 2).sum()),
        "mean_stabilized_weight": float(((w1 + w0)).mean()) if estimand == "ATE" else None,
    }, baseline=mu0)


def _regressor(model: str, seed: int):
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression

    if model == "linear":
        return LinearRegression()
    if model == "gbm":
        return HistGradientBoostingRegressor(max_iter=100, learning_rate=0.1, max_leaf_nodes=15,
                                             min_samples_leaf=40, l2_regularization=1.0,
                                             early_stopping=False, random_state=seed)
    raise ValueError(f"unknown outcome model {model!r}")


def cross_fit_outcomes(y, d, X, model: str = "linear", folds=None, n_folds: int = 5,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold E[Y | X, D=1] and E[Y | X, D=0] (one model per arm and fold)."""
    from threadpoolctl import threadpool_limits

    y = np.asarray(y, float)
    d = np.asarray(d, int)
    X = np.asarray(X, float)
    folds = fold_ids(len(y), n_folds, seed) if folds is None else folds
    m1, m0 = np.empty(len(y)), np.empty(len(y))
    with threadpool_limits(1):
        for k in np.unique(folds):
            test = folds == k
            for arm, out in ((1, m1), (0, m0)):
                fit = ~test & (d == arm)
                out[test] = _regressor(model, seed).fit(X[fit], y[fit]).predict(X[test])
    return m1, m0


def aipw(y, d, e, m1, m0, estimand: str = "ATE", bounds=(0.01, 0.99),
         estimator: str = "aipw") -> Estimate:
    """Doubly robust estimate from (cross-fitted) nuisances with its influence-function CI.

    ATE: ψ = m1 − m0 + D(Y−m1)/e − (1−D)(Y−m0)/(1−e); θ = mean ψ; se = sd(ψ)/√n.
    ATT: θ = Σ[D(Y−m0) − (1−D)·e/(1−e)·(Y−m0)] / ΣD, influence (ψ − Dθ)/P(D=1).
    """
    y = np.asarray(y, float)
    d = np.asarray(d, float)
    e = clip(e, bounds)
    n = len(y)
    if estimand == "ATE":
        psi = m1 - m0 + d * (y - m1) / e - (1 - d) * (y - m0) / (1 - e)
        theta = psi.mean()
        infl = psi - theta
        baseline = float((m0 + (1 - d) * (y - m0) / (1 - e)).mean())  # AIPW estimate of E[Y(0)]
    elif estimand == "ATT":
        p = d.mean()
        psi = d * (y - m0) - (1 - d) * e / (1 - e) * (y - m0)
        theta = psi.sum() / d.sum()
        infl = (psi - d * theta) / p
        baseline = float(y[d == 1].mean() - theta)  # E[Y(0) | treated]
    else:
        raise ValueError(estimand)
    se = infl.std(ddof=1) / np.sqrt(n)
    return Estimate.normal(estimator, estimand, theta, se, n, {"clip_bounds": list(bounds)}, baseline=baseline)


def aipw_cross_fit(y, d, X, estimands=("ATE", "ATT"), propensity_model: str = "logistic",
                   outcome_model: str = "linear", n_folds: int = 5, seed: int = 0,
                   e=None, bounds=(0.01, 0.99)) -> dict[str, Estimate]:
    """Cross-fitted AIPW: propensity and outcome models fitted on K−1 folds, evaluated on the
    held-out fold (Chernozhukov et al. 2018, DML2 pooled over folds)."""
    from liftlab.causal.propensity import cross_fit_propensity

    folds = fold_ids(len(y), n_folds, seed)
    if e is None:
        e = cross_fit_propensity(X, d, propensity_model, folds=folds, seed=seed)
    m1, m0 = cross_fit_outcomes(y, d, X, outcome_model, folds=folds, seed=seed)
    name = f"aipw_{propensity_model}_{outcome_model}"
    out = {}
    for est in estimands:
        r = aipw(y, d, e, m1, m0, est, bounds, estimator=name)
        r.diagnostics.update({"propensity_model": propensity_model, "outcome_model": outcome_model,
                              "n_folds": n_folds})
        out[est] = r
    return out
