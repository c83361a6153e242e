"""Experiment specs: every shipped spec is valid; every bad spec names its file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from liftlab.config import REPO_ROOT
from liftlab.specs import SpecError, load_specs

GOOD = yaml.safe_load((REPO_ROOT / "experiments" / "aa_check.yaml").read_text())


def write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_shipped_specs_are_valid():
    ids = {item.spec.id for item in load_specs()}
    assert ids == {"onboarding_adaptive", "aa_check", "checkout_redesign", "winback_email",
                   "ai_assistant_optin", "regional_pricing", "hillstrom"}


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        (lambda s: s["variants"].__setitem__(0, {"name": "control", "allocation": 0.6}), "variants", "sum to 1"),
        (lambda s: s.__setitem__("primary_metric", "happiness"), "primary_metric", "unknown metric 'happiness'"),
        (lambda s: s.__setitem__("baseline", "nobody"), "baseline", "not one of the variants"),
        (lambda s: s.pop("baseline"), "baseline", "Field required"),
        (lambda s: s.__setitem__("id", "Robert'); drop table x;--"), "id", "should match pattern"),
        (lambda s: s["guardrails"].append({"metric": "nps", "direction": "higher_is_better"}), "guardrails.1.metric", "unknown metric 'nps'"),
        (lambda s: s.__setitem__("covariates", ["pre_mood"]), "covariates.0", "unknown covariate 'pre_mood'"),
        (lambda s: s.pop("end_date"), "end_date", "required for experiments with exposure timestamps"),
        (lambda s: s.__setitem__("colour", "blue"), "colour", "Extra inputs are not permitted"),
    ],
)
def test_bad_spec_names_file_and_key(tmp_path, change, key, message):
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    change(spec)
    path = write(tmp_path, "bad.yaml", spec)
    with pytest.raises(SpecError) as err:
        load_specs(tmp_path)
    text = str(err.value)
    assert str(path) in text
    assert key in text
    assert message in text


def test_duplicate_ids_are_refused(tmp_path):
    write(tmp_path, "a.yaml", GOOD)
    second = write(tmp_path, "b.yaml", GOOD)
    with pytest.raises(SpecError, match="duplicate experiment id 'aa_check'") as err:
        load_specs(tmp_path)
    assert str(second) in str(err.value)


def test_invalid_yaml_and_non_mapping(tmp_path):
    write(tmp_path, "broken.yaml", "id: [unclosed")
    write(tmp_path, "list.yaml", "- 1\n- 2\n")
    with pytest.raises(SpecError) as err:
        load_specs(tmp_path)
    assert "broken.yaml: not valid YAML" in str(err.value)
    assert "list.yaml: (top level)" in str(err.value)
