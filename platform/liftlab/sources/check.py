"""Checking and showing the catalogue against real databases, without running the heavy queries.

:func:`check_experiment` verifies that every table and column an experiment's spec and its
catalogue metrics name exists with a usable type, and that each compiled statement plans
(``EXPLAIN``, which parses and plans but runs nothing); :func:`metric_statements` gives the
SQL a metric compiles to for each experiment that uses it. Used by ``liftlab metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from liftlab.sources.base import SourceError, connection_info, read_only
from liftlab.sources.compile import Compiled
from liftlab.specs import LoadedSpec


@dataclass(frozen=True)
class CheckResult:
    experiment_id: str
    ok: bool
    problems: list[str]
    statements: int


def _statements(spec, types) -> list[Compiled]:
    from liftlab.sources.warehouse import experiment_sql

    q = experiment_sql(spec, types)
    out = [q.units(), *(q.fact(f) for f in q.facts())]
    out += [q.quantile_rows(m) for m in spec.quantile_metrics()]
    return out


def check_experiment(conn: psycopg.Connection, loaded: LoadedSpec) -> CheckResult:
    """Tables, columns and types exist; every compiled statement of the experiment plans."""
    from liftlab.sources.warehouse import check_source, connection_of, twins_of

    spec = loaded.spec
    used = [*spec.metric_roles(), *spec.unit_metrics(), *twins_of(spec)]
    problems = spec.catalogue.problems_of(dict.fromkeys(used))
    if problems:
        return CheckResult(spec.id, False, problems, 0)
    try:
        with read_only(connection_info(connection_of(spec), conn, f"{loaded.path}: source.connection")) as src:
            types = check_source(src, spec, loaded.path)
            statements = _statements(spec, types)
            for compiled in statements:
                try:
                    with src.transaction():
                        src.execute(sql.SQL("explain {}").format(compiled.statement), compiled.params)
                except psycopg.DatabaseError as exc:
                    problems.append(f"{loaded.path}: {compiled.description}: {str(exc).splitlines()[0]}")
    except SourceError as exc:
        return CheckResult(spec.id, False, str(exc).splitlines(), 0)
    return CheckResult(spec.id, not problems, problems, len(statements))


def metric_statements(conn: psycopg.Connection | None, loaded: LoadedSpec, metric: str) -> list[Compiled]:
    """The statements through which ``metric`` reaches the experiment's analysis (its units and the
    fact statement, or the rows of a quantile). With a connection, the column types come from the
    database (date facts are windowed by days); without, timestamps are assumed."""
    from liftlab.sources.compile import Relations
    from liftlab.sources.warehouse import check_source, connection_of, experiment_sql

    spec = loaded.spec
    types = Relations()
    if conn is not None:
        with read_only(connection_info(connection_of(spec), conn)) as src:
            types = check_source(src, spec, loaded.path)
    q = experiment_sql(spec, types)
    if spec.metric_kind(metric) == "quantile":
        return [q.units(), q.quantile_rows(metric)]
    facts = {spec.catalogue.metric(part).fact for part in spec.catalogue.parts(metric)}
    return [q.units(), *(q.fact(f) for f in q.facts() if f in facts)]
