"""Shared fixtures for tests/stats."""

from __future__ import annotations

import polars as pl
import pytest

from liftlab.config import REPO_ROOT

#: Hillstrom MineThatData e-mail campaign (64,000 customers, 3 arms), vendored with its checksum.
HILLSTROM_CSV = REPO_ROOT / "experiments" / "data" / "hillstrom.csv"


@pytest.fixture(scope="session")
def hillstrom() -> pl.DataFrame:
    return pl.read_csv(HILLSTROM_CSV, schema_overrides={"history": pl.Float64, "spend": pl.Float64})
