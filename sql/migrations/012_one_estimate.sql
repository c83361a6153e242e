-- One estimate everywhere (issue #20): the row of results.effects each decision reads is marked,
-- and the scorecard says which rows a decision used and which are confounded differences.
alter table results.effects add column if not exists is_decision_estimate boolean not null default false;

-- Columns are only appended (create or replace view keeps the existing ones in place).
create or replace view results.v_scorecard as
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
       case when coalesce(s.design, 'randomized') = 'randomized'
            then coalesce(e.p_value_adj, e.p_value) < e.alpha end as significant,
       e.computed_at,
       e.is_decision_estimate,
       coalesce(s.design, 'randomized') as design,
       case when coalesce(s.design, 'randomized') <> 'randomized'
            then 'difference in means of a ' || replace(s.design, '_', ' ')
                 || ' design: confounded, not an effect (see results.causal_effects)' end as note
from results.effects e
left join raw.experiment_specs s using (experiment_id);
