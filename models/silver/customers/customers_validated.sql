{{ config(materialized='ephemeral') }}
-- Every bronze customer row, typed and pseudonymised, with the reason it is
-- rejected (null when valid). Names and emails are replaced here, before any
-- table is written, so that not even the rejected table holds them.
with typed as (
    select
        customer_id,
        {{ email_hash('email') }} as email_hash,
        {{ initials('first_name', 'last_name') }} as initials,
        upper(trim(country)) as country,
        {{ parse_date('signup_date') }} as signup_date,
        signup_date as signup_date_raw
    from {{ source('bronze', 'customers') }}
)

select
    *,
    {{ reject_reason([
        ['missing_email', "email_hash is null"],
        ['invalid_signup_date', "signup_date is null"],
    ]) }} as reject_reason
from typed
