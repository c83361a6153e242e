"""A/A calibration of the effect test by re-randomizing real pre-period data.

Pre-period data cannot contain a treatment effect, so re-assigning units at random and running
the platform's effect test (two-sided Welch t-test, see ``liftlab.stats.welch``) must reject
the null at rate α, and its p-values must be Uniform(0, 1) — the test's own definition of
calibration (Kohavi, Tang & Xu 2020, *Trustworthy Online Controlled Experiments*, ch. 19
"The A/A Test"). With ``B`` independent re-randomizations the observed false-positive rate
has standard error ``sqrt(α(1−α)/B)``; the calibration passes when

    |FPR − α| ≤ 2 · sqrt(α(1−α)/B)

and the one-sample Kolmogorov–Smirnov test of the p-values against U(0, 1)
(``scipy.stats.kstest``) does not reject at ``ks_alpha`` (Massey 1951, JASA 46(253) 68–78).

Vectorised: each re-randomization is a Bernoulli(w) assignment of every unit (the planned
share of the variant arm within baseline + variant); a chunk of assignments is a 0/1 matrix
``Z`` (chunk × N) and the per-arm sufficient statistics come from one matrix product,
``Z @ [1, y−ȳ, (y−ȳ)²]`` (centred at the pooled mean for a stable variance) — no Python loop
over re-randomizations or units. The Welch statistic, Welch–Satterthwaite df and p-value come
from ``liftlab.stats.engine.two_sample``, the same function as every other effect in liftlab.
Pure module: no Dagster, no database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

HIST_BINS = 20


def welch_p_values(n1: np.ndarray, s1: np.ndarray, ss1: np.ndarray, n0: np.ndarray, s0: np.ndarray, ss0: np.ndarray) -> np.ndarray:
    """Two-sided Welch p-values from arrays of per-arm sufficient statistics ``(n, Σ(y−c), Σ(y−c)²)``.

    The test is :func:`liftlab.stats.engine.two_sample` (Welch 1947 with Welch–Satterthwaite df,
    the platform's one implementation), fed the arm means and the variances of the means.
    ``c`` is any shift common to both arms; the variance is shift-invariant, and the caller
    should pass sums about a value near the data (:func:`rerandomized_p_values` uses the pooled
    mean). Why: each arm's centred sum of squares is ``M2 = Σ(y−c)² − (Σ(y−c))²/n``, whose
    relative rounding error is about ``ε·(1 + n(ȳ−c)²/M2)`` (Chan, Golub & LeVeque 1983, "Algorithms
    for computing the sample variance", The American Statistician 37(3), the shifted-data
    algorithm). With ``c`` the pooled mean, ``ȳ_arm − c = O(s/√n)`` and the error is O(ε) whatever
    the magnitude of ``y``; with raw power sums (``c = 0``) it grows like ``ε·ȳ²/s²`` and is
    total for values ~1e9 with spread ~1e-3 (``tests/gates/test_aa_stable.py``). NaN where an
    arm has fewer than two units or both variances are 0. Equals
    ``scipy.stats.ttest_ind(equal_var=False).pvalue`` element-wise.
    """
    from liftlab.stats.engine import two_sample

    n1, n0 = np.asarray(n1, float), np.asarray(n0, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        m1, m0 = s1 / n1, s0 / n0
        v1 = np.maximum(ss1 - s1 * m1, 0.0) / (n1 - 1) / n1  # variance of the arm mean
        v0 = np.maximum(ss0 - s0 * m0, 0.0) / (n0 - 1) / n0
    return two_sample(m0, m1, v0, v1, n0, n1, 0.05, "t")["p_value"]


def band(alpha: float, n_simulations: int) -> tuple[float, float]:
    """``α ± 2·sqrt(α(1−α)/B)``: the acceptance band of the false-positive rate."""
    half = 2.0 * math.sqrt(alpha * (1.0 - alpha) / n_simulations)
    return alpha - half, alpha + half


@dataclass(frozen=True)
class Calibration:
    metric: str
    n_units: int
    n_simulations: int
    alpha: float
    share: float
    false_positive_rate: float
    band_low: float
    band_high: float
    ks_statistic: float
    ks_p_value: float
    ks_alpha: float
    seed: int
    p_values: np.ndarray = field(repr=False)

    @property
    def within_band(self) -> bool:
        return self.band_low <= self.false_positive_rate <= self.band_high

    @property
    def uniform(self) -> bool:
        return self.ks_p_value >= self.ks_alpha

    @property
    def passed(self) -> bool:
        return self.within_band and self.uniform

    def histogram(self, bins: int = HIST_BINS) -> list[int]:
        counts, _ = np.histogram(self.p_values[~np.isnan(self.p_values)], bins=bins, range=(0.0, 1.0))
        return [int(c) for c in counts]

    def summary(self) -> str:
        return (
            f"{self.metric}: FPR {self.false_positive_rate:.4f} at α={self.alpha:g} over {self.n_simulations:,} "
            f"re-randomizations of {self.n_units:,} units (band {self.band_low:.4f}–{self.band_high:.4f}"
            f"{'' if self.within_band else ', OUTSIDE'}); KS vs U(0,1) D={self.ks_statistic:.4f}, "
            f"p={self.ks_p_value:.3g}{'' if self.uniform else ' (NOT uniform)'}"
        )


def rerandomized_p_values(
    y: np.ndarray, *, share: float = 0.5, n_simulations: int = 1000, seed: int = 0, chunk: int | None = None
) -> np.ndarray:
    """p-values of the Welch test over ``n_simulations`` Bernoulli(``share``) re-randomizations of ``y``.

    ``y`` of one column gives one p-value per re-randomization (non-finite values dropped first);
    ``y`` of shape (units, k) gives (n_simulations, k): every column is tested on the *same*
    re-randomizations (one random matrix for all covariates), a unit missing in a column leaving
    only that column. Work is done in chunks of re-randomizations sized to keep the 0/1 matrix
    near 64 MB.
    """
    if not 0 < share < 1:
        raise ValueError("share must be in (0, 1)")
    y = np.asarray(y, dtype=np.float64)
    single = y.ndim == 1
    if single:
        y = y[np.isfinite(y)][:, None]
    n, k = y.shape
    finite = np.isfinite(y)
    counts = finite.sum(axis=0)
    # centre before squaring (see welch_p_values): a two-pass mean, whose second pass removes the
    # rounding of the first, then Σ(y−ȳ), Σ(y−ȳ)² per arm are well conditioned at any magnitude
    means = np.divide(np.where(finite, y, 0.0).sum(axis=0), counts, out=np.zeros(k), where=counts > 0)
    means += np.divide(np.where(finite, y - means, 0.0).sum(axis=0), counts, out=np.zeros(k), where=counts > 0)
    yc = np.where(finite, y - means, 0.0)
    moments = np.concatenate([finite.astype(np.float64), yc, yc * yc], axis=1)  # N × 3k
    total = moments.sum(axis=0)
    rng = np.random.default_rng(seed)
    chunk = chunk or max(1, min(n_simulations, (64 << 20) // max(8 * n, 1)))
    out = np.empty((n_simulations, k))
    for start in range(0, n_simulations, chunk):  # a few chunks, each fully vectorised
        b = min(chunk, n_simulations - start)
        z = (rng.random((b, n)) < share).astype(np.float64)
        arm1 = z @ moments  # b × 3k: n, Σy, Σy² of the variant arm per column
        arm0 = total[None, :] - arm1
        out[start:start + b] = welch_p_values(arm1[:, :k], arm1[:, k:2 * k], arm1[:, 2 * k:],
                                              arm0[:, :k], arm0[:, k:2 * k], arm0[:, 2 * k:])
    return out[:, 0] if single else out


def _calibration(metric: str, y: np.ndarray, p: np.ndarray, *, share: float, alpha: float, n_simulations: int,
                 ks_alpha: float, seed: int) -> Calibration:
    from scipy import stats

    valid = p[~np.isnan(p)]
    fpr = float(np.mean(valid < alpha)) if valid.size else math.nan
    low, high = band(alpha, n_simulations)
    if valid.size:
        ks = stats.kstest(valid, "uniform")
        ks_stat, ks_p = float(ks.statistic), float(ks.pvalue)
    else:
        ks_stat, ks_p = math.nan, math.nan
    return Calibration(metric, int(np.isfinite(np.asarray(y, float)).sum()), n_simulations, alpha, share, fpr,
                       low, high, ks_stat, ks_p, ks_alpha, seed, p)


def calibrate(
    y: np.ndarray,
    *,
    metric: str,
    share: float = 0.5,
    alpha: float = 0.05,
    n_simulations: int = 1000,
    ks_alpha: float = 0.01,
    seed: int = 0,
) -> Calibration:
    """Re-randomize ``y`` ``n_simulations`` times and measure the Welch test's FPR and p-value uniformity."""
    if n_simulations < 2:
        raise ValueError("n_simulations must be >= 2")
    p = rerandomized_p_values(y, share=share, n_simulations=n_simulations, seed=seed)
    return _calibration(metric, y, p, share=share, alpha=alpha, n_simulations=n_simulations, ks_alpha=ks_alpha, seed=seed)


def calibrate_columns(
    columns: dict[str, np.ndarray],
    *,
    share: float = 0.5,
    alpha: float = 0.05,
    n_simulations: int = 1000,
    ks_alpha: float = 0.01,
    seed: int = 0,
) -> list[Calibration]:
    """:func:`calibrate` for several covariates of the same units on the same re-randomizations
    (one random matrix instead of one per covariate: the cost of one covariate for all)."""
    if n_simulations < 2:
        raise ValueError("n_simulations must be >= 2")
    if not columns:
        return []
    matrix = np.column_stack([np.asarray(v, dtype=np.float64) for v in columns.values()])
    p = rerandomized_p_values(matrix, share=share, n_simulations=n_simulations, seed=seed)
    return [_calibration(name, matrix[:, j], p[:, j].copy(), share=share, alpha=alpha, n_simulations=n_simulations,
                         ks_alpha=ks_alpha, seed=seed) for j, name in enumerate(columns)]


def plot_histogram(calibrations: list[Calibration], path) -> None:
    """Histogram of the A/A p-values per metric with the uniform expectation (matplotlib PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = max(len(calibrations), 1)
    fig, axes = plt.subplots(1, k, figsize=(4.2 * k, 3.4), squeeze=False)
    for ax, cal in zip(axes[0], calibrations, strict=False):
        valid = cal.p_values[~np.isnan(cal.p_values)]
        ax.hist(valid, bins=HIST_BINS, range=(0, 1), color="#4C72B0", edgecolor="white")
        ax.axhline(valid.size / HIST_BINS, color="black", linestyle="--", linewidth=1, label="uniform")
        ax.set_title(f"{cal.metric}\nFPR {cal.false_positive_rate:.3f}, KS p {cal.ks_p_value:.2f}", fontsize=9)
        ax.set_xlabel("p-value")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"re-randomizations (of {calibrations[0].n_simulations if calibrations else 0})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
