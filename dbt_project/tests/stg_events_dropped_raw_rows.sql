{{ config(severity='warn', meta={'dagster': {'ref': {'name': 'stg_events'}}}) }}
-- Warn when stg_events drops raw rows (NULL user_id / event_ts or an unknown
-- event_type), so nothing is dropped silently. One row per reason.
-- depends_on: {{ ref('stg_events') }}
select
    case when user_id is null then 'null user_id'
         when event_ts is null then 'null event_ts'
         else 'unknown event_type: ' || coalesce(event_type, 'NULL') end as reason,
    count(*) as n_rows
from {{ source('raw', 'events') }}
where user_id is null
   or event_ts is null
   or event_type is null
   or event_type not in ({{ sql_string_list(liftlab_event_types()) }})
group by 1
