"""Causal layer: effects of launches that were not randomized (group ``causal``).

* ``causal/optin_observational``: ai_assistant_optin under selection on observables —
  naive, regression adjustment, IPW, cross-fitted AIPW, caliper matching with a balance table.
* ``causal/regional_staggered_did``: regional_pricing — TWFE with region-clustered SEs, event
  study and pre-trend test, next to the imputation estimator valid under staggered adoption.
* ``causal/regional_synthetic_control``: the region adopting alone (DE) against a synthetic
  control of the never-treated regions, with a placebo-in-space p-value.

Estimates go to ``results.causal_effects`` (one slice per study × analysis); plots are PNGs
under ``reports/causal/`` attached to the materialization. The statistics live in
``liftlab.causal`` (pure functions); sklearn/statsmodels/matplotlib load only when an asset
runs.
"""


import base64
import json
import math

import dagster as dg
import polars as pl

from liftlab import config
from liftlab.db import read_frame, replace_slice
from liftlab.defs.common import OWNER, io_retry, markdown_table
from liftlab.defs.resources import PostgresResource

OPTIN = "ai_assistant_optin"
REGIONAL = "regional_pricing"
OPTIN_METRICS = ("ai_calls", "tasks_completed")
#: The region that adopts alone (the synthetic-control case of the world design).
SC_TREATED_UNIT = "DE"

COLUMNS = {
    "study": pl.Utf8, "analysis": pl.Utf8, "metric": pl.Utf8, "estimand": pl.Utf8, "estimator": pl.Utf8,
    "estimate": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "se": pl.Float64, "n": pl.Int64,
    "diagnostics": pl.Utf8, "true_effect": pl.Float64, "run_id": pl.Utf8,
}

UPSTREAM = [
    ["marts", "fct_unit_metrics"], ["marts", "fct_user_daily"], ["marts", "fct_exposures"],
    ["raw", "users"], ["raw", "experiment_specs"], ["truth", "effects"], ["truth", "regional_pricing"],
]


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
    rows = [{
        "study": study, "analysis": analysis, "metric": metric, "estimand": e.estimand, "estimator": e.estimator,
        "estimate": _num(e.estimate), "ci_low": _num(e.ci_low), "ci_high": _num(e.ci_high), "se": _num(e.se),
        "n": int(e.n), "diagnostics": json.dumps(_clean(e.diagnostics)), "true_effect": _num(t), "run_id": run_id,
    } for metric, e, t in items]
    return pl.DataFrame(rows, schema=COLUMNS)


def _plot_metadata(name: str, png: bytes) -> dict[str, dg.MetadataValue]:
    folder = config.reports_dir() / "causal"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    path.write_bytes(png)
    uri = base64.b64encode(png).decode()
    return {f"plot/{name}": dg.MetadataValue.md(f"![{name}](data:image/png;base64,{uri})"),
            f"plot_path/{name}": dg.MetadataValue.path(str(path))}


def _preview(frame: pl.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_table(
        frame.select("metric", "estimand", "estimator", "estimate", "ci_low", "ci_high", "true_effect"), max_rows=60))


def _truth(conn, study: str) -> dict[tuple[str, str], float]:
    t = read_frame(conn, "select metric, estimand, true_effect from truth.effects where experiment_id = %s", (study,))
    return {(r["metric"], r["estimand"]): r["true_effect"] for r in t.iter_rows(named=True)}


@dg.asset(
    retry_policy=io_retry,
    key=["causal", "optin_observational"],
    deps=UPSTREAM,
    group_name="causal",
    kinds={"scikit-learn", "postgres"},
    owners=[OWNER],
    description="ai_assistant_optin (engaged users opt in): naive difference, regression adjustment, "
    "IPW (Hajek, stabilized; logistic and GBM propensities, cross-fitted), cross-fitted AIPW with an "
    "influence-function CI, 1:1 caliper matching (0.1 SD of the logit) with a balance table — ATE and ATT, "
    "written to results.causal_effects with the true effects.",
)
def optin_observational(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    import pandas as pd

    from liftlab.causal import plots
    from liftlab.causal.studies import selection_on_observables
    from liftlab.causal_inputs import optin_units_from_db

    with postgres.connect() as conn:
        units = optin_units_from_db(conn, OPTIN)
        truth = _truth(conn, OPTIN)
        if units.empty:
            raise dg.Failure(f"no units of {OPTIN} in marts.fct_unit_metrics", allow_retries=False)
        res = selection_on_observables(units, OPTIN_METRICS)
        items = [(m, e, truth.get((m, e.estimand))) for m, e in res.estimates]
        frame = rows_frame(OPTIN, "selection_on_observables", items, context.run_id)
        replace_slice(conn, "results.causal_effects", frame,
                      where={"study": OPTIN, "analysis": "selection_on_observables"})
    meta: dict = {"dagster/row_count": frame.height, "units": len(units), "estimates": _preview(frame),
                  "balance": dg.MetadataValue.md(markdown_table(pl.from_dict(
                      {c: res.balance[c].tolist() for c in ("covariate", "smd_before", "smd_after", "smd_after_ipw")}),
                      max_rows=60)),
                  "max_abs_smd_after_matching": float(res.balance["smd_after"].abs().max()),
                  "overlap": dg.MetadataValue.json(_clean(res.overlap))}
    meta |= _plot_metadata("optin_overlap", plots.overlap_plot(res.propensity, res.d))
    meta |= _plot_metadata("optin_balance", plots.love_plot(res.balance))
    pdf = pd.DataFrame(frame.select("estimator", "estimand", "estimate", "ci_low", "ci_high", "true_effect",
                                    "metric").to_dict(as_series=False))
    primary = pdf[pdf["metric"] == OPTIN_METRICS[0]].reset_index(drop=True)
    meta |= _plot_metadata("optin_estimates", plots.estimates_plot(primary, f"{OPTIN}: {OPTIN_METRICS[0]}"))
    return dg.MaterializeResult(metadata=meta)


def _regional_panel(postgres: PostgresResource):
    from liftlab.causal_inputs import regional_panel_from_db

    with postgres.connect() as conn:
        panel = regional_panel_from_db(conn, REGIONAL)
        truth = _truth(conn, REGIONAL)
    if panel.empty or panel["first_treat"].notna().sum() == 0:
        raise dg.Failure(f"no adopting region of {REGIONAL} in the exposure log", allow_retries=False)
    return panel, truth


@dg.asset(
    retry_policy=io_retry,
    key=["causal", "regional_staggered_did"],
    deps=UPSTREAM,
    group_name="causal",
    kinds={"numpy", "postgres"},
    owners=[OWNER],
    description="regional_pricing (staggered roll-out by region, region × day revenue per user): TWFE with "
    "region-clustered SEs, event study and pre-trend test, next to the imputation estimator of Borusyak, "
    "Jaravel & Spiess (2024) valid under staggered adoption with heterogeneous effects.",
)
def regional_staggered_did(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    import numpy as np

    from liftlab.causal import plots
    from liftlab.causal.result import Estimate
    from liftlab.causal.studies import staggered_rollout
    from liftlab.causal_inputs import true_att

    panel, truth = _regional_panel(postgres)
    res = staggered_rollout(panel)
    metric = "revenue_per_user_day"
    att = truth.get((metric, "ATT"))
    cells = panel[panel["first_treat"].notna() & (panel["time"] >= panel["first_treat"])]
    cells = cells.assign(h=cells["time"] - cells["first_treat"], wt=cells["true_effect"] * cells["weight"])
    truth_h = cells.groupby("h")["wt"].sum() / cells.groupby("h")["weight"].sum()
    items = [(metric, res.twfe, att), (metric, res.imputation, att)]
    for r in res.by_horizon.itertuples():
        e = Estimate.normal("imputation_did", f"ATT(e={int(r.horizon)})", r.estimate, r.se, 0)
        items.append((metric, e, _num(truth_h.get(float(r.horizon)))))
    for r in res.event_study["table"].itertuples():
        e = Estimate("twfe_event_study", f"ATT(e={int(r.start)}..{int(r.end)})", r.estimate, r.se, r.ci_low,
                     r.ci_high, 0, {"reference_bin_days": "-7..-1"})
        band = cells[(cells["h"] >= r.start) & (cells["h"] <= r.end)]
        tb = float((band["wt"]).sum() / band["weight"].sum()) if len(band) else None
        items.append((metric, e, tb))
    res.imputation.diagnostics["true_att_from_panel"] = true_att(panel)
    with postgres.connect() as conn:
        frame = rows_frame(REGIONAL, "staggered_did", items, context.run_id)
        replace_slice(conn, "results.causal_effects", frame, where={"study": REGIONAL, "analysis": "staggered_did"})
    png = plots.event_study_plot(res.event_study["table"], res.by_horizon, truth_h, res.twfe.estimate,
                                 res.imputation.estimate, att)
    meta = {"dagster/row_count": frame.height, "twfe": res.twfe.estimate, "imputation_att": res.imputation.estimate,
            "imputation_ci": [res.imputation.ci_low, res.imputation.ci_high],
            "true_att": _num(att), "pretrend_p": _num(res.event_study["pretrend_p"]),
            "estimates": _preview(frame.filter(~pl.col("estimand").str.starts_with("ATT(e="))),
            "event_study": _preview(frame.filter(pl.col("estimator") == "twfe_event_study")),
            "regions": int(np.unique(panel["unit"]).size)}
    meta |= _plot_metadata("regional_event_study", png)
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    retry_policy=io_retry,
    key=["causal", "regional_synthetic_control"],
    deps=UPSTREAM,
    group_name="causal",
    kinds={"numpy", "postgres"},
    owners=[OWNER],
    description="regional_pricing: synthetic control (Abadie, Diamond & Hainmueller 2010) of the region that "
    "adopts alone, from the never-treated regions (weights ≥ 0 summing to 1), pre-period RMSPE and a "
    "placebo-in-space p-value.",
)
def regional_synthetic_control(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab.causal import plots
    from liftlab.causal.studies import synthetic_control_study

    panel, _ = _regional_panel(postgres)
    firsts = panel.groupby("unit")["first_treat"].first()
    cohort_sizes = firsts.value_counts()
    treated = SC_TREATED_UNIT if SC_TREATED_UNIT in firsts.index and firsts.notna()[SC_TREATED_UNIT] else None
    if treated is None:  # the earliest adopter that adopts alone
        alone = [u for u, g in firsts.dropna().items() if cohort_sizes[g] == 1]
        if not alone:
            raise dg.Failure("no region adopts alone: synthetic control needs a single treated unit", allow_retries=False)
        treated = min(alone, key=lambda u: firsts[u])
    res = synthetic_control_study(panel, treated)
    est = res["estimate"]
    post = panel[(panel["unit"] == treated) & (panel["time"] >= firsts[treated])]
    true_post = float(post["true_effect"].mean()) if post["true_effect"].notna().all() else None
    est.diagnostics["truth"] = "mean of truth.regional_pricing for the treated region over post days"
    with postgres.connect() as conn:
        frame = rows_frame(REGIONAL, "synthetic_control", [("revenue_per_user_day", est, true_post)], context.run_id)
        replace_slice(conn, "results.causal_effects", frame, where={"study": REGIONAL, "analysis": "synthetic_control"})
    meta = {"dagster/row_count": frame.height, "treated_region": str(treated), "att": est.estimate,
            "true_effect": _num(true_post), "rmspe_pre": est.diagnostics["rmspe_pre"],
            "placebo_p_value": res["p_value"], "placebo_rank": res["rank"],
            "weights": dg.MetadataValue.json(est.diagnostics["weights"]),
            "placebo_ratios": dg.MetadataValue.json(est.diagnostics["placebo_ratios"])}
    meta |= _plot_metadata("regional_synthetic_control", plots.synthetic_control_plot(res))
    return dg.MaterializeResult(metadata=meta)
