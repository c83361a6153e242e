"""Synthetic control for one treated unit (Abadie, Diamond & Hainmueller 2010, "Synthetic
control methods for comparative case studies", *JASA* 105; Abadie 2021, *J. Econ.
Literature* 59).

Weights minimise the pre-period distance ‖y₁ − Y₀w‖² over the simplex {w ≥ 0, Σw = 1}
(predictors = the pre-period outcomes, V = identity). The solver is accelerated projected
gradient (FISTA, Beck & Teboulle 2009) with the exact Euclidean projection onto the simplex
(Duchi, Shalev-Shwartz, Singer & Chandra 2008), so every iterate satisfies the constraint.
Inference: placebo-in-space — the same fit for every donor as if it were treated; the p-value
is the share of units whose post/pre RMSPE ratio is at least the treated unit's (ADH 2010,
§2.4; Abadie 2021, §4).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``v`` onto {w ≥ 0, Σw = 1} (Duchi et al. 2008, Fig. 1)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u)
    rho = np.nonzero(u * np.arange(1, len(v) + 1) > css - 1)[0][-1]
    theta = (css[rho] - 1) / (rho + 1.0)
    return np.maximum(v - theta, 0.0)


def simplex_weights(x1: np.ndarray, X0: np.ndarray, max_iter: int = 50_000, tol: float = 1e-10) -> np.ndarray:
    """argmin_w ‖x1 − X0 w‖² subject to w ≥ 0, Σw = 1 (FISTA with simplex projection and
    adaptive restart; stops when the projected-gradient step moves w by less than ``tol``)."""
    x1 = np.asarray(x1, float)
    X0 = np.asarray(X0, float)
    J = X0.shape[1]
    G, b = X0.T @ X0, X0.T @ x1
    L = 2 * np.linalg.eigvalsh(G).max() or 1.0
    w = np.full(J, 1.0 / J)
    z, t = w.copy(), 1.0
    for _ in range(max_iter):
        w_new = project_simplex(z - 2 * (G @ z - b) / L)
        step = np.abs(w_new - w).max()
        t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
        if (z - w_new) @ (w_new - w) > 0:  # O'Donoghue & Candès (2015) restart
            t_new, z = 1.0, w_new
        else:
            z = w_new + (t - 1) / t_new * (w_new - w)
        w, t = w_new, t_new
        if step < tol:
            break
    return w


def fit(wide: pd.DataFrame, treated, pre_mask, donors=None) -> dict:
    """Synthetic control of column ``treated`` of ``wide`` (periods × units) from ``donors``
    (default: every other column), fitted on rows ``pre_mask``."""
    pre = np.asarray(pre_mask, bool)
    donors = [c for c in (donors if donors is not None else wide.columns) if c != treated]
    Y0 = wide[donors].to_numpy(float)
    y1 = wide[treated].to_numpy(float)
    w = simplex_weights(y1[pre], Y0[pre])
    synth = Y0 @ w
    gap = y1 - synth
    rmspe_pre = float(np.sqrt(np.mean(gap[pre] ** 2)))
    rmspe_post = float(np.sqrt(np.mean(gap[~pre] ** 2)))
    return {"unit": treated, "weights": pd.Series(w, index=donors), "synthetic": synth, "gap": gap,
            "rmspe_pre": rmspe_pre, "rmspe_post": rmspe_post,
            "ratio": rmspe_post / rmspe_pre if rmspe_pre > 0 else np.inf,
            "att": float(gap[~pre].mean())}


def placebo_test(wide: pd.DataFrame, treated, pre_mask, donors) -> dict:
    """Fit the treated unit on ``donors`` and every donor on the other donors (the treated unit
    excluded); p = #{units with ratio ≥ treated ratio} / #units."""
    main = fit(wide, treated, pre_mask, donors)
    placebos = {d: fit(wide, d, pre_mask, [x for x in donors if x != d]) for d in donors}
    ratios = pd.Series({treated: main["ratio"], **{d: r["ratio"] for d, r in placebos.items()}})
    p = float((ratios >= main["ratio"]).mean())
    rank = int((ratios > main["ratio"]).sum()) + 1
    return {"main": main, "placebos": placebos, "ratios": ratios.sort_values(ascending=False),
            "p_value": p, "rank": rank, "n_units": int(len(ratios))}
