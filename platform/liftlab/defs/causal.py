"""Causal layer: effects of launches that were not randomized, one ``experiment`` partition each.

``causal/estimates`` reads the experiment's spec and does what its design asks, on its units
read through the source layer (any source kind):

* ``design: observational`` — selection on observables: naive difference, regression
  adjustment, IPW (Hajek, stabilized; logistic and GBM propensities, cross-fitted), cross-fitted
  AIPW with an influence-function CI, 1:1 caliper matching with a balance table; ATE and ATT,
  for every outcome metric of the spec, adjusting for ``causal.confounders``;
* ``design: staggered_rollout`` — the group × day panel of the primary metric (groups adopt on
  the first exposure of a treated unit): TWFE with clustered SEs, its event study and pre-trend
  test, the imputation estimator of Borusyak, Jaravel & Spiess (2024), and, when the spec names
  a group adopting alone, its synthetic control with a placebo-in-space p-value.

Every interval is at the spec's level 1 − α (t(G − 1) critical values for the DiD estimators);
every outcome metric — guardrails included — is estimated with the same estimators, so a
guardrail can veto the decision. Next to each estimate: its sensitivity (observational: the
Cinelli–Hazlett robustness value and the E-value, propensity overlap, a placebo-treatment
refutation; rollout: the pre-trend test, a placebo adoption and the differential trend that
would erase the effect).

A randomized experiment has nothing to do here. Estimates go to ``results.causal_effects``
(the experiment's slice); plots are PNGs under ``reports/causal/<id>__<plot>.png``. Ground
truth is attached only where a truth source exists (the synthetic world). The statistics live
in ``liftlab.causal`` (pure functions); sklearn/statsmodels/matplotlib load only when it runs.
"""


import json
import math

import dagster as dg
import polars as pl

from liftlab import config
from liftlab.db import read_frame, replace_slice
from liftlab.defs.common import OWNER, inline_png, io_retry, markdown_table, spec_for_partition
from liftlab.defs.gates import srm_gate
from liftlab.defs.partitions import experiment_partitions
from liftlab.defs.resources import PostgresResource

COLUMNS = {
    "study": pl.Utf8, "analysis": pl.Utf8, "metric": pl.Utf8, "estimand": pl.Utf8, "estimator": pl.Utf8,
    "estimate": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "se": pl.Float64, "n": pl.Int64,
    "level": pl.Float64, "baseline": pl.Float64, "rel_effect": pl.Float64, "rel_ci_low": pl.Float64,
    "rel_ci_high": pl.Float64, "diagnostics": pl.Utf8, "true_effect": pl.Float64, "run_id": pl.Utf8,
}


def _clean(x):
    """JSON-safe diagnostics (NaN/inf → None, numpy scalars → Python)."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if hasattr(x, "item"):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _num(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def rows_frame(study: str, analysis: str, items, run_id: str | None) -> pl.DataFrame:
    """``items``: (metric, Estimate, true_effect or None)."""
    from liftlab.causal.result import relative

    rows = []
    for metric, e, t in items:
        rel = relative(e.estimate, e.ci_low, e.ci_high, e.baseline)
        rows.append({
            "study": study, "analysis": analysis, "metric": metric, "estimand": e.estimand, "estimator": e.estimator,
            "estimate": _num(e.estimate), "ci_low": _num(e.ci_low), "ci_high": _num(e.ci_high), "se": _num(e.se),
            "n": int(e.n), "level": _num(e.level), "baseline": _num(e.baseline), "rel_effect": _num(rel[0]),
            "rel_ci_low": _num(rel[1]), "rel_ci_high": _num(rel[2]), "diagnostics": json.dumps(_clean(e.diagnostics)),
            "true_effect": _num(t), "run_id": run_id})
    return pl.DataFrame(rows, schema=COLUMNS)


def _plot_metadata(experiment_id: str, name: str, png: bytes) -> dict[str, dg.MetadataValue]:
    """Write the plot under reports/causal/ and show it inline (its path as text below it)."""
    folder = config.reports_dir() / "causal"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{experiment_id}__{name}.png"
    path.write_bytes(png)
    return {f"plot/{name}": inline_png(path, f"{experiment_id}: {name.replace('_', ' ')}")}


def _preview(frame: pl.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_table(
        frame.select("metric", "estimand", "estimator", "estimate", "ci_low", "ci_high", "level", "rel_effect",
                     "true_effect"), max_rows=80))


def _decision_row(spec, frame: pl.DataFrame) -> dict | None:
    from liftlab.decide import decision_estimate

    return decision_estimate(spec.design, spec.primary_metric, frame.to_dicts())


def _robustness_metadata(spec, frame: pl.DataFrame) -> dict:
    """The decision estimate and its robustness sentence, as the decision will quote them."""
    from liftlab.decide import robustness_text

    row = _decision_row(spec, frame)
    if row is None:
        return {}
    text = robustness_text(spec.design, row, frame.to_dicts())
    return {"decision_estimate": f"{row['estimator']} {row['estimand']}: {row['estimate']:+.4g} "
                                 f"({row['level']:.0%} CI {row['ci_low']:+.4g} to {row['ci_high']:+.4g})",
            **({"robustness": dg.MetadataValue.md(text)} if text else {})}


def _truth(conn, spec) -> dict[tuple[str, str], float]:
    """True effects of the experiment where the source knows them (the synthetic world)."""
    from liftlab.sources import adapter

    if not adapter(spec).has_truth:
        return {}
    t = read_frame(conn, "select metric, estimand, true_effect from truth.effects where experiment_id = %s", (spec.id,))
    return {(r["metric"], r["estimand"]): r["true_effect"] for r in t.iter_rows(named=True)}


@dg.asset(
    retry_policy=io_retry,
    key=["causal", "estimates"],
    partitions_def=experiment_partitions,
    deps=[srm_gate, ["units", "unit_metrics"]],
    group_name="causal",
    kinds={"scikit-learn", "postgres"},
    owners=[OWNER],
    description="For a launch that was not randomized, as its spec declares: observational — naive, regression "
    "adjustment, IPW, cross-fitted AIPW and caliper matching for every outcome metric, adjusting for the declared "
    "confounders; staggered rollout — TWFE and its event study, the imputation DiD estimator and, for a group "
    "adopting alone, a synthetic control. Written to results.causal_effects (with the truth where it is known).",
)
def causal_estimates(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    spec = spec_for_partition(context.partition_key).spec
    if spec.design == "observational":
        return _observational(context, postgres, spec)
    if spec.design == "staggered_rollout":
        return _staggered(context, postgres, spec)
    with postgres.connect() as conn:
        conn.execute("delete from results.causal_effects where study = %s", (spec.id,))
    return dg.MaterializeResult(metadata={"dagster/row_count": 0, "note": "randomized: analysed as an experiment"})


def _observational(context, postgres, spec) -> dg.MaterializeResult:
    import pandas as pd

    from liftlab.causal import plots
    from liftlab.causal.studies import selection_on_observables
    from liftlab.causal_inputs import observational_units, outcome_metrics

    metrics = outcome_metrics(spec)
    with postgres.connect() as conn:
        units = observational_units(conn, spec)
        truth = _truth(conn, spec)
        if units.empty or units["variant"].nunique() < 2:
            raise dg.Failure(f"{spec.id}: no treated and untreated units to compare in its unit table",
                             allow_retries=False)
        res = selection_on_observables(units, metrics, spec.treated_variant, spec.causal_confounders(),
                                       estimators=spec.causal.estimators if spec.causal else ("aipw", "ipw", "matching", "regression"),
                                       alpha=spec.alpha)
        items = [(m, e, truth.get((m, e.estimand))) for m, e in res.estimates]
        frame = rows_frame(spec.id, "selection_on_observables", items, context.run_id)
        replace_slice(conn, "results.causal_effects", frame, where={"study": spec.id})
    meta: dict = {"dagster/row_count": frame.height, "units": len(units), "estimates": _preview(frame),
                  "balance": dg.MetadataValue.md(markdown_table(pl.from_dict(
                      {c: res.balance[c].tolist() for c in ("covariate", "smd_before", "smd_after", "smd_after_ipw")}),
                      max_rows=60)),
                  "max_abs_smd_after_matching": float(res.balance["smd_after"].abs().max()),
                  "overlap": dg.MetadataValue.json(_clean(res.overlap)),
                  "sensitivity_benchmarks": dg.MetadataValue.json(_clean(res.benchmarks))}
    meta |= _robustness_metadata(spec, frame)
    meta |= _plot_metadata(spec.id, "overlap", plots.overlap_plot(res.propensity, res.d, spec.treated_variant, spec.baseline))
    meta |= _plot_metadata(spec.id, "balance", plots.love_plot(res.balance))
    chosen = _decision_row(spec, frame)
    if chosen is not None:
        sens = json.loads(chosen["diagnostics"]).get("sensitivity")
        if sens:
            meta |= _plot_metadata(spec.id, "sensitivity", plots.sensitivity_plot(
                chosen["estimate"], chosen["se"], sens["df"], sens["robustness_value"], res.benchmarks,
                f"{spec.id}: {chosen['estimator']} {chosen['estimand']} of {spec.primary_metric}"))
    pdf = pd.DataFrame(frame.select("estimator", "estimand", "estimate", "ci_low", "ci_high", "true_effect",
                                    "metric").to_dict(as_series=False))
    primary = pdf[pdf["metric"] == spec.primary_metric].reset_index(drop=True)
    meta |= _plot_metadata(spec.id, "estimates", plots.estimates_plot(primary, f"{spec.id}: {spec.primary_metric}"))
    return dg.MaterializeResult(metadata=meta)


def _staggered(context, postgres, spec) -> dg.MaterializeResult:
    import numpy as np

    from liftlab.causal import did, plots
    from liftlab.causal.result import Estimate, metric_label
    from liftlab.causal.studies import staggered_rollout, synthetic_control_study
    from liftlab.causal_inputs import outcome_metrics, rollout_panel, true_att

    alpha = spec.alpha
    metric = metric_label(spec.design, spec.primary_metric)
    others = [m for m in outcome_metrics(spec) if m != spec.primary_metric]
    with postgres.connect() as conn:
        panel = rollout_panel(conn, spec)
        other_panels = {m: rollout_panel(conn, spec, m) for m in others}
        truth = _truth(conn, spec)
    if panel.empty or panel["first_treat"].notna().sum() == 0:
        raise dg.Failure(f"{spec.id}: no group of {spec.causal.group!r} adopts {spec.treated_variant!r} in the "
                         "assignments", allow_retries=False)
    res = staggered_rollout(panel, alpha=alpha)
    att = truth.get((metric, "ATT"))
    known = panel["true_effect"].notna().any()
    cells = panel[panel["first_treat"].notna() & (panel["time"] >= panel["first_treat"])]
    cells = cells.assign(h=cells["time"] - cells["first_treat"], wt=cells["true_effect"] * cells["weight"])
    truth_h = (cells.groupby("h")["wt"].sum() / cells.groupby("h")["weight"].sum()) if known else None
    items = [(metric, res.twfe, att), (metric, res.imputation, att)]
    if res.placebo is not None:
        items.append((metric, res.placebo, None))
    for r in res.by_horizon.itertuples():
        e = Estimate("imputation_did", f"ATT(e={int(r.horizon)})", r.estimate, r.se, r.ci_low, r.ci_high, 0,
                     {"df": res.imputation.diagnostics["df"]}, r.baseline, 1 - alpha)
        items.append((metric, e, _num(truth_h.get(float(r.horizon))) if truth_h is not None else None))
    for r in res.event_study["table"].itertuples():
        e = Estimate("twfe_event_study", f"ATT(e={int(r.start)}..{int(r.end)})", r.estimate, r.se, r.ci_low,
                     r.ci_high, 0, {"reference_bin_days": "-7..-1"}, level=1 - alpha)
        band = cells[(cells["h"] >= r.start) & (cells["h"] <= r.end)]
        tb = float(band["wt"].sum() / band["weight"].sum()) if known and len(band) else None
        items.append((metric, e, tb))
    if known:
        res.imputation.diagnostics["true_att_from_panel"] = true_att(panel)
    # secondary metrics and guardrails: the same estimators on their own panels
    for m, p in other_panels.items():
        label = metric_label(spec.design, m)
        items += [(label, did.twfe(p, alpha=alpha), truth.get((label, "ATT"))),
                  (label, did.imputation_did(p, horizons=False, alpha=alpha)["overall"], truth.get((label, "ATT")))]
    meta = {"twfe": res.twfe.estimate, "imputation_att": res.imputation.estimate,
            "imputation_ci": [res.imputation.ci_low, res.imputation.ci_high], "level": 1 - alpha,
            "true_att": _num(att), "pretrend_p": _num(res.imputation.diagnostics["pretrend_p"]),
            "groups": int(np.unique(panel["unit"]).size), "metrics": [metric, *map(str, others)]}
    meta |= _plot_metadata(spec.id, "event_study", plots.event_study_plot(
        res.event_study["table"], res.by_horizon, truth_h, res.twfe.estimate, res.imputation.estimate, att,
        ylabel=f"Δ {spec.primary_metric} per unit and day"))
    meta |= _plot_metadata(spec.id, "trend_sensitivity", plots.trend_sensitivity_plot(
        res.imputation.estimate, (res.imputation.ci_low, res.imputation.ci_high),
        res.imputation.diagnostics["sensitivity"], f"{spec.id}: imputation ATT of {metric}"))
    sc = spec.causal.synthetic_control
    if sc is not None:
        firsts = panel.groupby("unit")["first_treat"].first()
        if sc.treated not in firsts.index or not firsts.notna()[sc.treated]:
            raise dg.Failure(f"{spec.id}: causal.synthetic_control.treated: {sc.treated!r} is not a group of "
                             f"{spec.causal.group!r} that adopts (groups that adopt: "
                             f"{sorted(map(str, firsts.dropna().index))})", allow_retries=False)
        if (firsts == firsts[sc.treated]).sum() > 1:
            raise dg.Failure(f"{spec.id}: causal.synthetic_control.treated: {sc.treated!r} does not adopt alone "
                             "(a synthetic control compares one treated group with the never-treated)", allow_retries=False)
        scr = synthetic_control_study(panel, sc.treated)
        post = panel[(panel["unit"] == sc.treated) & (panel["time"] >= firsts[sc.treated])]
        true_post = float(post["true_effect"].mean()) if known and post["true_effect"].notna().all() else None
        if true_post is not None:
            scr["estimate"].diagnostics["truth"] = "mean true effect of the treated group over its post days"
        scr["estimate"].level = 1 - alpha
        items.append((metric, scr["estimate"], true_post))
        meta |= {"synthetic_control_att": scr["estimate"].estimate, "placebo_p_value": scr["p_value"],
                 "synthetic_control_weights": dg.MetadataValue.json(scr["estimate"].diagnostics["weights"])}
        meta |= _plot_metadata(spec.id, "synthetic_control", plots.synthetic_control_plot(scr))
    frame = rows_frame(spec.id, "staggered_rollout", items, context.run_id)
    with postgres.connect() as conn:
        replace_slice(conn, "results.causal_effects", frame, where={"study": spec.id})
    meta |= _robustness_metadata(spec, frame)
    meta |= {"dagster/row_count": frame.height,
             "estimates": _preview(frame.filter(~pl.col("estimand").str.starts_with("ATT(e="))),
             "event_study": _preview(frame.filter(pl.col("estimator") == "twfe_event_study"))}
    return dg.MaterializeResult(metadata=meta)
