{# Single source of truth for the contract's value lists (used by models and tests). #}
{% macro liftlab_event_types() -%}
    {{ return(['session', 'ai_call', 'task_completed', 'upgrade', 'payment', 'support_ticket']) }}
{%- endmacro %}

{% macro liftlab_plans() -%}
    {{ return(['trial', 'basic', 'pro', 'enterprise']) }}
{%- endmacro %}

{# Renders a list of strings as a SQL literal list: 'a', 'b', 'c' #}
{% macro sql_string_list(values) -%}
    {%- for v in values -%}
        '{{ v | replace("'", "''") }}'{{ ", " if not loop.last }}
    {%- endfor -%}
{%- endmacro %}
