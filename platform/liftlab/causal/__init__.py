"""Causal inference for launches that were not randomized (pure functions, no Dagster, no DB).

* ``features``: pre-treatment covariate design matrices.
* ``regression``: OLS with HC1 / cluster-robust covariance; regression adjustment (ATE, ATT).
* ``propensity``: cross-fitted propensity models (logistic, gradient boosting), overlap.
* ``weighting``: naive difference, IPW (Hajek, stabilized weights), cross-fitted AIPW.
* ``matching``: nearest-neighbour propensity matching with a caliper (ATT).
* ``balance``: standardized mean differences.
* ``did``: two-way fixed effects, event study with a pre-trend test, imputation estimator
  for staggered adoption.
* ``synthetic_control``: simplex-constrained weights, RMSPE, placebo-in-space p-value.
* ``sensitivity``: robustness value (Cinelli–Hazlett), E-value, placebo treatment, the
  sentences a decision quotes.
* ``studies``: each design's estimators together (what ``causal/estimates`` and the coverage
  studies call), intervals at the spec's α, each estimate with its sensitivity.
"""

from liftlab.causal.result import Estimate

__all__ = ["Estimate"]
