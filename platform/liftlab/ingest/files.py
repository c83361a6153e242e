"""User-declared unit-level files (CSV or Parquet) → ``raw.src_<experiment_id>``.

A spec declares the file, its checksum, its columns with their types, the variant column and
the outcomes. The loader checks all of that before touching the database and raises
:class:`FileSourceError` naming the file, the column and the row of the first problem; the
table is replaced in one transaction, so a bad file leaves the database as it was.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import psycopg

from liftlab.db import replace_table
from liftlab.specs import ExperimentSpec, FileSource

_POLARS_TYPES = {"integer": pl.Int64, "float": pl.Float64, "string": pl.Utf8, "boolean": pl.Boolean}
_SQL_TYPES = {"integer": "bigint", "float": "double precision", "string": "text", "boolean": "boolean"}


class FileSourceError(ValueError):
    """A declared file does not match its declaration; the message says where."""


@dataclass(frozen=True)
class UserFile:
    experiment_id: str
    path: Path
    sha256: str
    frame: pl.DataFrame  # unit_id, variant, then every declared column, typed

    @property
    def table(self) -> str:
        return f"raw.src_{self.experiment_id}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_csv_as_text(path: Path, data: bytes) -> pl.DataFrame:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileSourceError(f"{path}: line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    if not text.strip():
        raise FileSourceError(f"{path}: the file is empty")
    try:
        header = next(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    except csv.Error as exc:
        raise FileSourceError(f"{path}: cannot parse as CSV: header: {exc}") from None
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        # polars would rename the second copy and silently read the first: refuse the ambiguity
        raise FileSourceError(f"{path}: line 1: column name(s) {repeated} appear more than once in the header")
    try:
        return pl.read_csv(text.encode("utf-8"), infer_schema=False, eol_char="\n")
    except pl.exceptions.PolarsError as exc:
        raise FileSourceError(f"{path}: cannot parse as CSV: {str(exc).splitlines()[0]}") from None


def _cast_checked(path: Path, frame: pl.DataFrame, source: FileSource) -> pl.DataFrame:
    """Cast declared columns; the first value that does not fit names its column and row."""
    casts = []
    for column, kind in source.columns.items():
        col = pl.col(column)
        if frame.schema[column] == pl.Utf8:
            col = col.str.strip_chars()
            col = pl.when(col == "").then(None).otherwise(col)
            if kind == "boolean":
                col = col.str.to_lowercase().replace_strict(
                    {"true": "true", "1": "true", "t": "true", "false": "false", "0": "false", "f": "false"},
                    default=None,
                ) == "true"
        casts.append(col.cast(_POLARS_TYPES[kind], strict=False).alias(column))
    typed = frame.select(casts)
    for column in source.columns:
        lost = typed[column].is_null() & frame[column].is_not_null()
        if frame.schema[column] == pl.Utf8:
            lost = lost & (frame[column].str.strip_chars() != "")
        elif frame.schema[column].is_float() and source.columns[column] == "integer":
            # a typed (Parquet) float column cast to integer truncates silently: 2.5 → 2
            lost = lost | (frame[column].is_not_null() & (frame[column] != frame[column].floor())).fill_null(False)
        elif frame.schema[column].is_numeric() and source.columns[column] == "boolean":
            lost = lost | (frame[column].is_not_null() & ~frame[column].is_in([0, 1])).fill_null(False)
        if lost.any():
            index = int(lost.arg_true()[0])
            value = frame[column][index]
            raise FileSourceError(
                f"{path}: column {column!r}, row {index + 1} (line {index + 2}): value {value!r} "
                f"is not {source.columns[column]}"
            )
        _check_values(path, frame[column], typed[column], column, source.columns[column])
    return typed


#: Largest |value| of a float column: the statistics square the values, and the Welch degrees of
#: freedom square the variances again (fourth powers), so 1e75⁴ = 1e300 still fits a double.
MAX_ABS_FLOAT = 1e75


def _check_values(path: Path, raw: pl.Series, typed: pl.Series, column: str, kind: str) -> None:
    """Refuse values that would not be analysed correctly: NaN or ±inf (an empty cell is the
    way to say "missing"), numbers so large that the statistics overflow double precision, and
    NUL characters (Postgres cannot store them)."""
    def fail(mask: pl.Series, problem: str) -> None:
        index = int(mask.arg_true()[0])
        raise FileSourceError(
            f"{path}: column {column!r}, row {index + 1} (line {index + 2}): value {raw[index]!r} {problem}"
        )

    if kind == "float":
        bad = (typed.is_nan() | typed.is_infinite()).fill_null(False)
        if bad.any():
            fail(bad, "is not a finite number (leave the cell empty for a missing value)")
        huge = (typed.abs() > MAX_ABS_FLOAT).fill_null(False)
        if huge.any():
            fail(huge, f"is too large to analyse (|value| > {MAX_ABS_FLOAT:g} overflows the statistics in double "
                       "precision); rescale the column")
    if kind == "string":
        bad = typed.str.contains("\x00", literal=True).fill_null(False)
        if bad.any():
            fail(bad, "contains a NUL character, which Postgres cannot store")


def read_user_file(spec: ExperimentSpec, spec_path: Path) -> UserFile:
    """Read and check the file a spec declares; nothing is written."""
    source = spec.source
    if not isinstance(source, FileSource):
        raise TypeError(f"{spec.id} does not declare a file source")
    path = source.resolved_path(spec_path)
    if not path.is_file():
        raise FileSourceError(f"{path}: file not found (declared by {spec_path}: source.path)")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if source.sha256 and digest != source.sha256:
        raise FileSourceError(f"{path}: checksum mismatch: declared sha256 {source.sha256}, file has {digest}")
    if source.format == "csv":
        frame = _read_csv_as_text(path, data)
    else:
        try:
            frame = pl.read_parquet(data)
        except pl.exceptions.PolarsError as exc:
            raise FileSourceError(f"{path}: cannot read as Parquet: {str(exc).splitlines()[0]}") from None
    missing = [c for c in source.columns if c not in frame.columns]
    if missing:
        raise FileSourceError(f"{path}: missing declared column(s) {missing}; the file has {frame.columns}")
    if frame.height == 0:
        raise FileSourceError(f"{path}: the file has a header but no rows")
    typed = _cast_checked(path, frame.select(list(source.columns)), source)

    variant = typed[source.variant_column]
    declared = set(spec.allocation)
    unknown = variant.is_null() | ~variant.is_in(list(declared))
    if unknown.any():
        index = int(unknown.arg_true()[0])
        raise FileSourceError(
            f"{path}: column {source.variant_column!r}, row {index + 1} (line {index + 2}): variant "
            f"{variant[index]!r} is not one of the declared variants {sorted(declared)}"
        )
    if source.unit_column:
        unit = typed[source.unit_column].cast(pl.Utf8)
        duplicated = unit.is_duplicated()
        if unit.is_null().any() or duplicated.any():
            index = int((unit.is_null() | duplicated).arg_true()[0])
            raise FileSourceError(
                f"{path}: column {source.unit_column!r}, row {index + 1}: unit id {unit[index]!r} is null or duplicated"
            )
    else:
        unit = pl.Series("unit_id", range(1, typed.height + 1), dtype=pl.Int64).cast(pl.Utf8)
    if unit.str.contains("\x00", literal=True).any():
        raise FileSourceError(f"{path}: column {source.unit_column!r}: a unit id contains a NUL character")
    # unit_id and variant lead; a unit column itself named unit_id *is* that key (not repeated)
    lead = ["unit_id"] + (["variant"] if source.variant_column != "variant" else [])
    out = typed.with_columns(unit.alias("unit_id"), pl.col(source.variant_column).alias("variant")).select(
        *lead, *[c for c in source.columns if c != "unit_id"]
    )
    return UserFile(experiment_id=spec.id, path=path, sha256=digest, frame=out)


def write_user_file(conn: psycopg.Connection, user_file: UserFile, source: FileSource, run_id: str | None = None) -> int:
    """Replace ``raw.src_<id>`` with the file's rows and log the load, in one transaction."""
    columns = {"unit_id": "text", "variant": "text"}
    columns |= {c: _SQL_TYPES[k] for c, k in source.columns.items() if c not in columns}
    with conn.transaction():
        replace_table(conn, user_file.table, columns, user_file.frame, primary_key="unit_id")
        conn.execute(
            "insert into raw.load_log (source, experiment_id, file, sha256, received, accepted, quarantined, run_id)"
            " values (%s, %s, %s, %s, %s, %s, 0, %s)",
            (f"file:{user_file.experiment_id}", user_file.experiment_id, str(user_file.path), user_file.sha256,
             user_file.frame.height, user_file.frame.height, run_id),
        )
    return user_file.frame.height
