"""Every causal estimate of one world next to its truth, and the regional estimators across seeds.

    python -m liftlab.studies.causal_demo                      # demo seed 20261122, 100k users
    python -m liftlab.studies.causal_demo --regional-worlds 30 --users 20000

Pure (no database): frames come from ``liftlab.synth.causal_frames`` (tests check they equal
the frames the asset reads through the source layer).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from liftlab.causal import studies
from liftlab.synth import WorldConfig, generate_world
from liftlab.synth.causal_frames import (
    CONFOUNDERS, OPTIN, OPTIN_METRICS, ROLLOUT, ROLLOUT_ALONE, optin_units_from_world, regional_panel_from_world,
)


def demo(seed: int, n_users: int) -> None:
    t0 = time.time()
    w = generate_world(WorldConfig(seed=seed, n_users=n_users))
    truth = {(r["metric"], r["estimand"]): r["true_effect"] for r in
             w.truth_effects.filter(pl.col("experiment_id") == OPTIN).iter_rows(named=True)}
    u = optin_units_from_world(w)
    res = studies.selection_on_observables(u, OPTIN_METRICS, "opted_in", CONFOUNDERS)
    print(f"opt-in units {len(u)}")
    naive = {}
    for m, e in res.estimates:
        if e.estimator == "naive_difference":
            naive[(m, e.estimand)] = e.estimate
    for m, e in res.estimates:
        t = truth.get((m, e.estimand))
        extra = ""
        if t is not None and (m, e.estimand) in naive:
            nb = naive[(m, e.estimand)] - t
            extra = f" truth={t:.3f} covered={e.ci_low <= t <= e.ci_high} bias_removed={1 - abs(e.estimate - t) / abs(nb):.3f}"
        print(f"{m:16s} {e.estimator:28s} {e.estimand:12s} {e.estimate:8.3f} [{e.ci_low:8.3f}, {e.ci_high:8.3f}]{extra}")
    print("max |SMD| before", res.balance["smd_before"].abs().max(), "after matching", res.balance["smd_after"].abs().max())
    p = regional_panel_from_world(w)
    att = w.truth_effects.filter(pl.col("experiment_id") == ROLLOUT)["true_effect"][0]
    s = studies.staggered_rollout(p)
    for e in (s.twfe, s.imputation):
        print(f"{e.estimator:16s} {e.estimate:.4f} [{e.ci_low:.4f}, {e.ci_high:.4f}] truth={att:.4f} covered={e.ci_low <= att <= e.ci_high} ratio={e.estimate / att:.3f}")
    print("pre-trend F p", s.event_study["pretrend_p"])
    sc = studies.synthetic_control_study(p, ROLLOUT_ALONE)
    d = sc["estimate"].diagnostics
    de = p[(p.unit == ROLLOUT_ALONE) & (p.time >= 0)]["true_effect"].mean()
    print("SC DE att", sc["estimate"].estimate, "truth", de, "rmspe_pre", d["rmspe_pre"], "p", d["placebo_p_value"], "rank", d["placebo_rank"], d["placebo_ratios"], d["weights"])
    print(f"{time.time() - t0:.0f} s")


def regional_worlds(n_worlds: int, n_users: int) -> None:
    rows = []
    for seed in range(1, n_worlds + 1):
        w = generate_world(WorldConfig(seed=seed, n_users=n_users))
        p = regional_panel_from_world(w)
        att = w.truth_effects.filter(pl.col("experiment_id") == ROLLOUT)["true_effect"][0]
        s = studies.staggered_rollout(p)
        sc = studies.synthetic_control_study(p, ROLLOUT_ALONE)
        rows.append((s.imputation.covers(att), s.twfe.covers(att), s.twfe.estimate / att, s.imputation.estimate / att,
                     sc["rank"]))
    a = np.array(rows, float)
    print(f"{n_worlds} worlds x {n_users}: imputation coverage {a[:,0].mean():.3f}, TWFE coverage {a[:,1].mean():.3f}, "
          f"TWFE/ATT mean {a[:,2].mean():.3f}, imputation/ATT mean {a[:,3].mean():.3f}, SC DE rank 1 share {(a[:,4]==1).mean():.3f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=WorldConfig().seed)
    ap.add_argument("--users", type=int, default=WorldConfig().n_users)
    ap.add_argument("--regional-worlds", type=int, default=0)
    a = ap.parse_args(argv)
    if a.regional_worlds:
        regional_worlds(a.regional_worlds, a.users)
    else:
        demo(a.seed, a.users)


if __name__ == "__main__":
    main()
