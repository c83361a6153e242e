"""Every kind of bad user file, as CSV and as Parquet, gets an error naming the file, the column
and the row; and through the Dagster asset a bad file leaves the database exactly as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest
import yaml

from liftlab import db
from liftlab.ingest.files import FileSourceError, read_user_file
from liftlab.specs import parse_spec
from tests.conftest import create_scratch_database, drop_database

COLUMNS = {"uid": "string", "arm": "string", "y": "float", "x": "integer", "flag": "boolean"}


def write_spec(folder: Path, data: bytes, fmt: str, *, sha256: str | None = None, exp_id: str = "user_test") -> Path:
    data_path = folder / f"{exp_id}.{fmt}"
    data_path.write_bytes(data)
    spec = {
        "id": exp_id, "hypothesis": "h", "baseline": "A", "primary_metric": "y",
        "variants": [{"name": "A", "allocation": 0.5}, {"name": "B", "allocation": 0.5}],
        "source": {"kind": "file", "path": data_path.name, "format": fmt, "unit_column": "uid", "variant_column": "arm",
                   "columns": COLUMNS, "outcomes": ["y"], "sha256": sha256 or hashlib.sha256(data).hexdigest()},
    }
    spec_path = folder / f"{exp_id}.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    return spec_path


def as_bytes(frame: pl.DataFrame, fmt: str) -> bytes:
    import io

    buf = io.BytesIO()
    frame.write_csv(buf) if fmt == "csv" else frame.write_parquet(buf)
    return buf.getvalue()


GOOD = pl.DataFrame({"uid": ["u1", "u2", "u3"], "arm": ["A", "B", "A"], "y": [1.0, 2.0, 3.0], "x": [1, 2, 3],
                     "flag": [True, False, True]})

# name → (frame transform, expected fragments of the message)
CASES = {
    "missing_column": (lambda f: f.drop("x"), ["missing declared column(s) ['x']"]),
    "wrong_type_text": (lambda f: f.with_columns(pl.Series("y", ["1.0", "2.0", "abc"])),
                        ["column 'y', row 3 (line 4): value 'abc' is not float"]),
    # typed Parquet float 2.5 must not be truncated to 2 (CSV text '1.0' is already not an integer)
    "wrong_type_fraction": (lambda f: f.with_columns(pl.Series("x", [1.0, 2.5, 3.0])), ["column 'x', row", "is not integer"]),
    "wrong_type_boolean": (lambda f: f.with_columns(pl.Series("flag", [1, 0, 7])),
                           ["column 'flag', row 3 (line 4)", "is not boolean"]),
    "unknown_variant": (lambda f: f.with_columns(pl.Series("arm", ["A", "C", "B"])),
                        ["column 'arm', row 2 (line 3): variant 'C' is not one of the declared variants ['A', 'B']"]),
    "null_variant": (lambda f: f.with_columns(pl.Series("arm", ["A", None, "B"])),
                     ["column 'arm', row 2 (line 3): variant None"]),
    "duplicate_unit": (lambda f: f.with_columns(pl.Series("uid", ["u1", "u2", "u1"])),
                       ["column 'uid', row 1: unit id 'u1' is null or duplicated"]),
    "no_rows": (lambda f: f.clear(), ["header but no rows"]),
}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_file_is_named_with_column_and_row(tmp_path, fmt, case):
    transform, fragments = CASES[case]
    spec_path = write_spec(tmp_path, as_bytes(transform(GOOD), fmt), fmt)
    spec = parse_spec(spec_path.read_text(), spec_path)
    with pytest.raises(FileSourceError) as err:
        read_user_file(spec, spec_path)
    message = str(err.value)
    assert str(tmp_path / f"user_test.{fmt}") in message
    for fragment in fragments:
        assert fragment in message
    if case == "wrong_type_fraction" and fmt == "parquet":
        assert "column 'x', row 2 (line 3): value 2.5 is not integer" in message


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_empty_file_wrong_checksum_and_corrupt_bytes(tmp_path, fmt):
    path = tmp_path / f"user_test.{fmt}"
    for data, sha, fragment in [
        (b"", None, "the file is empty" if fmt == "csv" else "cannot read as Parquet"),
        (as_bytes(GOOD, fmt), "0" * 64, f"checksum mismatch: declared sha256 {'0' * 64}, file has"),
        (b"PAR1 not really parquet" if fmt == "parquet" else b'uid,arm,y,x,flag\n"u1,A,1.0,1,true\n', None,
         "cannot read as Parquet" if fmt == "parquet" else "cannot parse as CSV"),
    ]:
        spec_path = write_spec(tmp_path, data, fmt, sha256=sha)
        with pytest.raises(FileSourceError) as err:
            read_user_file(parse_spec(spec_path.read_text(), spec_path), spec_path)
        assert str(path) in str(err.value) and fragment in str(err.value)


def test_non_utf8_byte_names_line_and_offset(tmp_path):
    data = as_bytes(GOOD, "csv").replace(b"u3", b"u\xe93")
    spec_path = write_spec(tmp_path, data, "csv")
    with pytest.raises(FileSourceError) as err:
        read_user_file(parse_spec(spec_path.read_text(), spec_path), spec_path)
    offset = data.index(b"\xe9")
    assert f"{tmp_path / 'user_test.csv'}: line 4: not valid UTF-8 (byte 0xe9 at offset {offset})" == str(err.value)


@pytest.fixture(scope="module")
def files_db(server):
    info = create_scratch_database(server, prefix="liftlab_trust_files")
    yield info
    drop_database(info)


def _materialize_user_files(info: db.ConnInfo, folder: Path, monkeypatch):
    """The registry and every file experiment's units (one run per experiment partition)."""
    from tests.reliability.helpers import load_files

    monkeypatch.setenv("LIFTLAB_EXPERIMENTS_DIR", str(folder))
    return load_files(info, checks=False)


BAD_THROUGH_ASSET = ["wrong_type_text", "unknown_variant", "missing_column", "checksum", "non_utf8", "empty"]


def _state(info: db.ConnInfo, exp_id: str):
    with db.connect(info) as conn:
        table = conn.execute(f"select unit_id, variant, y, x, flag from raw.src_{exp_id} order by unit_id").fetchall()
        log = conn.execute("select file, received, accepted, quarantined from raw.load_log where experiment_id = %s "
                           "order by loaded_at", (exp_id,)).fetchall()
    return table, log


def test_bad_files_through_the_asset_leave_the_database_as_it_was(files_db, tmp_path, monkeypatch):
    """One good load of seven files, then six of them replaced by bad versions and one by a new
    good version: each bad file's run fails naming it, the six tables and their load logs are
    exactly as before, and the good file is loaded (one bad file does not block the others)."""
    ids = [f"user_{case}" for case in BAD_THROUGH_ASSET] + ["user_fine"]
    data = as_bytes(GOOD, "csv")
    for exp_id in ids:
        write_spec(tmp_path, data, "csv", exp_id=exp_id)
    assert _materialize_user_files(files_db, tmp_path, monkeypatch).success
    before = {exp_id: _state(files_db, exp_id) for exp_id in ids}
    assert all(len(t) == 3 and log[-1][1:] == (3, 3, 0) for t, log in before.values())  # received = accepted + quarantined

    for case in BAD_THROUGH_ASSET:
        exp_id = f"user_{case}"
        if case == "checksum":
            write_spec(tmp_path, as_bytes(GOOD.head(2), "csv"), "csv", sha256=hashlib.sha256(data).hexdigest(), exp_id=exp_id)
        elif case == "non_utf8":
            write_spec(tmp_path, data.replace(b"u2", b"u\xff2"), "csv", exp_id=exp_id)
        elif case == "empty":
            write_spec(tmp_path, b"", "csv", exp_id=exp_id)
        else:
            write_spec(tmp_path, as_bytes(CASES[case][0](GOOD), "csv"), "csv", exp_id=exp_id)
    write_spec(tmp_path, as_bytes(GOOD.head(2), "csv"), "csv", exp_id="user_fine")
    result = _materialize_user_files(files_db, tmp_path, monkeypatch)
    assert not result.success
    failed = [r for r in result.results if not r.success]
    assert len(failed) == len(BAD_THROUGH_ASSET)  # one failed run per bad file, the good one loaded
    message = "\n".join(str(next(e for e in r.all_events if e.is_step_failure).step_failure_data.user_failure_data.description)
                        for r in failed)
    for case in BAD_THROUGH_ASSET:
        assert str(tmp_path / f"user_{case}.csv") in message, case
        assert _state(files_db, f"user_{case}") == before[f"user_{case}"], case
    for fragment in ("column 'y', row 3", "variant 'C'", "missing declared column(s) ['x']", "checksum mismatch",
                     "not valid UTF-8", "the file is empty"):
        assert fragment in message
    table, log = _state(files_db, "user_fine")
    assert len(table) == 2 and log[-1][1:] == (2, 2, 0)
