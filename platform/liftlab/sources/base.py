"""What every source gives the analysis: a unit table, and read-only access to where it lives.

Whatever the source — a file, a team's table, a team's warehouse, the demo world — the
analysis reads one **unit table** of a standard shape (:class:`UnitTable`): one row per unit
with its id, its variant, for sources with exposure times its exposure date and the number of
variants it was seen in, and one column per metric, pre-period twin, dimension or attribute.
The readers (:mod:`liftlab.units`) know only this descriptor, never the source kind.

A team's database is only ever read: :func:`read_only` opens a connection whose every
transaction is ``READ ONLY``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg

from liftlab import db


class SourceError(ValueError):
    """An experiment's source cannot be read as declared; the message names the spec or metric
    file, the key, and the table or column (never a password)."""


@dataclass(frozen=True)
class UnitTable:
    """Where an experiment's units are and what their columns are called."""

    #: ``schema.name`` of the table or view.
    relation: str
    unit: str = "unit_id"
    variant: str = "variant"
    #: Exposure date column (sources with exposure times), else None.
    day: str | None = None
    #: Number of variants a unit was seen in (sources with exposure times): units seen in more
    #: than one are contaminated — counted by the contamination gate, left out of the analysis.
    crossover: str | None = None
    #: Declared boolean columns, read as 0/1 where a number is needed.
    booleans: frozenset[str] = field(default_factory=frozenset)
    #: Environment variable with the URL of another database holding the table; None: liftlab's.
    connection: str | None = None


def connection_info(env_var: str | None, liftlab: psycopg.Connection, what: str = "source.connection") -> db.ConnInfo:
    """The database a source reads: the URL in ``env_var``, or liftlab's own database."""
    if env_var is None:
        info = liftlab.info
        return db.ConnInfo(user=info.user, password=info.password or "", host=info.host, port=int(info.port),
                           dbname=info.dbname)
    url = os.environ.get(env_var, "").strip()
    if not url:
        raise SourceError(f"{what}: environment variable {env_var} is not set (it must hold the postgresql:// URL "
                          "of the database to read)")
    try:
        return db.ConnInfo.parse(url)
    except ValueError as exc:
        raise SourceError(f"{what}: {env_var} is not a usable postgresql:// URL ({db.redact(url)}): {exc}") from None


@contextmanager
def read_only(info: db.ConnInfo) -> Iterator[psycopg.Connection]:
    """A connection on which every transaction is read-only (a team's tables are never written)."""
    conn = db.connect(info, options="-c TimeZone=UTC -c default_transaction_read_only=on")
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def reading(conn: psycopg.Connection, table: UnitTable) -> Iterator[psycopg.Connection]:
    """A connection on which ``table`` can be read: ``conn`` itself, or a read-only one to the
    database named by ``table.connection``."""
    if table.connection is None:
        yield conn
        return
    with read_only(connection_info(table.connection, conn)) as other:
        yield other
