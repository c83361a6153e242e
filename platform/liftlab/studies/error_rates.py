"""Error rates of the decision itself: simulated experiments with daily looks through the engine,
CUPED and :func:`liftlab.decide.decide`.

What is simulated
-----------------
An experiment has ``arms`` arms (a control and ``arms − 1`` treatments) and ``looks`` days; each
day ``users_per_day`` new units enter every arm. A unit has a pre-period value
``x ~ Gamma(2, 1)`` and an outcome ``y = 0.7·x + e``, ``e ~ Gamma(1, 1)`` (right-skewed like
revenue or sessions; corr(x, y)² ≈ 0.49, so CUPED has something to remove), multiplied by
``1 + effect`` in the first treatment arm. Units are drawn one by one (no normal shortcut);
each day's sufficient statistics per arm are summed over units and accumulated over days, so
look ``t`` holds the units of days 1…t — what ``results.daily_looks`` holds for an event stream.

What runs on them
-----------------
Exactly the production path: :func:`liftlab.stats.engine.analyze` (Welch and CUPED rows,
confidence sequences), :func:`liftlab.stats.engine.adjust` (Holm across arms, the sequences at
``α/m``) with every (simulation, look) as its own analysis, then :func:`liftlab.decide.decide`
with the spec's policy on each look's rows, ``today`` the morning after the look. A simulated
experiment stops at its first SHIP or ROLLBACK (an analyst acting on it) or after its last look.

* ``sequential``: decide() at every look; the last look is after ``end_date``.
* ``fixed_horizon``: decide() at every look as well — every look before the end must say KEEP
  RUNNING (counted, must be 0) — and the decision after the last look is the one that counts.
* ``peeking`` (reference only): the fixed-horizon rule applied at every look as if each were the
  end — the error the sequential policy exists to prevent; it shows the study can see it.

Reported: the false decision rate (SHIP or ROLLBACK when every arm has effect 0) with its
Monte-Carlo standard error and Wilson interval, or the power (SHIP of the treated arm) and the
mean look of the decision for a true effect. ``python -m liftlab.studies.error_rates --help``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from liftlab.stats.moments import MOMENT_COLUMNS
from liftlab.studies import wilson

START = dt.date(2026, 1, 1)
POLICIES = ("sequential", "fixed_horizon", "peeking")


@dataclass(frozen=True)
class ErrorRate:
    """One policy's outcome over ``sims`` simulated experiments."""

    policy: str
    arms: int
    sims: int
    looks: int
    users_per_day: int
    effect: float
    alpha: float
    ship: int
    rollback: int
    early_decisions: int  # fixed horizon: decisions other than KEEP RUNNING before the end (must be 0)
    mean_decision_look: float
    rate: float  # (SHIP + ROLLBACK) / sims under the null; SHIP of the treated arm / sims otherwise
    mc_se: float
    wilson_low: float
    wilson_high: float


def arm_names(arms: int) -> list[str]:
    return ["control", *[f"v{i}" for i in range(1, arms)]]


def study_spec(arms: int, looks: int, alpha: float, policy: str):
    """The simulated experiment's spec: a unit-level outcome ``y`` with its pre-period ``pre_y``."""
    from liftlab.specs import ExperimentSpec

    names = arm_names(arms)
    share = 1.0 / arms
    return ExperimentSpec.model_validate({
        "id": "simulated", "hypothesis": "simulation", "baseline": "control",
        "variants": [{"name": n, "allocation": share if i else 1.0 - share * (arms - 1)} for i, n in enumerate(names)],
        "start_date": START.isoformat(), "end_date": (START + dt.timedelta(days=looks - 1)).isoformat(),
        "primary_metric": "y", "alpha": alpha, "inference": "fixed_horizon" if policy == "peeking" else policy,
        "covariates": ["pre_y"],
        "source": {"kind": "file", "path": "simulated.csv", "unit_column": "unit", "variant_column": "arm",
                   "columns": {"unit": "integer", "arm": "string", "y": "float", "pre_y": "float"}, "outcomes": ["y"]},
    })


def simulate_looks(rng: np.random.Generator, sims: int, arms: int, looks: int, users_per_day: int,
                   effect: float) -> pl.DataFrame:
    """Cumulative sufficient statistics per (sim, look, variant) of the metric ``y`` (CUPED on x)."""
    shape = (sims, looks, arms, users_per_day)
    x = rng.standard_gamma(2.0, size=shape)
    y = 0.7 * x + rng.standard_gamma(1.0, size=shape)
    if arms > 1 and effect:
        y[:, :, 1, :] *= 1.0 + effect
    daily = {"sum": y.sum(-1), "sum_sq": (y * y).sum(-1), "sum_x": x.sum(-1), "sum_x_sq": (x * x).sum(-1),
             "sum_xy": (x * y).sum(-1)}
    del x, y
    cum = {k: np.cumsum(v, axis=1) for k, v in daily.items()}  # (sims, looks, arms)
    n = np.broadcast_to(np.arange(1, looks + 1)[None, :, None] * users_per_day, (sims, looks, arms))
    sim_i, look_i, arm_i = np.meshgrid(np.arange(sims), np.arange(1, looks + 1), np.arange(arms), indexing="ij")
    frame = pl.DataFrame({
        "sim": sim_i.ravel(), "look": look_i.ravel(), "variant": np.array(arm_names(arms))[arm_i.ravel()],
        "metric": "y", "n": n.ravel().astype(np.int64), **{k: v.ravel() for k, v in cum.items()},
    })
    ones = pl.col("n").cast(pl.Float64)
    return frame.with_columns(sum_d=ones, sum_d_sq=ones, sum_yd=pl.col("sum"), sum_xd=pl.col("sum_x")).select(
        "sim", "look", "variant", "metric", "n", *MOMENT_COLUMNS)


def look_effects(stats: pl.DataFrame, spec) -> pl.DataFrame:
    """Every (sim, look)'s effect rows, computed as :func:`liftlab.experiment_stats.experiment_effects`
    computes one experiment's (same engine calls, same options)."""
    from liftlab.experiment_stats import engine_options
    from liftlab.stats.engine import adjust, analyze

    options = engine_options(spec) | {"kinds": {"y": "mean"}, "cuped": ["y"], "directions": {"y": 1}}
    table = analyze(stats, keys=["sim", "look"], **options)
    return adjust(table, spec.metric_roles(), alpha=spec.alpha, keys=["sim", "look"], tau=spec.sequential_tuning)


def _decide_chunk(effects: pl.DataFrame, spec, policy: str, looks: int) -> list[tuple[str, str | None, int, int]]:
    """Per simulation: (decision, variant, look decided at, early decisions) under ``policy``."""
    from liftlab.decide import decide

    gates = [{"check": "srm", "status": "PASS", "reason": "simulated"}]
    rows = effects.sort("sim", "look").to_dicts()
    out, i = [], 0
    while i < len(rows):
        sim = rows[i]["sim"]
        by_look: dict[int, list[dict]] = {}
        while i < len(rows) and rows[i]["sim"] == sim:
            by_look.setdefault(rows[i]["look"], []).append(rows[i])
            i += 1
        final, early = ("HOLD", None, looks), 0
        for look in range(1, looks + 1):
            last = look == looks
            today = START + dt.timedelta(days=looks if (policy == "peeking" or last) else look)
            d = decide(spec, gates, by_look[look], today=today)
            if not last and policy == "fixed_horizon" and d.decision != "KEEP RUNNING":
                early += 1
            if d.decision in ("SHIP", "ROLLBACK") and (last or policy != "fixed_horizon"):
                final = (d.decision, d.variant, look)
                break
            if last:
                final = (d.decision, d.variant, look)
        out.append((*final, early))
    return out


def run(sims: int, arms: int = 2, looks: int = 28, users_per_day: int = 200, effect: float = 0.0,
        alpha: float = 0.05, policies=POLICIES, seed: int = 17, chunk: int = 500) -> list[ErrorRate]:
    """Simulate ``sims`` experiments and decide them under each policy (the same draws for all)."""
    rng = np.random.default_rng(seed)
    specs = {p: study_spec(arms, looks, alpha, p) for p in policies}
    outcomes: dict[str, list] = {p: [] for p in policies}
    for start in range(0, sims, chunk):
        size = min(chunk, sims - start)
        effects = look_effects(simulate_looks(rng, size, arms, looks, users_per_day, effect), specs[policies[0]])
        for p in policies:
            outcomes[p] += _decide_chunk(effects, specs[p], p, looks)
    results = []
    for p in policies:
        decided = outcomes[p]
        ship = sum(d == "SHIP" for d, *_ in decided)
        rollback = sum(d == "ROLLBACK" for d, *_ in decided)
        hits = ship + rollback if effect == 0 else sum(d == "SHIP" and v == "v1" for d, v, *_ in decided)
        looks_at = [lk for d, _, lk, _ in decided if d in ("SHIP", "ROLLBACK")]
        rate = hits / sims
        lo, hi = wilson(hits, sims)
        results.append(ErrorRate(
            policy=p, arms=arms, sims=sims, looks=looks, users_per_day=users_per_day, effect=effect, alpha=alpha,
            ship=ship, rollback=rollback, early_decisions=sum(e for *_, e in decided),
            mean_decision_look=float(np.mean(looks_at)) if looks_at else math.nan,
            rate=rate, mc_se=math.sqrt(rate * (1 - rate) / sims), wilson_low=lo, wilson_high=hi))
    return results


#: E[y] of a control unit: 0.7·E[x] + E[e] = 0.7·2 + 1.
MEAN_Y = 2.4


def coverage(sims: int, looks: int = 28, users_per_day: int = 200, effect: float = 0.05, alpha: float = 0.05,
             seed: int = 29, chunk: int = 500) -> pl.DataFrame:
    """Coverage of the true effect by the engine's intervals, per method (Welch, CUPED): the
    fixed-horizon CI (absolute and relative) at the last look, and the confidence sequence at
    every look at once (its promise). Two arms; the truth is ``effect·E[y]`` (relative: ``effect``)."""
    rng = np.random.default_rng(seed)
    spec = study_spec(2, looks, alpha, "sequential")
    true_abs = effect * MEAN_Y
    parts = []
    for start in range(0, sims, chunk):
        size = min(chunk, sims - start)
        eff = look_effects(simulate_looks(rng, size, 2, looks, users_per_day, effect), spec).with_columns(
            pl.col("sim") + start)
        cs_cover = ((pl.col("cs_low") <= true_abs) & (true_abs <= pl.col("cs_high"))).all()
        last = pl.col("look") == looks
        parts.append(eff.group_by("sim", "method").agg(
            ((pl.col("abs_ci_low") <= true_abs) & (true_abs <= pl.col("abs_ci_high"))).filter(last).first().alias("ci"),
            ((pl.col("rel_ci_low") <= effect) & (effect <= pl.col("rel_ci_high"))).filter(last).first().alias("rel_ci"),
            cs_cover.alias("cs_all_looks"),
            pl.col("abs_effect").filter(last).first().alias("estimate"),
        ))
    per_sim = pl.concat(parts)
    return per_sim.group_by("method").agg(
        pl.len().alias("sims"), pl.col("ci").mean(), pl.col("rel_ci").mean(), pl.col("cs_all_looks").mean(),
        (pl.col("estimate").mean() - true_abs).alias("bias"), pl.col("estimate").var().alias("mc_variance"),
    ).sort("method")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=20_000)
    parser.add_argument("--arms", type=int, default=2)
    parser.add_argument("--looks", type=int, default=28)
    parser.add_argument("--users-per-day", type=int, default=200)
    parser.add_argument("--effect", type=float, default=0.0, help="true relative effect of arm v1 (0: A/A)")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--coverage", action="store_true", help="coverage of the engine's intervals instead")
    args = parser.parse_args(argv)
    if args.coverage:
        table = coverage(args.sims, args.looks, args.users_per_day, args.effect or 0.05, args.alpha)
        with pl.Config(tbl_cols=-1, tbl_width_chars=200, float_precision=5):
            print(table)
        for row in table.iter_rows(named=True):
            lo, hi = wilson(round(row["ci"] * row["sims"]), row["sims"])
            print(f"{row['method']}: CI coverage {row['ci']:.4f} (Wilson {lo:.4f}–{hi:.4f}), relative "
                  f"{row['rel_ci']:.4f}, sequence over all {args.looks} looks {row['cs_all_looks']:.4f}")
        vr = table.filter(pl.col("method") == "cuped")["mc_variance"][0] / table.filter(
            pl.col("method") == "welch_t")["mc_variance"][0]
        print(f"CUPED Monte-Carlo variance / Welch: {vr:.4f} (theory 1 − ρ² ≈ {1 - 0.7**2 * 2 / (0.7**2 * 2 + 1):.4f})")
        return
    results = run(args.sims, args.arms, args.looks, args.users_per_day, args.effect, args.alpha,
                  tuple(args.policies.split(",")), args.seed)
    for r in results:
        bound = r.alpha + 2 * math.sqrt(r.alpha * (1 - r.alpha) / r.sims)
        what = "false SHIP+ROLLBACK" if r.effect == 0 else f"power (SHIP v1) at {r.effect:+.0%}"
        verdict = f" (≤ α + 2·se = {bound:.4f}: {'yes' if r.rate <= bound else 'NO'})" if r.effect == 0 else ""
        print(f"{r.policy:>13} arms={r.arms} sims={r.sims}: {what} {r.rate:.4f} ± {r.mc_se:.4f} "
              f"(Wilson {r.wilson_low:.4f}–{r.wilson_high:.4f}){verdict}; mean decision look "
              f"{r.mean_decision_look:.1f}; early decisions {r.early_decisions}")
    print(json.dumps([asdict(r) for r in results]))


if __name__ == "__main__":
    main()
