"""Holm and Benjamini–Hochberg adjusted p values versus statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from liftlab.stats.multiple_testing import benjamini_hochberg, holm

METHODS = [(holm, "holm"), (benjamini_hochberg, "fdr_bh")]


def _vectors():
    rng = np.random.default_rng(42)
    yield np.array([0.01])
    yield np.array([0.04, 0.01, 0.03, 0.02])
    yield np.array([0.0, 1.0, 0.5, 0.5, 0.5, 1e-300])  # ties and extremes
    yield rng.uniform(size=10)
    yield rng.uniform(size=1000) ** 4  # many small p values
    yield np.concatenate([rng.uniform(0, 1e-4, 20), rng.uniform(size=200)])
    yield np.round(rng.uniform(size=300), 2)  # heavy ties


@pytest.mark.parametrize(("fn", "sm_method"), METHODS)
@pytest.mark.parametrize("idx", range(7))
def test_equals_statsmodels(fn, sm_method, idx):
    p = list(_vectors())[idx]
    ref = multipletests(p, method=sm_method)[1]
    np.testing.assert_allclose(fn(p), ref, rtol=0, atol=1e-12)


# statsmodels' multipletests costs ~80 ms a call here, hence the modest example count.
@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1.0, allow_nan=False), min_size=1, max_size=50))
def test_equals_statsmodels_property(pvals):
    p = np.array(pvals)
    for fn, method in METHODS:
        np.testing.assert_allclose(fn(p), multipletests(p, method=method)[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize(("fn", "sm_method"), METHODS)
def test_nan_safe(fn, sm_method):
    p = np.array([0.02, np.nan, 0.001, 0.3, np.nan, 0.04])
    out = fn(p)
    assert np.isnan(out[[1, 4]]).all()
    ok = ~np.isnan(p)
    # NaNs are not counted as hypotheses: m = 4 here.
    np.testing.assert_allclose(out[ok], multipletests(p[ok], method=sm_method)[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize(("fn", "_m"), METHODS)
def test_monotone_capped_and_no_smaller_than_raw(fn, _m):
    rng = np.random.default_rng(9)
    p = rng.uniform(size=500)
    adj = fn(p)
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0)
    assert np.all(adj <= 1.0) and np.all(adj >= p)


@pytest.mark.parametrize(("fn", "_m"), METHODS)
def test_shapes_empty_all_nan_and_invalid(fn, _m):
    assert fn([]).shape == (0,)
    assert np.isnan(fn([np.nan, np.nan])).all()
    assert fn(np.full((2, 3), 0.01)).shape == (2, 3)
    with pytest.raises(ValueError):
        fn([0.5, 1.2])
    with pytest.raises(ValueError):
        fn([-0.1])
