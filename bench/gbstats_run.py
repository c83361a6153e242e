"""GrowthBook's gbstats on liftlab's sufficient statistics — the baseline of the statistics engine.

Runs inside ``.venv-gbstats`` (gbstats 0.8 pins numpy<2 and pandas<2, which the platform's
environment cannot hold; ``make bench`` creates it from ``bench/requirements-gbstats.lock``):

    .venv-gbstats/bin/python bench/gbstats_run.py IN.json OUT.json

IN: ``{"baseline": ..., "rows": [{variant, metric, kind, n, sum, sum_sq, sum_x, ...}], "repeats": R}``
with ``kind`` one of mean / ratio / cuped. For every metric × non-baseline arm it runs gbstats'
``TwoSidedTTest`` with absolute differences (``SampleMeanStatistic``, ``RatioStatistic`` or
``RegressionAdjustedStatistic`` with gbstats' pooled ``compute_theta``), R times, and writes the
estimates, CIs and p values with the median wall time. Not part of liftlab: a yardstick.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from gbstats.frequentist.tests import FrequentistConfig, TwoSidedTTest
from gbstats.models.statistics import (
    RatioStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
    compute_theta,
)


def _mean(n, s, ss):
    return SampleMeanStatistic(n=int(n), sum=float(s), sum_squares=float(ss))


def statistic(row: dict):
    n = int(row["n"])
    y = _mean(n, row["sum"], row["sum_sq"])
    if row["kind"] == "ratio":
        d = _mean(n, row["sum_d"], row["sum_d_sq"])
        return RatioStatistic(n=n, m_statistic=y, d_statistic=d, m_d_sum_of_products=float(row["sum_yd"]))
    if row["kind"] == "cuped":
        x = _mean(n, row["sum_x"], row["sum_x_sq"])
        return RegressionAdjustedStatistic(n=n, post_statistic=y, pre_statistic=x,
                                           post_pre_sum_of_products=float(row["sum_xy"]), theta=0.0)
    return y


def run(payload: dict) -> list[dict]:
    baseline = payload["baseline"]
    by_metric: dict[tuple[str, str], dict[str, dict]] = {}
    for row in payload["rows"]:
        by_metric.setdefault((row["metric"], row["kind"]), {})[row["variant"]] = row
    config = FrequentistConfig(difference_type="absolute", alpha=payload.get("alpha", 0.05))
    out = []
    for (metric, kind), arms in by_metric.items():
        a = statistic(arms[baseline])
        for variant, row in arms.items():
            if variant == baseline:
                continue
            b = statistic(row)
            if kind == "cuped":
                theta = compute_theta(a, b)
                a.theta = b.theta = theta
            result = TwoSidedTTest(a, b, config).compute_result()
            out.append({"metric": metric, "kind": kind, "variant": variant, "abs_effect": result.expected,
                        "ci_low": result.ci[0], "ci_high": result.ci[1], "p_value": result.p_value})
    return out


def main() -> None:
    payload = json.loads(open(sys.argv[1]).read())
    times, results = [], []
    for _ in range(int(payload.get("repeats", 5))):
        started = time.perf_counter()
        results = run(payload)
        times.append(time.perf_counter() - started)
    with open(sys.argv[2], "w") as handle:
        json.dump({"median_s": statistics.median(times), "times": times, "results": results}, handle)


if __name__ == "__main__":
    main()
