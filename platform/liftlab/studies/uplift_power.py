"""Power study: how often can the uplift pipeline show a Qini CI above 0 at Hillstrom's scale?

Why. On Hillstrom's Mens E-Mail vs No E-Mail (42,613 units, visits 10.6 % → 18.3 %,
conversions 0.57 % → 1.25 %) the learners' out-of-fold Qini coefficients scatter around 0 and
their CIs straddle it. Is that because the learners are poor, or because an effect
heterogeneity of the size these data can hold is below what 42,613 units can detect? Only a
simulation with a known answer separates the two.

What is simulated (semi-synthetic, Hillstrom's own units). The real features and the real
random assignment of arm ∪ baseline are kept; only the outcome is redrawn:

* control probability μ₀(x): a logistic regression of the outcome on the encoded features,
  fitted on the real control units (the data's own prognostic structure);
* CATE τ(x) = τ̄ + s·z(x), with τ̄ the real difference in means and z(x) a standardised
  random linear index of the features (normal scores of each encoded column, coefficients
  drawn N(0, 1) per simulation): the heterogeneity runs along a direction nobody chose, so the
  study does not favour a learner that happens to like one covariate;
* Y ~ Bernoulli(μ₀ + τ) for treated and Bernoulli(μ₀) for control units (probabilities clipped
  to [0, 1]; the true CATE is the clipped difference). Common random numbers: simulation i
  uses the same index and the same uniforms at every level s, so the power curve is smooth.

Each simulated data set then goes through :func:`liftlab.uplift.analysis.analyse_experiment`
exactly as the asset runs it (the spec's learners, folds, repeats and bootstrap), and the study
records the oracle's Qini, the best learner's Qini with its marginal CI and the simultaneous
band over all the learners (:func:`liftlab.uplift.evaluation.simultaneous_band`). Per level s:

* **power** = the share of simulations whose best learner has a CI above 0 (marginal and
  simultaneous), with a Wilson 95 % interval;
* at s = 0 the same shares are **false-positive rates**: there is no heterogeneity to find,
  so a "CI above 0" is a false claim. The marginal CI of the best of L learners is expected to
  exceed its nominal 2.5 % (winner's curse); the simultaneous band should not.

The best learner's row also carries the **held-out, selection-honest** interval
(:mod:`liftlab.uplift.honest`: for each half the learner is chosen by an inner cross-fit of the
other half and that half's fold model ranks it; the two fold-wise fixed-ranking bootstraps are
combined with the dependence-free bound sd(θ̄) ≤ mean of the fold sds). It uses the first
repetition's fold models only, so ``--repeats 1`` runs it at about half the cost with the same
procedure; :func:`null_calibration` reports its null rate (CI above 0, and the interval
excluding 0 on either side: nominal 2.5 % and 5 %) next to the fixed-model intervals'.

    python -m liftlab.studies.uplift_power --sims 50 --levels 0 --outcome visit --repeats 1 \
        --sim-seed 20261300 --out bench/results/uplift_heldout_null_visit.json

The expected (noise-free) oracle Qini — the area between Σ_top τ and the random line
(:func:`liftlab.uplift.analysis.expected_area`) times the treated share, since the Qini curve
counts incremental outcomes among the *treated* units of the top k — puts each level on the
Qini scale, so the real data's figures can be placed on the curve.

    python -m liftlab.studies.uplift_power --sims 20 --levels 0,0.02,0.04 --outcome visit
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context

import numpy as np
import polars as pl

__all__ = [
    "PowerConfig", "RealUnits", "hillstrom_units", "semi_synthetic", "run_power", "summarise", "learner_shares",
    "null_calibration", "single_feature_qinis", "wilson",
]


@dataclass(frozen=True)
class PowerConfig:
    arm: str = "Mens E-Mail"
    outcome: str = "visit"
    levels: tuple[float, ...] = (0.0, 0.02, 0.04)
    n_sims: int = 20
    sim_seed: int = 20261130
    learners: tuple[str, ...] = ()  # empty: the spec's
    n_folds: int | None = None  # None: the spec's
    n_repeats: int | None = None
    n_boot: int | None = None
    workers: int = 2


def hillstrom_units() -> tuple[pl.DataFrame, object]:
    """Hillstrom's units as the uplift asset sees them (``unit_id``, ``variant``, features,
    outcomes), read from the file the spec declares with the spec's column types, and the spec."""
    from liftlab.ingest.files import read_user_file
    from liftlab.specs import load_specs

    item = next(item for item in load_specs() if item.spec.id == "hillstrom")
    return read_user_file(item.spec, item.path).frame, item.spec


def _normal_scores(X: np.ndarray) -> np.ndarray:
    """Each column replaced by the normal quantiles of its (average) ranks: heavy tails such
    as Hillstrom's ``history`` do not dominate the random index."""
    from scipy.stats import norm, rankdata

    out = np.zeros_like(X, dtype=np.float64)
    n = X.shape[0]
    for j in range(X.shape[1]):
        col = X[:, j]
        if np.nanstd(col) == 0:
            continue
        out[:, j] = norm.ppf(rankdata(col, nan_policy="omit") / (n + 1))
    return np.nan_to_num(out)


@dataclass(frozen=True)
class RealUnits:
    """What every simulation shares, computed once: the real units of arm ∪ baseline (sorted
    by ``unit_id``), their assignment, the fitted control probability μ₀(x), the real average
    effect τ̄ and the normal scores of the encoded features."""

    units: pl.DataFrame
    outcome: str
    treated: np.ndarray
    mu0: np.ndarray
    ate: float
    scores: np.ndarray

    @classmethod
    def prepare(cls, frame: pl.DataFrame, *, arm: str, baseline: str, outcome: str, features: list[str]) -> RealUnits:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        from liftlab.uplift.features import encode

        units = frame.filter(pl.col("variant").is_in([arm, baseline])).sort("unit_id")
        X = encode(units, features).X
        t = (units["variant"] == arm).to_numpy()
        y = units[outcome].cast(pl.Float64).to_numpy()
        scaled = StandardScaler().fit_transform(np.nan_to_num(X))
        mu0 = LogisticRegression(max_iter=2000).fit(scaled[~t], y[~t]).predict_proba(scaled)[:, 1]
        return cls(units=units, outcome=outcome, treated=t, mu0=mu0, ate=float(y[t].mean() - y[~t].mean()),
                   scores=_normal_scores(X))

    def draw(self, levels: tuple[float, ...], seed: int) -> dict[float, pl.DataFrame]:
        """One simulated data set per level s (same index and uniforms at every level): the
        real units with the outcome redrawn and ``true_cate__<outcome>`` added."""
        rng = np.random.default_rng(seed)
        z = self.scores @ rng.standard_normal(self.scores.shape[1])
        z = (z - z.mean()) / z.std() if z.std() > 0 else z
        u = rng.random(len(self.mu0))
        out = {}
        for s in levels:
            p1 = np.clip(self.mu0 + self.ate + s * z, 0.0, 1.0)
            y_sim = (u < np.where(self.treated, p1, self.mu0)).astype(np.float64)
            out[s] = self.units.with_columns(pl.Series(self.outcome, y_sim),
                                             pl.Series(f"true_cate__{self.outcome}", p1 - self.mu0))
        return out


def semi_synthetic(frame: pl.DataFrame, *, arm: str, baseline: str, outcome: str, features: list[str],
                   levels: tuple[float, ...], seed: int) -> dict[float, pl.DataFrame]:
    """:meth:`RealUnits.draw` on freshly prepared units (one-off use; the study prepares once)."""
    return RealUnits.prepare(frame, arm=arm, baseline=baseline, outcome=outcome, features=features).draw(levels, seed)


def _one(args: tuple) -> list[dict]:
    """Simulation i at every level, with BLAS held to one thread: the workers already occupy
    the cores."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _simulate(*args)


def _simulate(real: RealUnits, cfg, spec_kw, i) -> list[dict]:
    from liftlab.uplift.analysis import analyse_experiment, expected_area

    sims = real.draw(cfg.levels, seed=cfg.sim_seed + i)
    treated_share = float(real.treated.mean())
    rows = []
    for s, data in sims.items():
        start = time.perf_counter()
        result = analyse_experiment(
            data, experiment_id="power", baseline=spec_kw["baseline"], arms=[cfg.arm], outcomes=[cfg.outcome],
            features=spec_kw["features"], learners=spec_kw["learners"], backend=spec_kw["backend"],
            n_folds=spec_kw["n_folds"], n_repeats=spec_kw["n_repeats"],
            seed=spec_kw["seed"] + i * spec_kw["n_repeats"], n_boot=spec_kw["n_boot"], explain=False)
        models = result.frame("models")
        learned = models.filter(pl.col("learner").is_in(spec_kw["learners"]))
        best = learned.filter(pl.col("is_best")).row(0, named=True)
        oracle = models.filter(pl.col("learner") == "oracle").row(0, named=True)
        tau = data[f"true_cate__{cfg.outcome}"].to_numpy()
        rows.append({
            "level": s, "sim": i, "true_cate_sd": float(tau.std()),
            "expected_oracle_qini": expected_area(tau, tau) * treated_share if s > 0 else 0.0,
            "oracle_qini": oracle["qini"], "oracle_ci_low": oracle["qini_ci_low"],
            "best_learner": best["learner"], "best_qini": best["qini"],
            "best_ci_low": best["qini_ci_low"], "best_simul_ci_low": best["qini_simul_ci_low"],
            "best_ci_high": best["qini_ci_high"], "best_simul_ci_high": best["qini_simul_ci_high"],
            # the held-out, selection-honest interval (liftlab.uplift.honest): chosen and fitted on one
            # half, evaluated on the other, both ways, dependence-free combination
            "heldout_qini": best["qini_heldout"], "heldout_se": best["qini_heldout_se"],
            "heldout_ci_low": best["qini_heldout_ci_low"], "heldout_ci_high": best["qini_heldout_ci_high"],
            "heldout_learners": best["heldout_learners"],
            "best_expected_share": best["expected_oracle_share"],
            "mean_learner_qini": float(learned["qini"].mean()),
            "n_learners_ci_above_0": int((learned["qini_ci_low"] > 0).sum()),
            "seconds": time.perf_counter() - start,
            **{f"qini__{r['learner']}": r["qini"] for r in learned.iter_rows(named=True)},
            **{f"ci_low__{r['learner']}": r["qini_ci_low"] for r in learned.iter_rows(named=True)},
        })
    return rows


def run_power(cfg: PowerConfig, frame: pl.DataFrame | None = None, spec=None, log=print,
              checkpoint: str | None = None) -> pl.DataFrame:
    """Every simulation × level; one row each. Simulations run in ``cfg.workers`` processes
    (each fit is single-threaded). ``checkpoint``: a JSON file rewritten with every row so far
    after each finished simulation (``--summarise`` reads it), so a long run stopped early keeps
    what it did."""
    from liftlab.uplift_io import uplift_features

    if frame is None or spec is None:
        frame, spec = hillstrom_units()
    up = spec.uplift
    spec_kw = {
        "baseline": spec.baseline, "features": list(uplift_features(spec)),
        "learners": list(cfg.learners or up.learners), "backend": up.base_model,
        "n_folds": cfg.n_folds or up.folds, "n_repeats": cfg.n_repeats or up.repeats,
        "n_boot": cfg.n_boot if cfg.n_boot is not None else up.n_bootstrap, "seed": up.seed,
    }
    real = RealUnits.prepare(frame, arm=cfg.arm, baseline=spec.baseline, outcome=cfg.outcome,
                             features=spec_kw["features"])
    jobs = [(real, cfg, spec_kw, i) for i in range(cfg.n_sims)]
    rows: list[dict] = []
    start = time.perf_counter()
    def finished(done: int, part: list[dict]) -> None:
        rows.extend(part)
        log(f"simulation {done}/{cfg.n_sims} ({time.perf_counter() - start:.0f} s)")
        if checkpoint:
            with open(checkpoint, "w") as fh:
                json.dump({"config": asdict(cfg), "partial": done < cfg.n_sims, "simulations": rows}, fh, default=str)

    if cfg.workers > 1:
        from concurrent.futures import as_completed

        with ProcessPoolExecutor(cfg.workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_one, job) for job in jobs]
            for done, future in enumerate(as_completed(futures), 1):
                finished(done, future.result())
        rows.sort(key=lambda r: (r["sim"], r["level"]))
    else:
        for done, job in enumerate(jobs, 1):
            finished(done, _one(job))
    return pl.DataFrame(rows).with_columns(pl.lit(cfg.outcome).alias("outcome"), pl.lit(cfg.arm).alias("arm"))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """:func:`liftlab.studies.wilson` at z = 1.96 (the figures this study has published)."""
    from liftlab.studies import wilson as interval

    return interval(k, n, z)


def _above_zero(lows: pl.Series) -> tuple[float, tuple[float, float]]:
    """The share of CI lower bounds above 0, and its Wilson interval."""
    k = int((lows > 0).sum())
    return k / len(lows), wilson(k, len(lows))


def summarise(sims: pl.DataFrame) -> pl.DataFrame:
    """Per level: the Qini scale (expected and realised oracle Qini, the best learner's Qini)
    and the shares of simulations whose best learner's CI / simultaneous band is above 0."""
    rows = []
    for (level,), g in sims.group_by(["level"], maintain_order=True):
        marginal, marginal_ci = _above_zero(g["best_ci_low"])
        band, band_ci = _above_zero(g["best_simul_ci_low"])
        held = _above_zero(g["heldout_ci_low"]) if "heldout_ci_low" in g.columns else (None, None)
        rows.append({
            "level": level, "n_sims": g.height, "true_cate_sd": float(g["true_cate_sd"].mean()),
            "expected_oracle_qini": float(g["expected_oracle_qini"].mean()),
            "oracle_qini": float(g["oracle_qini"].mean()), "oracle_ci_above_0": _above_zero(g["oracle_ci_low"])[0],
            "best_qini": float(g["best_qini"].mean()), "mean_learner_qini": float(g["mean_learner_qini"].mean()),
            "best_expected_share": float(g["best_expected_share"].mean()) if level > 0 else None,
            "best_ci_above_0": marginal, "best_ci_above_0_wilson": marginal_ci,
            "best_simul_above_0": band, "best_simul_above_0_wilson": band_ci,
            "heldout_above_0": held[0], "heldout_above_0_wilson": held[1],
        })
    return pl.DataFrame(rows).sort("level")


def learner_shares(sims: pl.DataFrame) -> pl.DataFrame:
    """Per level × learner: the mean out-of-fold Qini and the share of simulations whose own
    marginal CI is above 0 (the power of that learner alone, had it been chosen beforehand)."""
    learners = [c.removeprefix("qini__") for c in sims.columns if c.startswith("qini__")]
    rows = []
    for (level,), g in sims.group_by(["level"], maintain_order=True):
        for name in learners:
            share, ci = _above_zero(g[f"ci_low__{name}"])
            rows.append({"level": level, "learner": name, "mean_qini": float(g[f"qini__{name}"].mean()),
                         "ci_above_0": share, "ci_above_0_wilson": ci})
    return pl.DataFrame(rows).sort("level", "mean_qini", descending=[False, True])


def null_calibration(sims: pl.DataFrame) -> pl.DataFrame:
    """At s = 0 (no heterogeneity), per ranking — each learner, the best of them (marginal CI
    and simultaneous band) and the fixed "oracle" (a constant CATE sorts by unit order: a
    ranking made without the outcomes) — the share of simulations whose CI is above 0 (nominal
    2.5 %: the upper tail of a 95 % interval) and the spread of its Qini across simulations next
    to the bootstrap's standard error (≈ (Qini − CI low)/1.96, averaged). A ratio above 1
    means the interval is too narrow for that ranking."""
    null = sims.filter(pl.col("level") == 0)
    if null.is_empty():
        return pl.DataFrame()
    n = null.height
    learners = [c.removeprefix("qini__") for c in null.columns if c.startswith("qini__")]
    pairs = [(name, f"qini__{name}", f"ci_low__{name}") for name in learners]
    pairs += [("oracle (fixed ranking)", "oracle_qini", "oracle_ci_low"), ("best of the learners", "best_qini", "best_ci_low")]
    rows = []
    for name, q, lo in pairs:
        share, ci = _above_zero(null[lo])
        se = ((null[q] - null[lo]) / 1.96).mean()
        rows.append({"ranking": name, "n_sims": n, "ci_above_0": share, "ci_above_0_wilson": ci,
                     "mean_qini": float(null[q].mean()), "sd_across_sims": float(null[q].std()),
                     "mean_bootstrap_se": float(se), "sd_ratio": float(null[q].std() / se) if se else None})
    share, ci = _above_zero(null["best_simul_ci_low"])
    rows.append({"ranking": "best of the learners, simultaneous band", "n_sims": n, "ci_above_0": share,
                 "ci_above_0_wilson": ci, "mean_qini": float(null["best_qini"].mean()),
                 "sd_across_sims": None, "mean_bootstrap_se": None, "sd_ratio": None})
    if "heldout_ci_low" in null.columns and null["heldout_ci_low"].null_count() < n:
        share, ci = _above_zero(null["heldout_ci_low"])
        se = float(null["heldout_se"].mean())
        rows.append({"ranking": "held-out, selection-honest (chosen and fitted on one half, scored on the other)",
                     "n_sims": n, "ci_above_0": share, "ci_above_0_wilson": ci,
                     "mean_qini": float(null["heldout_qini"].mean()), "sd_across_sims": float(null["heldout_qini"].std()),
                     "mean_bootstrap_se": se, "sd_ratio": float(null["heldout_qini"].std() / se) if se else None})
    table = pl.DataFrame(rows)
    return table.join(null_exclusions(null), on="ranking", how="left")


def null_exclusions(null: pl.DataFrame) -> pl.DataFrame:
    """At s = 0, per interval whose both ends were recorded: how many simulations' 95 % interval
    excludes 0 on either side (nominal 5 %), with a Wilson interval."""
    pairs = [("best of the learners", "best_ci_low", "best_ci_high"),
             ("best of the learners, simultaneous band", "best_simul_ci_low", "best_simul_ci_high"),
             ("held-out, selection-honest (chosen and fitted on one half, scored on the other)",
              "heldout_ci_low", "heldout_ci_high")]
    rows = []
    for name, lo, hi in pairs:
        if lo not in null.columns or hi not in null.columns:
            continue
        part = null.drop_nulls([lo, hi])
        if part.is_empty():
            continue
        k = int(((part[lo] > 0) | (part[hi] < 0)).sum())
        rows.append({"ranking": name, "n_excluding_0": k, "excludes_0": k / part.height,
                     "excludes_0_wilson": wilson(k, part.height)})
    schema = {"ranking": pl.Utf8, "n_excluding_0": pl.Int64, "excludes_0": pl.Float64,
              "excludes_0_wilson": pl.List(pl.Float64)}
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)


def single_feature_qinis(frame: pl.DataFrame, *, arm: str, baseline: str, outcome: str, features: list[str],
                         n_boot: int = 200, seed: int = 0) -> pl.DataFrame:
    """On the *real* outcomes: the Qini of ranking the units by each numeric feature, up and
    down, with its bootstrap CI. A reference, not a learner: the feature and direction that
    look best here were chosen on the very outcomes they are scored on, so the maximum is an
    optimistic ceiling for what a ranking by one covariate shows on these units."""
    from liftlab.uplift import evaluation as ev

    units = frame.filter(pl.col("variant").is_in([arm, baseline])).sort("unit_id")
    t = (units["variant"] == arm).to_numpy().astype(float)
    y = units[outcome].cast(pl.Float64).to_numpy()
    rows = []
    for name in features:
        if not units[name].dtype.is_numeric():
            continue
        x = units[name].cast(pl.Float64).to_numpy()
        for sign, label in ((1.0, "high first"), (-1.0, "low first")):
            score = sign * x
            boot = ev.bootstrap_scores(score, t, y, n_boot=n_boot, seed=seed)["qini"]
            lo, hi = ev.percentile_ci(boot)
            rows.append({"feature": name, "direction": label, "qini": ev.qini_coefficient(score, t, y),
                         "ci_low": lo, "ci_high": hi})
    return pl.DataFrame(rows).sort("qini", descending=True)


def _print_tables(sims: pl.DataFrame) -> None:
    with pl.Config(tbl_cols=20, tbl_width_chars=200, float_precision=5, tbl_rows=60):
        print(summarise(sims))
        print(learner_shares(sims))
        print(null_calibration(sims))


def main(argv: list[str] | None = None) -> int:
    from liftlab.config import REPO_ROOT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=20)
    parser.add_argument("--levels", default="0,0.02,0.04")
    parser.add_argument("--outcome", default="visit")
    parser.add_argument("--arm", default="Mens E-Mail")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--folds", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--sim-seed", type=int, default=PowerConfig.sim_seed,
                        help="first seed of the simulated outcomes (another value gives new draws)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--summarise", metavar="JSON", nargs="+",
                        help="print the tables of earlier runs' outputs (pooled; one outcome) and stop")
    parser.add_argument("--real", action="store_true",
                        help="print the real data's Qini of ranking by each numeric feature (a post-hoc reference) and stop")
    args = parser.parse_args(argv)
    if args.real:
        from liftlab.uplift_io import uplift_features

        frame, spec = hillstrom_units()
        table = single_feature_qinis(frame, arm=args.arm, baseline=spec.baseline, outcome=args.outcome,
                                     features=list(uplift_features(spec)), n_boot=spec.uplift.n_bootstrap,
                                     seed=spec.uplift.seed)
        with pl.Config(tbl_rows=40, float_precision=5):
            print(table)
        return 0
    if args.summarise:
        parts = []
        for name in args.summarise:
            with open(name) as fh:
                parts.append(pl.DataFrame(json.load(fh)["simulations"]))
        _print_tables(pl.concat(parts, how="diagonal_relaxed"))
        return 0
    cfg = PowerConfig(arm=args.arm, outcome=args.outcome, n_sims=args.sims, workers=args.workers,
                      levels=tuple(float(v) for v in args.levels.split(",")), n_folds=args.folds,
                      n_repeats=args.repeats, sim_seed=args.sim_seed)
    out = args.out or str(REPO_ROOT / "bench" / "results" / f"uplift_power_{cfg.outcome}.json")
    sims = run_power(cfg, checkpoint=out + ".partial")
    _print_tables(sims)
    with open(out, "w") as fh:
        json.dump({"config": asdict(cfg), "summary": summarise(sims).to_dicts(), "simulations": sims.to_dicts(),
                   "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, fh, indent=2, default=str)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
