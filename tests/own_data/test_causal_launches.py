"""Launches a team declares as not randomized, on its own tables (not the demo's ids or world).

One team database holds two simulated launches with known effects (``liftlab.synth.launches``):
an opt-in whose takers order more to begin with (observational), and a price change rolled out
store by store on three dates with an effect that grows (staggered). Specs in a folder of the
team's, metrics in its catalogue, the whole pipeline: the estimates read through the source
layer must recover the truth the simulation knows, and the decisions must follow the spec's α
and its guardrails.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid

import numpy as np
import pandas as pd
import psycopg
import pytest
from scipy import stats

from liftlab import db
from liftlab.synth.launches import opt_in_launch, staggered_launch
from tests.conftest import drop_database
from tests.own_data.helpers import team_pipeline

pytestmark = pytest.mark.heavy  # runs the pipeline with causal fits on a team schema: not in make test-fast

START = dt.date(2026, 10, 5)  # daily partitions start on 2026-09-01 (LIFTLAB_FIRST_DAY)

CATALOGUE = """
fact_tables:
  orders: {table: shop.orders, unit: user_id, timestamp: ordered_at}
  store_orders: {table: shop.store_orders, unit: customer_id, timestamp: ordered_at}
unit_tables:
  customers: {table: shop.customers, unit: user_id, columns: [plan, tenure_days]}
  store_customers: {table: shop.store_customers, unit: customer_id, columns: [store]}
metrics:
  orders_14d: {fact: orders, aggregate: count, window_days: 14}
  amount_14d: {fact: orders, aggregate: sum, column: amount, window_days: 14}
  refunds_14d: {fact: orders, aggregate: count, where: {refunded: true}, window_days: 14, direction: lower_is_better}
  store_orders: {fact: store_orders, aggregate: count}
"""


def optin_spec(key: str, alpha: float, guardrails: str) -> str:
    return f"""
id: {key}
hypothesis: Customers who turn on saved searches order more in their first two weeks.
design: observational
variants: [{{name: not_opted_in, allocation: 0.5}}, {{name: opted_in, allocation: 0.5}}]
baseline: not_opted_in
start_date: {START}
end_date: {START + dt.timedelta(days=13)}
pre_period_days: 14
alpha: {alpha}
primary_metric: orders_14d
secondary_metrics: [amount_14d]
guardrails: {guardrails}
source:
  kind: warehouse
  connection: TEAM_DATABASE_URL
  assignments: {{table: shop.eligibility, unit: user_id, variant: variant, timestamp: eligible_at}}
causal:
  treatment: {{variant: opted_in}}
  confounders: [plan, tenure_days, pre_orders_14d]
"""


ROLLOUT_SPEC = f"""
id: store_pricing
hypothesis: A lower delivery fee, rolled out store by store, raises orders per customer.
design: staggered_rollout
variants: [{{name: old_price, allocation: 0.5}}, {{name: new_price, allocation: 0.5}}]
baseline: old_price
start_date: {START}
end_date: {START + dt.timedelta(days=41)}
pre_period_days: 14
primary_metric: store_orders
source:
  kind: warehouse
  connection: TEAM_DATABASE_URL
  assignments: {{table: shop.price_seen, unit: customer_id, variant: arm, timestamp: seen_at}}
causal:
  group: store
"""

SPECS = {
    "search_optin": optin_spec("search_optin", 0.05, "[{metric: refunds_14d, tolerance: 0.05}]"),
    "search_optin_ship": optin_spec("search_optin_ship", 0.05, "[]"),
    "search_optin_90": optin_spec("search_optin_90", 0.10, "[]"),
    "store_pricing": ROLLOUT_SPEC,
}


def _copy(cur, table: str, frame: pd.DataFrame) -> None:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, header=False)
    with cur.copy(f"copy {table} ({', '.join(frame.columns)}) from stdin with (format csv)") as copy:
        copy.write(buf.getvalue())


def create_launch_database(server: db.ConnInfo, optin, rollout) -> db.ConnInfo:
    name = f"team_{uuid.uuid4().hex[:10]}"
    db.ensure_database(server, name)
    info = server.with_db(name)
    with psycopg.connect(info.url()) as conn, conn.cursor() as cur:
        cur.execute("create schema shop")
        cur.execute("create table shop.customers (user_id bigint primary key, plan text, tenure_days integer)")
        cur.execute("create table shop.eligibility (user_id bigint, variant text, eligible_at timestamptz)")
        cur.execute("create table shop.orders (order_id bigserial primary key, user_id bigint, ordered_at timestamptz, "
                    "amount numeric(12, 2), refunded boolean)")
        cur.execute("create table shop.store_customers (customer_id bigint primary key, store text)")
        cur.execute("create table shop.price_seen (customer_id bigint, arm text, seen_at timestamptz)")
        cur.execute("create table shop.store_orders (customer_id bigint, ordered_at timestamptz)")
        _copy(cur, "shop.customers", optin.customers)
        _copy(cur, "shop.eligibility", optin.assignments)
        _copy(cur, "shop.orders", optin.orders)
        _copy(cur, "shop.store_customers", rollout.customers)
        _copy(cur, "shop.price_seen", rollout.assignments)
        _copy(cur, "shop.store_orders", rollout.orders)
    return info


@pytest.fixture(scope="module")
def launches(server, tmp_path_factory):
    optin = opt_in_launch(seed=11, n_users=4_000, start=START, rows=True)
    rollout = staggered_launch(seed=5, start=START, rows=True)
    team_db = create_launch_database(server, optin, rollout)
    folder = tmp_path_factory.mktemp("launches")
    with team_pipeline(server, folder, SPECS, CATALOGUE, team_db, "liftlab_launch") as (liftlab_db, result):
        assert result.failed == {}, result.failed
        with db.connect(liftlab_db) as conn:
            rows = conn.execute(
                "select study, metric, estimand, estimator, estimate, ci_low, ci_high, level, rel_ci_low, rel_ci_high, "
                "diagnostics::text from results.causal_effects").fetchall()
            decisions = {r[0]: (r[1], r[2] if isinstance(r[2], list) else json.loads(r[2])) for r in conn.execute(
                "select experiment_id, decision, reasons from results.decisions").fetchall()}
            units = conn.execute(
                "select unit_id::bigint, variant, orders_14d, refunds_14d, pre_orders_14d, plan, tenure_days "
                "from units.search_optin order by 1").fetchall()
        yield {"optin": optin, "rollout": rollout, "db": liftlab_db, "team": team_db, "units": units,
               "decisions": decisions, "folder": folder,
               "rows": {(r[0], r[1], r[2], r[3]): {"estimate": r[4], "ci_low": r[5], "ci_high": r[6], "level": r[7],
                                                   "rel_ci": (r[8], r[9]), "diagnostics": json.loads(r[10])}
                        for r in rows}}
    drop_database(team_db)


def test_units_read_through_the_source_layer_are_the_simulated_ones(launches):
    """Windows from first exposure, the pre-period twin and the unit-table attributes, per unit."""
    sim = launches["optin"].units.set_index("unit_id")
    got = pd.DataFrame(launches["units"],
                       columns=["unit_id", "variant", "orders_14d", "refunds_14d", "pre_orders_14d", "plan", "tenure_days"]
                       ).set_index("unit_id")
    assert len(got) == len(sim) == 4_000
    for column in ("variant", "orders_14d", "refunds_14d", "pre_orders_14d", "plan", "tenure_days"):
        assert (got[column].to_numpy() == sim.loc[got.index, column].to_numpy()).all(), column


def test_aipw_covers_the_true_ate_and_removes_the_naive_bias(launches):
    rows, truth = launches["rows"], launches["optin"].true_ate
    aipw = rows[("search_optin", "orders_14d", "ATE", "aipw_logistic_gbm")]
    naive = rows[("search_optin", "orders_14d", "ATE", "naive_difference")]
    assert aipw["ci_low"] <= truth <= aipw["ci_high"], (aipw, truth)
    removed = 1 - abs(aipw["estimate"] - truth) / abs(naive["estimate"] - truth)
    assert removed >= 0.8, (removed, aipw["estimate"], naive["estimate"], truth)
    assert naive["ci_low"] > truth  # the confounding is real: the naive interval misses
    sens = aipw["diagnostics"]["sensitivity"]
    assert 0 < sens["robustness_value_alpha"] < sens["robustness_value"] < 1 and sens["e_value"] > sens["e_value_ci"] > 1
    overlap = aipw["diagnostics"]["overlap"]
    assert 0 <= overlap["share_trimmed_crump"] < 0.5 and overlap["e_min_treated"] > 0


def test_placebo_treatment_finds_nothing(launches):
    placebo = launches["rows"][("search_optin", "orders_14d", "ATE", "placebo_permuted_treatment")]
    assert placebo["ci_low"] <= 0 <= placebo["ci_high"] and placebo["diagnostics"]["passed"] is True


def test_alpha_010_gives_90_percent_intervals(launches):
    """Same data, same seeds: the 90 % interval is the 95 % one scaled by z(0.95)/z(0.975)."""
    rows = launches["rows"]
    for estimator in ("aipw_logistic_gbm", "regression_adjustment", "ipw_hajek_logistic"):
        r95 = rows[("search_optin_ship", "orders_14d", "ATE", estimator)]
        r90 = rows[("search_optin_90", "orders_14d", "ATE", estimator)]
        assert (r95["level"], r90["level"]) == pytest.approx((0.95, 0.90))
        assert r90["estimate"] == pytest.approx(r95["estimate"], rel=1e-12)
        ratio = (r90["ci_high"] - r90["ci_low"]) / (r95["ci_high"] - r95["ci_low"])
        assert ratio == pytest.approx(stats.norm.ppf(0.95) / stats.norm.ppf(0.975), rel=1e-9)
    decision, reasons = launches["decisions"]["search_optin_90"]
    assert decision == "SHIP" and "90 % CI" in reasons[0] and "95 %" not in " ".join(reasons)


def test_a_breached_guardrail_turns_ship_into_rollback(launches):
    """Opting in raises refunds (the simulation's REFUND_EFFECT): the same AIPW on refunds_14d is
    significantly worse than the 5 % tolerance, so the launch that wins on orders is rolled back."""
    ship, ship_reasons = launches["decisions"]["search_optin_ship"]
    assert ship == "SHIP" and any(r.startswith("robustness: an unobserved confounder") for r in ship_reasons)
    refunds = launches["rows"][("search_optin", "refunds_14d", "ATE", "aipw_logistic_gbm")]
    assert refunds["rel_ci"][0] > 0.05
    decision, reasons = launches["decisions"]["search_optin"]
    assert decision == "ROLLBACK" and reasons[0].startswith("guardrail refunds_14d"), reasons


def test_staggered_rollout_panel_equals_the_simulated_one(launches):
    from liftlab.causal_inputs import rollout_panel
    from liftlab.specs import load_specs

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFTLAB_EXPERIMENTS_DIR", str(launches["folder"] / "experiments"))
        mp.setenv("LIFTLAB_METRICS_DIR", str(launches["folder"] / "metrics"))
        mp.setenv("TEAM_DATABASE_URL", launches["team"].url())
        spec = next(i.spec for i in load_specs() if i.spec.id == "store_pricing")
        with db.connect(launches["db"]) as conn:
            got = rollout_panel(conn, spec)
    sim = launches["rollout"].panel
    merged = got.merge(sim, on=["unit", "time"], suffixes=("", "_sim"))
    assert len(merged) == len(got) == len(sim)
    np.testing.assert_allclose(merged["y"], merged["y_sim"], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(merged["weight"], merged["weight_sim"])
    np.testing.assert_array_equal(merged["first_treat"].fillna(-1), merged["first_treat_sim"].fillna(-1))


def test_imputation_did_covers_where_twfe_is_biased(launches):
    """Three adoption dates, effects growing for three weeks: the imputation ATT covers the true
    ATT; TWFE's static coefficient is biased towards 0 (its bias is stored and reported)."""
    rows, truth = launches["rows"], launches["rollout"].true_att
    imp = rows[("store_pricing", "store_orders_per_unit_day", "ATT", "imputation_did")]
    twfe = rows[("store_pricing", "store_orders_per_unit_day", "ATT", "twfe")]
    assert imp["ci_low"] <= truth <= imp["ci_high"], (imp, truth)
    twfe_bias, imp_bias = twfe["estimate"] - truth, imp["estimate"] - truth
    assert twfe_bias < 0 and abs(twfe_bias) > 2 * abs(imp_bias), (twfe_bias, imp_bias)
    diag = imp["diagnostics"]
    assert diag["df"] == 23 and diag["placebo_adoption"]["passed"] and diag["pretrend_p"] > 0.05
    assert diag["sensitivity"]["breakdown_trend_per_period"] > 0
    decision, reasons = launches["decisions"]["store_pricing"]
    assert decision == "SHIP" and any("placebo adoption" in r for r in reasons), reasons


def test_a_post_treatment_confounder_is_refused_naming_the_key(launches):
    from liftlab.specs import SpecError, load_specs

    bad = launches["folder"] / "bad"
    (bad / "experiments").mkdir(parents=True)
    (bad / "experiments" / "x.yaml").write_text(
        SPECS["search_optin_ship"].replace("[plan, tenure_days, pre_orders_14d]", "[plan, amount_14d]"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFTLAB_EXPERIMENTS_DIR", str(bad / "experiments"))
        mp.setenv("LIFTLAB_METRICS_DIR", str(launches["folder"] / "metrics"))
        with pytest.raises(SpecError, match=r"causal\.confounders\.1.*'amount_14d' is measured after treatment"):
            load_specs()
