"""docs/spec.md is generated from the spec and catalogue models and covers every key.

Pure tests (no database): the page is compared with :func:`liftlab.spec_reference.render`, and
the models are walked here independently of the renderer (``model_fields``, recursively) so a
renderer that skipped a model or a field would fail too.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing

import pytest
import yaml
from pydantic import BaseModel

from liftlab import catalogue, spec_reference, specs
from liftlab.config import REPO_ROOT

PAGE = REPO_ROOT / "docs" / "spec.md"
REGENERATE = f"regenerate it with `{spec_reference.COMMAND}` (from the repository root)"


def page_text() -> str:
    if not PAGE.exists():
        pytest.fail(f"{PAGE} is missing; {REGENERATE}")
    return PAGE.read_text(encoding="utf-8")


def sections(text: str) -> dict[str, str]:
    """``### Name`` heading → the text up to the next heading."""
    parts = re.split(r"^#{2,3} (.+?)\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def rows(section: str) -> dict[str, list[str]]:
    """Key → the cells of its table row (``| `key` | type | default | constraints | description |``)."""
    out = {}
    for line in section.splitlines():
        match = re.match(r"^\| `([^`]+)` \|", line)
        if match:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            out[match.group(1)] = cells
    return out


def models_in(tp) -> list[type[BaseModel]]:
    found = [tp] if isinstance(tp, type) and issubclass(tp, BaseModel) else []
    for arg in typing.get_args(tp):
        found += [m for m in models_in(arg) if m not in found]
    return found


def catalogue_keys() -> dict[str, type[BaseModel]]:
    """Top-level key of a catalogue file → model of its entries (``Catalogue``'s dict fields)."""
    hints = typing.get_type_hints(catalogue.Catalogue)
    out = {}
    for field in dataclasses.fields(catalogue.Catalogue):
        args = typing.get_args(hints[field.name])
        if typing.get_origin(hints[field.name]) is dict and models_in(args[1]):
            out[field.name] = args[1]
    return out


def all_models() -> list[type[BaseModel]]:
    """Every model a spec or a catalogue file can hold, found from the roots via model_fields."""
    todo = [specs.ExperimentSpec, *catalogue_keys().values()]
    seen: list[type[BaseModel]] = []
    while todo:
        model = todo.pop(0)
        if model not in seen:
            seen.append(model)
            for field in model.model_fields.values():
                todo += models_in(field.annotation)
    return seen


def test_page_is_generated_from_the_models():
    committed, rendered = page_text(), spec_reference.render()
    if committed != rendered:
        diff = "".join(list(difflib.unified_diff(committed.splitlines(True), rendered.splitlines(True),
                                                 "docs/spec.md (committed)", "render()"))[:60])
        pytest.fail(f"docs/spec.md is out of date with the models; {REGENERATE}\n{diff}")


def test_render_is_deterministic():
    assert spec_reference.render() == spec_reference.render()


def test_walk_finds_every_kind_of_model():
    """The independent walk is not vacuous: the source forms and the catalogue entries are in it."""
    names = {m.__name__ for m in all_models()}
    assert {"ExperimentSpec", "Variant", "Guardrail", "FileSource", "TableSource", "WarehouseSource", "Assignments",
            "DemoSource", "RatioMetric", "UpliftSpec", "CausalSpec", "SyntheticControlSpec",
            "FactTable", "UnitTable", "Metric"} <= names
    assert set(catalogue_keys()) == {"fact_tables", "unit_tables", "metrics"}


def test_every_field_of_every_model_is_in_its_section():
    page = sections(page_text())
    missing = []
    for model in all_models():
        if model.__name__ not in page:
            missing.append(f"section ### {model.__name__}")
            continue
        documented = rows(page[model.__name__])
        missing += [f"{model.__name__}.{name}" for name, field in model.model_fields.items()
                    if (field.alias or name) not in documented]
        stale = set(documented) - {f.alias or n for n, f in model.model_fields.items()}
        missing += [f"{model.__name__}.{name} (documented, not a field)" for name in sorted(stale)]
    assert not missing, f"docs/spec.md does not match the models: {missing}; {REGENERATE}"


def test_every_field_has_a_description():
    """A new field needs a ``#:`` comment above it (what it is and why): the page shows it."""
    page = sections(page_text())
    bare = [f"{model.__name__}.{key}" for model in all_models()
            for key, cells in rows(page[model.__name__]).items() if not cells[-1]]
    bare += [f"Catalogue.{key}" for key, cells in rows(page["Catalogue"]).items() if not cells[-1]]
    assert not bare, f"fields without a description: {bare}; add a `#:` comment above each, then {REGENERATE}"


def test_type_column_links_nested_models():
    spec = rows(sections(page_text())["ExperimentSpec"])
    assert "[`Variant`](#variant)" in spec["variants"][1]
    for form in ("FileSource", "TableSource", "WarehouseSource", "DemoSource"):
        assert f"[`{form}`](#{form.lower()})" in spec["source"][1]
    assert spec["design"][1] == '`"randomized" \\| "observational" \\| "staggered_rollout"`'
    assert spec["secondary_metrics"][1] == "`list[str]`"
    assert spec["cuped_covariates"][1] == "`dict[str, str]`"
    assert spec["id"][2] == "required" and spec["owner"][2] == '`"experimentation"`'


def _check_keys(data: dict, model: type[BaseModel], page: dict[str, str], where: str, problems: list[str]) -> None:
    documented = rows(page.get(model.__name__, ""))
    for key, value in data.items():
        if key not in documented:
            problems.append(f"{where}{key} (section {model.__name__})")
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == key), None)
        children = models_in(field.annotation) if field is not None else []
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            if not isinstance(item, dict) or not children:
                continue
            forms = [m for m in children if "kind" not in item or (
                "kind" in m.model_fields and m.model_fields["kind"].default == item["kind"])]
            if len(forms) == 1:
                _check_keys(item, forms[0], page, f"{where}{key}{f'.{i}' if isinstance(value, list) else ''}.",
                            problems)


def test_every_key_of_the_shipped_specs_is_documented():
    page = sections(page_text())
    files = sorted((REPO_ROOT / "experiments").glob("*.yaml"))
    assert files, "no experiments/*.yaml"
    problems: list[str] = []
    for path in files:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        top = rows(page["ExperimentSpec"])
        problems += [f"{path.name}: {key}" for key in data if key not in top]
        _check_keys(data, specs.ExperimentSpec, page, f"{path.name}: ", problems)
    assert not problems, f"keys used in experiments/*.yaml but not in docs/spec.md: {problems}; {REGENERATE}"


def test_every_key_of_the_shipped_catalogue_is_documented():
    page = sections(page_text())
    files = sorted((REPO_ROOT / "metrics").glob("*.yaml"))
    assert files, "no metrics/*.yaml"
    top, models = rows(page["Catalogue"]), catalogue_keys()
    problems: list[str] = []
    for path in files:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for kind, entries in data.items():
            if kind not in top:
                problems.append(f"{path.name}: {kind}")
                continue
            for name, body in (entries or {}).items():
                _check_keys(body, models[kind], page, f"{path.name}: {kind}.{name}.", problems)
    assert not problems, f"keys used in metrics/*.yaml but not in docs/spec.md: {problems}; {REGENERATE}"
