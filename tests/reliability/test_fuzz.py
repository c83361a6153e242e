"""Fuzzed inputs (hypothesis): experiment specs and user files, from random bytes to
well-formed files with hostile values. Each yields either a correct result or a clear error
(``SpecError`` / ``FileSourceError`` naming the file) — never another exception, never a
partial write.

Database-less where that suffices (spec validation, ``read_user_file``); a real database where
writes matter: a file that fails leaves every table byte-identical, and a file that loads is
stored exactly and analysed like scipy's Welch test on the same numbers.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from psycopg import sql
from scipy import stats as sps

from liftlab import db
from liftlab.config import REPO_ROOT
from liftlab.ingest.files import FileSourceError, read_user_file, write_user_file
from liftlab.specs import IDENTIFIER, SpecError, load_specs, parse_spec
from tests.conftest import create_scratch_database, drop_database
from tests.reliability.helpers import fingerprints

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SHIPPED = {p.name: yaml.safe_load(p.read_text()) for p in sorted((REPO_ROOT / "experiments").glob("*.yaml"))}


# --------------------------------------------------------------------------- specs
def _spec_is_sound(spec) -> None:
    """What every accepted spec guarantees to the code that uses it."""
    import re

    assert re.fullmatch(IDENTIFIER, spec.id)
    assert abs(sum(v.allocation for v in spec.variants) - 1) < 1e-6
    assert spec.baseline in spec.allocation
    if spec.source.kind == "file":
        assert all(re.fullmatch(IDENTIFIER, c) for c in spec.source.columns)
        assert len(f"src_{spec.id}") <= 63
    assert spec.pre_start_date is None or spec.pre_start_date <= spec.start_date
    # what the experiment_specs asset stores: strict JSON (no NaN) that jsonb accepts (no NUL)
    text = json.dumps(spec.model_dump(mode="json"), allow_nan=False)
    assert "\\u0000" not in text


@FAST
@given(data=st.binary(max_size=600))
def test_random_bytes_as_a_spec_file(data):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "fuzz.yaml").write_bytes(data)
        try:
            for item in load_specs(Path(folder)):
                _spec_is_sound(item.spec)
        except SpecError as err:
            assert str(Path(folder) / "fuzz.yaml") in str(err)


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(), st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300),
    st.text(max_size=40), st.sampled_from(["control", "treatment", "y", "x", "revenue", "sessions", "", " ", "\x00"]),
    st.dates(), st.datetimes(timezones=st.timezones()),  # time zones, DST gaps and folds included
)
#: Values of the right kind for most fields (so that many mutated specs are still valid and the
#: invariants of accepted specs get exercised), next to arbitrary ones.
PLAUSIBLE = st.one_of(st.floats(min_value=0.001, max_value=0.999), st.integers(min_value=0, max_value=400),
                      st.sampled_from(["revenue", "sessions", "converted", "pre_revenue", "control", "treatment",
                                       "higher_is_better", "lower_is_better", "observational", "2026-09-01"]))
VALUES = st.one_of(PLAUSIBLE, PLAUSIBLE, SCALARS, st.lists(SCALARS, max_size=3),
                   st.dictionaries(st.text(max_size=8), SCALARS, max_size=2))

FIELD_PATHS = [
    "id", "name", "hypothesis", "design", "baseline", "start_date", "end_date", "pre_period_days", "primary_metric",
    "primary_direction", "secondary_metrics", "secondary_metrics.0", "guardrails", "guardrails.0.metric",
    "guardrails.0.tolerance", "covariates.0", "alpha", "power", "mde", "practical_threshold", "cuped",
    "cuped_covariates", "winsorize", "sequential_tuning", "prior_sd", "variants", "variants.0.name",
    "variants.0.allocation", "variants.1.allocation", "source", "source.kind", "source.path", "source.sha256",
    "source.unit_column", "source.variant_column", "source.columns", "source.outcomes", "uplift",
    "uplift.outcomes", "uplift.seed", "uplift.n_bootstrap", "uplift.folds", "uplift.repeats", "uplift.cost_per_contact",
    "uplift.value_per_conversion", "uplift.learners", "ratio_metrics", "colour",
]


def _mutate(spec: dict, path: str, value) -> dict:
    spec = json.loads(json.dumps(spec, default=str))
    *parents, last = path.split(".")
    node = spec
    for part in parents:
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):  # the path no longer exists (an earlier mutation)
                return spec
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            return spec
    if isinstance(node, list):
        if last.isdigit() and int(last) < len(node):
            node[int(last)] = value
    else:
        node[last] = value
    return spec


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(sorted(SHIPPED)), mutations=st.lists(st.tuples(st.sampled_from(FIELD_PATHS), VALUES),
                                                                   min_size=1, max_size=2))
def test_mutated_specs_are_valid_or_name_file_and_key(name, mutations):
    data = SHIPPED[name]
    for path, value in mutations:
        data = _mutate(data, path, value)
    try:
        text = yaml.safe_dump(data, allow_unicode=True)
    except yaml.YAMLError:
        return
    path = Path("/specs") / name
    try:
        spec = parse_spec(text, path)
    except SpecError as err:
        event("refused")
        assert str(err).startswith(f"{path}: ")
        return
    event("accepted")
    _spec_is_sound(spec)


def test_deeply_nested_yaml_is_a_spec_error():
    with pytest.raises(SpecError, match="nested too deeply"):
        parse_spec("[" * 5000 + "]" * 5000, Path("deep.yaml"))


# --------------------------------------------------------------------------- user files
def _file_spec(folder: Path, data: bytes, fmt: str = "csv") -> tuple:
    """A spec declaring ``data`` (uid, arm, y float, x integer), written to ``folder``."""
    (folder / f"fz.{fmt}").write_bytes(data)
    spec = {
        "id": "fz", "hypothesis": "h", "baseline": "control", "primary_metric": "y",
        "variants": [{"name": "control", "allocation": 0.5}, {"name": "treatment", "allocation": 0.5}],
        "source": {"kind": "file", "path": f"fz.{fmt}", "format": fmt, "unit_column": "uid", "variant_column": "arm",
                   "columns": {"uid": "string", "arm": "string", "y": "float", "x": "integer"}, "outcomes": ["y"],
                   "sha256": hashlib.sha256(data).hexdigest()},
    }
    path = folder / "fz.yaml"
    path.write_text(yaml.safe_dump(spec))
    return parse_spec(path.read_text(), path), path


def _read(data: bytes, fmt: str = "csv"):
    with tempfile.TemporaryDirectory() as folder:
        spec, path = _file_spec(Path(folder), data, fmt)
        try:
            return spec, read_user_file(spec, path), None
        except FileSourceError as err:
            assert str(Path(folder) / f"fz.{fmt}") in str(err)  # the message names the file
            return spec, None, err


def _file_is_sound(user_file) -> None:
    frame = user_file.frame
    assert frame["unit_id"].null_count() == 0 and frame["unit_id"].n_unique() == frame.height
    assert set(frame["variant"].to_list()) <= {"control", "treatment"}
    y = frame["y"].drop_nulls()
    assert y.is_finite().all() and (y.abs() <= 1e75).all()
    for column in ("unit_id", "variant", "uid", "arm"):
        assert not frame[column].str.contains("\x00", literal=True).any()


@FAST
@given(data=st.binary(max_size=800), fmt=st.sampled_from(["csv", "parquet"]))
def test_random_bytes_as_a_user_file(data, fmt):
    _, user_file, _ = _read(data, fmt)
    if user_file is not None:
        _file_is_sound(user_file)


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
#: Clean cells: what a well-formed file holds (any unicode unit id, huge-but-finite numbers)...
CLEAN_ROW = st.tuples(TEXT, st.sampled_from(["control", "treatment"]),
                      st.one_of(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e75, max_value=1e75),
                                st.floats(min_value=-1e6, max_value=1e6), st.just("")),
                      st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.just("")))
#: ... and poisons, each put in one cell: hostile or duplicate ids, bad labels, NaN/inf/too large/
#: unparsable numbers, integers beyond 64 bits, NUL characters.
POISON = st.tuples(st.integers(min_value=0, max_value=3), st.sampled_from([
    "", " ", "\x00", "u\x00", "x'; drop table raw.events; --", "Control", " treatment", "nan", "-inf", "Infinity",
    "1e400", "1e76", "1,5", "abc", "2.5", "0x10", str(2**70), "DUPLICATE"]))
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"])


def _poisoned(rows: list[tuple], poisons: list[tuple]) -> list[tuple]:
    rows = [list(r) for r in rows]
    for i, (column, value) in enumerate(poisons):
        if rows:
            row = rows[(i * 7) % len(rows)]
            row[column] = rows[0][0] if value == "DUPLICATE" and len(rows) > 1 else value
    return [tuple(r) for r in rows]


def _csv(rows, header=("uid", "arm", "y", "x"), encoding="utf-8", newline="\n") -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=newline)
    writer.writerow(header)
    writer.writerows([tuple(str(v) for v in row) for row in rows])
    return buf.getvalue().encode(encoding, errors="replace")


@FAST
@given(rows=st.lists(CLEAN_ROW, max_size=25, unique_by=lambda r: r[0].strip()), poisons=st.lists(POISON, max_size=2),
       encoding=ENCODINGS, newline=st.sampled_from(["\n", "\r\n"]),
       header=st.sampled_from([("uid", "arm", "y", "x")] * 4 + [("uid", "arm", "y", "y"), ("arm", "uid", "x", "y", "extra"),
                               ("uid", "arm", "y"), ("UID", "arm", "y", "x")]))
def test_structured_user_files_load_exactly_or_fail_clearly(rows, poisons, encoding, newline, header):
    rows = _poisoned(rows, poisons)
    rows = [row + ("e",) if len(header) == 5 else row[: len(header)] for row in rows]
    data = _csv(rows, header, encoding, newline)
    _, user_file, err = _read(data)
    event("loaded" if user_file is not None else "refused")
    if user_file is None:
        return
    _file_is_sound(user_file)
    assert user_file.frame.height == len(rows)  # no row lost or invented
    stored = dict(zip(user_file.frame["unit_id"], user_file.frame["y"]))
    for row in rows:  # every value as written (floats where Python and the loader agree)
        cells = dict(zip(header, row))  # the loader finds columns by name, whatever their order
        unit, y = cells["uid"], cells["y"]
        try:
            expected = float(str(y).strip())
        except ValueError:
            continue
        # the file's bytes as the loader reads them, UTF-8 ('?' for Ā written in latin-1; latin-1's
        # 'Â\x80' is the UTF-8 for '\x80'): a file that decodes as UTF-8 is read as UTF-8
        codec = "utf-8" if encoding == "utf-8-sig" else encoding  # the BOM starts the file, not each value
        written = str(unit).encode(codec, errors="replace").decode("utf-8")
        got = stored[pl.Series([written]).str.strip_chars()[0]]
        assert (got is None and str(y).strip() == "") or got == pytest.approx(expected, rel=1e-15, abs=0)


# --------------------------------------------------------------------------- through the database
@pytest.fixture(scope="module")
def fuzz_db(server):
    info = create_scratch_database(server, prefix="liftlab_fuzz")
    yield info
    drop_database(info)


NUMBERS = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False).map(lambda v: round(v, 3))
DB_ROWS = st.lists(st.tuples(st.sampled_from(["control", "treatment"]), st.one_of(NUMBERS, NUMBERS, NUMBERS, st.just("")),
                             st.integers(min_value=-5, max_value=5)), max_size=30).map(
    lambda rows: [(f"u{i}", *row) for i, row in enumerate(rows)])  # one unit per row: a single unit, empty arms...


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=DB_ROWS, poisons=st.lists(POISON, max_size=1))
def test_user_files_in_the_database_never_partial_and_analysed_like_scipy(fuzz_db, rows, poisons):
    """Random small files (empty arms, a single unit, duplicate units, NaN/inf/huge values): a
    failing file leaves every table byte-identical; a loaded one is stored exactly and its
    Welch test equals scipy's on the same numbers (NaN where scipy's is undefined)."""
    from liftlab.defs.gates import _srm
    from liftlab.experiment_stats import daily_statistics, experiment_effects, unit_columns
    from liftlab.units import analysis_frame

    rows = _poisoned(rows, poisons)
    before = fingerprints(fuzz_db, ["raw.load_log"] + (["raw.src_fz"] if _exists(fuzz_db) else []))
    with tempfile.TemporaryDirectory() as folder:
        spec, path = _file_spec(Path(folder), _csv(rows))
        try:
            user_file = read_user_file(spec, path)
        except FileSourceError:
            event("refused: database unchanged")
            assert fingerprints(fuzz_db, list(before)) == before
            return
        with db.connect(fuzz_db) as conn:
            write_user_file(conn, user_file, spec.source, run_id="fuzz")
            conn.commit()
            stored = db.read_frame(conn, "select unit_id, variant, y from raw.src_fz order by unit_id")
            units = analysis_frame(conn, spec, unit_columns(spec))
            gate, _ = _srm(conn, spec)
    assert stored.height == len(rows)
    assert stored.sort("unit_id")["y"].to_list() == user_file.frame.sort("unit_id")["y"].to_list()
    if not {"control", "treatment"} <= {a.strip() for _, a, _, _ in rows}:  # cells are read stripped
        assert gate.status == "FAIL" and "no units in arm(s)" in gate.reason  # halted, with the reason
        return
    effects = experiment_effects(daily_statistics(units, spec), spec)
    welch = effects.filter(pl.col("method") == "welch_t")
    # cells are read stripped: a blank one (empty or whitespace only) is a missing value
    groups = {arm: np.array([float(y) for _, a, y, _ in rows if a.strip() == arm and str(y).strip() != ""])
              for arm in ("control", "treatment")}
    if min(len(v) for v in groups.values()) == 0:  # units, but no outcome values in an arm
        assert welch["p_value"].is_nan().all() and welch["n_variant"].min() * welch["n_baseline"].min() == 0
        return
    row = welch.row(0, named=True)
    assert row["abs_effect"] == pytest.approx(groups["treatment"].mean() - groups["control"].mean(), abs=1e-9)
    reference = sps.ttest_ind(groups["treatment"], groups["control"], equal_var=False)
    spread = max(float(np.var(v)) for v in groups.values())
    event("compared with scipy")
    assume(spread > 1e-6)  # one-pass moments lose precision on (near-)constant data: see docs/reliability.md
    if math.isnan(reference.pvalue):
        assert math.isnan(row["p_value"])
    else:
        assert row["p_value"] == pytest.approx(reference.pvalue, rel=1e-6, abs=1e-9)


def _exists(info) -> bool:
    with db.connect(info) as conn:
        return conn.execute("select to_regclass('raw.src_fz') is not null").fetchone()[0]


# --------------------------------------------------------------------------- time zones
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(instants=st.lists(st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2040, 1, 1),
                                      timezones=st.timezones()), min_size=1, max_size=20),
       frame_zone=st.sampled_from([None, "UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
       server_zone=st.sampled_from(["UTC", "Europe/Berlin", "America/Sao_Paulo", "Pacific/Chatham", "Asia/Kolkata"]))
def test_event_timestamps_keep_their_instant_whatever_the_zones(fuzz_db, instants, frame_zone, server_zone):
    """Event timestamps written in any zone (DST gaps and folds included), or naive (UTC by the
    data contract), loaded on a server whose TimeZone is something else, keep their
    instant and their UTC day — the day the marts and gates group by."""
    from liftlab.ingest.loaders import load_batch
    from liftlab.ingest.validate import EVENT_RULES

    utc = [t.astimezone(dt.timezone.utc) for t in instants]
    column = pl.Series("event_ts", utc, dtype=pl.Datetime("us", "UTC"))
    column = column.dt.replace_time_zone(None) if frame_zone is None else column.dt.convert_time_zone(frame_zone)
    frame = pl.DataFrame({"event_id": range(len(utc)), "user_id": [1] * len(utc)}).with_columns(
        column, pl.lit("session").alias("event_type"), pl.lit(1.0).alias("value"))
    with db.connect(fuzz_db, autocommit=True) as admin:  # the server's default TimeZone for this database
        admin.execute(sql.SQL("alter database {} set timezone = {}").format(
            sql.Identifier(fuzz_db.dbname), sql.Literal(server_zone)))
    from liftlab.synth.tables import WORLD_DDL

    with db.connect(fuzz_db) as conn:
        conn.execute(WORLD_DDL)  # the world's tables exist where the demo is loaded
        load_batch(conn, source="fuzz:events", table="raw.events", frame=frame, rules=EVENT_RULES, run_id="fuzz")
        conn.commit()
        got = conn.execute("select event_ts, (event_ts at time zone 'UTC')::date from raw.events order by event_id").fetchall()
    assert [g[0] for g in got] == utc
    assert [g[1] for g in got] == [t.date() for t in utc]
