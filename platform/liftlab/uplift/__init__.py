"""Uplift modelling and targeting: pure code (numpy, polars, scikit-learn, causalml).

No Dagster and no database imports here; ``liftlab.defs.uplift`` wraps these modules as
assets and ``liftlab.uplift_io`` reads and writes the tables. Heavy libraries (causalml,
scikit-learn, LightGBM) are imported inside the functions that fit.

* :mod:`.features` — the pre-treatment guard and the feature encoding;
* :mod:`.learners` — S/T/X/R/DR meta-learners (causalml) and the class transformation;
* :mod:`.evaluation` — Qini and gain curves, Qini coefficient, AUUC, uplift at k, deciles,
  calibration, the oracle, vectorised (paired) bootstrap CIs and the simultaneous band over
  learners;
* :mod:`.honest` — the held-out, selection-honest interval of the best learner (chosen and
  fitted on one part of the units, evaluated on another) and of its break-even policy;
* :mod:`.policy` — profit of targeting the top k % under a cost per contact and a value
  per conversion;
* :mod:`.segments` — persuadables / sure things / lost causes / sleeping dogs;
* :mod:`.explain` — permutation importance of the features for the predicted uplift;
* :mod:`.analysis` — one experiment end to end, cross-fitted: every unit scored out of fold.
"""
