"""liftlab's engine vs GrowthBook's gbstats beyond absolute effects, on the same sufficient statistics.

    .venv/bin/python bench/gbstats_compare.py [--metrics 100]

Prints (and :func:`compare` returns) the largest absolute difference per quantity and method
between ``liftlab.stats.engine.analyze`` and gbstats 0.8 (run by ``bench/gbstats_run.py`` in
``.venv-gbstats``), on the simulated joint statistics of ``bench/pipeline.py``
(``unit_level_statistics``: ``n_metrics`` metrics × 4 arms × 2,000 units; a tenth ratio metrics, a
tenth with CUPED, about a fifth lower-is-better, some of each kind):

============================  =========================================================  ====================================
quantity                      gbstats                                                    liftlab
============================  =========================================================  ====================================
``abs_*``, ``p_value``        ``TwoSidedTTest`` absolute                                 ``analyze`` (``reference="t"``)
``rel_*``                     ``TwoSidedTTest`` relative (delta method, t with Welch df)  ``analyze`` ``rel_*``; p: ``welch.relative_test``
``seq_abs_*``, ``seq_rel_*``  ``SequentialTwoSidedTTest`` (tuning τ = 5000)              ``analyze`` ``cs_*``, ``rel_cs_*`` (``tau=5000``)
``bayes_*`` (flat)            ``EffectBayesianABTest`` default (relative, improper flat)  ``analyze(prior_sd=inf)``; CI: ``reference="normal"``
``bayes_proper_*``            ``GaussianPrior(0, 0.3², proper=True)``                     ``analyze`` default ``prior_sd = 0.3``
============================  =========================================================  ====================================

CUPED rows agree on every absolute quantity (same pooled θ, Deng et al. 2013 = gbstats'
``compute_theta``). Their *relative* quantities differ by construction: gbstats divides the CUPED
difference by the **unadjusted** control mean and uses the unadjusted means in the delta-method
variance (``frequentist_diff``/``frequentist_variance`` with ``unadjusted_mean``), liftlab uses
the CUPED-adjusted arm estimates ``ȳ_a − θ(x̄_a − x̄)`` in both (a ratio of two adjusted means,
the relative CUPED estimator of Deng et al. 2013 §3.3 as liftlab applies it to ratio metrics).
Both are consistent for the same relative lift; they differ by ``O(θ(x̄_0 − x̄)/ȳ_0)``, i.e. by
the chance pre-period imbalance. :func:`compare` reports that raw difference (``cuped_relative_raw``)
and re-expresses liftlab's own CUPED arm estimates and variances (``liftlab.stats.cuped.cuped_adjust``)
in gbstats' convention — ``Δ/ȳ_0`` with variance ``v_1/ȳ_0² + ȳ_1² v_0/ȳ_0⁴`` — and passes them
through liftlab's own interval, sequence and Bayesian functions (``cuped_relative_explained``):
that must equal gbstats to 1e-9, so the documented denominator is the *only* difference.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

BENCH = Path(__file__).resolve().parent

#: gbstats quantity → liftlab column (for the flat-prior Bayesian CI: the normal-reference rel CI)
PAIRS = {
    "abs_effect": ("abs_effect", "t"), "ci_low": ("abs_ci_low", "t"), "ci_high": ("abs_ci_high", "t"),
    "p_value": ("p_value", "t"),
    "rel_effect": ("rel_effect", "t"), "rel_se": ("rel_se", "t"), "rel_ci_low": ("rel_ci_low", "t"),
    "rel_ci_high": ("rel_ci_high", "t"),
    "seq_abs_low": ("cs_low", "t"), "seq_abs_high": ("cs_high", "t"),
    "seq_rel_low": ("rel_cs_low", "t"), "seq_rel_high": ("rel_cs_high", "t"),
    "bayes_ctw": ("chance_to_win", "t"), "bayes_risk_trt": ("expected_loss", "t"),
    "bayes_risk_ctrl": ("expected_loss_baseline", "t"), "bayes_mean": ("rel_effect", "t"),
    "bayes_sd": ("rel_se", "t"), "bayes_ci_low": ("rel_ci_low", "normal"), "bayes_ci_high": ("rel_ci_high", "normal"),
    "bayes_proper_ctw": ("chance_to_win", "proper"), "bayes_proper_risk_trt": ("expected_loss", "proper"),
    "bayes_proper_risk_ctrl": ("expected_loss_baseline", "proper"),
}
#: quantities of a CUPED row that depend on the relative convention (see the module docstring)
CUPED_RELATIVE = ("rel_effect", "rel_se", "rel_ci_low", "rel_ci_high", "seq_rel_low", "seq_rel_high", "bayes_ctw",
                  "bayes_risk_trt", "bayes_risk_ctrl", "bayes_mean", "bayes_sd", "bayes_ci_low", "bayes_ci_high",
                  "bayes_proper_ctw", "bayes_proper_risk_trt", "bayes_proper_risk_ctrl")


def _harness():
    spec = importlib.util.spec_from_file_location("bench_pipeline", BENCH / "pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def statistics_frame(n_metrics: int):
    """The statistics of ``bench/pipeline.py``'s gbstats baseline, with mean metrics' ``d ≡ 1``;
    returns (frame, ratio metrics, CUPED metrics, lower-is-better metrics)."""
    stats = _harness().unit_level_statistics(n_metrics)
    metrics = stats["metric"].unique().sort().to_list()
    ratio, cuped = set(metrics[::10]), set(metrics[1::10])
    inverse = set(metrics[2::10]) | set(metrics[::20]) | set(metrics[1::20])  # mean, ratio and CUPED rows
    mean = ~pl.col("metric").is_in(sorted(ratio))
    stats = stats.with_columns(
        pl.when(mean).then(pl.col("n").cast(pl.Float64)).otherwise(pl.col("sum_d")).alias("sum_d"),
        pl.when(mean).then(pl.col("n").cast(pl.Float64)).otherwise(pl.col("sum_d_sq")).alias("sum_d_sq"),
        pl.when(mean).then(pl.col("sum")).otherwise(pl.col("sum_yd")).alias("sum_yd"),
        pl.when(mean).then(pl.col("sum_x")).otherwise(pl.col("sum_xd")).alias("sum_xd"),
    )
    return stats, ratio, cuped, inverse


def _cuped_in_gbstats_convention(stats: pl.DataFrame, cuped: set[str], inverse: set[str], alpha: float,
                                 tau: float, prior_sd: float) -> pl.DataFrame:
    """liftlab's CUPED arm estimates and variances (``cuped_adjust``), re-expressed as gbstats'
    relative effect ``Δ/ȳ_0`` with ``var = v_1/ȳ_0² + ȳ_1² v_0/ȳ_0⁴`` (unadjusted means ȳ), then
    through liftlab's own t interval (``two_sample``'s Welch df), sequence and Bayesian summary."""
    from scipy import stats as st

    from liftlab.stats.bayes import bayes_summary
    from liftlab.stats.cuped import cuped_adjust
    from liftlab.stats.engine import two_sample
    from liftlab.stats.moments import MOMENT_COLUMNS
    from liftlab.stats.ratio import arm_moments
    from liftlab.stats.sequential import confidence_sequence

    cols = ("n", *MOMENT_COLUMNS)
    part = stats.filter(pl.col("metric").is_in(sorted(cuped)))
    base = part.filter(pl.col("variant") == "arm0").select("metric", *[pl.col(c).alias(c + "_0") for c in cols])
    arms = part.filter(pl.col("variant") != "arm0").join(base, on="metric")
    a1 = {c: arms[c].cast(pl.Float64).to_numpy() for c in cols}
    a0 = {c: arms[c + "_0"].cast(pl.Float64).to_numpy() for c in cols}
    m0, m1 = arm_moments(a0), arm_moments(a1)
    pooled = arm_moments({c: a0[c] + a1[c] for c in cols})
    _, _, e0, e1, v0, v1, _ = cuped_adjust(m0, m1, pooled)
    df = two_sample(e0, e1, v0, v1, m0["n"], m1["n"], alpha, "t")["df"]
    y0, y1 = m0["est"], m1["est"]  # unadjusted means
    rel = (e1 - e0) / y0
    var = v1 / y0**2 + y1**2 * v0 / y0**4
    se = np.sqrt(var)
    q, z = st.t.ppf(1 - alpha / 2, df), st.norm.ppf(1 - alpha / 2)
    lo, hi = confidence_sequence(rel, var, m0["n"] + m1["n"], alpha, tau)
    good = np.where(arms["metric"].is_in(sorted(inverse)).to_numpy(), -1.0, 1.0)
    flat = bayes_summary(rel, var, good, np.inf)
    proper = bayes_summary(rel, var, good, prior_sd)
    return pl.DataFrame({
        "metric": arms["metric"], "variant": arms["variant"], "rel_effect": rel, "rel_se": se,
        "rel_ci_low": rel - q * se, "rel_ci_high": rel + q * se, "seq_rel_low": lo, "seq_rel_high": hi,
        "bayes_ctw": flat["chance_to_win"], "bayes_risk_trt": flat["expected_loss"],
        "bayes_risk_ctrl": flat["expected_loss_baseline"], "bayes_mean": flat["post_mean"], "bayes_sd": flat["post_sd"],
        "bayes_ci_low": rel - z * se, "bayes_ci_high": rel + z * se,
        "bayes_proper_ctw": proper["chance_to_win"], "bayes_proper_risk_trt": proper["expected_loss"],
        "bayes_proper_risk_ctrl": proper["expected_loss_baseline"],
    })


def _maxdiff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert np.array_equal(np.isnan(a), np.isnan(b)), "NaN in one implementation only"
    return float(np.nanmax(np.abs(a - b))) if a.size else float("nan")


def compare(work: Path, n_metrics: int = 100, alpha: float = 0.05, tau: float = 5000.0) -> dict:
    """Run both on the same statistics; the largest absolute difference per quantity and method."""
    from liftlab.stats.bayes import DEFAULT_PRIOR_SD
    from liftlab.stats.engine import analyze
    from liftlab.stats.sufficient import SampleStats
    from liftlab.stats.welch import relative_test

    gbstats_python = _harness().GBSTATS_PYTHON
    stats, ratio, cuped, inverse = statistics_frame(n_metrics)
    common = {"kinds": {m: "ratio" for m in ratio}, "cuped": sorted(cuped), "directions": {m: -1 for m in inverse},
              "alpha": alpha, "tau": tau}
    ours = {"t": analyze(stats, "arm0", reference="t", prior_sd=np.inf, **common),
            "normal": analyze(stats, "arm0", reference="normal", prior_sd=np.inf, **common),
            "proper": analyze(stats, "arm0", reference="t", prior_sd=DEFAULT_PRIOR_SD, **common)}

    rows = [{**r, "kind": "ratio" if r["metric"] in ratio else "mean", "inverse": r["metric"] in inverse}
            for r in stats.to_dicts()]
    rows += [{**r, "kind": "cuped", "inverse": r["metric"] in inverse} for r in stats.to_dicts() if r["metric"] in cuped]
    payload, out = work / "gbstats_detail_in.json", work / "gbstats_detail_out.json"
    payload.write_text(json.dumps({"baseline": "arm0", "rows": rows, "repeats": 1, "alpha": alpha, "tuning": tau,
                                   "prior_variance": DEFAULT_PRIOR_SD**2}))
    subprocess.run([str(gbstats_python), str(BENCH / "gbstats_run.py"), str(payload), str(out)], check=True)
    result = json.loads(out.read_text())
    method = pl.col("kind").replace({"mean": "welch_t", "ratio": "delta_method"}).alias("method")
    theirs = pl.DataFrame(result["results"]).join(pl.DataFrame(result["detail"]), on=["metric", "kind", "variant"])
    theirs = theirs.with_columns(method)

    # liftlab's relative p value (not an engine column): welch.relative_test on the mean metrics
    arm = {(r["metric"], r["variant"]): SampleStats(int(r["n"]), r["sum"], r["sum_sq"]) for r in stats.to_dicts()}
    welch_rows = theirs.filter(pl.col("method") == "welch_t")
    rel_p = np.array([relative_test(arm[(m, "arm0")], arm[(m, v)]) for m, v in zip(welch_rows["metric"],
                                                                                     welch_rows["variant"], strict=True)])
    diff: dict[str, dict[str, float]] = {}
    for q, (col, which) in PAIRS.items():
        joined = theirs.join(ours[which], on=["metric", "variant", "method"], how="inner", suffix="_ours")
        right = col + "_ours" if col in theirs.columns else col
        for m, part in joined.partition_by("method", as_dict=True).items():
            if m[0] == "cuped" and q in CUPED_RELATIVE:
                continue
            diff.setdefault(q, {})[m[0]] = _maxdiff(part[q].to_numpy(), part[right].to_numpy())
    diff["rel_p_value"] = {"welch_t": _maxdiff(welch_rows["rel_p_value"].to_numpy(), rel_p)}

    cup_theirs = theirs.filter(pl.col("method") == "cuped")
    explained = _cuped_in_gbstats_convention(stats, cuped, inverse, alpha, tau, DEFAULT_PRIOR_SD)
    ex = cup_theirs.join(explained, on=["metric", "variant"], suffix="_ours")
    raw, expl = {}, {}
    for q in CUPED_RELATIVE:
        col, which = PAIRS[q]
        engine = cup_theirs.join(ours[which].filter(pl.col("method") == "cuped"), on=["metric", "variant"],
                                 suffix="_ours")
        right = col + "_ours" if col in cup_theirs.columns else col
        raw[q] = _maxdiff(engine[q].to_numpy(), engine[right].to_numpy())
        expl[q] = _maxdiff(ex[q].to_numpy(), ex[q + "_ours"].to_numpy())
    # the two documented switches matter: without them the figures above would not be ~1e-15
    t_vs_normal = theirs.join(ours["t"], on=["metric", "variant", "method"], suffix="_ours").filter(
        pl.col("method") != "cuped")
    switches = {"bayes_ci_low_vs_t_reference": _maxdiff(t_vs_normal["bayes_ci_low"].to_numpy(),
                                                        t_vs_normal["rel_ci_low_ours"].to_numpy()),
                "flat_vs_proper_prior_ctw": _maxdiff(theirs["bayes_ctw"].to_numpy(), theirs["bayes_proper_ctw"].to_numpy())}
    return {"comparisons": theirs.height, "switches": switches, "cuped_comparisons": cup_theirs.height, "inverse_metrics": len(inverse),
            "max_abs_difference": diff, "cuped_relative_raw": raw, "cuped_relative_explained": expl}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        result = compare(Path(work), n_metrics=args.metrics)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
