"""The metric catalogue: ``metrics/*.yaml`` declares fact tables, unit tables and metrics once.

A team describes where its facts live and what each metric means; every experiment whose
source is a warehouse (its own Postgres tables) or the demo world names catalogue metrics
instead of columns. The catalogue is compiled to SQL by :mod:`liftlab.sources.compile`.

```yaml
fact_tables:
  orders: {table: analytics.orders, unit: user_id, timestamp: created_at}
unit_tables:            # attributes of a unit (dimensions, covariates, uplift features)
  users: {table: analytics.users, unit: user_id, columns: [country, plan, signup_days]}
metrics:
  orders_7d:    {fact: orders, aggregate: count, where: {status: paid}, window_days: 7}
  revenue_7d:   {fact: orders, aggregate: sum, column: amount, where: {status: paid}, window_days: 7, cap_quantile: 0.99}
  purchased_7d: {fact: orders, aggregate: any, where: {status: paid}, window_days: 7}
  aov_7d:       {ratio: [revenue_7d, orders_7d]}
  p90_latency:  {fact: page_views, aggregate: quantile, column: latency_ms, q: 0.9}
```

Semantics (GrowthBook's fact metrics and Eppo's metric definitions, see ``docs/own_data.md``):

* ``aggregate`` per unit over the fact rows matching ``where`` inside the metric's window:
  ``count`` (rows), ``sum`` (of ``column``), ``any`` (1 if a row exists, else 0),
  ``count_distinct_days`` (UTC days with a row), ``max`` (of ``column``, 0 without rows) —
  the *unit-level* metrics; ``quantile`` — the ``q`` quantile of ``column`` over the pooled rows
  of an arm (an event-level quantile, e.g. p90 latency), not a unit-level value.
* ``window_days: k`` — rows with timestamp in ``[first exposure, first exposure + k days)``;
  absent — ``[first exposure, end of the experiment's end_date]``. A date-typed timestamp
  (a daily rollup) is windowed by days: ``[exposure date, exposure date + k)``.
* Every unit-level metric ``m`` has a **pre-period twin** ``pre_m``: the same definition over
  ``[first exposure − pre_period_days, first exposure)``, the CUPED covariate of ``m``.
* ``cap_quantile: p`` — winsorize ``m`` at the ``p`` quantile of ``pre_m`` (scaled to the
  window's length), fixed before any outcome is seen; ``cap_value`` — at a fixed value.
* ``ratio: [numerator, denominator]`` — Σ numerator / Σ denominator over the units of an arm
  (delta method); both parts are unit-level metrics.
* ``where`` — ``column: value`` (equality), ``column: [v1, v2]`` (one of), or
  ``column: {gt|gte|lt|lte|ne|eq: value}`` / ``{in: […]}`` / ``{not_in: […]}`` /
  ``{is_null: true|false}``. Values are always bound as parameters; names are validated
  identifiers quoted with ``psycopg.sql.Identifier``.

Problems are reported as ``<file>: <key>: <message>``, all at once. No I/O beyond reading the
YAML files; no Dagster.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from liftlab import config

IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"
QUALIFIED = r"^[a-z_][a-z0-9_]{0,62}\.[a-z_][a-z0-9_]{0,62}$"
#: Prefix of the pre-period twins (``pre_orders_7d``); a catalogue metric may not use it.
PRE = "pre_"

Aggregate = Literal["count", "sum", "any", "count_distinct_days", "max", "quantile"]
#: Aggregates that give one value per unit (and so a pre-period twin, CUPED, caps, ratios).
UNIT_AGGREGATES = ("count", "sum", "any", "count_distinct_days", "max")
#: Aggregates that need a ``column``.
COLUMN_AGGREGATES = ("sum", "max", "quantile")
Direction = Literal["higher_is_better", "lower_is_better"]
Scalar = str | int | float | bool
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "is_null")


class CatalogueError(ValueError):
    """The catalogue could not be loaded or a name is unknown; the message names file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Ident = Annotated[str, Field(pattern=IDENTIFIER)]
Table = Annotated[str, Field(pattern=QUALIFIED, description="schema.name")]


def check_where(where: dict) -> dict:
    """Validate a ``where`` mapping: identifiers for columns, scalars (or lists) for values."""
    import re

    for column, value in where.items():
        if not isinstance(column, str) or not re.fullmatch(IDENTIFIER, column):
            raise ValueError(f"where: column name {column!r} must match {IDENTIFIER}")
        if isinstance(value, dict):
            if len(value) != 1:
                raise ValueError(f"where.{column}: one operator per column, got {sorted(value)}")
            op, operand = next(iter(value.items()))
            if op not in OPERATORS:
                raise ValueError(f"where.{column}: unknown operator {op!r}; use one of {list(OPERATORS)}")
            if op in ("in", "not_in"):
                if not isinstance(operand, list) or not operand or not all(_scalar(v) for v in operand):
                    raise ValueError(f"where.{column}.{op}: expected a non-empty list of values")
            elif op == "is_null":
                if not isinstance(operand, bool):
                    raise ValueError(f"where.{column}.is_null: expected true or false")
            elif not _scalar(operand):
                raise ValueError(f"where.{column}.{op}: expected one value, got {operand!r}")
        elif isinstance(value, list):
            if not value or not all(_scalar(v) for v in value):
                raise ValueError(f"where.{column}: expected a value or a non-empty list of values")
        elif not _scalar(value):
            raise ValueError(f"where.{column}: expected a value, a list or {{operator: value}}, got {value!r}")
    return where


def _scalar(value) -> bool:
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return False
    if isinstance(value, str) and "\x00" in value:
        return False
    return isinstance(value, str | int | float | bool)


class FactTable(_Strict):
    """A table (or view) of facts: one row per event, order, page view, daily rollup …"""

    #: The table or view, ``schema.name``.
    table: Table
    #: Column holding the unit id (matched to the assignments' unit).
    unit: Ident
    #: The fact's time: a timestamp (windowed by time) or a date (a daily rollup, windowed by days).
    timestamp: Ident
    #: What the table holds, for people reading the catalogue.
    description: str = ""
    #: Team or person responsible for the table.
    owner: str = ""


class UnitTable(_Strict):
    """Attributes of a unit (country, plan, tenure …): dimensions, covariates, uplift features."""

    #: The table or view, ``schema.name``.
    table: Table
    #: Column holding the unit id (matched to the assignments' unit).
    unit: Ident
    #: Attribute columns, usable as dimensions, covariates and uplift features.
    columns: Annotated[list[Ident], Field(min_length=1)]
    #: Optional validity time of a row: the row in force at the unit's first exposure is used.
    timestamp: Ident | None = None
    #: What the table holds, for people reading the catalogue.
    description: str = ""


class Metric(_Strict):
    #: The fact table (a ``fact_tables`` name) aggregated; not with ``ratio``.
    fact: Ident | None = None
    #: How a unit's fact rows in the window are aggregated (see the semantics above).
    aggregate: Aggregate | None = None
    #: The column aggregated: required by sum, max and quantile, refused by the others.
    column: Ident | None = None
    #: Filter on the fact rows: ``column: value``, a list of values, or ``{operator: value}``.
    where: dict[str, Scalar | list[Scalar] | dict[str, Scalar | list[Scalar]]] = {}
    #: Rows in [first exposure, first exposure + k days); absent → up to the end of end_date.
    window_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    #: Quantile level of aggregate quantile (0.9 = p90), and only of it.
    q: Annotated[float, Field(gt=0, lt=1)] | None = None
    #: Winsorize at this quantile of the pre-period twin, fixed before any outcome is seen.
    cap_quantile: Annotated[float, Field(gt=0.5, lt=1)] | None = None
    #: Winsorize at this fixed value (instead of ``cap_quantile``).
    cap_value: float | None = None
    #: [numerator, denominator]: Σ numerator / Σ denominator over an arm's units (delta method).
    ratio: Annotated[list[Ident], Field(min_length=2, max_length=2)] | None = None
    #: The metric's good direction.
    direction: Direction = "higher_is_better"
    #: What the metric means, for people reading the catalogue.
    description: str = ""
    #: Team or person responsible for the metric.
    owner: str = ""

    @field_validator("where")
    @classmethod
    def _where(cls, value: dict) -> dict:
        return check_where(value)

    @model_validator(mode="after")
    def _shape(self) -> Metric:
        if self.ratio is not None:
            extra = [k for k in ("fact", "aggregate", "column", "window_days", "q", "cap_quantile", "cap_value")
                     if getattr(self, k) is not None] + (["where"] if self.where else [])
            if extra:
                raise ValueError(f"a ratio metric takes only ratio, direction, description and owner, not {extra} "
                                 "(declare them on its numerator and denominator)")
            return self
        if self.fact is None or self.aggregate is None:
            raise ValueError("a metric needs either ratio: [numerator, denominator] or fact and aggregate")
        if self.aggregate in COLUMN_AGGREGATES and self.column is None:
            raise ValueError(f"aggregate {self.aggregate!r} needs a column")
        if self.aggregate not in COLUMN_AGGREGATES and self.column is not None:
            raise ValueError(f"aggregate {self.aggregate!r} takes no column (it counts rows)")
        if (self.aggregate == "quantile") != (self.q is not None):
            raise ValueError("q (the quantile level, e.g. 0.9) goes with aggregate: quantile, and only with it")
        if self.aggregate in ("any", "quantile", "count_distinct_days") and (self.cap_quantile or self.cap_value is not None):
            raise ValueError(f"a cap on aggregate {self.aggregate!r} changes nothing; remove it")
        if self.cap_quantile is not None and self.cap_value is not None:
            raise ValueError("cap_quantile or cap_value, not both")
        return self

    @property
    def unit_level(self) -> bool:
        """One value per unit (everything but quantiles; ratios are built from unit-level parts)."""
        return self.aggregate in UNIT_AGGREGATES


@dataclass(frozen=True)
class Catalogue:
    """Every fact table, unit table and metric of ``metrics/``, with the file each came from.

    An entry with a problem (an unknown fact table, a ratio cycle, a bad field) is listed in
    ``broken`` with its message: an experiment that uses it fails when its units are built,
    naming the file and key, while the experiments that do not use it go on.
    """

    #: Fact tables by name (the ``fact_tables:`` key of a catalogue file): where the facts live.
    fact_tables: dict[str, FactTable] = field(default_factory=dict)
    #: Unit tables by name (the ``unit_tables:`` key): attributes of a unit, fixed at first exposure.
    unit_tables: dict[str, UnitTable] = field(default_factory=dict)
    #: Metrics by name (the ``metrics:`` key): what experiments name as primary, secondary, guardrail.
    metrics: dict[str, Metric] = field(default_factory=dict)
    #: "fact_tables.orders" / "metrics.orders_7d" → file that declares it (for messages).
    origin: dict[str, Path] = field(default_factory=dict)
    #: "metrics.orders_7d" → what is wrong with it (file and key included).
    broken: dict[str, str] = field(default_factory=dict)
    sha256: str = ""

    def problems_of(self, metrics) -> list[str]:
        """The problems of these metrics, of their ratio parts and of their fact tables."""
        out: list[str] = []
        todo, seen = list(metrics), set()
        while todo:
            name = todo.pop(0)
            if name in seen:
                continue
            seen.add(name)
            out += [self.broken[f"metrics.{name}"]] if f"metrics.{name}" in self.broken else []
            metric = self.metrics.get(name)
            if metric is not None and metric.ratio:
                todo += list(metric.ratio)
            if metric is not None and metric.fact and f"fact_tables.{metric.fact}" in self.broken:
                out.append(self.broken[f"fact_tables.{metric.fact}"])
        return list(dict.fromkeys(out))

    def metric(self, name: str) -> Metric:
        if name not in self.metrics:
            if f"metrics.{name}" in self.broken:
                raise CatalogueError(self.broken[f"metrics.{name}"])
            raise CatalogueError(f"unknown metric {name!r}; the catalogue ({_dir_label()}) declares {sorted(self.metrics)}")
        return self.metrics[name]

    def where_declared(self, kind: str, name: str) -> str:
        path = self.origin.get(f"{kind}.{name}")
        return f"{path}: {kind}.{name}" if path else f"{kind}.{name}"

    def parts(self, name: str) -> tuple[str, ...]:
        """The unit-level metrics a metric is computed from (itself, or a ratio's two parts)."""
        m = self.metric(name)
        return tuple(m.ratio) if m.ratio else (name,)

    def is_unit_level(self, name: str) -> bool:
        return self.metric(name).unit_level

    def unit_column_names(self) -> dict[str, str]:
        """unit-table column → the unit table that declares it."""
        out: dict[str, str] = {}
        for table_name, table in self.unit_tables.items():
            for column in table.columns:
                out.setdefault(column, table_name)
        return out


def _dir_label() -> str:
    return str(config.metrics_dir())


def _validate_references(catalogue: Catalogue) -> dict[str, str]:
    """Cross-entry checks: facts exist, ratio parts are unit-level metrics, no cycles, no clash."""
    problems: dict[str, str] = {}
    where = catalogue.where_declared

    def flag(key: str, text: str) -> None:
        problems.setdefault(key, text)

    for name, metric in catalogue.metrics.items():
        key = f"metrics.{name}"
        if name.startswith(PRE):
            flag(key, f"{where('metrics', name)}: the prefix {PRE!r} is reserved for pre-period twins "
                      f"({PRE}<metric>); rename the metric")
        if metric.fact is not None and metric.fact not in catalogue.fact_tables:
            flag(key, f"{where('metrics', name)}.fact: unknown fact table {metric.fact!r}; "
                      f"declared: {sorted(catalogue.fact_tables)}")
        for i, part in enumerate(metric.ratio or []):
            other = catalogue.metrics.get(part)
            if other is None:
                flag(key, f"{where('metrics', name)}.ratio.{i}: unknown metric {part!r}")
            elif other.ratio is not None:
                chain = _ratio_cycle(catalogue, name)
                flag(key, f"{where('metrics', name)}.ratio: ratio metrics form a cycle: {' → '.join(chain)}" if chain
                     else f"{where('metrics', name)}.ratio.{i}: {part!r} is a ratio; both parts of a ratio must be "
                          "unit-level metrics (count, sum, any, count_distinct_days, max)")
            elif not other.unit_level:
                flag(key, f"{where('metrics', name)}.ratio.{i}: {part!r} is a quantile, not a unit-level metric")
    for column, table in catalogue.unit_column_names().items():
        if column in catalogue.metrics:
            flag(f"unit_tables.{table}", f"{where('unit_tables', table)}.columns: {column!r} is also a metric name; "
                                         "rename one")
    return problems


def _ratio_cycle(catalogue: Catalogue, start: str) -> list[str]:
    """The ratio chain from ``start`` back to itself, if there is one."""
    path, seen = [start], {start}
    frontier = [(start, [start])]
    while frontier:
        name, path = frontier.pop()
        metric = catalogue.metrics.get(name)
        for part in (metric.ratio or []) if metric else []:
            if part == start:
                return [*path, part]
            if part not in seen:
                seen.add(part)
                frontier.append((part, [*path, part]))
    return []


def _key(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def load_catalogue(directory: Path | None = None, strict: bool = False) -> Catalogue:
    """Load every ``*.yaml``/``*.yml`` of ``directory`` (default ``metrics/``).

    A missing folder is an empty catalogue (a deployment with only file and table sources).
    A file that is not YAML or not a mapping makes the catalogue unusable (:class:`CatalogueError`);
    a bad entry is kept out (or flagged) in ``broken`` so that only the experiments using it fail
    — unless ``strict`` (``liftlab validate``, ``liftlab metrics check``), which raises on any
    problem, all listed at once with their file and key.
    """
    directory = directory or config.metrics_dir()
    if directory.exists() and not directory.is_dir():
        raise CatalogueError(f"{directory}: not a folder (LIFTLAB_METRICS_DIR)")
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]) if directory.is_dir() else []
    fatal: list[str] = []
    broken: dict[str, str] = {}
    merged: dict[str, dict] = {"fact_tables": {}, "unit_tables": {}, "metrics": {}}
    models = {"fact_tables": FactTable, "unit_tables": UnitTable, "metrics": Metric}
    origin: dict[str, Path] = {}
    digest = hashlib.sha256()
    for path in files:
        raw = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + raw)
        try:
            data = yaml.safe_load(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            fatal.append(f"{path}: (file): not UTF-8 at byte {exc.start}")
            continue
        except (yaml.YAMLError, RecursionError) as exc:
            fatal.append(f"{path}: not valid YAML: {exc}")
            continue
        if data is None:
            continue
        unknown = sorted(set(data) - set(models)) if isinstance(data, dict) else None
        if unknown is None or unknown:
            fatal.append(f"{path}: (top level): expected a mapping with fact_tables, unit_tables and metrics"
                         + (f", not {unknown}" if unknown else ""))
            continue
        for kind, model in models.items():
            entries = data.get(kind) or {}
            if not isinstance(entries, dict):
                fatal.append(f"{path}: {kind}: expected a mapping of names to definitions")
                continue
            for name, body in entries.items():
                key = f"{kind}.{name}"
                if not isinstance(name, str) or not re.fullmatch(IDENTIFIER, name):
                    fatal.append(f"{path}: {kind}: name {name!r} must match {IDENTIFIER}")
                    continue
                if name in merged[kind] or key in broken:
                    broken[key] = f"{path}: {key}: declared twice (also in {origin.get(key)})"
                    merged[kind].pop(name, None)
                    continue
                origin[key] = path
                try:
                    merged[kind][name] = model.model_validate(body if isinstance(body, dict) else {"_": body})
                except ValidationError as exc:
                    broken[key] = "\n".join(f"{path}: {key}.{_key(err['loc'])}".rstrip(".") + f": {err['msg']}"
                                            for err in exc.errors())
    if fatal:
        raise CatalogueError("\n".join(fatal))
    catalogue = Catalogue(**merged, origin=origin, broken=broken, sha256=digest.hexdigest())
    broken.update({k: v for k, v in _validate_references(catalogue).items() if k not in broken})
    if strict and broken:
        raise CatalogueError("\n".join(broken.values()))
    return catalogue
