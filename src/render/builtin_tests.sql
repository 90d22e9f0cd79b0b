{#- The generic data tests etl provides. dbt's own four (unique, not_null,
    accepted_values, relationships) and the most used ones of dbt_utils,
    written for DataFusion. A project overrides any of them by defining a
    test block of the same name. -#}

{% test unique(model, column_name) %}
select {{ column_name }} as unique_field, count(*) as n_records
from {{ model }}
where {{ column_name }} is not null
group by {{ column_name }}
having count(*) > 1
{% endtest %}

{% test not_null(model, column_name) %}
select *
from {{ model }}
where {{ column_name }} is null
{% endtest %}

{% test accepted_values(model, column_name, values, quote=true) %}
with all_values as (
    select {{ column_name }} as value_field, count(*) as n_records
    from {{ model }}
    group by {{ column_name }}
)
select *
from all_values
where value_field not in (
    {%- for value in values -%}
    {%- if quote %}'{{ value | string | replace("'", "''") }}'{% else %}{{ value }}{% endif %}{{ ", " if not loop.last }}
    {%- endfor -%}
)
{% endtest %}

{% test relationships(model, column_name, to, field) %}
with child as (
    select {{ column_name }} as from_field
    from {{ model }}
    where {{ column_name }} is not null
),
parent as (
    select {{ field }} as to_field
    from {{ to }}
)
select from_field
from child
left join parent on child.from_field = parent.to_field
where parent.to_field is null
{% endtest %}

{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}
select *
from {{ model }}
where 1 = 2
{%- if min_value is not none %}
   or not ({{ column_name }} >{{ "=" if inclusive }} {{ min_value }})
{%- endif %}
{%- if max_value is not none %}
   or not ({{ column_name }} <{{ "=" if inclusive }} {{ max_value }})
{%- endif %}
{% endtest %}

{% test expression_is_true(model, expression, column_name=none) %}
select *
from {{ model }}
where not ({{ column_name ~ " " if column_name }}{{ expression }})
{% endtest %}

{% test unique_combination_of_columns(model, combination_of_columns, quote_columns=false) %}
{%- set columns -%}
{%- for c in combination_of_columns -%}
{{ '"' ~ c ~ '"' if quote_columns else c }}{{ ", " if not loop.last }}
{%- endfor -%}
{%- endset %}
select {{ columns }}, count(*) as n_records
from {{ model }}
group by {{ columns }}
having count(*) > 1
{% endtest %}

{% test row_count(model, min_value=none, max_value=none) %}
with counted as (
    select count(*) as row_count from {{ model }}
)
select row_count
from counted
where 1 = 2
{%- if min_value is not none %} or row_count < {{ min_value }}{% endif %}
{%- if max_value is not none %} or row_count > {{ max_value }}{% endif %}
{% endtest %}
