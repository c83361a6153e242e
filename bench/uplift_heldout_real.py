"""The held-out, selection-honest intervals (liftlab.uplift.honest) on the real Hillstrom data.

    .venv/bin/python bench/uplift_heldout_real.py [--workers 2]

Runs :func:`liftlab.uplift.analysis.analyse_experiment` on the Hillstrom spec exactly as the
``uplift_learners`` asset does (both arms in the frame, the spec's outcomes, learners, folds,
seed, bootstrap and economics) but with one repetition: the held-out interval uses the first
repetition's folds and fold models only, and those are the same whatever the number of
repetitions (repetition r deals its folds with seed + r), so its figures are the ones the
asset's run with the spec's R = 3 computes. The fixed-model columns of this run are for
R = 1 and are not the README's. One process per arm. Writes bench/results/uplift_heldout_real.json.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path


def _arm(arm: str) -> list[dict]:
    from threadpoolctl import threadpool_limits

    from liftlab.studies.uplift_power import hillstrom_units
    from liftlab.uplift.analysis import analyse_experiment
    from liftlab.uplift_io import uplift_features

    frame, spec = hillstrom_units()
    up = spec.uplift
    start = time.perf_counter()
    with threadpool_limits(1):
        result = analyse_experiment(
            frame, experiment_id=spec.id, baseline=spec.baseline, arms=[arm], outcomes=up.outcomes,
            features=list(uplift_features(spec)), learners=up.learners, backend=up.base_model, n_folds=up.folds,
            n_repeats=1, seed=up.seed, n_boot=up.n_bootstrap, explain=False,
            economics={o: (up.value_of(o), up.cost_per_contact) for o in up.outcomes})
    rows = result.heldout
    for r in rows:
        r["seconds"] = time.perf_counter() - start
    return rows


def main() -> None:
    workers = int(sys.argv[sys.argv.index("--workers") + 1]) if "--workers" in sys.argv else 2
    arms = ["Mens E-Mail", "Womens E-Mail"]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        rows = [r for part in pool.map(_arm, arms) for r in part]
    import polars as pl

    with pl.Config(tbl_cols=20, tbl_width_chars=220, float_precision=5):
        print(pl.DataFrame(rows).select("arm", "metric", "best_learner", "learners", "qini", "qini_ci_low", "qini_ci_high",
                                        "vs_all", "vs_all_ci_low", "vs_all_ci_high", "n_targeted", "seconds"))
    out = Path(__file__).parent / "results" / "uplift_heldout_real.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"heldout": rows, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                              indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
