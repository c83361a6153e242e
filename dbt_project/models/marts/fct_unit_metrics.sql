{{
    config(
        materialized='table',
        indexes=[
            {'columns': ['experiment_id', 'user_id'], 'unique': true},
        ],
    )
}}
-- One row per unit of every experiment whose outcomes come from the event
-- stream (source_kind = 'events').
--   outcomes:      activity_date in [exposure_date, end_date]      (both inclusive)
--   pre-period:    activity_date in [pre_start_date, start_date)   (end exclusive)
-- Events are aggregated to user-day first (fct_user_daily) and then range-joined
-- once per unit over [least(pre_start_date, exposure_date), end_date]; each
-- window is picked out with FILTER. Units without activity get 0, never NULL.
-- A NULL end_date means "still running" (open-ended window); a NULL
-- pre_start_date means no pre-period (pre_* = 0).
with units as (

    select
        e.experiment_id,
        e.user_id,
        e.variant,
        e.exposure_date,
        s.start_date,
        coalesce(s.end_date, 'infinity'::date)                 as end_date,
        s.pre_start_date,
        least(coalesce(s.pre_start_date, e.exposure_date), e.exposure_date) as scan_from
    from {{ ref('fct_exposures') }} as e
    join {{ ref('stg_experiment_specs') }} as s
      on s.experiment_id = e.experiment_id
    where s.source_kind = 'events'

),

joined as (

    select
        u.experiment_id,
        u.user_id,
        u.variant,
        u.exposure_date,
        d.activity_date,
        d.sessions,
        d.ai_calls,
        d.tasks_completed,
        d.support_tickets,
        d.upgrades,
        d.revenue,
        (d.activity_date between u.exposure_date and u.end_date)         as in_window,
        (d.activity_date >= u.pre_start_date
         and d.activity_date < u.start_date)                             as in_pre
    from units as u
    left join {{ ref('fct_user_daily') }} as d
      on d.user_id = u.user_id
     and d.activity_date >= u.scan_from
     and d.activity_date <= u.end_date

)

select
    experiment_id,
    user_id,
    variant,
    exposure_date,
    -- outcomes over [exposure_date, end_date]
    coalesce(sum(sessions)        filter (where in_window), 0)::bigint           as sessions,
    coalesce(sum(ai_calls)        filter (where in_window), 0)::bigint           as ai_calls,
    coalesce(sum(tasks_completed) filter (where in_window), 0)::bigint           as tasks_completed,
    coalesce(sum(support_tickets) filter (where in_window), 0)::bigint           as support_tickets,
    coalesce(sum(revenue::numeric) filter (where in_window), 0)::double precision as revenue,
    (coalesce(sum(upgrades)       filter (where in_window), 0) > 0)::integer     as converted,
    (coalesce(sum(sessions)       filter (where in_window), 0) > 0)::integer     as reactivated,
    (count(*)                     filter (where in_window and sessions > 0))::integer as active_days,
    -- pre-period covariates over [pre_start_date, start_date)
    coalesce(sum(sessions)        filter (where in_pre), 0)::bigint              as pre_sessions,
    coalesce(sum(ai_calls)        filter (where in_pre), 0)::bigint              as pre_ai_calls,
    coalesce(sum(tasks_completed) filter (where in_pre), 0)::bigint              as pre_tasks_completed,
    coalesce(sum(support_tickets) filter (where in_pre), 0)::bigint              as pre_support_tickets,
    coalesce(sum(revenue::numeric) filter (where in_pre), 0)::double precision    as pre_revenue,
    (count(*)                     filter (where in_pre and sessions > 0))::integer    as pre_active_days
from joined
group by experiment_id, user_id, variant, exposure_date
