"""Matplotlib figures of the causal studies (PNG bytes; matplotlib imported lazily)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

#: Plots of a causal analysis, in the order a report shows them (``reports/causal/<id>__<name>.png``).
FIGURES = ("estimates", "overlap", "balance", "event_study", "synthetic_control")


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


def overlap_plot(scores: dict[str, np.ndarray], d: np.ndarray) -> bytes:
    plt = _fig()
    fig, axes = plt.subplots(1, len(scores), figsize=(5 * len(scores), 3.5), squeeze=False)
    bins = np.linspace(0, 1, 41)
    for ax, (name, e) in zip(axes[0], scores.items()):
        ax.hist(e[d == 0], bins=bins, alpha=0.6, density=True, label="not opted in")
        ax.hist(e[d == 1], bins=bins, alpha=0.6, density=True, label="opted in")
        ax.set_title(f"propensity ({name}, cross-fitted)")
        ax.set_xlabel("P(opt in | X)")
        ax.legend()
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
