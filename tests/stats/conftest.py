"""Shared fixtures for tests/stats."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

#: Hillstrom MineThatData e-mail campaign (64,000 customers, 3 arms).
#: Resolved from this file: <repo>/tests/stats -> <repo>/../shared/data.
HILLSTROM_CSV = Path(
    os.environ.get(
        "LIFTLAB_HILLSTROM_CSV",
        Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hillstrom.csv",
    )
)


@pytest.fixture(scope="session")
def hillstrom() -> pl.DataFrame:
    if not HILLSTROM_CSV.exists():
        pytest.skip(f"Hillstrom data not found at {HILLSTROM_CSV}")
    return pl.read_csv(HILLSTROM_CSV, schema_overrides={"history": pl.Float64, "spend": pl.Float64})
