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


def level_label(alpha: float) -> str:
    """The level ``1 − alpha`` of an interval as a label: ``"95 %"`` at α = 0.05, ``"90 %"`` at
    0.10, ``"98.33 %"`` at a Bonferroni-adjusted 0.05/3 (the wording of ``liftlab.decide``)."""
    return f"{(1.0 - float(alpha)) * 100:.4g} %"


def alphas_of(frame: pl.DataFrame, column: str = "alpha") -> list[float]:
    """The distinct finite values of ``column`` (the levels of the intervals a frame holds)."""
    if column not in frame.columns or frame.is_empty():
        return []
    # rounded: 1 − level of a causal row (0.050000000000000044) is the spec's 0.05
    values = frame.select(pl.col(column).cast(pl.Float64).round(10)).to_series().drop_nulls().drop_nans().unique().sort()
    return values.to_list()


def levels_label(alphas: list[float]) -> str | None:
    """One label for a set of interval levels (``"90 %"``, or ``"90 %/95 %"`` when they differ)."""
    return "/".join(level_label(a) for a in sorted(set(alphas), reverse=True)) or None


def sequence_columns(looks: pl.DataFrame) -> tuple[str, str, str | None]:
    """The always-valid bounds of the daily looks the decision reads, and their level label:
    the family-level sequence (``rel_cs_*_adj`` at ``alpha_adj``) where the rows have it, else the
    per-arm one (``rel_cs_*``, at the spec's α, which the rows do not carry: label None)."""
    if {"rel_cs_low_adj", "rel_cs_high_adj", "alpha_adj"} <= set(looks.columns) and not looks.is_empty() \
            and looks["rel_cs_low_adj"].drop_nulls().len() and alphas_of(looks, "alpha_adj"):
        return "rel_cs_low_adj", "rel_cs_high_adj", levels_label(alphas_of(looks, "alpha_adj"))
    return "rel_cs_low", "rel_cs_high", None


def forest_plot(effects: pl.DataFrame, title: str, directions: dict[str, str] | None = None,
                tolerances: dict[str, tuple[float, str]] | None = None, level: str | None = None) -> bytes:
    """Relative effect with its CI per metric × arm, one row each (the estimates the decision read).

    The axis names the intervals' level, ``1 − alpha`` of the rows' ``alpha`` (``level``
    overrides it); rows at different levels carry their own level in their label.

    A move is coloured only when it is significant — adjusted p below α where the row has a
    p-value, else the interval excluding 0 — green in the metric's good direction (``directions``:
    metric → higher_is_better / lower_is_better), red in the harmful one. ``tolerances``:
    guardrail → (tolerance, direction), drawn as a dashed tick on the harmful side.
    """
    directions = directions or {}
    tolerances = tolerances or {}
    order = {"primary": 0, "secondary": 1, "guardrail": 2}
    rows = (
        effects.filter(pl.col("rel_effect").is_not_null() & pl.col("rel_effect").is_not_nan())
        .with_columns(pl.col("metric_role").replace_strict(order, default=3).alias("_rank"))
        .sort(["_rank", "metric", "variant"])
    )
    plt, fig, ax = _figure(7.5, 0.45 * max(rows.height, 2) + 1.2)
    alphas = alphas_of(rows)
    mixed = len(alphas) > 1
    level = level or levels_label(alphas)
    labels = [f"{r['metric']} · {r['variant']} ({r['method']}"
              + (f", {level_label(r['alpha'])} CI" if mixed and r.get("alpha") is not None else "") + ")"
              for r in rows.iter_rows(named=True)]
    for i, r in enumerate(rows.iter_rows(named=True)):
        p = r["p_value_adj"] if r["p_value_adj"] is not None else r["p_value"]
        low, high = r["rel_ci_low"], r["rel_ci_high"]
        good = (r["rel_effect"] > 0) == (directions.get(r["metric"], "higher_is_better") == "higher_is_better")
        if p is not None and p == p:
            significant = p < r["alpha"]
        else:
            significant = low is not None and high is not None and (low > 0 or high < 0)
        colour = "#555555" if not significant else ("#1b7837" if good else "#b2182b")
        if low is not None and high is not None:
            ax.plot([low * 100, high * 100], [i, i], color=colour, lw=2)
        ax.plot([r["rel_effect"] * 100], [i], "o", color=colour)
        if r["metric"] in tolerances:
            tol, direction = tolerances[r["metric"]]
            x = -tol * 100 if direction == "higher_is_better" else tol * 100
            ax.plot([x, x], [i - 0.35, i + 0.35], color="#b2182b", ls="--", lw=1.2)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(rows.height), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("relative effect vs baseline (%), " + ("CI at each row's level" if mixed else f"{level} CI" if level
                                                          else "CI"))
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


def cumulative_effect_plot(looks: pl.DataFrame, metric: str, title: str, alpha: float | None = None) -> bytes:
    """Relative effect of ``metric`` per arm as it stood at the end of each day: the estimate,
    its fixed-horizon ``1 − alpha`` CI (shaded) and the always-valid confidence sequence
    (dashed) — the band a daily look may stop on: the family-level sequence the decision reads
    where the rows have it (at ``1 − alpha_adj``), else the per-arm one (at ``1 − alpha``).
    ``looks``: rows of ``results.daily_looks`` of one method; ``alpha``: the spec's (the rows
    do not carry it; without it the CI's level is not written)."""
    rows = looks.filter(pl.col("metric") == metric).sort("variant", "look_date")
    cs_low, cs_high, cs_level = sequence_columns(rows)
    if cs_level is None and alpha is not None:
        cs_level = level_label(alpha)
    ci_level = f"{level_label(alpha)} CI" if alpha is not None else "CI"
    plt, fig, ax = _figure(7.5, 3.6)
    colours = ["#2166ac", "#b2182b", "#1b7837", "#762a83", "#e08214"]
    for i, (variant,) in enumerate(rows.select("variant").unique(maintain_order=True).iter_rows()):
        part = rows.filter(pl.col("variant") == variant)
        x = part["look_date"].to_list()
        colour = colours[i % len(colours)]
        pct = lambda c: (part[c] * 100).to_numpy()  # noqa: E731
        ax.fill_between(x, pct("rel_ci_low"), pct("rel_ci_high"), color=colour, alpha=0.15, lw=0)
        ax.plot(x, pct(cs_low), "--", color=colour, lw=1)
        ax.plot(x, pct(cs_high), "--", color=colour, lw=1)
        ax.plot(x, pct("rel_effect"), "-", color=colour, lw=2,
                label=f"{variant} (dashed: always-valid {cs_level + ' ' if cs_level else ''}bound)")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel(f"relative effect (%), shaded: {ci_level}")
    ax.set_xlabel("end of day (look)")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.autofmt_xdate()
    return _png(plt, fig)


def srm_plot(details: dict, title: str) -> bytes:
    """The SRM gate's evidence: units per arm observed vs expected from the planned allocation,
    and each arm's share of the units by exposure day next to its planned share (a logging or
    assignment bug often shows up as a share that is off every day, or from one day on)."""
    observed, expected = details.get("observed") or {}, details.get("expected") or {}
    arms = list(expected) or list(observed)
    days = ((details.get("by_dimension") or {}).get("day") or {}).get("cells") or []
    plt, fig, ax = _figure(9.0 if days else 5.0, 3.4)
    if days:
        fig.clf()
        ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    x = range(len(arms))
    ax.bar([i - 0.2 for i in x], [observed.get(a, 0) for a in arms], width=0.4, label="observed", color="#2166ac")
    ax.bar([i + 0.2 for i in x], [expected.get(a, 0) for a in arms], width=0.4, label="expected", color="#bbbbbb")
    for i, a in enumerate(arms):
        if expected.get(a):
            ax.annotate(f"{(observed.get(a, 0) / expected[a] - 1) * 100:+.1f}%", (i - 0.2, observed.get(a, 0)),
                        ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), arms, fontsize=8)
    ax.set_ylabel("units")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=10)
    if days:
        planned = details.get("planned") or {}
        levels = [c["level"] for c in days]
        for a, colour in zip(arms, ["#2166ac", "#b2182b", "#1b7837", "#762a83"], strict=False):
            shares = [c["observed"].get(a, 0) / max(c["n"], 1) * 100 for c in days]
            ax2.plot(range(len(levels)), shares, "o-", ms=3, color=colour, label=f"{a} (observed)")
            if a in planned:
                ax2.axhline(planned[a] * 100, color=colour, ls="--", lw=1)
        step = max(1, len(levels) // 7)
        ax2.set_xticks(range(0, len(levels), step), levels[::step], rotation=30, fontsize=7, ha="right")
        ax2.set_ylabel("share of the day's units (%)")
        ax2.set_title("share by exposure day (dashed: planned)", fontsize=10)
        ax2.legend(fontsize=7, loc="best")
    return _png(plt, fig)


def slice_forest_plot(slices: pl.DataFrame, metric: str, title: str, good_direction: str = "higher_is_better") -> bytes:
    """Small multiples: one panel per dimension, the metric's relative effect with its CI per
    slice × arm; slices too small to estimate are listed with their unit counts, not drawn.
    Significance is read from the slice family's BH-adjusted p-value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = slices.filter(pl.col("metric") == metric).sort("dimension", "slice", "variant")
    dims = rows["dimension"].unique(maintain_order=True).to_list()
    heights = [max(rows.filter(pl.col("dimension") == d).height, 1) for d in dims]
    fig, axes = plt.subplots(len(dims), 1, figsize=(7.5, 0.38 * sum(heights) + 1.1 * len(dims)), dpi=110,
                             squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, dim in zip(axes[:, 0], dims, strict=True):
        part = rows.filter(pl.col("dimension") == dim)
        labels = []
        for i, r in enumerate(part.iter_rows(named=True)):
            labels.append(f"{r['slice']} · {r['variant']}" + ("" if r["estimated"] else f"  (n={r['n_baseline']}/{r['n_variant']}: too few)"))
            if not r["estimated"] or r["rel_effect"] is None:
                continue
            significant = r["p_value_adj"] is not None and r["p_value_adj"] < r["alpha"]
            good = (r["rel_effect"] > 0) == (good_direction == "higher_is_better")
            colour = "#555555" if not significant else ("#1b7837" if good else "#b2182b")
            if r["rel_ci_low"] is not None and r["rel_ci_high"] is not None:
                ax.plot([r["rel_ci_low"] * 100, r["rel_ci_high"] * 100], [i, i], color=colour, lw=2)
            ax.plot([r["rel_effect"] * 100], [i], "o", color=colour)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(part.height), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"by {dim}", fontsize=9, loc="left")
    level = levels_label(alphas_of(rows))
    axes[-1, 0].set_xlabel(f"relative effect on {metric} (%), {level + ' ' if level else ''}CI; "
                           "green/red: BH-adjusted p < α")
    fig.suptitle(title, fontsize=10)
    return _png(plt, fig)
