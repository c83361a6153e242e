"""Evaluation of an uplift ranking on units no model saw: curves, scores, oracle, bootstrap CIs.

The units evaluated are scored **out of fold** (see :mod:`.analysis`): each unit's predicted
uplift comes from a model fitted without it. Nothing here depends on how the scores were
made; every function takes a score per unit, its treatment indicator and its outcome.

Notation. Units are sorted by predicted uplift, highest first (a stable sort: ties keep
their order, which is the unit order). For the top k units (k = 0..n)
let N_T(k), N_C(k) be the numbers of treated and control units and Y_T(k), Y_C(k) the sums
of their outcomes.

* **Qini curve** (Radcliffe 2007, "Using control groups to target on predicted lift"):
  Q(k) = Y_T(k) − Y_C(k)·N_T(k)/N_C(k) — incremental outcomes among the treated units of
  the top k, the control sum rescaled to the treated count (the second term is 0 while
  N_C(k) = 0).
* **Uplift (cumulative gain) curve** (Gutierrez & Gérardy 2017, PMLR 67, §4.1):
  G(k) = (Y_T(k)/N_T(k) − Y_C(k)/N_C(k))·k — the realised uplift of the top k times k: the
  incremental outcomes if all k were treated (a mean over an empty group counts as 0).
* **Qini coefficient**: the area between the Qini curve and the random-targeting line
  (the chord from (0, 0) to (n, Q(n))), population on [0, 1] and the curve per unit:

      qini = 1/(n + 1) · Σ_{k=0..n} [Q(k) − (k/n)·Q(n)] / n.

  It is causalml's ``qini_score(normalize=False)`` divided by n, so it does not grow with
  the sample. 0 = no better than random; the oracle (sorting by the true CATE) bounds it.
* **AUUC**: the area under the gain curve, per unit: auuc = 1/(n + 1) · Σ_{k=0..n} G(k)/n
  (causalml's ``auuc_score(normalize=False)`` divided by n). Random targeting gives about
  ATE/2, so compare AUUCs between models, and use the Qini coefficient against random.
* **Uplift at k**: the realised uplift Y_T/N_T − Y_C/N_C among the top k % of units.
* **Uplift by decile**: the same within each tenth of the ranking (not cumulative), next
  to the mean predicted uplift there: the calibration table. The calibration slope is the
  weighted least-squares slope of realised on predicted decile uplift (1 = calibrated).
* **Oracle**: the same curves and scores with the units sorted by their *true* CATE
  (synthetic data only); a learner's ``oracle_share`` is its Qini coefficient divided by
  the oracle's, both on the same units and outcomes.

Bootstrap CIs resample the evaluated units with replacement (B draws). Units are sorted
once; a draw is a vector of counts (how often each unit is drawn, from an index matrix),
and every curve is a cumulative sum of count-weighted terms: a B × n matrix computed in
chunks of draws, with no loop over units. Percentile intervals. Several rankings of the
same units are resampled with the *same* draws (:func:`bootstrap_many`: paired), which the
simultaneous band over learners (:func:`simultaneous_band`) needs.

What the intervals condition on: the scores are fixed, so the bootstrap measures the
sampling noise of the *evaluation* (which units, which outcomes) given the fitted models,
not the variability of refitting the models on another sample. With cross-fitted scores the
units of a fold share one fitted model, and the interval ignores that dependence (Bates,
Hastie & Tibshirani 2024, "Cross-validation: what does it estimate and how well does it do
it?", JASA 119, show that such naive intervals can under-cover the refitting variability;
Imai & Li, "Statistical inference for heterogeneous treatment effects discovered
by generic machine learning in randomized experiments", J. Business & Economic Statistics
2025, give the extra variance term for cross-fitted estimates). The
question answered is "does *this* ranking target better than random on these units?".
For the learner chosen as the best, an interval that includes the refitting and the choice is
:mod:`.honest`'s held-out interval (each fold's ranking chosen and fitted on the other folds,
evaluated with these fixed-ranking bootstraps on that fold alone, combined across folds).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl


def _sorted(score: np.ndarray, treated: np.ndarray, y: np.ndarray):
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    return order, np.asarray(treated, dtype=np.float64)[order], np.asarray(y, dtype=np.float64)[order]


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(a, b).shape)
    np.divide(a, b, out=out, where=b > 0)
    return out


@dataclass
class Curves:
    """Cumulative sums over the sorted units (shape (B, n), or (1, n) for the point estimate)."""

    k: np.ndarray  # units in the top (count-weighted)
    nt: np.ndarray
    nc: np.ndarray
    yt: np.ndarray
    yc: np.ndarray
    w: np.ndarray  # the counts themselves

    @classmethod
    def build(cls, t_sorted: np.ndarray, y_sorted: np.ndarray, w: np.ndarray | None = None) -> Curves:
        w = np.ones((1, len(t_sorted))) if w is None else np.atleast_2d(w).astype(np.float64)
        wt = w * t_sorted
        wc = w - wt
        return cls(
            k=np.cumsum(w, axis=1), nt=np.cumsum(wt, axis=1), nc=np.cumsum(wc, axis=1),
            yt=np.cumsum(wt * y_sorted, axis=1), yc=np.cumsum(wc * y_sorted, axis=1), w=w,
        )

    @property
    def qini(self) -> np.ndarray:
        return self.yt - _safe_div(self.yc * self.nt, self.nc)

    @property
    def uplift(self) -> np.ndarray:
        return _safe_div(self.yt, self.nt) - _safe_div(self.yc, self.nc)

    @property
    def gain(self) -> np.ndarray:
        return self.uplift * self.k

    def qini_coefficient(self) -> np.ndarray:
        n = self.k[:, -1:]
        q = self.qini
        area = (self.w * (q - self.k / n * q[:, -1:])).sum(axis=1)
        return area / ((n[:, 0] + 1) * n[:, 0])

    def auuc(self) -> np.ndarray:
        n = self.k[:, -1]
        return (self.w * self.gain).sum(axis=1) / ((n + 1) * n)

    def at_fraction(self, values: np.ndarray, fraction: float) -> np.ndarray:
        """``values`` (B, n) at the last sorted unit inside the top ``fraction`` of units."""
        n = self.k[:, -1]
        rows = []
        for b in range(self.k.shape[0]):
            idx = np.searchsorted(self.k[b], fraction * n[b] + 1e-9, side="right") - 1
            rows.append(values[b, idx] if idx >= 0 else 0.0)
        return np.asarray(rows)


def curves(score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> Curves:
    _, t, yy = _sorted(score, treated, y)
    return Curves.build(t, yy)


def qini_coefficient(score, treated, y) -> float:
    return float(curves(score, treated, y).qini_coefficient()[0])


def auuc(score, treated, y) -> float:
    return float(curves(score, treated, y).auuc()[0])


def curve_frame(score, treated, y, points: int = 101) -> pl.DataFrame:
    """Qini, gain and uplift curves on a grid of population fractions (for plots)."""
    c = curves(score, treated, y)
    n = len(score)
    idx = np.unique(np.clip(np.round(np.linspace(0, n, points)).astype(int), 0, n))
    pick = lambda a: np.concatenate([[0.0], a[0]])[idx]  # noqa: E731  (index 0 = empty top)
    return pl.DataFrame({
        "fraction": idx / n, "n_top": idx, "qini": pick(c.qini), "gain": pick(c.gain),
        "uplift": pick(c.uplift), "random_qini": idx / n * c.qini[0, -1],
    })


def uplift_at(score, treated, y, fractions=(0.1, 0.2, 0.3, 0.5)) -> dict[float, float]:
    c = curves(score, treated, y)
    return {f: float(c.at_fraction(c.uplift, f)[0]) for f in fractions}


def by_decile(score, treated, y, bins: int = 10) -> pl.DataFrame:
    """Realised and mean predicted uplift per bin of the ranking (bin 1 = highest scores)."""
    score = np.asarray(score, dtype=np.float64)
    order, t, yy = _sorted(score, treated, y)
    n = len(score)
    b = (np.arange(n) * bins) // n
    frame = pl.DataFrame({"bin": b + 1, "t": t, "y": yy, "pred": score[order]})
    out = frame.group_by("bin").agg(
        pl.len().cast(pl.Int64).alias("n"),
        pl.col("t").sum().cast(pl.Int64).alias("n_treated"),
        pl.col("pred").mean().alias("predicted_uplift"),
        pl.col("y").filter(pl.col("t") == 1).mean().alias("mean_treated"),
        pl.col("y").filter(pl.col("t") == 1).var().alias("var_treated"),
        pl.col("y").filter(pl.col("t") == 0).mean().alias("mean_control"),
        pl.col("y").filter(pl.col("t") == 0).var().alias("var_control"),
    ).sort("bin")
    out = out.with_columns((pl.col("n") - pl.col("n_treated")).alias("n_control"))
    return out.with_columns(
        (pl.col("mean_treated") - pl.col("mean_control")).alias("realised_uplift"),
        (pl.col("var_treated") / pl.col("n_treated") + pl.col("var_control") / pl.col("n_control")).sqrt().alias("se"),
    ).drop("var_treated", "var_control")


def calibration(deciles: pl.DataFrame) -> dict[str, float]:
    """Weighted (1/se²) slope and intercept of realised on predicted uplift across bins, and
    the n-weighted mean absolute gap between them."""
    d = deciles.drop_nulls(["realised_uplift", "se"]).filter(pl.col("se") > 0)
    if d.height < 3:
        return {"slope": float("nan"), "intercept": float("nan"), "mean_abs_gap": float("nan")}
    x, yv, w = d["predicted_uplift"].to_numpy(), d["realised_uplift"].to_numpy(), 1 / d["se"].to_numpy() ** 2
    xm, ym = np.average(x, weights=w), np.average(yv, weights=w)
    var = np.average((x - xm) ** 2, weights=w)
    slope = float(np.average((x - xm) * (yv - ym), weights=w) / var) if var > 0 else float("nan")
    gap = float(np.average(np.abs(yv - x), weights=d["n"].to_numpy()))
    return {"slope": slope, "intercept": float(ym - slope * xm) if slope == slope else float("nan"), "mean_abs_gap": gap}


def bootstrap_counts(n: int, n_boot: int, seed: int, chunk: int = 25) -> Iterator[np.ndarray]:
    """Draw counts of a nonparametric bootstrap, ``chunk`` draws at a time (shape (b, n)).

    An index matrix of b × n draws with replacement is turned into counts with one
    ``bincount`` over row-offset indices. The same seed gives the same draws, so learners
    evaluated with the same seed are compared on identical resamples (paired)."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        idx = rng.integers(0, n, size=(b, n))
        idx += (np.arange(b) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        done += b


def bootstrap_count_matrix(n: int, n_boot: int, seed: int) -> np.ndarray:
    """All B draws of :func:`bootstrap_counts` as one (B, n) matrix of small integers (int32),
    for reuse across several rankings of the same units."""
    parts = [c.astype(np.int32) for c in bootstrap_counts(n, n_boot, seed)]
    return np.vstack(parts) if parts else np.zeros((0, n), dtype=np.int32)


def _weighted_areas(t: np.ndarray, ty: np.ndarray, cy: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Qini coefficient and AUUC for each row of count weights ``w`` (b, n) over sorted units
    with treatment ``t``, t·y and (1 − t)·y: :meth:`Curves.qini_coefficient` and
    :meth:`Curves.auuc` with fewer (b, n) temporaries, for the bootstrap.

    Uses Σ_i w_i·k_i = ((Σ w)² + Σ w²)/2 for the random-line term (k_i = Σ_{j≤i} w_j)."""
    k = np.cumsum(w, axis=1)
    nt = np.cumsum(w * t, axis=1)
    yt = np.cumsum(w * ty, axis=1)
    yc = np.cumsum(w * cy, axis=1)
    nc = k - nt
    with np.errstate(divide="ignore", invalid="ignore"):
        rc = np.where(nc > 0, yc / nc, 0.0)  # control mean (0 while no control yet)
        rt = np.where(nt > 0, yt / nt, 0.0)
    q = yt - rc * nt  # Qini curve Q(k)
    n = k[:, -1]
    sum_wk = (n**2 + (w**2).sum(axis=1)) / 2
    area_q = (w * q).sum(axis=1) - q[:, -1] / n * sum_wk
    qini = area_q / ((n + 1) * n)
    auuc = (w * (rt - rc) * k).sum(axis=1) / ((n + 1) * n)
    return qini, auuc


def bootstrap_many(scores, treated, y, n_boot: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """Paired bootstrap of the Qini coefficient and the AUUC of several rankings of the same
    units: ``scores`` is a sequence of L score vectors; returns arrays of shape (B, L).

    Every ranking is evaluated on the same B draws of units (one count vector per draw,
    :func:`bootstrap_counts`), so draw b of learner j and draw b of learner l are the same
    resample; a learner's column equals :func:`bootstrap_scores` with the same seed."""
    treated = np.asarray(treated, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ranked = []
    for s in scores:
        order, t, yy = _sorted(s, treated, y)
        ranked.append((order, t, t * yy, (1 - t) * yy))
    qs, aus = [], []
    for counts in bootstrap_counts(len(y), n_boot, seed):
        q = np.empty((counts.shape[0], len(ranked)))
        a = np.empty_like(q)
        for j, (order, t, ty, cy) in enumerate(ranked):
            q[:, j], a[:, j] = _weighted_areas(t, ty, cy, counts[:, order])
        qs.append(q)
        aus.append(a)
    if not qs:
        return {"qini": np.empty((0, len(ranked))), "auuc": np.empty((0, len(ranked)))}
    return {"qini": np.vstack(qs), "auuc": np.vstack(aus)}


def bootstrap_scores(score, treated, y, n_boot: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """Bootstrap distributions of the Qini coefficient and the AUUC (arrays of length B)."""
    out = bootstrap_many([score], treated, y, n_boot=n_boot, seed=seed)
    return {k: v[:, 0] for k, v in out.items()}


def simultaneous_band(point, draws, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray, float]:
    """Sup-t simultaneous confidence band for L statistics from their paired bootstrap draws.

    ``point`` (L,) are the estimates and ``draws`` (B, L) their bootstrap replicates on the
    same resamples. With s_l the bootstrap standard deviation of statistic l, the critical
    value c is the 1 − α quantile over draws of max_l |θ*_bl − θ̂_l| / s_l, and the band is
    θ̂_l ± c·s_l (Montiel Olea & Plagborg-Møller 2019, "Simultaneous confidence bands",
    J. Applied Econometrics 34, §2; the max-t bootstrap of Romano & Wolf 2005, JASA 100).
    The band covers all L true values at once with probability ≈ 1 − α, so it stays valid
    for whichever statistic is picked afterwards, however it was picked — in particular the
    learner with the highest estimate (Berk, Brown, Buja, Zhang & Zhao 2013, "Valid
    post-selection inference", Ann. Statist. 41: simultaneous coverage over the candidates
    implies coverage after any selection). Statistics with no bootstrap spread are left out
    of the maximum (their band is the point). Returns (low, high, c)."""
    point = np.asarray(point, dtype=np.float64)
    draws = np.asarray(draws, dtype=np.float64)
    if draws.shape[0] < 2:
        nan = np.full(point.shape, np.nan)
        return nan, nan, float("nan")
    sd = draws.std(axis=0, ddof=1)
    ok = sd > 0
    if not ok.any():
        return point.copy(), point.copy(), 0.0
    t_max = (np.abs(draws[:, ok] - point[ok]) / sd[ok]).max(axis=1)
    crit = float(np.quantile(t_max, 1 - alpha))
    return point - crit * sd, point + crit * sd, crit


def percentile_ci(draws: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    if draws.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))
