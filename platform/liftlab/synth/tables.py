"""Where the synthetic world lives once loaded, as a warehouse source sees it.

The demo world is analysed like any team's warehouse: its exposure log is the assignments
table, its daily activity and events are the fact tables of ``metrics/saas_world.yaml``, its
users the unit table. The world's tables exist only once a spec uses ``source: {kind: demo}``
(or ``liftlab demo`` runs): ``WORLD_DDL`` creates them when the world is loaded.
"""

from __future__ import annotations

#: The world's exposure log, cleaned by dbt (``staging.stg_exposures``): one row per exposure.
EXPOSURES = "staging.stg_exposures"

#: The world's tables (``schema.name``) with what they hold — the ingest assets' keys.
WORLD_TABLES = {
    "raw.users": "Synthetic users with their attributes (plan, company size, region, device, engagement).",
    "raw.events": "Synthetic product events: sessions, AI calls, tasks, upgrades, payments, support tickets.",
    "raw.exposures": "Experiment exposure log of the synthetic world (one row per exposure event).",
    "truth.effects": "True average effects of every synthetic experiment (exact expectations of the DGP).",
    "truth.unit_effects": "True per-unit effects (CATE) and types where the world defines them.",
    "truth.regional_pricing": "True effect of the regional price change per region and day.",
}
#: Which frame of a generated world's tail fills each table loaded after the events.
TAIL_TABLES = {"raw.exposures": "exposures", "truth.effects": "truth_effects",
               "truth.unit_effects": "truth_unit_effects", "truth.regional_pricing": "truth_regional"}

#: Tables of the world, created with the world (never by the migrations of a deployment that
#: does not use it). ``raw.world_settings`` records the size, seed and faults it was generated with.
WORLD_DDL = """
create table if not exists raw.users (
    user_id          bigint primary key,
    signup_date      date,
    plan             text,
    company_size     text,
    region           text,
    device           text,
    tenure_days      integer,
    engagement_score double precision,
    engagement_level text
);
create table if not exists raw.events (
    event_id   bigint,
    user_id    bigint,
    event_ts   timestamptz,
    event_type text,
    value      double precision
);
create table if not exists raw.exposures (
    experiment_id text,
    user_id       bigint,
    variant       text,
    exposed_at    timestamptz
);
create table if not exists truth.effects (
    experiment_id      text not null,
    metric             text not null,
    variant            text not null,
    baseline           text not null,
    estimand           text not null,
    true_effect        double precision not null,
    true_mean_baseline double precision,
    true_mean_variant  double precision,
    n_units            bigint
);
create table if not exists truth.unit_effects (
    experiment_id text not null,
    user_id       bigint not null,
    metric        text not null,
    true_cate     double precision not null,
    true_type     text
);
create table if not exists truth.regional_pricing (
    region        text not null,
    adoption_date date,
    activity_date date not null,
    true_effect   double precision not null
);
create table if not exists raw.world_settings (
    seed         bigint not null,
    n_users      bigint not null,
    settings     jsonb not null,          -- every WorldConfig field and the generator's fingerprint
    run_id       text,
    generated_at timestamptz not null default now()
);
"""


def demo_assignments(experiment_id: str):
    """The assignments of a demo experiment: its rows of the world's exposure log."""
    from liftlab.specs import Assignments

    return Assignments(table=EXPOSURES, unit="user_id", variant="variant", timestamp="exposed_at",
                       where={"experiment_id": experiment_id})


def truth_panel(conn, spec):
    """The true effect per group and day of the world's regional rollout (``grp``, ``day``,
    ``true_effect``), or None for another experiment: the world knows it by region."""
    import polars as pl

    from liftlab.db import read_frame

    if spec.id != "regional_pricing" or (spec.causal is None or spec.causal.group != "region"):
        return None
    truth = read_frame(conn, "select region as grp, activity_date as day, true_effect from truth.regional_pricing")
    return truth.with_columns(pl.col("day").cast(pl.Date)) if not truth.is_empty() else None
