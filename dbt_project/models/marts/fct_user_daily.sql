{{
    config(
        materialized='table',
        indexes=[
            {'columns': ['user_id', 'activity_date'], 'unique': true},
        ],
    )
}}
-- One row per user × UTC day with at least one (valid) event.
-- Counts are integers; revenue = sum of payment values, latency_ms_sum = sum of
-- session values (NULL values count as 0). Never NULL.
select
    user_id,
    event_date                                                                   as activity_date,
    (count(*) filter (where event_type = 'session'))::integer                    as sessions,
    (count(*) filter (where event_type = 'ai_call'))::integer                    as ai_calls,
    (count(*) filter (where event_type = 'task_completed'))::integer             as tasks_completed,
    (count(*) filter (where event_type = 'support_ticket'))::integer             as support_tickets,
    (count(*) filter (where event_type = 'upgrade'))::integer                    as upgrades,
    (count(*) filter (where event_type = 'payment'))::integer                    as payments,
    -- numeric sums are exact, so a rebuild gives byte-identical rows whatever the scan order
    coalesce(sum(value::numeric) filter (where event_type = 'payment'), 0)::double precision as revenue,
    coalesce(sum(value::numeric) filter (where event_type = 'session'), 0)::double precision as latency_ms_sum
from {{ ref('stg_events') }}
group by user_id, event_date
-- Physically clustered by the index key: user-range lookups (fct_unit_metrics,
-- readers) and the uniqueness test read contiguous pages.
order by user_id, activity_date
