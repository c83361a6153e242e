-- Statistics engine (issue #4): joint sufficient statistics, daily partitions, CUPED /
-- sequential / Bayesian / adjusted columns on results.effects, power planning, calibration.

-- Moments for CUPED (x = the metric's pre-period value) and ratio metrics (d = denominator),
-- next to the legacy n, sum, sum_sq.  NULL on rows written before this migration.
alter table results.sufficient_stats
    add column if not exists sum_x    double precision,
    add column if not exists sum_x_sq double precision,
    add column if not exists sum_xy   double precision,
    add column if not exists sum_d    double precision,
    add column if not exists sum_d_sq double precision,
    add column if not exists sum_yd   double precision,
    add column if not exists sum_xd   double precision;

-- One row per experiment × variant × metric × exposure day (NULL day: no exposure date, e.g. a
-- file source).  The statistics of the experiment are the sums over days (mergeable).
create table if not exists results.daily_stats (
    experiment_id text not null,
    variant       text not null,
    metric        text not null,
    day           date,
    n             bigint not null,
    sum           double precision not null,
    sum_sq        double precision not null,
    sum_x         double precision not null,
    sum_x_sq      double precision not null,
    sum_xy        double precision not null,
    sum_d         double precision not null,
    sum_d_sq      double precision not null,
    sum_yd        double precision not null,
    sum_xd        double precision not null,
    run_id        text,
    computed_at   timestamptz not null default now()
);
create unique index if not exists daily_stats_key
    on results.daily_stats (experiment_id, variant, metric, coalesce(day, '-infinity'::date));

alter table results.effects
    add column if not exists metric_kind            text,
    add column if not exists rel_se                 double precision,
    add column if not exists alpha_adj              double precision,
    add column if not exists abs_ci_low_adj         double precision,
    add column if not exists abs_ci_high_adj        double precision,
    add column if not exists rel_ci_low_adj         double precision,
    add column if not exists rel_ci_high_adj        double precision,
    add column if not exists cs_low                 double precision,
    add column if not exists cs_high                double precision,
    add column if not exists rel_cs_low             double precision,
    add column if not exists rel_cs_high            double precision,
    add column if not exists chance_to_win          double precision,
    add column if not exists expected_loss          double precision,
    add column if not exists expected_loss_baseline double precision,
    add column if not exists theta                  double precision,
    add column if not exists variance_reduction     double precision,
    add column if not exists rho2                   double precision;

-- Power and MDE planning for the primary metric, per experiment × variant × method.
create table if not exists results.power (
    experiment_id      text not null,
    metric             text not null,
    variant            text not null,
    method             text not null,
    alpha              double precision not null,
    alpha_per_arm      double precision not null,
    target_power       double precision not null,
    mde_rel            double precision,
    mde_abs            double precision,
    baseline_mean      double precision,
    sd_unit            double precision,
    n_baseline         bigint not null,
    n_variant          bigint not null,
    n_required_per_arm double precision,
    power_at_mde       double precision,
    mde_rel_at_current double precision,
    days_elapsed       integer,
    units_per_day      double precision,
    days_needed        double precision,
    run_id             text,
    computed_at        timestamptz not null default now(),
    primary key (experiment_id, metric, variant, method)
);

-- Calibration study: simulated experiments against the synthetic world's truth.
create table if not exists results.calibration (
    study        text not null,
    measure      text not null,
    method       text not null,
    value        double precision,
    target       double precision,
    lower_bound  double precision,
    upper_bound  double precision,
    passed       boolean,
    n_sims       integer not null,
    n_units      integer not null,
    details      jsonb not null default '{}'::jsonb,
    run_id       text,
    computed_at  timestamptz not null default now(),
    primary key (study, measure, method)
);
