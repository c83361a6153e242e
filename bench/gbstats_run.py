"""GrowthBook's gbstats on liftlab's sufficient statistics — the baseline of the statistics engine.

Runs inside ``.venv-gbstats`` (gbstats 0.8 pins numpy<2 and pandas<2, which the platform's
environment cannot hold; ``make bench`` creates it from ``bench/requirements-gbstats.lock``):

    .venv-gbstats/bin/python bench/gbstats_run.py IN.json OUT.json

IN: ``{"baseline": ..., "rows": [{variant, metric, kind, n, sum, sum_sq, sum_x, ..., inverse?}],
"repeats": R, "alpha": α, "tuning": τ, "prior_variance": v?}`` with ``kind`` one of mean / ratio /
cuped. For every metric × non-baseline arm it runs gbstats' ``TwoSidedTTest`` with absolute
differences (``SampleMeanStatistic``, ``RatioStatistic`` or ``RegressionAdjustedStatistic`` with
gbstats' pooled ``compute_theta``), R times, and writes the estimates, CIs and p values with the
median wall time. Once more, outside the timing (``"detail"`` in OUT, one dict per comparison),
on the same statistics:

* ``rel_*``: ``TwoSidedTTest`` with ``difference_type="relative"`` (delta-method relative CI);
* ``seq_abs_*`` / ``seq_rel_*``: ``SequentialTwoSidedTTest`` (``sequential_tuning_parameter`` τ,
  default 5000), absolute and relative;
* ``bayes_*``: ``EffectBayesianABTest`` with its default config — relative effect, flat improper
  prior ``GaussianPrior(proper=False)`` — chance to win, risk ``[control, treatment]``, credible
  interval, posterior mean and sd; ``inverse`` rows set ``EffectBayesianConfig(inverse=True)``;
* ``bayes_proper_*``: the same with ``GaussianPrior(0, prior_variance, proper=True)`` when the
  payload gives ``prior_variance`` (liftlab's default prior is N(0, 0.3²) on the relative lift).

``tests/test_bench.py`` and ``bench/gbstats_compare.py`` compare each with liftlab's engine;
``docs/statistics.md`` ("liftlab vs gbstats") explains every difference. Not part of liftlab: a
yardstick.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig, GaussianPrior
from gbstats.frequentist.tests import FrequentistConfig, SequentialConfig, SequentialTwoSidedTTest, TwoSidedTTest
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


def _bayes(prefix: str, result) -> dict:
    return {f"{prefix}_ctw": result.chance_to_win, f"{prefix}_risk_ctrl": result.risk[0],
            f"{prefix}_risk_trt": result.risk[1], f"{prefix}_ci_low": result.ci[0], f"{prefix}_ci_high": result.ci[1],
            f"{prefix}_mean": result.uplift.mean, f"{prefix}_sd": result.uplift.stddev}


def detail(payload: dict) -> list[dict]:
    """Relative, sequential and Bayesian results of gbstats for every metric × non-baseline arm."""
    baseline = payload["baseline"]
    alpha = payload.get("alpha", 0.05)
    tuning = payload.get("tuning", 5000.0)
    prior_variance = payload.get("prior_variance")
    by_metric: dict[tuple[str, str], dict[str, dict]] = {}
    for row in payload["rows"]:
        by_metric.setdefault((row["metric"], row["kind"]), {})[row["variant"]] = row
    out = []
    for (metric, kind), arms in by_metric.items():
        for variant, row in arms.items():
            if variant == baseline:
                continue
            inverse = bool(row.get("inverse", False))
            # fresh statistics for every test: gbstats sets θ on RegressionAdjustedStatistic in place
            def pair():
                return statistic(arms[baseline]), statistic(row)
            rec = {"metric": metric, "kind": kind, "variant": variant}
            rel = TwoSidedTTest(*pair(), FrequentistConfig(difference_type="relative", alpha=alpha)).compute_result()
            rec.update(rel_effect=rel.expected, rel_ci_low=rel.ci[0], rel_ci_high=rel.ci[1], rel_p_value=rel.p_value,
                       rel_se=rel.uplift.stddev)
            for diff in ("absolute", "relative"):
                cfg = SequentialConfig(difference_type=diff, alpha=alpha, sequential_tuning_parameter=tuning)
                seq = SequentialTwoSidedTTest(*pair(), cfg).compute_result()
                tag = "abs" if diff == "absolute" else "rel"
                rec.update({f"seq_{tag}_low": seq.ci[0], f"seq_{tag}_high": seq.ci[1], f"seq_{tag}_p": seq.p_value})
            flat = EffectBayesianABTest(*pair(), EffectBayesianConfig(inverse=inverse, alpha=alpha)).compute_result()
            rec.update(_bayes("bayes", flat))
            if prior_variance is not None:
                prior = GaussianPrior(mean=0.0, variance=float(prior_variance), proper=True)
                cfg = EffectBayesianConfig(inverse=inverse, alpha=alpha, prior_effect=prior)
                rec.update(_bayes("bayes_proper", EffectBayesianABTest(*pair(), cfg).compute_result()))
            out.append(rec)
    return out


def main() -> None:
    payload = json.loads(open(sys.argv[1]).read())
    times, results = [], []
    for _ in range(int(payload.get("repeats", 5))):
        started = time.perf_counter()
        results = run(payload)
        times.append(time.perf_counter() - started)
    with open(sys.argv[2], "w") as handle:
        json.dump({"median_s": statistics.median(times), "times": times, "results": results,
                   "detail": detail(payload)}, handle)


if __name__ == "__main__":
    main()
