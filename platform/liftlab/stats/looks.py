"""Daily looks: the experiment's joint sufficient statistics *as they stood at the end of each day*.

A look on day ``t`` analyses every unit first exposed on or before ``t`` with its outcome
accumulated over ``[exposure_date, t]`` — what a dashboard refreshed that evening showed. The
sequence of looks is what an always-valid confidence sequence (:mod:`liftlab.stats.sequential`)
protects: an analyst may stop at the first look whose interval excludes 0 and keep the
type-I error at α (Howard et al. 2021; Waudby-Smith et al. 2023). The last look (``t`` =
end date) equals the final statistics, which the tests check.

Why increments. ``Σy(t)`` is a plain cumulative sum, but ``Σy(t)²``, ``Σx·y(t)``, ``Σy(t)·d(t)``
are not sums over days: they depend on each unit's running total. Each of them is still a sum
over units, so it can be accumulated from *per-unit changes*: when a unit's running outcome
moves from ``Y'`` to ``Y`` on day ``s`` (and its denominator from ``D'`` to ``D``), every moment
``f(Y, x, D)`` of that unit changes by ``f(Y, x, D) − f(Y', x, D')`` from day ``s`` on. A unit
enters on its exposure day with ``Y = 0`` (``D = 0`` for a ratio metric's denominator, ``D ≡ 1``
for a mean metric). So every moment of look ``t`` is the sum of the entry terms of the units
exposed by ``t`` and of the changes dated ``≤ t``: one ``numpy.bincount`` per moment over
(variant, day) codes, then a cumulative sum over days — vectorised, no loop over units or
days, and bit-identical on every run (sums in row order).

Outcome kinds (how a unit's running value evolves from its daily activity):

* ``sum``        — running total of a daily value (sessions, revenue, …);
* ``any``        — 1 from the first day with a positive daily value on (converted, reactivated);
* ``count_days`` — number of days with a positive daily value (active_days).

Winsorization (cap ``c`` fixed from the pre-period) applies to the running value:
``min(Y, c)``, so the last look equals the capped final statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from .moments import MOMENT_COLUMNS

__all__ = ["OutcomeRule", "running_values", "look_sums", "add_sums", "cumulate_looks", "look_statistics"]

KINDS = ("sum", "any", "count_days")


@dataclass(frozen=True)
class OutcomeRule:
    """How a unit-level outcome accumulates from a daily activity column."""

    daily_column: str
    kind: str = "sum"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown outcome kind {self.kind!r}; expected one of {KINDS}")


def running_values(activity: pl.DataFrame, rules: Mapping[str, OutcomeRule]) -> pl.DataFrame:
    """Per activity row (sorted by unit, then day): each outcome's running value after and
    before that day, as ``<outcome>`` and ``<outcome>__prev`` (Float64)."""
    exprs = []
    for name, rule in rules.items():
        value = pl.col(rule.daily_column).cast(pl.Float64).fill_null(0.0)
        step = value if rule.kind == "sum" else (value > 0).cast(pl.Float64)
        running = step.cum_sum().over("unit_id")
        if rule.kind == "any":
            running = running.clip(upper_bound=1.0)
        exprs.append(running.alias(name))
    out = activity.sort("unit_id", "day", maintain_order=True).with_columns(exprs)
    return out.with_columns(
        pl.col(name).shift(1, fill_value=0.0).over("unit_id").alias(f"{name}__prev") for name in rules
    )


def _codes(variants: np.ndarray, days: np.ndarray, arms: list[str], look_days: np.ndarray) -> np.ndarray:
    """Dense code ``arm × n_looks + look`` of the first look on or after each day (−1 after the
    last look): a unit exposed, or a change dated, on day ``s`` counts in every look ``t ≥ s``."""
    arm_code = pl.Series(variants).replace_strict({a: i for i, a in enumerate(arms)}, return_dtype=pl.Int64).to_numpy()
    look = np.searchsorted(look_days, days, side="left")
    return np.where(look < len(look_days), arm_code * len(look_days) + look, -1)


def look_sums(
    units: pl.DataFrame,
    running: pl.DataFrame,
    metrics: Mapping[str, tuple[str, str | None, str | None]],
    arms: list[str],
    look_days: list,
    caps: Mapping[str, float] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Entry terms and changes of every moment per (arm, look), not yet accumulated over days.

    metric → moment → array of ``len(arms) × len(look_days)`` (arm-major). Sums over units, so
    the sums of disjoint batches of units add up: a large experiment is processed a batch of
    units at a time (:func:`cumulate_looks` then accumulates).
    """
    caps = dict(caps or {})
    days = np.asarray(sorted(look_days), dtype="datetime64[D]")
    size = len(days) * len(arms)
    units = units.sort("unit_id", maintain_order=True)  # entry sums in a canonical order: bit-identical reruns
    covariates = [x for _, x, _ in metrics.values() if x is not None]
    joined = running.join(units.select("unit_id", "variant", *dict.fromkeys(covariates)), on="unit_id", how="inner",
                          maintain_order="left")
    entry_code = _codes(units["variant"].to_numpy(), units["day"].to_numpy().astype("datetime64[D]"), arms, days)
    step_code = _codes(joined["variant"].to_numpy(), joined["day"].to_numpy().astype("datetime64[D]"), arms, days)
    entry_keep, step_keep = entry_code >= 0, step_code >= 0

    def total(code, keep, weights=None) -> np.ndarray:
        w = None if weights is None else weights[keep]
        return np.bincount(code[keep], weights=w, minlength=size)[:size].astype(np.float64)

    def now_and_before(outcome: str) -> tuple[np.ndarray, np.ndarray]:
        """Running value of ``outcome`` after and before each change, winsorized."""
        now, before = joined[outcome].to_numpy(), joined[f"{outcome}__prev"].to_numpy()
        if outcome in caps and not np.isnan(caps[outcome]):
            now, before = np.minimum(now, caps[outcome]), np.minimum(before, caps[outcome])
        return now, before

    out: dict[str, dict[str, np.ndarray]] = {}
    for metric, (y, x, d) in metrics.items():
        ux = units[x].cast(pl.Float64).to_numpy() if x else np.zeros(units.height)
        jx = joined[x].cast(pl.Float64).to_numpy() if x else np.zeros(joined.height)
        Y, Yp = now_and_before(y)
        if d is None:  # a mean metric: d ≡ 1 from entry
            D = Dp = np.ones(joined.height)
            d_entry = np.ones(units.height)
        else:
            D, Dp = now_and_before(d)
            d_entry = np.zeros(units.height)
        entry = {
            "n": total(entry_code, entry_keep), "sum_x": total(entry_code, entry_keep, ux),
            "sum_x_sq": total(entry_code, entry_keep, ux * ux), "sum_d": total(entry_code, entry_keep, d_entry),
            "sum_d_sq": total(entry_code, entry_keep, d_entry * d_entry), "sum_xd": total(entry_code, entry_keep, ux * d_entry),
        }
        change = {
            "sum": Y - Yp, "sum_sq": Y * Y - Yp * Yp, "sum_xy": jx * (Y - Yp), "sum_d": D - Dp,
            "sum_d_sq": D * D - Dp * Dp, "sum_yd": Y * D - Yp * Dp, "sum_xd": jx * (D - Dp),
        }
        out[metric] = {
            c: entry.get(c, np.zeros(size)) + (total(step_code, step_keep, change[c]) if c in change else 0.0)
            for c in ("n", *MOMENT_COLUMNS)
        }
    return out


def add_sums(a: dict[str, dict[str, np.ndarray]], b: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    """The sums of two disjoint batches of units."""
    return {m: {c: a[m][c] + b[m][c] for c in a[m]} for m in a} if a else b


def cumulate_looks(sums: dict[str, dict[str, np.ndarray]], arms: list[str], look_days: list) -> pl.DataFrame:
    """Accumulate :func:`look_sums` over days: the joint statistics of every look, per arm and metric
    (columns of :func:`liftlab.stats.moments.aggregate_joint` with ``look_date``)."""
    days = np.asarray(sorted(look_days), dtype="datetime64[D]")
    n_days, n_arms = len(days), len(arms)
    blocks = []
    for metric, moments in sums.items():
        cumulative = {c: np.cumsum(v.reshape(n_arms, n_days), axis=1).ravel() for c, v in moments.items()}
        blocks.append(pl.DataFrame({
            "look_date": pl.Series(np.tile(days, n_arms)).cast(pl.Date),
            "variant": np.repeat(arms, n_days).astype(str),
            "metric": [metric] * (n_days * n_arms),
            "n": np.rint(cumulative["n"]).astype(np.int64),
            **{c: cumulative[c] for c in MOMENT_COLUMNS},
        }))
    if not blocks or n_days == 0:
        return pl.DataFrame(schema={"look_date": pl.Date, "variant": pl.Utf8, "metric": pl.Utf8, "n": pl.Int64,
                                    **{c: pl.Float64 for c in MOMENT_COLUMNS}})
    return pl.concat(blocks).sort("look_date", "variant", maintain_order=True)


def look_statistics(
    units: pl.DataFrame,
    running: pl.DataFrame,
    metrics: Mapping[str, tuple[str, str | None, str | None]],
    look_days: list,
    caps: Mapping[str, float] | None = None,
) -> pl.DataFrame:
    """Joint statistics per (look_date, variant, metric) for every day of ``look_days``, in one batch.

    ``units``: ``unit_id``, ``variant``, ``day`` (exposure date) and the covariate columns;
    ``running``: :func:`running_values` output (``unit_id``, ``day`` and the running outcomes);
    ``metrics``: metric → (outcome, covariate or None, denominator outcome or None), as
    :func:`liftlab.experiment_stats.metric_plan`; ``caps``: outcome → winsorization cap.
    """
    arms = sorted(units["variant"].unique().to_list())
    if units.is_empty():
        return cumulate_looks({}, arms, look_days)
    return cumulate_looks(look_sums(units, running, metrics, arms, look_days, caps), arms, look_days)
