{{
    config(
        materialized='table',
        indexes=[
            {'columns': ['experiment_id', 'user_id'], 'unique': true},
        ],
    )
}}
-- First exposure per experiment × unit.
-- variant = variant of the earliest exposure; ties on exposed_at are broken
-- deterministically by variant (ascending, byte order).
-- n_exposures = number of exposure rows; n_variants = distinct variants seen
-- (n_variants > 1 flags a unit that crossed over between arms).
select
    experiment_id,
    user_id,
    (array_agg(variant order by exposed_at, variant collate "C"))[1]   as variant,
    min(exposed_at)                                                   as first_exposed_at,
    (min(exposed_at) at time zone 'UTC')::date                        as exposure_date,
    count(*)::integer                                                 as n_exposures,
    count(distinct variant)::integer                                  as n_variants
from {{ ref('stg_exposures') }}
group by experiment_id, user_id
