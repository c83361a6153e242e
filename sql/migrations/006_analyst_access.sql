-- Analyst access: decision history, scorecard views and least-privilege roles.

-- Every decision ever made, one row per experiment per run (results.decisions holds the latest).
create table results.decision_history (
    experiment_id  text not null,
    decision       text not null,
    variant        text,
    reasons        jsonb not null,
    primary_metric text not null,
    rule_trace     jsonb not null default '[]'::jsonb,
    run_id         text not null,
    decided_at     timestamptz not null default now(),
    primary key (experiment_id, run_id)
);

create view results.v_latest_decisions as
select d.experiment_id,
       s.spec->>'name'  as experiment_name,
       s.spec->>'owner' as owner,
       s.design,
       d.decision,
       d.variant,
       d.primary_metric,
       d.reasons,
       d.decided_at,
       d.run_id
from results.decisions d
left join raw.experiment_specs s using (experiment_id);

-- One row per experiment × metric × arm × method with the latest estimates.
create view results.v_scorecard as
select e.experiment_id,
       e.metric,
       e.metric_role,
       e.variant,
       e.baseline,
       e.method,
       e.n_baseline,
       e.n_variant,
       e.mean_baseline,
       e.mean_variant,
       e.abs_effect,
       e.abs_ci_low,
       e.abs_ci_high,
       e.rel_effect,
       e.rel_ci_low,
       e.rel_ci_high,
       e.p_value,
       e.p_value_adj,
       coalesce(e.p_value_adj, e.p_value) < e.alpha as significant,
       e.computed_at
from results.effects e;

create view gates.v_failing_checks as
select experiment_id, "check", status, p_value, details->>'reason' as reason, checked_at
from gates.check_results
where status <> 'PASS';

-- Roles (cluster-wide, so created only if missing). NOLOGIN group roles: grant them to
-- login users, e.g. `create user alice login password '…' in role liftlab_reader`.
do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'liftlab_reader') then
        create role liftlab_reader nologin;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'liftlab_writer') then
        create role liftlab_writer nologin;
    end if;
end
$$;

-- Analysts: read results and marts (tables and views), nothing in raw/staging/truth, no writes.
revoke all on schema raw, staging, truth from liftlab_reader;
grant usage on schema results, marts, gates to liftlab_reader;
grant select on all tables in schema results, marts, gates to liftlab_reader;
alter default privileges in schema results grant select on tables to liftlab_reader;
alter default privileges in schema marts grant select on tables to liftlab_reader;
alter default privileges in schema gates grant select on tables to liftlab_reader;

-- The pipeline: read and write liftlab's schemas, create tables where dbt and loaders do.
grant usage, create on schema raw, staging, marts, gates, results, truth to liftlab_writer;
grant select, insert, update, delete, truncate on all tables in schema raw, staging, marts, gates, results, truth to liftlab_writer;
alter default privileges in schema raw, staging, marts, gates, results, truth
    grant select, insert, update, delete, truncate on tables to liftlab_writer;
