"""A team's own database, built by the tests (liftlab never created it): assignments with repeated
exposures, another experiment's rows, units first exposed outside the window, a unit seen in two
variants, and orders before, inside and after each unit's window — some exactly on its edges,
some refunded. The independent reference computes the per-unit metrics from the same draws with
numpy, not SQL."""

from __future__ import annotations

import datetime as dt
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import sql

from liftlab import db

UTC = dt.timezone.utc
START, END = dt.date(2026, 10, 1), dt.date(2026, 10, 14)
PRE_DAYS, WINDOW = 7, 7
KEY = "checkout_v2"

CATALOGUE = """
fact_tables:
  orders: {table: shop.orders, unit: user_id, timestamp: created_at, owner: data-team}
unit_tables:
  customers: {table: shop.customers, unit: user_id, columns: [plan, signup_days]}
metrics:
  orders_7d:    {fact: orders, aggregate: count, where: {status: paid}, window_days: 7}
  revenue_7d:   {fact: orders, aggregate: sum, column: amount, where: {status: paid}, window_days: 7}
  purchased_7d: {fact: orders, aggregate: any, where: {status: paid}, window_days: 7}
  aov_7d:       {ratio: [revenue_7d, orders_7d]}
  refunds:      {fact: orders, aggregate: count, where: {status: [refunded, chargeback]}, direction: lower_is_better}
  p90_amount_7d: {fact: orders, aggregate: quantile, column: amount, q: 0.9, where: {status: paid}, window_days: 7}
"""

SPEC = f"""
id: {KEY}
hypothesis: The two-step checkout gets more paying orders in the first week.
variants: [{{name: control, allocation: 0.5}}, {{name: treatment, allocation: 0.5}}]
baseline: control
start_date: {START}
end_date: {END}
pre_period_days: {PRE_DAYS}
primary_metric: orders_7d
secondary_metrics: [revenue_7d, purchased_7d, aov_7d, p90_amount_7d]
guardrails: [{{metric: refunds, tolerance: 0.5}}]
covariates: [pre_orders_7d, signup_days]
dimensions: [country, plan]
slice_min_units: 20
source:
  kind: warehouse
  connection: TEAM_DATABASE_URL
  assignments:
    table: shop.assignments
    unit: user_id
    variant: variant
    timestamp: assigned_at
    where: {{experiment_key: {KEY}}}
"""


@dataclass
class TeamData:
    """The rows written to the team's database (numpy arrays), for the reference."""

    a_user: np.ndarray
    a_variant: np.ndarray
    a_ts: np.ndarray  # datetime64[us], UTC
    a_key: np.ndarray
    a_country: np.ndarray
    o_user: np.ndarray
    o_ts: np.ndarray
    o_status: np.ndarray
    o_amount: np.ndarray
    c_user: np.ndarray
    c_plan: np.ndarray
    c_signup: np.ndarray


def _us(day: dt.date) -> np.datetime64:
    return np.datetime64(dt.datetime.combine(day, dt.time()), "us")


def draw(seed: int = 7, n_users: int = 900) -> TeamData:
    rng = np.random.default_rng(seed)
    day_us = 86_400_000_000
    users = np.arange(1, n_users + 1)
    first = _us(START - dt.timedelta(days=3)) + rng.integers(0, 20 * day_us, n_users).astype("timedelta64[us]")
    arm = np.where(rng.random(n_users) < 0.5, "control", "treatment")
    rows = [(users, arm, first)]
    repeat = rng.random(n_users) < 0.6  # later exposures in the same arm: not new units
    rows.append((users[repeat], arm[repeat], first[repeat] + rng.integers(1, 5 * day_us, repeat.sum()).astype("timedelta64[us]")))
    crossed = users[[10, 400]]  # seen in both arms after their first exposure: contamination (< 1 %)
    other = np.where(arm[crossed - 1] == "control", "treatment", "control")
    rows.append((crossed, other, first[crossed - 1] + np.timedelta64(3600_000_000, "us")))
    a_user = np.concatenate([r[0] for r in rows])
    a_variant = np.concatenate([r[1] for r in rows])
    a_ts = np.concatenate([r[2] for r in rows])
    a_key = np.full(a_user.size, KEY)
    # another experiment on the same users: never read
    o_users = users[rng.random(n_users) < 0.5]
    a_user = np.concatenate([a_user, o_users])
    a_variant = np.concatenate([a_variant, np.full(o_users.size, "treatment")])
    a_ts = np.concatenate([a_ts, _us(START) + rng.integers(-5 * day_us, 30 * day_us, o_users.size).astype("timedelta64[us]")])
    a_key = np.concatenate([a_key, np.full(o_users.size, "pricing_test")])
    countries = np.array(["DE", "FR", "US"])[rng.integers(0, 3, a_user.size)]

    n_orders = rng.poisson(3.0, n_users)
    o_user = np.repeat(users, n_orders)
    base = np.repeat(first, n_orders)
    o_ts = base + rng.integers(-10 * day_us, 12 * day_us, o_user.size).astype("timedelta64[us]")
    edges = users[5:25]  # rows exactly on the window's edges and the pre-period's
    f = first[edges - 1]
    edge_ts = [f, f + np.timedelta64(WINDOW * day_us, "us"), f - np.timedelta64(1, "us"),
               f - np.timedelta64(PRE_DAYS * day_us, "us"), f + np.timedelta64(WINDOW * day_us - 1, "us")]
    o_user = np.concatenate([o_user, *[edges] * len(edge_ts), [1]])
    o_ts = np.concatenate([o_ts, *edge_ts, [_us(END + dt.timedelta(days=40))]])  # the newest fact: every window complete
    n = o_user.size
    o_status = np.where(rng.random(n) < 0.8, "paid", np.where(rng.random(n) < 0.5, "refunded", "chargeback"))
    o_amount = np.round(np.exp(rng.normal(3.0, 0.8, n)), 2)
    c_plan = np.array(["free", "pro", "team"])[rng.integers(0, 3, n_users)]
    c_signup = rng.integers(0, 900, n_users).astype(float)
    return TeamData(a_user, a_variant, a_ts, a_key, countries, o_user, o_ts, o_status, o_amount, users, c_plan, c_signup)


def create_team_database(server: db.ConnInfo, data: TeamData) -> db.ConnInfo:
    """A database of the team's, with its own schema and tables (liftlab's migrations never ran there)."""
    name = f"team_{uuid.uuid4().hex[:10]}"
    db.ensure_database(server, name)
    info = server.with_db(name)
    with psycopg.connect(info.url()) as conn:
        conn.execute("create schema shop")
        conn.execute("create table shop.assignments (user_id bigint, variant text, assigned_at timestamptz, "
                     "experiment_key text, country text)")
        conn.execute("create table shop.orders (order_id bigserial primary key, user_id bigint, created_at timestamptz, "
                     "status text, amount numeric(12, 2))")
        conn.execute("create table shop.customers (user_id bigint primary key, plan text, signup_days integer)")
        with conn.cursor() as cur:
            with cur.copy("copy shop.assignments from stdin") as copy:
                for row in zip(data.a_user.tolist(), data.a_variant.tolist(), _ts(data.a_ts), data.a_key.tolist(),
                               data.a_country.tolist(), strict=True):
                    copy.write_row(row)
            with cur.copy("copy shop.orders (user_id, created_at, status, amount) from stdin") as copy:
                for row in zip(data.o_user.tolist(), _ts(data.o_ts), data.o_status.tolist(), data.o_amount.tolist(),
                               strict=True):
                    copy.write_row(row)
            with cur.copy("copy shop.customers from stdin") as copy:
                for row in zip(data.c_user.tolist(), data.c_plan.tolist(), data.c_signup.astype(int).tolist(), strict=True):
                    copy.write_row(row)
    return info


def _ts(values: np.ndarray) -> list[dt.datetime]:
    return [v.replace(tzinfo=UTC) for v in values.astype("datetime64[us]").tolist()]


def fingerprint(info: db.ConnInfo) -> dict[str, tuple[int, str]]:
    """Rows and md5 of every table of the team's schema (equal: left exactly as it was)."""
    with psycopg.connect(info.url()) as conn:
        tables = [r[0] for r in conn.execute("select table_name from information_schema.tables "
                                             "where table_schema = 'shop' order by 1").fetchall()]
        return {t: conn.execute(sql.SQL("select count(*), md5(coalesce(string_agg(x::text, '|' order by x::text), '')) "
                                        "from {} x").format(sql.Identifier("shop", t))).fetchone() for t in tables}


def reference(data: TeamData) -> dict:
    """Units and per-unit metrics from the draws (numpy): first exposure = earliest row of the key
    (ties by variant name), a unit = first exposure in [START, END], contaminated units out,
    window [first, first + 7 d), pre-period [first − 7 d, first)."""
    keep = data.a_key == KEY
    user, variant, ts = data.a_user[keep], data.a_variant[keep], data.a_ts[keep]
    order = np.lexsort((variant, ts, user))
    user, variant, ts = user[order], variant[order], ts[order]
    firsts = np.r_[True, user[1:] != user[:-1]]
    u_ids, u_var, u_first = user[firsts], variant[firsts], ts[firsts]
    n_var = {u: len(set(variant[user == u])) for u in u_ids}
    inside = (u_first >= _us(START)) & (u_first < _us(END + dt.timedelta(days=1)))
    u_ids, u_var, u_first = u_ids[inside], u_var[inside], u_first[inside]
    clean = np.array([n_var[u] == 1 for u in u_ids])
    day = np.timedelta64(86_400_000_000, "us")
    out = {"units": {}, "excluded": int((~clean).sum()), "p90_rows": {}}
    paid = data.o_status == "paid"
    for u, v, f, ok in zip(u_ids, u_var, u_first, clean, strict=True):
        mine = data.o_user == u
        win = mine & paid & (data.o_ts >= f) & (data.o_ts < f + WINDOW * day)
        pre = mine & paid & (data.o_ts >= f - PRE_DAYS * day) & (data.o_ts < f)
        refunds = mine & np.isin(data.o_status, ["refunded", "chargeback"]) & (data.o_ts >= f) & (data.o_ts < _us(END + dt.timedelta(days=1)))
        if ok:
            out["p90_rows"][str(u)] = (str(v), data.o_amount[win].tolist())
        out["units"][str(u)] = {
            "variant": str(v), "analysed": bool(ok), "orders_7d": float(win.sum()),
            "revenue_7d": float(np.sum(data.o_amount[win])), "purchased_7d": float(win.any()),
            "pre_orders_7d": float(pre.sum()), "refunds": float(refunds.sum()),
        }
    return out


@contextmanager
def team_pipeline(server: db.ConnInfo, folder: Path, specs: dict[str, str], catalogue: str, team_db: db.ConnInfo,
                  prefix: str):
    """Specs and a catalogue in a team's folder, liftlab's own scratch database, the whole pipeline
    run with the team's database behind ``TEAM_DATABASE_URL``; yields (liftlab database, result)
    with the environment still pointing at the team's folder. Drops liftlab's database after."""
    import dagster as dg

    from liftlab.defs.resources import PostgresResource
    from liftlab.pipeline import run_pipeline
    from tests.conftest import create_scratch_database, drop_database

    (folder / "experiments").mkdir()
    (folder / "metrics").mkdir()
    for key, text in specs.items():
        (folder / "experiments" / f"{key}.yaml").write_text(text)
    if catalogue:
        (folder / "metrics" / "shop.yaml").write_text(catalogue)
    liftlab_db = create_scratch_database(server, prefix=prefix)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("LIFTLAB_EXPERIMENTS_DIR", str(folder / "experiments"))
            mp.setenv("LIFTLAB_METRICS_DIR", str(folder / "metrics"))
            mp.setenv("TEAM_DATABASE_URL", team_db.url())
            result = run_pipeline(dg.DagsterInstance.ephemeral(),
                                  {"postgres": PostgresResource(database_url=liftlab_db.url())}, log=lambda *_: None)
            yield liftlab_db, result
    finally:
        drop_database(liftlab_db)
