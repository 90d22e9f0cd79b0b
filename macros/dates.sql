{#
    Dates and timestamps arrive as strings in several spellings. DataFusion's
    to_date/to_timestamp fail the whole query on one bad value, so each
    spelling is recognised by its shape, rewritten to ISO, and try_cast: a
    string of the right shape that names no real day (2024-02-30, 32/13/2025)
    becomes null, which is how the validated models detect it.
#}

{#- yyyy-mm-dd, dd/mm/yyyy, yyyy/mm/dd or yyyymmdd -> date; anything else -> null. -#}
{% macro parse_date(column) -%}
case
    when regexp_like(trim({{ column }}), '^\d{4}-\d{2}-\d{2}$')
        then try_cast(trim({{ column }}) as date)
    when regexp_like(trim({{ column }}), '^\d{2}/\d{2}/\d{4}$')
        then try_cast(regexp_replace(trim({{ column }}), '^(\d{2})/(\d{2})/(\d{4})$', '\3-\2-\1') as date)
    when regexp_like(trim({{ column }}), '^\d{4}/\d{2}/\d{2}$')
        then try_cast(replace(trim({{ column }}), '/', '-') as date)
    when regexp_like(trim({{ column }}), '^\d{8}$')
        then try_cast(regexp_replace(trim({{ column }}), '^(\d{4})(\d{2})(\d{2})$', '\1-\2-\3') as date)
end
{%- endmacro %}

{#- An instant as a UTC timestamp, from ISO with `Z` or an offset, naive ISO
    (which the feeds write in UTC) or epoch seconds; anything else -> null.
    A bare number is recognised first: try_cast reads nothing from it. The
    result carries the UTC zone so that Delta stores a `timestamp` (an
    instant) rather than a `timestamp_ntz` (a wall-clock reading). -#}
{% macro parse_ts(column) -%}
arrow_cast(
    case
        when regexp_like(trim({{ column }}), '^\d{9,11}$')
            then cast(to_timestamp_seconds(try_cast(trim({{ column }}) as bigint)) as timestamp)
        else try_cast(trim({{ column }}) as timestamp)
    end,
    'Timestamp(Microsecond, Some("UTC"))'
)
{%- endmacro %}

{#- The first day of the month of a date or timestamp, as a date. -#}
{% macro month_of(column) -%}
cast(date_trunc('month', {{ column }}) as date)
{%- endmacro %}

{#- Whole calendar months from `start` to `end` (both dates). -#}
{% macro months_between(start, end) -%}
(cast(date_part('year', {{ end }}) as int) - cast(date_part('year', {{ start }}) as int)) * 12
    + cast(date_part('month', {{ end }}) as int) - cast(date_part('month', {{ start }}) as int)
{%- endmacro %}
