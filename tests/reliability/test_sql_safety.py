"""SQL safety: identifiers from specs match a strict pattern and are quoted with
``psycopg.sql.Identifier``; values are always parameters; hostile strings pushed through every
spec field, file header, variant label and unit id end as a clear spec/file error or as a
literal stored exactly as given — and the database's tables are all still there.
"""

from __future__ import annotations

import ast
import copy
import hashlib

import polars as pl
import psycopg
import pytest
import yaml

from liftlab import db
from liftlab.config import REPO_ROOT
from liftlab.specs import SpecError, parse_spec
from tests.reliability.helpers import load_files, materialize

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
        "id": "inj_test", "name": "n", "hypothesis": "h", "owner": "o", "design": "randomized",
        "variants": [{"name": "control", "allocation": 0.5}, {"name": "treatment", "allocation": 0.5}],
        "baseline": "control", "primary_metric": "y", "primary_direction": "higher_is_better",
        "secondary_metrics": ["z"], "guardrails": [{"metric": "z", "direction": "lower_is_better", "tolerance": 0.1}],
        "covariates": ["x"], "cuped_covariates": {"y": "x"}, "winsorize": {"y": 0.99}, "dimensions": ["seg"],
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
FREE_TEXT = {"name", "hypothesis", "owner", "variants.1.name", "source.path"}
#: Hostile-looking strings that are nonetheless valid for a field: 64 a's is a well-formed sha256
#: (the loader then reports the checksum mismatch).
VALID_ANYWAY = {"source.sha256": {"a" * 64}, "source.assignments.table": {"raw.events"},
                "fact_tables.orders.table": {"raw.events"}}

FIELDS = [
    "id", "name", "hypothesis", "owner", "design", "dimensions.0", "variants.1.name", "baseline", "primary_metric",
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

    assert load_files(fresh_db, checks=False).success
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
    from scipy import stats as sps

    y = frame["y"].to_numpy()
    treated = (frame["arm"] == LABEL).to_numpy()
    assert sps.ttest_ind(y[treated], y[~treated], equal_var=False).pvalue > 0.05  # scipy: nothing significant
    assert decision[0] == "HOLD" and LABEL in decision[1]  # decided like any experiment, the label kept as written


# --------------------------------------------------------------------------- warehouse sources and the catalogue
def _warehouse_spec() -> dict:
    return {
        "id": "inj_wh", "hypothesis": "h", "variants": [{"name": "control", "allocation": 0.5},
                                                         {"name": "treatment", "allocation": 0.5}],
        "baseline": "control", "start_date": "2026-10-01", "end_date": "2026-10-14", "primary_metric": "orders",
        "dimensions": ["country"],
        "source": {"kind": "warehouse", "connection": "TEAM_URL",
                   "assignments": {"table": "shop.assignments", "unit": "user_id", "variant": "variant",
                                   "timestamp": "assigned_at", "where": {"experiment_key": "k"}}},
    }


CATALOGUE = {
    "fact_tables": {"orders": {"table": "shop.orders", "unit": "user_id", "timestamp": "created_at"}},
    "metrics": {"orders": {"fact": "orders", "aggregate": "count", "where": {"status": "paid"}},
                "amount": {"fact": "orders", "aggregate": "sum", "column": "amount"}},
}

#: Keys of a warehouse spec that name a table, column or environment variable: a hostile string
#: is refused there, naming the key.
WAREHOUSE_FIELDS = ["source.connection", "source.assignments.table", "source.assignments.unit",
                    "source.assignments.variant", "source.assignments.timestamp", "source.assignments.where.<key>",
                    "dimensions.0"]
#: Keys of the catalogue that name something: a hostile string makes the entry broken (an
#: experiment using it fails, naming file and key) or the whole file unreadable.
CATALOGUE_FIELDS = ["fact_tables.<key>", "fact_tables.orders.table", "fact_tables.orders.unit",
                    "fact_tables.orders.timestamp", "metrics.<key>", "metrics.amount.column",
                    "metrics.orders.where.<key>", "metrics.orders.fact"]


@pytest.mark.parametrize("field", WAREHOUSE_FIELDS)
def test_hostile_strings_in_every_warehouse_key_are_refused(tmp_path, field):
    from liftlab.catalogue import Catalogue, FactTable, Metric

    catalogue = Catalogue(fact_tables={"orders": FactTable(**CATALOGUE["fact_tables"]["orders"])},
                          metrics={k: Metric(**v) for k, v in CATALOGUE["metrics"].items()})
    path = tmp_path / "inj_wh.yaml"
    assert parse_spec(yaml.safe_dump(_warehouse_spec()), path, catalogue).id == "inj_wh"
    for value in HOSTILE:
        text = yaml.safe_dump(_set(_warehouse_spec(), field, value), allow_unicode=True)
        if value in VALID_ANYWAY.get(field, ()):
            assert parse_spec(text, path, catalogue)  # a well-formed table name, quoted as an identifier
            continue
        with pytest.raises(SpecError) as err:
            parse_spec(text, path, catalogue)
        assert str(err.value).startswith(f"{path}: {field.split('.')[0]}"), (value, str(err.value))


@pytest.mark.parametrize("field", CATALOGUE_FIELDS)
def test_hostile_strings_in_every_catalogue_key_never_reach_sql(tmp_path, field):
    from liftlab.catalogue import CatalogueError, load_catalogue

    for value in HOSTILE:
        (tmp_path / "shop.yaml").write_text(yaml.safe_dump(_set(CATALOGUE, field, value), allow_unicode=True))
        try:
            catalogue = load_catalogue(tmp_path)
        except CatalogueError as exc:  # an unreadable file: named
            assert str(tmp_path / "shop.yaml") in str(exc)
            continue
        if value in VALID_ANYWAY.get(field, ()):
            assert not catalogue.broken  # a well-formed table name, quoted as an identifier
            continue
        assert catalogue.broken, (field, value)  # the entry is kept out, named with its file and key
        assert all(str(tmp_path / "shop.yaml") in problem for problem in catalogue.broken.values())
        with pytest.raises(CatalogueError):
            load_catalogue(tmp_path, strict=True)


def test_hostile_where_values_are_parameters_and_match_literally(server, tmp_path, monkeypatch):
    """Hostile text as the experiment key of the assignments and as a metric's where value: the
    statements run read-only with the values bound as parameters, match the rows that hold exactly
    that text, and leave every table of the team's database as it was."""
    from liftlab.catalogue import load_catalogue
    from liftlab.sources import SourceError, prepare
    from liftlab.specs import LoadedSpec
    from tests.conftest import create_scratch_database, drop_database
    from tests.own_data.helpers import fingerprint

    team = create_scratch_database(server, prefix="team_inj")
    liftlab_db = create_scratch_database(server, prefix="liftlab_inj")
    try:
        with psycopg.connect(team.url()) as conn:
            conn.execute("create schema shop")
            conn.execute("create table shop.assignments (user_id bigint, variant text, assigned_at timestamptz, "
                         "experiment_key text, country text)")
            conn.execute("create table shop.orders (user_id bigint, created_at timestamptz, status text, amount float8)")
            conn.execute("insert into shop.assignments select u, case when u %% 2 = 0 then 'control' else 'treatment' end, "
                         "'2026-10-02 10:00+00', %s, 'DE' from generate_series(1, 40) u", (LABEL,))
            conn.execute("insert into shop.assignments select u, 'control', '2026-10-02 10:00+00', 'other', 'DE' "
                         "from generate_series(41, 60) u")
            conn.execute("insert into shop.orders select u, '2026-10-03 10:00+00', %s, 1 from generate_series(1, 60) u",
                         (HOSTILE[1],))
        before = fingerprint(team)
        spec_data = _set(_warehouse_spec(), "source.assignments.where.experiment_key", LABEL)
        catalogue_data = _set(CATALOGUE, "metrics.orders.where.status", HOSTILE[1])
        (tmp_path / "metrics").mkdir()
        (tmp_path / "metrics" / "shop.yaml").write_text(yaml.safe_dump(catalogue_data, allow_unicode=True))
        catalogue = load_catalogue(tmp_path / "metrics", strict=True)
        path = tmp_path / "inj_wh.yaml"
        spec = parse_spec(yaml.safe_dump(spec_data, allow_unicode=True), path, catalogue)
        monkeypatch.setenv("TEAM_URL", team.url())
        with db.connect(liftlab_db) as conn:
            report = prepare(conn, LoadedSpec(spec, path, "x"))
            conn.commit()
            orders = conn.execute("select sum(orders), count(*) from units.inj_wh").fetchone()
        assert report["units"] == 40 and orders == (40.0, 40)  # exactly the rows holding the hostile texts
        other = _set(spec_data, "source.assignments.where.experiment_key", HOSTILE[3])
        with db.connect(liftlab_db) as conn, pytest.raises(SourceError, match="no units"):
            prepare(conn, LoadedSpec(parse_spec(yaml.safe_dump(other), path, catalogue), path, "x"))
        assert fingerprint(team) == before
    finally:
        drop_database(liftlab_db)
        drop_database(team)
