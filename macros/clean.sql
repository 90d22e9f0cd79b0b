{% macro parse_ts(col) -%}
try_cast({{ col }} as timestamp)
{%- endmacro %}

{% macro normalize(col) -%}
lower(trim({{ col }}))
{%- endmacro %}
