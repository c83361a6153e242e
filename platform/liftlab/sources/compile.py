"""Catalogue metrics → set-based SQL that runs where the data lives (no Dagster, no I/O).

For one experiment with a warehouse (or demo) source, :class:`ExperimentSQL` compiles:

* :meth:`~ExperimentSQL.units` — the experiment's units: the **first** assignment row of each
  unit (its variant, time and the assignment columns used as dimensions), the number of rows
  and of distinct variants (a unit seen in two variants is contamination), and the unit-table
  attributes in force at first exposure. A unit is an assignment whose first row falls in
  ``[start_date, end of end_date]``; later rows are not new units; rows of other experiment
  keys are never read (the assignments' ``where`` is part of the statement).
* :meth:`~ExperimentSQL.fact` — per fact table, **one** statement returning one row per unit
  with every unit-level metric on that table and its pre-period twin. Sums are taken as
  ``numeric`` (exact, so reruns give identical bits); a metric with ``window_days`` is NULL for a
  unit whose window is not complete at the analysis cut-off (the fact table's newest timestamp,
  or now when it is empty).
* :meth:`~ExperimentSQL.quantile_rows` — the fact rows of an event-level quantile metric with
  their unit and arm (the quantile and its clustered CI are computed from them).
* :meth:`~ExperimentSQL.daily` — per fact table, each unit's contribution per UTC day to the
  metrics without a window (the daily looks accumulate them).

Windows (``liftlab.catalogue``): a metric with ``window_days: k`` reads rows with timestamp in
``[first exposure, first exposure + k days)``; without, ``[first exposure, end of end_date]``;
the twin ``pre_m`` reads ``[first exposure − pre_period_days, first exposure)``. A fact whose
timestamp is a ``date`` (a daily rollup) is windowed by days from the exposure date.

Every identifier is validated and quoted with ``psycopg.sql.Identifier``; every value
(experiment keys, ``where`` values, dates) is a bound parameter. The assignments ``sql`` of a
spec is wrapped as a subquery and run in a read-only transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from psycopg import sql

from liftlab.catalogue import Catalogue, FactTable, Metric, UnitTable
from liftlab.db import check_identifier, qualified

#: Columns every materialized unit table starts with (names a metric or dimension may not take).
UNIT_COLUMNS = ("unit_id", "variant", "first_exposed_at", "exposure_date", "n_exposures", "n_variants")
NUMERIC_TYPES = frozenset({"int2", "int4", "int8", "float4", "float8", "numeric", "bool"})
TIME_TYPES = frozenset({"date", "timestamp", "timestamptz"})


class CompileError(ValueError):
    """A definition cannot be compiled against the tables it names; the message says where."""


@dataclass(frozen=True)
class Compiled:
    """One statement with its parameters, and what each output column is."""

    statement: sql.Composed
    params: tuple
    columns: tuple[str, ...]
    description: str = ""

    def text(self) -> str:
        """The statement with ``%s`` placeholders (values are shown separately, never spliced)."""
        return self.statement.as_string(None)

    def show(self) -> str:
        """Statement and parameters, for people (``liftlab metrics show``, asset metadata)."""
        params = "\n".join(f"--   ${i + 1} = {p!r}" for i, p in enumerate(self.params))
        return f"-- {self.description}\n{self.text()}" + (f"\n-- parameters, in order:\n{params}" if params else "")


@dataclass(frozen=True)
class Relations:
    """The Postgres type of every column the statements touch: relation label → column → type
    name (``pg_type.typname``). Filled by :func:`liftlab.sources.warehouse.describe`; empty for a
    display without a database (timestamps are then assumed to be ``timestamptz``)."""

    types: dict[str, dict[str, str]] = field(default_factory=dict)

    def type_of(self, relation: str, column: str) -> str | None:
        return self.types.get(relation, {}).get(column)


@dataclass(frozen=True)
class Assign:
    """The assignments of one experiment, as the compiler needs them."""

    table: str | None
    sql_text: str | None
    unit: str
    variant: str
    timestamp: str
    where: dict
    label: str

    def relation(self) -> sql.Composable:
        if self.table:
            return qualified(self.table)
        # a user's read-only query: % must not read as a placeholder (values are bound)
        return sql.SQL("({})").format(sql.SQL(self.sql_text.strip().rstrip(";").replace("%", "%%")))


def _ident(name: str, what: str) -> sql.Identifier:
    return sql.Identifier(check_identifier(name, what))


def where_clause(alias: str, where: dict) -> tuple[list[sql.Composable], list]:
    """``where`` (see :mod:`liftlab.catalogue`) as SQL conditions with bound values."""
    conds: list[sql.Composable] = []
    params: list = []
    ops = {"eq": sql.SQL("="), "ne": sql.SQL("<>"), "gt": sql.SQL(">"), "gte": sql.SQL(">="), "lt": sql.SQL("<"),
           "lte": sql.SQL("<=")}
    for column, value in where.items():
        col = sql.Identifier(alias, check_identifier(column, "where column"))
        if isinstance(value, dict):
            op, operand = next(iter(value.items()))
            if op in ops:
                conds.append(sql.SQL("{} {} %s").format(col, ops[op]))
                params.append(operand)
            elif op == "in":
                conds.append(sql.SQL("{} = any(%s)").format(col))
                params.append(list(operand))
            elif op == "not_in":
                conds.append(sql.SQL("not ({} = any(%s))").format(col))
                params.append(list(operand))
            else:  # is_null
                conds.append(sql.SQL("{} is null" if operand else "{} is not null").format(col))
        elif isinstance(value, list):
            conds.append(sql.SQL("{} = any(%s)").format(col))
            params.append(list(value))
        else:
            conds.append(sql.SQL("{} = %s").format(col))
            params.append(value)
    return conds, params


def _and(conds: list[sql.Composable]) -> sql.Composable:
    return sql.SQL(" and ").join(conds) if conds else sql.SQL("true")


class ExperimentSQL:
    """The statements of one experiment (see the module docstring).

    ``assign``: its assignments; ``dimensions``: assignment columns taken at the first row;
    ``attributes``: unit-table columns wanted (dimensions, covariates, features);
    ``metrics``: unit-level catalogue metrics wanted; ``twins``: those whose pre-period twin is
    wanted; ``start``/``end``: the experiment's dates; ``pre_days``: the pre-period length.
    """

    def __init__(self, catalogue: Catalogue, assign: Assign, *, start: dt.date, end: dt.date, pre_days: int,
                 metrics: list[str], twins: list[str], dimensions: list[str], attributes: list[str],
                 types: Relations | None = None) -> None:
        self.cat = catalogue
        self.assign = assign
        self.start, self.end, self.pre_days = start, end, pre_days
        self.metrics = list(dict.fromkeys(metrics))
        self.twins = [m for m in dict.fromkeys(twins) if m in self.metrics or self.cat.metric(m).unit_level]
        self.dimensions = list(dict.fromkeys(dimensions))
        self.attributes = list(dict.fromkeys(attributes))
        self.types = types or Relations()

    # ------------------------------------------------------------------ units
    def _exposure_bounds(self) -> tuple[dt.datetime, dt.datetime]:
        utc = dt.timezone.utc
        lo = dt.datetime.combine(self.start, dt.time(), tzinfo=utc)
        hi = dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time(), tzinfo=utc)
        return lo, hi

    def _units_cte(self, with_attributes: bool = True) -> tuple[sql.Composable, list]:
        """``units(unit, variant, first_exposed_at, exposure_date, n_exposures, n_variants, dims…, attributes…)``."""
        a = self.assign
        dims = [sql.SQL(", {} as {}").format(sql.Identifier("a", d), _ident(d, "dimension")) for d in self.dimensions]
        conds, params = where_clause("a", a.where)
        rows = sql.SQL(
            "rows as (select a.{unit} as unit, a.{variant}::text as variant, a.{ts}::timestamptz as ts{dims} "
            "from {rel} a where {cond})"
        ).format(unit=_ident(a.unit, "assignments unit"), variant=_ident(a.variant, "assignments variant"),
                 ts=_ident(a.timestamp, "assignments timestamp"), dims=sql.SQL("").join(dims),
                 rel=a.relation(), cond=_and(conds))
        # one aggregation pass (no self-join, whose plan can go quadratic on a table without statistics):
        # the first row by (time, variant) gives the variant and the dimensions
        first = sql.SQL("order by ts, variant collate \"C\"")
        dim_list = sql.SQL("").join(sql.SQL(", (array_agg({d} {first}))[1] as {d}").format(d=_ident(d, "dimension"), first=first)
                                    for d in self.dimensions)
        firsts = sql.SQL(
            "firsts as (select unit, (array_agg(variant {first}))[1] as variant, min(ts) as first_exposed_at, "
            "count(*)::bigint as n_exposures, count(distinct variant)::integer as n_variants{dims} from rows "
            "where unit is not null and variant is not null and ts is not null group by unit)"
        ).format(first=first, dims=dim_list)
        lo, hi = self._exposure_bounds()
        joins, cols = [], []
        if with_attributes:
            for name, table in self._attribute_tables().items():
                alias = f"t_{name}"
                wanted = [c for c in self.attributes if c in table.columns]
                cols += [sql.SQL(", {} as {}").format(sql.Identifier(alias, c), sql.Identifier(c)) for c in wanted]
                mine = self._unit_key(table.table, table.unit, "f")
                on = sql.SQL("{} = {}").format(self._cast_unit(sql.Identifier(alias, table.unit), table.table, table.unit), mine)
                if table.timestamp:  # the row in force at first exposure
                    joins.append(sql.SQL(
                        " left join lateral (select * from {rel} t where {on} and t.{ts} <= f.first_exposed_at "
                        "order by t.{ts} desc limit 1) {alias} on true"
                    ).format(rel=qualified(table.table), on=sql.SQL("{} = {}").format(
                        self._cast_unit(sql.Identifier("t", table.unit), table.table, table.unit), mine),
                        ts=_ident(table.timestamp, "unit table timestamp"), alias=sql.Identifier(alias)))
                else:
                    joins.append(sql.SQL(" left join {rel} {alias} on {on}").format(
                        rel=qualified(table.table), alias=sql.Identifier(alias), on=on))
        units = sql.SQL(
            "units as (select f.unit, f.variant, f.first_exposed_at, "
            "(f.first_exposed_at at time zone 'UTC')::date as exposure_date, f.n_exposures, f.n_variants{dims}{cols} "
            "from firsts f{joins} where f.first_exposed_at >= %s::timestamptz and f.first_exposed_at < %s::timestamptz)"
        ).format(dims=sql.SQL("").join(sql.SQL(", f.{}").format(_ident(d, "dimension")) for d in self.dimensions),
                 cols=sql.SQL("").join(cols), joins=sql.SQL("").join(joins))
        cte = sql.SQL("with {}, {}, {}").format(rows, firsts, units)
        return cte, [*params, lo, hi]

    def _attribute_tables(self) -> dict[str, UnitTable]:
        tables: dict[str, UnitTable] = {}
        for column in self.attributes:
            owner = self.cat.unit_column_names().get(column)
            if owner is not None:
                tables.setdefault(owner, self.cat.unit_tables[owner])
        return tables

    def _cast_unit(self, expr: sql.Composable, relation: str, column: str) -> sql.Composable:
        """The join key as the assignments' unit type, or both as text when the types differ."""
        mine = self.types.type_of(relation, column)
        theirs = self.types.type_of(self.assign.label, self.assign.unit)
        if mine is None or theirs is None or mine == theirs:
            return expr
        return sql.SQL("{}::text").format(expr)

    def _unit_key(self, relation: str, column: str, alias: str = "u") -> sql.Composable:
        """``<alias>.unit`` cast like :meth:`_cast_unit` casts the other side."""
        mine = self.types.type_of(relation, column)
        theirs = self.types.type_of(self.assign.label, self.assign.unit)
        key = sql.Identifier(alias, "unit")
        return key if mine is None or theirs is None or mine == theirs else sql.SQL("{}::text").format(key)

    def units(self) -> Compiled:
        cte, params = self._units_cte()
        cols = list(UNIT_COLUMNS) + self.dimensions + self._attribute_columns()
        stmt = sql.SQL(
            "{cte} select unit::text as unit_id, variant, first_exposed_at, exposure_date, n_exposures, n_variants{dims}{attrs} "
            "from units order by unit"
        ).format(cte=cte, dims=sql.SQL("").join(sql.SQL(", {}").format(_ident(d, "dimension")) for d in self.dimensions),
                 attrs=sql.SQL("").join(sql.SQL(", {}").format(sql.Identifier(c)) for c in self._attribute_columns()))
        return Compiled(stmt, tuple(params), tuple(cols),
                        f"units: first assignment row per unit of {self.assign.label}, first exposed {self.start} … {self.end}")

    def _attribute_columns(self) -> list[str]:
        tables = self._attribute_tables()
        return [c for c in self.attributes if any(c in t.columns for t in tables.values())]

    # ------------------------------------------------------------------ windows
    def _is_date(self, fact: FactTable) -> bool:
        return self.types.type_of(fact.table, fact.timestamp) == "date"

    def _window(self, fact: FactTable, metric: Metric, twin: bool) -> tuple[sql.Composable, list]:
        """The condition selecting the fact rows of a unit's window (``u`` = unit, ``f`` = fact)."""
        ts = sql.Identifier("f", fact.timestamp)
        if self._is_date(fact):
            if twin:
                return sql.SQL("{ts} >= u.exposure_date - %s::integer and {ts} < u.exposure_date").format(ts=ts), [self.pre_days]
            if metric.window_days:
                return sql.SQL("{ts} >= u.exposure_date and {ts} < u.exposure_date + %s::integer").format(ts=ts), [metric.window_days]
            return sql.SQL("{ts} >= u.exposure_date and {ts} <= %s::date").format(ts=ts), [self.end]
        if twin:
            return (sql.SQL("{ts} >= u.first_exposed_at - make_interval(days => %s::integer) and {ts} < u.first_exposed_at")
                    .format(ts=ts), [self.pre_days])
        if metric.window_days:
            return (sql.SQL("{ts} >= u.first_exposed_at and {ts} < u.first_exposed_at + make_interval(days => %s::integer)")
                    .format(ts=ts), [metric.window_days])
        return sql.SQL("{ts} >= u.first_exposed_at and {ts} < %s::timestamptz").format(ts=ts), [self._exposure_bounds()[1]]

    def _scan(self, fact: FactTable, metrics: list[Metric], twins: bool) -> tuple[sql.Composable, list]:
        """One range on the fact's time that covers every window (so an index on it is used)."""
        ts = sql.Identifier("f", fact.timestamp)
        longest = max([m.window_days or 0 for m in metrics], default=0)
        if self._is_date(fact):
            lo = sql.SQL("u.exposure_date - %s::integer") if twins else sql.SQL("u.exposure_date")
            return (sql.SQL("{ts} >= {lo} and {ts} < greatest(u.exposure_date + %s::integer, %s::date + 1)").format(ts=ts, lo=lo),
                    ([self.pre_days] if twins else []) + [longest, self.end])
        lo = sql.SQL("u.first_exposed_at - make_interval(days => %s::integer)") if twins else sql.SQL("u.first_exposed_at")
        return (sql.SQL("{ts} >= {lo} and {ts} < greatest(u.first_exposed_at + make_interval(days => %s::integer), %s)")
                .format(ts=ts, lo=lo), ([self.pre_days] if twins else []) + [longest, self._exposure_bounds()[1]])

    def _day(self, fact: FactTable) -> sql.Composable:
        ts = sql.Identifier("f", fact.timestamp)
        return ts if self._is_date(fact) else sql.SQL("({}::timestamptz at time zone 'UTC')::date").format(ts)

    def _aggregate(self, fact: FactTable, metric: Metric, cond: sql.Composable) -> sql.Composable:
        present = sql.SQL("{} is not null").format(sql.Identifier("f", fact.unit))
        where = sql.SQL("{} and {}").format(present, cond)
        col = sql.Identifier("f", metric.column) if metric.column else None
        if metric.aggregate == "count":
            return sql.SQL("(count(*) filter (where {}))::double precision").format(where)
        if metric.aggregate == "sum":
            return sql.SQL("coalesce(sum({}::numeric) filter (where {}), 0)::double precision").format(col, where)
        if metric.aggregate == "any":
            return sql.SQL("((count(*) filter (where {})) > 0)::integer::double precision").format(where)
        if metric.aggregate == "count_distinct_days":
            return sql.SQL("(count(distinct {}) filter (where {}))::double precision").format(self._day(fact), where)
        if metric.aggregate == "max":
            return sql.SQL("coalesce(max({}::double precision) filter (where {}), 0)::double precision").format(col, where)
        raise CompileError(f"aggregate {metric.aggregate!r} has no unit-level value")

    # ------------------------------------------------------------------ facts
    def facts(self) -> dict[str, list[str]]:
        """fact table → the wanted unit-level metrics on it (in order)."""
        out: dict[str, list[str]] = {}
        for name in [*self.metrics, *self.twins]:
            out.setdefault(self.cat.metric(name).fact, [])
            if name not in out[self.cat.metric(name).fact]:
                out[self.cat.metric(name).fact].append(name)
        return out

    def fact(self, fact_name: str) -> Compiled:
        """One row per unit: ``unit_id`` and, per metric on this fact table, the metric (NULL if its
        window is incomplete) and ``pre_<metric>`` where the twin is wanted."""
        fact = self.cat.fact_tables[fact_name]
        names = self.facts()[fact_name]
        defs = {n: self.cat.metric(n) for n in names}
        cte, params = self._units_cte(with_attributes=False)
        aggs, agg_params, outer, columns = [], [], [], ["unit_id"]
        for name in names:
            metric = defs[name]
            parts: list[tuple[str, bool]] = []
            if name in self.metrics:
                parts.append((name, False))
            if name in self.twins:
                parts.append((f"pre_{name}", True))
            for column, twin in parts:
                window, wparams = self._window(fact, metric, twin)
                filt, fparams = where_clause("f", metric.where)
                aggs.append(sql.SQL("{} as {}").format(self._aggregate(fact, metric, _and([window, *filt])), sql.Identifier(column)))
                agg_params += wparams + fparams
                if metric.window_days and not twin:
                    outer.append(sql.SQL("case when {end} <= cutoff then {col} end as {col}").format(
                        end=self._window_end(fact, metric), col=sql.Identifier(column)))
                else:
                    outer.append(sql.Identifier(column))
                columns.append(column)
        scan, scan_params = self._scan(fact, list(defs.values()), any(n in self.twins for n in names))
        key = self._cast_unit(sql.Identifier("f", fact.unit), fact.table, fact.unit)
        stmt = sql.SQL(
            "{cte}, agg as (select u.unit, u.first_exposed_at, u.exposure_date, {aggs} "
            "from units u left join {rel} f on {key} = {ukey} and {scan} group by u.unit, u.first_exposed_at, u.exposure_date), "
            "cut as ({cutoff}) "
            "select agg.unit::text as unit_id, {outer} from agg cross join cut order by agg.unit"
        ).format(cte=cte, aggs=sql.SQL(", ").join(aggs), rel=qualified(fact.table), key=key,
                 ukey=self._unit_key(fact.table, fact.unit), scan=scan, cutoff=self._cutoff(fact),
                 outer=sql.SQL(", ").join(outer))
        return Compiled(stmt, tuple([*params, *agg_params, *scan_params]), tuple(columns),
                        f"metrics on fact table {fact_name} ({fact.table}): {', '.join(columns[1:])}")

    def _cutoff(self, fact: FactTable) -> sql.Composable:
        """``select … as cutoff``: the analysis cut-off of a fact table — its newest fact (the end of
        that day for a daily rollup), or now when it has none. A window ending after it is not
        complete: the facts that would fill it may not have arrived."""
        ts = sql.Identifier("f", fact.timestamp)
        if self._is_date(fact):
            return sql.SQL("select coalesce(max({}) + 1, current_date + 1) as cutoff from {} f").format(ts, qualified(fact.table))
        return sql.SQL("select coalesce(max({}::timestamptz), now()) as cutoff from {} f").format(ts, qualified(fact.table))

    def _window_end(self, fact: FactTable, metric: Metric, alias: str = "agg") -> sql.Composable:
        """Exclusive end of a unit's window (the window is complete once the facts reach it)."""
        days = sql.Literal(int(metric.window_days))
        if self._is_date(fact):
            return sql.SQL("({} + {})").format(sql.Identifier(alias, "exposure_date"), days)
        return sql.SQL("({} + make_interval(days => {}))").format(sql.Identifier(alias, "first_exposed_at"), days)

    def quantile_rows(self, name: str) -> Compiled:
        """``unit_id``, ``variant``, ``value``: the rows of a quantile metric inside each unit's window,
        units seen in one variant only, windows complete at the cut-off; ordered (reruns identical)."""
        metric = self.cat.metric(name)
        fact = self.cat.fact_tables[metric.fact]
        cte, params = self._units_cte(with_attributes=False)
        window, wparams = self._window(fact, metric, twin=False)
        filt, fparams = where_clause("f", metric.where)
        key = self._cast_unit(sql.Identifier("f", fact.unit), fact.table, fact.unit)
        col = sql.Identifier("f", metric.column)
        rows = sql.SQL(
            "q as (select u.unit, u.variant, u.first_exposed_at, u.exposure_date, {col}::double precision as value "
            "from units u join {rel} f on {key} = {ukey} and {cond} where u.n_variants = 1 and {col} is not null)"
        ).format(col=col, rel=qualified(fact.table), key=key,
                 ukey=self._unit_key(fact.table, fact.unit), cond=_and([window, *filt]))
        complete = sql.SQL("true")
        if metric.window_days:
            complete = sql.SQL("{} <= ({})").format(self._window_end(fact, metric, "q"), self._cutoff(fact))
        stmt = sql.SQL("{cte}, {rows} select unit::text as unit_id, variant, value from q where {complete} "
                       "order by variant collate \"C\", unit, value").format(cte=cte, rows=rows, complete=complete)
        return Compiled(stmt, tuple([*params, *wparams, *fparams]), ("unit_id", "variant", "value"),
                        f"rows of quantile metric {name} (q = {metric.q}) on {fact.table}")

    def daily(self, fact_name: str, metrics: list[str], units_between: tuple[str, str] | None = None) -> Compiled:
        """``unit_id``, ``day`` and, per metric without a window, the unit's contribution that UTC day
        (row count, sum, or row count for ``any``/``count_distinct_days``, which the looks turn
        into a 0/1 flag or a day count); units seen in one variant only; ``units_between``
        (first, last) keeps the units whose id (as text, byte order) lies in that range."""
        fact = self.cat.fact_tables[fact_name]
        cte, params = self._units_cte(with_attributes=False)
        cols, col_params = [], []
        for name in metrics:
            metric = self.cat.metric(name)
            window, wparams = self._window(fact, metric, twin=False)
            filt, fparams = where_clause("f", metric.where)
            cond = _and([window, *filt])
            if metric.aggregate == "sum":
                expr = sql.SQL("coalesce(sum({}::numeric) filter (where {}), 0)::double precision").format(
                    sql.Identifier("f", metric.column), cond)
            else:
                expr = sql.SQL("(count(*) filter (where {}))::double precision").format(cond)
            cols.append(sql.SQL("{} as {}").format(expr, sql.Identifier(name)))
            col_params += wparams + fparams
        scan, scan_params = self._scan(fact, [self.cat.metric(m) for m in metrics], twins=False)
        key = self._cast_unit(sql.Identifier("f", fact.unit), fact.table, fact.unit)
        batch, batch_params = sql.SQL(""), []
        if units_between is not None:
            batch, batch_params = sql.SQL(" and u.unit::text collate \"C\" between %s and %s"), list(units_between)
        stmt = sql.SQL(
            "{cte} select u.unit::text as unit_id, {day} as day, {cols} from units u join {rel} f on {key} = {ukey} and {scan} "
            "where u.n_variants = 1{batch} group by 1, 2 order by 1, 2"
        ).format(cte=cte, day=self._day(fact), cols=sql.SQL(", ").join(cols), rel=qualified(fact.table), key=key,
                 ukey=self._unit_key(fact.table, fact.unit), scan=scan, batch=batch)
        return Compiled(stmt, tuple([*params, *col_params, *scan_params, *batch_params]), ("unit_id", "day", *metrics),
                        f"daily contributions on {fact.table}: {', '.join(metrics)}")

    def panel(self, name: str, group: str, first: dt.date, last: dt.date) -> Compiled:
        """``grp``, ``day``, ``value``: a metric's daily total per group of units over [first, last]
        (pre-period included, whatever each unit's exposure) — the panel of a staggered rollout.
        A sum adds its column, a count its rows, ``any``/``count_distinct_days`` the units active
        that day."""
        metric = self.cat.metric(name)
        fact = self.cat.fact_tables[metric.fact]
        cte, params = self._units_cte()
        ts = sql.Identifier("f", fact.timestamp)
        if self._is_date(fact):
            span, span_params = sql.SQL("{ts} >= %s::date and {ts} <= %s::date").format(ts=ts), [first, last]
        else:
            utc = dt.timezone.utc
            span = sql.SQL("{ts} >= %s::timestamptz and {ts} < %s::timestamptz").format(ts=ts)
            span_params = [dt.datetime.combine(first, dt.time(), tzinfo=utc),
                           dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=utc)]
        filt, fparams = where_clause("f", metric.where)
        if metric.aggregate == "sum":
            value = sql.SQL("coalesce(sum({}::numeric), 0)::double precision").format(sql.Identifier("f", metric.column))
        elif metric.aggregate == "count":
            value = sql.SQL("count(*)::double precision")
        elif metric.aggregate in ("any", "count_distinct_days"):
            value = sql.SQL("count(distinct u.unit)::double precision")
        else:
            raise CompileError(f"metric {name!r} ({metric.aggregate}) has no daily total for a rollout panel")
        key = self._cast_unit(sql.Identifier("f", fact.unit), fact.table, fact.unit)
        stmt = sql.SQL(
            "{cte} select u.{grp}::text as grp, {day} as day, {value} as value from units u join {rel} f on {key} = {ukey} "
            "and {span} and {filt} group by 1, 2 order by 1, 2"
        ).format(cte=cte, grp=_ident(group, "group"), day=self._day(fact), value=value, rel=qualified(fact.table),
                 key=key, ukey=self._unit_key(fact.table, fact.unit), span=span, filt=_and(filt))
        return Compiled(stmt, tuple([*params, *span_params, *fparams]), ("grp", "day", "value"),
                        f"daily {name} per {group} on {fact.table}, {first} … {last}")
