-- models/silver/orders/orders_clean.sql (incremental merge on order_id;
-- what a full build writes). loaded_at is the build's start (excluded from
-- the comparison).
create or replace table silver_orders_clean as
with valid as (
    select order_id, customer_id, order_ts, updated_at, status, channel, country, total_amount
    from orders_validated
    where reject_reason is null
),

item_totals as (
    select order_id, sum(revenue) as items_total
    from silver_order_items_clean
    group by order_id
),

candidates as (
    select
        v.order_id,
        v.customer_id,
        v.order_ts,
        v.updated_at,
        v.status,
        v.channel,
        v.country,
        coalesce(v.total_amount, t.items_total) as total_amount,
        v.total_amount is null as total_from_items,
        cast(1 as bigint) as versions
    from valid v
    left join item_totals t on t.order_id = v.order_id
),

ranked as (
    select
        *,
        row_number() over (partition by order_id order by updated_at desc, versions desc) as recency,
        sum(versions) over (partition by order_id) as merged_versions
    from candidates
)

select
    order_id,
    customer_id,
    order_ts,
    cast(order_ts as date) as order_date,
    cast(date_trunc('month', order_ts) as date) as order_month,
    updated_at,
    status,
    channel,
    country,
    total_amount,
    total_from_items,
    cast(merged_versions as bigint) as versions,
    current_timestamp as loaded_at
from ranked
where recency = 1;
