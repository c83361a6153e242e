"""SQL safety: identifiers from specs match a strict pattern and are quoted with
``psycopg.sql.Identifier``; values are always parameters; hostile strings pushed through every
spec field, file header, variant label and unit id end as a clear spec/file error or as a
literal stored exactly as given — and the database's tables are all still there.
"""

from __future__ import annotations

import ast
import copy
import hashlib
from pathlib import Path

import polars as pl
import pytest
import yaml

from liftlab import db
from liftlab.config import REPO_ROOT
from liftlab.specs import IDENTIFIER, SpecError, parse_spec
from tests.reliability.helpers import materialize

HOSTILE = [
    "x'; drop table raw.events; --",
    "Robert'); DROP TABLE raw.users;--",
    '"quoted"',
    'a"; drop schema raw cascade; --',
    "$$; drop schema results cascade; $$",
    "a b",
    "ａｂｃ",  # fullwidth look-alikes of abc
    "ɑbc",  # Latin alpha, not a
    "a\u200bb",  # zero-width space
    "abc\n",  # a trailing newline, which re.match's $ lets through
    "a" * 64,  # one more than Postgres' 63
    "%s %(x)s {}",
    "raw.events",
    "\\'; select pg_sleep(10); --",
]


# --------------------------------------------------------------------------- static audit
def _query_arguments(call: ast.Call) -> list[ast.expr]:
    name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
    if name in ("execute", "executemany", "copy", "SQL") and call.args:
        return [call.args[0]]
    if name == "read_frame" and len(call.args) >= 2:
        return [call.args[1]]
    return []


def _is_sql_call(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("SQL", "Identifier", "Literal")


def _formatting(node: ast.expr, sql_names: set[str]) -> list[str]:
    """String formatting inside a query argument: f-strings, %, .format on a plain string, and
    concatenation with anything but literals, names, ``sql`` objects and joins of constants."""
    found = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.JoinedStr):
            found.append("f-string")
        elif isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Mod):
            found.append("% formatting")
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr == "format":
            receiver = sub.func.value
            if not (_is_sql_call(receiver) or (isinstance(receiver, ast.Name) and receiver.id in sql_names)):
                found.append(".format on a plain string")
        elif isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Add):
            for side in (sub.left, sub.right):
                constant_join = (isinstance(side, ast.Call) and getattr(side.func, "attr", None) == "join"
                                 and isinstance(side.func.value, ast.Constant)
                                 and all(isinstance(a, ast.Name) and a.id.isupper() for a in side.args))
                if not (isinstance(side, (ast.Constant, ast.Name, ast.BinOp)) or constant_join
                        or (isinstance(side, ast.Call) and getattr(side.func, "attr", None) in ("SQL", "format", "join"))):
                    found.append("concatenation with a computed string")
    return found


def test_no_sql_is_built_by_string_formatting():
    """Every ``execute``/``read_frame``/``sql.SQL`` in the platform gets a literal, a composed
    ``sql`` object or a variable — never an f-string, ``%`` or ``str.format`` (this test flagged
    gates/store.py, causal_inputs.py and cli.py before they were fixed)."""
    offenders = []
    for path in sorted((REPO_ROOT / "platform" / "liftlab").rglob("*.py")):
        tree = ast.parse(path.read_text())
        sql_names = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign) and _is_sql_call(node.value)
                     for t in node.targets if isinstance(t, ast.Name)}
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            for argument in _query_arguments(call):
                offenders += [f"{path.relative_to(REPO_ROOT)}:{call.lineno}: {p}" for p in _formatting(argument, sql_names)]
    assert offenders == []


# --------------------------------------------------------------------------- the strict pattern
@pytest.mark.parametrize("name", HOSTILE + ["", "Abc", "1abc", "a-b", "a.b", "a;b", "ı", None, 42])
def test_check_identifier_refuses_anything_but_lower_snake_case(name):
    with pytest.raises(ValueError, match="must match"):
        db.check_identifier(name)


@pytest.mark.parametrize("name", ["a", "_x", "abc_1", "a" * 63])
def test_check_identifier_accepts_the_pattern(name):
    assert db.check_identifier(name) == name


# --------------------------------------------------------------------------- every spec field
def _file_spec() -> dict:
    """A valid file-source spec that uses every field that names something."""
    return {
        "id": "inj_test", "name": "n", "hypothesis": "h", "owner": "o", "unit": "user", "design": "randomized",
        "variants": [{"name": "control", "allocation": 0.5}, {"name": "treatment", "allocation": 0.5}],
        "baseline": "control", "primary_metric": "y", "primary_direction": "higher_is_better",
        "secondary_metrics": ["z"], "guardrails": [{"metric": "z", "direction": "lower_is_better", "tolerance": 0.1}],
        "covariates": ["x"], "cuped_covariates": {"y": "x"}, "winsorize": {"y": 0.99},
        "ratio_metrics": [{"name": "y_per_z", "numerator": "y", "denominator": "z"}],
        "source": {"kind": "file", "path": "inj_test.csv", "format": "csv", "unit_column": "uid",
                   "variant_column": "arm", "columns": {"uid": "string", "arm": "string", "y": "float", "z": "float",
                                                        "x": "float", "seg": "string"},
                   "outcomes": ["y", "z"]},
        "uplift": {"outcomes": ["y"], "features": ["x"], "pre_treatment": ["seg"], "arms": ["treatment"],
                   "learners": ["t_learner"], "value_per_conversion": {"y": 1.0}},
    }


#: Fields that hold free text (labels and prose): a hostile string is a legitimate value there,
#: stored as a literal. Every other field names a metric, column, variant or option and must
#: refuse it.
FREE_TEXT = {"name", "hypothesis", "owner", "unit", "variants.1.name", "source.path"}
#: Hostile-looking strings that are nonetheless valid for a field: 64 a's is a well-formed sha256
#: (the loader then reports the checksum mismatch).
VALID_ANYWAY = {"source.sha256": {"a" * 64}}

FIELDS = [
    "id", "name", "hypothesis", "owner", "unit", "design", "variants.1.name", "baseline", "primary_metric",
    "primary_direction", "secondary_metrics.0", "guardrails.0.metric", "guardrails.0.direction", "covariates.0",
    "cuped_covariates.y", "cuped_covariates.<key>", "winsorize.<key>", "ratio_metrics.0.name",
    "ratio_metrics.0.numerator", "ratio_metrics.0.denominator", "source.path", "source.format", "source.sha256",
    "source.unit_column", "source.variant_column", "source.columns.<key>", "source.columns.seg",
    "source.outcomes.0", "uplift.outcomes.0", "uplift.features.0", "uplift.pre_treatment.0", "uplift.arms.0",
    "uplift.learners.0", "uplift.base_model", "uplift.value_per_conversion.<key>", "start_date",
]


def _set(spec: dict, path: str, value: str) -> dict:
    """Set ``path`` (dotted; ``<key>`` renames the first key of that mapping) to ``value``."""
    spec = copy.deepcopy(spec)
    *parents, last = path.split(".")
    node = spec
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if last == "<key>":
        first = next(iter(node))
        node[value] = node.pop(first)
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return spec


def test_the_base_spec_is_valid(tmp_path):
    path = tmp_path / "inj_test.yaml"
    assert parse_spec(yaml.safe_dump(_file_spec()), path).id == "inj_test"


@pytest.mark.parametrize("field", FIELDS)
def test_hostile_strings_in_every_spec_field(tmp_path, field):
    path = tmp_path / "inj_test.yaml"
    for value in HOSTILE:
        data = _set(_file_spec(), field, value)
        if field == "variants.1.name":  # the arm keeps its role in the uplift block
            data = _set(data, "uplift.arms.0", value)
        text = yaml.safe_dump(data, allow_unicode=True)
        if field in FREE_TEXT or value in VALID_ANYWAY.get(field, ()):
            spec = parse_spec(text, path)
            stored = spec.model_dump(mode="json")
            for part in field.split("."):
                stored = stored[int(part)] if isinstance(stored, list) else stored[part]
            assert stored == value  # kept exactly, to be stored as a literal
        else:
            with pytest.raises(SpecError) as err:
                parse_spec(text, path)
            message = str(err.value)
            assert message.startswith(f"{path}: {field.split('.')[0]}"), message


# --------------------------------------------------------------------------- through the database
LABEL = "x'; drop table raw.events; --"


def test_hostile_labels_unit_ids_and_headers_are_stored_as_literals(fresh_db, tmp_path, experiments_dir):
    """One spec with hostile text in every free-text field and as the treatment label, a file
    whose unit ids, variant labels and undeclared header columns are hostile: the whole analysis
    runs, every value comes back exactly as written, and every table is still there."""
    folder = experiments_dir
    n = 400
    units = [HOSTILE[i % len(HOSTILE)] + f"#{i}" for i in range(n)]
    frame = pl.DataFrame({
        "uid": units, "arm": ["control" if i % 2 else LABEL for i in range(n)],
        "y": [float(i % 7) for i in range(n)], "x": [float(i % 5) for i in range(n)],
        **{h: ["v"] * n for h in HOSTILE[:5]},  # undeclared columns with hostile names: never read
    })
    frame.write_csv(folder / "inj_test.csv")
    spec = {
        "id": "inj_test", "name": HOSTILE[1], "hypothesis": HOSTILE[3], "owner": HOSTILE[4],
        "variants": [{"name": "control", "allocation": 0.5}, {"name": LABEL, "allocation": 0.5}],
        "baseline": "control", "primary_metric": "y", "covariates": ["x"],
        "source": {"kind": "file", "path": "inj_test.csv", "unit_column": "uid", "variant_column": "arm",
                   "columns": {"uid": "string", "arm": "string", "y": "float", "x": "float"}, "outcomes": ["y"],
                   "sha256": hashlib.sha256((folder / "inj_test.csv").read_bytes()).hexdigest()},
    }
    (folder / "inj_test.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
    with db.connect(fresh_db) as conn:
        tables_before = {r[0] for r in conn.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_schema in ('raw', 'staging', 'marts', 'gates', 'results', 'truth')").fetchall()}

    assert materialize(fresh_db, [["raw", "experiment_specs"], ["raw", "user_files"]], checks=False).success
    analysis = [["gates", "srm"], ["gates", "contamination"], ["gates", "data_integrity"], ["gates", "balance"],
                ["results", "sufficient_stats"], ["results", "effects"], ["results", "power"]]
    assert materialize(fresh_db, analysis, "inj_test").success
    assert materialize(fresh_db, [["results", "decisions"], ["reports", "experiment_reports"]]).success

    with db.connect(fresh_db) as conn:
        tables_after = {r[0] for r in conn.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_schema in ('raw', 'staging', 'marts', 'gates', 'results', 'truth')").fetchall()}
        stored_units = [r[0] for r in conn.execute("select unit_id from raw.src_inj_test order by unit_id").fetchall()]
        labels = {r[0] for r in conn.execute("select distinct variant from raw.src_inj_test").fetchall()}
        columns = [r[0] for r in conn.execute(
            "select column_name from information_schema.columns where table_schema = 'raw' "
            "and table_name = 'src_inj_test' order by ordinal_position").fetchall()]
        spec_row = conn.execute("select spec->>'name', spec->>'hypothesis', spec->>'owner', spec->'variants'->1->>'name' "
                                "from raw.experiment_specs").fetchone()
        effect_labels = {r[0] for r in conn.execute("select variant from results.effects").fetchall()}
        decision = conn.execute("select decision, reasons::text from results.decisions").fetchone()
    assert tables_after == tables_before | {"raw.src_inj_test"}  # nothing dropped, one table added
    assert stored_units == sorted(units) and labels == {"control", LABEL}
    assert sorted(columns) == ["arm", "uid", "unit_id", "variant", "x", "y"]  # hostile header columns never reached SQL
    assert spec_row == (HOSTILE[1], HOSTILE[3], HOSTILE[4], LABEL)
    assert effect_labels == {LABEL}
    assert decision[0] in ("SHIP", "HOLD", "ROLLBACK", "KEEP RUNNING")
