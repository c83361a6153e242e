"""One experiment end to end, without a database: split, fit, predict, evaluate, explain.

Input: a polars frame with one row per unit — ``unit_id``, ``variant``, the feature
columns, the outcome columns and, on synthetic data, ``true_cate__<outcome>`` /
``true_type`` (the oracle). The **honest split** is made once per experiment, stratified
by variant × primary outcome (seeded), so every arm, outcome and learner is evaluated on the
same held-out units, which no model has seen. Each non-baseline arm is modelled against the
baseline on arm ∪ baseline units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from liftlab.uplift import evaluation as ev
from liftlab.uplift import segments as seg
from liftlab.uplift.features import encode
from liftlab.uplift.learners import fit_learner, fit_outcome_model


@dataclass
class UpliftResult:
    models: list[dict] = field(default_factory=list)
    scores: list[pl.DataFrame] = field(default_factory=list)
    curves: list[pl.DataFrame] = field(default_factory=list)
    deciles: list[pl.DataFrame] = field(default_factory=list)
    explanations: list[pl.DataFrame] = field(default_factory=list)

    def frame(self, name: str) -> pl.DataFrame:
        if name == "models":
            return pl.DataFrame(self.models) if self.models else pl.DataFrame()
        parts = getattr(self, name)
        return pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame()


def honest_split(variant: np.ndarray, y: np.ndarray | None, test_size: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out units, stratified by variant × outcome (binary outcomes)."""
    from sklearn.model_selection import train_test_split

    strata = np.asarray(variant, dtype=str).astype(object)
    if y is not None and np.isin(np.unique(y), (0.0, 1.0)).all():
        strata = strata + "|" + np.asarray(y, dtype=int).astype(str)
    idx = np.arange(len(strata))
    _, test_idx = train_test_split(idx, test_size=test_size, random_state=seed, stratify=strata)
    mask = np.zeros(len(strata), dtype=bool)
    mask[test_idx] = True
    return mask


def analyse_experiment(
    frame: pl.DataFrame, *, experiment_id: str, baseline: str, arms: Sequence[str], outcomes: Sequence[str],
    features: Sequence[str], learners: Sequence[str], backend: str = "lightgbm", test_size: float = 0.4,
    seed: int = 0, n_boot: int = 200, min_uplift: float = 0.05, explain: bool = True, log=lambda *_: None,
) -> UpliftResult:
    from liftlab.uplift.explain import permutation_importance

    frame = frame.sort("unit_id")  # the input order never matters
    enc = encode(frame, features)
    variant = frame["variant"].to_numpy().astype(str)
    test = honest_split(variant, frame[outcomes[0]].cast(pl.Float64).to_numpy(), test_size, seed)
    result = UpliftResult()
    for arm in arms:
        in_arm = (variant == arm) | (variant == baseline)
        tr, te = in_arm & ~test, in_arm & test
        t_all = (variant == arm).astype(int)
        for outcome in outcomes:
            y_all = frame[outcome].cast(pl.Float64).to_numpy()
            Xtr, ttr, ytr = enc.X[tr], t_all[tr], y_all[tr]
            Xte, tte, yte = enc.X[te], t_all[te], y_all[te]
            p = float(ttr.mean())
            p0 = fit_outcome_model(Xtr[ttr == 0], ytr[ttr == 0], backend=backend, seed=seed)(Xte)
            oracle_col = f"true_cate__{outcome}"
            tau_true = frame[oracle_col].to_numpy()[te] if oracle_col in frame.columns else None
            has_oracle = tau_true is not None and not np.isnan(tau_true.astype(float)).any()
            oracle_qini = ev.qini_coefficient(tau_true, tte, yte) if has_oracle else None
            rows, preds, fitted = [], {}, {}
            for name in learners:
                log(f"{experiment_id} {arm} {outcome}: fitting {name} on {len(ytr):,} units")
                model = fit_learner(name, Xtr, ttr, ytr, backend=backend, seed=seed, p=p)
                tau = model.predict(Xte)
                preds[name], fitted[name] = tau, model
                rows.append(_score_row(name, tau, tte, yte, n_boot, seed, oracle_qini, model.fit_seconds, model.n_base_fits,
                                       tau_true.astype(float) if has_oracle else None))
            if has_oracle:
                rows.append(_score_row("oracle", tau_true.astype(float), tte, yte, n_boot, seed, oracle_qini, None, 0,
                                       tau_true.astype(float)))
                preds["oracle"] = tau_true.astype(float)
                # The best a ranking by the covariates can do: a regression of the *true* CATE on X
                # (training units). Not a learner (it needs the truth): the ceiling the learners face
                # when the true CATE also depends on unobserved traits.
                from liftlab.uplift.learners import base_model

                truth_tr = frame[oracle_col].to_numpy()[tr].astype(float)
                ceiling = base_model("regressor", backend, seed).fit(Xtr, truth_tr).predict(Xte)
                rows.append(_score_row("covariate_ceiling", ceiling, tte, yte, n_boot, seed, oracle_qini, None, 1,
                                       tau_true.astype(float)))
                preds["covariate_ceiling"] = ceiling
            best = max((r for r in rows if r["learner"] in learners), key=lambda r: r["qini"])["learner"]
            base = dict(experiment_id=experiment_id, arm=arm, metric=outcome, baseline=baseline,
                        n_train=int(tr.sum()), n_test=int(te.sum()), base_model=backend)
            for r in rows:
                result.models.append({**base, **r, "is_best": r["learner"] == best})
            units = frame["unit_id"].cast(pl.Utf8).to_numpy()[te]
            for name, tau in preds.items():
                segment = seg.assign(tau, p0, min_uplift)
                result.scores.append(pl.DataFrame({
                    "experiment_id": experiment_id, "arm": arm, "metric": outcome, "learner": name,
                    "unit_id": units, "variant": variant[te], "treated": tte.astype(np.int16),
                    "outcome": yte, "predicted_uplift": tau, "predicted_control": p0,
                    "segment": segment.astype(str),
                }))
                result.curves.append(ev.curve_frame(tau, tte, yte).with_columns(
                    pl.lit(experiment_id).alias("experiment_id"), pl.lit(arm).alias("arm"),
                    pl.lit(outcome).alias("metric"), pl.lit(name).alias("learner")))
                result.deciles.append(ev.by_decile(tau, tte, yte).with_columns(
                    pl.lit(experiment_id).alias("experiment_id"), pl.lit(arm).alias("arm"),
                    pl.lit(outcome).alias("metric"), pl.lit(name).alias("learner")))
            if explain:
                imp = permutation_importance(fitted[best].predict, Xte, enc.groups(), seed=seed)
                result.explanations.append(imp.with_columns(
                    pl.lit(experiment_id).alias("experiment_id"), pl.lit(arm).alias("arm"),
                    pl.lit(outcome).alias("metric"), pl.lit(best).alias("learner")))
    return result


def _expected_area(score: np.ndarray, tau_true: np.ndarray) -> float:
    """Area between the *expected* gain curve Σ_top τ_i (true CATEs, no outcome noise) and
    the random line, per unit — the noise-free counterpart of the Qini coefficient."""
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    c = np.concatenate([[0.0], np.cumsum(tau_true[order])])
    n = len(order)
    return float((c - np.arange(n + 1) / n * c[-1]).mean() / n)


def _expected_share(score, tau_true) -> float:
    return _expected_area(score, tau_true) / _expected_area(tau_true, tau_true)


def _score_row(name, tau, t, y, n_boot, seed, oracle_qini, fit_seconds, n_fits, tau_true=None) -> dict:
    c = ev.curves(tau, t, y)
    boot = ev.bootstrap_scores(tau, t, y, n_boot=n_boot, seed=seed)
    qlo, qhi = ev.percentile_ci(boot["qini"])
    alo, ahi = ev.percentile_ci(boot["auuc"])
    cal = ev.calibration(ev.by_decile(tau, t, y))
    q = float(c.qini_coefficient()[0])
    at = {f"uplift_at_{int(f * 100)}": float(c.at_fraction(c.uplift, f)[0]) for f in (0.1, 0.2, 0.3, 0.5)}
    return {
        "learner": name, "qini": q, "qini_ci_low": qlo, "qini_ci_high": qhi,
        "auuc": float(c.auuc()[0]), "auuc_ci_low": alo, "auuc_ci_high": ahi,
        "oracle_qini": oracle_qini, "oracle_share": (q / oracle_qini) if oracle_qini else None,
        "expected_oracle_share": _expected_share(tau, tau_true) if tau_true is not None else None,
        **at, "calibration_slope": cal["slope"], "calibration_gap": cal["mean_abs_gap"],
        "fit_seconds": fit_seconds, "n_base_fits": n_fits,
    }
