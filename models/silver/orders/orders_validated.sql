{{ config(materialized='ephemeral') }}
-- Every bronze order version, typed and normalised, with the reason it is
-- rejected (null when valid). A broken version is a copy of a real one
-- written minutes later, so it must be rejected here, before orders_clean
-- picks each order's latest version, or it would hide the good one.
with typed as (
    select
        order_id,
        customer_id,
        {{ parse_ts('order_ts') }} as order_ts,
        order_ts as order_ts_raw,
        {{ parse_ts('updated_at') }} as updated_at,
        {{ normalise_code('status') }} as status,
        {{ normalise_code('channel') }} as channel,
        channel as channel_raw,
        upper(trim(country)) as country,
        total_amount
    from {{ source('bronze', 'orders') }}
)

select
    *,
    {{ reject_reason([
        ['invalid_order_ts', "order_ts is null"],
        ['unknown_channel', "channel is null or channel not in " ~ sql_list(var('channels'))],
    ]) }} as reject_reason
from typed
