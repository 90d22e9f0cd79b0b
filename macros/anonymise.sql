{#
    Pseudonymisation of personal data. Silver and gold never hold a raw name
    or email: the hash keeps an email joinable and countable (the same person
    hashes the same whatever the case or padding the source used) without
    being readable, and initials are enough to eyeball a row.
#}

{#- The first 16 hex digits (64 bits) of the SHA-256 of the normalised email;
    null when there is no email, so that a missing email is not one shared hash. -#}
{% macro email_hash(email) -%}
left(encode(sha256(nullif(lower(trim({{ email }})), '')), 'hex'), 16)
{%- endmacro %}

{#- `Élise`, `van den Berg` -> `ÉV`. -#}
{% macro initials(first_name, last_name) -%}
nullif(upper(concat(left(trim({{ first_name }}), 1), left(trim({{ last_name }}), 1))), '')
{%- endmacro %}
