"""Pre-treatment features: the guard that keeps post-exposure columns out, and the encoding.

An uplift model must only see what was known *before* a unit was exposed; anything
measured afterwards (the outcomes, other in-window metrics, the variant itself) leaks the
treatment into the features and makes the predicted uplift meaningless.

* Warehouse and demo experiments: only the catalogue's unit-table attributes, the spec's
  dimensions (fixed at first exposure) and the pre-period twins ``pre_<metric>`` are allowed.
* Declared files and tables: only the spec's ``covariates`` and the columns the spec lists in
  ``uplift.pre_treatment``; never an outcome, the variant column or the unit column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

#: Columns never usable as features whatever the spec says.
ALWAYS_REJECTED = ("variant", "unit_id", "user_id", "experiment_id", "exposure_date")


class PostTreatmentFeature(ValueError):
    """A requested feature is not known to be measured before exposure."""


def allowed_features(spec) -> tuple[str, ...]:
    """The pre-treatment columns a spec's uplift model may use, in a stable order."""
    if spec.uses_catalogue:
        return tuple(dict.fromkeys([*spec.catalogue.unit_column_names(), *spec.dimensions, *spec.known_covariates()]))
    up = spec.uplift
    extra = list(up.pre_treatment) if up is not None else []
    forbidden = {spec.source.variant_column, *(spec.source.outcomes), *([spec.source.unit_column] if spec.source.unit_column else [])}
    out = [c for c in dict.fromkeys([*spec.covariates, *extra]) if c not in forbidden]
    return tuple(out)


def check_pre_treatment(spec, features: Sequence[str]) -> tuple[str, ...]:
    """Return the features to use (all allowed ones if ``features`` is empty) or raise.

    Raises :class:`PostTreatmentFeature` naming every offending column and why.
    """
    allowed = allowed_features(spec)
    outcomes = set(spec.known_metrics()) if spec.uses_catalogue else set(spec.source.outcomes)
    identity = set(ALWAYS_REJECTED) | ({spec.source.variant_column} if not spec.uses_catalogue else set())
    problems = []
    for column in features:
        if column in outcomes:
            problems.append(f"{column!r} is an outcome (measured after exposure)")
        elif column in identity:
            problems.append(f"{column!r} identifies the unit or its arm")
        elif column not in allowed:
            problems.append(f"{column!r} is not a declared pre-treatment column (allowed: {list(allowed)})")
    if problems:
        raise PostTreatmentFeature("post-treatment or undeclared feature(s): " + "; ".join(problems))
    return tuple(features) if features else allowed


@dataclass(frozen=True)
class EncodedFeatures:
    """A float64 matrix with its column names and, per column, the source feature."""

    X: np.ndarray
    columns: list[str]
    source: list[str]  # source feature of each column (one-hot columns share it)

    def groups(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for j, name in enumerate(self.source):
            out.setdefault(name, []).append(j)
        return out


def encode(frame: pl.DataFrame, features: Sequence[str], max_levels: int = 30) -> EncodedFeatures:
    """Numeric columns as float64 (nulls → NaN, which the tree models handle); string and
    boolean columns one-hot (levels sorted, so the encoding is deterministic), or ordinal
    codes when a column has more than ``max_levels`` levels."""
    blocks: list[np.ndarray] = []
    columns: list[str] = []
    source: list[str] = []
    for name in features:
        series = frame[name]
        if series.dtype in (pl.Utf8, pl.Categorical, pl.Boolean) or series.dtype == pl.String:
            values = series.cast(pl.Utf8).fill_null("(null)")
            levels = sorted(values.unique().to_list())
            if len(levels) > max_levels:
                codes = values.replace_strict({lv: i for i, lv in enumerate(levels)}, return_dtype=pl.Float64)
                blocks.append(codes.to_numpy().reshape(-1, 1))
                columns.append(name)
                source.append(name)
                continue
            arr = values.to_numpy()
            for level in levels:
                blocks.append((arr == level).astype(np.float64).reshape(-1, 1))
                columns.append(f"{name}={level}")
                source.append(name)
        else:
            blocks.append(series.cast(pl.Float64).fill_null(np.nan).to_numpy().reshape(-1, 1))
            columns.append(name)
            source.append(name)
    X = np.hstack(blocks) if blocks else np.empty((frame.height, 0))
    return EncodedFeatures(X=np.ascontiguousarray(X, dtype=np.float64), columns=columns, source=source)
