"""Coverage study of the cross-fitted AIPW interval on the observational opt-in experiment.

Worlds ``first_seed … first_seed + n_worlds − 1`` (no seed is picked) are generated with
``generate_world``; the unit frame is built from each world's events in polars (the mirror of
the unit table the asset reads, ``liftlab.synth.causal_frames``), AIPW is fitted and its 95 % interval
compared with the world's exact ATE / ATT (``truth_effects``). Pure: no database.

    python -m liftlab.studies.causal_coverage --worlds 200 --users 6000
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import polars as pl

from liftlab.causal.weighting import aipw_cross_fit, ipw, naive_difference
from liftlab.causal.features import covariate_matrix
from liftlab.causal.propensity import cross_fit_propensity, fold_ids
from liftlab.synth.causal_frames import CONFOUNDERS, OPTIN, optin_units_from_world


def one_world(seed: int, n_users: int, metric: str = "ai_calls", outcome_model: str = "linear",
              n_folds: int = 5) -> list[dict]:
    from liftlab.synth import FaultConfig, WorldConfig, generate_world

    world = generate_world(WorldConfig(seed=seed, n_users=n_users, chunk_users=max(n_users, 1),
                                       faults=FaultConfig(checkout_exposure_loss=0.0)))
    units = optin_units_from_world(world)
    truth = world.truth_effects.filter((pl.col("experiment_id") == OPTIN)
                                       & (pl.col("metric") == metric))
    true = dict(zip(truth["estimand"].to_list(), truth["true_effect"].to_list()))
    d = (units["variant"].to_numpy() == "opted_in").astype(int)
    X = covariate_matrix(units, CONFOUNDERS).to_numpy(float)
    y = units[metric].to_numpy(float)
    e = cross_fit_propensity(X, d, "logistic", folds=fold_ids(len(d), n_folds, seed), seed=seed)
    ests = aipw_cross_fit(y, d, X, outcome_model=outcome_model, n_folds=n_folds, seed=seed, e=e)
    naive = naive_difference(y, d).estimate
    rows = []
    for estimand, r in ests.items():
        rows.append({"seed": seed, "estimand": estimand, "estimator": r.estimator, "estimate": r.estimate,
                     "se": r.se, "ci_low": r.ci_low, "ci_high": r.ci_high, "true_effect": true[estimand],
                     "naive": naive, "n": r.n})
        w = ipw(y, d, e, estimand)
        rows.append({"seed": seed, "estimand": estimand, "estimator": "ipw_hajek_logistic", "estimate": w.estimate,
                     "se": w.se, "ci_low": w.ci_low, "ci_high": w.ci_high, "true_effect": true[estimand],
                     "naive": naive, "n": w.n})
    return rows


def run_causal_coverage(n_worlds: int = 200, n_users: int = 6_000, first_seed: int = 1,
                        metric: str = "ai_calls", outcome_model: str = "linear") -> pd.DataFrame:
    """One row per world × estimand × estimator with ``covered``."""
    rows = [r for i in range(n_worlds)
            for r in one_world(first_seed + i, n_users, metric, outcome_model)]
    out = pd.DataFrame(rows)
    out["covered"] = (out["ci_low"] <= out["true_effect"]) & (out["true_effect"] <= out["ci_high"])
    return out


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    g = frame.assign(err=frame["estimate"] - frame["true_effect"]).groupby(["estimator", "estimand"])
    return g.agg(worlds=("seed", "nunique"), coverage=("covered", "mean"), mean_error=("err", "mean"),
                 sd_estimate_error=("err", "std"), mean_se=("se", "mean"),
                 mean_true=("true_effect", "mean")).reset_index()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", type=int, default=200)
    ap.add_argument("--users", type=int, default=6_000)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--outcome-model", default="linear")
    a = ap.parse_args(argv)
    t0 = time.time()
    frame = run_causal_coverage(a.worlds, a.users, a.first_seed, outcome_model=a.outcome_model)
    print(summarise(frame).to_string(index=False))
    print(f"{a.worlds} worlds × {a.users} users in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
