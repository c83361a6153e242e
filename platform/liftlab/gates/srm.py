"""Sample-ratio-mismatch (SRM) gate: Pearson chi-square goodness of fit.

An SRM — the observed split of units across arms differing from the planned
allocation by more than chance — signals broken randomisation, logging loss or
bot filtering that correlates with treatment, and invalidates the effect
estimates (Fabijan et al. 2019, "Diagnosing Sample Ratio Mismatch in Online
Controlled Experiments", KDD '19; Kohavi, Tang & Xu 2020, *Trustworthy Online
Controlled Experiments*, ch. 21).  The test is Pearson's (1900) chi-square
goodness of fit::

    X² = Σ_k (O_k − E_k)² / E_k,   E_k = N · w_k,   df = K − 1

with ``w_k`` the planned weights renormalised to sum to 1.  It equals
``scipy.stats.chisquare(observed, expected)``.  Very small p-value
thresholds (0.001 to fail, 0.01 to warn) are customary because SRM checks are
run on every experiment, often repeatedly.  Pure module: no Dagster, no DB.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from scipy import stats as _st

if TYPE_CHECKING:
    import polars as pl

__all__ = ["SrmResult", "srm_test", "DimensionSrm", "srm_by_dimension", "describe_dimensions"]

Status = Literal["PASS", "WARN", "FAIL"]


@dataclass(frozen=True, slots=True)
class SrmResult:
    """Outcome of the SRM gate.

    ``observed``/``expected`` are keyed by arm (expected only for planned arms
    with positive weight); ``status`` is ``"PASS"``, ``"WARN"`` or ``"FAIL"``
    and ``reason`` is a human-readable explanation suitable for a UI or alert.
    """

    statistic: float
    p_value: float
    df: int
    observed: dict[str, int] = field(default_factory=dict)
    expected: dict[str, float] = field(default_factory=dict)
    status: Status = "PASS"
    reason: str = ""


def _fmt_p(p: float) -> str:
    if math.isnan(p):
        return "nan"
    return f"{p:.2g}" if p < 1e-3 else f"{p:.3f}"


def _worst_arm(observed: Mapping[str, int], expected: Mapping[str, float]) -> str:
    """Describe the arm with the largest Pearson residual |O−E|/sqrt(E).

    Ties (always the case for two equal-weight arms) go to the arm with a
    deficit, since unit *loss* in one arm is the usual SRM mechanism.
    """

    def key(a: str) -> tuple[float, bool]:
        resid = abs(observed[a] - expected[a]) / math.sqrt(expected[a])
        return (round(resid, 9), observed[a] < expected[a])

    arm = max(expected, key=key)
    o, e = observed[arm], expected[arm]
    rel = (o - e) / e * 100.0
    return f"observed {o:,} vs expected {e:,.0f} in {arm} ({rel:+.1f}%)"


def srm_test(
    counts: Mapping[str, int],
    planned: Mapping[str, float],
    fail_below: float = 0.001,
    warn_below: float = 0.01,
    min_expected: float = 5,
) -> SrmResult:
    """Chi-square SRM test of observed unit ``counts`` against ``planned`` weights.

    * Weights are renormalised to sum to 1 (so ``{"a": 1, "b": 1}`` and
      ``{"a": .5, "b": .5}`` are equivalent); they must be finite and ``>= 0``
      with a positive total (``ValueError`` otherwise — a config error).
    * Planned arms missing from ``counts`` count as 0 units.
    * Units in arms that are not in ``planned`` → ``FAIL`` (statistic/p NaN),
      naming the unexpected arms; units in an arm planned at weight 0 likewise.
    * If any expected count is below ``min_expected`` the chi-square
      approximation is unreliable → ``WARN`` "too few units for SRM"
      (statistic and p are still reported).
    * Otherwise ``FAIL`` if ``p < fail_below``, ``WARN`` if ``p < warn_below``,
      else ``PASS``.  Any number of arms (≥ 2 with positive weight) is supported.
    """
    if not (0.0 < fail_below <= warn_below < 1.0):
        raise ValueError("need 0 < fail_below <= warn_below < 1")
    weights = {str(k): float(v) for k, v in planned.items()}
    if not weights:
        raise ValueError("planned allocation is empty")
    bad = [k for k, w in weights.items() if not math.isfinite(w) or w < 0]
    if bad:
        raise ValueError(f"planned weights must be finite and >= 0: {bad}")
    total_w = sum(weights.values())
    if not total_w > 0:
        raise ValueError("planned weights sum to 0")

    observed: dict[str, int] = {}
    for k, v in counts.items():
        c = int(v)
        if c < 0 or c != v:
            raise ValueError(f"count for arm {k!r} must be a non-negative integer, got {v!r}")
        observed[str(k)] = c
    for k in weights:
        observed.setdefault(k, 0)

    n_total = sum(observed.values())
    active = [k for k, w in weights.items() if w > 0]
    expected = {k: n_total * weights[k] / total_w for k in active}
    df = len(active) - 1

    unknown = sorted(k for k in observed if k not in weights and observed[k] > 0)
    zero_planned = sorted(k for k, w in weights.items() if w == 0 and observed[k] > 0)
    if unknown or zero_planned:
        parts = []
        if unknown:
            parts.append(
                "units in arms not in the planned allocation: "
                + ", ".join(f"{k} ({observed[k]:,})" for k in unknown)
            )
        if zero_planned:
            parts.append(
                "units in arms planned at weight 0: "
                + ", ".join(f"{k} ({observed[k]:,})" for k in zero_planned)
            )
        return SrmResult(math.nan, math.nan, df, observed, expected, "FAIL", "; ".join(parts))

    if df < 1:
        return SrmResult(
            math.nan, math.nan, 0, observed, expected, "WARN",
            f"only one arm with positive planned weight ({', '.join(active)}); SRM not testable",
        )

    stat = math.fsum((observed[k] - expected[k]) ** 2 / expected[k] for k in active) if n_total > 0 else math.nan
    p = float(_st.chi2.sf(stat, df)) if n_total > 0 else math.nan
    summary = f"chi2={stat:.2f}, df={df}, p={_fmt_p(p)}"

    small = sorted(k for k in active if expected[k] < min_expected)
    if small:
        return SrmResult(
            stat, p, df, observed, expected, "WARN",
            f"too few units for SRM: expected count below {min_expected:g} in "
            f"{', '.join(small)} (total {n_total:,} units); {summary}",
        )

    worst = _worst_arm(observed, expected)
    if p < fail_below:
        status: Status = "FAIL"
        reason = f"sample ratio mismatch (p < {fail_below:g}): {worst}; {summary}"
    elif p < warn_below:
        status = "WARN"
        reason = f"possible sample ratio mismatch (p < {warn_below:g}): {worst}; {summary}"
    else:
        status = "PASS"
        # Worded by the threshold it passed, not as an absence: p = 0.011 is no proof of a match.
        reason = f"sample ratio within the warning threshold (p ≥ {warn_below:g}): largest deviation {worst}; {summary}"
    return SrmResult(stat, p, df, observed, expected, status, reason)


# --------------------------------------------------------------------------------------------
# SRM by dimension: localising a mismatch
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DimensionSrm:
    """SRM of one dimension (device, region, plan, day …).

    ``cells`` has one dict per level: ``level``, ``n``, ``observed`` (per arm), ``chi2``,
    ``p_value`` and ``flagged`` (p below the Bonferroni-corrected ``fail_below / n_levels``).
    ``independence_p`` is the chi-square test of independence of level × arm
    (``scipy.stats.chi2_contingency``): a small value means the arm split *differs between
    levels*, i.e. the mismatch is concentrated in some of them.
    """

    dimension: str
    cells: list[dict]
    independence_chi2: float
    independence_p: float
    flagged: list[str]


def srm_by_dimension(
    counts: "pl.DataFrame",
    planned: Mapping[str, float],
    dimensions: list[str],
    fail_below: float = 0.001,
    min_expected: float = 5,
) -> list[DimensionSrm]:
    """Per-level chi-square SRM for each dimension, vectorised over levels.

    ``counts`` has columns ``variant``, ``n`` and one column per dimension (any frame of unit
    counts grouped by variant and the dimensions, e.g. from SQL ``group by``). For each level
    ``X²_l = Σ_k (O_lk − E_lk)² / E_lk`` with ``E_lk = N_l · w_k`` (Pearson 1900) — the same
    statistic as :func:`srm_test` restricted to the level; levels with an expected count below
    ``min_expected`` in some arm are reported but never flagged. Units in unplanned arms are
    ignored here (the overall gate already fails on them).
    """
    import numpy as np
    import polars as pl

    weights = {str(k): float(v) for k, v in planned.items() if float(v) > 0}
    arms = list(weights)
    w = np.array([weights[a] for a in arms]) / sum(weights.values())
    out: list[DimensionSrm] = []
    for dim in dimensions:
        table = (
            counts.filter(pl.col("variant").is_in(arms))
            .group_by(pl.col(dim).cast(pl.Utf8).fill_null("(null)").alias("level"), "variant")
            .agg(pl.col("n").sum())
            .pivot(on="variant", index="level", values="n")
            .fill_null(0)
        )
        for a in arms:
            if a not in table.columns:
                table = table.with_columns(pl.lit(0).alias(a))
        table = table.sort("level")
        obs = table.select(arms).to_numpy().astype(float)  # levels × arms
        n = obs.sum(axis=1)
        exp = n[:, None] * w[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            chi2 = np.where(exp > 0, (obs - exp) ** 2 / exp, 0.0).sum(axis=1)
        df = len(arms) - 1
        p = _st.chi2.sf(chi2, df) if df > 0 else np.full(len(n), np.nan)
        testable = (exp >= min_expected).all(axis=1)
        cutoff = fail_below / max(len(n), 1)
        cells, flagged = [], []
        for i, level in enumerate(table["level"].to_list()):
            is_flagged = bool(testable[i] and p[i] < cutoff)
            cells.append({
                "level": level, "n": int(n[i]), "observed": {a: int(obs[i, j]) for j, a in enumerate(arms)},
                "chi2": float(chi2[i]), "p_value": float(p[i]), "testable": bool(testable[i]), "flagged": is_flagged,
            })
            if is_flagged:
                flagged.append(level)
        keep = obs.sum(axis=1) > 0
        if keep.sum() >= 2 and df > 0:
            ind = _st.chi2_contingency(obs[keep], correction=False)
            ind_chi2, ind_p = float(ind.statistic), float(ind.pvalue)
        else:
            ind_chi2, ind_p = math.nan, math.nan
        out.append(DimensionSrm(dim, cells, ind_chi2, ind_p, flagged))
    return out


def describe_dimensions(results: list[DimensionSrm], fail_below: float = 0.001) -> str:
    """One line naming where the mismatch concentrates (or that it is spread evenly)."""
    parts = []
    for r in results:
        if r.flagged:
            shown = ", ".join(r.flagged[:5]) + (" …" if len(r.flagged) > 5 else "")
            parts.append(f"{r.dimension}: {shown}")
    hetero = [r.dimension for r in results if not math.isnan(r.independence_p) and r.independence_p < fail_below]
    text = ("by dimension, out of ratio in " + "; ".join(parts)) if parts else "no single dimension level is out of ratio"
    if hetero:
        text += f" (split differs across levels of {', '.join(hetero)})"
    elif parts:
        text += " (the split does not differ across levels: the mismatch is not localised)"
    return text
