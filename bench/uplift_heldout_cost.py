"""What the held-out, selection-honest interval (liftlab.uplift.honest) adds to an uplift fit.

    .venv/bin/python bench/uplift_heldout_cost.py [outcome] [repeats] [learners,comma,separated]

Runs :func:`liftlab.uplift.analysis.analyse_experiment` on Hillstrom's Mens E-Mail vs No E-Mail
(42,613 units, the spec's features, folds and bootstrap; default: outcome visit, the spec's
repeats and learners, permutation importance on, as the asset runs it) twice, each in a fresh
subprocess: ``heldout=False`` (the fit before the held-out interval existed) and ``heldout=True``.
The clock is CPU time (user + system, BLAS held to one thread; the fits are single-threaded),
because on a shared machine wall time measures the neighbours as much as the fit; wall time is
printed too. Writes bench/results/uplift_heldout_cost.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from threadpoolctl import threadpool_limits
heldout, outcome, repeats, learners = sys.argv[1] == "1", sys.argv[2], sys.argv[3], sys.argv[4]
from liftlab.studies.uplift_power import hillstrom_units
from liftlab.uplift.analysis import analyse_experiment
from liftlab.uplift.learners import import_causalml
from liftlab.uplift_io import uplift_features
import polars as pl
frame, spec = hillstrom_units()
up = spec.uplift
frame = frame.filter(pl.col("variant").is_in(["Mens E-Mail", spec.baseline]))
learners = learners.split(",") if learners else list(up.learners)
repeats = int(repeats) if repeats else up.repeats
import_causalml()  # a ~13 s import, not timed
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
with threadpool_limits(1):
    start, cpu0 = time.perf_counter(), cpu()
    result = analyse_experiment(frame, experiment_id="hillstrom", baseline=spec.baseline, arms=["Mens E-Mail"],
        outcomes=[outcome], features=list(uplift_features(spec)), learners=learners, backend=up.base_model,
        n_folds=up.folds, n_repeats=repeats, seed=up.seed, n_boot=up.n_bootstrap, heldout=heldout,
        economics={outcome: (up.value_of(outcome), up.cost_per_contact)})
    wall, used = time.perf_counter() - start, cpu() - cpu0
best = result.frame("models").filter(pl.col("is_best")).row(0, named=True)
print(json.dumps({"heldout": heldout, "cpu_s": used, "wall_s": wall, "learners": learners, "repeats": repeats,
                  "best": {k: best[k] for k in ("learner", "qini", "qini_ci_low", "qini_ci_high", "qini_simul_ci_low",
                           "qini_simul_ci_high", "qini_heldout", "qini_heldout_ci_low", "qini_heldout_ci_high",
                           "heldout_learners")},
                  "heldout_row": result.heldout[0] if result.heldout else None}, default=str))
"""


def main() -> None:
    outcome = sys.argv[1] if len(sys.argv) > 1 else "visit"
    repeats = sys.argv[2] if len(sys.argv) > 2 else ""
    learners = sys.argv[3] if len(sys.argv) > 3 else ""
    runs = {}
    for flag in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", CHILD, flag, outcome, repeats, learners], capture_output=True,
                             text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        runs["with_heldout" if flag == "1" else "without"] = r
        print(f"heldout={r['heldout']!s:<5} CPU {r['cpu_s']:7.1f} s  wall {r['wall_s']:7.1f} s  best {r['best']}", flush=True)
    ratio = runs["with_heldout"]["cpu_s"] / runs["without"]["cpu_s"]
    print(f"CPU with / without the held-out interval: {ratio:.2f}")
    report = {"outcome": outcome, "runs": runs, "cpu_ratio": ratio,
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path = Path(__file__).parent / "results" / f"uplift_heldout_cost_{outcome}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
