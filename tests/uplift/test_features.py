"""The pre-treatment guard: outcomes and anything measured after exposure are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from liftlab.config import REPO_ROOT
from liftlab.specs import SpecError, load_specs, parse_spec
from liftlab.uplift.features import PostTreatmentFeature, allowed_features, check_pre_treatment, encode


@pytest.fixture(scope="module")
def specs():
    return {item.spec.id: item.spec for item in load_specs(REPO_ROOT / "experiments")}


def test_event_experiment_allows_user_attributes_and_pre_period_only(specs):
    spec = specs["winback_email"]
    allowed = set(allowed_features(spec))
    assert {"plan", "tenure_days", "engagement_score", "pre_sessions", "pre_revenue"} <= allowed
    assert check_pre_treatment(spec, ["plan", "pre_sessions"]) == ("plan", "pre_sessions")
    for bad in ("reactivated", "sessions", "revenue", "active_days", "converted"):
        with pytest.raises(PostTreatmentFeature, match="outcome"):
            check_pre_treatment(spec, ["plan", bad])
    for bad in ("variant", "user_id", "exposure_date"):
        with pytest.raises(PostTreatmentFeature, match="unit or its arm"):
            check_pre_treatment(spec, [bad])
    with pytest.raises(PostTreatmentFeature, match="not a declared pre-treatment"):
        check_pre_treatment(spec, ["n_exposures"])
    assert set(check_pre_treatment(spec, [])) == allowed  # empty → every allowed feature


def test_file_experiment_allows_declared_covariates(specs):
    spec = specs["hillstrom"]
    assert set(allowed_features(spec)) == {"recency", "history", "mens", "womens", "newbie", "zip_code", "channel"}
    for bad in ("visit", "conversion", "spend"):
        with pytest.raises(PostTreatmentFeature, match="outcome"):
            check_pre_treatment(spec, [bad])
    with pytest.raises(PostTreatmentFeature, match="unit or its arm"):
        check_pre_treatment(spec, ["segment"])
    with pytest.raises(PostTreatmentFeature, match="not a declared"):
        check_pre_treatment(spec, ["history_segment"])  # declared column, but not declared pre-treatment


def test_spec_validation_names_the_key():
    text = (REPO_ROOT / "experiments" / "winback_email.yaml").read_text()
    bad = text.replace("pre_sessions, pre_ai_calls", "sessions, pre_ai_calls")
    with pytest.raises(SpecError, match=r"uplift\.features: .*'sessions' is an outcome"):
        parse_spec(bad, Path("winback_email.yaml"))
    bad_arm = text + "  arms: [treatment]\n"
    with pytest.raises(SpecError, match=r"uplift\.arms\.0"):
        parse_spec(bad_arm, Path("winback_email.yaml"))
    no_block = text.split("# Uplift modelling")[0]
    assert parse_spec(no_block, Path("winback_email.yaml")).uplift is None  # optional


def test_encoding_is_deterministic_one_hot():
    frame = pl.DataFrame({"size": ["b", "a", None, "b"], "x": [1, None, 3, 4]})
    enc = encode(frame, ["size", "x"])
    assert enc.columns == ["size=(null)", "size=a", "size=b", "x"]
    assert enc.groups() == {"size": [0, 1, 2], "x": [3]}
    np.testing.assert_array_equal(enc.X[:, :3], [[0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1]])
    assert np.isnan(enc.X[1, 3])
