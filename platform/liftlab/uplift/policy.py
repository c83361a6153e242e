"""Targeting policy: whom to contact, given a cost per contact and a value per conversion.

Targeting the top k % of the units by predicted uplift contacts n_k units (every unit carries
its out-of-fold score, :mod:`.analysis`, so no unit is ranked by a model that saw it). Its
**incremental conversions** are the gain curve there, G(n_k) = n_k·(Ȳ_T − Ȳ_C) over the
top n_k (see :mod:`.evaluation`): what contacting exactly those units adds over contacting
none of them. Then

* revenue = value_per_conversion · incremental conversions,
* cost = cost_per_contact · n_k,
* profit = revenue − cost, ROI = profit / cost (undefined at k = 0 or zero cost).

k = 100 % is **treating everyone** (the blanket campaign) and k = 0 is **treating no one**
(profit 0). Figures are for the units evaluated and also per 1,000 units.

Two targeted policies are reported against the blanket campaign:

* ``break_even`` — contact a unit when value · τ̂(x) > cost. It is fixed by the model's
  out-of-fold predictions alone, before looking at the units' outcomes, so its evaluation is
  honest (given the learner);
* ``best_k`` — the k with the highest realised profit. Selected on the same data it is
  evaluated on, so it is optimistic; reported as the best attainable share.

The difference in profit between a targeted policy and the blanket campaign gets a
bootstrap percentile CI from the same resampling as :func:`.evaluation.bootstrap_counts`
(the targeted set is held fixed; each draw re-estimates both profits). Like the Qini CIs it
conditions on the fitted fold models (and, for the best learner, ignores that it was chosen);
:func:`break_even_vs_all` gives the per-fold draws from which :mod:`.honest` builds the
held-out version (rule chosen and fitted on other units than those it is scored on).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from liftlab.uplift.evaluation import Curves, _sorted, bootstrap_counts, percentile_ci


def _profit(c: Curves, m: np.ndarray, value: float, cost: float) -> np.ndarray:
    """Profit of contacting the first m sorted units (m = 0 → 0), for every row of ``c``."""
    rows = np.arange(c.k.shape[0])
    idx = np.clip(m - 1, 0, None)
    gain = np.where(m > 0, c.gain[rows[:, None], idx], 0.0)
    k = np.where(m > 0, c.k[rows[:, None], idx], 0.0)
    return value * gain - cost * k


def _profit_at(t: np.ndarray, y: np.ndarray, w: np.ndarray, ms: np.ndarray, value: float, cost: float) -> np.ndarray:
    """:func:`_profit` of ``Curves.build(t, y, w)`` at the cut points ``ms`` only (b, len(ms)).

    A profit needs the weighted counts and outcome sums of the first m units, not whole
    curves: the sums over the segments between sorted cut points are (b × segment) @
    (segment × 4) products, accumulated — no (b, n) cumulative sums."""
    ms = np.asarray(ms, dtype=np.int64)
    cuts = np.unique(ms[ms > 0])
    V = np.column_stack([np.ones_like(t), t, t * y, (1 - t) * y])
    bounds = np.concatenate([[0], cuts])
    parts = [w[:, a:b] @ V[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    pref = np.cumsum(np.stack(parts, axis=1), axis=1) if parts else np.zeros((w.shape[0], 0, 4))
    k, nt, yt, yc = (pref[..., j] for j in range(4))
    nc = k - nt
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = (np.where(nt > 0, yt / nt, 0.0) - np.where(nc > 0, yc / nc, 0.0)) * k
    at = {int(m): j for j, m in enumerate(cuts)}
    out = np.zeros((w.shape[0], len(ms)))
    for col, m in enumerate(ms):
        if m > 0:
            out[:, col] = value * gain[:, at[int(m)]] - cost * k[:, at[int(m)]]
    return out


def policy_table(score, treated, y, *, value: float, cost: float, step_pct: int = 1) -> pl.DataFrame:
    """One row per k = 0, step, …, 100 % with the economics of targeting the top k %."""
    _, t, yy = _sorted(score, treated, y)
    n = len(t)
    c = Curves.build(t, yy)
    ks = np.arange(0, 101, step_pct)
    m = np.round(ks / 100 * n).astype(int)
    idx = np.clip(m - 1, 0, None)
    incr = np.where(m > 0, c.gain[0, idx], 0.0)
    uplift = np.where(m > 0, c.uplift[0, idx], np.nan)
    revenue = value * incr
    cost_k = cost * m
    profit = revenue - cost_k
    with np.errstate(divide="ignore", invalid="ignore"):
        roi = np.where(cost_k > 0, profit / cost_k, np.nan)
    return pl.DataFrame({
        "k_pct": ks.astype(np.int64), "n_targeted": m.astype(np.int64), "uplift": uplift,
        "incremental_conversions": incr, "revenue": revenue, "cost": cost_k.astype(np.float64),
        "profit": profit, "roi": roi, "profit_per_1000": profit / n * 1000,
    })


def compare_with_blanket(
    score, treated, y, *, value: float, cost: float, n_boot: int = 200, seed: int = 0, alpha: float = 0.05,
    counts: np.ndarray | None = None,
) -> pl.DataFrame:
    """Rows ``treat_none``, ``treat_all``, ``break_even`` and ``best_k`` with profit, the
    difference from ``treat_all`` and its bootstrap CI.

    ``counts`` (B, n), optional: the bootstrap draws as counts per unit in input order
    (:func:`.evaluation.bootstrap_count_matrix`), to share one set of draws between the
    learners of the same units; by default they are drawn from ``n_boot`` and ``seed``, which
    gives the same draws."""
    score = np.asarray(score, dtype=np.float64)
    order, t, yy = _sorted(score, treated, y)
    n = len(t)
    table = policy_table(score, treated, y, value=value, cost=cost)
    best = table.sort(["profit", "k_pct"], descending=[True, False]).row(0, named=True)
    threshold = cost / value if value > 0 else np.inf
    m_break_even = int((score > threshold).sum())
    m_best = int(best["n_targeted"])
    policies = {"treat_none": 0, "treat_all": n, "break_even": m_break_even, "best_k": m_best}
    ms = np.array(list(policies.values()))
    c = Curves.build(t, yy)
    point = _profit(c, ms, value, cost)[0]
    idx = np.clip(ms - 1, 0, None)
    incr = np.where(ms > 0, c.gain[0, idx], 0.0)
    uplift = np.where(ms > 0, c.uplift[0, idx], np.nan)
    draws = []
    chunks = bootstrap_counts(n, n_boot, seed) if counts is None else (counts[i:i + 25] for i in range(0, len(counts), 25))
    for chunk in chunks:
        draws.append(_profit_at(t, yy, chunk[:, order].astype(np.float64), ms, value, cost))
    draws = np.vstack(draws) if draws else np.empty((0, len(ms)))
    rows = []
    for j, (name, m) in enumerate(policies.items()):
        diff = draws[:, j] - draws[:, 1] if draws.size else np.array([])
        lo, hi = percentile_ci(diff, alpha) if name != "treat_all" else (0.0, 0.0)
        plo, phi = percentile_ci(draws[:, j], alpha) if draws.size else (np.nan, np.nan)
        spend = cost * m
        rows.append({
            "policy": name, "k_pct": 100.0 * m / n, "n_targeted": m, "uplift": float(uplift[j]),
            "incremental_conversions": float(incr[j]), "revenue": float(value * incr[j]), "cost": float(spend),
            "profit": float(point[j]), "roi": float(point[j] / spend) if spend > 0 else float("nan"),
            "profit_per_1000": float(point[j]) / n * 1000,
            "profit_ci_low": plo, "profit_ci_high": phi,
            "profit_vs_all": float(point[j] - point[1]), "vs_all_ci_low": lo, "vs_all_ci_high": hi,
        })
    return pl.DataFrame(rows)


def break_even_vs_all(
    score, treated, y, *, value: float, cost: float, n_boot: int = 200, seed: int = 0,
) -> tuple[int, float, np.ndarray]:
    """The break-even rule (contact a unit when value · τ̂(x) > cost) against contacting every
    unit: (units contacted, profit difference, its B bootstrap draws), with the same definitions
    and draws as the ``break_even`` row of :func:`compare_with_blanket`. Used per evaluation fold
    by :mod:`.honest`, which needs the draws' spread rather than a percentile interval."""
    score = np.asarray(score, dtype=np.float64)
    order, t, yy = _sorted(score, treated, y)
    n = len(t)
    threshold = cost / value if value > 0 else np.inf
    ms = np.array([int((score > threshold).sum()), n])
    point = _profit(Curves.build(t, yy), ms, value, cost)[0]
    draws = [_profit_at(t, yy, chunk[:, order], ms, value, cost) for chunk in bootstrap_counts(n, n_boot, seed)]
    draws = np.vstack(draws) if draws else np.empty((0, 2))
    return int(ms[0]), float(point[0] - point[1]), draws[:, 0] - draws[:, 1]
