"""Report sections fed by the other result tables (statistics, uplift, causal studies).

Each section reads its own table, adds a table and/or figures to the report when the
experiment has rows there, and does nothing otherwise. Figures drawn by the study assets from
their result tables (``reports/uplift``, ``reports/causal``) are embedded as they are.
"""

from __future__ import annotations

import psycopg

from liftlab import config
from liftlab.db import read_frame
from liftlab.reports.plots import alphas_of, level_label, levels_label, sequence_columns
from liftlab.reports.render import EXTRA_SECTIONS, Figure, ReportData, _directions, _spec_model, _table_exists, spec_alpha



def statistics_section(conn: psycopg.Connection, data: ReportData) -> None:
    """Sequential bounds, Bayesian summary and the CUPED variance reduction of the primary metric."""
    columns = {r[0] for r in conn.execute(
        "select column_name from information_schema.columns where table_schema = 'results' and table_name = 'effects'"
    ).fetchall()}
    if not {"cs_low", "variance_reduction", "chance_to_win"} <= columns:
        return
    frame = read_frame(
        conn,
        "select metric, variant, method, abs_effect, cs_low, cs_high, chance_to_win, expected_loss, "
        "variance_reduction, rho2 from results.effects where experiment_id = %s and metric_role = 'primary' "
        "order by variant, method",
        (data.experiment_id,),
    )
    if not frame.is_empty():
        alpha = spec_alpha(data)
        level = f"{level_label(alpha)} " if alpha is not None else ""
        title = f"Primary metric: always-valid {level}bounds (cs_low, cs_high: per arm), Bayesian summary, CUPED gain"
        cuped_off = "cuped" not in set(frame["method"]) and data.spec.get("design", "randomized") == "randomized"
        if cuped_off:
            metric = frame["metric"][0]
            title += (f" (CUPED off: {metric} has no pre-period column — declare a covariate pre_{metric} "
                      f"or map one in cuped_covariates)")
        data.extra_tables.append((title, frame.drop("variance_reduction", "rho2") if cuped_off else frame))


def srm_section(conn: psycopg.Connection, data: ReportData) -> None:
    """Observed vs planned units per arm, and by exposure day, from the SRM gate's record."""
    from liftlab.reports.plots import srm_plot

    row = conn.execute(
        "select status, details from gates.check_results where experiment_id = %s and \"check\" = 'srm'",
        (data.experiment_id,),
    ).fetchone()
    if row is None or not (row[1] or {}).get("expected"):
        return  # not randomized: no planned allocation to compare with
    status, details = row
    data.figures.append(Figure(
        "srm", f"Sample ratio: observed vs planned units per arm (gate {status})",
        srm_plot(details, f"{data.experiment_id}: units per arm (SRM gate {status})"),
    ))


def looks_section(conn: psycopg.Connection, data: ReportData) -> None:
    """Cumulative effect of the primary metric by day, with the always-valid bounds."""
    import polars as pl

    from liftlab.decide import preferred_method
    from liftlab.reports.plots import cumulative_effect_plot

    primary = data.spec.get("primary_metric")
    if not primary or not _table_exists(conn, "results.daily_looks"):
        return
    looks = read_frame(conn, "select * from results.daily_looks where experiment_id = %s and metric = %s order by look_date",
                       (data.experiment_id, primary))
    method = preferred_method(looks["method"]) if not looks.is_empty() else None
    if method is None:
        return
    rows = looks.filter(pl.col("method") == method)
    alpha = spec_alpha(data)
    ci = f"{level_label(alpha)} CI" if alpha is not None else "CI"
    _, _, cs_level = sequence_columns(rows)
    cs_level = cs_level or (level_label(alpha) if alpha is not None else None)
    bounds = f"always-valid {cs_level} bounds" if cs_level else "always-valid bounds"
    data.figures.append(Figure(
        "cumulative", f"{primary} by day: estimate, {ci} (shaded) and {bounds} (dashed), {method}",
        cumulative_effect_plot(rows, primary, f"{data.experiment_id}: {primary} as it stood each day", alpha),
    ))


def uplift_section(conn: psycopg.Connection, data: ReportData) -> None:
    if not _table_exists(conn, "results.uplift_models"):
        return
    best = read_frame(
        conn,
        "select arm, metric, learner, qini, qini_ci_low, qini_ci_high, qini_simul_ci_low, qini_simul_ci_high, "
        "auuc, oracle_share, n_train, n_test, n_folds "
        "from results.uplift_models where experiment_id = %s and is_best order by arm, metric",
        (data.experiment_id,),
    )
    if best.is_empty():
        return
    data.extra_tables.append(("Uplift: best learner per arm and outcome (cross-fitted, every unit scored "
                              "out of fold; qini_simul_ci: band over all learners, valid for the best)", best))
    folder = config.reports_dir() / "uplift"
    for kind in ("qini", "policy"):
        for path in sorted(folder.glob(f"{kind}_{data.experiment_id}_*.png")):
            data.figures.append(Figure(path.stem, f"Uplift {kind} curve ({path.stem})", path.read_bytes()))


def causal_section(conn: psycopg.Connection, data: ReportData) -> None:
    """A design that was not randomized: the estimator table at the spec's level, the robustness
    of each estimate, the covariate balance before and after adjustment, the event study and
    the figures of ``causal/estimates`` (overlap, balance, sensitivity, event study, trends)."""
    if not _table_exists(conn, "results.causal_effects"):
        return
    frame = read_frame(
        conn,
        "select metric, estimand, estimator, estimate, ci_low, ci_high, level, rel_effect, true_effect "
        "from results.causal_effects where study = %s and (estimand in ('ATE', 'ATT', 'ATE_overlap')) "
        "order by metric, estimator like 'placebo%%', estimand, estimator",
        (data.experiment_id,),
    )
    if frame.is_empty():
        return
    data.extra_tables.append(("Causal estimates (not randomized; level = the interval's 1 − α)", frame))
    robustness = read_frame(
        conn,
        "select metric, estimand, estimator, robustness_value, robustness_value_alpha, e_value, e_value_ci, "
        "breakdown_trend_per_period, pretrend_p, share_outside_crump, placebo_adoption_passed "
        "from results.v_causal_sensitivity where study = %s and estimand in ('ATE', 'ATT') "
        "and (robustness_value is not null or breakdown_trend_per_period is not null) order by 1, 3, 2",
        (data.experiment_id,),
    )
    if not robustness.is_empty():
        data.extra_tables.append(("Robustness to unobserved confounding and to trends", robustness.select(
            [c for c in robustness.columns if not robustness[c].is_null().all()])))
    balance = read_frame(
        conn,
        "select b.covariate, b.smd_before, b.smd_after as smd_after_matching, b.smd_after_ipw "
        "from results.causal_effects c, jsonb_to_recordset(c.diagnostics->'balance') "
        "as b(covariate text, smd_before double precision, smd_after double precision, smd_after_ipw double precision) "
        "where c.study = %s and c.diagnostics ? 'balance' order by abs(b.smd_before) desc",
        (data.experiment_id,),
    )
    if not balance.is_empty():
        data.extra_tables.append(("Covariate balance (standardized mean differences before and after)", balance))
    events = read_frame(
        conn,
        "select estimand as bin, estimate, ci_low, ci_high, level from results.causal_effects "
        "where study = %s and estimator = 'twfe_event_study' order by (regexp_match(estimand, '-?[0-9]+'))[1]::int",
        (data.experiment_id,),
    )
    if not events.is_empty():
        data.extra_tables.append(("Event study (TWFE bins; leads test parallel trends)", events))
    from liftlab.causal.plots import FIGURES

    folder = config.reports_dir() / "causal"
    for name in FIGURES:
        path = folder / f"{data.experiment_id}__{name}.png"
        if path.exists():
            data.figures.append(Figure(f"causal_{name}", f"causal: {name.replace('_', ' ')}", path.read_bytes()))


def slices_section(conn: psycopg.Connection, data: ReportData) -> None:
    """The primary metric within the slices of the spec's dimensions (small multiples), and the table."""
    import polars as pl

    from liftlab.decide import preferred_method
    from liftlab.reports.plots import slice_forest_plot

    primary = data.spec.get("primary_metric")
    if not primary or not _table_exists(conn, "results.slice_effects"):
        return
    rows = read_frame(conn, "select * from results.slice_effects where experiment_id = %s and metric = %s "
                            "order by dimension, slice, variant", (data.experiment_id, primary))
    method = preferred_method(rows["method"]) if not rows.is_empty() else None
    if method is None:
        return
    rows = rows.filter(pl.col("method") == method)
    direction = _directions(_spec_model(data.spec), [primary]).get(primary, "higher_is_better")
    data.figures.append(Figure(
        "slices", f"{primary} by slice ({method}; one Benjamini–Hochberg family across slices)",
        slice_forest_plot(rows, primary, f"{data.experiment_id}: {primary} by slice", direction)))
    level = levels_label(alphas_of(rows))
    data.extra_tables.append((f"{primary} by slice ({method}; intervals at {level or 'the spec level'}); slices with "
                              "too few units are reported, not estimated",
                              rows.select("dimension", "slice", "variant", "estimated", "n_baseline", "n_variant",
                                          "rel_effect", "rel_ci_low", "rel_ci_high", "p_value", "p_value_adj")))


EXTRA_SECTIONS.extend([srm_section, looks_section, statistics_section, slices_section, uplift_section, causal_section])
