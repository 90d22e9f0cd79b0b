-- models/silver/orders/orders_validated.sql (ephemeral: a view).
-- parse_ts expanded: DataFusion's try_cast(... as timestamp) then
-- arrow_cast to Timestamp(us, "UTC") is DuckDB's try_cast(... as
-- timestamptz) with the session's TimeZone set to UTC (run.py), and
-- to_timestamp_seconds is to_timestamp.
create or replace view orders_validated as
with typed as (
    select
        order_id,
        customer_id,
        case
            when regexp_matches(trim(order_ts), '^\d{9,11}$')
                then to_timestamp(try_cast(trim(order_ts) as bigint))
            else try_cast(trim(order_ts) as timestamptz)
        end as order_ts,
        order_ts as order_ts_raw,
        case
            when regexp_matches(trim(updated_at), '^\d{9,11}$')
                then to_timestamp(try_cast(trim(updated_at) as bigint))
            else try_cast(trim(updated_at) as timestamptz)
        end as updated_at,
        nullif(lower(trim(status)), '') as status,
        nullif(lower(trim(channel)), '') as channel,
        channel as channel_raw,
        upper(trim(country)) as country,
        total_amount
    from bronze_orders
)

select
    *,
    case
        when order_ts is null then 'invalid_order_ts'
        when channel is null or channel not in ('web', 'mobile', 'store') then 'unknown_channel'
    end as reject_reason
from typed;
