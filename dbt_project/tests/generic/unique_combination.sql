{#
  Generic test: the combination of `combination_of_columns` is unique in the model
  (stand-in for dbt_utils.unique_combination_of_columns, which is unavailable offline).
  Returns one row per duplicated combination; passes when no rows are returned.

  usage (model level):
    data_tests:
      - unique_combination:
          name: fct_exposures_unique_experiment_user
          arguments:
            combination_of_columns: [experiment_id, user_id]
#}
{% test unique_combination(model, combination_of_columns) %}
    {%- set cols = combination_of_columns | join(', ') %}
    select {{ cols }}, count(*) as n_rows
    from {{ model }}
    group by {{ cols }}
    having count(*) > 1
{% endtest %}
