-- Gates that do not apply (issue #17): N/A, never a PASS that checked nothing, never a warning.
--
-- 010 allowed 'N/A' in gates.check_results and narrowed gates.v_failing_checks to WARN and
-- FAIL. Gates that still recorded a PASS without checking anything now record N/A with the
-- reason why they do not apply (balance without covariates, the A/A calibration without
-- covariates, the quarantine of a file with no recorded load, contamination on a source with
-- one row per unit). Rows written before this migration are corrected here; every run rewrites
-- them anyway.

update gates.check_results
set status = 'N/A',
    details = details || jsonb_build_object('reason',
        'not applicable: the spec declares no pre-period covariates to compare across arms')
where "check" = 'balance' and status = 'PASS'
  and details->>'reason' = 'no pre-period covariates declared: balance not checked';

update gates.check_results
set status = 'N/A',
    details = details || jsonb_build_object('reason',
        'not applicable: the spec declares no pre-period covariates to re-randomize')
where "check" = 'aa_calibration' and status = 'PASS'
  and details->>'reason' = 'no pre-period covariates to re-randomize';

update gates.check_results
set status = 'N/A',
    details = details || jsonb_build_object('reason',
        'not applicable: no load of this experiment''s file is recorded in raw.load_log '
        '(nothing was ingested, so nothing could be quarantined)')
where "check" = 'quarantine' and status = 'PASS'
  and details->>'reason' = 'no load recorded for this experiment''s source';

-- A file or a unit-level table has one row, so one variant, per unit: no crossover can show.
update gates.check_results c
set status = 'N/A',
    details = jsonb_build_object('reason', 'not applicable: a ' || s.source_kind
                                 || ' source has one row (one variant) per unit')
from raw.experiment_specs s
where s.experiment_id = c.experiment_id and c."check" = 'contamination' and c.status = 'PASS'
  and s.source_kind in ('file', 'table');

-- What needs a person's attention: WARN and FAIL only (N/A is neither a failure nor a warning).
create or replace view gates.v_failing_checks as
select experiment_id, "check", status, p_value, details->>'reason' as reason, checked_at
from gates.check_results
where status in ('WARN', 'FAIL');

-- One row per experiment: its trust status (FAIL over WARN over PASS; N/A counts as nothing,
-- 'N/A' only when no gate applies), and which gates failed, warned, passed or did not apply.
create or replace view gates.v_experiment_trust as
select experiment_id,
       case when bool_or(status = 'FAIL') then 'FAIL'
            when bool_or(status = 'WARN') then 'WARN'
            when bool_or(status = 'PASS') then 'PASS'
            else 'N/A' end                                                    as status,
       bool_or(status = 'FAIL')                                               as halted,
       coalesce(array_agg("check" order by "check") filter (where status = 'FAIL'), '{}') as failed,
       coalesce(array_agg("check" order by "check") filter (where status = 'WARN'), '{}') as warned,
       coalesce(array_agg("check" order by "check") filter (where status = 'PASS'), '{}') as passed,
       coalesce(array_agg("check" order by "check") filter (where status = 'N/A'), '{}')  as not_applicable,
       max(checked_at)                                                        as checked_at
from gates.check_results
group by experiment_id;

grant select on gates.v_failing_checks, gates.v_experiment_trust to liftlab_reader;
