-- Bring your own data (issue #15): unit tables built from a team's warehouse or the demo world,
-- their provenance, effects by slice, and the units each effect left out.

-- One table per warehouse/demo experiment, units.<experiment_id> (created by the units asset):
-- one row per unit with its variant, exposure, dimensions, attributes, metrics and twins.
create schema if not exists units;

-- What each unit table was built from: one row per experiment (replaced on every build).
create table if not exists units.builds (
    experiment_id      text primary key,
    source_kind        text not null,
    relation           text not null,            -- the table the analysis reads
    catalogue_sha256   text,
    units              bigint not null,
    units_by_variant   jsonb not null,
    assignment_summary jsonb not null default '{}'::jsonb,  -- rows, outside the window, invalid
    window_incomplete  jsonb not null default '{}'::jsonb,  -- metric → units whose window is not complete
    windows            jsonb not null default '{}'::jsonb,  -- metric → {days, dated}: its window from first exposure
    statements         jsonb not null default '[]'::jsonb,  -- the compiled SQL, with its parameters
    seconds            jsonb not null default '{}'::jsonb,
    run_id             text,
    built_at           timestamptz not null default now()
);

-- Units left out of a metric because their window was not complete at the analysis cut-off.
alter table results.effects add column if not exists n_window_incomplete bigint;

-- Effects within slices of the dimensions a spec declares (fixed at first exposure); one
-- Benjamini–Hochberg family per experiment × metric × method across every slice and arm.
create table if not exists results.slice_effects (
    experiment_id  text not null,
    dimension      text not null,
    slice          text not null,
    metric         text not null,
    metric_role    text not null,
    variant        text not null,
    baseline       text not null,
    method         text not null,
    estimated      boolean not null,             -- false: too few units, reported not estimated
    note           text,
    n_baseline     bigint not null,
    n_variant      bigint not null,
    mean_baseline  double precision,
    mean_variant   double precision,
    abs_effect     double precision,
    abs_se         double precision,
    abs_ci_low     double precision,
    abs_ci_high    double precision,
    rel_effect     double precision,
    rel_ci_low     double precision,
    rel_ci_high    double precision,
    p_value        double precision,
    p_value_adj    double precision,
    alpha          double precision not null,
    run_id         text,
    computed_at    timestamptz not null default now(),
    primary key (experiment_id, dimension, slice, metric, variant, method)
);

-- Roles: analysts read unit tables like the marts; the pipeline writes them.
grant usage on schema units to liftlab_reader;
grant select on all tables in schema units to liftlab_reader;
alter default privileges in schema units grant select on tables to liftlab_reader;
grant usage, create on schema units to liftlab_writer;
grant select, insert, update, delete, truncate on all tables in schema units to liftlab_writer;
alter default privileges in schema units grant select, insert, update, delete, truncate on tables to liftlab_writer;
grant select on results.slice_effects to liftlab_reader;
alter default privileges for role liftlab_writer in schema units grant select on tables to liftlab_reader;

-- A gate that does not apply to an experiment (contamination on a file, an exposure window on a
-- source without exposure times) is recorded as N/A, not as a PASS it never checked.
alter table gates.check_results drop constraint if exists check_results_status_check;
alter table gates.check_results add constraint check_results_status_check
    check (status in ('PASS', 'WARN', 'FAIL', 'N/A'));
create or replace view gates.v_failing_checks as
select experiment_id, "check", status, p_value, details->>'reason' as reason, checked_at
from gates.check_results
where status in ('WARN', 'FAIL');
