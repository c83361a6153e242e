"""Experiment specs: the YAML files in ``experiments/`` that declare what to analyse.

A spec names the variants and their planned allocation, the baseline, the dates, the primary
and secondary metrics, the guardrails (with the direction that counts as harm and a tolerance)
and the pre-period covariates, plus where the data comes from: the event stream
(``source: {kind: events}``) or a user-level file (CSV or Parquet) the user declares.

Every problem is reported as ``<file>: <key>: <message>`` so that the person who wrote the
spec knows exactly what to fix; identifiers that end up in SQL are validated here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from liftlab import config

IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"

#: Unit-level metrics available for experiments on the event stream (``marts.fct_unit_metrics``),
#: with the direction in which the metric improves.
EVENT_METRICS: dict[str, str] = {
    "converted": "higher_is_better",
    "ai_calls": "higher_is_better",
    "revenue": "higher_is_better",
    "sessions": "higher_is_better",
    "tasks_completed": "higher_is_better",
    "support_tickets": "lower_is_better",
    "reactivated": "higher_is_better",
    "active_days": "higher_is_better",
}
EVENT_COVARIATES = (
    "pre_sessions",
    "pre_ai_calls",
    "pre_tasks_completed",
    "pre_support_tickets",
    "pre_revenue",
    "pre_active_days",
)

Direction = Literal["higher_is_better", "lower_is_better"]
ColumnType = Literal["integer", "float", "string", "boolean"]


class SpecError(ValueError):
    """A spec (or several) could not be loaded; the message names file and key."""


class _KeyedError(ValueError):
    """A cross-field problem that knows which spec key it is about."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variant(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    allocation: Annotated[float, Field(gt=0, le=1)]


class Guardrail(_Strict):
    metric: str
    direction: Direction = "higher_is_better"
    #: Non-inferiority margin, relative to the baseline mean (0.02 = 2 % worse is tolerated).
    tolerance: Annotated[float, Field(ge=0, le=1)] = 0.02


class EventSource(_Strict):
    kind: Literal["events"] = "events"


class FileSource(_Strict):
    """A user-level file: one row per unit, a variant column, outcomes and covariates."""

    kind: Literal["file"] = "file"
    path: str
    format: Literal["csv", "parquet"] = "csv"
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    #: Column holding the unit id; None means the row number (1-based) is the unit.
    unit_column: str | None = None
    variant_column: str
    columns: dict[str, ColumnType]
    outcomes: list[str]

    @field_validator("columns")
    @classmethod
    def _column_names(cls, value: dict[str, ColumnType]) -> dict[str, ColumnType]:
        import re

        for name in value:
            if not re.match(IDENTIFIER, name):
                raise ValueError(f"column name {name!r} must match {IDENTIFIER}")
        return value

    @model_validator(mode="after")
    def _declared(self) -> FileSource:
        for key in [self.variant_column, *self.outcomes, *([self.unit_column] if self.unit_column else [])]:
            if key not in self.columns:
                raise ValueError(f"{key!r} is used but not declared in columns")
        return self

    def resolved_path(self, spec_file: Path) -> Path:
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else (spec_file.parent / path).resolve()


class ExperimentSpec(_Strict):
    id: Annotated[str, Field(pattern=IDENTIFIER)]
    name: str | None = None
    hypothesis: Annotated[str, Field(min_length=1)]
    owner: str = "experimentation"
    design: Literal["randomized", "observational", "staggered_rollout"] = "randomized"
    unit: str = "user"
    variants: Annotated[list[Variant], Field(min_length=2)]
    baseline: str
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    pre_period_days: Annotated[int, Field(ge=0, le=365)] = 14
    primary_metric: str
    primary_direction: Direction = "higher_is_better"
    secondary_metrics: list[str] = []
    guardrails: list[Guardrail] = []
    covariates: list[str] = []
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    power: Annotated[float, Field(gt=0, lt=1)] = 0.8
    #: Smallest relative effect worth detecting on the primary metric (planning and practical significance).
    mde: Annotated[float, Field(gt=0)] | None = None
    source: Annotated[EventSource | FileSource, Field(discriminator="kind")] = EventSource()

    @field_validator("variants")
    @classmethod
    def _allocations(cls, variants: list[Variant]) -> list[Variant]:
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        total = sum(v.allocation for v in variants)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"allocations must sum to 1, they sum to {total:g}")
        return variants

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        names = [v.name for v in self.variants]
        if self.baseline not in names:
            raise _KeyedError("baseline", f"baseline {self.baseline!r} is not one of the variants {names}")
        if self.source.kind == "events":
            for key in ("start_date", "end_date"):
                if getattr(self, key) is None:
                    raise _KeyedError(key, f"{key} is required for experiments on the event stream")
            known, covariates = EVENT_METRICS, EVENT_COVARIATES
        else:
            known, covariates = {m: "higher_is_better" for m in self.source.outcomes}, tuple(self.source.columns)
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise _KeyedError("end_date", f"end_date {self.end_date} is before start_date {self.start_date}")
        used = [("primary_metric", self.primary_metric)]
        used += [(f"secondary_metrics.{i}", m) for i, m in enumerate(self.secondary_metrics)]
        used += [(f"guardrails.{i}.metric", g.metric) for i, g in enumerate(self.guardrails)]
        for key, metric in used:
            if metric not in known:
                raise _KeyedError(key, f"unknown metric {metric!r}; known metrics: {sorted(known)}")
        for i, covariate in enumerate(self.covariates):
            if covariate not in covariates:
                raise _KeyedError(f"covariates.{i}", f"unknown covariate {covariate!r}; known: {sorted(covariates)}")
        return self

    @property
    def allocation(self) -> dict[str, float]:
        return {v.name: v.allocation for v in self.variants}

    @property
    def pre_start_date(self) -> dt.date | None:
        return self.start_date - dt.timedelta(days=self.pre_period_days) if self.start_date else None

    def metric_roles(self) -> dict[str, str]:
        """metric → primary / secondary / guardrail (a metric keeps its first role)."""
        roles = {self.primary_metric: "primary"}
        for metric in self.secondary_metrics:
            roles.setdefault(metric, "secondary")
        for guardrail in self.guardrails:
            roles.setdefault(guardrail.metric, "guardrail")
        return roles

    def direction(self, metric: str) -> str:
        if metric == self.primary_metric:
            return self.primary_direction
        for guardrail in self.guardrails:
            if guardrail.metric == metric:
                return guardrail.direction
        return EVENT_METRICS.get(metric, "higher_is_better")


@dataclass(frozen=True)
class LoadedSpec:
    spec: ExperimentSpec
    path: Path
    sha256: str


def _key(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_spec(text: str, path: Path) -> ExperimentSpec:
    """Parse one spec; raise SpecError naming the file and the offending key."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: (top level): expected a mapping of spec keys")
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, _KeyedError):
                problems.append(f"{path}: {cause.key}: {cause}")
            else:
                problems.append(f"{path}: {_key(err['loc'])}: {err['msg']}")
        raise SpecError("\n".join(problems)) from None


def load_specs(directory: Path | None = None) -> list[LoadedSpec]:
    """Load and validate every ``*.yaml``/``*.yml`` in ``directory``; all problems in one error."""
    directory = directory or config.experiments_dir()
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    loaded: list[LoadedSpec] = []
    problems: list[str] = []
    seen: dict[str, Path] = {}
    for path in files:
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"{path}: (file): not UTF-8 at byte {exc.start}")
            continue
        try:
            spec = parse_spec(text, path)
        except SpecError as exc:
            problems.append(str(exc))
            continue
        if spec.id in seen:
            problems.append(f"{path}: id: duplicate experiment id {spec.id!r} (also in {seen[spec.id]})")
            continue
        seen[spec.id] = path
        loaded.append(LoadedSpec(spec=spec, path=path, sha256=hashlib.sha256(raw).hexdigest()))
    if problems:
        raise SpecError("\n".join(problems))
    return loaded
