-- Trust layer (issue #3): data-quality results, A/A calibration.
-- Applied once by liftlab.migrations; never edit after it has been applied — add 003.

-- One row per expectation of the great-expectations suites run as asset checks on raw/marts
-- tables (the current result per asset × expectation; a rerun replaces the asset's rows).
-- severity ERROR halts the experiments that read the table (gate data_quality); WARN is shown.
create table gates.quality_results (
    asset            text not null,            -- e.g. raw/events
    expectation      text not null,            -- stable name, e.g. event_id_unique
    expectation_type text not null,            -- great-expectations class or liftlab drift check
    severity         text not null check (severity in ('ERROR', 'WARN')),
    success          boolean not null,
    unexpected_count bigint,
    observed         jsonb not null default '{}'::jsonb,
    reason           text not null,
    run_id           text,
    checked_at       timestamptz not null default now(),
    primary key (asset, expectation)
);

-- A/A calibration of the effect test: re-randomized pre-period data, per experiment × metric.
create table gates.aa_calibration (
    experiment_id    text not null,
    metric           text not null,
    n_units          bigint not null,
    n_simulations    integer not null,
    alpha            double precision not null,
    false_positive_rate double precision,
    band_low         double precision not null,
    band_high        double precision not null,
    ks_statistic     double precision,
    ks_p_value       double precision,
    within_band      boolean not null,
    uniform          boolean not null,
    histogram        jsonb not null default '[]'::jsonb,   -- counts of p-values in 20 bins of width 0.05
    plot_path        text,
    seed             bigint not null,
    run_id           text,
    computed_at      timestamptz not null default now(),
    primary key (experiment_id, metric)
);

-- Where quarantined rows came from, searchable by time and unit (the trust gates scope them
-- to an experiment's units and window).
create index quarantine_source_idx on raw.quarantine (source, experiment_id);
