{{ config(meta={'dagster': {'ref': {'name': 'fct_unit_metrics'}}}) }}
-- Every first-exposed unit of an events-sourced experiment has exactly one row in
-- fct_unit_metrics, and no other rows exist. Returns the mismatching units.
with expected as (
    select e.experiment_id, e.user_id, e.variant
    from {{ ref('fct_exposures') }} as e
    join {{ ref('stg_experiment_specs') }} as s using (experiment_id)
    where s.source_kind = 'events'
)
select coalesce(x.experiment_id, m.experiment_id) as experiment_id,
       coalesce(x.user_id, m.user_id)             as user_id,
       x.variant                                   as expected_variant,
       m.variant                                   as actual_variant
from expected as x
full join {{ ref('fct_unit_metrics') }} as m
  on m.experiment_id = x.experiment_id and m.user_id = x.user_id
where x.user_id is null or m.user_id is null or x.variant <> m.variant
