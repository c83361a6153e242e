"""The two causal studies as pure functions of their input frames (used by the Dagster assets
and by the coverage study): every estimator of the issue, in one place, with diagnostics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from liftlab.causal import balance, did, matching, propensity, regression, sensitivity, synthetic_control, weighting
from liftlab.causal.features import covariate_matrix
from liftlab.causal.result import Estimate


@dataclass
class SelectionResult:
    estimates: list[tuple[str, Estimate]]  # (metric, estimate)
    balance: pd.DataFrame
    propensity: dict[str, np.ndarray]
    overlap: dict
    d: np.ndarray
    extra: dict = field(default_factory=dict)
    #: Observed covariates' partial R² with the treatment and with the first metric (the
    #: reference points of the sensitivity contour).
    benchmarks: list[dict] = field(default_factory=list)
    alpha: float = 0.05


ESTIMATORS = ("aipw", "ipw", "matching", "regression")

#: Estimators whose rows are refutations (their truth is 0), not estimates of the effect.
PLACEBO_ESTIMATORS = ("placebo_permuted_treatment", "placebo_imputation_did")


def covariate_benchmarks(y: np.ndarray, d: np.ndarray, X: pd.DataFrame, top: int = 3) -> list[dict]:
    """Partial R² of each observed covariate with the treatment (given the others) and with the
    outcome (given the treatment and the others), from classical OLS t statistics
    (R² = t²/(t² + df), Cinelli & Hazlett 2020 §3.2): how strong the confounders we *did*
    observe are, to read the robustness value against. The ``top`` strongest by product."""
    Xn = X.to_numpy(float)
    keep = Xn.std(axis=0) > 0
    names = list(X.columns[keep])
    Xn = Xn[:, keep]

    def partial_r2(target, design):
        beta, *_ = np.linalg.lstsq(design, target, rcond=None)
        resid = target - design @ beta
        df = len(target) - design.shape[1]
        cov = np.linalg.pinv(design.T @ design) * (resid @ resid) / df
        t = beta / np.sqrt(np.diag(cov))
        return t * t / (t * t + df)

    ones = np.ones((len(y), 1))
    r2_d = partial_r2(d.astype(float), np.hstack([ones, Xn]))[1:]
    r2_y = partial_r2(y, np.hstack([ones, d[:, None].astype(float), Xn]))[2:]
    rows = [{"covariate": n, "r2_dx": float(a), "r2_yx": float(b)} for n, a, b in zip(names, r2_d, r2_y)]
    return sorted(rows, key=lambda r: -r["r2_dx"] * r["r2_yx"])[:top]


def with_sensitivity(e: Estimate, sd_y: float, df: int, alpha: float) -> Estimate:
    """The estimate with its omitted-variable sensitivity (robustness value on its t statistic,
    E-value on its standardised size) in ``diagnostics['sensitivity']``."""
    if not (np.isfinite(e.se) and e.se > 0):
        return e
    r = sensitivity.robustness(e.estimate / e.se, df, e.estimate, e.ci_low, e.ci_high, sd_y, alpha)
    e.diagnostics["sensitivity"] = {**r.as_dict(), "alpha": alpha, "sd_outcome": float(sd_y)}
    return e


def placebo_treatment(y: np.ndarray, d: np.ndarray, X: np.ndarray, seed: int, n_folds: int, alpha: float) -> Estimate:
    """Refutation: cross-fitted AIPW (logistic, linear) of a randomly permuted treatment — its
    effect is 0 by construction; an interval excluding 0 means the estimator or its interval
    misbehaves on these data (as DoWhy's placebo-treatment refuter)."""
    fake = sensitivity.permuted_treatment(d, seed + 7919)
    est = weighting.aipw_cross_fit(y, fake, X, estimands=("ATE",), n_folds=n_folds, seed=seed)["ATE"].at_level(alpha)
    est.estimator = "placebo_permuted_treatment"
    est.diagnostics["refutation"] = "treatment labels permuted at random (same number treated): the effect is 0"
    est.diagnostics["passed"] = bool(est.ci_low <= 0 <= est.ci_high)
    return est


def selection_on_observables(units: pd.DataFrame, metrics: Sequence[str], treated_variant: str,
                             confounders: Sequence[str], seed: int = 0, n_folds: int = 5,
                             gbm: bool = True, caliper_sd: float = 0.1,
                             aipw_outcome_models=("linear", "gbm"), estimators: Sequence[str] = ESTIMATORS,
                             alpha: float = 0.05, refute: bool = True) -> SelectionResult:
    """Naive difference and, per ``estimators``: regression adjustment, IPW (logistic and GBM
    scores), cross-fitted AIPW, caliper matching — ATE and ATT where defined — from one unit
    frame (``variant``, the outcome columns and the pre-treatment ``confounders``); intervals at
    1 − ``alpha``, each with its sensitivity to an unobserved confounder, and (``refute``) a
    placebo-treatment refutation on the first metric."""
    d = (units["variant"].to_numpy() == treated_variant).astype(int)
    Xdf = covariate_matrix(units, confounders, outcomes=metrics)
    X = Xdf.to_numpy(float)
    folds = propensity.fold_ids(len(d), n_folds, seed)
    scores = {"logistic": propensity.cross_fit_propensity(X, d, "logistic", folds=folds, seed=seed)}
    if gbm:
        scores["gbm"] = propensity.cross_fit_propensity(X, d, "gbm", folds=folds, seed=seed)
    e = scores["logistic"]
    overlap = {name: propensity.overlap_diagnostics(s, d) for name, s in scores.items()}
    ec = propensity.clip(e)
    logit = np.log(ec / (1 - ec))
    out: list[tuple[str, Estimate]] = []
    bal = None
    for metric in metrics:
        y = units[metric].to_numpy(float)
        out.append((metric, weighting.naive_difference(y, d)))
        naive_att = weighting.naive_difference(y, d)
        naive_att.estimand = "ATT"
        out.append((metric, naive_att))
        if "regression" in estimators:
            for est in ("ATE", "ATT"):
                out.append((metric, regression.regression_adjustment(y, d, X, est)))
        if "ipw" in estimators:
            for name, s in scores.items():
                for est in ("ATE", "ATT"):
                    r = weighting.ipw(y, d, s, est)
                    r.estimator = f"ipw_hajek_{name}"
                    r.diagnostics["propensity_model"] = name
                    out.append((metric, r))
            keep = propensity.crump_trim_mask(e)
            if keep.sum() > 10:
                r = weighting.ipw(y[keep], d[keep], e[keep], "ATE")
                r.estimator, r.estimand = "ipw_hajek_logistic_trimmed", "ATE_overlap"
                r.diagnostics["trim"] = "Crump et al. (2009) [0.1, 0.9]"
                r.diagnostics["share_trimmed"] = float(1 - keep.mean())
                out.append((metric, r))
        if "aipw" in estimators:
            for om in aipw_outcome_models:
                for est, r in weighting.aipw_cross_fit(y, d, X, propensity_model="logistic", outcome_model=om,
                                                      n_folds=n_folds, seed=seed, e=e).items():
                    out.append((metric, r))
        m_est, m = matching.matching_att(y, d, logit, caliper_sd)
        if bal is None:
            bal = balance.smd(X, d, m["counts"], names=Xdf.columns)
            bal = bal.assign(smd_after_ipw=balance.smd(X, d, np.where(d == 1, 1, ec / (1 - ec)))["smd_after"])
        if "matching" in estimators:
            m_est.diagnostics["max_abs_smd_before"] = float(bal["smd_before"].abs().max())
            m_est.diagnostics["max_abs_smd_after"] = float(bal["smd_after"].abs().max())
            out.append((metric, m_est))
    # Intervals at the spec's level, then each estimate's sensitivity; the residual degrees of
    # freedom are those of the interacted regression adjustment (1 + D + X + D·X).
    df = max(len(d) - 2 - 2 * X.shape[1], 2)
    sd = {m: float(units[m].to_numpy(float).std(ddof=1)) for m in metrics}
    share_trimmed = float(1 - propensity.crump_trim_mask(e).mean())
    lean_overlap = {k: overlap["logistic"][k] for k in ("e_min_treated", "e_max_treated", "e_min_control",
                                                        "e_max_control", "share_clipped", "share_outside_crump")}
    rescaled = []
    for metric, est in out:
        est = with_sensitivity(est.at_level(alpha), sd[metric], df, alpha)
        if est.estimator.startswith(("aipw", "ipw")):
            est.diagnostics["overlap"] = {**lean_overlap, "share_trimmed_crump": share_trimmed}
        rescaled.append((metric, est))
    if bal is not None and rescaled:
        # the design's balance, once, on the unadjusted comparison of the first metric
        first_naive = next(est for _, est in rescaled if est.estimator == "naive_difference")
        first_naive.diagnostics["balance"] = bal[["covariate", "smd_before", "smd_after", "smd_after_ipw"]].to_dict("records")
    res = SelectionResult(rescaled, bal, scores, overlap, d, alpha=alpha)
    if metrics:
        first = units[metrics[0]].to_numpy(float)
        res.benchmarks = covariate_benchmarks(first, d, Xdf)
        if refute:
            rescaled.append((metrics[0], placebo_treatment(first, d, X, seed, n_folds, alpha)))
    return res


@dataclass
class StaggeredResult:
    twfe: Estimate
    imputation: Estimate
    event_study: dict
    by_horizon: pd.DataFrame
    group_time: pd.DataFrame
    placebo: Estimate | None = None


def placebo_shift(panel: pd.DataFrame, most: int = 7) -> int:
    """How far to move adoption for the placebo-in-time test: half the shortest untreated
    stretch before an adoption, at most ``most`` periods, at least 1."""
    ft = panel.groupby("unit")["first_treat"].first().dropna()
    lead = float(ft.min() - panel["time"].min()) if len(ft) else 0.0
    return int(max(1, min(most, lead // 2)))


def staggered_rollout(panel: pd.DataFrame, bin_width: int = 7, alpha: float = 0.05,
                      refute: bool = True) -> StaggeredResult:
    """TWFE (clustered by unit), its event study and pre-trend test, the imputation estimator
    and Callaway–Sant'Anna group-time ATTs on a unit × period panel (see ``did``), intervals at
    1 − α with t(G − 1) critical values; (``refute``) the placebo-in-time refutation next to the
    pre-trend test, in ``imputation.diagnostics['placebo_adoption']`` and ``extra``."""
    tw = did.twfe(panel, alpha=alpha)
    es = did.event_study_twfe(panel, bin_width=bin_width, alpha=alpha)
    imp = did.imputation_did(panel, alpha=alpha)
    tw.diagnostics.update({"pretrend_f": es["pretrend_f"], "pretrend_p": es["pretrend_p"],
                           "pretrend_df": list(es["pretrend_df"]), "event_bin_days": bin_width})
    overall = imp["overall"]
    pre = did.pretrend_test(panel, bin_width)
    overall.diagnostics.update({"pretrend_p": pre["p_value"], "pretrend_test": pre["test"],
                                "pretrend_df": list(pre["df"]),
                                "sensitivity": did.trend_breakdown(panel, overall.estimate, es, alpha)})
    res = StaggeredResult(tw, overall, es, imp["by_horizon"], did.group_time_att(panel))
    if refute:
        try:
            placebo = did.placebo_adoption(panel, placebo_shift(panel), alpha=alpha)
        except ValueError:
            placebo = None
        if placebo is not None:
            placebo.diagnostics["passed"] = bool(placebo.ci_low <= 0 <= placebo.ci_high)
            overall.diagnostics["placebo_adoption"] = {
                "estimate": placebo.estimate, "ci_low": placebo.ci_low, "ci_high": placebo.ci_high,
                "shift_periods": placebo.diagnostics["shift_periods"], "passed": placebo.diagnostics["passed"]}
        res.placebo = placebo
    return res


def synthetic_control_study(panel: pd.DataFrame, treated, donors=None) -> dict:
    """Synthetic control of ``treated`` (a unit adopting alone) from never-treated donors,
    with the placebo-in-space test. Returns the ``placebo_test`` dict plus ``estimate``."""
    wide = panel.pivot(index="time", columns="unit", values="y").sort_index()
    ft = panel.groupby("unit")["first_treat"].first()
    g = ft[treated]
    if donors is None:
        donors = sorted(ft[ft.isna()].index)
    pre = wide.index.to_numpy() < g
    res = synthetic_control.placebo_test(wide, treated, pre, donors)
    main = res["main"]
    synthetic_post = np.asarray(main["synthetic"], float)[~pre]
    res["estimate"] = Estimate("synthetic_control", "ATT", main["att"], n=int((~pre).sum()),
                               baseline=float(synthetic_post.mean()), diagnostics={
        "treated_unit": str(treated), "donors": [str(x) for x in donors],
        "weights": {str(k): round(float(v), 6) for k, v in main["weights"].items()},
        "weights_sum": float(main["weights"].sum()), "weights_min": float(main["weights"].min()),
        "rmspe_pre": main["rmspe_pre"], "rmspe_post": main["rmspe_post"], "rmspe_ratio": main["ratio"],
        "placebo_p_value": res["p_value"], "placebo_rank": res["rank"], "placebo_units": res["n_units"],
        "placebo_ratios": {str(k): float(v) for k, v in res["ratios"].items()},
        "n_pre_periods": int(pre.sum()), "n_post_periods": int((~pre).sum())})
    res["wide"], res["pre"] = wide, pre
    return res
