{{ config(materialized='ephemeral') }}
-- Every bronze page view, typed, with the reason it is rejected (null when
-- valid). A valid address is a dotted quad of octets 0-255.
{%- set octet = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])' %}
with typed as (
    select
        customer_id,
        page,
        {{ normalise_code('channel') }} as channel,
        trim(ip) as ip,
        {{ parse_ts('ts') }} as ts
    from {{ source('bronze', 'clicks') }}
)

select
    *,
    {{ reject_reason([
        ['invalid_ip', "ip is null or not regexp_like(ip, '^(" ~ octet ~ "\\.){3}" ~ octet ~ "$')"],
    ]) }} as reject_reason
from typed
