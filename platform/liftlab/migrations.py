"""Apply the SQL migrations in ``sql/migrations`` in order, once each.

Each file runs in its own transaction and is recorded in ``public.liftlab_migrations`` with
its checksum; an advisory lock serialises concurrent callers (two Dagster runs starting at
once). Editing an applied migration is refused: add a new file instead.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg

from liftlab import config

MIGRATIONS_DIR = config.REPO_ROOT / "sql" / "migrations"
_LOCK = 7_246_135_001  # arbitrary constant identifying liftlab's migration lock

#: Earlier texts of a migration that were edited in place, by name: a database that applied one
#: of them is up to date. 001 created the synthetic world's tables on every database; they are
#: now created with the world (``liftlab.synth.tables.WORLD_DDL``) — a database that has them
#: keeps them, a new one without the demo never gets them.
SUPERSEDED = {
    "001_schemas.sql": {"360730f50887ae5573832569c73c163cb76979f42e00366e0be57c4382737ae5"},
}


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    return sorted(directory.glob("*.sql"))


def apply(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names of those applied now.

    Roles are cluster-wide while the advisory lock is per database: two databases of one server
    migrated at once (two test workers, two liftlab databases) can race on ``create role``. The
    loser's transaction is rolled back whole and applied again, when the role exists."""
    import time

    for attempt in range(5):
        try:
            return _apply(conn, directory)
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject) as error:
            if "pg_authid" not in str(error) and "role" not in str(error) or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _apply(conn: psycopg.Connection, directory: Path) -> list[str]:
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK,))
        # Only when missing: the pipeline's role (liftlab_writer) may read the table, not create in public.
        if conn.execute("select to_regclass('public.liftlab_migrations') is null").fetchone()[0]:
            conn.execute(
                "create table public.liftlab_migrations ("
                " name text primary key, sha256 text not null, applied_at timestamptz not null default now())"
            )
        done = dict(conn.execute("select name, sha256 from public.liftlab_migrations").fetchall())
        for path in migration_files(directory):
            text = path.read_text()
            digest = hashlib.sha256(text.encode()).hexdigest()
            if path.name in done:
                if done[path.name] != digest and done[path.name] not in SUPERSEDED.get(path.name, ()):
                    raise RuntimeError(
                        f"migration {path.name} changed after it was applied; add a new migration instead"
                    )
                continue
            with conn.transaction():
                conn.execute(text)
                conn.execute(
                    "insert into public.liftlab_migrations (name, sha256) values (%s, %s)", (path.name, digest)
                )
            applied_now.append(path.name)
    return applied_now
