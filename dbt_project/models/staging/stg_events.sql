-- Typed, cleaned view of raw.events.
-- Drops rows that cannot be attributed: null user_id, null event_ts, or an
-- event_type outside the contract's list (matched exactly, case-sensitive).
-- event_date is the UTC calendar date, independent of the session time zone.
select
    event_id::bigint                                   as event_id,
    user_id::bigint                                    as user_id,
    event_ts::timestamptz                              as event_ts,
    (event_ts::timestamptz at time zone 'UTC')::date   as event_date,
    event_type::text                                   as event_type,
    value::double precision                            as value
from {{ source('raw', 'events') }}
where user_id is not null
  and event_ts is not null
  and event_type in ({{ sql_string_list(liftlab_event_types()) }})
