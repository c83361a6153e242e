-- Typed view of the experiment registry (one row per spec).
select
    experiment_id::text    as experiment_id,
    design::text           as design,
    baseline::text         as baseline,
    start_date::date       as start_date,
    end_date::date         as end_date,
    pre_start_date::date   as pre_start_date,
    source_kind::text      as source_kind,
    spec::jsonb            as spec,
    spec_file::text        as spec_file
from {{ source('raw', 'experiment_specs') }}
