"""Regression adjustment with several covariates (``cuped_multi``) on additive Gram statistics.

CUPED (:mod:`liftlab.stats.cuped`) adjusts a metric by one covariate, its own pre-period twin.
This module adjusts by a *vector* of pre-treatment covariates ``x`` — the pre-period twins of
the experiment's other metrics too, unit attributes one-hot encoded (plan, region …), and an
indicator "has pre-period data" — as Eppo's CUPED++ and Statsig's CURE do. It is CUPED with a
vector θ (Deng, Xu, Kohavi & Walker 2013, §3.3 "multiple covariates"), i.e. the regression
``y ~ T + x`` with one slope vector common to all arms.

Statistics (per arm, or per arm × day …; all are sums over units, so partitions add)::

    n, Σy, Σy², Σx_j, Σx_j x_k, Σx_j y        (k covariates: a k×k Gram matrix per arm)

:class:`GramStats` holds them with any leading batch shape (e.g. metric × arm) and adds
element-wise. Estimator, for arms ``a`` with centred within-arm (co)moments ``c``:

* pooled within-arm slopes ``θ = (Σ_a c_xx,a)⁻¹ Σ_a c_xy,a`` — by Frisch–Waugh–Lovell exactly
  the slope of OLS ``y ~ arm dummies + x``; this is the *pooled* (non-interacted) regression of
  Lin (2013) "Agnostic notes on regression adjustments to experimental data: reexamining
  Freedman's critique", Ann. Appl. Stat. 7(1). We use the pooled variant, not Lin's
  interacted one, because (i) it is what CUPED, CUPED++ and CURE use, and one θ per metric
  keeps every arm's adjustment the same (multi-arm tests compare like with like); (ii) with
  the balanced or near-balanced allocations of online tests the two are asymptotically equally
  efficient (Lin 2013 §4: the interacted estimator gains only when allocations are unequal
  *and* slopes differ by arm); (iii) it stays one small Gram matrix per metric.
* arm estimate ``ȳ_a − θᵀ(x̄_a − x̄)`` (``x̄`` over all arms); the difference of two arms equals
  the OLS coefficient of the arm dummy.
* variance of an arm's estimate: the residual variance ``(c_yy − 2θᵀc_xy + θᵀc_xx θ)/(n_a − 1)``
  of its own units, over ``n_a``. Per arm, so heteroskedastic arms and heterogeneous effects
  are allowed (the variance of ``ȳ_a − θᵀx̄_a`` for a fixed θ, arms independent — the CUPED
  variance, Deng et al. 2013; the error of the estimated θ is second order). Multiplied by the
  OLS degrees-of-freedom factor ``(N − A)/(N − A − k)`` (N units, A arms, k covariates kept),
  which removes the in-sample optimism of fitting k slopes (HC1-style; 1 + O(k/N)).
* then :func:`liftlab.stats.engine.two_sample` (the one Welch/delta implementation): effect,
  SE, Welch df, p, CI and the relative effect with its delta-method SE.

Singular Gram matrices: θ is solved on the correlation scale ``R = D^{-1/2} C_xx D^{-1/2}``
with an eigen-decomposition; covariates with no within-arm variance (a constant indicator, a
level absent from the data) are dropped (θ_j = 0) and directions with an eigenvalue below
``EIGEN_CUTOFF · λ_max`` (= 1e-10: exact collinearity, e.g. a full set of one-hot levels, or
near-collinearity no experiment can estimate) are dropped too — the pseudo-inverse, i.e. the
minimum-norm least-squares slope. Fitted values are those of OLS with the redundant columns
removed, so the effect is unchanged; no ridge penalty is added.

Scope: mean metrics (binary included). Ratio metrics keep single-covariate CUPED (the
linearisation of Deng et al. 2018 would need Σx_j d as well); :func:`design_matrix` builds the
covariates from a unit frame; :func:`gram_statistics` reduces unit rows to statistics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from .moments import centered

__all__ = [
    "GramStats", "EIGEN_CUTOFF", "HAS_PRE", "design_matrix", "gram_statistics", "regression_adjust",
    "multi_effects", "covariate_plan", "experiment_multi_effects",
]

#: Relative eigenvalue cutoff of the correlation-scaled pooled Gram matrix (see module docstring).
EIGEN_CUTOFF = 1e-10
#: Name of the "has pre-period data" indicator column of :func:`design_matrix`.
HAS_PRE = "has_pre_period"


@dataclass(frozen=True)
class GramStats:
    """Additive statistics of (y, x) with leading batch shape ``B`` (e.g. metrics × arms).

    ``n``, ``sum_y``, ``sum_yy``: shape ``B``; ``sum_x``, ``sum_xy``: ``B + (k,)``;
    ``sum_xx``: ``B + (k, k)``. A commutative monoid under ``+`` (element-wise sums).
    """

    n: np.ndarray
    sum_y: np.ndarray
    sum_yy: np.ndarray
    sum_x: np.ndarray
    sum_xx: np.ndarray
    sum_xy: np.ndarray

    @classmethod
    def from_values(cls, y, X) -> GramStats:
        """Statistics of one sample: ``y`` (n,), ``X`` (n, k); rows with a NaN y are dropped."""
        y = np.asarray(y, dtype=np.float64).ravel()
        X = np.asarray(X, dtype=np.float64).reshape(y.size, -1)
        keep = ~np.isnan(y)
        y, X = y[keep], X[keep]
        return cls(np.asarray(float(y.size)), np.asarray(y.sum()), np.asarray(y @ y), X.sum(axis=0), X.T @ X, X.T @ y)

    def __add__(self, other: GramStats) -> GramStats:
        if not isinstance(other, GramStats):
            return NotImplemented
        return GramStats(*(getattr(self, f) + getattr(other, f) for f in _FIELDS))

    @property
    def k(self) -> int:
        return int(self.sum_x.shape[-1])

    @staticmethod
    def stack(items: Sequence[GramStats], axis: int = 0) -> GramStats:
        """Stack statistics along a new batch axis (``axis`` counts batch dimensions only)."""
        return GramStats(*(np.stack([np.asarray(getattr(s, f)) for s in items], axis=axis) for f in _FIELDS))


_FIELDS = ("n", "sum_y", "sum_yy", "sum_x", "sum_xx", "sum_xy")


def design_matrix(
    frame: pl.DataFrame,
    pre: Sequence[str] = (),
    numeric: Sequence[str] = (),
    categorical: Sequence[str] = (),
    levels: Mapping[str, Sequence[str]] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Covariate matrix (n, k) and column names from a unit frame.

    * ``pre``: pre-period twins; a missing value (null/NaN: a unit without pre-period data)
      reads 0, and the indicator ``has_pre_period`` is 1 for units with any non-missing,
      non-zero twin. Warehouse twins are coalesced to 0, so "no pre-period rows" and "no
      pre-period activity" look the same; the indicator gives those units an intercept of
      their own, so new users keep the attribute adjustment instead of being forced onto the
      slope of the users with history (or dropped, as single-covariate CUPED drops a missing x).
    * ``numeric``: attributes used as they are (a missing value reads 0 with an indicator
      ``<col>__missing`` when any is missing).
    * ``categorical``: one-hot, one column per level except the first (sorted; a null reads
      ``(missing)``); ``levels`` fixes the levels (so daily partitions share one design).
    """
    cols: list[np.ndarray] = []
    names: list[str] = []
    if pre:
        values = frame.select([pl.col(c).cast(pl.Float64).fill_nan(None) for c in pre])
        present = values.select(pl.any_horizontal([pl.col(c).is_not_null() & (pl.col(c) != 0) for c in pre])
                                .fill_null(False)).to_series().to_numpy()
        for c in pre:
            cols.append(values[c].fill_null(0.0).to_numpy())
            names.append(c)
        cols.append(present.astype(np.float64))
        names.append(HAS_PRE)
    for c in numeric:
        v = frame[c].cast(pl.Float64).fill_nan(None)
        cols.append(v.fill_null(0.0).to_numpy())
        names.append(c)
        if v.null_count():
            cols.append(v.is_null().cast(pl.Float64).to_numpy())
            names.append(f"{c}__missing")
    for c in categorical:
        v = frame[c].cast(pl.Utf8).fill_null("(missing)")
        lv = sorted(levels[c]) if levels and c in levels else sorted(v.unique().to_list())
        arr = v.to_numpy()
        for level in lv[1:]:
            cols.append((arr == level).astype(np.float64))
            names.append(f"{c}={level}")
    X = np.column_stack(cols) if cols else np.zeros((frame.height, 0))
    return X, names


def gram_statistics(frame: pl.DataFrame, by: Sequence[str], outcomes: Sequence[str], X: np.ndarray
                    ) -> tuple[pl.DataFrame, GramStats]:
    """Reduce unit rows to statistics per group of ``by`` and outcome.

    Returns the groups' keys (sorted, one row per group) and :class:`GramStats` of batch shape
    (groups, outcomes). A unit whose outcome is null/NaN is left out of that outcome only.
    """
    by = list(by)
    X = np.asarray(X, dtype=np.float64)
    codes_frame = frame.select(by).with_row_index("_row")
    keys = frame.select(by).unique().sort(by, nulls_last=True)
    codes = codes_frame.join(keys.with_row_index("_group"), on=by, how="left", nulls_equal=True).sort("_row")["_group"].to_numpy()
    ys = np.column_stack([frame[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in outcomes]) if outcomes \
        else np.zeros((frame.height, 0))
    out = []
    for g in range(keys.height):
        rows = codes == g
        Xg, Yg = X[rows], ys[rows]
        per = []
        full = None
        for j in range(Yg.shape[1]):
            ok = ~np.isnan(Yg[:, j])
            if ok.all():
                if full is None:
                    full = (float(Xg.shape[0]), Xg.sum(axis=0), Xg.T @ Xg)
                n, sx, sxx = full
                y, Xo = Yg[:, j], Xg
            else:
                Xo, y = Xg[ok], Yg[ok, j]
                n, sx, sxx = float(ok.sum()), Xo.sum(axis=0), Xo.T @ Xo
            per.append(GramStats(np.asarray(n), np.asarray(y.sum()), np.asarray(y @ y), sx, sxx, Xo.T @ y))
        out.append(GramStats.stack(per))
    return keys, GramStats.stack(out)


def _solve(cxx: np.ndarray, cxy: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """θ = C_xx⁺ C_xy per batch element on the correlation scale (see module docstring);
    returns θ (B, k) and the number of directions kept (B,)."""
    d = np.diagonal(cxx, axis1=-2, axis2=-1)
    scale = np.abs(d).max(axis=-1, keepdims=True) if d.shape[-1] else np.ones(d.shape[:-1] + (1,))
    live = d > 1e-12 * np.where(scale > 0, scale, 1.0)
    s = np.where(live, np.sqrt(np.where(live, d, 1.0)), 1.0)
    r = cxx / (s[..., :, None] * s[..., None, :])
    r = np.where(live[..., :, None] & live[..., None, :], r, 0.0)
    b = np.where(live, cxy / s, 0.0)
    w, v = np.linalg.eigh(r)
    wmax = w.max(axis=-1, keepdims=True) if w.shape[-1] else np.ones(w.shape[:-1] + (1,))
    keep = w > cutoff * np.where(wmax > 0, wmax, 1.0)
    inv = np.where(keep, 1.0 / np.where(keep, w, 1.0), 0.0)
    beta = np.einsum("...ij,...j,...kj,...k->...i", v, inv, v, b)
    return np.where(live, beta / s, 0.0), keep.sum(axis=-1)


def regression_adjust(stats: GramStats, baseline: int = 0, alpha: float = 0.05, reference: str = "t",
                      cutoff: float = EIGEN_CUTOFF) -> dict[str, np.ndarray]:
    """Multi-covariate regression adjustment of every arm against the baseline arm.

    ``stats``: batch shape ``(…, A)`` with the arms on the last batch axis (e.g. metrics × arms).
    Returns arrays of shape ``(…, A − 1)`` (the arms other than ``baseline``, in order): the
    :func:`~liftlab.stats.engine.two_sample` columns plus ``mean_baseline``/``mean_variant``
    (adjusted arm estimates), ``var_baseline``/``var_variant``, ``raw_var_baseline``/
    ``raw_var_variant`` (unadjusted), ``variance_reduction`` (1 − V_adj/V_raw), ``r2`` (pooled
    within-arm R² of the regression) and ``n_baseline``/``n_variant``; and of shape ``(…, k)``
    ``theta``; ``k_used`` (…,).
    """
    from .engine import two_sample

    n = np.asarray(stats.n, dtype=np.float64)
    sy, syy = np.asarray(stats.sum_y, dtype=np.float64), np.asarray(stats.sum_yy, dtype=np.float64)
    sx, sxx, sxy = (np.asarray(a, dtype=np.float64) for a in (stats.sum_x, stats.sum_xx, stats.sum_xy))
    arms = n.shape[-1]
    c_yy = centered(syy, sy, sy, n)
    c_xy = centered(sxy, sx, sy[..., None], n[..., None])
    c_xx = centered(sxx, sx[..., :, None], sx[..., None, :], n[..., None, None])
    c_xx = np.where(np.isfinite(c_xx), c_xx, 0.0)
    c_xy = np.where(np.isfinite(c_xy), c_xy, 0.0)
    theta, k_used = _solve(c_xx.sum(axis=-3), c_xy.sum(axis=-2), cutoff)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_all = n.sum(axis=-1)
        xbar = sx.sum(axis=-2) / n_all[..., None]
        mean_x = sx / n[..., None]
        est = sy / n - np.einsum("...ak,...k->...a", mean_x - xbar[..., None, :], theta)
        c_rr = (c_yy - 2 * np.einsum("...ak,...k->...a", c_xy, theta)
                + np.einsum("...k,...akl,...l->...a", theta, c_xx, theta))
        c_rr = np.maximum(c_rr, 0.0)
        dof = np.where(n >= 2, n - 1.0, np.nan)
        resid_dof = n_all - arms - k_used
        factor = np.where(resid_dof > 0, (n_all - arms) / resid_dof, np.nan)
        var = factor[..., None] * c_rr / dof / n
        raw = np.maximum(c_yy, 0.0) / dof / n
        r2 = 1.0 - c_rr.sum(axis=-1) / np.maximum(c_yy, 0.0).sum(axis=-1)
    others = [a for a in range(arms) if a != baseline]
    e0, v0, n0, r0 = (np.repeat(a[..., baseline:baseline + 1], len(others), axis=-1) for a in (est, var, n, raw))
    e1, v1, n1, r1 = (a[..., others] for a in (est, var, n, raw))
    res = two_sample(e0, e1, v0, v1, n0, n1, alpha, reference)
    with np.errstate(divide="ignore", invalid="ignore"):
        vr = 1.0 - (v0 + v1) / (r0 + r1)
    return {
        **res, "mean_baseline": e0, "mean_variant": e1, "var_baseline": v0, "var_variant": v1,
        "raw_var_baseline": r0, "raw_var_variant": r1, "variance_reduction": vr,
        "r2": np.repeat(r2[..., None], len(others), axis=-1), "n_baseline": n0, "n_variant": n1,
        "theta": theta, "k_used": k_used,
    }


def multi_effects(
    units: pl.DataFrame,
    metrics: Sequence[str],
    baseline: str,
    *,
    pre: Sequence[str] = (),
    numeric: Sequence[str] = (),
    categorical: Sequence[str] = (),
    own_twin: Mapping[str, str] | None = None,
    alpha: float = 0.05,
    reference: str = "t",
    directions: Mapping[str, int] | None = None,
    tau: float | None = None,
    prior_sd: float | None = None,
    by: Sequence[str] = ("variant",),
) -> pl.DataFrame:
    """Effect rows (``method = 'cuped_multi'``, :data:`liftlab.stats.engine.ENGINE_COLUMNS`) of
    the mean ``metrics`` of a unit frame (``variant`` + outcome and covariate columns).

    Statistics are reduced per ``by`` (e.g. variant × day) and summed per variant, as the daily
    partitions are. ``theta`` is the slope of the metric's own twin (``own_twin``: metric →
    column), ``rho2`` the pooled within-arm R², ``variance_reduction`` ``1 − V_multi/V_raw``;
    confidence sequence and Bayesian summary as the engine's other methods.
    """
    from .bayes import DEFAULT_PRIOR_SD, bayes_summary
    from .engine import ENGINE_COLUMNS
    from .sequential import DEFAULT_TAU, confidence_sequence

    metrics = list(metrics)
    if not metrics or units.is_empty():
        return pl.DataFrame(schema=ENGINE_COLUMNS)
    X, names = design_matrix(units, pre, numeric, categorical)
    keys, parts = gram_statistics(units, by, metrics, X)
    variants = keys["variant"].cast(pl.Utf8).to_list()
    arms = sorted(set(variants) - {baseline})
    if baseline not in variants or not arms:
        return pl.DataFrame(schema=ENGINE_COLUMNS)
    order = [baseline, *arms]
    per_arm = []
    for arm in order:  # sum the partitions of each arm (days …)
        idx = [i for i, v in enumerate(variants) if v == arm]
        total = GramStats(*(np.asarray(getattr(parts, f))[idx].sum(axis=0) for f in _FIELDS))
        per_arm.append(total)
    stats = GramStats.stack(per_arm, axis=1)  # (metrics, arms)
    res = regression_adjust(stats, 0, alpha, reference)
    m, a = len(metrics), len(arms)
    flat = {k: np.asarray(v).reshape(m * a) for k, v in res.items() if k not in ("theta", "k_used")}
    own = own_twin or {}
    theta = np.array([res["theta"][i, names.index(own[mt])] if own.get(mt) in names else np.nan
                      for i, mt in enumerate(metrics) for _ in arms])
    good = np.array([float((directions or {}).get(mt, 1)) for mt in metrics for _ in arms])
    tau = DEFAULT_TAU if tau is None else tau
    ntot = flat["n_baseline"] + flat["n_variant"]
    cs = confidence_sequence(flat["abs_effect"], flat["abs_se"] ** 2, ntot, alpha, tau)
    rcs = confidence_sequence(flat["rel_effect"], flat["rel_se"] ** 2, ntot, alpha, tau)
    bayes = bayes_summary(flat["rel_effect"], flat["rel_se"] ** 2, good, DEFAULT_PRIOR_SD if prior_sd is None else prior_sd)
    cols = {
        "metric": [mt for mt in metrics for _ in arms], "variant": arms * m, "baseline": [baseline] * (m * a),
        "method": ["cuped_multi"] * (m * a), "n_baseline": flat["n_baseline"].astype(np.int64),
        "n_variant": flat["n_variant"].astype(np.int64),
        **{c: flat[c] for c in ("mean_baseline", "mean_variant", "abs_effect", "abs_se", "abs_ci_low", "abs_ci_high",
                                "rel_effect", "rel_se", "rel_ci_low", "rel_ci_high", "t_stat", "df", "p_value")},
        "cs_low": cs[0], "cs_high": cs[1], "rel_cs_low": rcs[0], "rel_cs_high": rcs[1],
        "chance_to_win": bayes["chance_to_win"], "expected_loss": bayes["expected_loss"],
        "expected_loss_baseline": bayes["expected_loss_baseline"],
        "theta": theta, "variance_reduction": flat["variance_reduction"], "rho2": flat["r2"],
    }
    return pl.DataFrame(cols).with_columns(pl.col(c).cast(t) for c, t in ENGINE_COLUMNS.items()).select(*ENGINE_COLUMNS)


def covariate_plan(spec) -> tuple[list[str], list[str], list[str]]:
    """The covariates ``cuped_multi`` takes for an experiment spec: (pre-period twins, numeric
    attributes, categorical attributes).

    Twins: the CUPED covariate of every metric of the spec (:func:`liftlab.experiment_stats.
    metric_plan`: each metric's own twin, a ratio's numerator's) and the spec's ``covariates``
    named ``pre_*``; numeric: the spec's other ``covariates``; categorical: the spec's
    ``dimensions`` (unit attributes fixed at first exposure, one-hot)."""
    from liftlab.experiment_stats import metric_plan

    pre = [x for _, x, _ in metric_plan(spec).values() if x is not None]
    pre += [c for c in spec.covariates if c.startswith("pre_")]
    pre = list(dict.fromkeys(pre))
    categorical = list(dict.fromkeys(spec.dimensions))
    numeric = [c for c in dict.fromkeys(spec.covariates) if c not in pre and c not in categorical]
    return pre, numeric, categorical


def experiment_multi_effects(units: pl.DataFrame, spec, table: pl.DataFrame, caps: Mapping[str, float] | None = None
                             ) -> pl.DataFrame:
    """``cuped_multi`` rows of an experiment in the shape of ``table`` (its results.effects rows
    from :func:`liftlab.experiment_stats.experiment_effects`), to be stacked under them.

    ``units``: :func:`liftlab.units.analysis_frame` rows with the mean metrics' columns, the
    twins and numeric covariates of :func:`covariate_plan`, and its categorical attributes.
    Winsorized with the experiment's ``caps`` as the other methods; multiplicity adjustment by
    :func:`liftlab.stats.engine.adjust` (its families are per method, so these rows form their
    own, as a separate analysis would); never the decision estimate (``decide.METHOD_PREFERENCE``
    does not list ``cuped_multi``). Empty unless the design is randomized, CUPED is on and there
    is a covariate; ratio metrics keep single-covariate CUPED.
    """
    from liftlab.experiment_stats import metric_plan, winsorize_units
    from liftlab.stats.engine import adjust

    pre, numeric, categorical = covariate_plan(spec)
    plan = {m: y for m, (y, _, d) in metric_plan(spec).items() if d is None}
    if spec.design != "randomized" or not spec.cuped or not plan or not (pre or numeric or categorical) or units.is_empty():
        return table.clear()
    units, _ = winsorize_units(units, spec, dict(caps) if caps is not None else None)
    metrics = list(plan)
    renamed = units.with_columns(pl.col(y).alias(f"__y__{m}") for m, y in plan.items())
    rows = multi_effects(
        renamed, [f"__y__{m}" for m in metrics], spec.baseline, pre=pre, numeric=numeric, categorical=categorical,
        own_twin={f"__y__{m}": metric_plan(spec)[m][1] for m in metrics if metric_plan(spec)[m][1]},
        alpha=spec.alpha, directions={f"__y__{m}": 1 if spec.direction(m) == "higher_is_better" else -1 for m in metrics},
        tau=spec.sequential_tuning, prior_sd=spec.prior_sd,
    ).with_columns(pl.col("metric").str.strip_prefix("__y__"))
    if rows.is_empty():
        return table.clear()
    rows = adjust(rows, spec.metric_roles(), alpha=spec.alpha, tau=spec.sequential_tuning)
    same = table.filter(pl.col("method") != "cuped_multi").unique("metric", keep="first").select(
        "metric", *[c for c in ("experiment_id", "alpha", "inference", "metric_kind", "n_window_incomplete") if c in table.columns])
    rows = rows.join(same, on="metric", how="left").with_columns(pl.lit(False).alias("is_decision_estimate"))
    return rows.select([pl.col(c).cast(table.schema[c]) if c in rows.columns else pl.lit(None, table.schema[c]).alias(c)
                        for c in table.columns])
