"""Pure frequentist statistics for liftlab (no Dagster, no database).

Modelled on GrowthBook's ``gbstats``: additive sufficient statistics
(:class:`SampleStats`, :func:`aggregate`), test functions that take statistics
and return immutable result dataclasses (:func:`welch_test` →
:class:`EffectResult`), multiplicity adjustments, and a frame-level
:func:`compare_arms`.
"""

from .analysis import RESULT_COLUMNS, compare_arms
from .multiple_testing import benjamini_hochberg, holm
from .sufficient import SampleStats, aggregate, merge_aggregates
from .welch import EffectResult, relative_test, welch_df, welch_test

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
]
