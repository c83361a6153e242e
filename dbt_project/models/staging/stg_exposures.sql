-- Typed view of raw.exposures (one row per exposure event).
-- Rows missing experiment_id, user_id, variant or exposed_at are dropped.
-- exposure_date is the UTC calendar date.
select
    experiment_id::text                                  as experiment_id,
    user_id::bigint                                      as user_id,
    variant::text                                        as variant,
    exposed_at::timestamptz                              as exposed_at,
    (exposed_at::timestamptz at time zone 'UTC')::date   as exposure_date
from {{ source('raw', 'exposures') }}
where experiment_id is not null
  and user_id is not null
  and variant is not null
  and exposed_at is not null
