"""Matplotlib figures of the causal studies (PNG bytes; matplotlib imported lazily)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

#: Plots of a causal analysis, in the order a report shows them (``reports/causal/<id>__<name>.png``).
FIGURES = ("estimates", "overlap", "balance", "sensitivity", "event_study", "trend_sensitivity", "synthetic_control")


def _fig():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _fig().close(fig)
    return buf.getvalue()


def overlap_plot(scores: dict[str, np.ndarray], d: np.ndarray, treated: str = "treated",
                 untreated: str = "untreated") -> bytes:
    """Propensity histograms by arm, per propensity model (the overlap diagnostic)."""
    plt = _fig()
    fig, axes = plt.subplots(1, len(scores), figsize=(5 * len(scores), 3.5), squeeze=False)
    bins = np.linspace(0, 1, 41)
    for ax, (name, e) in zip(axes[0], scores.items()):
        ax.hist(e[d == 0], bins=bins, alpha=0.6, density=True, label=untreated)
        ax.hist(e[d == 1], bins=bins, alpha=0.6, density=True, label=treated)
        for x in (0.1, 0.9):
            ax.axvline(x, color="grey", ls=":", lw=0.8)
        ax.set_title(f"propensity ({name}, cross-fitted)")
        ax.set_xlabel(f"P({treated} | X)")
        ax.legend()
    return _png(fig)


def sensitivity_plot(estimate: float, se: float, df: int, rv: float, benchmarks: list[dict], label: str) -> bytes:
    """Cinelli–Hazlett contour: the estimate after the largest bias a confounder with partial
    R² (treatment, outcome) could cause; the 0 contour, the robustness value on the diagonal and
    the observed covariates as reference points."""
    from liftlab.causal.sensitivity import adjusted_estimate

    plt = _fig()
    top = max(0.3, 1.6 * rv if np.isfinite(rv) else 0.3,
              *[1.3 * max(b["r2_dx"], b["r2_yx"]) for b in benchmarks]) if benchmarks else max(0.3, 1.6 * rv)
    top = min(top, 0.95)
    grid = np.linspace(0, top, 121)
    dz, yz = np.meshgrid(grid, grid)
    adj = adjusted_estimate(estimate, se, df, dz, yz)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    cs = ax.contour(dz, yz, adj, levels=9, colors="grey", linewidths=0.7)
    ax.clabel(cs, fontsize=7, fmt="%.3g")
    ax.contour(dz, yz, adj, levels=[0], colors="red", linewidths=1.8)
    if np.isfinite(rv):
        ax.plot([rv], [rv], "rD")
        ax.annotate(f"RV = {rv:.1%}", (rv, rv), textcoords="offset points", xytext=(6, -10), color="red", fontsize=8)
    for b in benchmarks:
        ax.plot([b["r2_dx"]], [b["r2_yx"]], "ko", ms=4)
        ax.annotate(b["covariate"], (b["r2_dx"], b["r2_yx"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("partial R² of the confounder with the treatment")
    ax.set_ylabel("partial R² with the outcome")
    ax.set_title(f"{label}: estimate {estimate:+.3g}; red = explained away", fontsize=9)
    return _png(fig)


def trend_sensitivity_plot(att: float, ci: tuple[float, float], sens: dict, label: str) -> bytes:
    """A rollout's ATT if treated groups had drifted by δ per period since adoption (bias
    δ·h̄), with the pre-period trend's interval shaded: where the line crosses 0 inside the
    shaded band, trends like those seen before the launch could explain the effect."""
    plt = _fig()
    hbar = sens.get("mean_periods_since_adoption") or float("nan")
    brk = sens.get("breakdown_trend_per_period") or float("nan")
    lo, hi = (sens.get("pretrend_slope_ci") or [float("nan"), float("nan")])[:2]
    span = np.nanmax(np.abs([brk, lo or np.nan, hi or np.nan, 1e-9])) * 1.6
    delta = np.linspace(-span, span, 101)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(delta, att - delta * hbar, color="C0", label="ATT corrected for a drift δ")
    ax.fill_between(delta, ci[0] - delta * hbar, ci[1] - delta * hbar, color="C0", alpha=0.15)
    ax.axhline(0, color="black", lw=0.8)
    if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
        ax.axvspan(lo, hi, color="orange", alpha=0.25, label="pre-period trend (CI)")
    if np.isfinite(brk):
        ax.axvline(brk, color="red", ls="--", lw=1, label=f"breakdown δ* = {brk:+.3g}")
    ax.set_xlabel("differential trend δ per period since adoption")
    ax.set_ylabel("ATT")
    ax.set_title(label, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def love_plot(balance: pd.DataFrame) -> bytes:
    plt = _fig()
    b = balance.sort_values("smd_before", key=np.abs)
    fig, ax = plt.subplots(figsize=(6, 0.22 * len(b) + 1.5))
    yy = np.arange(len(b))
    ax.scatter(b["smd_before"].abs(), yy, label="before", marker="o")
    ax.scatter(b["smd_after"].abs(), yy, label="after matching", marker="x")
    if "smd_after_ipw" in b:
        ax.scatter(b["smd_after_ipw"].abs(), yy, label="after IPW (ATT)", marker="+")
    ax.axvline(0.1, color="grey", ls="--")
    ax.set_yticks(yy, b["covariate"], fontsize=7)
    ax.set_xlabel("|standardized mean difference|")
    ax.legend()
    return _png(fig)


def estimates_plot(rows: pd.DataFrame, title: str) -> bytes:
    """Forest plot: estimate with CI per estimator, truth as a vertical line."""
    plt = _fig()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    yy = np.arange(len(rows))
    ax.errorbar(rows["estimate"], yy, xerr=[rows["estimate"] - rows["ci_low"], rows["ci_high"] - rows["estimate"]],
                fmt="o", capsize=3)
    for t in rows["true_effect"].dropna().unique():
        ax.axvline(t, color="red", ls="--", lw=1)
    ax.set_yticks(yy, rows["estimator"] + " " + rows["estimand"], fontsize=8)
    ax.set_title(title + " (red: truth)")
    return _png(fig)


def event_study_plot(twfe_table: pd.DataFrame, by_horizon: pd.DataFrame, truth_h: pd.Series | None,
                     twfe_att: float, imp_att: float, true_att: float | None,
                     ylabel: str = "Δ outcome per unit and day") -> bytes:
    plt = _fig()
    fig, ax = plt.subplots(figsize=(8, 4))
    mid = (twfe_table["start"] + twfe_table["end"]) / 2
    ax.errorbar(mid, twfe_table["estimate"], yerr=[twfe_table["estimate"] - twfe_table["ci_low"],
                                                   twfe_table["ci_high"] - twfe_table["estimate"]],
                fmt="s", capsize=3, label="TWFE event study (weekly bins, ref. −7..−1)")
    ax.fill_between(by_horizon["horizon"], by_horizon["ci_low"], by_horizon["ci_high"], alpha=0.2)
    ax.plot(by_horizon["horizon"], by_horizon["estimate"], "-", label="imputation (BJS 2024) by day")
    if truth_h is not None:
        ax.plot(truth_h.index, truth_h.values, "k--", label="truth")
    ax.axhline(twfe_att, color="C0", ls=":", label=f"TWFE static β = {twfe_att:.3f}")
    ax.axhline(imp_att, color="C1", ls=":", label=f"imputation ATT = {imp_att:.3f}")
    if true_att is not None:
        ax.axhline(true_att, color="k", ls=":", label=f"true ATT = {true_att:.3f}")
    ax.axvline(-0.5, color="grey", lw=0.8)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("days since adoption")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    return _png(fig)


def synthetic_control_plot(res: dict) -> bytes:
    plt = _fig()
    wide, pre, main = res["wide"], res["pre"], res["main"]
    t = wide.index.to_numpy()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    a1.plot(t, wide[main["unit"]].to_numpy(), label=f"{main['unit']} (treated)")
    a1.plot(t, main["synthetic"], label="synthetic")
    a1.axvline(t[~pre][0] - 0.5, color="grey", ls="--")
    a1.set_title(f"treated vs synthetic (pre RMSPE {main['rmspe_pre']:.3f})")
    a1.set_xlabel("day")
    a1.legend()
    for unit, r in res["placebos"].items():
        a2.plot(t, r["gap"], color="grey", alpha=0.5, lw=0.8)
    a2.plot(t, main["gap"], color="C3", lw=2, label=f"{main['unit']} gap")
    a2.axvline(t[~pre][0] - 0.5, color="grey", ls="--")
    a2.set_title(f"placebo gaps (p = {res['p_value']:.3f}, rank {res['rank']}/{res['n_units']})")
    a2.legend()
    return _png(fig)
