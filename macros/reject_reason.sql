{#
    Each entity states its rejection rules once, in its `<entity>_validated`
    model, as an ordered list of [reason, condition]: the first condition
    that holds names the row's reason, and a row no condition holds is valid
    (null reason). The clean and rejected models both read that one column,
    so a row can never be both kept and rejected, nor silently dropped.

        {{ reject_reason([
            ['missing_email', "email_hash is null"],
            ['invalid_signup_date', "signup_date is null"],
        ]) }} as reject_reason
#}

{% macro reject_reason(rules) -%}
case
{%- for rule in rules %}
    when {{ rule[1] }} then '{{ rule[0] }}'
{%- endfor %}
end
{%- endmacro %}
