{{ config(materialized='ephemeral') }}
-- Every bronze supplier row, typed, with the reason it is rejected (null
-- when valid). The lead time arrives as text: a row whose lead time is not
-- a positive whole number of days is an unusable copy.
with typed as (
    select
        supplier_id,
        trim(name) as name,
        upper(trim(country)) as country,
        try_cast(trim(lead_time_days) as bigint) as lead_time_days,
        lead_time_days as lead_time_days_raw
    from {{ source('bronze', 'suppliers') }}
)

select
    *,
    {{ reject_reason([
        ['invalid_lead_time', "lead_time_days is null or lead_time_days <= 0"],
    ]) }} as reject_reason
from typed
