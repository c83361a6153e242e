"""The two causal studies as pure functions of their input frames (used by the Dagster assets
and by the coverage study): every estimator of the issue, in one place, with diagnostics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from liftlab.causal import balance, did, matching, propensity, regression, synthetic_control, weighting
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


ESTIMATORS = ("aipw", "ipw", "matching", "regression")


def selection_on_observables(units: pd.DataFrame, metrics: Sequence[str], treated_variant: str,
                             confounders: Sequence[str], seed: int = 0, n_folds: int = 5,
                             gbm: bool = True, caliper_sd: float = 0.1,
                             aipw_outcome_models=("linear", "gbm"), estimators: Sequence[str] = ESTIMATORS) -> SelectionResult:
    """Naive difference and, per ``estimators``: regression adjustment, IPW (logistic and GBM
    scores), cross-fitted AIPW, caliper matching — ATE and ATT where defined — from one unit
    frame (``variant``, the outcome columns and the pre-treatment ``confounders``)."""
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
    return SelectionResult(out, bal, scores, overlap, d)


@dataclass
class StaggeredResult:
    twfe: Estimate
    imputation: Estimate
    event_study: dict
    by_horizon: pd.DataFrame
    group_time: pd.DataFrame


def staggered_rollout(panel: pd.DataFrame, bin_width: int = 7) -> StaggeredResult:
    """TWFE (clustered by unit), its event study and pre-trend test, the imputation estimator
    and Callaway–Sant'Anna group-time ATTs on a unit × period panel (see ``did``)."""
    tw = did.twfe(panel)
    es = did.event_study_twfe(panel, bin_width=bin_width)
    imp = did.imputation_did(panel)
    tw.diagnostics.update({"pretrend_f": es["pretrend_f"], "pretrend_p": es["pretrend_p"],
                           "pretrend_df": list(es["pretrend_df"]), "event_bin_days": bin_width})
    return StaggeredResult(tw, imp["overall"], es, imp["by_horizon"], did.group_time_att(panel))


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
    res["estimate"] = Estimate("synthetic_control", "ATT", main["att"], n=int((~pre).sum()), diagnostics={
        "treated_unit": str(treated), "donors": [str(x) for x in donors],
        "weights": {str(k): round(float(v), 6) for k, v in main["weights"].items()},
        "weights_sum": float(main["weights"].sum()), "weights_min": float(main["weights"].min()),
        "rmspe_pre": main["rmspe_pre"], "rmspe_post": main["rmspe_post"], "rmspe_ratio": main["ratio"],
        "placebo_p_value": res["p_value"], "placebo_rank": res["rank"], "placebo_units": res["n_units"],
        "placebo_ratios": {str(k): float(v) for k, v in res["ratios"].items()},
        "n_pre_periods": int(pre.sum()), "n_post_periods": int((~pre).sum())})
    res["wide"], res["pre"] = wide, pre
    return res
