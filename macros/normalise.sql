{#
    Free-text codes (status, channel) arrive as `PAID`, `Paid` or ` paid `:
    one spelling, lower-case and trimmed, before they are checked against the
    values a model accepts. An empty string is no value.
#}

{% macro normalise_code(column) -%}
nullif(lower(trim({{ column }})), '')
{%- endmacro %}

{#- The codes a normalised column may hold, as a SQL list: `('web', 'mobile')`. -#}
{% macro sql_list(values) -%}
({% for v in values %}'{{ v }}'{% if not loop.last %}, {% endif %}{% endfor %})
{%- endmacro %}
