{{ config(severity='warn', meta={'dagster': {'ref': {'name': 'stg_exposures'}}}) }}
-- Warn when stg_exposures drops raw rows (a NULL experiment_id, user_id,
-- variant or exposed_at), so nothing is dropped silently.
-- depends_on: {{ ref('stg_exposures') }}
select count(*) as n_rows
from {{ source('raw', 'exposures') }}
where experiment_id is null or user_id is null or variant is null or exposed_at is null
having count(*) > 0
