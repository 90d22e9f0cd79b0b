{#- When this build started (UTC): the `loaded_at` of the rows it writes,
    which incremental models downstream compare with their watermark. -#}
{% macro loaded_at() -%}
arrow_cast('{{ run_started_at.strftime("%Y-%m-%dT%H:%M:%S%.6f") }}', 'Timestamp(Microsecond, Some("UTC"))')
{%- endmacro %}
