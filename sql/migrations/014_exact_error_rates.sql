-- Decisions whose error rates are exact (issue #17): the always-valid confidence sequences at
-- the family's adjusted level (Bonferroni over the arms of the primary metric and of each
-- guardrail, FCR for secondary metrics), which the sequential decision rule reads.
alter table results.effects
    add column if not exists cs_low_adj      double precision,
    add column if not exists cs_high_adj     double precision,
    add column if not exists rel_cs_low_adj  double precision,
    add column if not exists rel_cs_high_adj double precision,
    -- the spec's inference policy (sequential | fixed_horizon) the decision applied to this row
    add column if not exists inference       text;

-- The scorecard's "significant" is the decision's rule: the sequence at the family's level
-- excludes 0 under the sequential policy, the adjusted p value is below alpha under the fixed
-- horizon. Columns are only appended (create or replace keeps the existing ones in place).
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
       case when coalesce(s.design, 'randomized') = 'randomized' then
            case when e.inference = 'sequential'
                 then coalesce(e.cs_low_adj, e.cs_low) > 0 or coalesce(e.cs_high_adj, e.cs_high) < 0
                 else coalesce(e.p_value_adj, e.p_value) < e.alpha end
       end as significant,
       e.computed_at,
       e.is_decision_estimate,
       coalesce(s.design, 'randomized') as design,
       case when coalesce(s.design, 'randomized') <> 'randomized'
            then 'difference in means of a ' || replace(s.design, '_', ' ')
                 || ' design: confounded, not an effect (see results.causal_effects)' end as note,
       e.inference,
       e.cs_low_adj,
       e.cs_high_adj
from results.effects e
left join raw.experiment_specs s using (experiment_id);

-- The daily looks carry the same family-level sequences (the day a team could have stopped).
alter table results.daily_looks
    add column if not exists alpha_adj       double precision,
    add column if not exists cs_low_adj      double precision,
    add column if not exists cs_high_adj     double precision,
    add column if not exists rel_cs_low_adj  double precision,
    add column if not exists rel_cs_high_adj double precision;

-- Uplift: the best learner's Qini with an interval that stays honest after choosing the learner
-- (chosen on one half of the units, estimated on the other; liftlab.uplift.honest).
alter table results.uplift_models
    add column if not exists qini_heldout         double precision,
    add column if not exists qini_heldout_se      double precision,
    add column if not exists qini_heldout_ci_low  double precision,
    add column if not exists qini_heldout_ci_high double precision,
    add column if not exists heldout_learners     text;
