"""User-declared files: Hillstrom loads; every bad file gets an error naming file, column and row.

A bad file is rejected before anything is written, so the database keeps its previous state.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest
import yaml

from liftlab.config import REPO_ROOT
from liftlab.ingest.files import FileSourceError, read_user_file, write_user_file
from liftlab.specs import parse_spec

HILLSTROM_SPEC = REPO_ROOT / "experiments" / "hillstrom.yaml"


def spec_for(tmp_path: Path, csv_text: bytes | str, *, sha: bool = True, fmt: str = "csv", **source_changes):
    data_path = tmp_path / f"data.{fmt}"
    if isinstance(csv_text, str):
        csv_text = csv_text.encode()
    data_path.write_bytes(csv_text)
    spec = {
        "id": "user_test",
        "hypothesis": "h",
        "variants": [{"name": "A", "allocation": 0.5}, {"name": "B", "allocation": 0.5}],
        "baseline": "A",
        "primary_metric": "y",
        "source": {
            "kind": "file", "path": data_path.name, "format": fmt,
            "variant_column": "arm", "columns": {"arm": "string", "y": "float", "x": "integer"}, "outcomes": ["y"],
            **({"sha256": hashlib.sha256(csv_text).hexdigest()} if sha else {}),
            **source_changes,
        },
    }
    spec_path = tmp_path / "user_test.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    return parse_spec(spec_path.read_text(), spec_path), spec_path


def test_hillstrom_reads_with_declared_types():
    spec = parse_spec(HILLSTROM_SPEC.read_text(), HILLSTROM_SPEC)
    user_file = read_user_file(spec, HILLSTROM_SPEC)
    assert user_file.frame.height == 64_000
    assert user_file.frame["unit_id"].n_unique() == 64_000
    counts = dict(user_file.frame.group_by("variant").len().iter_rows())
    assert counts == {"Mens E-Mail": 21_307, "Womens E-Mail": 21_387, "No E-Mail": 21_306}
    assert user_file.frame.schema["spend"] == pl.Float64


@pytest.mark.parametrize(
    ("content", "kwargs", "expected"),
    [
        ("arm,y\nA,1.0\n", {}, "missing declared column(s) ['x']"),
        ("arm,y,x\nA,1.0,1\nB,abc,2\n", {}, "column 'y', row 2 (line 3): value 'abc' is not float"),
        ("arm,y,x\nA,1.0,1\nB,2.0,2.5\n", {}, "column 'x', row 2 (line 3): value '2.5' is not integer"),
        ("", {}, "the file is empty"),
        ("arm,y,x\n", {}, "header but no rows"),
        ("arm,y,x\nA,1.0,1\nC,2.0,2\n", {}, "column 'arm', row 2 (line 3): variant 'C' is not one of the declared variants"),
        (b"arm,y,x\nA,1.0,1\nB,2.0,2\n\xff\xfe,1,1\n", {}, "line 4: not valid UTF-8"),
    ],
)
def test_bad_files_are_named_precisely(tmp_path, content, kwargs, expected):
    spec, spec_path = spec_for(tmp_path, content, **kwargs)
    with pytest.raises(FileSourceError) as err:
        read_user_file(spec, spec_path)
    assert str(tmp_path / "data.csv") in str(err.value)
    assert expected in str(err.value)


def test_wrong_checksum(tmp_path):
    spec, spec_path = spec_for(tmp_path, "arm,y,x\nA,1.0,1\n", sha=False, sha256="0" * 64)
    with pytest.raises(FileSourceError, match="checksum mismatch"):
        read_user_file(spec, spec_path)


def test_missing_file(tmp_path):
    spec, spec_path = spec_for(tmp_path, "arm,y,x\nA,1.0,1\n")
    (tmp_path / "data.csv").unlink()
    with pytest.raises(FileSourceError, match="file not found"):
        read_user_file(spec, spec_path)


def test_parquet_source(tmp_path):
    frame = pl.DataFrame({"arm": ["A", "B", "A"], "y": [1.0, 2.0, 3.0], "x": [1, 2, 3]})
    path = tmp_path / "data.parquet"
    frame.write_parquet(path)
    spec, spec_path = spec_for(tmp_path, path.read_bytes(), fmt="parquet")
    user_file = read_user_file(spec, spec_path)
    assert user_file.frame.height == 3
    assert user_file.frame["unit_id"].to_list() == ["1", "2", "3"]


def test_rejected_file_leaves_database_unchanged(tmp_path, conn):
    good, good_path = spec_for(tmp_path, "arm,y,x\nA,1.0,1\nB,2.0,2\n")
    write_user_file(conn, read_user_file(good, good_path), good.source)
    conn.commit()
    before = conn.execute("select count(*), sum(y) from raw.src_user_test").fetchone()
    bad, bad_path = spec_for(tmp_path, "arm,y,x\nA,1.0,1\nB,oops,2\n")
    with pytest.raises(FileSourceError):
        write_user_file(conn, read_user_file(bad, bad_path), bad.source)
    assert conn.execute("select count(*), sum(y) from raw.src_user_test").fetchone() == before
    log = conn.execute("select received, accepted, quarantined from raw.load_log where source = 'file:user_test'").fetchall()
    assert log == [(2, 2, 0)]


def _cuped_file_spec(tmp_path: Path, covariates: list[str], n: int = 4000):
    import numpy as np

    rng = np.random.default_rng(7)
    pre = rng.gamma(2.0, 10.0, n)
    arm = np.where(rng.random(n) < 0.5, "A", "B")
    spend = 0.8 * pre + rng.normal(0, 5, n) + np.where(arm == "B", 1.0, 0.0)
    frame = pl.DataFrame({"arm": arm, "spend": spend, "pre_spend": pre})
    (tmp_path / "data.csv").write_text(frame.write_csv())
    spec = {
        "id": "cuped_file", "hypothesis": "h", "baseline": "A", "primary_metric": "spend", "covariates": covariates,
        "variants": [{"name": "A", "allocation": 0.5}, {"name": "B", "allocation": 0.5}],
        "source": {"kind": "file", "path": "data.csv", "variant_column": "arm", "outcomes": ["spend"],
                   "columns": {"arm": "string", "spend": "float", "pre_spend": "float"}},
    }
    path = tmp_path / "cuped_file.yaml"
    path.write_text(yaml.safe_dump(spec))
    return parse_spec(path.read_text(), path), path, np.corrcoef(pre, spend)[0, 1] ** 2


def test_a_files_pre_period_covariate_turns_cuped_on(tmp_path, conn):
    """`covariates: [pre_spend]` on a file is spend's CUPED covariate (the README's example), with
    the variance reduction the correlation promises, and the CUPED row is the one that decides."""
    from liftlab.experiment_stats import daily_statistics, experiment_effects, unit_columns
    from liftlab.units import analysis_frame

    spec, path, rho2 = _cuped_file_spec(tmp_path, ["pre_spend"])
    assert spec.pre_period_column("spend") == "pre_spend"
    write_user_file(conn, read_user_file(spec, path), spec.source)
    conn.commit()
    effects = experiment_effects(daily_statistics(analysis_frame(conn, spec, unit_columns(spec)), spec), spec)
    rows = {r["method"]: r for r in effects.iter_rows(named=True)}
    assert set(rows) == {"welch_t", "cuped"}
    assert rows["cuped"]["is_decision_estimate"] and not rows["welch_t"]["is_decision_estimate"]
    assert rows["cuped"]["variance_reduction"] == pytest.approx(rho2, abs=0.02)
    width = {m: r["abs_ci_high"] - r["abs_ci_low"] for m, r in rows.items()}
    assert width["cuped"] / width["welch_t"] == pytest.approx((1 - rho2) ** 0.5, rel=0.05)


def test_a_pre_period_covariate_that_pairs_with_no_outcome_says_what_to_add(tmp_path):
    from liftlab.specs import SpecError

    spec, path, _ = _cuped_file_spec(tmp_path, [])
    bad = path.read_text().replace("pre_spend: float", "pre_spnd: float").replace("covariates: []", "covariates: [pre_spnd]")
    with pytest.raises(SpecError, match=r"covariates\.0.*'pre_spnd'.*no outcome is named 'spnd'.*cuped_covariates"):
        parse_spec(bad, path)
    mapped = bad.replace("covariates: [pre_spnd]", "covariates: [pre_spnd]\ncuped_covariates: {spend: pre_spnd}")
    assert parse_spec(mapped, path).pre_period_column("spend") == "pre_spnd"
