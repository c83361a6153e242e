"""The pushdown aggregation (one SQL GROUP BY inside Postgres) gives the statistics of the polars
path: same rows, same order, counts equal, sums equal to 1e-12 — for every experiment of the
session's world (demo warehouse sources and the Hillstrom file), with winsorization caps and a
day range; and the daily_stats asset in pushdown mode writes those statistics."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from liftlab import db, pushdown
from liftlab.experiment_stats import daily_statistics, unit_columns
from liftlab.specs import load_specs
from liftlab.stats.moments import MOMENT_COLUMNS
from liftlab.units import analysis_frame, experiment_caps

pytestmark = pytest.mark.heavy


def assert_same_statistics(got: pl.DataFrame, expected: pl.DataFrame, what: str) -> None:
    assert got.columns == expected.columns, what
    assert got.height == expected.height and got.height > 0, what
    for key in ("variant", "day", "metric", "n"):
        assert got[key].to_list() == expected[key].to_list(), (what, key)
    for column in MOMENT_COLUMNS:
        np.testing.assert_allclose(got[column].to_numpy(), expected[column].to_numpy(), rtol=1e-12, atol=1e-9,
                                   err_msg=f"{what}: {column}")


def test_pushdown_equals_the_polars_path_for_every_experiment(built):
    specs = [item.spec for item in load_specs()]
    with db.connect(built.info) as conn:
        for spec in specs:
            caps = experiment_caps(conn, spec)
            frame = analysis_frame(conn, spec, unit_columns(spec))
            got, units = pushdown.daily_statistics(conn, spec, caps)
            assert units == frame.height, spec.id
            assert_same_statistics(got, daily_statistics(frame, spec, caps), spec.id)


def test_pushdown_caps_and_day_ranges_as_the_polars_path(built):
    spec = next(item.spec for item in load_specs() if item.spec.id == "aa_check")
    capped = spec.model_copy(update={"winsorize": {"sessions": 0.9}})
    with db.connect(built.info) as conn:
        caps = experiment_caps(conn, capped)
        assert caps and not np.isnan(caps["sessions"])
        days = (capped.start_date, capped.start_date.replace(day=capped.start_date.day + 2))
        frame = analysis_frame(conn, capped, unit_columns(capped), days=days)
        got, units = pushdown.daily_statistics(conn, capped, caps, days)
        expected = daily_statistics(frame, capped, caps)
        uncapped, _ = pushdown.daily_statistics(conn, capped, {}, days)
    assert units == frame.height and set(got["day"].to_list()) <= set(pl.date_range(*days, eager=True).to_list())
    assert_same_statistics(got, expected, "aa_check capped, three days")
    sessions = got.filter(pl.col("metric") == "sessions")
    assert (sessions["sum_sq"] < uncapped.filter(pl.col("metric") == "sessions")["sum_sq"]).all()  # the cap bites


def test_the_mode_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv("LIFTLAB_AGGREGATION", raising=False)
    assert pushdown.mode() == "polars"
    monkeypatch.setenv("LIFTLAB_AGGREGATION", "Pushdown")
    assert pushdown.mode() == "pushdown"
    monkeypatch.setenv("LIFTLAB_AGGREGATION", "spark")
    with pytest.raises(ValueError, match="LIFTLAB_AGGREGATION must be one of polars, pushdown"):
        pushdown.mode()
