"""Uplift learners: causalml meta-learners on gradient-boosted base models, and the class
transformation baseline. Every learner estimates the CATE τ(x) = E[Y(1) − Y(0) | X = x] of
one arm against the baseline (multi-arm experiments: fit once per arm on arm ∪ baseline).

* **S-learner** — one model μ(x, t) with the treatment as a feature; τ̂(x) = μ̂(x,1) − μ̂(x,0).
* **T-learner** — separate models μ₀, μ₁ on the control and treated units; τ̂ = μ̂₁ − μ̂₀.
* **X-learner** (Künzel, Sekhon, Bickel & Yu 2019, PNAS 116) — T-learner first; imputed
  effects D¹ = Y − μ̂₀(X) on treated and D⁰ = μ̂₁(X) − Y on control units are regressed on X
  (τ̂₁, τ̂₀) and blended with the propensity: τ̂ = p·τ̂₀ + (1 − p)·τ̂₁.
* **R-learner** (Nie & Wager 2021, Biometrika 108) — cross-fitted m̂(x) = E[Y|x]; τ̂
  minimises Σ ((Y − m̂) − (T − p)·τ(X))², i.e. a weighted regression of (Y − m̂)/(T − p)
  with weights (T − p)².
* **DR-learner** (Kennedy 2020, arXiv:2004.14497) — cross-fitted AIPW pseudo-outcomes
  φ = μ̂₁ − μ̂₀ + T(Y − μ̂₁)/p − (1 − T)(Y − μ̂₀)/(1 − p) regressed on X.
* **Class transformation** (Jaskowski & Jaroszewicz 2012, ICML workshop) — for a binary
  outcome, Z = Y·T + (1 − Y)(1 − T); with P(T = 1) = ½, τ(x) = 2·P(Z = 1 | x) − 1. Unequal
  allocations are rebalanced by weighting treated units by ½/p and controls by ½/(1 − p).
  For a continuous outcome the transformed outcome Y* = Y·(T − p)/(p(1 − p)) (Athey &
  Imbens 2015) is regressed on X instead, since E[Y* | x] = τ(x).
* **Single-feature rule** — the simplest uplift model, a baseline the boosted learners must
  beat: rank by *one* feature, up or down (the sign of a one-variable transformed-outcome
  regression), or by the difference in means Ȳ_T − Ȳ_C within its deciles; the feature and
  the form chosen on the training units alone by a 2-fold cross-validated Qini. The binned
  form is a one-variable uplift tree (Rzepakowski & Jaroszewicz 2012, KAIS 32) with quantile
  splits. Where the heterogeneity is weak and runs along one covariate, one fitted sign is
  far less noisy than boosted trees fitted to outcomes (Hillstrom's Womens E-Mail visits: the
  rule ranks best of the seven learners); where it is not, the rule shows how much the
  models add (on `winback_email` about half of the meta-learners' Qini).

The propensity p is known in a randomized experiment (the share of the arm among the
arm ∪ baseline units) and is passed to causalml, so no propensity model is fitted.
Base models are single-threaded (n_jobs = 1) with fixed seeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from liftlab.specs import UPLIFT_LEARNERS as LEARNERS  # the names a spec may list

#: Cross-fitting folds of the R-learner (causalml's default is 5).
R_FOLDS = 3


def n_base_fits(learner: str) -> int:
    """How many base-model fits a learner makes (the benchmark's cost unit)."""
    return {
        "s_learner": 1,
        "t_learner": 2,
        "x_learner": 4,  # μ₀, μ₁, τ₀, τ₁
        "r_learner": R_FOLDS + 1,  # cross-fitted m̂, then τ
        "dr_learner": 9,  # causalml: 3 splits × (μ₀, μ₁, τ)
        "class_transformation": 1,
        "single_feature_rule": 0,  # bin means, no base model
    }[learner]


#: Default hyper-parameters: shallow, slow-learning, strongly regularised trees (the
#: uplift signal is small next to the outcome's noise).
#:
#: ``min_child_weight`` (LightGBM's ``min_sum_hessian_in_leaf``) is a floor on the
#: *information* in a leaf rather than on its row count. For the logistic loss a unit
#: contributes p̂(1 − p̂) to the hessian (p̂: the current predicted probability), so at a rare
#: outcome (p ≈ 1 %, e.g. Hillstrom's conversions) a leaf of the 100 rows allowed by
#: ``min_child_samples`` holds about one event and the trees fit noise; a floor of 20 asks for
#: ≈ 20 expected events per leaf (≈ 2,000 rows at 1 %, ≈ 150 at 15 %). For a common outcome it
#: binds only in leaves whose predicted probability is already extreme (at p̂ ≈ 0.4 it means
#: ≈ 85 rows, below the 100-row floor); for regressors never (hessian 1 per row). The value is
#: the one the xgboost backend already used (``min_child_weight=20``); it was fixed by this
#: reasoning, not tuned on any evaluation data.
LGBM_PARAMS = dict(
    n_estimators=200, learning_rate=0.05, num_leaves=15, min_child_samples=100, min_child_weight=20.0,
    subsample=0.8, subsample_freq=1, colsample_bytree=0.8, reg_lambda=1.0,
)


def base_model(kind: str, backend: str = "lightgbm", seed: int = 0, **overrides):
    """A single-threaded gradient-boosted ``kind`` ('classifier' or 'regressor')."""
    if backend == "lightgbm":
        import lightgbm as lgb

        cls = lgb.LGBMClassifier if kind == "classifier" else lgb.LGBMRegressor
        return cls(**{**LGBM_PARAMS, **overrides}, random_state=seed, n_jobs=1, verbose=-1)
    if backend == "xgboost":
        import xgboost as xgb

        cls = xgb.XGBClassifier if kind == "classifier" else xgb.XGBRegressor
        params = dict(n_estimators=200, learning_rate=0.05, max_depth=4, min_child_weight=20,
                      subsample=0.8, colsample_bytree=0.8, tree_method="hist")
        return cls(**{**params, **overrides}, random_state=seed, n_jobs=1, nthread=1)
    if backend == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        cls = HistGradientBoostingClassifier if kind == "classifier" else HistGradientBoostingRegressor
        params = dict(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=100,
                      early_stopping=False)
        return cls(**{**params, **overrides}, random_state=seed)
    raise ValueError(f"unknown base model backend {backend!r}")


@dataclass
class FittedLearner:
    name: str
    predict: Callable[[np.ndarray], np.ndarray]  # X → τ̂ (1-d)
    fit_seconds: float
    n_base_fits: int


def _binary(y: np.ndarray) -> bool:
    return bool(np.isin(np.unique(y), (0.0, 1.0)).all())


class ClassTransformation:
    """Jaskowski & Jaroszewicz (2012) class transformation (see the module docstring)."""

    def __init__(self, model_factory: Callable[[str], object]):
        self.model_factory = model_factory

    def fit(self, X: np.ndarray, t: np.ndarray, y: np.ndarray, p: float) -> ClassTransformation:
        self.binary = _binary(y)
        if self.binary:
            z = (y * t + (1 - y) * (1 - t)).astype(int)
            weight = np.where(t == 1, 0.5 / p, 0.5 / (1 - p))
            self.model = self.model_factory("classifier").fit(X, z, sample_weight=weight)
        else:
            ystar = y * (t - p) / (p * (1 - p))
            self.model = self.model_factory("regressor").fit(X, ystar)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.binary:
            return 2.0 * self.model.predict_proba(X)[:, 1] - 1.0
        return self.model.predict(X)


class RLearner:
    """Nie & Wager (2021) R-learner with a known propensity p (see the module docstring).

    Written here rather than taken from causalml: causalml's ``BaseRClassifier`` cross-fits
    with ``cross_val_predict(..., n_jobs=-1)`` (one worker process per core, each with a copy
    of X) and refits the outcome model on all rows. Here the K folds run in-process and the
    fold models are the only outcome fits (K + 1 base-model fits in all).
    """

    def __init__(self, model_factory, outcome_kind: str, n_fold: int = R_FOLDS, seed: int = 0):
        self.model_factory, self.outcome_kind, self.n_fold, self.seed = model_factory, outcome_kind, n_fold, seed

    def fit(self, X: np.ndarray, t: np.ndarray, y: np.ndarray, p: float) -> RLearner:
        from sklearn.model_selection import KFold

        m_hat = np.empty(len(y))
        for train, held in KFold(self.n_fold, shuffle=True, random_state=self.seed).split(X):
            model = self.model_factory(self.outcome_kind)
            if self.outcome_kind == "classifier":
                m_hat[held] = model.fit(X[train], y[train].astype(int)).predict_proba(X[held])[:, 1]
            else:
                m_hat[held] = model.fit(X[train], y[train]).predict(X[held])
        resid_t = t - p
        pseudo = (y - m_hat) / resid_t
        self.model = self.model_factory("regressor").fit(X, pseudo, sample_weight=resid_t**2)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(X)


class SingleFeatureRule:
    """Rank by one feature (see the module docstring). Two forms per feature:

    * ``linear``: τ̂(x) = α + β·x_j, the least-squares line of the transformed outcome
      Y* = Y·(T − p)/(p(1 − p)) on x_j (Athey & Imbens 2015: E[Y* | x] = τ(x)); as a ranking
      only the sign of β matters ("sort by x_j, up or down"), and τ̂ is on the uplift scale
      so the fold models' scores pool;
    * ``bins``: Ȳ_T − Ȳ_C within the deciles of x_j (catches a non-monotone effect, noisier).

    The feature and the form are chosen on the training units alone: each candidate is fitted
    on one random half and its ranking scored by the Qini on the other half, both ways round;
    the highest mean wins and is refitted on all the training units. Every step is a bincount
    or a dot product over the rows."""

    def __init__(self, n_bins: int = 10, seed: int = 0):
        self.n_bins, self.seed = n_bins, seed

    def _fit_one(self, form: str, x: np.ndarray, t: np.ndarray, y: np.ndarray, p: float):
        if form == "linear":
            ystar = y * (t - p) / (p * (1 - p))
            xc = x - x.mean()
            beta = float(xc @ ystar / max(xc @ xc, 1e-300))
            return ystar.mean() - beta * x.mean(), beta
        edges = np.unique(np.quantile(x, np.arange(1, self.n_bins) / self.n_bins))
        b = np.searchsorted(edges, x, side="right")
        nt, nc = (np.bincount(b, weights=w, minlength=len(edges) + 1) for w in (t, 1 - t))
        yt, yc = (np.bincount(b, weights=w * y, minlength=len(edges) + 1) for w in (t, 1 - t))
        overall = y[t == 1].mean() - y[t == 0].mean()  # a bin without both groups gets the overall difference
        effect = np.where((nt > 0) & (nc > 0), yt / np.maximum(nt, 1) - yc / np.maximum(nc, 1), overall)
        return edges, effect

    @staticmethod
    def _score(form: str, params, x: np.ndarray) -> np.ndarray:
        if form == "linear":
            intercept, beta = params
            return intercept + beta * x
        edges, effect = params
        return effect[np.searchsorted(edges, x, side="right")]

    def fit(self, X: np.ndarray, t: np.ndarray, y: np.ndarray, p: float | None = None) -> SingleFeatureRule:
        from liftlab.uplift.evaluation import qini_coefficient

        t = np.asarray(t, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        p = float(t.mean()) if p is None else float(p)
        half = np.random.default_rng(self.seed).permutation(len(t)) % 2 == 0
        self.cv_qini: dict[tuple[int, str], float] = {}
        for j in range(X.shape[1]):
            for form in ("linear", "bins"):
                qs = []
                for fit_on in (half, ~half):
                    params = self._fit_one(form, X[fit_on, j], t[fit_on], y[fit_on], p)
                    qs.append(qini_coefficient(self._score(form, params, X[~fit_on, j]), t[~fit_on], y[~fit_on]))
                self.cv_qini[(j, form)] = float(np.mean(qs))
        self.feature, self.form = max(self.cv_qini, key=self.cv_qini.get)
        self.params = self._fit_one(self.form, X[:, self.feature], t, y, p)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self._score(self.form, self.params, X[:, self.feature])


def import_causalml() -> None:
    """Import causalml's meta-learners, keeping matplotlib's style as it was: causalml calls
    ``plt.style.use("fivethirtyeight")`` at import, which would restyle every later plot of
    the process (reports, Dagster metadata)."""
    import matplotlib

    saved = matplotlib.rcParams.copy()
    import causalml.inference.meta  # noqa: F401

    matplotlib.rcParams.update(saved)


def fit_learner(
    name: str, X: np.ndarray, t: np.ndarray, y: np.ndarray, *, backend: str = "lightgbm", seed: int = 0,
    p: float | None = None,
) -> FittedLearner:
    """Fit one learner on ``X`` (float matrix), ``t`` (1 = arm, 0 = baseline) and ``y``."""
    import warnings

    t = np.asarray(t, dtype=int)
    y = np.asarray(y, dtype=np.float64)
    p = float(t.mean()) if p is None else float(p)
    binary = _binary(y)

    def make(kind: str):
        return base_model(kind, backend, seed)

    outcome_kind = "classifier" if binary else "regressor"
    if name not in ("class_transformation", "single_feature_rule"):
        import_causalml()  # a ~13 s import: not part of the fit time
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "class_transformation":
            model = ClassTransformation(make).fit(X, t, y, p)
            predict = model.predict
        elif name == "single_feature_rule":
            model = SingleFeatureRule(seed=seed).fit(X, t, y, p)
            predict = model.predict
        else:
            from causalml.inference.meta import (
                BaseDRLearner, BaseSClassifier, BaseSRegressor,
                BaseTClassifier, BaseTRegressor, BaseXClassifier, BaseXRegressor,
            )

            pvec = np.full(len(t), p)
            if name == "s_learner":
                model = (BaseSClassifier if binary else BaseSRegressor)(learner=make(outcome_kind), control_name=0)
                model.fit(X, t, y)
                predict = lambda Z: model.predict(Z, verbose=False)  # noqa: E731
            elif name == "t_learner":
                model = (BaseTClassifier if binary else BaseTRegressor)(learner=make(outcome_kind), control_name=0)
                model.fit(X, t, y)
                predict = lambda Z: model.predict(Z, verbose=False)  # noqa: E731
            elif name == "x_learner":
                cls = BaseXClassifier if binary else BaseXRegressor
                kwargs = (
                    dict(outcome_learner=make("classifier"), effect_learner=make("regressor"))
                    if binary else dict(learner=make("regressor"))
                )
                model = cls(**kwargs, control_name=0)
                model.fit(X, t, y, p=pvec)
                predict = lambda Z: model.predict(Z, p=np.full(len(Z), p), verbose=False)  # noqa: E731
            elif name == "r_learner":
                model = RLearner(make, outcome_kind, n_fold=R_FOLDS, seed=seed).fit(X, t, y, p)
                predict = model.predict
            elif name == "dr_learner":
                model = BaseDRLearner(learner=make("regressor"), control_name=0)
                model.fit(X, t, y, p=pvec, seed=seed)
                predict = lambda Z: model.predict(Z, verbose=False)  # noqa: E731
            else:
                raise ValueError(f"unknown learner {name!r}; known: {LEARNERS}")
    seconds = time.perf_counter() - start

    def predict_1d(Z: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(predict(Z), dtype=np.float64).reshape(len(Z), -1)[:, 0]

    return FittedLearner(name=name, predict=predict_1d, fit_seconds=seconds, n_base_fits=n_base_fits(name))


def fit_outcome_model(X: np.ndarray, y: np.ndarray, *, backend: str = "lightgbm", seed: int = 0):
    """E[Y | x] on one arm (probability for a binary outcome): used for the segments."""
    import warnings

    binary = _binary(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = base_model("classifier" if binary else "regressor", backend, seed).fit(X, y.astype(int) if binary else y)
    if binary:
        return lambda Z: model.predict_proba(Z)[:, 1]
    return model.predict
