"""A/A calibration: every covariate on one re-randomization matrix vs one matrix per covariate.

    .venv/bin/python bench/aa_calibration.py [--units 64000] [--covariates 5] [--sims 1000] [--repeats 3]

The baseline (``calibrate`` per covariate) and the shared path (``calibrate_columns``) run in the
same process on the same data, after a warm-up that pays the scipy import; the median of the
repeats is printed with the ratio. Both give every covariate's FPR and KS test (the test suite
checks each p-value against scipy's Welch test).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from liftlab.gates.aa import calibrate, calibrate_columns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=64_000)  # Hillstrom's size
    parser.add_argument("--covariates", type=int, default=5)
    parser.add_argument("--sims", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    columns = {f"x{i}": rng.gamma(2.0, 5.0, args.units) for i in range(args.covariates)}
    calibrate_columns(dict(list(columns.items())[:1]), n_simulations=10)  # warm-up: imports

    def timed(fn) -> float:
        runs = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - started)
        return statistics.median(runs)

    per_column = timed(lambda: [calibrate(v, metric=k, n_simulations=args.sims, seed=i)
                                for i, (k, v) in enumerate(columns.items())])
    shared = timed(lambda: calibrate_columns(columns, n_simulations=args.sims))
    print(f"{args.covariates} covariates × {args.units:,} units × {args.sims:,} re-randomizations: "
          f"per covariate {per_column:.2f} s, one shared matrix {shared:.2f} s, ratio {per_column / shared:.1f}×")


if __name__ == "__main__":
    main()
