"""One experiment end to end, without a database: cross-fit, predict, evaluate, explain.

Input: a polars frame with one row per unit — ``unit_id``, ``variant``, the feature
columns, the outcome columns and, on synthetic data, ``true_cate__<outcome>`` /
``true_type`` (the oracle). Each non-baseline arm is modelled against the baseline on
arm ∪ baseline units.

**Cross-fitted evaluation.** The units are dealt once per experiment into K folds,
stratified by variant × the binary outcomes (seeded: :func:`crossfit_folds`), so every arm,
outcome and learner uses the same folds (also when one arm × outcome is computed on its own:
``fold_outcomes``). For each fold k every learner is fitted on the
other K − 1 folds and predicts the units of fold k: each unit gets an *out-of-fold* score
from a model that never saw it. The Qini/AUUC, uplift at k, deciles, the targeting policy
and the segments are then computed on the pooled out-of-fold scores of **all** units,
instead of on a single hold-out (sample splitting and cross-fitting: Chernozhukov et al.
2018, "Double/debiased machine learning", Econometrics J. 21, §3; for evaluating uplift
rankings: Imai & Li 2025, J. Business & Economic Statistics, "Statistical inference for
heterogeneous treatment effects discovered by generic machine learning in randomized
experiments", §4). Pooling K rankings assumes the fold models put their scores on one scale;
they are the same learner with the same settings on nearly the same data, so they do.

**What the confidence intervals mean.** Bootstrap over units of the pooled out-of-fold
scores (:mod:`.evaluation`): the fold models are held fixed, so an interval is about this
ranking on these units — "does targeting by these fitted models beat random here?" — not
about the learner refitted on a new sample (see the caveat in :mod:`.evaluation`).

**Choosing the best learner honestly.** ``is_best`` marks the learner with the highest
out-of-fold Qini. Picking the maximum of several noisy estimates inflates it (winner's
curse), so the marginal CI of the winner is too optimistic. Every learner therefore also
gets the sup-t *simultaneous* band over all the candidate learners of that arm × outcome
(``qini_simul_ci_low/high``, :func:`.evaluation.simultaneous_band`, from the paired
bootstrap): it covers all of them at once, so it stays valid for the selected one. What the
band does not fix is the cross-fitting dependence (see :mod:`.evaluation`): in the power study
(:mod:`liftlab.studies.uplift_power`, docs/uplift.md) on Hillstrom-sized data with no
heterogeneity at all, the best-of-seven's marginal CI was above 0 in 16–23 % of simulated data
sets and the band in 8–9 %, against 2.5 % nominal.

**The held-out interval** (``heldout=True``, the default; :mod:`.honest`). The best learner's
row also carries ``qini_heldout`` with ``qini_heldout_ci_low/high``: for each fold of the
first repetition the learner is *chosen* by an inner cross-fit of the other folds alone, its
model fitted on those folds (the main cross-fit's own fold model) ranks the held-out fold, and
the fold-wise fixed-ranking bootstraps are combined with a bound on the standard deviation that
holds whatever the dependence between folds. Neither the choice nor the model has seen the units
an interval is computed on, so it includes the refitting and the selection; a claim that the
best learner beats random rests on ``qini_heldout_ci_low > 0``. ``heldout_learners`` lists the
learner chosen for each fold; :attr:`UpliftResult.heldout` has one row per arm × outcome with
the fold figures and, given ``economics``, the break-even policy vs treating everyone on the
same footing (``vs_all``, ``vs_all_ci_low/high``).

**Repeated cross-fitting.** With ``n_repeats`` = R > 1 the whole K-fold deal is repeated R
times with different seeds (folds and base models), and a unit's score is the mean of its R
out-of-fold predictions — still from models that never saw it. Averaging over splits is the
remedy Chernozhukov et al. (2018, §3.4, "repeated sample splitting") give for the dependence
of cross-fitted results on one random split; for a ranking it averages away model variance
(bagging: Breiman 1996, Machine Learning 24), which dominates when the heterogeneity is weak.
The fixed-model intervals still hold all R·K fitted models fixed; the held-out interval uses
the first repetition only (it does not depend on R).

Columns of the model rows: ``n_test`` = units scored out of fold (all arm ∪ baseline
units); ``n_train`` = units each fold model was fitted on (the mean over folds, ≈
(K − 1)/K·n_test); ``n_folds`` = K, ``n_repeats`` = R; ``fit_seconds`` and ``n_base_fits``
add up the R·K fits. The scores table keeps each unit's fold of the first repetition.
The references ``oracle`` (sorting by the true CATE) and ``covariate_ceiling`` (a
cross-fitted regression of the true CATE on the features) are scored on the same units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from liftlab.uplift import evaluation as ev
from liftlab.uplift import segments as seg
from liftlab.uplift.features import encode
from liftlab.uplift.learners import fit_learner, fit_outcome_model


#: Rows of the permutation importance per arm × outcome, split over the fold models (each
#: repeat predicts every feature's permutation: ~40 predictions of these rows).
EXPLAIN_ROWS = 3000


@dataclass
class UpliftResult:
    models: list[dict] = field(default_factory=list)
    scores: list[pl.DataFrame] = field(default_factory=list)
    curves: list[pl.DataFrame] = field(default_factory=list)
    deciles: list[pl.DataFrame] = field(default_factory=list)
    explanations: list[pl.DataFrame] = field(default_factory=list)
    #: one row per arm × outcome: the held-out, selection-honest interval (:mod:`.honest`)
    heldout: list[dict] = field(default_factory=list)

    @classmethod
    def combine(cls, parts: Sequence[UpliftResult]) -> UpliftResult:
        """The results of several calls as one, each list in the order of ``parts``: the cells of
        one experiment (``fold_outcomes``), in the full call's order (arms, then outcomes within an
        arm), combine to exactly the full call's result."""
        out = cls()
        for part in parts:
            for name in ("models", "scores", "curves", "deciles", "explanations", "heldout"):
                getattr(out, name).extend(getattr(part, name))
        return out

    def frame(self, name: str) -> pl.DataFrame:
        if name in ("models", "heldout"):
            rows = getattr(self, name)
            return pl.DataFrame(rows) if rows else pl.DataFrame()
        parts = getattr(self, name)
        return pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame()


def crossfit_folds(variant: np.ndarray, outcomes: Sequence[np.ndarray], n_folds: int, seed: int) -> np.ndarray:
    """Fold number (0..K−1) of every unit: stratified K-fold, shuffled with ``seed``.

    The strata are the variant × the joint values of every binary outcome (continuous
    outcomes are left out), so each fold holds its share of every arm and of the events of
    every outcome — a rare outcome (1 % conversions) gets the same number of events in every
    fold's training set."""
    from sklearn.model_selection import StratifiedKFold

    strata = np.asarray(variant, dtype=str).astype(object)
    for y in outcomes:
        y = np.asarray(y, dtype=np.float64)
        if np.isin(np.unique(y), (0.0, 1.0)).all():
            strata = strata + "|" + y.astype(int).astype(str)
    folds = np.empty(len(strata), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(strata)), strata)):
        folds[held] = k
    return folds


def analyse_experiment(
    frame: pl.DataFrame, *, experiment_id: str, baseline: str, arms: Sequence[str], outcomes: Sequence[str],
    features: Sequence[str], learners: Sequence[str], backend: str = "lightgbm", n_folds: int = 2,
    n_repeats: int = 1, seed: int = 0, n_boot: int = 200, min_uplift: float = 0.05, explain: bool = True,
    heldout: bool = True, heldout_inner_folds: int = 2, economics: Mapping[str, tuple[float, float]] | None = None,
    fold_outcomes: Sequence[str] | None = None, log=lambda *_: None,
) -> UpliftResult:
    """``heldout``: also compute the held-out, selection-honest interval of the best learner
    (:mod:`.honest`; extra inner cross-fits, ``heldout_inner_folds`` folds); ``economics``:
    outcome → (value per conversion, cost per contact), adds its break-even policy vs treating
    everyone.

    ``fold_outcomes``: the outcomes whose binary values stratify the folds (default
    ``outcomes``). Every arm × outcome cell depends only on the folds and on ``seed``, so
    ``arms=[arm], outcomes=[outcome], fold_outcomes=<every outcome of the full call>`` returns
    exactly that cell's rows of the full call: the fits of one experiment can run as separate
    steps (one per arm × outcome, ``liftlab.defs.uplift``) and still share one deal of folds."""
    from liftlab.uplift.explain import permutation_importance
    from liftlab.uplift.honest import heldout_evaluation

    frame = frame.sort("unit_id")  # the input order never matters
    enc = encode(frame, features)
    variant = frame["variant"].to_numpy().astype(str)
    ys = [frame[o].cast(pl.Float64).to_numpy() for o in (outcomes if fold_outcomes is None else fold_outcomes)]
    # repetition r deals its own folds and seeds its models with seed + r
    folds_by_rep = [crossfit_folds(variant, ys, n_folds, seed + r) for r in range(n_repeats)]
    unit_ids = frame["unit_id"].cast(pl.Utf8).to_numpy()
    result = UpliftResult()
    for arm in arms:
        in_arm = (variant == arm) | (variant == baseline)
        X = enc.X[in_arm]
        fold = folds_by_rep[0][in_arm]  # the first repetition's folds: stored with the scores, used to explain
        t = (variant[in_arm] == arm).astype(int)
        n = len(t)
        for outcome in outcomes:
            y = frame[outcome].cast(pl.Float64).to_numpy()[in_arm]
            oracle_col = f"true_cate__{outcome}"
            tau_true = frame[oracle_col].to_numpy()[in_arm].astype(float) if oracle_col in frame.columns else None
            has_oracle = tau_true is not None and not np.isnan(tau_true).any()
            preds = {name: np.zeros(n) for name in learners}
            first_rep = {name: np.zeros(n) for name in learners}  # repetition 0's out-of-fold scores
            p0 = np.zeros(n)
            ceiling = np.zeros(n) if has_oracle else None
            fitted: dict[str, list] = {name: [] for name in learners}
            seconds = dict.fromkeys(learners, 0.0)
            base_fits = dict.fromkeys(learners, 0)
            n_train = []
            for r in range(n_repeats):
                rep_fold, rep_seed = folds_by_rep[r][in_arm], seed + r
                for k in range(n_folds):
                    held, tr = rep_fold == k, rep_fold != k
                    Xtr, ttr, ytr = X[tr], t[tr], y[tr]
                    n_train.append(int(tr.sum()))
                    p = float(ttr.mean())  # the known allocation share among the fold's training units
                    p0[held] += fit_outcome_model(Xtr[ttr == 0], ytr[ttr == 0], backend=backend,
                                                  seed=rep_seed)(X[held]) / n_repeats
                    for name in learners:
                        log(f"{experiment_id} {arm} {outcome}: repeat {r + 1}/{n_repeats}, fold {k + 1}/{n_folds}, "
                            f"fitting {name} on {len(ytr):,} units")
                        model = fit_learner(name, Xtr, ttr, ytr, backend=backend, seed=rep_seed, p=p)
                        pred = model.predict(X[held])
                        preds[name][held] += pred / n_repeats
                        if r == 0:
                            fitted[name].append((model, held))
                            first_rep[name][held] = pred
                        seconds[name] += model.fit_seconds
                        base_fits[name] += model.n_base_fits
                    if has_oracle:
                        # The best a ranking by the covariates can do: a regression of the *true* CATE on X
                        # (training folds). Not a learner (it needs the truth): the ceiling the learners face
                        # when the true CATE also depends on unobserved traits.
                        from liftlab.uplift.learners import base_model

                        ceiling[held] += base_model("regressor", backend, rep_seed).fit(
                            Xtr, tau_true[tr]).predict(X[held]) / n_repeats
            oracle_qini = ev.qini_coefficient(tau_true, t, y) if has_oracle else None
            names = list(learners)
            boot = ev.bootstrap_many([preds[name] for name in names], t, y, n_boot=n_boot, seed=seed)
            rows = [_score_row(name, preds[name], t, y, boot["qini"][:, j], boot["auuc"][:, j], oracle_qini,
                               seconds[name], base_fits[name], tau_true if has_oracle else None)
                    for j, name in enumerate(names)]
            lo, hi, _ = ev.simultaneous_band([r["qini"] for r in rows], boot["qini"])
            for r, a, b in zip(rows, lo, hi):
                r["qini_simul_ci_low"], r["qini_simul_ci_high"] = float(a), float(b)
            if has_oracle:
                refs = {"oracle": tau_true, "covariate_ceiling": ceiling}
                ref_boot = ev.bootstrap_many(list(refs.values()), t, y, n_boot=n_boot, seed=seed)
                for j, (name, score) in enumerate(refs.items()):
                    rows.append(_score_row(name, score, t, y, ref_boot["qini"][:, j], ref_boot["auuc"][:, j],
                                           oracle_qini, None, 0 if name == "oracle" else n_folds * n_repeats,
                                           tau_true))
                    preds[name] = score
            best = max((r for r in rows if r["learner"] in learners), key=lambda r: r["qini"])["learner"]
            held_cols = dict.fromkeys(("qini_heldout", "qini_heldout_se", "qini_heldout_ci_low",
                                       "qini_heldout_ci_high", "heldout_learners"))
            if heldout:
                h = heldout_evaluation(X, t, y, fold, first_rep, names, backend=backend, seed=seed,
                                       inner_folds=heldout_inner_folds, n_boot=n_boot,
                                       economics=(economics or {}).get(outcome), log=log)
                best_held = {"qini_heldout": h["qini"], "qini_heldout_se": h["qini_se"],
                             "qini_heldout_ci_low": h["qini_ci_low"], "qini_heldout_ci_high": h["qini_ci_high"],
                             "heldout_learners": h["learners"]}
                folds_ = h.pop("folds")
                result.heldout.append({
                    "experiment_id": experiment_id, "arm": arm, "metric": outcome, "best_learner": best, **h,
                    "fold_learner": [f["learner"] for f in folds_], "fold_qini": [f["qini"] for f in folds_],
                    "fold_qini_se": [f["qini_se"] for f in folds_], "fold_n_eval": [f["n_eval"] for f in folds_],
                })
            base = dict(experiment_id=experiment_id, arm=arm, metric=outcome, baseline=baseline,
                        n_train=int(round(np.mean(n_train))), n_test=n, n_folds=n_folds, n_repeats=n_repeats,
                        base_model=backend)
            for r in rows:
                is_best = r["learner"] == best
                result.models.append({**base, **r, **(best_held if heldout and is_best else held_cols),
                                      "is_best": is_best})
            for name, tau in preds.items():
                segment = seg.assign(tau, p0, min_uplift)
                result.scores.append(pl.DataFrame({
                    "experiment_id": experiment_id, "arm": arm, "metric": outcome, "learner": name,
                    "unit_id": unit_ids[in_arm], "variant": variant[in_arm], "fold": fold.astype(np.int16),
                    "treated": t.astype(np.int16), "outcome": y, "predicted_uplift": tau, "predicted_control": p0,
                    "segment": segment.astype(str),
                }))
                result.curves.append(ev.curve_frame(tau, t, y).with_columns(
                    pl.lit(experiment_id).alias("experiment_id"), pl.lit(arm).alias("arm"),
                    pl.lit(outcome).alias("metric"), pl.lit(name).alias("learner")))
                result.deciles.append(ev.by_decile(tau, t, y).with_columns(
                    pl.lit(experiment_id).alias("experiment_id"), pl.lit(arm).alias("arm"),
                    pl.lit(outcome).alias("metric"), pl.lit(name).alias("learner")))
            if explain:
                # Each fold model of the best learner on the units it did not see (an equal share of
                # a 3,000-row budget per fold); pooled over folds × repeats.
                parts = [permutation_importance(model.predict, X[held], enc.groups(), seed=seed + k,
                                                max_rows=-(-EXPLAIN_ROWS // n_folds))
                         for k, (model, held) in enumerate(fitted[best])]
                # sorted by importance, ties (features the model never used: 0) by name — not in
                # group_by's hash order, which changes from call to call
                imp = pl.concat(parts).group_by("feature").agg(
                    pl.col("importance").mean().alias("mean"),
                    # total variance over folds × repeats: within-fold var + between-fold var
                    ((pl.col("importance_sd") ** 2).mean() + pl.col("importance").var(ddof=0)).sqrt().alias("sd"),
                ).rename({"mean": "importance", "sd": "importance_sd"}).sort(
                    "importance", "feature", descending=[True, False])
                result.explanations.append(imp.with_columns(
                    pl.lit(experiment_id).alias("experiment_id"), pl.lit(arm).alias("arm"),
                    pl.lit(outcome).alias("metric"), pl.lit(best).alias("learner")))
    return result


def expected_area(score: np.ndarray, tau_true: np.ndarray) -> float:
    """Area between the *expected* gain curve Σ_top τ_i (true CATEs, no outcome noise) and
    the random line, per unit — the noise-free counterpart of the Qini coefficient."""
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    c = np.concatenate([[0.0], np.cumsum(tau_true[order])])
    n = len(order)
    return float((c - np.arange(n + 1) / n * c[-1]).mean() / n)


def expected_share(score, tau_true) -> float:
    """The noise-free share of the oracle's area; NaN when the true CATE is constant,
    where no ranking can beat random and the share is undefined."""
    tau_true = np.asarray(tau_true, dtype=np.float64)
    if len(tau_true) == 0 or np.ptp(tau_true) == 0:
        return float("nan")
    return expected_area(score, tau_true) / expected_area(tau_true, tau_true)


def _score_row(name, tau, t, y, boot_qini, boot_auuc, oracle_qini, fit_seconds, n_fits, tau_true=None) -> dict:
    c = ev.curves(tau, t, y)
    qlo, qhi = ev.percentile_ci(boot_qini)
    alo, ahi = ev.percentile_ci(boot_auuc)
    cal = ev.calibration(ev.by_decile(tau, t, y))
    q = float(c.qini_coefficient()[0])
    at = {f"uplift_at_{int(f * 100)}": float(c.at_fraction(c.uplift, f)[0]) for f in (0.1, 0.2, 0.3, 0.5)}
    return {
        "learner": name, "qini": q, "qini_ci_low": qlo, "qini_ci_high": qhi,
        "qini_simul_ci_low": None, "qini_simul_ci_high": None,
        "auuc": float(c.auuc()[0]), "auuc_ci_low": alo, "auuc_ci_high": ahi,
        "oracle_qini": oracle_qini, "oracle_share": (q / oracle_qini) if oracle_qini else None,
        "expected_oracle_share": expected_share(tau, tau_true) if tau_true is not None else None,
        **at, "calibration_slope": cal["slope"], "calibration_gap": cal["mean_abs_gap"],
        "fit_seconds": fit_seconds, "n_base_fits": n_fits,
    }
