-- Causal estimates at the spec's level with their counterfactual baseline (issue #16).
-- level: 1 − α of the interval (t(G − 1) for DiD); baseline: the estimated mean without the
-- launch of the estimand's population (E[Y(0)] for an ATE, E[Y(0) | treated] for an ATT);
-- rel_*: the effect and interval relative to it (NULL unless baseline > 0), which guardrails
-- of a causal design are judged on. Sensitivity lives in diagnostics (see docs/causal.md).
alter table results.causal_effects add column if not exists level double precision;
alter table results.causal_effects add column if not exists baseline double precision;
alter table results.causal_effects add column if not exists rel_effect double precision;
alter table results.causal_effects add column if not exists rel_ci_low double precision;
alter table results.causal_effects add column if not exists rel_ci_high double precision;

-- One row per estimate with its robustness, for analysts (no JSON digging).
create or replace view results.v_causal_sensitivity as
select study, metric, estimand, estimator, estimate, ci_low, ci_high, level,
       (diagnostics->'sensitivity'->>'robustness_value')::double precision as robustness_value,
       (diagnostics->'sensitivity'->>'robustness_value_alpha')::double precision as robustness_value_alpha,
       (diagnostics->'sensitivity'->>'e_value')::double precision as e_value,
       (diagnostics->'sensitivity'->>'e_value_ci')::double precision as e_value_ci,
       (diagnostics->'sensitivity'->>'breakdown_trend_per_period')::double precision as breakdown_trend_per_period,
       (diagnostics->>'pretrend_p')::double precision as pretrend_p,
       (diagnostics->'overlap'->>'share_outside_crump')::double precision as share_outside_crump,
       (diagnostics->'placebo_adoption'->>'passed')::boolean as placebo_adoption_passed,
       computed_at
from results.causal_effects
where estimator not like 'placebo%';
grant select on results.v_causal_sensitivity to liftlab_reader;
