"""Difference-in-differences on a unit × period panel (pure numpy).

The panel is a frame with one row per unit × period: ``unit``, ``time`` (integer period),
``y`` (outcome, e.g. mean revenue per user-day of a region), ``weight`` (e.g. users, so that
averages are per user) and ``first_treat`` (first treated period, NaN if never treated).
Adoption is absorbing.

* TWFE with cluster-robust SEs by unit: Bertrand, Duflo & Mullainathan (2004), *QJE* 119;
  Cameron & Miller (2015), *J. Human Resources* 50(2).
* Its bias under staggered adoption with dynamic effects: Goodman-Bacon (2021),
  *J. Econometrics* 225; Sun & Abraham (2021), *J. Econometrics* 225.
* Valid estimator: the imputation estimator of Borusyak, Jaravel & Spiess (2024),
  "Revisiting event-study designs", *Review of Economic Studies* 91 — unit and period fixed
  effects fitted on untreated cells only, Y(0) imputed for treated cells, cell effects
  averaged with the estimand's weights; conservative variance of their Theorem 3 (clustered
  by unit, treated-cell residuals against leave-one-unit-out horizon means). Under parallel
  trends in every period it is efficient (BJS 2024, Theorem 2); the group-time ATTs of
  Callaway & Sant'Anna (2021), which use only period g−1 as the base, are computed alongside.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from liftlab.causal.regression import ols
from liftlab.causal.result import Estimate, critical_value


def _codes(x) -> tuple[np.ndarray, np.ndarray]:
    levels, codes = np.unique(np.asarray(x), return_inverse=True)
    return levels, codes


def fe_design(panel: pd.DataFrame) -> np.ndarray:
    """Intercept + unit dummies + period dummies (first level of each dropped)."""
    _, u = _codes(panel["unit"])
    _, t = _codes(panel["time"])
    n = len(panel)
    U = np.zeros((n, u.max() + 1))
    U[np.arange(n), u] = 1
    T = np.zeros((n, t.max() + 1))
    T[np.arange(n), t] = 1
    return np.column_stack([np.ones(n), U[:, 1:], T[:, 1:]])


def treated_indicator(panel: pd.DataFrame) -> np.ndarray:
    ft = panel["first_treat"].to_numpy(float)
    return (~np.isnan(ft) & (panel["time"].to_numpy(float) >= ft)).astype(float)


def twfe(panel: pd.DataFrame, weighted: bool = True, alpha: float = 0.05) -> Estimate:
    """Y_it = α_i + λ_t + β·D_it + ε_it (WLS with ``weight`` if ``weighted``), cluster-robust
    CR1 SE by unit with t(G−1) critical values (Cameron & Miller 2015, §VI)."""
    D = treated_indicator(panel)
    X = np.column_stack([D, fe_design(panel)])
    w = panel["weight"].to_numpy(float) if weighted else np.ones(len(panel))
    fit = ols(panel["y"].to_numpy(float), X, weights=w, cov_type="cluster", clusters=panel["unit"].to_numpy())
    g = fit.n_clusters
    crit = critical_value(alpha, g - 1)
    b, se = fit.coef[0], fit.se[0]
    treated = D == 1
    baseline = float((w[treated] * panel["y"].to_numpy(float)[treated]).sum() / w[treated].sum() - b)
    return Estimate("twfe", "ATT", float(b), float(se), float(b - crit * se), float(b + crit * se),
                    int(len(panel)), {"clusters": g, "cov_type": "CR1", "df": g - 1, "weighted": weighted,
                                      "n_treated_cells": int(D.sum())}, baseline, 1 - alpha)


def event_bins(rel: np.ndarray, width: int) -> np.ndarray:
    """Relative period → bin index floor(rel / width) (−1 = the last ``width`` pre periods)."""
    return np.floor(rel / width).astype(int)


def event_study_twfe(panel: pd.DataFrame, bin_width: int = 7, reference: int = -1,
                     weighted: bool = True, alpha: float = 0.05) -> dict:
    """Dynamic TWFE: Y = α_i + λ_t + Σ_k β_k·1[bin(t − g_i) = k] (never-treated units have no
    dummies, ``reference`` bin omitted), cluster-robust by unit. The pre-trend test is the
    Wald test that every lead coefficient is 0, as F(q, G−1) (Cameron & Miller 2015, §VII)."""
    from scipy import stats

    ft = panel["first_treat"].to_numpy(float)
    rel = panel["time"].to_numpy(float) - ft
    ever = ~np.isnan(ft)
    b = np.where(ever, event_bins(np.nan_to_num(rel), bin_width), 10 ** 6)
    bins = sorted(set(b[ever]) - {reference})
    dummies = np.column_stack([(b == k).astype(float) for k in bins])
    X = np.column_stack([dummies, fe_design(panel)])
    w = panel["weight"].to_numpy(float) if weighted else None
    fit = ols(panel["y"].to_numpy(float), X, weights=w, cov_type="cluster", clusters=panel["unit"].to_numpy())
    g = fit.n_clusters
    crit = critical_value(alpha, g - 1)
    k = len(bins)
    coef, cov = fit.coef[:k], fit.cov[:k, :k]
    table = pd.DataFrame({"bin": bins, "start": [x * bin_width for x in bins],
                          "end": [x * bin_width + bin_width - 1 for x in bins],
                          "estimate": coef, "se": np.sqrt(np.maximum(np.diag(cov), 0))})
    table["ci_low"] = table["estimate"] - crit * table["se"]
    table["ci_high"] = table["estimate"] + crit * table["se"]
    leads = np.array([x < reference for x in bins])
    q = int(leads.sum())
    bl, vl = coef[leads], cov[np.ix_(leads, leads)]
    wald = float(bl @ np.linalg.pinv(vl) @ bl) if q else float("nan")
    f_stat = wald / q if q else float("nan")
    p = float(stats.f.sf(f_stat, q, g - 1)) if q else float("nan")
    return {"table": table, "pretrend_f": f_stat, "pretrend_df": (q, g - 1), "pretrend_p": p,
            "reference_bin": reference, "bin_width": bin_width}


def imputation_did(panel: pd.DataFrame, horizons: bool = True, alpha: float = 0.05) -> dict:
    """Borusyak–Jaravel–Spiess (2024) imputation estimator of the weight-averaged ATT over all
    treated cells (each cell weighted by ``weight``: per-user ATT) and, if ``horizons``, of the
    ATT by period since adoption (event study). Returns ``overall`` (Estimate), ``by_horizon``
    (frame), ``cell_effects`` (treated cells with τ̂_it). Intervals at 1 − α with t(G − 1)
    critical values (G clusters = units; few clusters, Cameron & Miller 2015 §VI)."""
    y = panel["y"].to_numpy(float)
    n_w = panel["weight"].to_numpy(float)
    D = treated_indicator(panel).astype(bool)
    Z = fe_design(panel)
    units = panel["unit"].to_numpy()
    _, ucode = _codes(units)
    g = ucode.max() + 1
    rel = (panel["time"].to_numpy(float) - panel["first_treat"].to_numpy(float))
    Z0, Z1 = Z[~D], Z[D]
    # FE columns must be identified from untreated cells (every treated unit has a pre-period,
    # every treated period has untreated units)
    keep = np.abs(Z0).sum(0) > 0
    if not keep.all():
        raise ValueError("some unit or period has no untreated cell: FE not identified")
    W0 = n_w[~D]
    A = np.linalg.pinv(Z0.T @ (Z0 * W0[:, None]))
    beta = A @ (Z0.T @ (W0 * y[~D]))
    tau = y[D] - Z1 @ beta
    # aggregation weights over treated cells: columns = estimands
    h = rel[D].astype(int)
    hs = np.unique(h) if horizons else np.array([], int)
    W1 = np.column_stack([n_w[D]] + [n_w[D] * (h == k) for k in hs])
    W1 = W1 / W1.sum(0)
    est = W1.T @ tau
    V0 = -(Z0 * W0[:, None]) @ A @ (Z1.T @ W1)  # implied weights of untreated cells
    # residuals: untreated = FE residual; treated = τ̂ minus leave-one-unit-out horizon mean
    eps0 = y[~D] - Z0 @ beta
    u1 = ucode[D]
    frame = pd.DataFrame({"u": u1, "h": h, "w": n_w[D], "wt": n_w[D] * tau})
    tot = frame.groupby("h")[["w", "wt"]].transform("sum")
    own = frame.groupby(["h", "u"])[["w", "wt"]].transform("sum")
    loo_w = (tot["w"] - own["w"]).to_numpy()
    loo_mean = np.where(loo_w > 0, (tot["wt"] - own["wt"]).to_numpy() / np.where(loo_w > 0, loo_w, 1),
                        (tot["wt"] / tot["w"]).to_numpy())
    eps1 = tau - loo_mean
    contrib = np.zeros((g, W1.shape[1]))
    np.add.at(contrib, ucode[~D], V0 * eps0[:, None])
    np.add.at(contrib, u1, W1 * eps1[:, None])
    var = (contrib ** 2).sum(0) * g / (g - 1)
    se = np.sqrt(var)
    crit = critical_value(alpha, g - 1)
    imputed = W1.T @ (Z1 @ beta)  # counterfactual mean of the treated cells, per estimand
    overall = Estimate.normal("imputation_did", "ATT", est[0], se[0], int(len(panel)), {
        "source": "Borusyak, Jaravel & Spiess (2024)", "clusters": int(g), "df": int(g - 1),
        "n_treated_cells": int(D.sum()), "n_untreated_cells": int((~D).sum()),
        "controls": "never-treated and not-yet-treated cells"}, z=crit, baseline=imputed[0])
    overall.level = 1 - alpha
    by_h = pd.DataFrame({"horizon": hs, "estimate": est[1:], "se": se[1:], "baseline": imputed[1:]})
    by_h["ci_low"] = by_h["estimate"] - crit * by_h["se"]
    by_h["ci_high"] = by_h["estimate"] + crit * by_h["se"]
    cells = panel.loc[D, ["unit", "time", "first_treat", "weight"]].assign(horizon=h, tau=tau)
    return {"overall": overall, "by_horizon": by_h, "cell_effects": cells.reset_index(drop=True)}


def pretrend_test(panel: pd.DataFrame, bin_width: int = 7, n_bins: int = 2) -> dict:
    """Borusyak, Jaravel & Spiess (2024) pre-trend test ("Test 1", §4.4): on the untreated cells
    only, regress the outcome on unit and period fixed effects plus indicators of the last
    ``n_bins`` × ``bin_width`` periods before adoption (in bins); the Wald test that they are 0,
    cluster-robust by unit, as F(q, G − 1). Unlike TWFE leads it is not contaminated by
    treatment effects (treated cells are not used)."""
    from scipy import stats

    ft = panel["first_treat"].to_numpy(float)
    time = panel["time"].to_numpy(float)
    untreated = np.isnan(ft) | (time < ft)
    p = panel[untreated]
    rel = (p["time"].to_numpy(float) - p["first_treat"].to_numpy(float))
    bins = np.where(np.isnan(rel), 0, np.floor(rel / bin_width))  # −1 = the last bin_width periods before
    cols = [((bins == -k) & ~np.isnan(rel)).astype(float) for k in range(1, n_bins + 1)]
    cols = [c for c in cols if c.any()]
    if not cols:
        return {"f": float("nan"), "df": (0, 0), "p_value": float("nan"), "test": "BJS (2024) test 1"}
    X = np.column_stack([*cols, fe_design(p)])
    fit = ols(p["y"].to_numpy(float), X, weights=p["weight"].to_numpy(float), cov_type="cluster",
              clusters=p["unit"].to_numpy())
    q, g = len(cols), fit.n_clusters
    b, v = fit.coef[:q], fit.cov[:q, :q]
    f = float(b @ np.linalg.pinv(v) @ b) / q
    return {"f": f, "df": (q, g - 1), "p_value": float(stats.f.sf(f, q, g - 1)), "estimates": b.tolist(),
            "bin_width": bin_width, "test": "BJS (2024) test 1: pre-adoption bins on untreated cells"}


def placebo_adoption(panel: pd.DataFrame, shift: int, alpha: float = 0.05) -> Estimate:
    """Placebo-in-time refutation: the imputation estimator on the untreated cells only, every
    adopting unit pretending to adopt ``shift`` periods early. Under parallel trends its ATT is 0;
    an interval excluding 0 says trends diverged before the launch. Units left without an
    untreated cell before their placebo date are dropped."""
    ft = panel["first_treat"].to_numpy(float)
    pre = panel[np.isnan(ft) | (panel["time"].to_numpy(float) < ft)].copy()
    pre["first_treat"] = pre["first_treat"] - shift
    lead = pre.groupby("unit")["time"].transform("min")
    fake = pre["first_treat"].to_numpy(float)
    keep_unit = np.isnan(fake) | (lead.to_numpy(float) < fake)
    pre = pre[keep_unit]
    if not (~np.isnan(pre["first_treat"].to_numpy(float))).any():
        raise ValueError("no adopting unit has enough untreated periods for a placebo adoption")
    est = imputation_did(pre, horizons=False, alpha=alpha)["overall"]
    est.estimator, est.estimand = "placebo_imputation_did", "ATT"
    est.diagnostics.update({"refutation": f"adoption moved {shift} periods earlier, treated periods dropped",
                            "shift_periods": int(shift)})
    return est


def trend_breakdown(panel: pd.DataFrame, att: float, event_study: dict, alpha: float = 0.05) -> dict:
    """How large a violation of parallel trends would have to be to erase ``att``, next to the
    trend the pre-period shows — in the spirit of Rambachan & Roth (2023), "A more credible
    approach to parallel trends", *Review of Economic Studies* 90, with a linear drift:

    * if treated units' untreated outcomes drifted by δ per period from adoption on (δ·(h + 1)
      at horizon h), the imputation ATT would be biased by δ·h̄ with h̄ the weight-averaged
      h + 1 over treated cells: the effect is erased at δ* = ATT / h̄;
    * the pre-period slope δ̂ is the weighted (1/se²) least-squares slope through the reference
      bin of the event study's lead coefficients against their distance from it, with its
      1 − α interval.
    """
    from scipy import stats

    D = treated_indicator(panel).astype(bool)
    h = (panel["time"].to_numpy(float) - panel["first_treat"].to_numpy(float))[D] + 1
    w = panel["weight"].to_numpy(float)[D]
    hbar = float((w * h).sum() / w.sum()) if D.any() else float("nan")
    table, ref, width = event_study["table"], event_study["reference_bin"], event_study["bin_width"]
    leads = table[table["bin"] < ref]
    out = {"breakdown_trend_per_period": att / hbar if hbar else float("nan"), "mean_periods_since_adoption": hbar,
           "pretrend_slope": float("nan"), "pretrend_slope_ci": [float("nan"), float("nan")], "alpha": alpha}
    if len(leads) and (leads["se"] > 0).all():
        x = ((leads["bin"] - ref) * width).to_numpy(float)
        v = 1 / leads["se"].to_numpy(float) ** 2
        slope = float((v * x * leads["estimate"].to_numpy(float)).sum() / (v * x * x).sum())
        se = float(1 / np.sqrt((v * x * x).sum()))
        c = float(stats.norm.ppf(1 - alpha / 2))
        out |= {"pretrend_slope": slope, "pretrend_slope_se": se, "pretrend_slope_ci": [slope - c * se, slope + c * se]}
    return out


def group_time_att(panel: pd.DataFrame) -> pd.DataFrame:
    """Callaway & Sant'Anna (2021, *J. Econometrics* 225) group-time ATT(g, t) with
    never-treated controls and base period g−1 (weight-averaged within the cohort and the
    control group), for display next to TWFE. Point estimates only."""
    p = panel.assign(n_y=panel["y"] * panel["weight"])
    ft = p["first_treat"]
    cell = p.groupby([ft.fillna(-1).rename("g"), "time"])[["n_y", "weight"]].sum()
    mean = (cell["n_y"] / cell["weight"]).unstack("time")
    never = mean.loc[-1]
    rows = []
    for gval in [x for x in mean.index if x != -1]:
        base = gval - 1
        if base not in mean.columns:
            continue
        for t in mean.columns:
            att = (mean.loc[gval, t] - mean.loc[gval, base]) - (never[t] - never[base])
            rows.append({"g": gval, "time": t, "att": att, "post": t >= gval})
    return pd.DataFrame(rows)
