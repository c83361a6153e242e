"""Uplift segments (Radcliffe & Surry 2011; Kane, Lo & Zheng 2014) from predicted outcomes.

For each unit the models give p̂₀(x) = predicted outcome without treatment and
τ̂(x) = predicted uplift, so p̂₁(x) = p̂₀(x) + τ̂(x). With a minimum uplift δ:

* **persuadable** — τ̂ > δ: responds because of the treatment;
* **sleeping dog** — τ̂ < −δ: the treatment puts them off;
* **sure thing** — |τ̂| ≤ δ and p̂₀ ≥ ½: responds either way;
* **lost cause** — |τ̂| ≤ δ and p̂₀ < ½: responds neither way.

Per segment the realised uplift of its units, each scored out of fold (difference in means,
normal-approximation CI)
checks that the labels mean something; on synthetic data the agreement with the true
types is reported too.
"""

from __future__ import annotations

import numpy as np
import polars as pl

SEGMENTS = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")


def assign(tau: np.ndarray, p0: np.ndarray, min_uplift: float = 0.05) -> np.ndarray:
    tau, p0 = np.asarray(tau, dtype=np.float64), np.asarray(p0, dtype=np.float64)
    flat = np.where(p0 >= 0.5, "sure_thing", "lost_cause")
    return np.where(tau > min_uplift, "persuadable", np.where(tau < -min_uplift, "sleeping_dog", flat)).astype(object)


def summary(segment, treated, y, z: float = 1.959963984540054) -> pl.DataFrame:
    """Counts and realised uplift (with CI) per segment."""
    frame = pl.DataFrame({"segment": np.asarray(segment, dtype=str), "t": np.asarray(treated, dtype=np.float64),
                          "y": np.asarray(y, dtype=np.float64)})
    out = frame.group_by("segment").agg(
        pl.len().alias("n"),
        (pl.col("t") == 1).sum().alias("n_treated"),
        pl.col("y").filter(pl.col("t") == 1).mean().alias("mean_treated"),
        pl.col("y").filter(pl.col("t") == 0).mean().alias("mean_control"),
        (pl.col("y").filter(pl.col("t") == 1).var() / (pl.col("t") == 1).sum()
         + pl.col("y").filter(pl.col("t") == 0).var() / (pl.col("t") == 0).sum()).sqrt().alias("se"),
    )
    full = pl.DataFrame({"segment": list(SEGMENTS)}).join(out, on="segment", how="left").with_columns(
        pl.col("n").fill_null(0), pl.col("n_treated").fill_null(0)
    )
    return full.with_columns((pl.col("mean_treated") - pl.col("mean_control")).alias("realised_uplift")).with_columns(
        (pl.col("realised_uplift") - z * pl.col("se")).alias("ci_low"),
        (pl.col("realised_uplift") + z * pl.col("se")).alias("ci_high"),
        (pl.col("n") / pl.col("n").sum()).alias("share"),
    )


def agreement(segment, true_type) -> dict[str, float]:
    """Accuracy against the true types and, per predicted segment, its precision."""
    seg, truth = np.asarray(segment, dtype=str), np.asarray(true_type, dtype=str)
    out = {"accuracy": float((seg == truth).mean())}
    for name in SEGMENTS:
        mask = seg == name
        out[f"precision_{name}"] = float((truth[mask] == name).mean()) if mask.any() else float("nan")
        tmask = truth == name
        out[f"recall_{name}"] = float((seg[tmask] == name).mean()) if tmask.any() else float("nan")
    return out


def confusion(segment, true_type) -> pl.DataFrame:
    frame = pl.DataFrame({"segment": np.asarray(segment, dtype=str), "true_type": np.asarray(true_type, dtype=str)})
    return frame.group_by("segment", "true_type").len().sort("segment", "true_type")
