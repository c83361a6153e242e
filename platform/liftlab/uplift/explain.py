"""Which features drive the predicted uplift: grouped permutation importance.

For a fitted uplift model τ̂ and the features X of units it did not see (under cross-fitting,
each fold model on its own fold, pooled), permuting the columns of one source
feature (all its one-hot columns together, rows shuffled jointly) gives τ̂ⱼ. Its importance
is the share of the prediction's variance it carries,

    importance_j = mean((τ̂(X) − τ̂ⱼ(X))²) / (2·var(τ̂(X))),

which is 1 for a feature the model depends on exclusively (permuting it makes τ̂ an
independent copy) and 0 for an unused one (Fisher, Rudin & Dominici 2019, "model
reliance", on the predicted uplift rather than a loss). Repeated ``n_repeats`` times with a
fixed seed; the spread is reported.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl


def permutation_importance(
    predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray, groups: dict[str, list[int]], *,
    n_repeats: int = 3, seed: int = 0, max_rows: int = 5000,
) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    if len(X) > max_rows:
        X = X[rng.choice(len(X), max_rows, replace=False)]
    base = predict(X)
    var = float(np.var(base))
    rows = []
    for name, cols in groups.items():
        scores = []
        for _ in range(n_repeats):
            Xp = X.copy()
            Xp[:, cols] = X[rng.permutation(len(X))][:, cols]
            diff = predict(Xp) - base
            scores.append(float(np.mean(diff**2) / (2 * var)) if var > 0 else 0.0)
        rows.append({"feature": name, "importance": float(np.mean(scores)), "importance_sd": float(np.std(scores))})
    return pl.DataFrame(rows).sort("importance", descending=True)
