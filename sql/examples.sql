-- Example queries for analysts (run them with `make psql`, or as a member of liftlab_reader).

-- 1. The latest decision for every experiment, with its reasons.
select experiment_id, decision, variant, primary_metric, reasons
from results.v_latest_decisions
order by experiment_id;

-- 2. The scorecard of one experiment: latest estimates per metric and arm (`decides` marks the
-- estimate the decision read, the other rows are the same data under other methods).
select metric, metric_role, variant, method, is_decision_estimate as decides,
       round(abs_effect::numeric, 5)        as effect,
       round(abs_ci_low::numeric, 5)        as ci_low,
       round(abs_ci_high::numeric, 5)       as ci_high,
       round((100 * rel_effect)::numeric, 2) as lift_pct,
       p_value_adj, significant
from results.v_scorecard
where experiment_id = 'onboarding_adaptive'
order by array_position(array['primary', 'secondary', 'guardrail'], metric_role), metric, variant;

-- 3. Which experiments are halted, and why.
select experiment_id, "check", status, p_value, reason
from gates.v_failing_checks
order by experiment_id;

-- 4. How decisions changed over time (one row per experiment per run).
select experiment_id, decided_at, decision, variant
from results.decision_history
order by experiment_id, decided_at;

-- 5. Every significant win on a primary metric: one row per experiment and arm (the estimate
-- the decision used, non-randomized designs are in results.causal_effects), halted ones left out.
select s.experiment_id, s.variant, s.metric, s.method,
       round((100 * s.rel_effect)::numeric, 1) as lift_pct, d.decision
from results.v_scorecard s
join results.v_latest_decisions d using (experiment_id)
where s.metric_role = 'primary' and s.is_decision_estimate and s.significant and s.rel_effect > 0
  and d.decision <> 'HALTED'
order by s.experiment_id, s.variant;

-- 6. When did the always-valid interval of the primary metric first exclude 0? (the day a team
-- watching every morning could have stopped, with the family-wise error rate still at alpha:
-- the sequences at the level the sequential decision reads, alpha split over the arms)
select l.experiment_id, l.variant, l.method, min(l.look_date) as first_day_excluding_0
from results.daily_looks l
where l.metric_role = 'primary' and (l.cs_low_adj > 0 or l.cs_high_adj < 0)
group by 1, 2, 3
order by 1, 2, 3;

-- 7. The cohorts behind an experiment's totals: units and mean of the primary metric by exposure day.
select d.experiment_id, d.day, d.variant, d.n, d.sum / nullif(d.sum_d, 0) as mean
from results.daily_stats d
join (select distinct experiment_id, metric from results.effects where metric_role = 'primary') p
  on p.experiment_id = d.experiment_id and p.metric = d.metric
order by 1, 2, 3;
