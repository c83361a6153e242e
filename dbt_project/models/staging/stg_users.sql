-- Typed view of raw.users (one row per user).
select
    user_id::bigint                      as user_id,
    signup_date::date                    as signup_date,
    plan::text                           as plan,
    company_size::text                   as company_size,
    region::text                         as region,
    device::text                         as device,
    tenure_days::integer                 as tenure_days,
    engagement_score::double precision   as engagement_score,
    engagement_level::text               as engagement_level
from {{ source('raw', 'users') }}
