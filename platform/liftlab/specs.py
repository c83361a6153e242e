"""Experiment specs: the YAML files in ``experiments/`` that declare what to analyse.

A spec names the variants and their planned allocation, the baseline, the dates, the primary
and secondary metrics, the guardrails (with the direction that counts as harm and a tolerance)
and the pre-period covariates, plus where the data comes from (``source``):

* ``warehouse`` — the team's own Postgres tables: an assignments (exposure) table or query,
  and the fact tables of the metric catalogue (``metrics/*.yaml``, :mod:`liftlab.catalogue`);
* ``demo`` — the synthetic SaaS world, analysed like a warehouse over its own tables;
* ``table`` — a unit-level table or view (one row per unit), read in place;
* ``file`` — a unit-level CSV or Parquet file, loaded into ``raw.src_<id>``.

Warehouse and demo specs name catalogue metrics; table and file specs name their columns.

Every problem is reported as ``<file>: <key>: <message>`` so that the person who wrote the
spec knows exactly what to fix; identifiers that end up in SQL are validated here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator,
)

from liftlab import config

IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"
QUALIFIED = r"^[a-z_][a-z0-9_]{0,62}\.[a-z_][a-z0-9_]{0,62}$"

Direction = Literal["higher_is_better", "lower_is_better"]
ColumnType = Literal["integer", "float", "string", "boolean"]


#: Longest experiment id: its units go to ``raw.src_<id>`` or ``units.<id>`` (63-character names).
MAX_FILE_ID_LENGTH = 63 - len("src_")


def _first_nul(value, key: str = "") -> str | None:
    """Dotted key of the first string (or mapping key) holding a NUL character, else None."""
    if isinstance(value, str):
        return key or "(top level)" if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _first_nul(k, key) or _first_nul(v, f"{key}.{k}" if key else str(k))
            if found:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _first_nul(v, f"{key}.{i}" if key else str(i))
            if found:
                return found
    return None


class _LazyCatalogue:
    """The default catalogue, loaded on first use (file-only deployments never read metrics/)."""

    def __init__(self) -> None:
        self._loaded = None
        self.error = None

    @property
    def resolved(self):
        from liftlab.catalogue import CatalogueError, load_catalogue

        if self._loaded is None and self.error is None:
            try:
                self._loaded = load_catalogue()
            except CatalogueError as exc:
                self.error = exc
        if self.error is not None:
            raise self.error
        return self._loaded


class SpecError(ValueError):
    """A spec (or several) could not be loaded; the message names file and key."""


class _KeyedError(ValueError):
    """A cross-field problem that knows which spec key it is about."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class _Strict(BaseModel):
    # allow_inf_nan=False: YAML's .nan/.inf would pass gt/ge bounds (inf) or reach the statistics
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Variant(_Strict):
    #: Arm label, as it appears in the data (the variant column, or the assignments' variant).
    name: Annotated[str, Field(min_length=1, max_length=100)]
    #: Planned share of units; the shares sum to 1 (the sample-ratio gate tests against them).
    allocation: Annotated[float, Field(gt=0, le=1)]


class Guardrail(_Strict):
    #: A metric the treatment must not harm beyond ``tolerance`` (a catalogue metric, an outcome
    #: or a ratio metric).
    metric: str
    #: The direction in which the guardrail metric is good; absent → the catalogue's, else higher.
    direction: Direction | None = None
    #: Non-inferiority margin, relative to the baseline mean (0.02 = 2 % worse is tolerated).
    tolerance: Annotated[float, Field(ge=0, le=1)] = 0.02


class RatioMetric(_Strict):
    """A ratio of unit sums, e.g. revenue per session = Σ revenue / Σ sessions (delta method)."""

    #: Name of the ratio, usable as primary, secondary or guardrail metric.
    name: Annotated[str, Field(pattern=IDENTIFIER)]
    #: Outcome summed over an arm's units (Σ numerator).
    numerator: str
    #: Outcome summed over an arm's units (Σ denominator).
    denominator: str
    #: The ratio's good direction.
    direction: Direction = "higher_is_better"


Ident = Annotated[str, Field(pattern=IDENTIFIER)]
#: Name of an environment variable holding a postgresql:// URL (never the URL itself: secrets
#: stay in the environment).
EnvVar = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")]


class _UnitColumns(_Strict):
    """A unit-level source (a file or a table): one row per unit, a variant column, outcomes."""

    #: Column holding the unit id; None means the row number (1-based) is the unit (files only).
    unit_column: str | None = None
    #: Column holding each unit's arm (its values are the variant names).
    variant_column: str
    #: Every column used, with its type; the data is checked against them before use.
    columns: dict[str, ColumnType]
    #: Columns measured after exposure: the metrics of this source.
    outcomes: list[str]

    @field_validator("columns")
    @classmethod
    def _column_names(cls, value: dict[str, ColumnType]) -> dict[str, ColumnType]:
        import re

        for name in value:
            # fullmatch: re.match's ``$`` would also accept a trailing newline ("arm\n")
            if not re.fullmatch(IDENTIFIER, name):
                raise ValueError(f"column name {name!r} must match {IDENTIFIER}")
        return value

    @model_validator(mode="after")
    def _declared(self):
        for key in [self.variant_column, *self.outcomes, *([self.unit_column] if self.unit_column else [])]:
            if key not in self.columns:
                raise ValueError(f"{key!r} is used but not declared in columns")
        return self


class FileSource(_UnitColumns):
    """A user-level file (CSV or Parquet), loaded into ``raw.src_<id>``."""

    #: Selects this source: a unit-level CSV or Parquet file.
    kind: Literal["file"] = "file"
    #: The file; a relative path is relative to the spec file.
    path: str
    #: How the file is read.
    format: Literal["csv", "parquet"] = "csv"
    #: Hex SHA-256 of the file; when given, a file with another checksum is refused.
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None

    @model_validator(mode="after")
    def _reserved(self) -> FileSource:
        # raw.src_<id> stores the unit id as unit_id and the arm as variant
        for reserved, role in (("unit_id", self.unit_column), ("variant", self.variant_column)):
            if reserved in self.columns and role != reserved:
                raise ValueError(f"column name {reserved!r} is reserved for the "
                                 f"{'unit' if reserved == 'unit_id' else 'variant'} column; rename it")
        return self

    def resolved_path(self, spec_file: Path) -> Path:
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else (spec_file.parent / path).resolve()


class TableSource(_UnitColumns):
    """A unit-level table or view in Postgres, read in place (never copied), the twin of ``file``."""

    #: Selects this source: a unit-level table or view, read in place.
    kind: Literal["table"] = "table"
    #: Environment variable with the URL of the database holding the table; absent → liftlab's
    #: own database.
    connection: EnvVar | None = None
    #: The table or view, ``schema.name``.
    table: Annotated[str, Field(pattern=QUALIFIED)]
    #: Column holding the unit id (required: a table has no row numbers).
    unit_column: str  # a table has no row numbers

    @model_validator(mode="after")
    def _distinct_roles(self) -> TableSource:
        if self.unit_column == self.variant_column:
            raise ValueError("unit_column and variant_column must differ")
        return self


class Assignments(_Strict):
    """Where exposures come from: a table (or a read-only query) with one row per assignment."""

    #: The assignments table or view, ``schema.name``; or give ``sql`` instead.
    table: Annotated[str, Field(pattern=QUALIFIED)] | None = None
    #: Instead of ``table``: one read-only select (no ``;``), wrapped as a subquery.
    sql: Annotated[str, Field(min_length=1, max_length=100_000)] | None = None
    #: Column holding the unit id.
    unit: Ident
    #: Column holding the arm (its values are the variant names).
    variant: Ident
    #: Column holding the exposure time: a unit is first exposed in [start_date, end of end_date].
    timestamp: Ident
    #: column = value (or list of values) pairs; values are bound as parameters.
    where: dict[str, Any] = {}

    @field_validator("where")
    @classmethod
    def _where(cls, value: dict) -> dict:
        from liftlab.catalogue import check_where

        return check_where(value)

    @model_validator(mode="after")
    def _one_relation(self) -> Assignments:
        if (self.table is None) == (self.sql is None):
            raise ValueError("give either table: schema.name or sql: \"select …\" (not both)")
        if self.sql is not None and ";" in self.sql.strip().rstrip(";"):
            raise ValueError("sql: one select statement, without ';' (it is wrapped as a read-only subquery)")
        return self

    @property
    def relation_label(self) -> str:
        return self.table or "(assignments sql)"


class WarehouseSource(_Strict):
    """A team's own tables: assignments (exposures) plus the catalogue's fact tables."""

    #: Selects this source: the team's own tables and the metric catalogue.
    kind: Literal["warehouse"] = "warehouse"
    #: Environment variable with the URL of the database to read; absent → liftlab's own database.
    connection: EnvVar | None = None
    #: Where the exposures come from.
    assignments: Assignments


class DemoSource(_Strict):
    """The synthetic SaaS world (``liftlab demo``): generated when a spec uses it, analysed like a
    warehouse over its own tables (``liftlab.synth.tables``) and the ``metrics/`` catalogue."""

    #: Selects this source: the synthetic SaaS world.
    kind: Literal["demo"] = "demo"


Source = Annotated[FileSource | TableSource | WarehouseSource | DemoSource, Field(discriminator="kind")]
#: Source kinds whose metrics come from the catalogue (exposure timestamps, fact tables).
CATALOGUE_KINDS = ("warehouse", "demo")


UpliftLearner = Literal[
    "s_learner", "t_learner", "x_learner", "r_learner", "dr_learner", "class_transformation", "single_feature_rule",
]
UPLIFT_LEARNERS: tuple[str, ...] = get_args(UpliftLearner)


class UpliftSpec(_Strict):
    """Uplift modelling and targeting (optional ``uplift:`` block; absent → not modelled).

    ``features`` must be measured before exposure: for warehouse and demo experiments the
    unit-table attributes, the dimensions and the pre-period twins ``pre_<metric>``; for a file
    or table source, the spec's ``covariates`` plus the columns listed in ``pre_treatment``.
    Outcomes, the variant and the unit id are always refused.
    """

    #: Outcomes to model (binary 0/1 → classifiers, else regressors); the first is the primary.
    outcomes: Annotated[list[str], Field(min_length=1)]
    #: Pre-treatment features; empty → every allowed feature.
    features: list[str] = []
    #: File and table sources only: extra declared columns that are measured before exposure.
    pre_treatment: list[str] = []
    #: Arms modelled against the baseline (each arm vs control); empty → every non-baseline arm.
    arms: list[str] = []
    #: Uplift learners fitted and compared (Qini, AUUC); absent → all of them.
    learners: Annotated[list[UpliftLearner], Field(min_length=1)] = list(UPLIFT_LEARNERS)
    #: Gradient-boosting library the learners' models are built with.
    base_model: Literal["lightgbm", "xgboost", "hist_gradient_boosting"] = "lightgbm"
    #: Cost of one contact (e.g. sending one e-mail), in the currency of the values.
    cost_per_contact: Annotated[float, Field(ge=0)] = 0.0
    #: Value of one incremental conversion: a number for every outcome, or outcome → value.
    value_per_conversion: Annotated[float, Field(ge=0)] | dict[str, Annotated[float, Field(ge=0)]] = 1.0
    #: Cross-fitting folds K: every unit is scored by the models fitted on the other K − 1
    #: folds (stratified by arm × primary outcome) and evaluated out of fold.
    folds: Annotated[int, Field(ge=2, le=10)] = 2
    #: Repetitions of the K-fold deal (other seeds); a unit's score is the mean of its R
    #: out-of-fold predictions (averages away model variance).
    repeats: Annotated[int, Field(ge=1, le=20)] = 3
    #: Seed of the fold deals, the models and the bootstrap (the same spec, the same scores).
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 20261122  # numpy and scikit-learn take 32-bit seeds
    #: Bootstrap draws for the uncertainty of the evaluation (Qini, AUUC, targeting vs blanket).
    n_bootstrap: Annotated[int, Field(ge=0, le=5000)] = 200
    #: |predicted uplift| above which a unit is a persuadable (+) or a sleeping dog (−).
    segment_min_uplift: Annotated[float, Field(ge=0)] = 0.05

    def value_of(self, outcome: str) -> float:
        if isinstance(self.value_per_conversion, dict):
            return float(self.value_per_conversion.get(outcome, 0.0))
        return float(self.value_per_conversion)


CausalEstimator = Literal["aipw", "ipw", "matching", "regression"]


class SyntheticControlSpec(_Strict):
    #: The group (a value of ``causal.group``) that adopts alone, compared with a synthetic
    #: control built from the groups that never adopt.
    treated: Annotated[str, Field(min_length=1, max_length=200)]


class CausalSpec(_Strict):
    """How a launch that was not randomized is analysed (``design: observational`` or
    ``staggered_rollout``); absent → defaults below."""

    #: Observational: the treated arm, ``{variant: name}``; absent → the one non-baseline arm.
    treatment: dict[Literal["variant"], str] | None = None
    #: Observational: pre-treatment columns that explain who was treated (unit-table attributes,
    #: dimensions, pre-period twins ``pre_<metric>``; for a file or table, declared columns that are
    #: not outcomes); absent → the spec's ``covariates``. A post-treatment column is refused.
    confounders: list[str] = []
    #: Observational estimators to run; absent → all of them.
    estimators: Annotated[list[CausalEstimator], Field(min_length=1)] = ["aipw", "ipw", "matching", "regression"]
    #: Staggered rollout: the unit attribute (or dimension) whose groups adopt on different dates.
    group: Ident | None = None
    #: Staggered rollout: a group's adoption date is the first exposure of a treated unit in it.
    adoption: Literal["first_exposure"] = "first_exposure"
    #: Staggered rollout: one group that adopts alone, analysed by synthetic control.
    synthetic_control: SyntheticControlSpec | None = None


class ExperimentSpec(_Strict):
    #: Lower-case identifier; names the experiment's tables (``raw.src_<id>``, ``units.<id>``),
    #: partition and report.
    id: Annotated[str, Field(pattern=IDENTIFIER)]
    #: Title of the report; absent → the id.
    name: str | None = None
    #: What the change is expected to do, shown in the report.
    hypothesis: Annotated[str, Field(min_length=1)]
    #: Team or person responsible, shown in the report.
    owner: str = "experimentation"
    #: How units got their arm: randomized, or a launch that was not (see ``causal``).
    design: Literal["randomized", "observational", "staggered_rollout"] = "randomized"
    #: The arms (at least two) and their planned allocation.
    variants: Annotated[list[Variant], Field(min_length=2)]
    #: The control arm (a variant name); every other arm is compared with it.
    baseline: str
    #: First day of exposures; required for warehouse and demo sources.
    start_date: dt.date | None = None
    #: Last day of exposures (inclusive); required for warehouse and demo sources.
    end_date: dt.date | None = None
    #: Days before a unit's first exposure that its pre-period twins (``pre_<metric>``) cover.
    pre_period_days: Annotated[int, Field(ge=0, le=365)] = 14
    #: The metric the decision is about (a catalogue metric, an outcome or a ratio metric).
    primary_metric: str
    #: The primary metric's good direction; absent → the catalogue's, else higher is better.
    primary_direction: Direction | None = None
    #: More metrics to estimate and report; they do not enter the decision.
    secondary_metrics: list[str] = []
    #: Metrics that must not get worse beyond their tolerance; each can veto a SHIP.
    guardrails: list[Guardrail] = []
    #: Pre-treatment columns: balance gate, A/A calibration, CUPED (``pre_<metric>``), uplift features.
    covariates: list[str] = []
    #: Slices a stakeholder asks for: columns of the assignments or of a catalogue unit table
    #: (warehouse, demo), or declared columns (file, table); fixed at first exposure.
    dimensions: list[Ident] = []
    #: Units per arm below which a slice is reported, not estimated.
    slice_min_units: Annotated[int, Field(ge=2)] = 100
    #: Significance level; intervals are at 1 − alpha.
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    #: How looks are decided: ``sequential`` — at every look, before and after ``end_date``, on the
    #: always-valid confidence sequences (α split over the arms); ``fixed_horizon`` — once, from
    #: ``end_date`` on, on Holm-adjusted p values, never earlier. Absent → sequential for sources
    #: with exposure times (daily looks), fixed_horizon otherwise.
    inference: Literal["sequential", "fixed_horizon"] | None = None
    #: Target power at the MDE; below it, a null result says KEEP RUNNING.
    power: Annotated[float, Field(gt=0, lt=1)] = 0.8
    #: Smallest relative effect worth detecting on the primary metric (power planning).
    mde: Annotated[float, Field(gt=0)] | None = None
    #: Smallest relative improvement of the primary metric worth shipping (None: any significant win).
    practical_threshold: Annotated[float, Field(ge=0)] | None = None
    #: Where the units and their metrics come from; ``kind`` selects one of the forms below.
    source: Source
    #: File and table sources: ratio metrics of unit sums usable as primary/secondary/guardrail
    #: metrics (warehouse and demo experiments declare ratios in the catalogue).
    ratio_metrics: list[RatioMetric] = []
    #: CUPED rows (method 'cuped') for every metric with a pre-period covariate.
    cuped: bool = True
    #: metric → CUPED covariate column; defaults to the metric's pre-period twin (catalogue), or for a
    #: file/table source the covariate named ``pre_<metric>``.
    cuped_covariates: dict[str, str] = {}
    #: metric → percentile in (0.5, 1): cap the metric at that quantile of its pre-period values
    #: (scaled to the metric window's length), fixed before the experiment (catalogue metrics
    #: declare it as cap_quantile).
    winsorize: dict[str, Annotated[float, Field(gt=0.5, lt=1)]] = {}
    #: Confidence sequences are tightest around this many units (gbstats' tuning parameter).
    sequential_tuning: Annotated[float, Field(gt=0)] = 5000.0
    #: Standard deviation of the normal prior on the relative lift (Bayesian summary).
    prior_sd: Annotated[float, Field(gt=0)] = 0.3
    #: Uplift modelling and targeting; absent → not modelled.
    uplift: UpliftSpec | None = None
    #: Analysis of a launch that was not randomized (design observational or staggered_rollout).
    causal: CausalSpec | None = None

    _catalogue: Any = PrivateAttr(default=None)

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
    def _consistent(self, info: ValidationInfo) -> ExperimentSpec:
        names = [v.name for v in self.variants]
        nul = _first_nul(self.model_dump(mode="json"))
        if nul is not None:
            raise _KeyedError(nul, "contains a NUL character (\\x00), which Postgres cannot store")
        if len(self.id) > MAX_FILE_ID_LENGTH:
            raise _KeyedError("id", f"at most {MAX_FILE_ID_LENGTH} characters: the units go to a table named after "
                                    "the id (raw.src_<id>, units.<id>) and Postgres names have at most 63 characters")
        if self.baseline not in names:
            raise _KeyedError("baseline", f"baseline {self.baseline!r} is not one of the variants {names}")
        if self.uses_catalogue:
            from liftlab.catalogue import CatalogueError, load_catalogue

            catalogue = (info.context or {}).get("catalogue") if info is not None else None
            try:
                catalogue = catalogue if catalogue is not None else load_catalogue()
                catalogue = getattr(catalogue, "resolved", catalogue)
            except CatalogueError as exc:
                lazy = isinstance((info.context or {}).get("catalogue"), _LazyCatalogue)
                raise _KeyedError("source", "the metric catalogue does not load"
                                  + (" (its problems are listed once, below)" if lazy else f":\n{exc}")) from None
            object.__setattr__(self, "_catalogue", catalogue)
            for key in ("start_date", "end_date"):
                if getattr(self, key) is None:
                    raise _KeyedError(key, f"{key} is required for experiments with exposure timestamps "
                                           f"(source kind {self.source.kind})")
        known = self.known_metrics()
        base_metrics = ({m for m in known if self.ratio(m) is None} if self.uses_catalogue
                        else set(self.source.outcomes))
        covariates = self.known_covariates()
        for i, ratio in enumerate(self.ratio_metrics):
            if self.uses_catalogue:
                raise _KeyedError(f"ratio_metrics.{i}", "declare ratio metrics of a warehouse or demo source in the "
                                                        "catalogue (metrics/*.yaml: {ratio: [numerator, denominator]})")
            for part in ("numerator", "denominator"):
                if getattr(ratio, part) not in base_metrics:
                    raise _KeyedError(f"ratio_metrics.{i}.{part}", f"unknown metric {getattr(ratio, part)!r}; known metrics: {sorted(base_metrics)}")
            if ratio.name in base_metrics:
                raise _KeyedError(f"ratio_metrics.{i}.name", f"{ratio.name!r} is already a metric")
        for metric, covariate in self.cuped_covariates.items():
            if metric not in known:
                raise _KeyedError(f"cuped_covariates.{metric}", f"unknown metric {metric!r}; known metrics: {sorted(known)}")
            if covariate not in covariates:
                raise _KeyedError(f"cuped_covariates.{metric}", f"unknown covariate {covariate!r}; known: {sorted(covariates)}")
        for metric in self.winsorize:
            uncappable = self.uses_catalogue and metric in base_metrics and self.catalogue.metric(metric).aggregate in (
                "any", "count_distinct_days", "quantile")
            if uncappable:
                raise _KeyedError(f"winsorize.{metric}", f"{metric!r} is a {self.catalogue.metric(metric).aggregate}: "
                                                         "capping it changes nothing (cap sums, counts and maxima)")
            if metric not in base_metrics or self.metric_kind(metric) == "quantile":
                raise _KeyedError(f"winsorize.{metric}", f"can only winsorize a unit-level metric, not {metric!r}; known: {sorted(base_metrics)}")
            if self.pre_period_column(metric) is None:
                raise _KeyedError(f"winsorize.{metric}", f"{metric!r} has no pre-period value to fix the cap from; declare it in cuped_covariates")
        if self.start_date is not None and self.start_date - dt.date.min < dt.timedelta(days=self.pre_period_days):
            raise _KeyedError("start_date", f"{self.start_date} leaves no room for a {self.pre_period_days}-day pre-period")
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise _KeyedError("end_date", f"end_date {self.end_date} is before start_date {self.start_date}")
        used = [("primary_metric", self.primary_metric)]
        used += [(f"secondary_metrics.{i}", m) for i, m in enumerate(self.secondary_metrics)]
        used += [(f"guardrails.{i}.metric", g.metric) for i, g in enumerate(self.guardrails)]
        for key, metric in used:
            if metric not in known:
                if self.uses_catalogue and f"metrics.{metric}" in self.catalogue.broken:
                    raise _KeyedError(key, f"metric {metric!r} is invalid in the catalogue: "
                                           f"{self.catalogue.broken['metrics.' + metric]}")
                where = f"the catalogue ({self.catalogue_label()})" if self.uses_catalogue else "the source's outcomes"
                raise _KeyedError(key, f"unknown metric {metric!r}; known metrics ({where}): {sorted(known)}")
        for i, covariate in enumerate(self.covariates):
            if covariate not in covariates:
                raise _KeyedError(f"covariates.{i}", f"unknown covariate {covariate!r}; known: {sorted(covariates)}")
            # A file or table's pre-period column pairs with its outcome by name (pre_spend → spend);
            # one that pairs with nothing would leave CUPED silently off: say what to add.
            if (not self.uses_catalogue and self.cuped and covariate.startswith("pre_")
                    and covariate[len("pre_"):] not in base_metrics and covariate not in self.cuped_covariates.values()):
                raise _KeyedError(f"covariates.{i}", f"{covariate!r} looks like a pre-period column but no outcome is named "
                                                     f"{covariate[len('pre_'):]!r}: map it in cuped_covariates "
                                                     f"({{<outcome>: {covariate}}}) to adjust an outcome by it")
        for i, dimension in enumerate(self.dimensions):
            if self.uses_catalogue:
                if dimension in known or dimension.startswith("pre_"):
                    raise _KeyedError(f"dimensions.{i}", f"{dimension!r} is a metric: a dimension is fixed at first exposure")
            elif dimension not in self.source.columns or dimension in (*self.source.outcomes, self.source.variant_column):
                raise _KeyedError(f"dimensions.{i}", f"{dimension!r} is not a declared pre-treatment column of the source")
        if self.uplift is not None:
            self._check_uplift(known, names)
        self._check_causal(known, names)
        return self

    def _check_causal(self, known, names: list[str]) -> None:
        causal = self.causal
        if self.design == "randomized":
            if causal is not None:
                raise _KeyedError("causal", "a randomized experiment is analysed as one: the causal block is for "
                                            "design: observational or staggered_rollout")
            return
        causal = causal or CausalSpec()
        if causal.treatment is not None:
            arm = causal.treatment["variant"]
            if arm not in names or arm == self.baseline:
                raise _KeyedError("causal.treatment.variant", f"{arm!r} is not a non-baseline variant of {names}")
        elif len(names) != 2:
            raise _KeyedError("causal.treatment", f"with {len(names)} variants, say which arm is treated: "
                                                  "causal: {treatment: {variant: <name>}}")
        used = [("primary_metric", self.primary_metric)]
        used += [(f"secondary_metrics.{i}", m) for i, m in enumerate(self.secondary_metrics)]
        used += [(f"guardrails.{i}.metric", g.metric) for i, g in enumerate(self.guardrails)]
        for key, metric in used:
            aggregate = self.catalogue.metric(metric).aggregate if self.uses_catalogue and metric in known else None
            if self.metric_kind(metric) != "mean" or (self.design == "staggered_rollout" and aggregate == "max"):
                raise _KeyedError(key, f"{metric!r} is a {aggregate or self.metric_kind(metric)} metric: a "
                                       f"{self.design.replace('_', ' ')} estimates effects on unit-level sums, counts "
                                       "and rates (each guardrail with the decision's estimator), not on "
                                       "ratios, quantiles or maxima")
        pre = set(self.known_covariates()) | set(self.dimensions)
        for i, column in enumerate(self.causal_confounders()):
            key = f"causal.confounders.{i}" if causal.confounders else f"covariates.{i}"
            if column in known or column in self.outcome_columns():
                raise _KeyedError(key, f"{column!r} is measured after treatment (an outcome): adjusting for it would "
                                       "remove part of the effect; use pre-treatment columns only")
            if column not in pre:
                raise _KeyedError(key, f"{column!r} is not a known pre-treatment column (known: {sorted(pre)})")
        if self.design == "observational" and not self.causal_confounders():
            raise _KeyedError("causal.confounders", "an observational design needs confounders (pre-treatment columns "
                                                    "that explain who was treated)")
        if self.design == "staggered_rollout":
            if not self.uses_catalogue:
                raise _KeyedError("design", "a staggered rollout needs exposure times: a warehouse or demo source")
            if causal.group is None:
                raise _KeyedError("causal.group", "a staggered rollout needs the column whose groups adopt on "
                                                  "different dates (a unit-table attribute or a dimension)")
            if causal.group in known:
                raise _KeyedError("causal.group", f"{causal.group!r} is a metric, not a group column")
        elif causal.group is not None or causal.synthetic_control is not None:
            raise _KeyedError("causal.group", "group and synthetic_control belong to design: staggered_rollout")

    def outcome_columns(self) -> set[str]:
        """Columns measured after exposure: the outcomes of a file or table, every catalogue metric."""
        return set(self.known_metrics()) if self.uses_catalogue else set(self.source.outcomes)

    def causal_confounders(self) -> list[str]:
        """The pre-treatment columns a non-randomized design adjusts for."""
        if self.design == "randomized":
            return []
        return list((self.causal.confounders if self.causal and self.causal.confounders else self.covariates))

    @property
    def treated_variant(self) -> str:
        """The treated arm of a non-randomized design."""
        if self.causal is not None and self.causal.treatment is not None:
            return self.causal.treatment["variant"]
        return next(v.name for v in self.variants if v.name != self.baseline)

    def _check_uplift(self, known, names: list[str]) -> None:
        up = self.uplift
        for i, outcome in enumerate(up.outcomes):
            if outcome not in known or self.ratio(outcome) is not None or self.metric_kind(outcome) == "quantile":
                raise _KeyedError(f"uplift.outcomes.{i}", f"unknown outcome {outcome!r}; a unit-level metric, one of: "
                                                          f"{sorted(m for m in known if self.metric_kind(m) == 'mean')}")
        for i, arm in enumerate(up.arms):
            if arm not in names or arm == self.baseline:
                raise _KeyedError(f"uplift.arms.{i}", f"{arm!r} is not a non-baseline variant of {names}")
        if isinstance(up.value_per_conversion, dict):
            for outcome in up.value_per_conversion:
                if outcome not in up.outcomes:
                    raise _KeyedError("uplift.value_per_conversion", f"{outcome!r} is not one of uplift.outcomes")
        if not self.uses_catalogue:
            for i, column in enumerate(up.pre_treatment):
                if column not in self.source.columns:
                    raise _KeyedError(f"uplift.pre_treatment.{i}", f"{column!r} is not a declared column")
        elif up.pre_treatment:
            raise _KeyedError("uplift.pre_treatment", "only file and table sources declare pre-treatment columns")
        from liftlab.uplift.features import PostTreatmentFeature, check_pre_treatment

        try:
            check_pre_treatment(self, up.features)
        except PostTreatmentFeature as exc:
            raise _KeyedError("uplift.features", str(exc)) from None

    # ------------------------------------------------------------------ metrics and covariates
    @property
    def uses_catalogue(self) -> bool:
        """Metrics come from the catalogue (warehouse and demo sources), not from columns."""
        return self.source.kind in CATALOGUE_KINDS

    @property
    def catalogue(self):
        """The metric catalogue this spec was validated against (warehouse and demo sources)."""
        return self._catalogue

    def catalogue_label(self) -> str:
        return str(config.metrics_dir())

    def known_metrics(self) -> dict[str, str]:
        """metric name → its kind (mean, ratio, quantile) for every metric the spec may name."""
        if self.uses_catalogue:
            return {name: self.metric_kind(name) for name in self.catalogue.metrics}
        out = {m: "mean" for m in self.source.outcomes}
        out |= {r.name: "ratio" for r in self.ratio_metrics}
        return out

    def known_covariates(self) -> tuple[str, ...]:
        """Columns measured before exposure that may serve as covariates (CUPED, balance, A/A)."""
        if self.uses_catalogue:
            cat = self.catalogue
            twins = [f"pre_{m}" for m, d in cat.metrics.items() if d.unit_level]
            return (*twins, *cat.unit_column_names())
        return tuple(self.source.columns)

    def metric_kind(self, metric: str) -> str:
        """``mean`` (a unit-level value), ``ratio`` (Σ numerator / Σ denominator) or ``quantile``."""
        if self.uses_catalogue:
            definition = self.catalogue.metric(metric)
            return "ratio" if definition.ratio else "quantile" if definition.aggregate == "quantile" else "mean"
        return "ratio" if self.ratio(metric) else "mean"

    def ratio(self, metric: str) -> tuple[str, str] | None:
        """(numerator, denominator) of a ratio metric, else None."""
        if self.uses_catalogue:
            definition = self.catalogue.metrics.get(metric)
            return tuple(definition.ratio) if definition is not None and definition.ratio else None
        for ratio in self.ratio_metrics:
            if ratio.name == metric:
                return ratio.numerator, ratio.denominator
        return None

    def pre_period_column(self, metric: str) -> str | None:
        """The CUPED covariate of a metric: declared, else its pre-period twin, else None.

        A ratio metric uses its numerator's covariate (any pre-treatment covariate keeps CUPED
        unbiased; Deng et al. 2013).
        """
        if metric in self.cuped_covariates:
            return self.cuped_covariates[metric]
        ratio = self.ratio(metric)
        if ratio is not None:  # (a ratio of ratios is a broken catalogue entry: no covariate)
            return None if self.ratio(ratio[0]) is not None else self.pre_period_column(ratio[0])
        if self.uses_catalogue and self.pre_period_days > 0:
            definition = self.catalogue.metrics.get(metric)
            return f"pre_{metric}" if definition is not None and definition.unit_level else None
        if not self.uses_catalogue and f"pre_{metric}" in self.covariates:
            return f"pre_{metric}"  # a file/table's declared covariate named after the outcome
        return None

    def caps(self) -> dict[str, float]:
        """metric → winsorization percentile (spec ``winsorize`` over the catalogue's cap_quantile)."""
        out: dict[str, float] = {}
        if self.uses_catalogue:
            for metric in self.unit_metrics():
                cap = self.catalogue.metric(metric).cap_quantile
                if cap is not None and self.pre_period_column(metric) is not None:
                    out[metric] = cap
        return out | dict(self.winsorize)

    def cap_values(self) -> dict[str, float]:
        """metric → fixed cap (catalogue ``cap_value``)."""
        if not self.uses_catalogue:
            return {}
        return {m: self.catalogue.metric(m).cap_value for m in self.unit_metrics()
                if self.catalogue.metric(m).cap_value is not None}

    def metric_roles(self) -> dict[str, str]:
        """metric → primary / secondary / guardrail (a metric keeps its first role)."""
        roles = {self.primary_metric: "primary"}
        for metric in self.secondary_metrics:
            roles.setdefault(metric, "secondary")
        for guardrail in self.guardrails:
            roles.setdefault(guardrail.metric, "guardrail")
        return roles

    def unit_metrics(self) -> list[str]:
        """The unit-level metrics the analysis needs: every non-quantile metric of the spec (ratio
        metrics as their two parts) and the uplift outcomes, in a stable order."""
        names: list[str] = []
        for metric in [*self.metric_roles(), *(self.uplift.outcomes if self.uplift else [])]:
            ratio = self.ratio(metric)
            if ratio:
                names += list(ratio)
            elif self.metric_kind(metric) != "quantile":
                names.append(metric)
        return list(dict.fromkeys(names))

    def quantile_metrics(self) -> list[str]:
        return [m for m in self.metric_roles() if self.metric_kind(m) == "quantile"]

    def direction(self, metric: str) -> str:
        if metric == self.primary_metric and self.primary_direction is not None:
            return self.primary_direction
        for guardrail in self.guardrails:
            if guardrail.metric == metric and guardrail.direction is not None:
                return guardrail.direction
        for ratio in self.ratio_metrics:
            if ratio.name == metric:
                return ratio.direction
        if self.uses_catalogue and metric in self.catalogue.metrics:
            return self.catalogue.metrics[metric].direction
        return "higher_is_better"

    def guardrail_direction(self, guardrail: Guardrail) -> str:
        return guardrail.direction or self.direction(guardrail.metric)

    @property
    def allocation(self) -> dict[str, float]:
        return {v.name: v.allocation for v in self.variants}

    @property
    def pre_start_date(self) -> dt.date | None:
        return self.start_date - dt.timedelta(days=self.pre_period_days) if self.start_date else None


@dataclass(frozen=True)
class LoadedSpec:
    spec: ExperimentSpec
    path: Path
    sha256: str


def _key(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_spec(text: str, path: Path, catalogue=None) -> ExperimentSpec:
    """Parse one spec; raise SpecError naming the file and the offending key.

    Warehouse and demo specs are checked against ``catalogue`` (default: ``metrics/``)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:  # e.g. "[[[[…" thousands deep: PyYAML's composer recurses per level
        raise SpecError(f"{path}: (top level): nested too deeply to be a spec") from None
    except Exception as exc:  # noqa: BLE001 - PyYAML's own bugs, e.g. AttributeError on
        # "!!timestamp '1924-01-01 00:00:00+04:58:24'" (an offset with seconds): still the file's fault
        raise SpecError(f"{path}: not valid YAML: {type(exc).__name__}: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: (top level): expected a mapping of spec keys")
    try:
        return ExperimentSpec.model_validate(data, context={"catalogue": catalogue})
    except RecursionError:
        raise SpecError(f"{path}: (top level): nested too deeply to be a spec") from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, _KeyedError):
                problems.append(f"{path}: {cause.key}: {cause}")
            else:
                problems.append(f"{path}: {_key(err['loc'])}: {err['msg']}")
        raise SpecError("\n".join(problems)) from None


#: Validated spec folders by the exact bytes of their specs and of the catalogue: one analysis
#: run asks for the specs in every step, and validation (pydantic, the catalogue) is the cost.
_LOADED: dict[tuple, list[LoadedSpec]] = {}


def _folder_key(directory: Path, files: list[Path]) -> tuple:
    metrics = config.metrics_dir()
    catalogue_files = sorted([*metrics.glob("*.yaml"), *metrics.glob("*.yml")]) if metrics.is_dir() else []
    return (str(directory.resolve()), str(metrics),
            tuple((str(p), hashlib.sha256(p.read_bytes()).hexdigest()) for p in [*files, *catalogue_files]))


def load_specs(directory: Path | None = None, catalogue=None) -> list[LoadedSpec]:
    """Load and validate every ``*.yaml``/``*.yml`` in ``directory``; all problems in one error.

    The metric catalogue (``catalogue``, default ``metrics/``) is loaded once, and only when a
    spec needs it (a warehouse or demo source). A folder whose specs and catalogue files are
    byte for byte those of an earlier call in this process is not validated again."""
    directory = directory or config.experiments_dir()
    if not directory.is_dir():
        raise SpecError(f"{directory}: no such folder of experiment specs (LIFTLAB_EXPERIMENTS_DIR)")
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    key = _folder_key(directory, files) if catalogue is None else None
    if key is not None and key in _LOADED:
        return list(_LOADED[key])
    loaded = _load_files(files, catalogue if catalogue is not None else _LazyCatalogue())
    if key is not None:
        _LOADED.clear()  # one folder state at a time: memory stays flat however often files change
        _LOADED[key] = list(loaded)
    return loaded


def _load_files(files: list[Path], catalogue) -> list[LoadedSpec]:
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
            spec = parse_spec(text, path, catalogue)
        except SpecError as exc:
            problems.append(str(exc))
            continue
        if spec.id in seen:
            problems.append(f"{path}: id: duplicate experiment id {spec.id!r} (also in {seen[spec.id]})")
            continue
        seen[spec.id] = path
        loaded.append(LoadedSpec(spec=spec, path=path, sha256=hashlib.sha256(raw).hexdigest()))
    if isinstance(catalogue, _LazyCatalogue) and catalogue.error is not None:
        problems.append(str(catalogue.error))
    if problems:
        raise SpecError("\n".join(problems))
    return loaded
