"""Pure frequentist statistics for liftlab (no Dagster, no database).

Modelled on GrowthBook's ``gbstats``: additive sufficient statistics
(:class:`SampleStats`, :func:`aggregate`), test functions that take statistics
and return immutable result dataclasses (:func:`welch_test` →
:class:`EffectResult`), multiplicity adjustments, and a frame-level
:func:`compare_arms`.

The engine of issue #4 adds joint statistics for CUPED and ratio metrics
(:class:`JointStats`, :func:`aggregate_joint`, :func:`merge_joint`), CUPED and delta-method
tests (:func:`cuped_test`, :func:`ratio_test`), confidence sequences (:mod:`.sequential`),
the Bayesian summary (:mod:`.bayes`), power planning (:mod:`.power`), winsorization
(:mod:`.winsorize`) and the vectorised frame-level :func:`analyze` / :func:`adjust`.
Importing this package does not import scipy-heavy modules beyond what ``welch`` needs.
"""

from .analysis import RESULT_COLUMNS, compare_arms
from .multiple_testing import benjamini_hochberg, holm
from .sufficient import SampleStats, aggregate, merge_aggregates
from .welch import EffectResult, relative_test, welch_df, welch_test
from .moments import JointStats, aggregate_joint, merge_joint
from .cuped import StatResult, cuped_test, ratio_test
from .engine import adjust, analyze

__all__ = [
    "SampleStats",
    "aggregate",
    "merge_aggregates",
    "EffectResult",
    "welch_test",
    "relative_test",
    "welch_df",
    "holm",
    "benjamini_hochberg",
    "compare_arms",
    "RESULT_COLUMNS",
    "JointStats",
    "aggregate_joint",
    "merge_joint",
    "StatResult",
    "cuped_test",
    "ratio_test",
    "analyze",
    "adjust",
]
