"""Cross-fitted propensity scores and overlap diagnostics.

* Propensity score: Rosenbaum & Rubin (1983), *Biometrika* 70.
* Cross-fitting (each unit's score from a model that did not see it): Chernozhukov et al.
  (2018), "Double/debiased machine learning", *Econometrics Journal* 21.
* Overlap and trimming: Crump, Hotz, Imbens & Mitnik (2009), *Biometrika* 96; clipping of
  extreme scores: Lee, Lessler & Stuart (2011), *Statistics in Medicine* 30.
"""

from __future__ import annotations

import numpy as np


def fold_ids(n: int, n_folds: int, seed: int) -> np.ndarray:
    """A random balanced fold label 0..n_folds−1 per unit."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(n) % n_folds)


def _classifier(model: str, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if model == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=200))
    if model == "gbm":
        return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, max_leaf_nodes=15,
                                              min_samples_leaf=40, l2_regularization=1.0,
                                              early_stopping=False, random_state=seed)
    raise ValueError(f"unknown propensity model {model!r}")


def cross_fit_propensity(X, d, model: str = "logistic", n_folds: int = 5, seed: int = 0,
                         folds: np.ndarray | None = None) -> np.ndarray:
    """Out-of-fold P(D=1 | X) for every unit (``logistic`` or ``gbm``), single-threaded."""
    from threadpoolctl import threadpool_limits

    X = np.asarray(X, float)
    d = np.asarray(d, int)
    folds = fold_ids(len(d), n_folds, seed) if folds is None else folds
    e = np.empty(len(d))
    with threadpool_limits(1):
        for k in np.unique(folds):
            test = folds == k
            clf = _classifier(model, seed).fit(X[~test], d[~test])
            e[test] = clf.predict_proba(X[test])[:, 1]
    return e


def clip(e, bounds: tuple[float, float] = (0.01, 0.99)) -> np.ndarray:
    """Scores clipped into ``bounds`` (weights stay finite)."""
    return np.clip(np.asarray(e, float), *bounds)


def overlap_diagnostics(e, d, bounds: tuple[float, float] = (0.01, 0.99),
                        crump: tuple[float, float] = (0.1, 0.9)) -> dict:
    """Range of the scores per arm, the share clipped, the share outside the Crump et al.
    (2009) [0.1, 0.9] region, and the effective sample sizes of the ATE weights."""
    e = np.asarray(e, float)
    d = np.asarray(d, int)
    ec = clip(e, bounds)
    w1, w0 = 1 / ec[d == 1], 1 / (1 - ec[d == 0])
    ess = lambda w: float(w.sum() ** 2 / (w ** 2).sum())  # noqa: E731 - Kish (1965)
    return {
        "e_min_treated": float(e[d == 1].min()), "e_max_treated": float(e[d == 1].max()),
        "e_min_control": float(e[d == 0].min()), "e_max_control": float(e[d == 0].max()),
        "share_clipped": float(((e < bounds[0]) | (e > bounds[1])).mean()),
        "clip_bounds": list(bounds),
        "share_outside_crump": float(((e < crump[0]) | (e > crump[1])).mean()),
        "ess_treated": ess(w1), "ess_control": ess(w0),
        "n_treated": int((d == 1).sum()), "n_control": int((d == 0).sum()),
    }


def crump_trim_mask(e, bounds: tuple[float, float] = (0.1, 0.9)) -> np.ndarray:
    """Units kept by the Crump et al. (2009) rule of thumb (the estimand becomes the effect on
    the overlap population, reported separately)."""
    e = np.asarray(e, float)
    return (e >= bounds[0]) & (e <= bounds[1])
