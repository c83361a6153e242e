"""Coverage of the causal intervals the decisions use, over many simulated worlds.

Each world is drawn with a known truth and analysed by the same pure functions the
``causal/estimates`` asset calls (``liftlab.causal.studies``), at the spec's α:

* ``observational`` — :func:`liftlab.synth.launches.opt_in_launch` (4,000 users, confounded
  opt-in, plan-dependent effect): every estimator of :func:`selection_on_observables`, its
  interval against the population ATE (ATT: the sample's expected ATT), and the placebo
  treatment's rate of finding nothing;
* ``staggered`` — :func:`liftlab.synth.launches.staggered_launch` (24 stores, 3 adoption dates,
  growing effect): TWFE and the imputation estimator against the true ATT, the placebo adoption
  and the BJS pre-trend test's false-alarm rate;
* ``demo`` — the demo world's opt-in (``generate_world``), AIPW against the world's exact effects.

Worlds ``first_seed … first_seed + n − 1`` (no seed is picked). Pure: no database.

    python -m liftlab.studies.causal_coverage --design observational --worlds 500 --jobs 2
    python -m liftlab.studies.causal_coverage --design staggered --worlds 2000
    python -m liftlab.studies.causal_coverage --design demo --worlds 200 --users 6000
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import numpy as np
import pandas as pd
import polars as pl

from liftlab.causal.features import covariate_matrix
from liftlab.causal.propensity import cross_fit_propensity, fold_ids
from liftlab.causal.weighting import aipw_cross_fit, ipw, naive_difference
from liftlab.studies import wilson

OPT_IN_CONFOUNDERS = ("plan", "tenure_days", "pre_orders_14d")


def observational_world(seed: int, n_users: int = 4_000, alpha: float = 0.05) -> list[dict]:
    """Every estimate of one simulated opt-in next to its truth."""
    from liftlab.causal.studies import selection_on_observables
    from liftlab.synth.launches import opt_in_launch

    world = opt_in_launch(seed, n_users)
    res = selection_on_observables(world.units, ["orders_14d"], "opted_in", OPT_IN_CONFOUNDERS, seed=seed, alpha=alpha)
    truth = {"ATE": world.true_ate, "ATT": world.true_att, "ATE_overlap": np.nan}
    return [{"seed": seed, "estimator": e.estimator, "estimand": e.estimand, "estimate": e.estimate, "se": e.se,
             "ci_low": e.ci_low, "ci_high": e.ci_high,
             "true_effect": 0.0 if e.estimator.startswith("placebo") else truth.get(e.estimand, np.nan),
             "rv": e.diagnostics.get("sensitivity", {}).get("robustness_value", np.nan)}
            for _, e in res.estimates]


def staggered_world(seed: int, alpha: float = 0.05) -> list[dict]:
    """TWFE, the imputation ATT and the placebo adoption of one simulated rollout."""
    from liftlab.causal.studies import staggered_rollout
    from liftlab.synth.launches import staggered_launch

    world = staggered_launch(seed)
    res = staggered_rollout(world.panel, alpha=alpha)
    rows = [{"seed": seed, "estimator": e.estimator, "estimand": e.estimand, "estimate": e.estimate, "se": e.se,
             "ci_low": e.ci_low, "ci_high": e.ci_high, "true_effect": world.true_att,
             "pretrend_p": res.imputation.diagnostics["pretrend_p"]} for e in (res.twfe, res.imputation)]
    if res.placebo is not None:
        p = res.placebo
        rows.append({"seed": seed, "estimator": p.estimator, "estimand": p.estimand, "estimate": p.estimate,
                     "se": p.se, "ci_low": p.ci_low, "ci_high": p.ci_high, "true_effect": 0.0, "pretrend_p": np.nan})
    return rows


def demo_world(seed: int, n_users: int, metric: str = "ai_calls", outcome_model: str = "linear",
               n_folds: int = 5) -> list[dict]:
    """AIPW and IPW on the demo world's opt-in (its mirror of the unit table) against the world's truth."""
    from liftlab.synth import FaultConfig, WorldConfig, generate_world
    from liftlab.synth.causal_frames import CONFOUNDERS, OPTIN, optin_units_from_world

    world = generate_world(WorldConfig(seed=seed, n_users=n_users, chunk_users=max(n_users, 1),
                                       faults=FaultConfig(checkout_exposure_loss=0.0)))
    units = optin_units_from_world(world)
    truth = world.truth_effects.filter((pl.col("experiment_id") == OPTIN) & (pl.col("metric") == metric))
    true = dict(zip(truth["estimand"].to_list(), truth["true_effect"].to_list()))
    d = (units["variant"].to_numpy() == "opted_in").astype(int)
    X = covariate_matrix(units, CONFOUNDERS).to_numpy(float)
    y = units[metric].to_numpy(float)
    e = cross_fit_propensity(X, d, "logistic", folds=fold_ids(len(d), n_folds, seed), seed=seed)
    ests = aipw_cross_fit(y, d, X, outcome_model=outcome_model, n_folds=n_folds, seed=seed, e=e)
    naive = naive_difference(y, d).estimate
    rows = []
    for estimand, r in ests.items():
        w = ipw(y, d, e, estimand)
        for est, name in ((r, r.estimator), (w, "ipw_hajek_logistic")):
            rows.append({"seed": seed, "estimand": estimand, "estimator": name, "estimate": est.estimate,
                         "se": est.se, "ci_low": est.ci_low, "ci_high": est.ci_high, "true_effect": true[estimand],
                         "naive": naive, "n": est.n})
    return rows


def run(design: str, n_worlds: int, first_seed: int = 1, jobs: int = 1, n_users: int | None = None,
        alpha: float = 0.05) -> pd.DataFrame:
    """One row per world × estimator × estimand with ``covered``."""
    if design == "observational":
        one = partial(observational_world, n_users=n_users or 4_000, alpha=alpha)
    elif design == "staggered":
        one = partial(staggered_world, alpha=alpha)
    elif design == "demo":
        one = partial(demo_world, n_users=n_users or 6_000)
    else:
        raise ValueError(f"unknown design {design!r}: observational, staggered or demo")
    seeds = range(first_seed, first_seed + n_worlds)
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            rows = [r for chunk in pool.map(one, seeds, chunksize=4) for r in chunk]
    else:
        rows = [r for s in seeds for r in one(s)]
    out = pd.DataFrame(rows)
    out["covered"] = (out["ci_low"] <= out["true_effect"]) & (out["true_effect"] <= out["ci_high"])
    return out


def run_causal_coverage(n_worlds: int = 200, n_users: int = 6_000, first_seed: int = 1) -> pd.DataFrame:
    """The demo world's AIPW coverage (kept for the demo's own claim)."""
    return run("demo", n_worlds, first_seed, n_users=n_users)


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    f = frame[frame["true_effect"].notna()]
    g = f.assign(err=f["estimate"] - f["true_effect"]).groupby(["estimator", "estimand"])
    out = g.agg(worlds=("seed", "nunique"), covered=("covered", "sum"), coverage=("covered", "mean"),
                mean_error=("err", "mean"), sd_estimate=("err", "std"), mean_se=("se", "mean"),
                mean_true=("true_effect", "mean")).reset_index()
    bounds = [wilson(int(k), int(n)) for k, n in zip(out["covered"], out["worlds"])]
    out["coverage_low"] = [b[0] for b in bounds]
    out["coverage_high"] = [b[1] for b in bounds]
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--design", choices=("observational", "staggered", "demo"), default="observational")
    ap.add_argument("--worlds", type=int, default=200)
    ap.add_argument("--users", type=int, default=None)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", help="write the summary as JSON here (e.g. bench/results/causal_coverage_<design>.json)")
    a = ap.parse_args(argv)
    t0 = time.time()
    frame = run(a.design, a.worlds, a.first_seed, a.jobs, a.users, a.alpha)
    summary = summarise(frame)
    seconds = time.time() - t0
    print(summary.to_string(index=False))
    extra = {}
    if "pretrend_p" in frame:
        p = frame.drop_duplicates("seed")["pretrend_p"].dropna()
        extra["pretrend_false_alarm_rate"] = float((p < a.alpha).mean())
        print(f"pre-trend test p < {a.alpha}: {extra['pretrend_false_alarm_rate']:.1%} of {len(p)} worlds (no pre-trend exists)")
    print(f"{a.worlds} {a.design} worlds in {seconds:.0f} s")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({"design": a.design, "worlds": a.worlds, "first_seed": a.first_seed, "alpha": a.alpha,
                       "users": a.users, "seconds": round(seconds, 1), **extra,
                       "command": f"python -m liftlab.studies.causal_coverage --design {a.design} --worlds {a.worlds}"
                                  + (f" --users {a.users}" if a.users else "") + (f" --alpha {a.alpha}" if a.alpha != 0.05 else ""),
                       "summary": summary.to_dict(orient="records")}, fh, indent=2)


if __name__ == "__main__":
    main()
