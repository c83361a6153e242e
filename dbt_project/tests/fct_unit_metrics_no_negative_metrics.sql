-- Counts, revenue and active days are never negative. Returns offending rows.
select m.*
from {{ ref('fct_unit_metrics') }} as m
where least(sessions, ai_calls, tasks_completed, support_tickets, active_days,
            pre_sessions, pre_ai_calls, pre_tasks_completed, pre_support_tickets,
            pre_active_days) < 0
   or revenue < 0 or pre_revenue < 0
