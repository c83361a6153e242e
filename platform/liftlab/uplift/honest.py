"""Held-out, selection-honest intervals for the best uplift learner (and its targeting policy).

Why. The Qini CIs of :mod:`.analysis` bootstrap the units with the cross-fitted models held
fixed, and the best learner is the maximum of seven such estimates. The power study
(:mod:`liftlab.studies.uplift_power`, docs/uplift.md) measured what that costs on Hillstrom-shaped
data with nothing to find: the best-of-seven marginal CI above 0 in 16–23 % of data sets, the
simultaneous band in 8–9 %, against 2.5 % nominal — a pooled cross-fitted ranking's Qini varies
1.1–1.6× more than a fixed-model bootstrap allows (the fold models were fitted on the other
folds' outcomes, and the pooled ranking mixes the folds), and choosing the maximum adds the
winner's curse. A *fixed* ranking (made without the outcomes) kept the nominal rate.

What this computes: an interval for the ranking the pipeline's procedure would deploy, whose
learner is chosen and fitted on one part of the units and evaluated on another part that played
no role in either. Sample splitting for inference after selection (Cox 1975, "A note on
data-splitting for the evaluation of significance levels", Biometrika 62; Rinaldo, Wasserman &
G'Sell 2019, "Bootstrapping and sample splitting for high-dimensional, assumption-lean
inference", Ann. Statist. 47), as Chernozhukov, Demirer, Duflo & Fernández-Val do for
heterogeneous effects found by machine learning ("Generic machine learning inference on
heterogeneous treatment effects in randomized experiments", Fisher–Schultz lecture, Econometrica
2025; NBER working paper 24678, 2018: the proxies are fitted and chosen on an auxiliary sample,
inference is on the main sample). Let F_1 … F_K be the first
repetition's cross-fitting folds (:func:`.analysis.crossfit_folds`; K = 2: two halves) and
T_k the units outside F_k. For each k:

1. **Choose on T_k only.** Every candidate learner is cross-fitted *inside* T_k (J inner folds,
   stratified by arm × outcome and seeded, one repetition) and the learner ℓ_k with the highest
   inner out-of-fold Qini is chosen — the pipeline's own selection rule, run without F_k.
2. **Evaluate on F_k only.** ℓ_k's model fitted on T_k — the fold model the main cross-fit
   already fitted for F_k, so no extra fit — ranks F_k's units: θ̂_k is the Qini coefficient
   of that ranking on F_k (:func:`.evaluation.qini_coefficient`) and s_k the standard
   deviation of B bootstrap draws of F_k's units (:func:`.evaluation.bootstrap_scores`). Given
   T_k, the choice and the model are fixed and F_k's units are independent of them, so this is
   the bootstrap of a fixed ranking — the case the power study found calibrated.
3. **Combine.** θ̄ = (1/K)·Σ_k θ̂_k (each θ̂_k is per unit, so θ̄ is on the Qini scale of
   the pooled estimate). The θ̂_k are dependent (T_k contains the other folds) with unknown
   correlation, but the standard deviation of a sum is at most the sum of the standard
   deviations (the triangle inequality of the L² norm; equality at correlation 1), so
   sd(θ̄) ≤ s̄ = (1/K)·Σ_k s_k whatever the dependence, and the interval is
   θ̄ ± z_{1−α/2}·s̄ (normal approximation of each θ̂_k; checked, not assumed, by the power
   study's null rate). With K = 2 this is at most the width of one half's own interval, while
   its centre averages two halves. Conservative: if the halves were independent s̄ would be
   √2 too large.

The estimand is the mean over k of the population Qini of ℓ_k's model fitted on T_k: the
value of "choose among these learners and fit on (K − 1)/K of these units", conditional on
the training halves. With no heterogeneity every ranking's population Qini is 0, so a "CI above
0" is then a false claim, which is what the power study counts. It answers a different question
from the fixed-model CIs ("does *this* ranking beat random on these units?") and is the one a
claim "the best learner finds whom to target" needs.

The targeting policy gets the same treatment (``economics`` given): on F_k, contact a unit when
value × τ̂_{ℓ_k}(x) > cost (the break-even rule, fixed before looking at F_k) and compare the
profit with contacting all of F_k (:func:`.policy.break_even_vs_all`); the differences add up
over folds to the whole sample's scale, D = Σ_k D_k, with sd(D) ≤ Σ_k s_k as above.

Cost: the inner cross-fits, L learners × J inner folds × K outer folds on
(K − 1)/K·(J − 1)/J of the units each — with K = J = 2, L fits of a quarter of the units per
half, i.e. about 1/R of the main cross-fit's R·K·L fits of half the units (R repeats). With one
candidate learner there is nothing to choose and nothing is fitted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from liftlab.uplift import evaluation as ev

#: Inner cross-fitting folds J of the selection step.
INNER_FOLDS = 2


def select_learner(
    X: np.ndarray, t: np.ndarray, y: np.ndarray, learners: Sequence[str], *, backend: str = "lightgbm",
    seed: int = 0, n_folds: int = INNER_FOLDS, log=lambda *_: None,
) -> tuple[str, dict[str, float]]:
    """The learner with the highest cross-fitted Qini on these units alone (ties: the first in
    ``learners``), and every candidate's inner out-of-fold Qini. Uses nothing but (X, t, y)."""
    from liftlab.uplift.analysis import crossfit_folds
    from liftlab.uplift.learners import fit_learner

    names = list(learners)
    if len(names) == 1:
        return names[0], {names[0]: float("nan")}
    t = np.asarray(t, dtype=int)
    y = np.asarray(y, dtype=np.float64)
    fold = crossfit_folds(t.astype(str), [y], n_folds, seed)
    preds = {name: np.zeros(len(t)) for name in names}
    for k in range(n_folds):
        held, tr = fold == k, fold != k
        p = float(t[tr].mean())
        for name in names:
            log(f"held-out selection: inner fold {k + 1}/{n_folds}, fitting {name} on {int(tr.sum()):,} units")
            preds[name][held] = fit_learner(name, X[tr], t[tr], y[tr], backend=backend, seed=seed, p=p).predict(X[held])
    qinis = {name: ev.qini_coefficient(preds[name], t, y) for name in names}
    return max(names, key=lambda name: qinis[name]), qinis


def combine(points: Sequence[float], ses: Sequence[float], *, mean: bool, alpha: float = 0.05) -> dict[str, float]:
    """Mean (``mean=True``) or sum of per-fold estimates with the dependence-free bound on its
    standard deviation (sum of the sds; divided by K for the mean) and the normal interval."""
    from scipy.stats import norm

    points, ses = np.asarray(points, dtype=np.float64), np.asarray(ses, dtype=np.float64)
    scale = 1 / len(points) if mean else 1.0
    est, se = float(points.sum() * scale), float(ses.sum() * scale)
    z = float(norm.ppf(1 - alpha / 2))
    return {"estimate": est, "se": se, "ci_low": est - z * se, "ci_high": est + z * se}


def heldout_evaluation(
    X: np.ndarray, t: np.ndarray, y: np.ndarray, fold: np.ndarray, fold_preds: Mapping[str, np.ndarray],
    learners: Sequence[str], *, backend: str = "lightgbm", seed: int = 0, inner_folds: int = INNER_FOLDS,
    n_boot: int = 200, alpha: float = 0.05, economics: tuple[float, float] | None = None, log=lambda *_: None,
) -> dict:
    """The held-out, selection-honest Qini (and break-even policy) interval; see the module
    docstring.

    ``fold`` (n,): the fold (0..K−1) of every unit in the cross-fit whose models made
    ``fold_preds``; ``fold_preds[name]`` (n,): each unit's score from ``name``'s model fitted on
    the *other* folds (the first repetition's out-of-fold predictions, not averaged over
    repetitions). ``economics`` = (value per conversion, cost per contact) adds the policy.
    Returns the combined figures and one dict per fold (``folds``)."""
    from liftlab.uplift.policy import break_even_vs_all

    t = np.asarray(t, dtype=int)
    y = np.asarray(y, dtype=np.float64)
    fold = np.asarray(fold)
    parts = []
    for k in np.unique(fold):
        ev_units, tr = fold == k, fold != k
        choice, inner = select_learner(X[tr], t[tr], y[tr], learners, backend=backend, seed=seed + int(k),
                                       n_folds=inner_folds, log=log)
        score = np.asarray(fold_preds[choice])[ev_units]
        te, ye = t[ev_units], y[ev_units]
        boot = ev.bootstrap_scores(score, te, ye, n_boot=n_boot, seed=seed + int(k))["qini"]
        part = {"fold": int(k), "learner": choice, "n_select": int(tr.sum()), "n_eval": int(ev_units.sum()),
                "qini": ev.qini_coefficient(score, te, ye),
                "qini_se": float(boot.std(ddof=1)) if len(boot) > 1 else float("nan"),
                "inner_qini": inner}
        if economics is not None:
            value, cost = economics
            m, diff, draws = break_even_vs_all(score, te, ye, value=value, cost=cost, n_boot=n_boot,
                                               seed=seed + int(k))
            part.update(n_targeted=m, vs_all=diff, vs_all_se=float(draws.std(ddof=1)) if len(draws) > 1 else float("nan"))
        parts.append(part)
    q = combine([p["qini"] for p in parts], [p["qini_se"] for p in parts], mean=True, alpha=alpha)
    out = {"qini": q["estimate"], "qini_se": q["se"], "qini_ci_low": q["ci_low"], "qini_ci_high": q["ci_high"],
           "learners": ",".join(p["learner"] for p in parts), "n_folds": len(parts), "folds": parts}
    if economics is not None:
        d = combine([p["vs_all"] for p in parts], [p["vs_all_se"] for p in parts], mean=False, alpha=alpha)
        out.update(vs_all=d["estimate"], vs_all_se=d["se"], vs_all_ci_low=d["ci_low"], vs_all_ci_high=d["ci_high"],
                   n_targeted=int(sum(p["n_targeted"] for p in parts)))
    return out
