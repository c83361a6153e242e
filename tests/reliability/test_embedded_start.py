"""Two processes starting a fresh embedded Postgres at once — two test workers on a new clone,
or `liftlab demo` next to `liftlab dev` — both get a server with liftlab's databases (CI once
failed here: both ran `create database dagster`)."""

from __future__ import annotations

import multiprocessing as mp
import os


def _start(home: str) -> tuple[str, list[str]]:
    os.environ["LIFTLAB_HOME"] = home
    os.environ.pop("DATABASE_URL", None)
    from liftlab import db

    info = db.start_embedded()
    with db.connect(info) as conn:
        names = [r[0] for r in conn.execute("select datname from pg_database order by 1")]
    return info.dbname, names


def test_two_processes_start_a_fresh_embedded_server_at_once(tmp_path, monkeypatch):
    home = str(tmp_path / "home")
    with mp.get_context("spawn").Pool(2) as pool:
        results = pool.map(_start, [home, home])
    assert [r[0] for r in results] == ["liftlab", "liftlab"]
    assert all({"liftlab", "liftlab_dagster"} <= set(names) for _, names in results)
    monkeypatch.setenv("LIFTLAB_HOME", home)
    from liftlab import db

    assert db.stop_embedded()
