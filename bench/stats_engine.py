"""How long does the statistics engine take for 1,000 metrics × 4 arms? (not a test)

    .venv/bin/python bench/stats_engine.py [repeats]

Builds joint sufficient statistics for 1,000 metrics (half with a CUPED covariate, a tenth
ratio metrics) × 4 arms, then times ``analyze`` (Welch / delta method + CUPED + confidence
sequences + Bayesian summary) and ``adjust`` (Holm / BH with adjusted CIs).  Prints the median
and max wall time and writes bench/results/stats_engine.json.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from liftlab.stats.engine import adjust, analyze


def statistics_frame(n_metrics: int = 1000, arms: int = 4, n: int = 50_000, seed: int = 1) -> pl.DataFrame:
    r = np.random.default_rng(seed)
    rows = []
    for m in range(n_metrics):
        mu, sd = r.uniform(1, 100), r.uniform(1, 50)
        for a in range(arms):
            k = n + int(r.integers(-500, 500))
            y = mu * (1 + 0.01 * a) * k
            x = mu * k
            rows.append({
                "variant": f"arm{a}", "metric": f"m{m:04d}", "n": k,
                "sum": y, "sum_sq": (sd**2 + (y / k) ** 2) * k, "sum_x": x, "sum_x_sq": (sd**2 + mu**2) * k,
                "sum_xy": (0.6 * sd**2 + mu * y / k) * k, "sum_d": 3.0 * k, "sum_d_sq": 10.0 * k, "sum_yd": 3.2 * y, "sum_xd": 3.1 * x,
            })
    return pl.DataFrame(rows)


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    stats = statistics_frame()
    metrics = stats["metric"].unique().sort().to_list()
    kinds = {m: "ratio" for m in metrics[::10]}
    cuped = metrics[::2]
    roles = {metrics[0]: "primary", **{m: "guardrail" for m in metrics[1:4]}}
    analyze(stats, "arm0", kinds=kinds, cuped=cuped)  # warm-up (imports, scipy)
    times, rows = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        out = adjust(analyze(stats, "arm0", kinds=kinds, cuped=cuped), roles)
        times.append(time.perf_counter() - start)
        rows = out.height
    result = {
        "case": "1,000 metrics × 4 arms (3 comparisons each; 500 CUPED, 100 ratio metrics)",
        "effect_rows": rows, "median_s": statistics.median(times), "max_s": max(times), "repeats": repeats,
        "python": platform.python_version(), "machine": platform.machine(),
    }
    print(json.dumps(result, indent=2))
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "stats_engine.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
