{#
  Models land exactly in the schema they configure (`staging`, `marts`),
  not in dbt's default "<target_schema>_<custom_schema>" (e.g. public_staging).
  Nodes without a custom schema go to the target schema (public).
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
