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
from typing import Annotated, Literal, get_args

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
#: Ratio metrics of unit sums on the event stream: name → (numerator, denominator).  The
#: statistic is Σ numerator / Σ denominator over the units of an arm (delta method).
EVENT_RATIO_METRICS: dict[str, tuple[str, str]] = {
    "revenue_per_session": ("revenue", "sessions"),
}
#: Each event metric's own pre-period value (the CUPED covariate and the winsorization reference).
EVENT_PRE_PERIOD: dict[str, str] = {
    "sessions": "pre_sessions",
    "ai_calls": "pre_ai_calls",
    "tasks_completed": "pre_tasks_completed",
    "support_tickets": "pre_support_tickets",
    "revenue": "pre_revenue",
    "active_days": "pre_active_days",
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


#: Longest id of a file-source experiment: its rows go to ``raw.src_<id>`` (63-character names).
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
    name: Annotated[str, Field(min_length=1, max_length=100)]
    allocation: Annotated[float, Field(gt=0, le=1)]


class Guardrail(_Strict):
    metric: str
    direction: Direction = "higher_is_better"
    #: Non-inferiority margin, relative to the baseline mean (0.02 = 2 % worse is tolerated).
    tolerance: Annotated[float, Field(ge=0, le=1)] = 0.02


class RatioMetric(_Strict):
    """A ratio of unit sums, e.g. revenue per session = Σ revenue / Σ sessions (delta method)."""

    name: Annotated[str, Field(pattern=IDENTIFIER)]
    numerator: str
    denominator: str
    direction: Direction = "higher_is_better"


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
            # fullmatch: re.match's ``$`` would also accept a trailing newline ("arm\n")
            if not re.fullmatch(IDENTIFIER, name):
                raise ValueError(f"column name {name!r} must match {IDENTIFIER}")
        return value

    @model_validator(mode="after")
    def _declared(self) -> FileSource:
        for key in [self.variant_column, *self.outcomes, *([self.unit_column] if self.unit_column else [])]:
            if key not in self.columns:
                raise ValueError(f"{key!r} is used but not declared in columns")
        # raw.src_<id> stores the unit id as unit_id and the arm as variant
        for reserved, role in (("unit_id", self.unit_column), ("variant", self.variant_column)):
            if reserved in self.columns and role != reserved:
                raise ValueError(f"column name {reserved!r} is reserved for the "
                                 f"{'unit' if reserved == 'unit_id' else 'variant'} column; rename it")
        return self

    def resolved_path(self, spec_file: Path) -> Path:
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else (spec_file.parent / path).resolve()


#: ``raw.users`` attributes an uplift model may use on event-stream experiments (measured
#: before exposure; ``signup_date`` is left out because ``tenure_days`` encodes it).
USER_ATTRIBUTES = ("plan", "company_size", "region", "device", "tenure_days", "engagement_score", "engagement_level")

UpliftLearner = Literal[
    "s_learner", "t_learner", "x_learner", "r_learner", "dr_learner", "class_transformation", "single_feature_rule",
]
UPLIFT_LEARNERS: tuple[str, ...] = get_args(UpliftLearner)


class UpliftSpec(_Strict):
    """Uplift modelling and targeting (optional ``uplift:`` block; absent → not modelled).

    ``features`` must be measured before exposure: for event-stream experiments the
    ``raw.users`` attributes and the ``pre_*`` columns of ``marts.fct_unit_metrics``; for a
    declared file, the spec's ``covariates`` plus the file columns listed in
    ``pre_treatment``. Outcomes, the variant and the unit id are always refused.
    """

    #: Outcomes to model (binary 0/1 → classifiers, else regressors); the first is the primary.
    outcomes: Annotated[list[str], Field(min_length=1)]
    #: Pre-treatment features; empty → every allowed feature.
    features: list[str] = []
    #: File sources only: extra declared columns that are measured before exposure.
    pre_treatment: list[str] = []
    #: Arms modelled against the baseline (each arm vs control); empty → every non-baseline arm.
    arms: list[str] = []
    learners: Annotated[list[UpliftLearner], Field(min_length=1)] = list(UPLIFT_LEARNERS)
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
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 20261122  # numpy and scikit-learn take 32-bit seeds
    n_bootstrap: Annotated[int, Field(ge=0, le=5000)] = 200
    #: |predicted uplift| above which a unit is a persuadable (+) or a sleeping dog (−).
    segment_min_uplift: Annotated[float, Field(ge=0)] = 0.05

    def value_of(self, outcome: str) -> float:
        if isinstance(self.value_per_conversion, dict):
            return float(self.value_per_conversion.get(outcome, 0.0))
        return float(self.value_per_conversion)


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
    #: Smallest relative effect worth detecting on the primary metric (power planning).
    mde: Annotated[float, Field(gt=0)] | None = None
    #: Smallest relative improvement of the primary metric worth shipping (None: any significant win).
    practical_threshold: Annotated[float, Field(ge=0)] | None = None
    source: Annotated[EventSource | FileSource, Field(discriminator="kind")] = EventSource()
    #: Ratio metrics of unit sums usable as primary/secondary/guardrail metrics.
    ratio_metrics: list[RatioMetric] = []
    #: CUPED rows (method 'cuped') for every metric with a pre-period covariate.
    cuped: bool = True
    #: metric → CUPED covariate column; defaults to the metric's own pre-period value (event stream).
    cuped_covariates: dict[str, str] = {}
    #: metric → percentile in (0.5, 1): cap the metric at that quantile of its pre-period values
    #: (scaled to the metric window's length), fixed before the experiment.
    winsorize: dict[str, Annotated[float, Field(gt=0.5, lt=1)]] = {}
    #: Confidence sequences are tightest around this many units (gbstats' tuning parameter).
    sequential_tuning: Annotated[float, Field(gt=0)] = 5000.0
    #: Standard deviation of the normal prior on the relative lift (Bayesian summary).
    prior_sd: Annotated[float, Field(gt=0)] = 0.3
    uplift: UpliftSpec | None = None

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
        nul = _first_nul(self.model_dump(mode="json"))
        if nul is not None:
            raise _KeyedError(nul, "contains a NUL character (\\x00), which Postgres cannot store")
        if self.source.kind == "file" and len(self.id) > MAX_FILE_ID_LENGTH:
            raise _KeyedError("id", f"at most {MAX_FILE_ID_LENGTH} characters for a file source: the file is loaded "
                                    f"into raw.src_<id> and Postgres names have at most 63 characters")
        if self.baseline not in names:
            raise _KeyedError("baseline", f"baseline {self.baseline!r} is not one of the variants {names}")
        if self.source.kind == "events":
            for key in ("start_date", "end_date"):
                if getattr(self, key) is None:
                    raise _KeyedError(key, f"{key} is required for experiments on the event stream")
            known, covariates = EVENT_METRICS, EVENT_COVARIATES
        else:
            known, covariates = {m: "higher_is_better" for m in self.source.outcomes}, tuple(self.source.columns)
        base_metrics = dict(known)
        known = dict(known)
        builtin = EVENT_RATIO_METRICS if self.source.kind == "events" else {}
        for name in builtin:
            known.setdefault(name, "higher_is_better")
        for i, ratio in enumerate(self.ratio_metrics):
            for part in ("numerator", "denominator"):
                if getattr(ratio, part) not in base_metrics:
                    raise _KeyedError(f"ratio_metrics.{i}.{part}", f"unknown metric {getattr(ratio, part)!r}; known metrics: {sorted(base_metrics)}")
            if ratio.name in base_metrics:
                raise _KeyedError(f"ratio_metrics.{i}.name", f"{ratio.name!r} is already a metric")
            known[ratio.name] = ratio.direction
        for metric, covariate in self.cuped_covariates.items():
            if metric not in known:
                raise _KeyedError(f"cuped_covariates.{metric}", f"unknown metric {metric!r}; known metrics: {sorted(known)}")
            if covariate not in covariates:
                raise _KeyedError(f"cuped_covariates.{metric}", f"unknown covariate {covariate!r}; known: {sorted(covariates)}")
        for metric in self.winsorize:
            if metric not in base_metrics:
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
                raise _KeyedError(key, f"unknown metric {metric!r}; known metrics: {sorted(known)}")
        for i, covariate in enumerate(self.covariates):
            if covariate not in covariates:
                raise _KeyedError(f"covariates.{i}", f"unknown covariate {covariate!r}; known: {sorted(covariates)}")
        if self.uplift is not None:
            self._check_uplift(known, names)
        return self

    def _check_uplift(self, known: dict[str, str], names: list[str]) -> None:
        up = self.uplift
        for i, outcome in enumerate(up.outcomes):
            if outcome not in known:
                raise _KeyedError(f"uplift.outcomes.{i}", f"unknown outcome {outcome!r}; known: {sorted(known)}")
        for i, arm in enumerate(up.arms):
            if arm not in names or arm == self.baseline:
                raise _KeyedError(f"uplift.arms.{i}", f"{arm!r} is not a non-baseline variant of {names}")
        if isinstance(up.value_per_conversion, dict):
            for outcome in up.value_per_conversion:
                if outcome not in up.outcomes:
                    raise _KeyedError("uplift.value_per_conversion", f"{outcome!r} is not one of uplift.outcomes")
        if self.source.kind == "file":
            for i, column in enumerate(up.pre_treatment):
                if column not in self.source.columns:
                    raise _KeyedError(f"uplift.pre_treatment.{i}", f"{column!r} is not a declared column")
        elif up.pre_treatment:
            raise _KeyedError("uplift.pre_treatment", "only file sources declare pre-treatment columns")
        from liftlab.uplift.features import PostTreatmentFeature, check_pre_treatment

        try:
            check_pre_treatment(self, up.features)
        except PostTreatmentFeature as exc:
            raise _KeyedError("uplift.features", str(exc)) from None

    @property
    def allocation(self) -> dict[str, float]:
        return {v.name: v.allocation for v in self.variants}

    @property
    def pre_start_date(self) -> dt.date | None:
        return self.start_date - dt.timedelta(days=self.pre_period_days) if self.start_date else None

    def ratio(self, metric: str) -> tuple[str, str] | None:
        """(numerator, denominator) of a ratio metric, else None."""
        for ratio in self.ratio_metrics:
            if ratio.name == metric:
                return ratio.numerator, ratio.denominator
        if self.source.kind == "events":
            return EVENT_RATIO_METRICS.get(metric)
        return None

    def pre_period_column(self, metric: str) -> str | None:
        """The CUPED covariate of a metric: declared, else its own pre-period value, else None.

        A ratio metric uses its numerator's covariate (any pre-treatment covariate keeps CUPED
        unbiased; Deng et al. 2013).
        """
        if metric in self.cuped_covariates:
            return self.cuped_covariates[metric]
        ratio = self.ratio(metric)
        if ratio is not None:
            return self.pre_period_column(ratio[0])
        return EVENT_PRE_PERIOD.get(metric) if self.source.kind == "events" else None

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
        for ratio in self.ratio_metrics:
            if ratio.name == metric:
                return ratio.direction
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
    except RecursionError:  # e.g. "[[[[…" thousands deep: PyYAML's composer recurses per level
        raise SpecError(f"{path}: (top level): nested too deeply to be a spec") from None
    except Exception as exc:  # noqa: BLE001 - PyYAML's own bugs, e.g. AttributeError on
        # "!!timestamp '1924-01-01 00:00:00+04:58:24'" (an offset with seconds): still the file's fault
        raise SpecError(f"{path}: not valid YAML: {type(exc).__name__}: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: (top level): expected a mapping of spec keys")
    try:
        return ExperimentSpec.model_validate(data)
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
