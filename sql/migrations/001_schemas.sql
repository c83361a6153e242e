-- liftlab schemas and tables (foundation).
-- Applied once by liftlab.migrations; each file runs in one transaction.

create schema if not exists raw;
create schema if not exists staging;
create schema if not exists marts;
create schema if not exists gates;
create schema if not exists results;
create schema if not exists truth;

-- The experiment registry, written from experiments/*.yaml by the experiment_specs asset.
create table raw.experiment_specs (
    experiment_id  text primary key,
    design         text not null,
    baseline       text not null,
    start_date     date,
    end_date       date,
    pre_start_date date,
    source_kind    text not null,
    spec           jsonb not null,
    spec_file      text not null,
    spec_sha256    text not null,
    loaded_at      timestamptz not null default now()
);

-- The synthetic world's tables (raw.users, raw.events, raw.exposures, truth.*) are created
-- with the world, by liftlab.ingest.world (liftlab.synth.tables.WORLD_DDL), only where a spec
-- uses the demo: a deployment with only its own data never has them.

-- One row per load of a source: received = accepted + quarantined.
create table raw.load_log (
    source        text not null,
    experiment_id text,
    file          text,
    sha256        text,
    received      bigint not null,
    accepted      bigint not null,
    quarantined   bigint not null,
    run_id        text,
    loaded_at     timestamptz not null default now(),
    constraint load_log_accounting check (received = accepted + quarantined)
);

-- Rows that failed validation, with the reason; nothing is dropped silently.
create table raw.quarantine (
    source        text not null,
    experiment_id text,
    file          text,
    row_number    bigint,
    reason        text not null,
    record        jsonb,
    run_id        text,
    quarantined_at timestamptz not null default now()
);

create table gates.check_results (
    experiment_id text not null,
    "check"       text not null,
    status        text not null check (status in ('PASS', 'WARN', 'FAIL')),
    statistic     double precision,
    p_value       double precision,
    details       jsonb not null default '{}'::jsonb,
    run_id        text,
    checked_at    timestamptz not null default now(),
    primary key (experiment_id, "check")
);

create table results.sufficient_stats (
    experiment_id text not null,
    variant       text not null,
    metric        text not null,
    n             bigint not null,
    sum           double precision not null,
    sum_sq        double precision not null,
    run_id        text,
    computed_at   timestamptz not null default now(),
    primary key (experiment_id, variant, metric)
);

create table results.effects (
    experiment_id text not null,
    metric        text not null,
    metric_role   text not null,
    variant       text not null,
    baseline      text not null,
    n_baseline    bigint not null,
    n_variant     bigint not null,
    mean_baseline double precision,
    mean_variant  double precision,
    abs_effect    double precision,
    abs_se        double precision,
    abs_ci_low    double precision,
    abs_ci_high   double precision,
    rel_effect    double precision,
    rel_ci_low    double precision,
    rel_ci_high   double precision,
    t_stat        double precision,
    df            double precision,
    p_value       double precision,
    p_value_adj   double precision,
    alpha         double precision not null,
    method        text not null,
    run_id        text,
    computed_at   timestamptz not null default now(),
    primary key (experiment_id, metric, variant, method)
);

create table results.decisions (
    experiment_id  text primary key,
    decision       text not null check (decision in ('SHIP', 'ROLLBACK', 'HOLD', 'KEEP RUNNING', 'HALTED')),
    variant        text,
    reasons        jsonb not null,
    primary_metric text not null,
    rule_trace     jsonb not null default '[]'::jsonb,
    run_id         text,
    decided_at     timestamptz not null default now()
);
