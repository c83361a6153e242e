"""Calibration study: thousands of simulated experiments on the synthetic world, in matrix form.

What is simulated
-----------------
One synthetic world (``liftlab.synth.generate_world``) gives every user's daily sessions over
the 14-day pre-period and the 28-day window, and the day each user enters the ``aa_check``
experiment (first exposure, days 0–6).  The primary metric at look ``t`` (day 0…27) is the
user's sessions from the exposure day to ``t`` — ``marts.fct_unit_metrics.sessions`` at
``t = 27`` — over the users exposed by ``t``; the CUPED covariate is the user's pre-period
sessions (``pre_sessions``).

A simulated experiment draws each arm as a Poisson bootstrap of the world's users
(``C[b, i] ~ Poisson(λ)`` copies of user ``i`` in simulation ``b``, independently per arm,
``λ = units_per_arm / N``): each arm is then an i.i.d. sample from the world's population
``F_N``, whose moments are known exactly.  All sufficient statistics of all simulations and all
28 looks are matrix products ``C @ Y`` (no per-simulation loop):

* **A/A** — both arms untreated: the true effect is exactly 0;
* **lift** — the treatment arm's outcomes are multiplied by ``1 + δ``: the true effect at look
  ``t`` is exactly ``δ · μ_t`` (``μ_t`` the population mean at look ``t``), and the statistics
  are the A/A ones rescaled (``Σy → (1+δ)Σy``, ``Σy² → (1+δ)²Σy²``).

Measured
--------
CI coverage of the true effect (Welch, CUPED, and the confidence sequence uniformly over all
28 looks), the A/A false-positive rate at a fixed horizon and with 28 daily looks (naive
Welch at every look vs the always-valid confidence sequence), power at the true effect against
:func:`liftlab.stats.power.power_at`, and CUPED's variance reduction (Monte-Carlo variance of
the estimator) against the theory ``ρ²`` (Deng et al. 2013: ``var_cuped = (1 − ρ²)·var``).

No seed is picked: the world seed is the demo seed and the simulation seed is fixed in the
config; the size comes from the caller (``LIFTLAB_CALIBRATION_SIMS`` for the asset).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

__all__ = ["CalibrationConfig", "world_panel", "run_calibration", "summary_frame", "plot"]


@dataclass(frozen=True)
class CalibrationConfig:
    n_sims: int = 300
    n_users: int = 5_000
    world_seed: int = 20261122
    sim_seed: int = 20261122
    lift: float = 0.03
    alpha: float = 0.05
    units_per_arm: int | None = None  # None → n_users / 2
    tau: float = 5_000.0
    chunk: int = 200


@dataclass(frozen=True)
class Panel:
    y: np.ndarray  # (N, T) cumulative sessions from the exposure day to look t (0 before exposure)
    entered: np.ndarray  # (N, T) 1.0 when exposed by look t
    x: np.ndarray  # (N,) pre-period sessions
    start_date: dt.date


def world_panel(n_users: int, seed: int) -> Panel:
    """Per-user cumulative sessions at each of the 28 looks, entry flags and pre-period sessions."""
    from liftlab.synth import FaultConfig, WorldConfig, generate_world

    cfg = WorldConfig(seed=seed, n_users=n_users, faults=FaultConfig(checkout_exposure_loss=0.0))
    world = generate_world(cfg)
    T, P = cfg.experiment_days, cfg.pre_days
    start = cfg.start_date
    exp = (
        world.exposures.filter(pl.col("experiment_id") == cfg.experiment_id("aa_check"))
        .group_by("user_id").agg(pl.col("exposed_at").min())
        .with_columns(((pl.col("exposed_at").dt.date() - pl.lit(start)).dt.total_days()).alias("e"))
    )
    idx = lambda s: (s.to_numpy() - cfg.user_id_offset - 1).astype(np.int64)  # noqa: E731
    e = np.full(n_users, T, dtype=np.int64)  # never exposed → never enters
    e[idx(exp["user_id"])] = exp["e"].to_numpy()
    ses = world.events.filter(pl.col("event_type") == "session").select(
        "user_id", ((pl.col("event_ts").dt.date() - pl.lit(start)).dt.total_days() + P).alias("d")
    )
    daily = np.zeros((n_users, P + T))
    np.add.at(daily, (idx(ses["user_id"]), ses["d"].to_numpy().astype(np.int64)), 1.0)
    x = daily[:, :P].sum(axis=1)
    window = daily[:, P:]
    t = np.arange(T)
    in_window = (t[None, :] >= e[:, None]).astype(np.float64)
    y = np.cumsum(window * in_window, axis=1) * in_window
    return Panel(y=y, entered=in_window, x=x, start_date=start)


def _arm(n, s1, s2, sx=None, sxx=None, sxy=None) -> dict[str, np.ndarray]:
    z = np.zeros_like(s1)
    return {
        "n": n, "sum": s1, "sum_sq": s2, "sum_x": z if sx is None else sx, "sum_x_sq": z if sxx is None else sxx,
        "sum_xy": z if sxy is None else sxy, "sum_d": n, "sum_d_sq": n, "sum_yd": s1, "sum_xd": z if sx is None else sx,
    }


def run_calibration(cfg: CalibrationConfig, panel: Panel | None = None) -> dict:
    """Run the study; returns the measures (see :func:`summary_frame`) and the per-look curves."""
    from liftlab.stats.engine import two_sample
    from liftlab.stats.power import power_at
    from liftlab.stats.ratio import arm_moments
    from liftlab.stats.sequential import confidence_sequence

    panel = panel or world_panel(cfg.n_users, cfg.world_seed)
    N, T = panel.y.shape
    per_arm = cfg.units_per_arm or N // 2
    lam = per_arm / N
    a, d = cfg.alpha, cfg.lift
    Y, Y2, E = panel.y, panel.y**2, panel.entered
    x = panel.x
    yT = Y[:, -1]
    XM = np.stack([x, x * x, x * yT], axis=1)
    mu_t = (Y.sum(axis=0) / E.sum(axis=0))  # population mean at each look (entered users)
    true_t = d * mu_t
    rng = np.random.default_rng([cfg.sim_seed, cfg.n_sims, N])

    acc = {k: [] for k in (
        "p_aa", "cs_aa", "cover_lift", "p_lift_final", "cover_cuped", "est_aa", "est_cuped_aa",
        "vr_est", "cs_cover_lift", "cover_aa",
    )}
    done = 0
    while done < cfg.n_sims:
        b = min(cfg.chunk, cfg.n_sims - done)
        C0 = rng.poisson(lam, size=(b, N)).astype(np.float64)
        C1 = rng.poisson(lam, size=(b, N)).astype(np.float64)
        n0, n1 = C0 @ E, C1 @ E
        s0, s1 = C0 @ Y, C1 @ Y
        q0, q1 = C0 @ Y2, C1 @ Y2
        x0, x1 = C0 @ XM, C1 @ XM
        done += b

        def test(scale):
            m0 = arm_moments(_arm(n0, s0, q0))
            m1 = arm_moments(_arm(n1, scale * s1, scale**2 * q1))
            res = two_sample(m0["est"], m1["est"], m0["var"], m1["var"], m0["n"], m1["n"], a, "t")
            lo, hi = confidence_sequence(res["abs_effect"], res["abs_se"] ** 2, n0 + n1, a, cfg.tau)
            return res, lo, hi

        aa, aa_lo, aa_hi = test(1.0)
        lift, l_lo, l_hi = test(1.0 + d)
        acc["p_aa"].append(aa["p_value"])
        acc["cs_aa"].append((aa_lo > 0) | (aa_hi < 0))
        acc["cover_aa"].append((aa["abs_ci_low"][:, -1] <= 0) & (aa["abs_ci_high"][:, -1] >= 0))
        acc["est_aa"].append(aa["abs_effect"][:, -1])
        acc["cover_lift"].append((lift["abs_ci_low"][:, -1] <= true_t[-1]) & (lift["abs_ci_high"][:, -1] >= true_t[-1]))
        acc["p_lift_final"].append(lift["p_value"][:, -1])
        acc["cs_cover_lift"].append(np.all((l_lo <= true_t) & (l_hi >= true_t), axis=1))

        # CUPED at the final look, pooled θ (as liftlab.stats.engine.analyze)
        for scale, key in ((1.0, "aa"), (1.0 + d, "lift")):
            a0 = _arm(n0[:, -1], s0[:, -1], q0[:, -1], x0[:, 0], x0[:, 1], x0[:, 2])
            a1 = _arm(n1[:, -1], scale * s1[:, -1], scale**2 * q1[:, -1], x1[:, 0], x1[:, 1], scale * x1[:, 2])
            m0, m1 = arm_moments(a0), arm_moments(a1)
            pooled = arm_moments({k: a0[k] + a1[k] for k in a0})
            theta = pooled["s_lx"] / pooled["s_xx"]
            xbar = pooled["mean_x"]
            e0 = m0["est"] - theta * (m0["mean_x"] - xbar)
            e1 = m1["est"] - theta * (m1["mean_x"] - xbar)
            v0 = (m0["s_ll"] - 2 * theta * m0["s_lx"] + theta**2 * m0["s_xx"]) / m0["n"]
            v1 = (m1["s_ll"] - 2 * theta * m1["s_lx"] + theta**2 * m1["s_xx"]) / m1["n"]
            res = two_sample(e0, e1, v0, v1, m0["n"], m1["n"], a, "t")
            if key == "aa":
                acc["est_cuped_aa"].append(res["abs_effect"])
                acc["vr_est"].append(1 - (v0 + v1) / (m0["var"] + m1["var"]))
            else:
                acc["cover_cuped"].append((res["abs_ci_low"] <= true_t[-1]) & (res["abs_ci_high"] >= true_t[-1]))

    cat = {k: np.concatenate(v) for k, v in acc.items()}
    n = cfg.n_sims
    p_aa = cat["p_aa"]  # (n, T)
    naive_any = np.cumsum(p_aa < a, axis=1) > 0
    seq_any = np.cumsum(cat["cs_aa"], axis=1) > 0
    rho2 = float(np.corrcoef(x, yT)[0, 1] ** 2)
    var_raw = float(np.var(cat["est_aa"], ddof=1))
    var_cuped = float(np.var(cat["est_cuped_aa"], ddof=1))
    sd_pop = float(np.std(yT))
    se_theory = math.sqrt(sd_pop**2 / per_arm + ((1 + d) * sd_pop) ** 2 / per_arm)
    return {
        "config": asdict(cfg), "n_units": N, "units_per_arm": per_arm, "looks": T,
        "true_effect": float(true_t[-1]), "population_mean": float(mu_t[-1]), "rho2": rho2,
        "coverage_welch": float(cat["cover_lift"].mean()),
        "coverage_welch_aa": float(cat["cover_aa"].mean()),
        "coverage_cuped": float(cat["cover_cuped"].mean()),
        "coverage_cs_all_looks": float(cat["cs_cover_lift"].mean()),
        "fpr_fixed": float((p_aa[:, -1] < a).mean()),
        "fpr_naive_28": float(naive_any[:, -1].mean()),
        "fpr_sequential_28": float(seq_any[:, -1].mean()),
        "fpr_naive_by_look": naive_any.mean(axis=0).tolist(),
        "fpr_sequential_by_look": seq_any.mean(axis=0).tolist(),
        "power_empirical": float((cat["p_lift_final"] < a).mean()),
        "power_theory": float(power_at(d * mu_t[-1], se_theory, a)),
        "cuped_variance_ratio": var_cuped / var_raw,
        "cuped_variance_reduction": 1 - var_cuped / var_raw,
        "cuped_variance_reduction_estimated": float(np.mean(cat["vr_est"])),
        "n_sims": n,
    }


def _binom_band(p: float, n: int, k: float) -> float:
    return k * math.sqrt(p * (1 - p) / n)


def summary_frame(result: dict, study: str = "synthetic_world") -> pl.DataFrame:
    """One row per measure × method with its target, acceptance band and verdict.

    Bands: coverage in [94 %, 96 %] when n_sims ≥ 1,000 (else 95 % ± 3.5 binomial SE);
    A/A false-positive rate within 2·sqrt(α(1−α)/n) of α at the fixed horizon; with 28 looks
    the sequential rate ≤ α (+ 2 SE of Monte-Carlo error when n_sims < 1,000) and the naive
    rate above α + 2 SE; power within 3 SE of the analytic power; CUPED's variance reduction at
    least ρ² − 0.02.
    """
    n = result["n_sims"]
    a = result["config"]["alpha"]
    cov_half = 0.01 if n >= 1000 else _binom_band(0.95, n, 3.5)
    fpr_half = _binom_band(a, n, 2.0)
    seq_slack = 0.0 if n >= 1000 else fpr_half
    pw = result["power_theory"]
    pw_half = _binom_band(pw, n, 3.0)
    rho2 = result["rho2"]
    rows = [
        ("coverage_95", "welch_t", result["coverage_welch"], 0.95, 0.95 - cov_half, 0.95 + cov_half),
        ("coverage_95", "cuped", result["coverage_cuped"], 0.95, 0.95 - cov_half, 0.95 + cov_half),
        ("coverage_95_aa", "welch_t", result["coverage_welch_aa"], 0.95, 0.95 - cov_half, 0.95 + cov_half),
        ("coverage_all_28_looks", "sequential", result["coverage_cs_all_looks"], 0.95, 0.95 - cov_half, 1.0),
        ("fpr_fixed_horizon", "welch_t", result["fpr_fixed"], a, a - fpr_half, a + fpr_half),
        ("fpr_28_looks", "naive_welch_t", result["fpr_naive_28"], a, a + fpr_half, 1.0),
        ("fpr_28_looks", "sequential", result["fpr_sequential_28"], a, 0.0, a + seq_slack),
        ("power_at_true_effect", "welch_t", result["power_empirical"], pw, pw - pw_half, pw + pw_half),
        ("variance_reduction", "cuped", result["cuped_variance_reduction"], rho2, rho2 - 0.02, 1.0),
        ("variance_reduction_estimated", "cuped", result["cuped_variance_reduction_estimated"], rho2, rho2 - 0.02, rho2 + 0.02),
    ]
    details = json.dumps({k: v for k, v in result.items() if k not in ("fpr_naive_by_look", "fpr_sequential_by_look")} | {
        "fpr_naive_by_look": result["fpr_naive_by_look"], "fpr_sequential_by_look": result["fpr_sequential_by_look"]})
    return pl.DataFrame(
        [{"study": study, "measure": m, "method": meth, "value": v, "target": t, "lower_bound": lo, "upper_bound": hi,
          "passed": bool(lo <= v <= hi), "n_sims": n, "n_units": result["n_units"], "details": details}
         for m, meth, v, t, lo, hi in rows],
        schema={"study": pl.Utf8, "measure": pl.Utf8, "method": pl.Utf8, "value": pl.Float64, "target": pl.Float64,
                "lower_bound": pl.Float64, "upper_bound": pl.Float64, "passed": pl.Boolean, "n_sims": pl.Int64,
                "n_units": pl.Int64, "details": pl.Utf8},
    )


def plot(result: dict, path) -> None:
    """Four panels: FPR over 28 looks (naive vs sequential), coverage, CUPED variance, power."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = result["config"]["alpha"]
    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    looks = np.arange(1, result["looks"] + 1)
    ax[0, 0].plot(looks, result["fpr_naive_by_look"], label="naive Welch at every look")
    ax[0, 0].plot(looks, result["fpr_sequential_by_look"], label="confidence sequence")
    ax[0, 0].axhline(a, color="k", ls="--", lw=1, label=f"α = {a}")
    ax[0, 0].set(title="A/A: P(any rejection by look t)", xlabel="daily look", ylabel="false-positive rate")
    ax[0, 0].legend()
    names = ["Welch", "CUPED", "CS (all looks)"]
    vals = [result["coverage_welch"], result["coverage_cuped"], result["coverage_cs_all_looks"]]
    ax[0, 1].bar(names, vals, color=["C0", "C2", "C1"])
    ax[0, 1].axhspan(0.94, 0.96, color="grey", alpha=0.3)
    ax[0, 1].set(ylim=(0.9, 1.0), title="coverage of the true effect (95 % nominal)")
    ax[1, 0].bar(["1 − ρ² (theory)", "var CUPED / var raw (MC)"], [1 - result["rho2"], result["cuped_variance_ratio"]], color=["grey", "C2"])
    ax[1, 0].set(title="CUPED variance ratio", ylim=(0, 1))
    ax[1, 1].bar(["analytic", "simulated"], [result["power_theory"], result["power_empirical"]], color=["grey", "C0"])
    ax[1, 1].set(ylim=(0, 1), title=f"power at a {result['config']['lift']:.0%} lift")
    fig.suptitle(f"liftlab calibration: {result['n_sims']} simulated experiments, {result['n_units']} users")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``python -m liftlab.studies.calibration --sims 10000 --users 20000`` (no database needed)."""
    import argparse
    import os
    import time

    from liftlab import config as settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=int(os.environ.get("LIFTLAB_CALIBRATION_SIMS", "300")))
    parser.add_argument("--users", type=int, default=int(os.environ.get("LIFTLAB_CALIBRATION_USERS", "5000")))
    parser.add_argument("--lift", type=float, default=0.03)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result = run_calibration(CalibrationConfig(n_sims=args.sims, n_users=args.users, lift=args.lift))
    result["seconds"] = time.perf_counter() - start
    out = settings.REPO_ROOT / "artifacts"
    out.mkdir(exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "calibration.png")
    table = summary_frame(result).drop("details", "study")
    with pl.Config(tbl_rows=20, tbl_cols=20, tbl_width_chars=200):
        print(table)
    print(f"{args.sims} simulations × {args.users} users in {result['seconds']:.1f} s; artifacts/calibration.json, artifacts/calibration.png")
    return 0 if table["passed"].all() else 1


if __name__ == "__main__":
    raise SystemExit(main())
