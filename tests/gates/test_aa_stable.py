"""The A/A gate's Welch p-values stay exact at any magnitude (issue 17: no ``Σy² − n·ȳ²`` on raw sums).

The gate's test is ``liftlab.stats.engine.two_sample`` fed per-arm sums of ``y − ȳ`` (pooled
mean, two passes). The old gate formula, ``Σy² − n·ȳ²`` on raw power sums, loses every digit of
the variance when the values are ~1e9 and their spread ~1e-3 (Chan, Golub & LeVeque 1983); these
tests pin both facts against ``scipy.stats.ttest_ind(equal_var=False)``.

scipy itself, run on raw values ~1e9, rounds its arm means to ulp(1e9) ≈ 1.2e-7, which at a
spread of 1e-3 moves its own p by ~5e-3; the exact reference is therefore scipy on the same data
shifted by one of its values — a shift that is exact in float64 (Sterbenz's lemma: ``y − c`` of
two doubles within a factor 2 is exact, checked below) and to which Welch's test is invariant.
With a spread of 100 scipy on the raw values is accurate to ~1e-7 and is compared directly.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from liftlab.gates.aa import rerandomized_p_values, welch_p_values
from liftlab.stats.sufficient import SampleStats
from liftlab.stats.welch import welch_test

SIMS = 25


def _old_gate_formula(n1, s1, ss1, n0, s0, ss0):
    """The gate's previous p-value: variance ``(Σy² − n·ȳ²)/(n−1)`` from raw power sums."""
    n1, n0 = float(n1), float(n0)
    m1, m0 = s1 / n1, s0 / n0
    v1 = max(ss1 - n1 * m1 * m1, 0.0) / (n1 - 1)
    v0 = max(ss0 - n0 * m0 * m0, 0.0) / (n0 - 1)
    a1, a0 = v1 / n1, v0 / n0
    if not a1 + a0 > 0:
        return np.nan
    t = (m1 - m0) / np.sqrt(a1 + a0)
    df = (a1 + a0) ** 2 / (a1 * a1 / (n1 - 1) + a0 * a0 / (n0 - 1))
    return 2.0 * stats.t.sf(abs(t), df)


def _splits(n: int, seed: int) -> np.ndarray:
    """The Bernoulli(0.5) assignments ``rerandomized_p_values`` draws (one chunk of SIMS)."""
    return np.random.default_rng(seed).random((SIMS, n)) < 0.5


def _raw_sums(y, z):
    return z.sum(), y[z].sum(), (y[z] ** 2).sum(), (~z).sum(), y[~z].sum(), (y[~z] ** 2).sum()


def test_values_near_1e9_with_tiny_spread_match_scipy_and_the_old_formula_did_not():
    y = 1e9 + np.random.default_rng(4).normal(0.0, 1e-3, 3_000)
    p = rerandomized_p_values(y, share=0.5, n_simulations=SIMS, seed=3, chunk=SIMS)
    z = _splits(y.size, 3)
    c = y[0]
    assert np.array_equal((y - c) + c, y)  # the shift is exact: same data set
    exact = np.array([stats.ttest_ind(y[a] - c, y[~a] - c, equal_var=False).pvalue for a in z])
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p, exact, rtol=0, atol=1e-12)
    old = np.array([_old_gate_formula(*_raw_sums(y, a)) for a in z])
    # raw power sums carry no digit of a 1e-6 variance next to 1e18 squares: NaN or noise
    wrong = np.isnan(old) | (np.abs(old - exact) > 0.05)
    assert wrong.mean() > 0.8, np.abs(old - exact)


def test_values_near_1e9_with_moderate_spread_match_scipy_on_the_raw_values():
    y = 1e9 + np.random.default_rng(5).normal(0.0, 100.0, 3_000)
    p = rerandomized_p_values(y, share=0.5, n_simulations=SIMS, seed=8, chunk=SIMS)
    z = _splits(y.size, 8)
    ref = np.array([stats.ttest_ind(y[a], y[~a], equal_var=False).pvalue for a in z])
    np.testing.assert_allclose(p, ref, rtol=0, atol=1e-6)
    old = np.array([_old_gate_formula(*_raw_sums(y, a)) for a in z])
    assert np.max(np.abs(old - ref)) > 1e-3  # the old formula is visibly off even here


def test_welch_p_values_takes_sums_about_any_common_shift_and_is_the_platform_test():
    rng = np.random.default_rng(9)
    a, b = rng.gamma(2.0, 5.0, 400), rng.gamma(2.2, 4.0, 300)
    ref = welch_test(SampleStats.from_values(b), SampleStats.from_values(a)).p_value
    assert ref == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-10)
    for c in (0.0, 10.0, -1e4):
        p = welch_p_values(np.array([a.size]), np.array([(a - c).sum()]), np.array([((a - c) ** 2).sum()]),
                           np.array([b.size]), np.array([(b - c).sum()]), np.array([((b - c) ** 2).sum()]))
        assert p[0] == pytest.approx(ref, rel=1e-9), c
