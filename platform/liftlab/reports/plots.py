"""Plots for reports and Dagster metadata (matplotlib, Agg backend, PNG bytes).

Each function takes plain frames from the result tables and returns PNG bytes, so the same
figure can be embedded in an HTML report, written next to a Markdown report, or shown inline
in the Dagster UI.
"""

from __future__ import annotations

import base64
import io

import polars as pl


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def forest_plot(effects: pl.DataFrame, title: str, directions: dict[str, str] | None = None) -> bytes:
    """Relative effect with its CI per metric × arm.

    Significant moves are green when they go in the metric's good direction (``directions``:
    metric → higher_is_better / lower_is_better) and red when they go in the harmful one.
    """
    directions = directions or {}
    order = {"primary": 0, "secondary": 1, "guardrail": 2}
    rows = (
        effects.filter(pl.col("rel_effect").is_not_null())
        .with_columns(pl.col("metric_role").replace_strict(order, default=3).alias("_rank"))
        .sort(["_rank", "metric", "variant"])
    )
    plt, fig, ax = _figure(7.5, 0.45 * max(rows.height, 2) + 1.2)
    labels = [f"{r['metric']} · {r['variant']}" for r in rows.iter_rows(named=True)]
    for i, r in enumerate(rows.iter_rows(named=True)):
        p = r["p_value_adj"] if r["p_value_adj"] is not None else r["p_value"]
        good = (r["rel_effect"] > 0) == (directions.get(r["metric"], "higher_is_better") == "higher_is_better")
        significant = p is not None and p < r["alpha"]
        colour = "#555555" if not significant else ("#1b7837" if good else "#b2182b")
        low, high = r["rel_ci_low"], r["rel_ci_high"]
        if low is not None and high is not None:
            ax.plot([low * 100, high * 100], [i, i], color=colour, lw=2)
        ax.plot([r["rel_effect"] * 100], [i], "o", color=colour)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(rows.height), labels)
    ax.invert_yaxis()
    ax.set_xlabel("relative effect vs baseline (%), 95 % CI")
    ax.set_title(title)
    return _png(plt, fig)


def arm_means_plot(effects: pl.DataFrame, metric: str, baseline: str) -> bytes:
    """Mean of one metric per arm with the baseline, for a quick visual of the size of things."""
    rows = effects.filter(pl.col("metric") == metric)
    plt, fig, ax = _figure(5.0, 3.0)
    names = [baseline, *rows["variant"].to_list()]
    values = [rows["mean_baseline"][0] if rows.height else 0.0, *rows["mean_variant"].to_list()]
    ax.bar(names, values, color=["#999999"] + ["#2166ac"] * rows.height)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean per arm")
    return _png(plt, fig)
