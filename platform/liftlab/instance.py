"""Preparing ``DAGSTER_HOME`` so Dagster keeps its runs in Postgres next to liftlab's data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from liftlab import config, db


def prepare_dagster_home(info: db.ConnInfo) -> Path:
    """Point ``DAGSTER_HOME`` at an ignored folder holding the repo's ``dagster.yaml``.

    Also exports ``DAGSTER_PG_URL`` (``<db>_dagster`` on the same server, one per liftlab database)
    unless it is already set, e.g. by docker compose.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or config.REPO_ROOT / ".dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    source = config.REPO_ROOT / "dagster.yaml"
    target = home / "dagster.yaml"
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)
    os.environ["DAGSTER_HOME"] = str(home)
    if not os.environ.get("DAGSTER_PG_URL"):
        db.ensure_database(info, db.dagster_db(info.dbname))
        os.environ["DAGSTER_PG_URL"] = db.dagster_storage_url(info)
    return home
