{{ config(severity='warn', meta={'dagster': {'ref': {'name': 'fct_exposures'}}}) }}
-- Warn (not fail) when a unit's first exposure falls outside its experiment's
-- [start_date, end_date]: such units get empty or partial outcome windows.
select e.experiment_id, e.user_id, e.exposure_date, s.start_date, s.end_date
from {{ ref('fct_exposures') }} as e
join {{ ref('stg_experiment_specs') }} as s using (experiment_id)
where e.exposure_date < s.start_date
   or (s.end_date is not null and e.exposure_date > s.end_date)
