"""Where liftlab keeps things: repository paths and settings read from the environment.

Every path can be overridden by an environment variable so that tests, CI and a team's
deployment can point the same code at other folders without editing it.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root (``platform/liftlab/config.py`` → three levels up).
REPO_ROOT = Path(__file__).resolve().parents[2]


def _path_from_env(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def liftlab_home() -> Path:
    """Folder for local state (embedded Postgres data, caches); ignored by git."""
    return _path_from_env("LIFTLAB_HOME", REPO_ROOT / ".liftlab")


def experiments_dir() -> Path:
    """Folder of experiment specs (``*.yaml``)."""
    return _path_from_env("LIFTLAB_EXPERIMENTS_DIR", REPO_ROOT / "experiments")


def metrics_dir() -> Path:
    """Folder of the metric catalogue (``*.yaml``: fact tables, unit tables, metrics)."""
    return _path_from_env("LIFTLAB_METRICS_DIR", REPO_ROOT / "metrics")


def dbt_project_dir() -> Path:
    return _path_from_env("LIFTLAB_DBT_PROJECT_DIR", REPO_ROOT / "dbt_project")


def dbt_executable() -> str:
    """The dbt CLI of the separate dbt virtualenv (dbt's pins conflict with causalml's)."""
    default = REPO_ROOT / ".venv-dbt" / "bin" / "dbt"
    return os.environ.get("LIFTLAB_DBT_EXECUTABLE", str(default))


def reports_dir() -> Path:
    return _path_from_env("LIFTLAB_REPORTS_DIR", REPO_ROOT / "reports")


def world_size(loaded: int | None = None) -> int:
    """Number of synthetic users the demo world generates: ``LIFTLAB_WORLD_USERS``, else the size
    of the world already loaded (``loaded``, from ``raw.world_settings``), else 100,000 — so a
    command that does not ask for a size never regenerates the world at another one."""
    value = os.environ.get("LIFTLAB_WORLD_USERS")
    return int(value) if value else (int(loaded) if loaded is not None else 100_000)


def world_seed(loaded: int | None = None) -> int:
    """Seed of the synthetic world: ``LIFTLAB_WORLD_SEED``, else the loaded world's, else the demo's."""
    value = os.environ.get("LIFTLAB_WORLD_SEED")
    return int(value) if value else (int(loaded) if loaded is not None else 20261122)


def checkout_exposure_loss() -> float:
    """Share of checkout_redesign treatment exposures the world's logging bug drops."""
    return float(os.environ.get("LIFTLAB_CHECKOUT_EXPOSURE_LOSS", "0.03"))


def first_day() -> str:
    """First day of the daily partitions (``LIFTLAB_FIRST_DAY``, ISO date): the earliest exposure
    date any experiment's cohorts can have. The demo world starts on 2026-09-01."""
    return os.environ.get("LIFTLAB_FIRST_DAY", "2026-09-01")
